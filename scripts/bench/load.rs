//! A small HTTP/1.1 load generator for the benchmarks (`scripts/bench.py`): keep-alive or
//! a new connection per request, GET or PUT, N parallel streams, unsigned requests (the
//! servers under test run without --auth-key). Prints one JSON line with the totals.
//!
//! load MODE ADDR PATH [--conns N] [--secs S] [--bytes N]
//!   MODE: get (keep-alive GETs), churn (a new connection per GET), put (keep-alive PUTs of
//!   --bytes each), getonce (one GET per stream, for big objects), putonce (one PUT per stream)

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// The HTTP client of s3bench; this tool needs no answer headers beyond the framing.
#[path = "s3bench/http.rs"]
#[allow(dead_code)]
mod http;

use http::Conn;

const BUF: usize = 1 << 20;

/// Sends one unsigned request and reads the whole answer; returns (status, body bytes, close).
fn request(
    c: &mut Conn,
    method: &str,
    path: &str,
    body: u64,
    chunk: &[u8],
) -> io::Result<(u16, u64, bool)> {
    let head = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {body}\r\n\r\n");
    c.send(head.as_bytes())?;
    let mut left = body;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        c.send(&chunk[..n])?;
        left -= n as u64;
    }
    let a = c.read_head()?;
    let len = c.read_body(&a, method == "HEAD", &mut |_| Ok(()))?;
    Ok((a.status, len, a.close))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().expect("MODE");
    let addr = args.next().expect("ADDR");
    let path = args.next().expect("PATH");
    let (mut conns, mut secs, mut bytes) = (1usize, 5f64, 0u64);
    while let Some(a) = args.next() {
        let v = args.next().expect("value");
        match a.as_str() {
            "--conns" => conns = v.parse().unwrap(),
            "--secs" => secs = v.parse().unwrap(),
            "--bytes" => bytes = v.parse().unwrap(),
            _ => panic!("unknown {a}"),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reqs = Arc::new(AtomicU64::new(0));
    let moved = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            let (mode, addr, stop, reqs, moved, errors) = (
                mode.clone(),
                addr.clone(),
                stop.clone(),
                reqs.clone(),
                moved.clone(),
                errors.clone(),
            );
            let path = path.replace("{i}", &i.to_string());
            std::thread::spawn(move || {
                let chunk = vec![0x5au8; BUF];
                let mut conn: Option<Conn> = None;
                let once = mode.ends_with("once");
                loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if conn.is_none() || mode == "churn" {
                        conn = match Conn::open(&addr) {
                            Ok(c) => Some(c),
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(1));
                                continue;
                            }
                        };
                    }
                    let c = conn.as_mut().unwrap();
                    let (method, body) = if mode.starts_with("put") {
                        ("PUT", bytes)
                    } else {
                        ("GET", 0)
                    };
                    match request(c, method, &path, body, &chunk) {
                        Ok((status, n, close)) if status < 300 => {
                            reqs.fetch_add(1, Ordering::Relaxed);
                            moved.fetch_add(n + body, Ordering::Relaxed);
                            if close {
                                conn = None;
                            }
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                    if once {
                        break;
                    }
                }
            })
        })
        .collect();
    if !mode.ends_with("once") {
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    }
    for t in threads {
        let _ = t.join();
    }
    let el = started.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"{mode}\",\"requests\":{},\"errors\":{},\"secs\":{el:.3},\"rps\":{:.1},\"mibps\":{:.1}}}",
        reqs.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        reqs.load(Ordering::Relaxed) as f64 / el,
        moved.load(Ordering::Relaxed) as f64 / el / 1048576.0
    );
}
