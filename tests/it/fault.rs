//! A fault proxy between a gateway and its upstream. Each connection carries one request:
//! the proxy reads its head and body, then, as its plan says, answers with an error status
//! itself, cuts the request or the answer short after some bytes, holds it unanswered, or
//! forwards it (with `Connection: close`) and relays the answer. It can be stopped, after
//! which nothing listens at its address.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the proxy does to the requests that come next.
#[derive(Default)]
pub struct Plan {
    /// Answer this many requests with this status, without asking the upstream.
    pub fail: Option<(u16, u32)>,
    /// Forward only the first K bytes of this many requests, then drop both sides.
    pub cut_requests: Option<(usize, u32)>,
    /// Relay only the first K bytes of this many answers, then drop both sides.
    pub cut_answers: Option<(usize, u32)>,
    /// Leave every request unanswered until the proxy stops.
    pub stall: bool,
    /// When set, the faults above apply only to requests whose head contains this text.
    pub only: Option<String>,
    /// Run once, before forwarding the first request whose head contains the text.
    pub before: Option<(String, Box<dyn FnOnce() + Send>)>,
    /// The head of every request seen.
    pub seen: Vec<String>,
}

/// Takes one use of a counted fault, if any are left.
fn take<T: Copy>(slot: &mut Option<(T, u32)>) -> Option<T> {
    let (value, left) = slot.as_mut()?;
    let v = *value;
    *left -= 1;
    if *left == 0 {
        *slot = None;
    }
    Some(v)
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    pub plan: Arc<Mutex<Plan>>,
    stopped: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl FaultProxy {
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let plan = Arc::new(Mutex::new(Plan::default()));
        let stopped = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (p, s, o) = (plan.clone(), stopped.clone(), open.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    o.lock().unwrap().push(c);
                }
                let (p, s) = (p.clone(), s.clone());
                thread::spawn(move || serve(conn, upstream, &p, &s));
            }
        });
        FaultProxy {
            addr,
            plan,
            stopped,
            open,
        }
    }

    pub fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap()
    }

    /// Closes the listener and every connection: the upstream is gone.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The request head (up to its blank line) and its body.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn serve(conn: TcpStream, upstream: SocketAddr, plan: &Mutex<Plan>, stopped: &AtomicBool) {
    let mut client = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    let Some((head, body)) = read_request(&mut reader) else {
        return;
    };
    let (fail, cut_request, cut_answer, stall, before) = {
        let mut p = plan.lock().unwrap();
        p.seen.push(head.clone());
        let hook = match &p.before {
            Some((needle, _)) if head.contains(needle.as_str()) => p.before.take().map(|b| b.1),
            _ => None,
        };
        if p.only.as_ref().is_some_and(|t| !head.contains(t.as_str())) {
            (None, None, None, false, hook)
        } else {
            (
                take(&mut p.fail),
                take(&mut p.cut_requests),
                take(&mut p.cut_answers),
                p.stall,
                hook,
            )
        }
    };
    if stall {
        while !stopped.load(Ordering::SeqCst) {
            let mut b = [0; 1];
            if matches!(reader.read(&mut b), Ok(0) | Err(_)) {
                return;
            }
        }
        return;
    }
    if let Some(status) = fail {
        let doc = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>injected</Message></Error>",
            if status == 503 { "SlowDown" } else { "InternalError" }
        );
        let _ = write!(
            client,
            "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}",
            doc.len()
        );
        return;
    }
    if let Some(hook) = before {
        hook();
    }
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let mut forwarded: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .flat_map(|l| [l, "\r\n"])
        .collect::<String>()
        .into_bytes();
    forwarded.extend_from_slice(b"Connection: close\r\n\r\n");
    forwarded.extend_from_slice(&body);
    if let Some(k) = cut_request {
        let _ = up.write_all(&forwarded[..k.min(forwarded.len())]);
        let _ = up.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    if up.write_all(&forwarded).is_err() {
        return;
    }
    let mut sent = 0usize;
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match up.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = match cut_answer {
            Some(k) if sent + n >= k => {
                let _ = client.write_all(&buf[..k - sent]);
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            _ => n,
        };
        if client.write_all(&buf[..n]).is_err() {
            return;
        }
        sent += n;
    }
    let _ = client.shutdown(Shutdown::Both);
}
