//! One client connection, relayed to tiny_http over the internal unix socket. The relay
//! reads every request head itself, so limits hold before tiny_http or a worker sees a byte:
//! heads are size-limited and must arrive in time, bodies are framed by the relay (a bad
//! length never desynchronises the connection), a stalled client is cut off, and a client
//! that stops reading its answers is too. It adds one header to each head, telling the
//! worker who the peer is. The connection to tiny_http is opened at the first complete head,
//! through the hand-off gate (see [`Gate`]).

mod flow;
mod gate;
mod side;
pub mod spool;

use std::io;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::head::{self, Chunked, Framing, Head, Refusal, Responses};
use crate::ops::{Code, S3Error};
use crate::s3::http::{FileBodies, FileBody};
use crate::s3::spool::Spools;
use crate::vfs::Hashes;
pub use gate::Gate;
pub use side::{Plain, Side};
use spool::{SpoolDir, SpoolError, SpoolWriter};

/// The header the relay adds to every request head (and removes when a client sends it).
pub const RELAY_HEADER: &str = "x-s3serve-relay";

/// Request bytes buffered per connection. A head must fit, with room for the added header.
const IN_BUF: usize = 256 * 1024;
/// Room kept free in the request buffer for the header the relay adds.
const HEAD_SLACK: usize = 512;
/// Response bytes buffered per connection: one read of what a worker writes at once.
const OUT_BUF: usize = 256 * 1024;
/// After refusing a request whose body is still coming, the relay reads and drops this much
/// of it, for at most `LINGER`, so that the client sees the answer rather than a reset.
const LINGER_BYTES: u64 = 8 << 20;
const LINGER: Duration = Duration::from_secs(2);
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the front says about a request head with a body, before the body is read.
pub enum Admission {
    /// The body may come. A spooled body is hashed with `hashes` as it arrives; `durable`:
    /// it will likely become an object, so its write-back starts early.
    Accept {
        hashes: Option<Hashes>,
        durable: bool,
    },
    /// The whole answer refusing the request; the connection closes after it.
    Refuse(Vec<u8>),
}

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

enum Phase {
    Head,
    /// A body arriving in the buffer behind its head, which waits at `in_fwd`: `got` bytes
    /// are there, `left` are still to come. `held` bytes are counted in `Shared::held`.
    Hold {
        head: Head,
        got: usize,
        left: u64,
        held: usize,
    },
    /// A body arriving into a spool file; its head waits at `in_fwd`.
    Spool {
        head: Head,
        spool: SpoolWriter,
        left: BodyLeft,
    },
    /// A refusal is queued; input is ignored.
    Refused,
}

/// What is left of a body being spooled.
enum BodyLeft {
    Length(u64),
    Chunked(Chunked),
}

struct Relay<'a> {
    side: &'a mut dyn Side,
    shared: &'a Shared,
    id: u64,
    /// `tcp 1.2.3.4:5`, `tls 1.2.3.4:5` or `unix`.
    peer: &'a str,
    inner: Option<UnixStream>,
    /// The generation of tiny_http's listener that `inner` reached.
    inner_gen: u32,
    /// A request passed on makes tiny_http close the connection after answering.
    inner_doomed: bool,
    /// The answers coming back, followed to know when the connection is quiet.
    resp: Responses,
    /// Request bytes: `[in_start, in_fwd)` framed and due to tiny_http, `[in_fwd, in_end)`
    /// not yet framed.
    inb: Box<[u8]>,
    in_start: usize,
    in_fwd: usize,
    in_end: usize,
    phase: Phase,
    client_eof: bool,
    inner_shut: bool,
    /// A read filled the buffer: the side may hold more than its socket shows.
    read_more: bool,
    outb: Box<[u8]>,
    /// `outb[..parsed]` has been followed as answers.
    parsed: usize,
    /// A file body a worker left, sent at `file_at` in the answer stream.
    file: Option<FileBody>,
    file_at: usize,
    /// A `100 Continue` is owed to the client, sent once earlier answers are out.
    continue_due: bool,
    /// Sequence numbers of the next request passed on and of the next answer.
    req_seq: u64,
    resp_seq: u64,
    out_start: usize,
    out_end: usize,
    inner_eof: bool,
    /// The answer for a refused request, sent once tiny_http's answers are all out.
    refusal: Option<Vec<u8>>,
    refusal_sent: bool,
    head_started: Option<Instant>,
    request_started: Instant,
    head_forwarded: Option<Instant>,
    /// When the first request still unanswered was passed on.
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
    let mut inb = std::mem::take(&mut kept.inb);
    if inb.len() != IN_BUF {
        inb = vec![0; IN_BUF].into_boxed_slice();
    }
    let mut r = Relay {
        side,
        shared,
        id,
        peer,
        outb: std::mem::take(&mut kept.outb),
        parsed: 0,
        continue_due: false,
        file: None,
        file_at: 0,
        req_seq: 0,
        resp_seq: 0,
        inner,
        inner_gen,
        inner_doomed: false,
        resp: Responses::default(),
        inb,
        in_start: 0,
        in_fwd: 0,
        in_end: 0,
        phase: Phase::Head,
        client_eof: false,
        inner_shut: false,
        read_more: false,
        out_start: 0,
        out_end: 0,
        inner_eof: false,
        refusal: None,
        refusal_sent: false,
        head_started: None,
        request_started: now,
        head_forwarded: None,
        last_in: now,
        last_inner: now,
        last_out: now,
    };
    match r.run() {
        Ok(()) => {
            r.side.close();
            if r.refusal_sent && !r.client_eof {
                r.linger();
            }
        }
        Err(e) => log::debug!("connection {id} ({peer}): {e}"),
    }
    r.set_phase(Phase::Head);
    shared.gate.release(id);
    if r.reusable() {
        kept.inner = r.inner.take().map(|s| (s, r.inner_gen));
    }
    kept.inb = std::mem::take(&mut r.inb);
    kept.outb = std::mem::take(&mut r.outb);
    shared.file_bodies.close(id);
    shared.spools.close(id);
}

/// A kept connection to tiny_http is usable if nothing (not even its end) is waiting on it.
fn still_open(s: &UnixStream) -> bool {
    let mut fds = [PollFd::new(s, PollFlags::IN)];
    matches!(
        poll(
            &mut fds,
            Some(&Timespec {
                tv_sec: 0,
                tv_nsec: 0
            })
        ),
        Ok(0)
    )
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
            let want_in = self.wants_input();
            if want_in && self.read_more {
                self.read_client()?;
                continue;
            }
            let mut client_ev = PollFlags::empty();
            if want_in || self.side.needs_read() {
                client_ev |= PollFlags::IN;
            }
            if self.out_start < self.out_end || self.file.is_some() || self.side.buffered() {
                client_ev |= PollFlags::OUT;
            }
            let mut inner_ev = PollFlags::empty();
            if self.inner.is_some() {
                if !self.inner_eof && self.out_end < OUT_BUF {
                    inner_ev |= PollFlags::IN;
                }
                if self.in_start < self.in_fwd {
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
            let (cr, ir) = {
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
                let mut fds = [PollFd::from_borrowed_fd(cfd, client_ev), stop.clone(), stop];
                let n = match &self.inner {
                    Some(inner) => {
                        fds[2] = PollFd::new(inner, inner_ev);
                        3
                    }
                    None => 2,
                };
                match poll(&mut fds[..n], Some(&ts)) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                (
                    fds[0].revents(),
                    if n == 3 {
                        fds[2].revents()
                    } else {
                        PollFlags::empty()
                    },
                )
            };
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

    /// Between requests, with nothing in flight in either direction.
    fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head)
            && self.head_started.is_none()
            && self.in_end == 0
            && self.out_start == self.out_end
            && self.file.is_none()
            && !self.side.buffered()
            && !self.awaiting()
    }

    /// A request was passed on and its answer is not complete.
    fn awaiting(&self) -> bool {
        self.resp.awaiting() && !self.inner_eof
    }

    fn wants_input(&self) -> bool {
        if self.client_eof || matches!(self.phase, Phase::Refused) {
            return false;
        }
        self.in_end + HEAD_SLACK < IN_BUF
    }

    /// Everything is said: tiny_http closed and its answers (and any refusal) are out; or
    /// the client left before a request was made.
    fn finished(&self) -> bool {
        let out_empty =
            self.out_start == self.out_end && self.file.is_none() && !self.side.buffered();
        if !out_empty {
            return false;
        }
        if self.refusal.is_some() && !self.refusal_sent {
            return false;
        }
        match &self.inner {
            Some(_) => self.inner_eof || (self.client_eof && self.reusable()),
            None => self.client_eof || self.refusal_sent,
        }
    }

    /// Between requests on both sides: the connection to tiny_http can serve another client.
    fn reusable(&self) -> bool {
        self.inner.is_some()
            && !self.inner_eof
            && !self.inner_shut
            && !self.inner_doomed
            && self.refusal.is_none()
            && matches!(self.phase, Phase::Head)
            && self.head_started.is_none()
            && self.in_end == 0
            && self.out_start == self.out_end
            && self.file.is_none()
            && self.resp.idle()
    }

    /// The client ended: tell tiny_http, unless the client ended cleanly between requests
    /// (then the connection is kept for the next client once the answers are out).
    fn client_ended(&mut self) {
        if matches!(self.phase, Phase::Hold { .. } | Phase::Spool { .. }) {
            // Half a body never reaches a worker: it is answered here, and dropped.
            self.refuse(Refusal::Incomplete);
        }
        let clean = matches!(self.phase, Phase::Head)
            && self.head_started.is_none()
            && self.in_end == 0
            && !self.inner_doomed;
        if clean || self.inner_shut {
            return;
        }
        if let Some(inner) = &self.inner {
            if self.in_start == self.in_fwd {
                let _ = inner.shutdown(std::net::Shutdown::Write);
                self.inner_shut = true;
            }
        }
    }

    /// Frames what has arrived: heads are checked, bodies are gathered (in the buffer or a
    /// spool file), and each request is passed on once its body is whole.
    fn frame(&mut self) -> Result<(), Refusal> {
        loop {
            match &mut self.phase {
                Phase::Refused => {
                    self.in_end = self.in_fwd;
                    return Ok(());
                }
                Phase::Head => {
                    if self.in_fwd == self.in_end || !self.frame_head()? {
                        return Ok(());
                    }
                }
                Phase::Hold {
                    head,
                    got,
                    left,
                    held: _,
                } => {
                    let start = self.in_fwd + head.len + *got;
                    let k = (*left).min((self.in_end - start) as u64);
                    *got += k as usize;
                    *left -= k;
                    if *left > 0 {
                        return Ok(());
                    }
                    let (head, body) = (head.clone(), *got);
                    self.set_phase(Phase::Head);
                    self.pass_on(&head, body, false)?;
                }
                Phase::Spool { head, spool, left } => {
                    let start = self.in_fwd + head.len;
                    let pending = &self.inb[start..self.in_end];
                    let mut failed = None;
                    let (used, done) = match left {
                        BodyLeft::Length(n) => {
                            let k = (*n).min(pending.len() as u64) as usize;
                            if let Err(e) = spool.write(&pending[..k]) {
                                failed = Some(e);
                            }
                            *n -= k as u64;
                            (k, *n == 0)
                        }
                        BodyLeft::Chunked(c) => {
                            let k = c.decode(pending, |data| {
                                if failed.is_none() {
                                    failed = spool.write(data).err();
                                }
                            })?;
                            (k, c.done())
                        }
                    };
                    if let Some(e) = failed {
                        return Err(spool_refusal(self.id, e));
                    }
                    self.inb.copy_within(start + used..self.in_end, start);
                    self.in_end -= used;
                    if !done {
                        return Ok(());
                    }
                    let Phase::Spool { head, spool, .. } =
                        std::mem::replace(&mut self.phase, Phase::Head)
                    else {
                        unreachable!("matched above");
                    };
                    let body = spool
                        .finish()
                        .map_err(|e| spool_refusal(self.id, SpoolError::Io(e)))?;
                    self.shared.spools.give(self.id, self.req_seq, body);
                    self.pass_on(&head, 0, true)?;
                }
            }
        }
    }

    /// Frames the head at `in_fwd`; false while it is incomplete. A head without a body is
    /// passed on at once; one with a body is first put to the front, which may refuse it.
    fn frame_head(&mut self) -> Result<bool, Refusal> {
        let now = Instant::now();
        let started = *self.head_started.get_or_insert(now);
        let limit = self.shared.limits.max_head;
        let Some(h) = head::find_head(&self.inb[self.in_fwd..self.in_end], limit)? else {
            return Ok(false);
        };
        self.head_started = None;
        self.request_started = started;
        if h.framing == Framing::Length(0) {
            self.pass_on(&h, 0, false)?;
            return Ok(true);
        }
        let head_bytes = &self.inb[self.in_fwd..self.in_fwd + h.len];
        let (hashes, durable) = match (self.shared.admit)(head_bytes, self.peer) {
            Admission::Refuse(answer) => {
                self.refuse_with(answer);
                return Ok(false);
            }
            Admission::Accept { hashes, durable } => (hashes, durable),
        };
        self.continue_due = h.expects_continue;
        let ordering = std::sync::atomic::Ordering::AcqRel;
        if let Framing::Length(n) = h.framing {
            let fits = (h.len as u64)
                .saturating_add(n)
                .saturating_add(2 * HEAD_SLACK as u64)
                <= IN_BUF as u64;
            let cap = self.shared.held_cap;
            let held = n as usize;
            if fits
                && self
                    .shared
                    .held
                    .fetch_update(ordering, std::sync::atomic::Ordering::Acquire, |x| {
                        (x + held <= cap).then_some(x + held)
                    })
                    .is_ok()
            {
                self.phase = Phase::Hold {
                    head: h,
                    got: 0,
                    left: n,
                    held,
                };
                return Ok(true);
            }
        }
        let (declared, left) = match h.framing {
            Framing::Length(n) => (Some(n), BodyLeft::Length(n)),
            Framing::Chunked => (None, BodyLeft::Chunked(Chunked::default())),
        };
        let spool = self
            .shared
            .spool
            .start(declared, hashes, durable)
            .map_err(|e| spool_refusal(self.id, e))?;
        self.phase = Phase::Spool {
            head: h,
            spool,
            left,
        };
        Ok(true)
    }

    /// Passes on the request whose head `h` is at `in_fwd`, followed by `body` bytes in the
    /// buffer (or by none, its body `spooled`): the head is rewritten with the relay's
    /// header, and the connection to tiny_http opened if this is its first request.
    fn pass_on(&mut self, h: &Head, body: usize, spooled: bool) -> Result<(), Refusal> {
        let now = Instant::now();
        self.leave_stale_inner();
        // The first request on a new connection to tiny_http opens the gate behind it.
        let first = self.inner.is_none();
        let extra = format!(
            "{RELAY_HEADER}: {} {} {} {} {} {}",
            self.shared.token,
            self.id,
            u8::from(first),
            self.req_seq,
            u8::from(spooled),
            self.peer
        );
        // tiny_http must not frame a spooled body, nor answer `100 Continue` itself.
        let rename: &[&str] = match spooled {
            true => &["content-length", "transfer-encoding", "expect"],
            false => &["expect"],
        };
        let at = self.in_fwd;
        let mut new_head = Vec::with_capacity(h.len + extra.len() + 64);
        head::rewrite_head(&self.inb[at..at + h.len], rename, &extra, &mut new_head);
        let grow = new_head.len().saturating_sub(h.len);
        if self.in_end + grow > IN_BUF {
            return Err(Refusal::HeadTooLarge);
        }
        // A place in the queue is taken with one update, so that racing requests cannot all
        // pass the check: past the cap, only requests with a body may wait.
        let cap = match h.framing {
            Framing::Length(0) => self.shared.queue_cap,
            _ => usize::MAX,
        };
        let queued = &self.shared.queued;
        let ordering = std::sync::atomic::Ordering::AcqRel;
        if queued
            .fetch_update(ordering, std::sync::atomic::Ordering::Acquire, |q| {
                (q < cap).then_some(q + 1)
            })
            .is_err()
        {
            return Err(Refusal::Unavailable);
        }
        if first {
            if let Err(e) = self.connect_inner() {
                queued.fetch_sub(1, ordering);
                return Err(e);
            }
        }
        self.inb
            .copy_within(at + h.len..self.in_end, at + new_head.len());
        self.inb[at..at + new_head.len()].copy_from_slice(&new_head);
        self.in_end = self.in_end + new_head.len() - h.len;
        self.in_fwd += new_head.len() + body;
        self.head_forwarded = Some(now);
        self.resp.expect(h.is_head);
        self.req_seq += 1;
        self.inner_doomed |= !h.keep_alive;
        self.phase = Phase::Head;
        self.continue_due = false;
        Ok(())
    }

    /// Moves to `phase`, giving back the room a held body took in the shared budget (a
    /// spool file being written is removed when its phase is dropped).
    fn set_phase(&mut self, phase: Phase) {
        if let Phase::Hold { held, .. } = std::mem::replace(&mut self.phase, phase) {
            self.shared
                .held
                .fetch_sub(held, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Sends the `100 Continue` owed, once every earlier answer is out.
    fn send_continue(&mut self) {
        let quiet = self.resp.idle()
            && self.out_start == self.out_end
            && self.parsed == self.out_end
            && self.file.is_none();
        if !matches!(self.phase, Phase::Hold { .. } | Phase::Spool { .. }) {
            self.continue_due = false;
            return;
        }
        if !quiet {
            return;
        }
        if self.outb.len() < OUT_BUF {
            self.outb = vec![0; OUT_BUF].into_boxed_slice();
        }
        self.out_start = 0;
        self.out_end = CONTINUE.len();
        self.parsed = self.out_end;
        self.outb[..CONTINUE.len()].copy_from_slice(CONTINUE);
        self.continue_due = false;
    }

    /// Reads and drops what the client still sends after a refusal, for a short while, so
    /// that closing does not reset the connection before the client has read the answer.
    fn linger(&mut self) {
        let until = Instant::now() + LINGER;
        let mut dropped = 0u64;
        let mut buf = [0u8; 16 * 1024];
        while dropped < LINGER_BYTES {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let ts = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            };
            let mut fds = [PollFd::from_borrowed_fd(self.side.fd(), PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            }
            match self.side.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => dropped += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }

    /// Closes a quiet connection to a tiny_http that has since been replaced, so that the
    /// next request goes to the new one: the old one is only polled now and then.
    fn leave_stale_inner(&mut self) {
        let current = self
            .shared
            .inner_generation
            .load(std::sync::atomic::Ordering::Acquire);
        let quiet = self.resp.idle()
            && self.in_start == self.in_fwd
            && !self.inner_shut
            && !self.inner_eof
            && !self.inner_doomed;
        if self.inner.is_some() && self.inner_gen != current && quiet {
            self.inner = None;
        }
    }

    fn connect_inner(&mut self) -> Result<(), Refusal> {
        self.shared.gate.acquire(self.id);
        let (path, generation) = {
            let path = self
                .shared
                .inner_path
                .read()
                .unwrap_or_else(|e| e.into_inner());
            let generation = self
                .shared
                .inner_generation
                .load(std::sync::atomic::Ordering::Acquire);
            (path.clone(), generation)
        };
        let connected = UnixStream::connect(path).and_then(|s| {
            s.set_nonblocking(true)?;
            Ok(s)
        });
        match connected {
            Ok(s) => {
                if self.outb.len() < OUT_BUF {
                    self.outb = vec![0; OUT_BUF].into_boxed_slice();
                }
                self.inner = Some(s);
                self.inner_gen = generation;
                Ok(())
            }
            Err(e) => {
                self.shared.gate.release(self.id);
                log::error!("connection {}: reaching the request queue: {e}", self.id);
                Err(Refusal::Unavailable)
            }
        }
    }

    /// Queues the answer to a request that is not passed on; it goes out after tiny_http's
    /// answers to the requests before it, and then the connection closes.
    fn refuse(&mut self, refusal: Refusal) {
        log::info!(target: "access", "- {} - {} 0 refused: {refusal:?}", self.peer, refusal_status(refusal));
        self.refuse_with(refusal_response(refusal));
    }

    /// Queues `answer` (a whole answer that closes the connection) for the request at
    /// `in_fwd`, and ignores what follows it.
    fn refuse_with(&mut self, answer: Vec<u8>) {
        self.set_phase(Phase::Refused);
        self.continue_due = false;
        self.in_end = self.in_fwd;
        self.refusal = Some(answer);
        if let Some(inner) = &self.inner {
            if self.in_start == self.in_fwd {
                let _ = inner.shutdown(std::net::Shutdown::Write);
                self.inner_shut = true;
            }
        }
        self.queue_refusal();
    }

    fn queue_refusal(&mut self) {
        let inner_done = self.inner.is_none() || self.inner_eof;
        let out_empty = self.out_start == self.out_end && self.file.is_none();
        if inner_done && out_empty && !self.refusal_sent {
            if let Some(r) = &self.refusal {
                if self.outb.len() < r.len() {
                    self.outb = vec![0; OUT_BUF.max(r.len())].into_boxed_slice();
                }
                self.outb[..r.len()].copy_from_slice(r);
                self.out_start = 0;
                self.out_end = r.len();
                self.refusal_sent = true;
            }
        }
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
        let out_pending =
            self.out_start < self.out_end || self.file.is_some() || self.side.buffered();
        let awaiting = self.awaiting();
        if out_pending {
            check(self.last_out, l.idle_timeout, "the client stopped reading")?;
        }
        if let Some(h) = self.head_forwarded {
            if out_pending || awaiting {
                check(h, l.write_timeout, "--server-write-timeout")?;
            }
        }
        match &self.phase {
            Phase::Refused => {}
            Phase::Head => {
                if let Some(started) = self.head_started {
                    check(started, l.idle_timeout, "a request head arrived too slowly")?;
                    check(started, l.read_timeout, "--server-read-timeout")?;
                } else if !out_pending && !awaiting && !self.client_eof {
                    let last = self.last_in.max(self.last_out).max(self.last_inner);
                    check(last, l.idle_timeout, "idle")?;
                }
            }
            Phase::Hold { .. } | Phase::Spool { .. } => {
                if self.wants_input() {
                    check(self.last_in, l.idle_timeout, "a request body stalled")?;
                }
                check(
                    self.request_started,
                    l.read_timeout,
                    "--server-read-timeout",
                )?;
            }
        }
        Ok(next)
    }
}

fn refusal_status(r: Refusal) -> u16 {
    match r {
        Refusal::HeadTooLarge => 431,
        Refusal::Bad(_) => 400,
        Refusal::NotImplemented(_) => 501,
        Refusal::Unavailable => 503,
        Refusal::Full { .. } => 507,
        Refusal::Internal => 500,
        Refusal::Incomplete => 400,
    }
}

/// The refusal for a body that cannot be spooled.
fn spool_refusal(conn: u64, e: SpoolError) -> Refusal {
    match e {
        SpoolError::Full { want, free } => Refusal::Full { want, free },
        SpoolError::Io(e) => {
            log::error!("connection {conn}: spooling a request body: {e}");
            Refusal::Internal
        }
    }
}

/// A whole HTTP answer with an S3 error document, closing the connection.
fn refusal_response(r: Refusal) -> Vec<u8> {
    let e = match r {
        Refusal::HeadTooLarge => S3Error::new(
            Code::RequestHeaderSectionTooLarge,
            "Your request header section exceeds the maximum allowed size.",
        ),
        Refusal::Bad(why) => S3Error::new(Code::InvalidRequest, why),
        Refusal::NotImplemented(why) => S3Error::new(Code::NotImplemented, why),
        Refusal::Unavailable => S3Error::new(Code::SlowDown, "Please reduce your request rate."),
        Refusal::Full { want, free } => S3Error::new(
            Code::InsufficientStorage,
            format!(
                "There is not enough free space on the server for this request body: \
                 {want} bytes are needed and {free} are available."
            ),
        ),
        Refusal::Internal => S3Error::new(
            Code::InternalError,
            "The request body could not be received; see the server log.",
        ),
        Refusal::Incomplete => S3Error::new(
            Code::IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header.",
        ),
    };
    let id = crate::util::unique_token();
    let body = e.to_xml(&id);
    let headers = [
        ("Server", "s3serve"),
        ("x-amz-request-id", id.as_str()),
        ("Content-Type", "application/xml"),
        ("Connection", "close"),
    ]
    .map(|(n, v)| (n.to_string(), v.to_string()));
    let mut out = crate::s3::http::head_bytes((1, 1), refusal_status(r), &headers);
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    out
}
