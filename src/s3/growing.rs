//! An answer body that a worker is still writing to its spool file while the relay sends
//! it. A large answer that is not a file (an upstream's object, read in ranges) is spooled
//! so that no worker waits on a slow client; with a `Growth` the relay starts sending it
//! as soon as the first bytes are on disk, instead of after the last, so the client's first
//! byte does not wait for the whole object. The worker publishes how much is written and
//! kicks an eventfd the relay polls; a failure after the head went out cuts the connection,
//! so the client sees a short answer, never a wrong one.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const WRITING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;

pub struct Growth {
    /// Bytes of the body on disk so far.
    filled: AtomicU64,
    state: AtomicU8,
    /// Readable once the worker has published more (or ended).
    signal: OwnedFd,
}

/// What the relay may do with a growing body at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// This many bytes can be sent now.
    Bytes(u64),
    /// Nothing yet: wait for the signal.
    Wait,
    /// The worker failed: the answer cannot be completed.
    Failed,
}

impl Growth {
    pub fn new() -> io::Result<Growth> {
        use rustix::event::{eventfd, EventfdFlags};
        let signal = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Growth {
            filled: AtomicU64::new(0),
            state: AtomicU8::new(WRITING),
            signal,
        })
    }

    /// The body is on disk up to `filled` bytes.
    pub fn advance(&self, filled: u64) {
        self.filled.store(filled, Ordering::Release);
        self.kick();
    }

    /// The worker is done writing: `ok`, or it failed.
    pub fn end(&self, ok: bool) {
        self.state
            .store(if ok { DONE } else { FAILED }, Ordering::Release);
        self.kick();
    }

    fn kick(&self) {
        let _ = rustix::io::write(&self.signal, &1u64.to_ne_bytes());
    }

    /// What can be sent from `offset`.
    pub fn ready(&self, offset: u64) -> Ready {
        // The state first: a worker that ended has published everything it wrote.
        let state = self.state.load(Ordering::Acquire);
        let filled = self.filled.load(Ordering::Acquire);
        match (filled.saturating_sub(offset), state) {
            (0, FAILED) => Ready::Failed,
            (0, WRITING) => Ready::Wait,
            (n, _) => Ready::Bytes(n),
        }
    }

    /// The fd to poll for readability while waiting.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.signal.as_fd()
    }

    /// Takes the pending signal, after a wake-up.
    pub fn drain(&self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.signal, &mut b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_body_is_sent_as_it_is_written() {
        let g = Growth::new().unwrap();
        assert_eq!(g.ready(0), Ready::Wait);
        g.advance(100);
        assert_eq!(g.ready(0), Ready::Bytes(100));
        assert_eq!(g.ready(60), Ready::Bytes(40));
        assert_eq!(g.ready(100), Ready::Wait);
        g.drain();
        g.advance(150);
        g.end(false);
        // What was written before the failure may still go; then it fails.
        assert_eq!(g.ready(100), Ready::Bytes(50));
        assert_eq!(g.ready(150), Ready::Failed);
        let g = Growth::new().unwrap();
        g.advance(10);
        g.end(true);
        assert_eq!(g.ready(10), Ready::Bytes(0));
        assert_eq!(g.ready(4), Ready::Bytes(6));
    }
}
