//! A gateway whose upstream fails: through the fault proxy, transient faults are retried,
//! lasting ones are 503 (never 404), an interrupted write leaves nothing, and a read never
//! mixes two versions of an object.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::fault::FaultProxy;
use crate::harness::{config, start, TempDir};
use crate::upstream::gateway_with;

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(seed) % 251) as u8)
        .collect()
}

/// The status and everything the server sent after the head, until it closed.
fn get_all(addr: std::net::SocketAddr, target: &str) -> (u16, Option<usize>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let len = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())
            .flatten()
    });
    (status, len, all[end..].to_vec())
}

#[test]
fn transient_upstream_faults_are_retried() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("flt");
    let proxy = FaultProxy::start(up.addr);
    let g = gateway_with(proxy.addr, "", |u| u.tuning.low_level_retries = 3);
    let body = data(1_500_000, 7);

    // Error answers, then success.
    proxy.plan().fail = Some((503, 2));
    assert_eq!(g.put("flt", "a", &body).status, 200);
    assert!(std::fs::read(dir.0.join("flt/a")).unwrap() == body);
    proxy.plan().fail = Some((500, 3));
    let r = g.get("flt", "a", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == body);

    // A PUT cut short on its way up is sent again whole.
    proxy.plan().cut_requests = Some((700_000, 2));
    let other = data(1_500_000, 13);
    assert_eq!(g.put("flt", "a", &other).status, 200);
    assert!(std::fs::read(dir.0.join("flt/a")).unwrap() == other);

    // An answer cut short mid-body is resumed where it stopped.
    proxy.plan().cut_answers = Some((50_000, 2));
    let r = g.get("flt", "a", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == other);
    assert!(proxy.plan().cut_answers.is_none(), "the faults were used");
}

#[test]
fn an_upstream_that_is_down_or_failing_is_503_never_404() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("dwn");
    let proxy = FaultProxy::start(up.addr);
    let g = gateway_with(proxy.addr, "", |u| u.tuning.low_level_retries = 1);
    assert_eq!(g.put("dwn", "k", b"here").status, 200);

    proxy.plan().fail = Some((500, 100));
    for r in [
        g.get("dwn", "k", &[]),
        g.head("dwn", "k"),
        g.get("dwn", "nokey", &[]),
    ] {
        assert_eq!(r.status, 503, "{}", r.text());
    }
    let r = g.raw("GET", "/dwn?list-type=2", &[], b"");
    assert_eq!((r.status, r.code().as_str()), (503, "SlowDown"));

    proxy.plan().fail = None;
    proxy.stop();
    for r in [
        g.get("dwn", "k", &[]),
        g.head("dwn", "k"),
        g.get("dwn", "nokey", &[]),
    ] {
        assert_eq!(r.status, 503, "{}", r.text());
    }
    assert_eq!(g.delete("dwn", "k").status, 503);
    assert_eq!(g.put("dwn", "k2", b"x").status, 503);
    // Nothing was lost or half made while it was down.
    assert_eq!(std::fs::read(dir.0.join("dwn/k")).unwrap(), b"here");
    assert!(!dir.0.join("dwn/k2").exists());
}

#[test]
fn a_stalled_upstream_times_out_as_503() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("stl");
    let proxy = FaultProxy::start(up.addr);
    let g = gateway_with(proxy.addr, "", |u| {
        u.tuning.low_level_retries = 0;
        u.tuning.timeout = Duration::from_millis(500);
    });
    proxy.plan().stall = true;
    assert_eq!(g.get("stl", "k", &[]).status, 503);
    assert_eq!(g.put("stl", "k", b"abc").status, 503);
    assert!(!dir.0.join("stl/k").exists());
}

#[test]
fn an_interrupted_put_leaves_no_upstream_object() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("int");
    let proxy = FaultProxy::start(up.addr);
    let g = gateway_with(proxy.addr, "", |u| u.tuning.low_level_retries = 2);

    // Cut on the way up, every attempt.
    proxy.plan().cut_requests = Some((600_000, 100));
    let r = g.put("int", "cut", &data(1_500_000, 3));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(!dir.0.join("int/cut").exists());

    // A client that dies mid-body: nothing is sent up at all.
    proxy.plan().cut_requests = None;
    let seen_before = proxy.plan().seen.len();
    let mut s = TcpStream::connect(g.addr).unwrap();
    write!(
        s,
        "PUT /int/died HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n"
    )
    .unwrap();
    s.write_all(&data(1_000_000, 5)).unwrap();
    drop(s);
    // A request after it, on the same worker pool, is served: the dead one is long gone.
    assert_eq!(g.put("int", "after", b"ok").status, 200);
    let seen: Vec<String> = proxy.plan().seen[seen_before..].to_vec();
    assert!(seen.iter().all(|l| !l.contains("/int/died")), "{seen:?}");
    assert!(!dir.0.join("int/died").exists());
    // The upstream holds only what was completed, and no temporaries in the bucket.
    let names: Vec<_> = std::fs::read_dir(dir.0.join("int"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["after".to_string()]);
}

#[test]
fn a_get_whose_object_changes_between_chunks_never_mixes_versions() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("mix");
    let old = data(1_500_000, 7);
    let new = data(1_500_000, 11);
    assert_eq!(up.put("mix", "obj", &old).status, 200);
    let proxy = FaultProxy::start(up.addr);
    // Chunks of 100 kB: the second ranged request starts at byte 100000.
    let g = gateway_with(proxy.addr, "", |u| u.tuning.low_level_retries = 2);
    let (replacement, root) = (new.clone(), dir.0.clone());
    proxy.plan().before = Some((
        "bytes=100000-".into(),
        // Replaced on the upstream's disk, as another writer would: a new file renamed in.
        Box::new(move || {
            let tmp = root.join("mix/.replacement");
            std::fs::write(&tmp, &replacement).unwrap();
            std::fs::rename(&tmp, root.join("mix/obj")).unwrap();
        }),
    ));
    let (status, len, body) = get_all(g.addr, "/mix/obj");
    assert!(
        proxy.plan().before.is_none(),
        "the object was replaced mid-read"
    );
    assert!(std::fs::read(dir.0.join("mix/obj")).unwrap() == new);
    // Whatever arrived is the old version's start, and it never arrives whole.
    let complete = status == 200 && len == Some(old.len()) && body.len() == old.len();
    assert!(!complete, "a read across a replacement completed");
    if status == 200 {
        assert!(body.len() < old.len() && body == old[..body.len()]);
    } else {
        assert!(status >= 500, "{status}");
    }
    // A read after the change is the new version, whole.
    let r = g.get("mix", "obj", &[]);
    assert!(r.status == 200 && r.body == new);
}

#[test]
fn a_get_streams_while_the_upstream_is_still_sending() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("str");
    let obj = data(1_500_000, 7);
    assert_eq!(up.put("str", "obj", &obj).status, 200);
    let proxy = FaultProxy::start(up.addr);
    let g = gateway_with(proxy.addr, "", |u| u.tuning.low_level_retries = 0);
    // The second ranged request waits until the client has the first chunk.
    let (go, wait) = crossbeam_channel::bounded::<()>(1);
    proxy.plan().before = Some((
        "bytes=100000-".into(),
        Box::new(move || {
            let _ = wait.recv_timeout(Duration::from_secs(60));
        }),
    ));
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /str/obj HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    let head_end = loop {
        let n = s
            .read(&mut buf)
            .expect("the first bytes come before the whole object");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= i + 4 + 100_000 {
                break i + 4;
            }
        }
    };
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(got[head_end..head_end + 100_000] == obj[..100_000]);
    go.send(()).unwrap();
    s.read_to_end(&mut got).unwrap();
    assert!(got[head_end..] == obj[..]);
}

#[test]
fn parallel_read_streams_fetch_fixed_chunks_in_order_and_resume_cut_ones() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("pst");
    let body = data((7 << 19) + 123, 13);
    assert_eq!(up.put("pst", "k", &body).status, 200);
    let proxy = FaultProxy::start(up.addr);
    let g = gateway_with(proxy.addr, "", |u| {
        u.tuning.read_streams = 3;
        u.tuning.read_chunk = 100_000;
    });
    let r = g.get("pst", "k", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == body);
    // Fixed chunks of whole MiBs (100,000 rounded up), not the doubling sequential reads.
    let mut ranges: Vec<String> = proxy
        .plan()
        .seen
        .iter()
        .filter(|h| h.starts_with("GET /pst/k"))
        .filter_map(|h| {
            h.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("range: ")
                    .map(String::from)
            })
        })
        .collect();
    ranges.sort();
    let mib = 1u64 << 20;
    let last = body.len() as u64 - 1;
    let want: Vec<String> = (0..4)
        .map(|i| format!("bytes={}-{}", i * mib, ((i + 1) * mib - 1).min(last)))
        .collect();
    assert_eq!(ranges, want);
    // A range from the middle, and an answer cut short on the way.
    {
        let mut plan = proxy.plan();
        plan.only = Some("GET /pst/k".into());
        plan.cut_answers = Some((300_000, 1));
    }
    let r = g.get("pst", "k", &[("range", "bytes=1500000-2600000")]);
    assert_eq!(r.status, 206);
    assert!(r.body == body[1_500_000..=2_600_000]);
    assert!(proxy.plan().cut_answers.is_none());
}
