//! Refusals: answers the relay gives itself to requests it does not pass on, after which
//! the connection closes.

use std::io;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::frame::Phase;
use super::head::Refusal;
use super::Relay;
use crate::ops::{Code, S3Error};
use crate::s3::spool::SpoolError;

/// After refusing a request whose body is still coming, the relay reads and drops this much
/// of it, for at most `LINGER`, so that the client sees the answer rather than a reset.
const LINGER_BYTES: u64 = 8 << 20;
const LINGER: Duration = Duration::from_secs(2);

impl Relay<'_> {
    /// Queues the answer to a request that is not passed on; it goes out after tiny_http's
    /// answers to the requests before it, and then the connection closes.
    pub(super) fn refuse(&mut self, refusal: Refusal) {
        log::info!(target: "access", "- {} - {} 0 refused: {refusal:?}", self.peer, refusal_status(refusal));
        self.refuse_with(refusal_response(refusal));
    }

    /// Queues `answer` (a whole answer that closes the connection) for the request at
    /// `in_fwd`, and ignores what follows it.
    pub(super) fn refuse_with(&mut self, answer: Vec<u8>) {
        self.set_phase(Phase::Refused);
        self.continue_due = false;
        self.input.end = self.input.fwd;
        self.refusal = Some(answer);
        if let Some(inner) = &self.inner.stream {
            if !self.input.framed() {
                let _ = inner.shutdown(std::net::Shutdown::Write);
                self.inner.shut = true;
            }
        }
        self.queue_refusal();
    }

    pub(super) fn queue_refusal(&mut self) {
        let inner_done = self.inner.stream.is_none() || self.inner.eof;
        let out_empty = self.output.drained();
        if inner_done && out_empty && !self.refusal_sent {
            if let Some(r) = &self.refusal {
                self.output.put(r);
                self.refusal_sent = true;
            }
        }
    }

    /// Reads and drops what the client still sends after a refusal, for a short while, so
    /// that closing does not reset the connection before the client has read the answer.
    pub(super) fn linger(&mut self) {
        let until = Instant::now() + LINGER;
        let mut dropped = 0u64;
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
            // The request buffer is free by now: what it held was refused.
            match self.side.read(&mut self.input.buf) {
                Ok(0) => return,
                Ok(n) => dropped += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

pub(super) fn refusal_status(r: Refusal) -> u16 {
    match r {
        Refusal::HeadTooLarge => 431,
        Refusal::Bad(_) => 400,
        Refusal::NotImplemented(_) => 501,
        Refusal::Unavailable => 503,
        Refusal::Full { .. } => 507,
        Refusal::Internal => 500,
        Refusal::Incomplete => 400,
        Refusal::TooLarge => 400,
    }
}

/// The refusal for a body that cannot be spooled.
pub(super) fn spool_refusal(conn: u64, e: SpoolError) -> Refusal {
    match e {
        SpoolError::Full { want, free } => Refusal::Full { want, free },
        SpoolError::Io(e) => {
            log::error!("connection {conn}: spooling a request body: {e}");
            Refusal::Internal
        }
    }
}

/// A whole HTTP answer with an S3 error document, closing the connection.
pub(super) fn refusal_response(r: Refusal) -> Vec<u8> {
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
        Refusal::TooLarge => S3Error::new(
            Code::EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size.",
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
