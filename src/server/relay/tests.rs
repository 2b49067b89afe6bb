//! The relay over socket pairs: a client end the test drives, and a stand-in for tiny_http
//! that records each request it is passed and answers `ok`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::*;
use crate::s3::admit::Accepted;

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// One request as the stand-in for tiny_http received it.
struct Passed {
    head: String,
    body: Vec<u8>,
}

struct Rig {
    client: UnixStream,
    shared: Arc<Shared>,
    relay: Option<std::thread::JoinHandle<()>>,
    passed: mpsc::Receiver<Passed>,
    /// The stand-in accepted a connection from the relay.
    reached: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    dir: PathBuf,
}

fn accept_all(_: &[u8], _: &str) -> Admission {
    Admission::Accept(Accepted::default())
}

fn rig(name: &str, admit: Box<Admit>, held_cap: usize) -> Rig {
    let dir = std::env::temp_dir().join(format!("s3serve-relay-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let inner_path = dir.join("inner.sock");
    let listener = UnixListener::bind(&inner_path).unwrap();
    listener.set_nonblocking(true).unwrap();
    // The write end is kept open (leaked) so that the stop signal never fires.
    let (stop_signal, stop_writer) = rustix::pipe::pipe().unwrap();
    std::mem::forget(stop_writer);
    let shared = Arc::new(Shared {
        limits: Limits {
            max_head: 8192,
            read_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        },
        inner_path: std::sync::RwLock::new(inner_path),
        inner_generation: AtomicU32::new(0),
        gate: Gate::default(),
        token: "tok".into(),
        stopping: AtomicBool::new(false),
        stop_signal,
        queued: AtomicUsize::new(0),
        queue_cap: 8,
        file_bodies: Default::default(),
        admit,
        spool: Arc::new(SpoolDir::open(&dir.join("spool"), 0o600).unwrap()),
        spools: Default::default(),
        held: AtomicUsize::new(0),
        held_cap,
    });
    let (tx, passed) = mpsc::channel();
    let reached = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    {
        let (reached, done) = (reached.clone(), done.clone());
        std::thread::spawn(move || stand_in(listener, tx, &reached, &done));
    }
    let (client, relay_end) = UnixStream::pair().unwrap();
    relay_end.set_nonblocking(true).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let relay = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let mut side = Plain(relay_end);
            serve(&mut side, "unix", 7, &shared, &mut Kept::default());
        })
    };
    Rig {
        client,
        shared,
        relay: Some(relay),
        passed,
        reached,
        done,
        dir,
    }
}

/// tiny_http's stand-in: accepts the relay's connection, and answers every request.
fn stand_in(
    listener: UnixListener,
    tx: mpsc::Sender<Passed>,
    reached: &AtomicBool,
    done: &AtomicBool,
) {
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(_) if !done.load(Ordering::Acquire) => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return,
        }
    };
    reached.store(true, Ordering::Release);
    conn.set_nonblocking(false).unwrap();
    let mut buf = Vec::new();
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let mut chunk = [0u8; 65536];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
        let len: usize = head
            .to_ascii_lowercase()
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < end + 4 + len {
            let mut chunk = [0u8; 65536];
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[end + 4..end + 4 + len].to_vec();
        buf.drain(..end + 4 + len);
        if conn.write_all(ANSWER).is_err() || tx.send(Passed { head, body }).is_err() {
            return;
        }
    }
}

impl Rig {
    fn send(&mut self, bytes: &[u8]) {
        self.client.write_all(bytes).unwrap();
    }

    fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        self.client.read_exact(&mut out).unwrap();
        out
    }

    /// Everything the client is sent until the relay closes the connection.
    fn read_to_end(&mut self) -> String {
        let mut out = Vec::new();
        self.client.read_to_end(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn next_passed(&self) -> Passed {
        self.passed.recv_timeout(Duration::from_secs(30)).unwrap()
    }

    /// Ends the client's side and waits for the relay to finish.
    fn finish(&mut self) {
        let _ = self.client.shutdown(std::net::Shutdown::Write);
        let _ = self.read_to_end();
        self.relay.take().unwrap().join().unwrap();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_small_body_is_passed_on_whole_behind_its_rewritten_head() {
    let mut r = rig("small", Box::new(accept_all), 1 << 20);
    r.send(
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nx-s3serve-relay: forged\r\nContent-Length: 5\r\n\r\nhe",
    );
    r.send(b"llo");
    let p = r.next_passed();
    assert_eq!(p.body, b"hello");
    assert_eq!(p.head.matches("x-s3serve-relay").count(), 1, "{}", p.head);
    assert!(
        p.head.contains("x-s3serve-relay: tok 7 1 0 0 unix\r\n"),
        "{}",
        p.head
    );
    assert_eq!(r.read_exact(ANSWER.len()), ANSWER);
    r.finish();
    assert_eq!(r.shared.held.load(Ordering::Acquire), 0);
}

#[test]
fn a_body_cut_short_is_answered_by_the_relay_and_never_passed_on() {
    let mut r = rig("short", Box::new(accept_all), 1 << 20);
    r.send(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf");
    r.client.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = r.read_to_end();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(answer.contains("<Code>IncompleteBody</Code>"), "{answer}");
    r.relay.take().unwrap().join().unwrap();
    assert!(!r.reached.load(Ordering::Acquire));
    assert_eq!(r.shared.held.load(Ordering::Acquire), 0);
}

#[test]
fn a_refused_head_gets_its_answer_and_no_100_and_nothing_is_passed_on() {
    let refuse = |_: &[u8], _: &str| {
        Admission::Refuse(
            b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec(),
        )
    };
    let mut r = rig("refused", Box::new(refuse), 1 << 20);
    r.send(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n");
    let answer = r.read_to_end();
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    r.client.shutdown(std::net::Shutdown::Write).unwrap();
    r.relay.take().unwrap().join().unwrap();
    assert!(!r.reached.load(Ordering::Acquire));
}

#[test]
fn an_accepted_expect_head_gets_100_from_the_relay_before_the_body() {
    let mut r = rig("expect", Box::new(accept_all), 1 << 20);
    r.send(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(r.read_exact(CONTINUE.len()), CONTINUE);
    r.send(b"abc");
    let p = r.next_passed();
    assert_eq!(p.body, b"abc");
    let lower = p.head.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nx-s3serve-orig-expect: 100-continue\r\n"),
        "{}",
        p.head
    );
    assert!(!lower.contains("\r\nexpect:"), "{}", p.head);
    assert_eq!(r.read_exact(ANSWER.len()), ANSWER);
    r.finish();
}

#[test]
fn a_body_past_the_shared_budget_is_spooled_and_the_head_says_so() {
    let mut r = rig("spooled", Box::new(accept_all), 0);
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    r.send(
        format!(
            "PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    r.send(&body);
    let p = r.next_passed();
    assert!(p.body.is_empty());
    let lower = p.head.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nx-s3serve-orig-content-length: 300000\r\n"),
        "{}",
        p.head
    );
    assert!(
        p.head.contains("x-s3serve-relay: tok 7 1 0 1 unix\r\n"),
        "{}",
        p.head
    );
    let mut spooled = r
        .shared
        .spools
        .take(7, 0)
        .expect("the body is in the spool");
    assert_eq!(spooled.len, body.len() as u64);
    let mut got = Vec::new();
    spooled.file.read_to_end(&mut got).unwrap();
    assert_eq!(got, body);
    assert_eq!(r.read_exact(ANSWER.len()), ANSWER);
    r.finish();
}

#[test]
fn a_chunked_body_is_decoded_into_the_spool() {
    let mut r = rig("chunked", Box::new(accept_all), 1 << 20);
    r.send(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    r.send(b"6\r\n world\r\n0\r\n\r\n");
    let p = r.next_passed();
    assert!(p
        .head
        .to_ascii_lowercase()
        .contains("\r\nx-s3serve-orig-transfer-encoding: chunked\r\n"));
    let mut spooled = r
        .shared
        .spools
        .take(7, 0)
        .expect("the body is in the spool");
    let mut got = String::new();
    spooled.file.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello world");
    r.finish();
}

#[test]
fn pipelined_requests_are_passed_on_in_order() {
    let mut r = rig("pipelined", Box::new(accept_all), 1 << 20);
    r.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nzGET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    let lines: Vec<String> = (0..3)
        .map(|_| r.next_passed().head.lines().next().unwrap().to_string())
        .collect();
    assert_eq!(
        lines,
        ["GET /a HTTP/1.1", "PUT /b/k HTTP/1.1", "GET /c HTTP/1.1"]
    );
    assert_eq!(r.read_exact(3 * ANSWER.len()), ANSWER.repeat(3));
    r.finish();
}

#[test]
fn a_head_past_the_limit_gets_431_and_nothing_is_passed_on() {
    let mut r = rig("large", Box::new(accept_all), 1 << 20);
    let filler = "a".repeat(10_000);
    r.send(format!("GET / HTTP/1.1\r\nHost: x\r\nx-filler: {filler}\r\n\r\n").as_bytes());
    let answer = r.read_to_end();
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    r.client.shutdown(std::net::Shutdown::Write).unwrap();
    r.relay.take().unwrap().join().unwrap();
    assert!(!r.reached.load(Ordering::Acquire));
}
