//! The relay's two buffers: request bytes on their way to tiny_http, answers on their way
//! to the client.

use crate::s3::http::FileBody;

use super::head::Responses;
use super::{IN_BUF, OUT_BUF};

/// Request bytes from the client: `buf[start..fwd]` is framed and due to tiny_http,
/// `buf[fwd..end]` not yet framed.
pub(super) struct Input {
    pub(super) buf: Box<[u8]>,
    pub(super) start: usize,
    pub(super) fwd: usize,
    pub(super) end: usize,
    /// The client closed its side.
    pub(super) eof: bool,
    /// A read filled the buffer: the side may hold more than its socket shows.
    pub(super) more: bool,
    /// A complete request may wait unframed: it is framed once the answers before it are
    /// out (see `Relay::frame`).
    pub(super) deferred: bool,
}

impl Input {
    pub(super) fn new(mut buf: Box<[u8]>) -> Input {
        if buf.len() != IN_BUF {
            buf = vec![0; IN_BUF].into_boxed_slice();
        }
        Input {
            buf,
            start: 0,
            fwd: 0,
            end: 0,
            eof: false,
            more: false,
            deferred: false,
        }
    }

    /// Framed bytes are waiting for tiny_http.
    pub(super) fn framed(&self) -> bool {
        self.start < self.fwd
    }
}

/// Answer bytes to the client: `buf[start..end]` is still to send, `buf[..parsed]` has been
/// followed as answers.
pub(super) struct Output {
    pub(super) buf: Box<[u8]>,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) parsed: usize,
    /// A file body a worker left, sent at `file_at` in the answer stream.
    pub(super) file: Option<FileBody>,
    pub(super) file_at: usize,
    /// The answers coming back, followed to know when the connection is quiet.
    pub(super) resp: Responses,
    /// The sequence number of the next answer.
    pub(super) seq: u64,
    /// File bodies going out over TLS pass through this, allocated at the first. (It is not
    /// on the stack: a large array in any frame would be touched in full by the stack
    /// probes, on every relay thread.)
    pub(super) chunk: Vec<u8>,
}

impl Output {
    pub(super) fn new(buf: Box<[u8]>) -> Output {
        Output {
            buf,
            start: 0,
            end: 0,
            parsed: 0,
            file: None,
            file_at: 0,
            resp: Responses::default(),
            seq: 0,
            chunk: Vec::new(),
        }
    }

    /// Nothing is left to send in the relay's own buffers (the side may still hold some).
    pub(super) fn drained(&self) -> bool {
        self.start == self.end && self.file.is_none()
    }

    /// Makes sure the buffer is at least `len` long (it is empty until the first answer).
    pub(super) fn reserve(&mut self, len: usize) {
        if self.buf.len() < len {
            self.buf = vec![0; OUT_BUF.max(len)].into_boxed_slice();
        }
    }

    /// Puts a whole answer the relay makes itself into the (drained) buffer.
    pub(super) fn put(&mut self, answer: &[u8]) {
        self.reserve(answer.len());
        self.buf[..answer.len()].copy_from_slice(answer);
        self.start = 0;
        self.end = answer.len();
        self.parsed = self.end;
    }
}
