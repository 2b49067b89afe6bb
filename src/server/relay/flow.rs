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
        self.read_more = false;
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
