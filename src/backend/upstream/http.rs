//! HTTP to an S3 upstream, synchronous: one ureq agent (its idle connections pooled per
//! host) over our own rustls, so the process has one TLS stack. Every body can be sent again
//! (bytes, or a file read from its start), so requests are retried on transport errors and
//! 5xx answers, with exponential backoff, up to `--low-level-retries` times.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{BackendError, ErrorKind, Result};

/// Idle connections kept per upstream host.
const IDLE_PER_HOST: usize = 16;
/// The first retry waits this long; each next one twice as long, up to `BACKOFF_MAX`.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// An upstream answer: status, headers, and its body still to be read.
pub struct Answer {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Box<dyn Read + Send + Sync>,
}

impl Answer {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Reads the whole body, at most `max` bytes (error documents, listings).
    pub fn text(self, max: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.body
            .take(max)
            .read_to_end(&mut out)
            .map_err(unavailable)?;
        Ok(out)
    }
}

/// A request body: none, bytes, or `len` bytes of a file from `offset`. Each can be sent
/// again, so any request may be retried.
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    File {
        file: &'a File,
        offset: u64,
        len: u64,
    },
}

/// Reads part of a file with positioned reads, in large blocks, leaving the file's
/// own offset alone, so every attempt of a request reads the same bytes.
struct FileBody<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for FileBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file to send ended early",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// The read size for file bodies.
const FILE_BLOCK: usize = 1 << 20;

pub struct Http {
    agent: ureq::Agent,
    retries: u32,
}

impl Http {
    /// `retries`: how many times a failed request is retried. `connect` bounds connecting,
    /// `idle` each wait for the upstream to take or send bytes (zero: no bound).
    pub fn new(retries: u32, connect: Duration, idle: Duration) -> Result<Http> {
        let tls = Tls(Arc::new(tls_config()?));
        let mut b = ureq::AgentBuilder::new()
            .tls_connector(Arc::new(tls))
            .max_idle_connections_per_host(IDLE_PER_HOST)
            .redirects(0);
        if !connect.is_zero() {
            b = b.timeout_connect(connect);
        }
        if !idle.is_zero() {
            b = b.timeout_read(idle).timeout_write(idle);
        }
        let agent = b.build();
        Ok(Http { agent, retries })
    }

    /// How many times a failed request is retried.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Sends a request to `url` with `headers` (signed already, or signed by `sign` before
    /// each attempt) and returns the answer, whatever its status. Transport errors and 5xx
    /// answers are retried where the request can be sent again.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &dyn Fn() -> Vec<(String, String)>,
        payload: Payload<'_>,
    ) -> Result<Answer> {
        let mut wait = BACKOFF_FIRST;
        let mut attempt = 0;
        loop {
            let mut rq = self.agent.request(method, url);
            for (n, v) in headers() {
                rq = rq.set(&n, &v);
            }
            let result = match payload {
                Payload::Empty => rq.call(),
                Payload::Bytes(b) => rq.set("content-length", &b.len().to_string()).send(b),
                Payload::File { file, offset, len } => {
                    let body = FileBody {
                        file,
                        pos: offset,
                        end: offset + len,
                    };
                    rq.set("content-length", &len.to_string())
                        // A small body gets a small buffer, not the whole block.
                        .send(io::BufReader::with_capacity(
                            (len.max(1) as usize).min(FILE_BLOCK),
                            body,
                        ))
                }
            };
            let retry = match result {
                Ok(resp) => return Ok(answer(resp)),
                Err(ureq::Error::Status(code, resp)) if code < 500 => return Ok(answer(resp)),
                Err(ureq::Error::Status(code, resp)) => {
                    if attempt >= self.retries {
                        return Ok(answer(resp));
                    }
                    format!("{method} {url}: status {code}")
                }
                Err(ureq::Error::Transport(t)) => {
                    if attempt >= self.retries {
                        return Err(BackendError::new(
                            ErrorKind::Unavailable,
                            format!("the upstream cannot be reached: {t}"),
                        ));
                    }
                    format!("{method} {url}: {t}")
                }
            };
            log::debug!("retrying after {wait:?}: {retry}");
            std::thread::sleep(wait);
            wait = (wait * 2).min(BACKOFF_MAX);
            attempt += 1;
        }
    }
}

fn answer(resp: ureq::Response) -> Answer {
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_string())))
        .collect();
    Answer {
        status: resp.status(),
        headers,
        body: resp.into_reader(),
    }
}

pub fn unavailable(e: io::Error) -> BackendError {
    BackendError::new(
        ErrorKind::Unavailable,
        format!("reading from the upstream: {e}"),
    )
}

/// Trust for upstream certificates: the system's store.
fn tls_config() -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        log::warn!("no trusted certificates found in the system store: TLS upstreams will fail");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BackendError::new(ErrorKind::Io, format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

struct Tls(Arc<rustls::ClientConfig>);

impl ureq::TlsConnector for Tls {
    fn connect(
        &self,
        dns_name: &str,
        io: Box<dyn ureq::ReadWrite>,
    ) -> std::result::Result<Box<dyn ureq::ReadWrite>, ureq::Error> {
        let tls_error =
            |e: String| ureq::Error::from(io::Error::new(io::ErrorKind::InvalidInput, e));
        let name = rustls::pki_types::ServerName::try_from(dns_name.to_string())
            .map_err(|e| tls_error(format!("{dns_name}: {e}")))?;
        let conn = rustls::ClientConnection::new(self.0.clone(), name)
            .map_err(|e| tls_error(e.to_string()))?;
        Ok(Box::new(TlsStream(rustls::StreamOwned::new(conn, io))))
    }
}

struct TlsStream(rustls::StreamOwned<rustls::ClientConnection, Box<dyn ureq::ReadWrite>>);

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsStream")
    }
}

impl ureq::ReadWrite for TlsStream {
    fn socket(&self) -> Option<&TcpStream> {
        self.0.get_ref().socket()
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            // An upstream that closes without close_notify after a complete answer.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            r => r,
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
