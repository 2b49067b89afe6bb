//! The relay's byte movers: request bytes from the client to tiny_http (heads, and bodies
//! held in the buffer), answers back (copied, with file bodies sent by sendfile(2)), and
//! the answer-following that decides where each byte may go.

use std::io::{self, Read, Write};
use std::time::Instant;

use super::{Relay, HEAD_SLACK, IN_BUF, OUT_BUF};

/// File bodies for TLS connections are read and encrypted this much at a time.
const TLS_FILE_CHUNK: usize = 64 * 1024;

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted
}

impl Relay<'_> {
    pub(super) fn read_client(&mut self) -> io::Result<()> {
        self.input.more = false;
        let room = IN_BUF - HEAD_SLACK;
        if self.input.end >= room {
            return Ok(());
        }
        match self.side.read(&mut self.input.buf[self.input.end..room]) {
            Ok(0) => {
                self.input.eof = true;
            }
            Ok(n) => {
                self.input.end += n;
                self.clocks.last_in = Instant::now();
                self.input.more = self.input.end == room;
            }
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e),
        }
        self.frame_and_pass()
    }

    pub(super) fn write_inner(&mut self) -> io::Result<()> {
        let Some(inner) = &mut self.inner.stream else {
            return Ok(());
        };
        while self.input.framed() {
            match inner.write(&self.input.buf[self.input.start..self.input.fwd]) {
                Ok(n) => self.input.start += n,
                Err(e) if would_block(&e) => break,
                // tiny_http closed its side (it answers and closes on errors it finds).
                Err(_) => {
                    self.input.start = self.input.fwd;
                    self.input.eof = true;
                    break;
                }
            }
        }
        if !self.input.framed() {
            // Move what is not yet framed (a partial head) to the front.
            self.input
                .buf
                .copy_within(self.input.fwd..self.input.end, 0);
            self.input.end -= self.input.fwd;
            self.input.start = 0;
            self.input.fwd = 0;
            if self.input.eof {
                self.client_ended();
            }
        }
        Ok(())
    }

    pub(super) fn read_inner(&mut self) -> io::Result<()> {
        self.reset_out();
        let Some(inner) = &mut self.inner.stream else {
            return Ok(());
        };
        if self.output.end < OUT_BUF && !self.inner.eof {
            match inner.read(&mut self.output.buf[self.output.end..]) {
                Ok(0) => self.inner.eof = true,
                Ok(n) => {
                    self.output.end += n;
                    self.clocks.last_inner = Instant::now();
                    self.follow_answers()?;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => self.inner.eof = true,
            }
        }
        if self.inner.eof {
            self.queue_refusal();
        }
        self.write_client()
    }

    /// Follows the answers read so far, up to the next file body a worker left.
    pub(super) fn follow_answers(&mut self) -> io::Result<()> {
        while self.output.file.is_none() && self.output.parsed < self.output.end {
            let (k, head_done) = self
                .output
                .resp
                .follow(&self.output.buf[self.output.parsed..self.output.end]);
            self.output.parsed += k;
            if !head_done {
                continue;
            }
            let seq = self.output.seq;
            self.output.seq += 1;
            let left = self.output.resp.body_left();
            if left == 0 {
                continue;
            }
            if let Some(body) = self.shared.file_bodies.take(self.id, seq) {
                if body.len != left {
                    return Err(io::Error::other("a file body does not match its answer"));
                }
                self.output.resp.skip(left);
                self.output.file = Some(body);
                self.output.file_at = self.output.parsed;
            }
        }
        Ok(())
    }

    /// Starts the answer buffer over once everything in it is sent.
    pub(super) fn reset_out(&mut self) {
        if self.output.start == self.output.end && self.output.parsed == self.output.end {
            if self.output.file.is_some() {
                if self.output.file_at != self.output.end {
                    return;
                }
                self.output.file_at = 0;
            }
            self.output.start = 0;
            self.output.end = 0;
            self.output.parsed = 0;
        }
    }

    pub(super) fn write_client(&mut self) -> io::Result<()> {
        loop {
            let end = if self.output.file.is_some() {
                self.output.file_at
            } else {
                self.output.end
            };
            while self.output.start < end {
                match self.side.write(&self.output.buf[self.output.start..end]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.output.start += n;
                        self.clocks.last_out = Instant::now();
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(e),
                }
            }
            if self.output.start < end || !self.send_file()? {
                break;
            }
        }
        match self.side.flush() {
            Ok(()) => {}
            Err(e) if would_block(&e) => {}
            Err(e) => return Err(e),
        }
        self.reset_out();
        if self.output.drained() {
            self.queue_refusal();
        }
        Ok(())
    }

    /// Sends the pending file body; true once it is all sent (and what follows it may go).
    pub(super) fn send_file(&mut self) -> io::Result<bool> {
        let Some(body) = &mut self.output.file else {
            return Ok(false);
        };
        match self.side.raw_socket() {
            Some(sock) => {
                while body.len > 0 {
                    let Some(ready) = ready(body)? else {
                        return Ok(false);
                    };
                    let chunk = ready.min(1 << 30) as usize;
                    match rustix::fs::sendfile(sock, &body.file, Some(&mut body.offset), chunk) {
                        Ok(0) => return Err(io::Error::other("the file ended before its length")),
                        Ok(n) => {
                            body.len -= n as u64;
                            self.clocks.last_out = Instant::now();
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
                let chunk = &mut self.output.chunk;
                if chunk.is_empty() {
                    chunk.resize(TLS_FILE_CHUNK, 0);
                }
                while body.len > 0 {
                    let Some(ready) = ready(body)? else {
                        return Ok(false);
                    };
                    let n = ready.min(TLS_FILE_CHUNK as u64) as usize;
                    let got = body.file.read_at(&mut chunk[..n], body.offset)?;
                    if got == 0 {
                        return Err(io::Error::other("the file ended before its length"));
                    }
                    match self.side.write(&chunk[..got]) {
                        Ok(w) => {
                            body.offset += w as u64;
                            body.len -= w as u64;
                            self.clocks.last_out = Instant::now();
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
        self.output.file = None;
        self.follow_answers()?;
        Ok(true)
    }
}

/// How much of a file body can be sent now: all that is left, or, while a worker is still
/// writing it, what is on disk (`None`: nothing yet). A worker that failed ends the answer.
fn ready(body: &crate::s3::http::FileBody) -> io::Result<Option<u64>> {
    use crate::s3::growing::Ready;
    let Some(g) = &body.growing else {
        return Ok(Some(body.len));
    };
    match g.ready(body.offset) {
        Ready::Bytes(n) => Ok(Some(n.min(body.len))),
        Ready::Wait => Ok(None),
        Ready::Failed => Err(io::Error::other("the answer's body could not be read")),
    }
}
