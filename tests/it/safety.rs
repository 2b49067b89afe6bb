//! Hostile input: unsafe keys, collisions, symlinks, truncated bodies, overload, crash leftovers.

use crate::harness::*;
use std::io::Write;
use std::net::TcpStream;

fn anon(dir: &TempDir) -> TestServer {
    start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Local(dir.0.clone()),
    ))
}

#[test]
fn unsafe_keys_are_rejected_never_remapped() {
    let outer = TempDir::new();
    let root = outer.0.join("root");
    let s = start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Local(root.clone()),
    ));
    s.raw("PUT", "/bk1", &[], b"");
    for target in [
        "/bk1/a/../../escape",
        "/bk1/..%2F..%2Fescape",
        "/bk1/a//b",
        "/bk1/./x",
        "/bk1/x/",
        "/bk1/.s3serve-tmp-1",
        "/bk1/%00",
        "/../escape",
        "/bk1/a/%2e%2e/%2e%2e/escape",
    ] {
        let r = s.raw("PUT", target, &[], b"evil");
        assert!(r.status == 400, "{target}: {} {}", r.status, r.text());
        assert_eq!(s.raw("GET", target, &[], b"").status / 100, 4, "{target}");
    }
    let long = "k".repeat(1025);
    assert_eq!(
        s.raw("PUT", &format!("/bk1/{long}"), &[], b"x").code(),
        "KeyTooLongError"
    );
    assert!(!outer.0.join("escape").exists() && !root.join("escape").exists());
    assert_eq!(std::fs::read_dir(root.join("bk1")).unwrap().count(), 0);
}

#[test]
fn symlinks_cannot_lead_outside_the_root() {
    let outer = TempDir::new();
    let root = outer.0.join("root");
    std::fs::create_dir_all(root.join("bk1")).unwrap();
    std::fs::write(outer.0.join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink(outer.0.join("secret"), root.join("bk1/link")).unwrap();
    std::os::unix::fs::symlink(&outer.0, root.join("bk1/dirlink")).unwrap();
    let s = start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Local(root.clone()),
    ));
    assert_eq!(s.raw("GET", "/bk1/link", &[], b"").status, 404);
    assert_eq!(s.raw("GET", "/bk1/dirlink/secret", &[], b"").status, 404);
    assert_ne!(s.raw("PUT", "/bk1/dirlink/new", &[], b"x").status, 200);
    assert!(!outer.0.join("new").exists());
    assert!(!s.raw("GET", "/bk1", &[], b"").text().contains("link"));
}

#[test]
fn keys_colliding_with_directories_get_a_clear_4xx() {
    let dir = TempDir::new();
    let s = anon(&dir);
    s.raw("PUT", "/bk1", &[], b"");
    s.raw("PUT", "/bk1/d/x", &[], b"1");
    s.raw("PUT", "/bk1/f", &[], b"1");
    let r = s.raw("PUT", "/bk1/d", &[], b"2");
    assert_eq!((r.status, r.code().as_str()), (409, "ObjectPathConflict"));
    let r = s.raw("PUT", "/bk1/f/x", &[], b"2");
    assert_eq!((r.status, r.code().as_str()), (409, "ObjectPathConflict"));
    assert_eq!(s.raw("GET", "/bk1/d", &[], b"").code(), "NoSuchKey");
    assert_eq!(s.raw("DELETE", "/bk1/d", &[], b"").status, 204);
    assert!(dir.0.join("bk1/d/x").exists());
    assert_eq!(
        s.raw("PUT", "/bk1/f/x?x-id=PutObject", &[], b"2").status,
        409
    );
}

#[test]
fn a_truncated_body_leaves_nothing_behind() {
    let dir = TempDir::new();
    let s = anon(&dir);
    s.raw("PUT", "/bk1", &[], b"");
    s.raw("PUT", "/bk1/k", &[], b"old");
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"PUT /bk1/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nonly a little")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let r = read_response(&mut std::io::BufReader::new(c), false);
    assert_eq!((r.status, r.code().as_str()), (400, "IncompleteBody"));
    assert_eq!(std::fs::read(dir.0.join("bk1/k")).unwrap(), b"old");
    assert_eq!(std::fs::read_dir(dir.0.join("bk1")).unwrap().count(), 1);
}

#[test]
fn a_failed_write_takes_away_the_folders_it_made() {
    let dir = TempDir::new();
    let s = anon(&dir);
    s.raw("PUT", "/bk1", &[], b"");
    s.raw("PUT", "/bk1/kept/k", &[], b"1");
    for target in [
        "/bk1/kept/new/deeper/k",
        "/bk1/fresh/k",
        "/bk1/fresh/marker/",
    ] {
        let head =
            format!("PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nshort");
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.write_all(head.as_bytes()).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let r = read_response(&mut std::io::BufReader::new(c), false);
        assert_eq!(r.status, 400, "{target}");
    }
    let r = s.raw(
        "PUT",
        "/bk1/fresh/k",
        &[("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg==")],
        b"x",
    );
    assert_eq!((r.status, r.code().as_str()), (400, "BadDigest"));
    let names = |p: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.0.join(p))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("bk1"), ["kept"]);
    assert_eq!(names("bk1/kept"), ["k"]);
}

#[test]
fn invalid_content_length_is_a_400() {
    let dir = TempDir::new();
    let s = anon(&dir);
    s.raw("PUT", "/bk1", &[], b"");
    let r = raw_exchange(
        s.addr,
        b"PUT /bk1/k HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(r.status, 400);
    assert!(!dir.0.join("bk1/k").exists());
}

#[test]
fn crash_leftovers_are_swept_at_start_up() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.0.join("bk1/deep")).unwrap();
    std::fs::write(dir.0.join("bk1/deep/.s3serve-tmp-DEADBEEF"), b"partial").unwrap();
    std::fs::write(dir.0.join("bk1/keep"), b"k").unwrap();
    let s = anon(&dir);
    // The sweep runs in the background after start-up (so that start-up never waits for a
    // walk of the tree); the leftover must go, and soon.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while dir.0.join("bk1/deep/.s3serve-tmp-DEADBEEF").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the crash leftover was never swept"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(dir.0.join("bk1/keep").exists());
    assert!(!s
        .raw("GET", "/bk1?list-type=2", &[], b"")
        .text()
        .contains("tmp"));
}

/// Waits until a thread of this process (the server runs in it) is blocked opening a FIFO
/// that has no writer yet.
fn wait_for_fifo_reader() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let waiting = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .any(|t| {
                std::fs::read_to_string(t.path().join("wchan"))
                    .is_ok_and(|w| w == "wait_for_partner")
            });
        if waiting {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no worker opened the FIFO"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn overload_answers_slow_down_at_once() {
    let dir = TempDir::new();
    let mut c = s3serve::config::Config::for_tests(s3serve::config::Storage::Local(dir.0.clone()));
    c.workers = 1;
    c.queue = 1;
    let s = start(c);
    s.raw("PUT", "/bk1", &[], b"");
    // Occupy the only worker. No client can (bodies arrive before a worker is given the
    // request), so the worker is made to wait on the filesystem: opening a FIFO for reading
    // blocks until the test opens it for writing.
    let fifo = dir.0.join("bk1/fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let mut blocker = TcpStream::connect(s.addr).unwrap();
    blocker
        .write_all(b"GET /bk1/fifo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    wait_for_fifo_reader();
    let (tx, rx) = std::sync::mpsc::channel();
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let tx = tx.clone();
            let addr = s.addr;
            std::thread::spawn(move || {
                let req =
                    format!("GET /bk1?n={i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let r = raw_exchange(addr, req.as_bytes(), false);
                tx.send((r.status, r.code())).unwrap();
            })
        })
        .collect();
    // Of three more requests one fits the queue: the other two are shed with 503.
    let mut shed = 0;
    while shed < 2 {
        let (status, code) = rx.recv().unwrap();
        if status == 503 {
            assert_eq!(code, "SlowDown");
            shed += 1;
        }
    }
    // A request with a body is never shed (its body could not be drained safely): it waits.
    let addr = s.addr;
    let put = std::thread::spawn(move || {
        raw_exchange(addr, b"PUT /bk1/waits HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nw", false).status
    });
    // Release the worker. It may open the FIFO more than once while it serves the GET, so a
    // writer keeps coming until the answer is in.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let releaser = {
        let done = done.clone();
        std::thread::spawn(move || {
            use std::os::unix::fs::OpenOptionsExt;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let writer = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                    .open(&fifo);
                if writer.is_err() {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        })
    };
    let r = read_response(&mut std::io::BufReader::new(blocker), false);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    releaser.join().unwrap();
    assert!(r.status == 200 || r.status >= 400, "{}", r.status);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(put.join().unwrap(), 200);
}

#[test]
fn refused_expect_continue_requests_get_no_100_and_pin_no_worker() {
    let dir = TempDir::new();
    let mut c = s3serve::config::Config::for_tests(s3serve::config::Storage::Local(dir.0.clone()));
    c.workers = 1;
    c.auth_keys = vec![(AK.into(), SK.into())];
    let s = start(c);
    // Refused from its head (an unsigned PUT): the answer comes at once, with no `100`
    // before it, and the body is never asked for.
    let conn = TcpStream::connect(s.addr).unwrap();
    (&conn)
        .write_all(
            b"PUT /bk1/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        )
        .unwrap();
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    let r = read_response(&mut reader, false);
    assert_eq!((r.status, r.code().as_str()), (403, "AccessDenied"));
    // The only worker is free while that connection stays open.
    let r = s.raw("GET", "/", &[], b"");
    assert_eq!(r.status, 403);
    drop(conn);
}

#[test]
fn unix_socket_listener_replaces_a_stale_socket_and_skips_auth() {
    use std::os::unix::net::{UnixListener, UnixStream};
    let dir = TempDir::new();
    let sock = dir.0.join("s3.sock");
    drop(UnixListener::bind(&sock).unwrap()); // a stale socket file left by a previous run
    let mut c = config(&dir.0.join("data"));
    c.unix_sockets = vec![sock.clone()];
    let s = start(c);
    let mut u = UnixStream::connect(&sock).unwrap();
    u.write_all(b"PUT /viaunix HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut reader = std::io::BufReader::new(u.try_clone().unwrap());
    assert_eq!(read_response(&mut reader, false).status, 200);
    u.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let r = read_response(&mut reader, false);
    assert!(r.text().contains("<Name>viaunix</Name>"), "{}", r.text());
    // The TCP listener of the same server still demands signatures.
    assert_eq!(s.raw("GET", "/", &[], b"").status, 403);
    // A path that is not a socket is never removed.
    let plain = dir.0.join("plain");
    std::fs::write(&plain, b"keep").unwrap();
    let mut c = config(&dir.0.join("data2"));
    c.unix_sockets = vec![plain.clone()];
    assert!(s3serve::server::start(&c).is_err());
    assert_eq!(std::fs::read(&plain).unwrap(), b"keep");
}

#[test]
fn pipelined_gets_of_large_objects_come_back_whole_and_in_order() {
    // Bodies of 64 KiB and more are sent by the relay from the file; pipelined requests can
    // be answered by two workers at once, and each body must still follow its own head.
    let dir = TempDir::new();
    let s = anon(&dir);
    s.raw("PUT", "/bk1", &[], b"");
    let a: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..200_000u32).map(|i| (i % 239) as u8).collect();
    assert_eq!(s.raw("PUT", "/bk1/a", &[], &a).status, 200);
    assert_eq!(s.raw("PUT", "/bk1/b", &[], &b).status, 200);
    let mut conn = TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut reqs = Vec::new();
    for key in ["a", "b", "a", "b"] {
        reqs.extend_from_slice(format!("GET /bk1/{key} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    reqs.extend_from_slice(b"GET /bk1/b HTTP/1.1\r\nHost: x\r\nRange: bytes=100-70099\r\n\r\n");
    conn.write_all(&reqs).unwrap();
    let mut r = std::io::BufReader::new(conn);
    for want in [&a, &b, &a, &b] {
        let got = read_response(&mut r, false);
        assert_eq!(got.status, 200);
        assert!(got.body == *want, "a body came back wrong");
    }
    let got = read_response(&mut r, false);
    assert_eq!(got.status, 206);
    assert!(got.body == b[100..70100], "the ranged body came back wrong");
}

/// A client socket with a small receive buffer, so that answers back up at once.
fn small_window_client(addr: std::net::SocketAddr) -> TcpStream {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    sockopt::set_socket_recv_buffer_size(&fd, 4096).unwrap();
    rustix::net::connect(&fd, &addr).unwrap();
    TcpStream::from(fd)
}

#[test]
fn a_client_that_reads_no_answers_holds_no_worker() {
    // Memory storage: no answer is a file the relay could send by itself.
    let mut c = s3serve::config::Config::for_tests(s3serve::config::Storage::Memory);
    c.workers = 1;
    let s = start(c);
    s.raw("PUT", "/bk1", &[], b"");
    let big = vec![7u8; 16 << 20];
    assert_eq!(s.raw("PUT", "/bk1/big", &[], &big).status, 200);
    let mid = vec![8u8; 100 << 10];
    assert_eq!(s.raw("PUT", "/bk1/mid", &[], &mid).status, 200);
    let long = "k".repeat(200);
    for i in 0..800 {
        let r = s.raw("PUT", &format!("/bk1/list/{long}{i}"), &[], b"x");
        assert_eq!(r.status, 200);
    }
    // One request for a large object, then pipelined ones whose answers would fill every
    // buffer between a worker and this client; none of it is ever read.
    let stalled = small_window_client(s.addr);
    let mut reqs = String::from("GET /bk1/big HTTP/1.1\r\nHost: x\r\n\r\n");
    for _ in 0..8 {
        reqs.push_str("GET /bk1/mid HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    reqs.push_str("GET /bk1?list-type=2&prefix=list/ HTTP/1.1\r\nHost: x\r\n\r\n");
    (&stalled).write_all(reqs.as_bytes()).unwrap();
    // The only worker stays free for others.
    for _ in 0..3 {
        let r = s.raw("GET", "/bk1?list-type=2&prefix=list/", &[], b"");
        assert_eq!(r.status, 200);
        assert_eq!(s.raw("GET", "/bk1/mid", &[], b"").body, mid);
    }
    drop(stalled);
}

#[test]
fn a_chunked_body_past_the_request_limit_is_refused_as_it_arrives() {
    let dir = TempDir::new();
    let s = start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Local(dir.0.clone()),
    ));
    s.raw("PUT", "/bk1", &[], b"");
    // A DeleteObjects document may be 2 MiB at most; this one never ends.
    let mut conn = TcpStream::connect(s.addr).unwrap();
    conn.write_all(b"POST /bk1?delete HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = [b"100000\r\n".as_slice(), &[b'x'; 1 << 20], b"\r\n"].concat();
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    let writer = std::thread::spawn(move || {
        // Stops when the server closes the connection.
        for _ in 0..64 {
            if conn.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let r = read_response(&mut reader, false);
    assert_eq!((r.status, r.code().as_str()), (400, "EntityTooLarge"));
    writer.join().unwrap();
    let spool = dir.0.join(".s3serve/spool");
    assert_eq!(std::fs::read_dir(spool).unwrap().count(), 0);
}
