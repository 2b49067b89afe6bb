//! The connection to tiny_http: opened through the hand-off gate at the first request
//! passed on, kept between clients, and left when tiny_http has been restarted.

use std::os::unix::net::UnixStream;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::head::Refusal;
use super::{Relay, OUT_BUF};

/// The connection to tiny_http, opened at the first request passed on.
pub(super) struct Inner {
    pub(super) stream: Option<UnixStream>,
    /// The generation of tiny_http's listener that `stream` reached.
    pub(super) gen: u32,
    /// A request passed on makes tiny_http close the connection after answering.
    pub(super) doomed: bool,
    /// Our side is shut for writing.
    pub(super) shut: bool,
    /// tiny_http closed its side.
    pub(super) eof: bool,
}

/// A kept connection to tiny_http is usable if nothing (not even its end) is waiting on it.
pub(super) fn still_open(s: &UnixStream) -> bool {
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
    /// Closes a quiet connection to a tiny_http that has since been replaced, so that the
    /// next request goes to the new one: the old one is only polled now and then.
    pub(super) fn leave_stale_inner(&mut self) {
        let current = self
            .shared
            .inner_generation
            .load(std::sync::atomic::Ordering::Acquire);
        let quiet = self.output.resp.idle()
            && !self.input.framed()
            && !self.inner.shut
            && !self.inner.eof
            && !self.inner.doomed;
        if self.inner.stream.is_some() && self.inner.gen != current && quiet {
            self.inner.stream = None;
        }
    }

    pub(super) fn connect_inner(&mut self) -> Result<(), Refusal> {
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
                self.output.reserve(OUT_BUF);
                self.inner.stream = Some(s);
                self.inner.gen = generation;
                Ok(())
            }
            Err(e) => {
                self.shared.gate.release(self.id);
                log::error!("connection {}: reaching the request queue: {e}", self.id);
                Err(Refusal::Unavailable)
            }
        }
    }
}
