//! One client connection, relayed to tiny_http over the internal unix socket. The relay
//! reads every request head itself, so limits hold before tiny_http or a worker sees a byte:
//! heads are size-limited and must arrive in time, bodies are framed by the relay (a bad
//! length never desynchronises the connection), a stalled client is cut off, and a client
//! that stops reading its answers is too. It adds one header to each head, telling the
//! worker who the peer is. The connection to tiny_http is opened at the first complete head,
//! through the hand-off gate (see [`Gate`]).

mod buffers;
mod flow;
mod frame;
mod gate;
mod inner;
mod refuse;
mod side;
#[cfg(test)]
mod tests;

use std::io;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::head;
use crate::s3::admit::Admission;
use crate::s3::http::FileBodies;
use crate::s3::spool::{SpoolDir, Spools};
use buffers::{Input, Output};
use frame::Phase;
pub use gate::Gate;
use inner::{still_open, Inner};
pub use side::{Plain, Side};

/// Request bytes buffered per connection. A head must fit, with room for the added header.
const IN_BUF: usize = 256 * 1024;
/// Room kept free in the request buffer for the header the relay adds.
const HEAD_SLACK: usize = 512;
/// Response bytes buffered per connection: one read of what a worker writes at once.
const OUT_BUF: usize = 256 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Checks a request head (its bytes, and the peer as in the relay header).
pub type Admit = dyn Fn(&[u8], &str) -> Admission + Send + Sync;

/// The timeouts and limits of `--server-read-timeout`, `--server-write-timeout`,
/// `--idle-timeout` and `--max-header-bytes`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest head accepted, request line included.
    pub max_head: usize,
    /// A request, head and body, must arrive within this of its first byte.
    pub read_timeout: Duration,
    /// The answer to a request must be written within this of its head.
    pub write_timeout: Duration,
    /// Longest silence: between requests, inside a head or body, or from a client that does
    /// not read what it is sent.
    pub idle_timeout: Duration,
}

/// What every relay shares.
pub struct Shared {
    pub limits: Limits,
    /// tiny_http's internal listener (replaced if its accept loop has to be restarted).
    pub inner_path: std::sync::RwLock<std::path::PathBuf>,
    /// Counts those restarts; a connection to an older tiny_http is left when it is quiet.
    pub inner_generation: std::sync::atomic::AtomicU32,
    pub gate: Gate,
    /// A per-process secret in the relay header: a request without it did not come through
    /// a relay.
    pub token: String,
    /// Shutting down: connections close as soon as they are idle.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Becomes readable (and stays so) at shutdown; every relay polls it.
    pub stop_signal: std::os::fd::OwnedFd,
    /// Requests passed on that no worker has taken yet.
    pub queued: std::sync::atomic::AtomicUsize,
    /// Past this many queued requests, those without a body get 503 SlowDown at once.
    pub queue_cap: usize,
    /// File bodies workers leave for relays to send.
    pub file_bodies: std::sync::Arc<FileBodies>,
    /// Decides whether a body may come, from its head.
    pub admit: Box<Admit>,
    /// Where bodies too large for a relay's buffer wait, and how workers find them.
    pub spool: std::sync::Arc<SpoolDir>,
    pub spools: std::sync::Arc<Spools>,
    /// Body bytes held in relay buffers, and the most allowed; past it bodies are spooled.
    pub held: std::sync::atomic::AtomicUsize,
    pub held_cap: usize,
}

struct Relay<'a> {
    side: &'a mut dyn Side,
    shared: &'a Shared,
    id: u64,
    /// `tcp 1.2.3.4:5`, `tls 1.2.3.4:5` or `unix`.
    peer: &'a str,
    input: Input,
    output: Output,
    inner: Inner,
    clocks: Clocks,
    phase: Phase,
    /// A `100 Continue` is owed to the client, sent once earlier answers are out.
    continue_due: bool,
    /// The sequence number of the next request passed on.
    req_seq: u64,
    /// The answer for a refused request, sent once tiny_http's answers are all out.
    refusal: Option<Vec<u8>>,
    refusal_sent: bool,
}

/// When things last happened, for the limits.
struct Clocks {
    /// The first byte of a head still incomplete.
    head_started: Option<Instant>,
    /// The first byte of the request whose body is arriving.
    request_started: Instant,
    /// When the first request still unanswered was passed on.
    head_forwarded: Option<Instant>,
    last_in: Instant,
    last_inner: Instant,
    last_out: Instant,
}

/// What a relay thread keeps from one client to the next: its buffers, and its connection
/// to tiny_http when the last client ended between requests (the next one then skips the
/// hand-off).
#[derive(Default)]
pub struct Kept {
    inner: Option<(UnixStream, u32)>,
    inb: Box<[u8]>,
    outb: Box<[u8]>,
}

/// Relays one connection until either end closes or a limit is hit.
pub fn serve(side: &mut dyn Side, peer: &str, id: u64, shared: &Shared, kept: &mut Kept) {
    let now = Instant::now();
    let current = shared
        .inner_generation
        .load(std::sync::atomic::Ordering::Acquire);
    let (inner, inner_gen) = match kept.inner.take() {
        Some((s, g)) if g == current && still_open(&s) => (Some(s), g),
        _ => (None, current),
    };
    shared.file_bodies.open(id);
    let mut r = Relay {
        side,
        shared,
        id,
        peer,
        input: Input::new(std::mem::take(&mut kept.inb)),
        output: Output::new(std::mem::take(&mut kept.outb)),
        inner: Inner {
            stream: inner,
            gen: inner_gen,
            doomed: false,
            shut: false,
            eof: false,
        },
        clocks: Clocks {
            head_started: None,
            request_started: now,
            head_forwarded: None,
            last_in: now,
            last_inner: now,
            last_out: now,
        },
        phase: Phase::Head,
        continue_due: false,
        req_seq: 0,
        refusal: None,
        refusal_sent: false,
    };
    match r.run() {
        Ok(()) => {
            r.side.close();
            if r.refusal_sent && !r.input.eof {
                r.linger();
            }
        }
        Err(e) => log::debug!("connection {id} ({peer}): {e}"),
    }
    r.set_phase(Phase::Head);
    shared.gate.release(id);
    if r.reusable() {
        kept.inner = r.inner.stream.take().map(|s| (s, r.inner.gen));
    }
    kept.inb = std::mem::take(&mut r.input.buf);
    kept.outb = std::mem::take(&mut r.output.buf);
    shared.file_bodies.close(id);
    shared.spools.close(id);
}

impl Relay<'_> {
    fn run(&mut self) -> io::Result<()> {
        loop {
            if self.finished() {
                return Ok(());
            }
            if self.continue_due {
                self.send_continue();
            }
            self.frame_deferred()?;
            let want_in = self.wants_input();
            if want_in && self.input.more {
                self.read_client()?;
                continue;
            }
            let mut client_ev = PollFlags::empty();
            if want_in || self.side.needs_read() {
                client_ev |= PollFlags::IN;
            }
            // A file body a worker is still writing, with nothing more on disk yet: wait for
            // the worker's signal, not for the socket (which would wake at once, and again).
            let growth = self.waiting_growth();
            if (self.output.start < self.output.end || self.output.file.is_some())
                && growth.is_none()
                || self.side.buffered()
            {
                client_ev |= PollFlags::OUT;
            }
            let mut inner_ev = PollFlags::empty();
            if self.inner.stream.is_some() {
                if !self.inner.eof && self.output.end < OUT_BUF {
                    inner_ev |= PollFlags::IN;
                }
                if self.input.framed() {
                    inner_ev |= PollFlags::OUT;
                }
            }
            if self.is_idle()
                && self
                    .shared
                    .stopping
                    .load(std::sync::atomic::Ordering::Acquire)
            {
                return Ok(());
            }
            let timeout = self.check_deadlines()?;
            let ts = Timespec {
                tv_sec: timeout.as_secs() as i64,
                tv_nsec: timeout.subsec_nanos() as i64,
            };
            let (cr, ir, gr) = {
                let cfd = self.side.fd();
                let stop_ev = if self
                    .shared
                    .stopping
                    .load(std::sync::atomic::Ordering::Acquire)
                {
                    PollFlags::empty()
                } else {
                    PollFlags::IN
                };
                let stop = PollFd::new(&self.shared.stop_signal, stop_ev);
                let mut fds = [
                    PollFd::from_borrowed_fd(cfd, client_ev),
                    stop.clone(),
                    stop.clone(),
                    stop,
                ];
                let mut n = 2;
                let inner_at = self.inner.stream.as_ref().map(|inner| {
                    fds[n] = PollFd::new(inner, inner_ev);
                    n += 1;
                    n - 1
                });
                let growth_at = growth.as_ref().map(|g| {
                    fds[n] = PollFd::from_borrowed_fd(g.fd(), PollFlags::IN);
                    n += 1;
                    n - 1
                });
                match poll(&mut fds[..n], Some(&ts)) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                let ev = |at: Option<usize>| at.map_or(PollFlags::empty(), |i| fds[i].revents());
                (fds[0].revents(), ev(inner_at), ev(growth_at))
            };
            if !gr.is_empty() {
                if let Some(g) = &growth {
                    g.drain();
                }
                self.write_client()?;
            }
            let hup = PollFlags::HUP | PollFlags::ERR;
            if cr.intersects(PollFlags::IN | hup) && (want_in || self.side.needs_read()) {
                self.read_client()?;
            }
            if ir.intersects(PollFlags::OUT | hup) {
                self.write_inner()?;
            }
            if ir.intersects(PollFlags::IN | hup) {
                self.read_inner()?;
            }
            if cr.intersects(PollFlags::OUT | hup) || self.side.buffered() {
                self.write_client()?;
            }
            if cr.intersects(hup) && !want_in && !cr.contains(PollFlags::IN) {
                // The client is gone and nothing more will be read from it.
                if cr.contains(PollFlags::ERR) {
                    return Err(io::Error::other("client connection error"));
                }
            }
        }
    }

    /// The file body being sent, when everything before it is out and the worker writing
    /// it has put nothing more on disk yet.
    fn waiting_growth(&self) -> Option<std::sync::Arc<crate::s3::growing::Growth>> {
        let body = self.output.file.as_ref()?;
        let g = body.growing.as_ref()?;
        let head_sent = self.output.start >= self.output.file_at;
        (head_sent && g.ready(body.offset) == crate::s3::growing::Ready::Wait).then(|| g.clone())
    }

    /// Between requests, with nothing in flight in either direction.
    fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head)
            && self.clocks.head_started.is_none()
            && self.input.end == 0
            && self.output.drained()
            && !self.side.buffered()
            && !self.awaiting()
    }

    /// A request was passed on and its answer is not complete.
    fn awaiting(&self) -> bool {
        self.output.resp.awaiting() && !self.inner.eof
    }

    fn wants_input(&self) -> bool {
        if self.input.eof || matches!(self.phase, Phase::Refused) {
            return false;
        }
        self.input.end + HEAD_SLACK < IN_BUF
    }

    /// Everything is said: tiny_http closed and its answers (and any refusal) are out; or
    /// the client left before a request was made.
    fn finished(&self) -> bool {
        let out_empty = self.output.drained() && !self.side.buffered();
        if !out_empty {
            return false;
        }
        if self.refusal.is_some() && !self.refusal_sent {
            return false;
        }
        match &self.inner.stream {
            Some(_) => self.inner.eof || (self.input.eof && self.reusable()),
            None => self.input.eof || self.refusal_sent,
        }
    }

    /// Between requests on both sides: the connection to tiny_http can serve another client.
    fn reusable(&self) -> bool {
        self.inner.stream.is_some()
            && !self.inner.eof
            && !self.inner.shut
            && !self.inner.doomed
            && self.refusal.is_none()
            && matches!(self.phase, Phase::Head)
            && self.clocks.head_started.is_none()
            && self.input.end == 0
            && self.output.drained()
            && self.output.resp.idle()
    }

    /// Fails when a limit is passed; otherwise returns how long poll may wait.
    fn check_deadlines(&self) -> io::Result<Duration> {
        let l = &self.shared.limits;
        let now = Instant::now();
        let mut next = Duration::from_secs(3600);
        let mut check = |since: Instant, limit: Duration, what: &str| -> io::Result<()> {
            let left = (since + limit).saturating_duration_since(now);
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, what.to_string()));
            }
            next = next.min(left);
            Ok(())
        };
        let out_pending = self.output.start < self.output.end
            || self.output.file.is_some()
            || self.side.buffered();
        let awaiting = self.awaiting();
        if out_pending {
            check(
                self.clocks.last_out,
                l.idle_timeout,
                "the client stopped reading",
            )?;
        }
        if let Some(h) = self.clocks.head_forwarded {
            if out_pending || awaiting {
                check(h, l.write_timeout, "--server-write-timeout")?;
            }
        }
        match &self.phase {
            Phase::Refused => {}
            Phase::Head => {
                if let Some(started) = self.clocks.head_started {
                    check(started, l.idle_timeout, "a request head arrived too slowly")?;
                    check(started, l.read_timeout, "--server-read-timeout")?;
                } else if !out_pending && !awaiting && !self.input.eof {
                    let last = self
                        .clocks
                        .last_in
                        .max(self.clocks.last_out)
                        .max(self.clocks.last_inner);
                    check(last, l.idle_timeout, "idle")?;
                }
            }
            Phase::Hold { .. } | Phase::Spool { .. } => {
                if self.wants_input() {
                    check(
                        self.clocks.last_in,
                        l.idle_timeout,
                        "a request body stalled",
                    )?;
                }
                check(
                    self.clocks.request_started,
                    l.read_timeout,
                    "--server-read-timeout",
                )?;
            }
        }
        Ok(next)
    }
}
