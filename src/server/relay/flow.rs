//! The relay's byte movers: request bytes from the client to tiny_http (copied, or spliced
//! through a pipe for long bodies), answers back (copied, with file bodies sent by
//! sendfile(2)), and the framing and answer-following that decide where each byte may go.

use std::io::{self, Read, Write};
use std::time::Instant;

use super::{Phase, Relay, HEAD_SLACK, IN_BUF, OUT_BUF};

/// A pipe that moves request bodies from a plain client socket to tiny_http with splice(2),
/// without copying them through the relay.
pub(super) struct Pipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
    pub(super) size: usize,
}

/// File bodies for TLS connections are read and encrypted this much at a time.
const TLS_FILE_CHUNK: usize = 64 * 1024;

/// Request bodies (what is left of them) from this size up are spliced.
const SPLICE_MIN: u64 = 64 * 1024;

impl Pipe {
    pub(super) fn new() -> Option<Pipe> {
        use rustix::pipe::{fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, PipeFlags};
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK).ok()?;
        let _ = fcntl_setpipe_size(&write, 1 << 20);
        let size = fcntl_getpipe_size(&write).ok()?;
        Some(Pipe { read, write, size })
    }
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted
}

impl Relay<'_> {
    /// A long body is being read, with nothing else buffered: it goes through the pipe.
    pub(super) fn splicing(&self) -> bool {
        matches!(self.phase, Phase::Body(n) if n >= SPLICE_MIN)
            && self.in_end == 0
            && self.inner.is_some()
            && self.pipe.is_some()
            && self.side.raw_socket().is_some()
    }

    /// Moves body bytes from the client into the pipe, and from the pipe to tiny_http.
    pub(super) fn splice_in(&mut self) -> io::Result<()> {
        use rustix::pipe::{splice, SpliceFlags};
        let (Some(pipe), Some(sock), Phase::Body(n)) =
            (&self.pipe, self.side.raw_socket(), &mut self.phase)
        else {
            return Ok(());
        };
        let room = (pipe.size - self.piped_in).min((*n).min(usize::MAX as u64) as usize);
        if room > 0 {
            match splice(sock, None, &pipe.write, None, room, SpliceFlags::NONBLOCK) {
                Ok(0) => self.client_eof = true,
                Ok(k) => {
                    self.piped_in += k;
                    *n -= k as u64;
                    if *n == 0 {
                        self.phase = Phase::Head;
                    }
                    self.last_in = Instant::now();
                }
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.write_inner()?;
        if self.client_eof {
            self.client_ended();
        }
        Ok(())
    }

    /// Sends what the pipe holds on to tiny_http; true once it is empty.
    pub(super) fn drain_pipe(&mut self) -> bool {
        use rustix::pipe::{splice, SpliceFlags};
        let (Some(pipe), Some(inner)) = (&self.pipe, &self.inner) else {
            return self.piped_in == 0;
        };
        while self.piped_in > 0 {
            match splice(
                &pipe.read,
                None,
                inner,
                None,
                self.piped_in,
                SpliceFlags::NONBLOCK,
            ) {
                Ok(m) => self.piped_in -= m,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return false,
                // tiny_http closed its side: nothing more can go to it.
                Err(_) => break,
            }
        }
        if self.piped_in > 0 {
            self.piped_in = 0;
            self.pipe = None;
            self.client_eof = true;
        }
        true
    }

    pub(super) fn read_client(&mut self) -> io::Result<()> {
        self.read_more = false;
        if self.splicing() {
            return self.splice_in();
        }
        if self.piped_in > 0 {
            return Ok(());
        }
        let room = IN_BUF - HEAD_SLACK;
        if self.in_end >= room {
            return Ok(());
        }
        match self.side.read(&mut self.inb[self.in_end..room]) {
            Ok(0) => {
                self.client_eof = true;
            }
            Ok(n) => {
                self.in_end += n;
                self.last_in = Instant::now();
                self.read_more = self.in_end == room;
            }
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e),
        }
        if let Err(refusal) = self.frame() {
            self.refuse(refusal);
        }
        self.write_inner()?;
        if self.client_eof {
            self.client_ended();
        }
        Ok(())
    }

    pub(super) fn write_inner(&mut self) -> io::Result<()> {
        if !self.drain_pipe() {
            return Ok(());
        }
        let Some(inner) = &mut self.inner else {
            return Ok(());
        };
        while self.in_start < self.in_fwd {
            match inner.write(&self.inb[self.in_start..self.in_fwd]) {
                Ok(n) => self.in_start += n,
                Err(e) if would_block(&e) => break,
                // tiny_http closed its side (it answers and closes on errors it finds).
                Err(_) => {
                    self.in_start = self.in_fwd;
                    self.client_eof = true;
                    break;
                }
            }
        }
        if self.in_start == self.in_fwd {
            // Move what is not yet framed (a partial head) to the front.
            self.inb.copy_within(self.in_fwd..self.in_end, 0);
            self.in_end -= self.in_fwd;
            self.in_start = 0;
            self.in_fwd = 0;
            if self.client_eof {
                self.client_ended();
            }
        }
        Ok(())
    }

    pub(super) fn read_inner(&mut self) -> io::Result<()> {
        self.reset_out();
        let Some(inner) = &mut self.inner else {
            return Ok(());
        };
        if self.out_end < OUT_BUF && !self.inner_eof {
            match inner.read(&mut self.outb[self.out_end..]) {
                Ok(0) => self.inner_eof = true,
                Ok(n) => {
                    self.out_end += n;
                    self.last_inner = Instant::now();
                    self.follow_answers()?;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => self.inner_eof = true,
            }
        }
        if self.inner_eof {
            self.queue_refusal();
        }
        self.write_client()
    }

    /// Follows the answers read so far, up to the next file body a worker left.
    pub(super) fn follow_answers(&mut self) -> io::Result<()> {
        while self.file.is_none() && self.parsed < self.out_end {
            let (k, head_done) = self.resp.follow(&self.outb[self.parsed..self.out_end]);
            self.parsed += k;
            if !head_done {
                continue;
            }
            let seq = self.resp_seq;
            self.resp_seq += 1;
            let left = self.resp.body_left();
            if left == 0 {
                continue;
            }
            if let Some(body) = self.shared.file_bodies.take(self.id, seq) {
                if body.len != left {
                    return Err(io::Error::other("a file body does not match its answer"));
                }
                self.resp.skip(left);
                self.file = Some(body);
                self.file_at = self.parsed;
            }
        }
        Ok(())
    }

    /// Starts the answer buffer over once everything in it is sent.
    pub(super) fn reset_out(&mut self) {
        if self.out_start == self.out_end && self.parsed == self.out_end {
            if self.file.is_some() {
                if self.file_at != self.out_end {
                    return;
                }
                self.file_at = 0;
            }
            self.out_start = 0;
            self.out_end = 0;
            self.parsed = 0;
        }
    }

    pub(super) fn write_client(&mut self) -> io::Result<()> {
        loop {
            let end = if self.file.is_some() {
                self.file_at
            } else {
                self.out_end
            };
            while self.out_start < end {
                match self.side.write(&self.outb[self.out_start..end]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.out_start += n;
                        self.last_out = Instant::now();
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(e),
                }
            }
            if self.out_start < end || !self.send_file()? {
                break;
            }
        }
        match self.side.flush() {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e),
        }
        self.reset_out();
        if self.out_start == self.out_end && self.file.is_none() {
            self.queue_refusal();
        }
        Ok(())
    }

    /// Sends the pending file body; true once it is all sent (and what follows it may go).
    pub(super) fn send_file(&mut self) -> io::Result<bool> {
        let Some(body) = &mut self.file else {
            return Ok(false);
        };
        match self.side.raw_socket() {
            Some(sock) => {
                while body.len > 0 {
                    let chunk = body.len.min(1 << 30) as usize;
                    match rustix::fs::sendfile(sock, &body.file, Some(&mut body.offset), chunk) {
                        Ok(0) => return Err(io::Error::other("the file ended before its length")),
                        Ok(n) => {
                            body.len -= n as u64;
                            self.last_out = Instant::now();
                        }
                        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {
                            return Ok(false)
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            // TLS: the bytes must pass through the relay to be encrypted; they are read
            // from the file in chunks as the connection takes them.
            None => {
                use std::os::unix::fs::FileExt;
                let mut chunk = [0u8; TLS_FILE_CHUNK];
                while body.len > 0 {
                    let n = body.len.min(TLS_FILE_CHUNK as u64) as usize;
                    let got = body.file.read_at(&mut chunk[..n], body.offset)?;
                    if got == 0 {
                        return Err(io::Error::other("the file ended before its length"));
                    }
                    match self.side.write(&chunk[..got]) {
                        Ok(w) => {
                            body.offset += w as u64;
                            body.len -= w as u64;
                            self.last_out = Instant::now();
                        }
                        Err(e) if would_block(&e) => {
                            let _ = self.side.flush();
                            return Ok(false);
                        }
                        Err(e) => return Err(e),
                    }
                    match self.side.flush() {
                        Ok(()) => {}
                        Err(e) if would_block(&e) => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        self.file = None;
        self.follow_answers()?;
        Ok(true)
    }
}
