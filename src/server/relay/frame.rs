//! Framing: request heads are checked and put to the front, bodies are gathered in the
//! buffer or a spool file, and each request is passed on to tiny_http once it is whole.

use std::time::Instant;

use super::head::{self, Chunked, Framing, Head, Refusal};
use super::refuse::spool_refusal;
use super::{Relay, CONTINUE, HEAD_SLACK, IN_BUF};
use crate::s3::admit::Admission;
use crate::s3::relayed::Relayed;
use crate::s3::spool::{SpoolError, SpoolWriter};

pub(super) enum Phase {
    Head,
    /// A body arriving in the buffer behind its head, which waits at `in_fwd`: `got` bytes
    /// are there, `left` are still to come. `held` bytes are counted in `Shared::held`.
    Hold {
        head: Head,
        got: usize,
        left: u64,
        held: usize,
    },
    /// A body arriving into a spool file; its head waits at `in_fwd`. It may be `limit`
    /// bytes long at most.
    Spool {
        head: Head,
        spool: Box<SpoolWriter>,
        left: BodyLeft,
        limit: u64,
    },
    /// A refusal is queued; input is ignored.
    Refused,
}

/// What is left of a body being spooled.
pub(super) enum BodyLeft {
    Length(u64),
    Chunked(Chunked),
}

impl Relay<'_> {
    /// The client ended: tell tiny_http, unless the client ended cleanly between requests
    /// (then the connection is kept for the next client once the answers are out).
    pub(super) fn client_ended(&mut self) {
        if matches!(self.phase, Phase::Hold { .. } | Phase::Spool { .. }) {
            // Half a body never reaches a worker: it is answered here, and dropped.
            self.refuse(Refusal::Incomplete);
        }
        let clean = matches!(self.phase, Phase::Head)
            && self.clocks.head_started.is_none()
            && self.input.end == 0
            && !self.inner.doomed;
        if clean || self.inner.shut || self.input.deferred {
            return;
        }
        if let Some(inner) = &self.inner.stream {
            if !self.input.framed() {
                let _ = inner.shutdown(std::net::Shutdown::Write);
                self.inner.shut = true;
            }
        }
    }

    /// Answers to earlier requests are still coming or not all sent.
    pub(super) fn answers_pending(&self) -> bool {
        self.awaiting() || !self.output.drained() || self.side.buffered()
    }

    /// Frames the requests that waited for earlier answers, once those are out.
    pub(super) fn frame_deferred(&mut self) -> std::io::Result<()> {
        if !self.input.deferred || self.answers_pending() {
            return Ok(());
        }
        self.input.deferred = false;
        self.frame_and_pass()
    }

    /// Frames what has arrived (refusing what must be) and passes on what is whole.
    pub(super) fn frame_and_pass(&mut self) -> std::io::Result<()> {
        if let Err(refusal) = self.frame() {
            self.refuse(refusal);
        }
        self.write_inner()?;
        if self.input.eof {
            self.client_ended();
        }
        Ok(())
    }

    /// Frames what has arrived: heads are checked, bodies are gathered (in the buffer or a
    /// spool file), and each request is passed on once its body is whole.
    pub(super) fn frame(&mut self) -> Result<(), Refusal> {
        loop {
            match &mut self.phase {
                Phase::Refused => {
                    self.input.end = self.input.fwd;
                    return Ok(());
                }
                Phase::Head => {
                    if self.input.fwd == self.input.end {
                        return Ok(());
                    }
                    // A request is passed on only once the answers before it are sent, so
                    // that an answer a worker writes always has room in this relay's
                    // buffer, whether or not the client reads.
                    self.input.deferred = self.answers_pending();
                    if self.input.deferred || !self.frame_head()? {
                        return Ok(());
                    }
                }
                Phase::Hold {
                    head,
                    got,
                    left,
                    held: _,
                } => {
                    let start = self.input.fwd + head.len + *got;
                    let k = (*left).min((self.input.end - start) as u64);
                    *got += k as usize;
                    *left -= k;
                    if *left > 0 {
                        return Ok(());
                    }
                    let (head, body) = (head.clone(), *got);
                    self.set_phase(Phase::Head);
                    self.pass_on(&head, body, false)?;
                }
                Phase::Spool {
                    head,
                    spool,
                    left,
                    limit,
                } => {
                    let start = self.input.fwd + head.len;
                    let pending = &self.input.buf[start..self.input.end];
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
                    if spool.written() > *limit {
                        return Err(Refusal::TooLarge);
                    }
                    self.input
                        .buf
                        .copy_within(start + used..self.input.end, start);
                    self.input.end -= used;
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
    /// passed on at once; one with a body is first put to the front, which may refuse it
    /// (unless the body is small and no `100 Continue` is asked for).
    pub(super) fn frame_head(&mut self) -> Result<bool, Refusal> {
        let now = Instant::now();
        let started = *self.clocks.head_started.get_or_insert(now);
        let limit = self.shared.limits.max_head;
        let Some(h) = head::find_head(&self.input.buf[self.input.fwd..self.input.end], limit)?
        else {
            return Ok(false);
        };
        self.clocks.head_started = None;
        self.clocks.request_started = started;
        if h.framing == Framing::Length(0) {
            self.pass_on(&h, 0, false)?;
            return Ok(true);
        }
        // A small body without `Expect` is simply held: reading it costs little even if the
        // request is refused, and the worker checks the request as it does any other.
        if !h.expects_continue && self.hold(&h) {
            return Ok(true);
        }
        let head_bytes = &self.input.buf[self.input.fwd..self.input.fwd + h.len];
        let accepted = match (self.shared.admit)(head_bytes, self.peer) {
            Admission::Refuse(answer) => {
                self.refuse_with(answer);
                return Ok(false);
            }
            Admission::Accept(accepted) => accepted,
        };
        if matches!(h.framing, Framing::Length(n) if n > accepted.limit) {
            return Err(Refusal::TooLarge);
        }
        self.continue_due = h.expects_continue;
        if self.hold(&h) {
            return Ok(true);
        }
        let (declared, left) = match h.framing {
            Framing::Length(n) => (Some(n), BodyLeft::Length(n)),
            Framing::Chunked => (None, BodyLeft::Chunked(Chunked::default())),
        };
        let spool = self
            .shared
            .spool
            .start(declared, accepted.hashes, accepted.durable)
            .map_err(|e| spool_refusal(self.id, e))?;
        self.phase = Phase::Spool {
            head: h,
            spool: Box::new(spool),
            left,
            limit: accepted.limit,
        };
        Ok(true)
    }

    /// Holds the body of `h` in the buffer behind it, if it fits there and in the shared
    /// budget; false otherwise.
    fn hold(&mut self, h: &Head) -> bool {
        let Framing::Length(n) = h.framing else {
            return false;
        };
        let fits = (h.len as u64)
            .saturating_add(n)
            .saturating_add(2 * HEAD_SLACK as u64)
            <= IN_BUF as u64;
        let (cap, held) = (self.shared.held_cap, n as usize);
        let ordering = std::sync::atomic::Ordering::AcqRel;
        let taken = fits
            && self
                .shared
                .held
                .fetch_update(ordering, std::sync::atomic::Ordering::Acquire, |x| {
                    (x + held <= cap).then_some(x + held)
                })
                .is_ok();
        if taken {
            self.phase = Phase::Hold {
                head: h.clone(),
                got: 0,
                left: n,
                held,
            };
        }
        taken
    }

    /// Passes on the request whose head `h` is at `in_fwd`, followed by `body` bytes in the
    /// buffer (or by none, its body `spooled`): the head is rewritten with the relay's
    /// header, and the connection to tiny_http opened if this is its first request.
    pub(super) fn pass_on(&mut self, h: &Head, body: usize, spooled: bool) -> Result<(), Refusal> {
        let now = Instant::now();
        self.leave_stale_inner();
        // The first request on a new connection to tiny_http opens the gate behind it.
        let first = self.inner.stream.is_none();
        let extra = Relayed {
            conn: self.id,
            first,
            seq: self.req_seq,
            spooled,
            peer: self.peer,
        }
        .line(&self.shared.token);
        // tiny_http must not frame a spooled body, nor answer `100 Continue` itself.
        let rename: &[&str] = match spooled {
            true => &["content-length", "transfer-encoding", "expect"],
            false => &["expect"],
        };
        let at = self.input.fwd;
        let mut new_head = Vec::with_capacity(h.len + extra.len() + 64);
        head::rewrite_head(
            &self.input.buf[at..at + h.len],
            rename,
            &extra,
            &mut new_head,
        );
        let grow = new_head.len().saturating_sub(h.len);
        if self.input.end + grow > IN_BUF {
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
        self.input
            .buf
            .copy_within(at + h.len..self.input.end, at + new_head.len());
        self.input.buf[at..at + new_head.len()].copy_from_slice(&new_head);
        self.input.end = self.input.end + new_head.len() - h.len;
        self.input.fwd += new_head.len() + body;
        self.clocks.head_forwarded = Some(now);
        self.output.resp.expect(h.is_head);
        self.req_seq += 1;
        self.inner.doomed |= !h.keep_alive;
        self.phase = Phase::Head;
        self.continue_due = false;
        Ok(())
    }

    /// Moves to `phase`, giving back the room a held body took in the shared budget (a
    /// spool file being written is removed when its phase is dropped).
    pub(super) fn set_phase(&mut self, phase: Phase) {
        if let Phase::Hold { held, .. } = std::mem::replace(&mut self.phase, phase) {
            self.shared
                .held
                .fetch_sub(held, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Sends the `100 Continue` owed, once every earlier answer is out.
    pub(super) fn send_continue(&mut self) {
        let quiet = self.output.resp.idle()
            && self.output.drained()
            && self.output.parsed == self.output.end;
        if !matches!(self.phase, Phase::Hold { .. } | Phase::Spool { .. }) {
            self.continue_due = false;
            return;
        }
        if !quiet {
            return;
        }
        self.output.put(CONTINUE);
        self.continue_due = false;
    }
}
