//! The one response builder that owns HTTP framing on top of tiny_http: every response gets
//! its exact length (tiny_http would otherwise switch to chunked encoding at 32 KiB and drop
//! Content-Length, even for HEAD), header values are kept ASCII, and a client that hangs up
//! mid-body is normal, not an error.

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Read, Write};
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use tiny_http::{Header, StatusCode};

use crate::ops::xml::XML_DECL;
use crate::ops::{Body, Code, Response, S3Error};
use crate::s3::growing::Growth;
use crate::s3::spool::{SpoolDir, SpoolError, SpoolWriter};

/// Read size for streamed response bodies.
const RESPONSE_BUF: usize = 256 * 1024;

/// Object bodies from this size up go to the relay as files, to be sent with sendfile(2).
const HANDOFF_MIN: u64 = 64 * 1024;

/// A file body left for the relay of connection `conn`: the answer to its request `seq`.
pub struct FileBody {
    pub seq: u64,
    pub file: std::fs::File,
    pub offset: u64,
    pub len: u64,
    /// Set while a worker is still writing the file: how far it may be sent.
    pub growing: Option<std::sync::Arc<Growth>>,
}

/// Where workers leave file bodies for relays. A worker writes the answer's head through
/// tiny_http as usual but no body; the relay, seeing that head, sends the file from the
/// page cache to the client socket itself. No worker copies the bytes, and none waits for
/// a slow reader.
#[derive(Default)]
pub struct FileBodies {
    conns: Mutex<HashMap<u64, VecDeque<FileBody>>>,
}

impl FileBodies {
    /// A relay's connection starts taking file bodies.
    pub fn open(&self, conn: u64) {
        self.lock().insert(conn, VecDeque::new());
    }

    /// The connection ended: bodies left are dropped.
    pub fn close(&self, conn: u64) {
        self.lock().remove(&conn);
    }

    /// Leaves a body; false if the connection is gone (the worker then sends it itself).
    fn give(&self, conn: u64, body: FileBody) -> bool {
        match self.lock().get_mut(&conn) {
            Some(q) => {
                q.push_back(body);
                true
            }
            None => false,
        }
    }

    /// The body of answer `seq` on `conn`, if its worker left one.
    pub fn take(&self, conn: u64, seq: u64) -> Option<FileBody> {
        let mut conns = self.lock();
        let q = conns.get_mut(&conn)?;
        // Pipelined requests can be answered by two workers at once: bodies may be left
        // out of order, and each is found by its request number.
        let at = q.iter().position(|b| b.seq == seq)?;
        q.remove(at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, VecDeque<FileBody>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The relay connection and request a response answers, when its body may be handed off.
pub struct Handoff<'a> {
    pub bodies: &'a FileBodies,
    pub conn: u64,
    pub seq: u64,
    /// Where an answer that is not a file is written to become one.
    pub scratch: &'a std::sync::Arc<SpoolDir>,
}

/// Answers from this size up that are not files are written to a spool file and handed off
/// as one. What a worker writes to tiny_http lands in the relay's answer buffer (256 KiB)
/// and the socket between them, and the relay passes a request on only once the answers
/// before it are sent; so a smaller answer never makes a worker wait on a client that
/// does not read.
const SPOOL_ANSWER_MIN: u64 = 128 * 1024;

/// A spool file left for the relay before it is written: the worker writes it after the
/// answer's head, and the relay sends each part as it lands.
struct Growing {
    writer: SpoolWriter,
    growth: std::sync::Arc<Growth>,
    len: u64,
}

/// Starts a spool file for a `len`-byte answer and leaves it, growing, for the relay.
/// `None` when the spool has no room, or the relay is gone (the answer then goes through
/// tiny_http as it is read).
fn start_growing(h: &Handoff<'_>, len: u64) -> Option<Growing> {
    let writer = match h.scratch.start(Some(len), None, false) {
        Ok(w) => w,
        Err(SpoolError::Full { .. }) => return None,
        Err(SpoolError::Io(e)) => {
            log::warn!("spooling an answer: {e}");
            return None;
        }
    };
    let growth = std::sync::Arc::new(Growth::new().ok()?);
    let body = FileBody {
        seq: h.seq,
        file: writer.file()?.try_clone().ok()?,
        offset: 0,
        len,
        growing: Some(growth.clone()),
    };
    h.bodies.give(h.conn, body).then_some(Growing {
        writer,
        growth,
        len,
    })
}

impl Growing {
    /// Writes the answer's bytes from `reader`, publishing each block as it lands. Stops
    /// early once the relay has let the body go (its client left).
    fn fill(mut self, reader: &mut dyn Read) -> std::io::Result<()> {
        let mut buf = vec![0u8; RESPONSE_BUF];
        let mut done = 0;
        while done < self.len {
            if std::sync::Arc::strong_count(&self.growth) == 1 {
                return Ok(());
            }
            let want = (self.len - done).min(RESPONSE_BUF as u64) as usize;
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.writer.write(&buf[..n]).map_err(|e| match e {
                SpoolError::Io(e) => e,
                SpoolError::Full { .. } => std::io::Error::other("the spool is full"),
            })?;
            done += n as u64;
            self.growth.advance(done);
        }
        self.writer.finish()?;
        Ok(())
    }
}

/// Bodies up to this size are sent together with the head in one write.
const WHOLE_MAX: u64 = 64 * 1024;

/// Sends `resp`; returns the body bytes it declared.
pub fn respond(
    rq: tiny_http::Request,
    resp: Response,
    request_id: &str,
    handoff: Option<Handoff<'_>>,
) -> u64 {
    let Response {
        status,
        headers: given,
        body,
    } = resp;
    let mut headers = Vec::with_capacity(given.len() + 3);
    for (name, value) in [
        ("x-amz-request-id", request_id),
        ("x-amz-id-2", request_id),
        ("Server", "s3serve"),
    ] {
        if !given.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            headers.push((name.to_string(), value.to_string()));
        }
    }
    headers.extend(given);
    let is_head = rq.method() == &tiny_http::Method::Head;
    // `None`: the body was left for the relay, and only the head goes through tiny_http.
    let (reader, len): (Option<Box<dyn Read + Send>>, u64) = match body {
        Body::Empty => return write_whole(rq, status, &headers, 0, &[], request_id),
        Body::Bytes(b) if b.len() as u64 <= WHOLE_MAX => {
            return write_whole(rq, status, &headers, b.len() as u64, &b, request_id)
        }
        Body::Shared(b) if b.len() as u64 <= WHOLE_MAX => {
            return write_whole(rq, status, &headers, b.len() as u64, &b, request_id)
        }
        Body::Stream(_, n) if is_head => {
            return write_whole(rq, status, &headers, n, &[], request_id)
        }
        Body::Bytes(b) => {
            let n = b.len() as u64;
            (Some(Box::new(std::io::Cursor::new(b))), n)
        }
        Body::Shared(b) => {
            let n = b.len() as u64;
            (Some(Box::new(std::io::Cursor::new(Shared(b)))), n)
        }
        Body::Stream(r, n) => (Some(r), n),
        Body::Object(mut body, offset, len) => {
            if len <= WHOLE_MAX {
                let mut bytes = vec![0; len as usize];
                return match body.read_exact(&mut bytes) {
                    Ok(()) => write_whole(rq, status, &headers, len, &bytes, request_id),
                    Err(e) => {
                        log::error!("{request_id}: reading the object: {e}");
                        internal_error(rq, request_id)
                    }
                };
            }
            let handed = match (&handoff, body.file()) {
                (Some(h), Some(file)) if len >= HANDOFF_MIN => file
                    .try_clone()
                    .map(|file| {
                        let seq = h.seq;
                        h.bodies.give(
                            h.conn,
                            FileBody {
                                growing: None,
                                seq,
                                file,
                                offset,
                                len,
                            },
                        )
                    })
                    .unwrap_or(false),
                _ => false,
            };
            match handed {
                true => (None, len),
                false => (Some(Box::new(body.take(len))), len),
            }
        }
        Body::Pending(rx) => return respond_pending(rq, status, &headers, rx, request_id),
    };
    // A large answer that is not a file becomes one, so that no worker waits for the
    // client to read it; the relay sends it as it is written, after the head.
    let mut growing = None;
    let reader = match (reader, &handoff) {
        (Some(r), Some(h)) if !is_head && len >= SPOOL_ANSWER_MIN => match start_growing(h, len) {
            Some(g) => {
                growing = Some((g, r));
                None
            }
            None => Some(r),
        },
        (r, _) => r,
    };
    let reader: Box<dyn Read + Send> = match reader {
        Some(r) => Box::new(BufReader::with_capacity(RESPONSE_BUF, r)),
        None => Box::new(std::io::empty()),
    };
    let mut tiny_headers = Vec::with_capacity(headers.len());
    for (n, v) in &headers {
        push(&mut tiny_headers, n, v);
    }
    let response = tiny_http::Response::new(
        StatusCode(status),
        tiny_headers,
        reader,
        Some(len as usize),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    if let Err(e) = rq.respond(response) {
        log::debug!("{request_id}: client went away: {e}");
    }
    if let Some((g, mut r)) = growing {
        let growth = g.growth.clone();
        let filled = g.fill(&mut r);
        if let Err(e) = &filled {
            // The head is out: the relay cuts the connection, so the client sees a short
            // answer, not a wrong one.
            log::error!("{request_id}: reading the answer's body: {e}");
        }
        growth.end(filled.is_ok());
    }
    len
}

/// Answers 500 InternalError (the body could not be read); no body bytes were sent.
fn internal_error(rq: tiny_http::Request, request_id: &str) -> u64 {
    let e = S3Error::new(
        Code::InternalError,
        "We encountered an internal error. Please try again.",
    );
    let doc = e.to_xml(request_id);
    let h = [("Content-Type".to_string(), "application/xml".to_string())];
    write_whole(rq, 500, &h, doc.len() as u64, &doc, request_id);
    0
}

/// Writes a whole answer, head and body, in one write: an answer split over several writes
/// costs the relay a wake-up for each. HEAD answers and those that never have a body declare
/// `len` and send none, as tiny_http would.
fn write_whole(
    rq: tiny_http::Request,
    status: u16,
    headers: &[(String, String)],
    len: u64,
    body: &[u8],
    request_id: &str,
) -> u64 {
    let version = rq.http_version();
    let no_body =
        rq.method() == &tiny_http::Method::Head || matches!(status, 100..=199 | 204 | 304);
    let mut out = head_bytes((version.0, version.1), status, headers);
    if !matches!(status, 100..=199 | 204) {
        let _ = write!(out, "Content-Length: {len}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !no_body {
        out.extend_from_slice(body);
    }
    let mut w = rq.into_writer();
    if let Err(e) = w.write_all(&out).and_then(|()| w.flush()) {
        log::debug!("{request_id}: client went away: {e}");
    }
    len
}

/// A whole answer (an error, with its XML or no body) as bytes, for the relay to send
/// itself; it closes the connection.
pub fn closing_answer(resp: Response, request_id: &str) -> Vec<u8> {
    let body = match resp.body {
        Body::Bytes(b) => b,
        _ => Vec::new(),
    };
    let mut headers: Vec<(String, String)> = [
        ("x-amz-request-id", request_id),
        ("x-amz-id-2", request_id),
        ("Server", "s3serve"),
        ("Connection", "close"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    headers.extend(resp.headers);
    let mut out = head_bytes((1, 1), resp.status, &headers);
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(&body);
    out
}

/// An answer's status line, `Date` and `headers`, without the empty line that ends the
/// head: the caller adds its framing header first. Names that are not tokens (and any
/// `Date` of the caller's) are left out; values are kept ASCII.
pub fn head_bytes(version: (u8, u8), status: u16, headers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let _ = write!(
        out,
        "HTTP/{}.{} {status} {}\r\nDate: {}\r\n",
        version.0,
        version.1,
        StatusCode(status).default_reason_phrase(),
        crate::util::http_date(std::time::SystemTime::now())
    );
    for (n, v) in headers {
        let valid = !n.is_empty() && n.bytes().all(|c| c.is_ascii_graphic() && c != b':');
        if valid && !n.eq_ignore_ascii_case("date") {
            let _ = write!(out, "{n}: {}\r\n", ascii_header_value(v));
        }
    }
    out
}

/// Keep-alive whitespace goes out this often while a long request works (clients time out
/// reads after 60 s).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Writes a `200` by hand on the raw stream: tiny_http's chunked encoder would hold the
/// keep-alive bytes back in its buffer. Chunked framing keeps the connection reusable.
fn respond_pending(
    rq: tiny_http::Request,
    status: u16,
    headers: &[(String, String)],
    rx: Receiver<Result<Vec<u8>, S3Error>>,
    request_id: &str,
) -> u64 {
    let mut head = head_bytes((1, 1), status, headers);
    head.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
    let mut w = rq.into_writer();
    let mut sent = 0u64;
    let mut chunk = |w: &mut dyn Write, data: &[u8]| -> std::io::Result<()> {
        sent += data.len() as u64;
        write!(w, "{:x}\r\n", data.len())?;
        w.write_all(data)?;
        w.write_all(b"\r\n")?;
        w.flush()
    };
    let result = (|| -> std::io::Result<()> {
        w.write_all(&head)?;
        chunk(&mut w, XML_DECL.as_bytes())?;
        let doc = loop {
            match rx.recv_timeout(KEEPALIVE_INTERVAL) {
                Err(RecvTimeoutError::Timeout) => chunk(&mut w, b" ")?,
                Ok(Ok(doc)) => break doc,
                Ok(Err(e)) => break e.to_xml_body(request_id),
                Err(RecvTimeoutError::Disconnected) => {
                    break S3Error::new(
                        Code::InternalError,
                        "We encountered an internal error. Please try again.",
                    )
                    .to_xml_body(request_id)
                }
            }
        };
        chunk(&mut w, &doc)?;
        w.write_all(b"0\r\n\r\n")?;
        w.flush()
    })();
    if let Err(e) = result {
        log::debug!("{request_id}: client went away: {e}");
    }
    sent
}

/// Whether a request comes with a body (a non-zero length, or chunked).
pub fn declares_body(rq: &tiny_http::Request) -> bool {
    rq.body_length().unwrap_or(0) > 0
        || rq
            .headers()
            .iter()
            .any(|h| h.field.equiv("Transfer-Encoding"))
}

fn push(headers: &mut Vec<Header>, name: &str, value: &str) {
    let value = ascii_header_value(value);
    if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
        headers.push(h);
    }
}

/// Header values must be ASCII: others are sent RFC 2047-encoded, as S3 does.
pub fn ascii_header_value(v: &str) -> String {
    if v.bytes().all(|c| (0x20..0x7f).contains(&c) || c == b'\t') {
        return v.to_string();
    }
    format!("=?UTF-8?B?{}?=", crate::util::base64(v.as_bytes()))
}

/// Shared bytes as a cursor reads them.
struct Shared(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_bodies_are_found_by_request_number_in_any_order() {
        let bodies = FileBodies::default();
        let file = || std::fs::File::open("/dev/null").unwrap();
        let body = |seq| FileBody {
            growing: None,
            seq,
            file: file(),
            offset: 0,
            len: 1,
        };
        assert!(
            !bodies.give(7, body(0)),
            "a connection that is not open takes nothing"
        );
        bodies.open(7);
        assert!(bodies.give(7, body(1)));
        assert!(bodies.give(7, body(0)));
        assert_eq!(bodies.take(7, 0).map(|b| b.seq), Some(0));
        assert!(bodies.take(7, 0).is_none());
        assert_eq!(bodies.take(7, 1).map(|b| b.seq), Some(1));
        bodies.close(7);
        assert!(!bodies.give(7, body(2)));
    }

    #[test]
    fn non_ascii_values_are_encoded() {
        assert_eq!(ascii_header_value("plain"), "plain");
        assert_eq!(ascii_header_value("café"), "=?UTF-8?B?Y2Fmw6k=?=");
        assert_eq!(ascii_header_value("a\nb"), "=?UTF-8?B?YQpi?=");
    }
}
