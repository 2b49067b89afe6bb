//! The file cache in front of an upstream (`--vfs-cache-mode`): writes acknowledged from the
//! cache and uploaded behind, through failures, an upstream that is down, kill -9, damaged
//! records, deletes and overwrites racing an upload, a full cache, and full-mode reads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::fault::FaultProxy;
use crate::harness::*;
use crate::multipart::{complete, create, expected_etag, part};
use crate::upstream::gateway_config;
use s3serve::vfs::cache::{CacheOptions, Mode};

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(seed).wrapping_add(seed >> 3) % 251) as u8)
        .collect()
}

fn options(cache: &Path) -> CacheOptions {
    CacheOptions {
        dir: cache.to_path_buf(),
        remote: "up/".into(),
        mode: Mode::Writes,
        write_back: Duration::from_millis(50),
        max_age: Duration::from_secs(3600),
        max_size: None,
        min_free: 0,
        poll_interval: Duration::from_secs(60),
        read_ahead: 0,
        transfers: 4,
        dir_cache_time: Duration::from_secs(300),
        fast_fingerprint: false,
        test_free_space: None,
    }
}

/// A gateway over `up` with a cache in `cache`, its options changed by `set`.
fn cached(up: SocketAddr, cache: &Path, set: impl FnOnce(&mut CacheOptions)) -> TestServer {
    let mut c = gateway_config(up, "", |u| u.tuning.low_level_retries = 1);
    let mut o = options(cache);
    set(&mut o);
    c.cache = Some(o);
    start(c)
}

/// Waits (up to a minute) until `done` holds: uploads happen behind the answers.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn on_disk(root: &Path, bucket: &str, key: &str) -> Option<Vec<u8>> {
    std::fs::read(root.join(bucket).join(key)).ok()
}

fn keys_listed(s: &TestServer, bucket: &str) -> Vec<String> {
    listed(s.addr, bucket)
}

#[test]
fn writes_answer_from_the_cache_and_arrive_whole_after_upload_failures() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("bkt");
    let proxy = FaultProxy::start(up.addr);
    let cache = TempDir::new();
    let g = cached(proxy.addr, &cache.0, |_| {});
    {
        let mut plan = proxy.plan();
        plan.only = Some("PUT /bkt/".into());
        plan.fail = Some((503, 6));
    }
    let bodies: Vec<Vec<u8>> = (0..5)
        .map(|i| data(100_000 * (i + 1), i as u32 + 3))
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        let n = i.to_string();
        let r = g.put_with(
            "bkt",
            &format!("obj{i}"),
            body,
            &[("content-type", "text/x-test"), ("x-amz-meta-n", &n)],
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A multipart object, whose upload must keep the client's part sizes.
    let (p1, p2) = (data(5 << 20, 11), data(1 << 20, 13));
    let id = create(&g, "mp");
    let e1 = part(&g, "mp", &id, 1, &p1);
    let e2 = part(&g, "mp", &id, 2, &p2);
    let r = complete(&g, "mp", &id, &[(1, &e1), (2, &e2)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let mp_etag = expected_etag(&[&p1, &p2]);

    // Served from the cache at once.
    let r = g.get("bkt", "obj3", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == bodies[3]);
    assert_eq!(r.header("x-amz-meta-n"), Some("3"));
    assert!(keys_listed(&g, "bkt").contains(&"mp".to_string()));

    for (i, body) in bodies.iter().enumerate() {
        let key = format!("obj{i}");
        eventually(&key, || on_disk(&dir.0, "bkt", &key).as_ref() == Some(body));
        let r = up.head("bkt", &key);
        assert_eq!(r.header("etag").unwrap(), format!("\"{}\"", md5_hex(body)));
        assert_eq!(r.header("content-type"), Some("text/x-test"));
        assert_eq!(r.header("x-amz-meta-n"), Some(i.to_string().as_str()));
    }
    let whole: Vec<u8> = [p1.as_slice(), p2.as_slice()].concat();
    eventually("mp", || {
        on_disk(&dir.0, "bkt", "mp").as_ref() == Some(&whole)
    });
    assert_eq!(up.head("bkt", "mp").header("etag"), Some(mp_etag.as_str()));
    assert!(proxy.plan().fail.is_none(), "the upstream never failed");
}

#[test]
fn an_upstream_down_all_along_loses_nothing() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    let proxy = FaultProxy::start(up.addr);
    let cache = TempDir::new();
    let g = cached(proxy.addr, &cache.0, |_| {});
    g.create_bucket("dwn");
    assert_eq!(g.put("dwn", "old", b"from before").status, 200);
    eventually("old", || on_disk(&dir.0, "dwn", "old").is_some());
    // A listing kept in memory: one that asks the upstream nothing (a listing fetched while
    // the upload of `old` was finishing is not kept).
    let lists = || {
        let p = proxy.plan();
        p.seen.iter().filter(|h| h.starts_with("GET /dwn?")).count()
    };
    eventually("the listing kept", || {
        let before = lists();
        assert_eq!(keys_listed(&g, "dwn"), ["old"]);
        lists() == before
    });

    proxy.plan().fail = Some((503, u32::MAX));
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| data(70_000, i + 5)).collect();
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(g.put("dwn", &format!("d/k{i}"), b).status, 200);
    }
    for (i, b) in bodies.iter().enumerate() {
        let key = format!("d/k{i}");
        let r = g.head("dwn", &key);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("etag").unwrap(), format!("\"{}\"", md5_hex(b)));
        assert!(g.get("dwn", &key, &[]).body == *b);
    }
    assert_eq!(keys_listed(&g, "dwn"), ["d/k0", "d/k1", "d/k2", "old"]);
    assert!(on_disk(&dir.0, "dwn", "d/k0").is_none());

    proxy.plan().fail = None;
    for (i, b) in bodies.iter().enumerate() {
        let key = format!("d/k{i}");
        eventually(&key, || on_disk(&dir.0, "dwn", &key).as_ref() == Some(b));
    }
}

/// The record of `bucket/key` in a cache made by [`options`].
fn record_path(cache: &Path, bucket: &str, key: &str) -> PathBuf {
    cache.join("vfsMeta/up").join(bucket).join(key)
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn damaged_records_keep_their_data_aside() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("dmg");
    let cache = TempDir::new();
    let hour = |o: &mut CacheOptions| o.write_back = Duration::from_secs(3600);
    let g = cached(up.addr, &cache.0, hour);
    let (a, b) = (data(50_000, 3), data(60_000, 7));
    assert_eq!(g.put("dmg", "x/a", &a).status, 200);
    assert_eq!(g.put("dmg", "x/b", &b).status, 200);
    drop(g);
    std::fs::write(record_path(&cache.0, "dmg", "x/a"), b"{\"ModTime\": 12").unwrap();

    let g = cached(up.addr, &cache.0, |_| {});
    eventually("b", || on_disk(&dir.0, "dmg", "x/b").as_ref() == Some(&b));
    assert!(on_disk(&dir.0, "dmg", "x/a").is_none());
    assert_eq!(g.head("dmg", "x/a").status, 404);
    let lost = files_under(&cache.0.join("s3serve/up/lost"));
    let kept: Vec<_> = lost.iter().filter(|p| p.ends_with("up/dmg/x/a")).collect();
    assert_eq!(kept.len(), 2, "{lost:?}");
    assert!(kept.iter().any(|p| std::fs::read(p).unwrap() == a));
}

#[test]
fn a_delete_or_overwrite_during_an_upload_wins() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("ovr");
    let proxy = FaultProxy::start(up.addr);
    let cache = TempDir::new();
    let g = cached(proxy.addr, &cache.0, |_| {});
    let seen = |what: &str| proxy.plan().seen.iter().any(|h| h.contains(what));

    // An overwrite while the older version is on its way up.
    let (tx, rx) = mpsc::channel::<()>();
    proxy.plan().before = Some((
        "PUT /ovr/k ".into(),
        Box::new(move || {
            let _ = rx.recv();
        }),
    ));
    let (v1, v2) = (data(80_000, 3), data(90_000, 5));
    assert_eq!(g.put("ovr", "k", &v1).status, 200);
    eventually("the first upload", || seen("PUT /ovr/k "));
    assert_eq!(g.put("ovr", "k", &v2).status, 200);
    assert!(g.get("ovr", "k", &[]).body == v2);
    tx.send(()).unwrap();
    eventually("v2 upstream", || {
        on_disk(&dir.0, "ovr", "k").as_ref() == Some(&v2)
    });
    assert_eq!(
        up.head("ovr", "k").header("etag").unwrap(),
        format!("\"{}\"", md5_hex(&v2))
    );

    // A delete while the upload is in flight: the upstream must not keep the object.
    let (tx, rx) = mpsc::channel::<()>();
    proxy.plan().before = Some((
        "PUT /ovr/d ".into(),
        Box::new(move || {
            let _ = rx.recv();
        }),
    ));
    assert_eq!(g.put("ovr", "d", &v1).status, 200);
    eventually("the upload of d", || seen("PUT /ovr/d "));
    let addr = g.addr;
    let deleter = std::thread::spawn(move || {
        let s = TestServer {
            running: None,
            addr,
            root: PathBuf::new(),
            creds: rusty_s3::Credentials::new(AK, SK),
        };
        s.delete("ovr", "d").status
    });
    // Give the delete time to arrive before the upload is let go (either order must hold).
    std::thread::sleep(Duration::from_millis(300));
    tx.send(()).unwrap();
    assert_eq!(deleter.join().unwrap(), 204);
    assert!(on_disk(&dir.0, "ovr", "d").is_none());
    assert_eq!(g.head("ovr", "d").status, 404);
    assert!(!keys_listed(&g, "ovr").contains(&"d".to_string()));
}

#[test]
fn a_full_cache_refuses_writes_and_eviction_makes_room() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("ful");
    let cache = TempDir::new();
    let g = cached(up.addr, &cache.0, |o| {
        o.write_back = Duration::from_secs(3600);
        o.test_free_space = Some(6 << 20);
    });
    assert_eq!(g.put("ful", "a", &data(2 << 20, 3)).status, 200);
    assert_eq!(g.put("ful", "b", &data(2 << 20, 5)).status, 200);
    let r = g.put("ful", "c", &data(3 << 20, 7));
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "SlowDown"),
        "{}",
        r.text()
    );
    assert_eq!(g.head("ful", "c").status, 404);
    assert!(files_under(&cache.0.join("s3serve/up/tmp")).is_empty());
    assert!(!record_path(&cache.0, "ful", "c").exists());
    // A multipart part is admitted as a PUT is.
    let r = g.raw("POST", "/ful/mp?uploads", &[], b"");
    let id = crate::multipart::tag(&r.text(), "UploadId").to_string();
    let target = format!("/ful/mp?partNumber=1&uploadId={id}");
    let r = g.raw("PUT", &target, &[], &data(3 << 20, 9));
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "SlowDown"),
        "{}",
        r.text()
    );
    let r = g.raw("GET", &format!("/ful/mp?uploadId={id}"), &[], b"");
    assert!(!r.text().contains("<Part>"), "{}", r.text());
    assert_eq!(g.raw("PUT", &target, &[], b"small").status, 200);
    drop(g);

    // Once uploaded, items are clean and make room for new writes.
    let cache = TempDir::new();
    let g = cached(up.addr, &cache.0, |o| o.test_free_space = Some(6 << 20));
    let (a, b) = (data(2 << 20, 3), data(2 << 20, 5));
    assert_eq!(g.put("ful", "a", &a).status, 200);
    assert_eq!(g.put("ful", "b", &b).status, 200);
    eventually("a and b uploaded", || {
        on_disk(&dir.0, "ful", "a").as_ref() == Some(&a)
            && on_disk(&dir.0, "ful", "b").as_ref() == Some(&b)
    });
    eventually("a and b clean", || {
        let dirty = |k| std::fs::read_to_string(record_path(&cache.0, "ful", k)).unwrap();
        !dirty("a").contains("\"Dirty\": true") && !dirty("b").contains("\"Dirty\": true")
    });
    let c = data(3 << 20, 7);
    assert_eq!(g.put("ful", "c", &c).status, 200);
    assert!(!record_path(&cache.0, "ful", "a").exists());
    assert!(g.get("ful", "a", &[]).body == a);
    eventually("c", || on_disk(&dir.0, "ful", "c").as_ref() == Some(&c));
}

#[test]
fn full_mode_fetches_only_missing_ranges() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("fmo");
    let body = data(9 << 20, 17);
    assert_eq!(up.put("fmo", "big", &body).status, 200);
    let proxy = FaultProxy::start(up.addr);
    let cache = TempDir::new();
    let g = cached(proxy.addr, &cache.0, |o| o.mode = Mode::Full);
    let gets = || {
        proxy
            .plan()
            .seen
            .iter()
            .filter(|h| h.starts_with("GET /fmo/big"))
            .count()
    };
    let r = g.get("fmo", "big", &[("range", "bytes=5000000-5000099")]);
    assert_eq!(r.status, 206);
    assert!(r.body == body[5_000_000..5_000_100]);
    // The record is written once the reader is done, just after the answer.
    let rec = || std::fs::read_to_string(record_path(&cache.0, "fmo", "big")).unwrap();
    eventually("the range recorded", || rec().contains("\"Pos\": 5000000"));
    assert!(!rec().contains("\"Pos\": 0,"), "{}", rec());
    let r = g.get("fmo", "big", &[]);
    assert!(r.body == body);
    let fetched = gets();
    // A second read comes from the cache file.
    let r = g.get("fmo", "big", &[]);
    assert!(r.body == body);
    assert_eq!(gets(), fetched);
    // A change upstream is seen: the cached copy is dropped.
    let other = data(1000, 3);
    assert_eq!(up.put("fmo", "big", &other).status, 200);
    assert!(g.get("fmo", "big", &[]).body == other);
}

/// Sends one unsigned request to an anonymous server.
fn send(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> Resp {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw_exchange(addr, &req, method == "HEAD")
}

/// The connection string that names the test upstream at `up`.
fn remote_of(up: SocketAddr) -> String {
    format!(":s3,provider=Other,endpoint='http://{up}',access_key_id={AK},secret_access_key={SK}:")
}

/// The arguments of the binary as an anonymous gateway over `up`, caching writes in
/// `cache` and writing back after `write_back`.
fn cached_args(up: SocketAddr, cache: &Path, write_back: &str) -> Vec<String> {
    let flags = ["--addr", "127.0.0.1:0", "--vfs-cache-mode", "writes"];
    let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    args.extend(["--vfs-write-back".into(), write_back.into()]);
    args.extend(["--cache-dir".into(), cache.to_str().unwrap().into()]);
    args.push(remote_of(up));
    args
}

fn cached_binary(
    up: SocketAddr,
    cache: &Path,
    write_back: &str,
) -> (std::process::Child, SocketAddr, Vec<String>) {
    let args = cached_args(up, cache, write_back);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crate::binary::spawn_env(&args, &[])
}

fn listed(addr: SocketAddr, bucket: &str) -> Vec<String> {
    let r = send(addr, "GET", &format!("/{bucket}?list-type=2"), b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .split("<Key>")
        .skip(1)
        .map(|k| k.split("</Key>").next().unwrap().to_string())
        .collect()
}

#[test]
fn a_hundred_dirty_objects_survive_kill_9_and_arrive_after_the_restart() {
    use crate::binary::command;
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("kil");
    let cache = TempDir::new();
    let run = |wb| cached_binary(up.addr, &cache.0, wb);
    let (mut child, addr, _) = run("1h");
    let bodies: Vec<Vec<u8>> = (0..100)
        .map(|i| data(1000 + i * 37, i as u32 + 1))
        .collect();
    for (i, b) in bodies.iter().enumerate() {
        let r = send(addr, "PUT", &format!("/kil/o/{i:03}"), b);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A second process on the same cache is refused, and says why.
    let out = command(&[])
        .args(cached_args(up.addr, &cache.0, "1h"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another s3serve"), "{err}");

    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.0.join("kil/o").exists(),
        "nothing was uploaded before the kill"
    );

    let (mut child, addr, _) = run("100ms");
    assert_eq!(listed(addr, "kil").len(), 100);
    for (i, b) in bodies.iter().enumerate() {
        let key = format!("o/{i:03}");
        eventually(&key, || on_disk(&dir.0, "kil", &key).as_ref() == Some(b));
    }
    assert_eq!(listed(addr, "kil").len(), 100);
    let r = send(addr, "HEAD", "/kil/o/042", b"");
    assert_eq!(
        r.header("etag").unwrap(),
        format!("\"{}\"", md5_hex(&bodies[42]))
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_leaves_pending_uploads_for_the_next_start_and_says_so() {
    use crate::binary::command;
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("trm");
    let cache = TempDir::new();
    let log = cache.0.join("server.log");
    let remote = remote_of(up.addr);
    let mut child = command(&[])
        .args(["--addr", "127.0.0.1:0", "--vfs-cache-mode", "writes"])
        .args([
            "--vfs-write-back",
            "1h",
            "--log-file",
            log.to_str().unwrap(),
        ])
        .arg("--cache-dir")
        .arg(cache.0.join("c"))
        .arg(&remote)
        .spawn()
        .unwrap();
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("the server listening", || {
        text().contains("listening on http://")
    });
    let addr: SocketAddr = text()
        .split("listening on http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for i in 0..3 {
        assert_eq!(
            send(addr, "PUT", &format!("/trm/k{i}"), b"pending").status,
            200
        );
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(text().contains("3 writes not uploaded yet"), "{}", text());
    assert!(!dir.0.join("trm/k0").exists());
    let rec = std::fs::read_to_string(cache.0.join("c/vfsMeta/:s3/trm/k0")).unwrap();
    assert!(rec.contains("\"Dirty\": true"), "{rec}");
}

#[test]
fn a_cache_in_front_of_a_directory_writes_it_back() {
    let dir = TempDir::new();
    let cache = TempDir::new();
    let mut c = s3serve::config::Config::for_tests(s3serve::config::Storage::Local(dir.0.clone()));
    let mut o = options(&cache.0);
    o.remote = "local/data".into();
    c.cache = Some(o);
    let s = start(c);
    s.create_bucket("loc");
    let body = data(300_000, 9);
    let r = s.put_with("loc", "d/f.bin", &body, &[("content-type", "x/y")]);
    assert_eq!(r.status, 200);
    assert!(s.get("loc", "d/f.bin", &[]).body == body);
    eventually("the directory has it", || {
        on_disk(&dir.0, "loc", "d/f.bin").as_ref() == Some(&body)
    });
    assert_eq!(s.head("loc", "d/f.bin").header("content-type"), Some("x/y"));
    assert_eq!(keys_listed(&s, "loc"), ["d/f.bin"]);
    assert_eq!(s.delete("loc", "d/f.bin").status, 204);
    assert!(on_disk(&dir.0, "loc", "d/f.bin").is_none());
    assert!(keys_listed(&s, "loc").is_empty());
}

#[test]
fn a_second_reader_of_a_range_waits_for_the_first_fetch() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("wtr");
    let body = data(3 << 20, 29);
    assert_eq!(up.put("wtr", "one", &body).status, 200);
    assert_eq!(up.put("wtr", "two", &body).status, 200);
    let proxy = FaultProxy::start(up.addr);
    let cache = TempDir::new();
    let g = cached(proxy.addr, &cache.0, |o| o.mode = Mode::Full);
    let gets = |key: &str| {
        let head = format!("GET /wtr/{key}");
        proxy
            .plan()
            .seen
            .iter()
            .filter(|h| h.starts_with(&head))
            .count()
    };
    // What one reader of the whole object costs.
    assert!(g.get("wtr", "one", &[]).body == body);
    let alone = gets("one");
    assert!(alone > 0);

    // Two readers at once: the second finds the range being fetched and waits for it.
    let (tx, rx) = mpsc::channel::<()>();
    proxy.plan().before = Some((
        "GET /wtr/two".into(),
        Box::new(move || {
            let _ = rx.recv();
        }),
    ));
    let addr = g.addr;
    let reader = move || {
        let s = TestServer {
            running: None,
            addr,
            root: PathBuf::new(),
            creds: rusty_s3::Credentials::new(AK, SK),
        };
        s.get("wtr", "two", &[]).body
    };
    let first = std::thread::spawn(reader);
    eventually("the first fetch", || gets("two") == 1);
    let second = std::thread::spawn(reader);
    // Let the second reader reach the range before the fetch goes on (either order holds).
    std::thread::sleep(Duration::from_millis(300));
    tx.send(()).unwrap();
    assert!(first.join().unwrap() == body);
    assert!(second.join().unwrap() == body);
    assert_eq!(gets("two"), alone);
}

#[test]
fn kill_9_in_the_middle_of_writes_loses_no_acknowledged_one_and_shows_no_partial_one() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("mid");
    let cache = TempDir::new();
    let run = |wb| cached_binary(up.addr, &cache.0, wb);
    let (mut child, addr, _) = run("1h");
    let body = |i: usize| data(20_000 + (i % 7) * 50_000, i as u32 + 1);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (acked, stop) = (acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::SeqCst) {
                    let r = std::panic::catch_unwind(|| {
                        send(addr, "PUT", &format!("/mid/k{i}"), &body(i))
                    });
                    match r {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().push(i),
                        _ => break,
                    }
                    i += 4;
                }
            })
        })
        .collect();
    eventually("some writes", || acked.lock().unwrap().len() >= 40);
    child.kill().unwrap();
    child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        let _ = w.join();
    }
    let acked = acked.lock().unwrap().clone();

    let (mut child, addr, _) = run("10ms");
    let shown = listed(addr, "mid");
    for i in &acked {
        assert!(shown.contains(&format!("k{i}")), "k{i} was acknowledged");
    }
    // Whatever is shown reads back whole; what was acknowledged reaches the upstream.
    for key in &shown {
        let i: usize = key[1..].parse().unwrap();
        let r = send(addr, "GET", &format!("/mid/{key}"), b"");
        assert!(r.status == 200 && r.body == body(i), "{key} is partial");
    }
    for i in &acked {
        let key = format!("k{i}");
        eventually(&key, || on_disk(&dir.0, "mid", &key) == Some(body(*i)));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn reads_do_not_postpone_an_upload() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("rds");
    let cache = TempDir::new();
    let g = cached(up.addr, &cache.0, |o| {
        o.write_back = Duration::from_millis(200)
    });
    assert_eq!(g.put("rds", "k", b"read me often").status, 200);
    // Reads far more often than the write-back delay: the upload still happens (rclone
    // would push it back after every read, for as long as they go on).
    eventually("the upload while reads go on", || {
        assert_eq!(g.head("rds", "k").status, 200);
        assert_eq!(g.get("rds", "k", &[]).body, b"read me often");
        on_disk(&dir.0, "rds", "k").is_some()
    });
}

#[test]
fn vfs_refresh_lists_everything_at_start() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("rfs");
    for k in ["a", "d/b", "d/e/c"] {
        assert_eq!(up.put("rfs", k, b"x").status, 200);
    }
    let proxy = FaultProxy::start(up.addr);
    let cache = TempDir::new();
    let mut c = gateway_config(proxy.addr, "", |u| u.tuning.low_level_retries = 1);
    c.cache = Some(options(&cache.0));
    c.vfs_refresh = true;
    let g = start(c);
    let lists = || {
        let p = proxy.plan();
        p.seen.iter().filter(|h| h.starts_with("GET /rfs?")).count()
    };
    eventually("the walk", || lists() >= 3);
    // Once the walk is kept, a listing asks the upstream nothing.
    eventually("the listings kept", || {
        let before = lists();
        keys_listed(&g, "rfs");
        lists() == before
    });
    // Listings now come from memory, even with the upstream failing.
    proxy.plan().fail = Some((503, u32::MAX));
    assert_eq!(keys_listed(&g, "rfs"), ["a", "d/b", "d/e/c"]);
}

#[test]
fn a_small_cache_filesystem_refuses_what_does_not_fit_and_evicts_to_make_room() {
    // A real 8 MiB tmpfs where this machine lets us mount one (root); the free-space seam
    // covers the rest in `a_full_cache_refuses_writes_and_eviction_makes_room`.
    let cache = TempDir::new();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&cache.0)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("no tmpfs could be mounted here; the free-space seam test stands in");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(cache.0.clone());
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("tmf");
    let hour = |o: &mut CacheOptions| {
        o.write_back = Duration::from_secs(3600);
        o.min_free = 1 << 20;
    };
    let g = cached(up.addr, &cache.0, hour);
    assert_eq!(g.put("tmf", "a", &data(3 << 20, 3)).status, 200);
    assert_eq!(g.put("tmf", "b", &data(3 << 20, 5)).status, 200);
    let r = g.put("tmf", "c", &data(3 << 20, 7));
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "SlowDown"),
        "{}",
        r.text()
    );
    assert_eq!(g.head("tmf", "c").status, 404);
    assert!(files_under(&cache.0.join("s3serve/up/tmp")).is_empty());
    drop(g);

    // Uploaded items are clean: a write that needs their room evicts them.
    let g = cached(up.addr, &cache.0, |o| o.min_free = 1 << 20);
    eventually("a and b uploaded and clean", || {
        let clean = |k| {
            std::fs::read_to_string(record_path(&cache.0, "tmf", k))
                .is_ok_and(|r| r.contains("\"Dirty\": false"))
        };
        clean("a") && clean("b")
    });
    let c = data(3 << 20, 7);
    assert_eq!(g.put("tmf", "c", &c).status, 200);
    assert!(!record_path(&cache.0, "tmf", "a").exists());
    eventually("c", || on_disk(&dir.0, "tmf", "c").as_ref() == Some(&c));
}

/// Multipart uploads still open on a local upstream over `root` (no `done` mark).
fn open_uploads(root: &Path) -> usize {
    let dir = root.join(".s3serve/uploads");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir() && !e.path().join("done").exists())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count()
}

#[test]
fn a_multipart_upload_cut_by_kill_9_is_not_left_open_on_the_upstream() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("bkt");
    let proxy = FaultProxy::start(up.addr);
    let cache = TempDir::new();
    // The second part's upload waits in the proxy until the gateway has been killed.
    let (tx, rx) = mpsc::channel::<()>();
    proxy.plan().before = Some((
        "partNumber=2".into(),
        Box::new(move || {
            let _ = rx.recv();
        }),
    ));
    let (mut child, addr, _) = cached_binary(proxy.addr, &cache.0, "10ms");
    let g = TestServer {
        running: None,
        addr,
        root: PathBuf::new(),
        creds: rusty_s3::Credentials::new(AK, SK),
    };
    let (p1, p2) = (data(5 << 20, 3), data(1000, 5));
    let id = create(&g, "mp");
    let e1 = part(&g, "mp", &id, 1, &p1);
    let e2 = part(&g, "mp", &id, 2, &p2);
    assert_eq!(complete(&g, "mp", &id, &[(1, &e1), (2, &e2)]).status, 200);
    let seen = |what: &str| proxy.plan().seen.iter().any(|h| h.contains(what));
    eventually("the second part on its way up", || seen("partNumber=2"));
    child.kill().unwrap();
    child.wait().unwrap();
    tx.send(()).unwrap();
    eventually("the first try's upload open upstream", || {
        open_uploads(&dir.0) == 1
    });

    let (mut child, _, _) = cached_binary(proxy.addr, &cache.0, "10ms");
    let whole: Vec<u8> = [p1.as_slice(), p2.as_slice()].concat();
    eventually("mp upstream", || {
        on_disk(&dir.0, "bkt", "mp").as_ref() == Some(&whole)
    });
    assert_eq!(
        open_uploads(&dir.0),
        0,
        "the first try's upload was left open"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
