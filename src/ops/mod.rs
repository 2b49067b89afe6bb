//! The S3 operations, one function per operation named as in the AWS API reference, grouped
//! by family. An op gets a parsed [`Request`] (routing and auth are done) and returns a
//! [`Response`] or an [`S3Error`]. Ops reach storage only through the [`Vfs`] and know no
//! sockets: a request body is a plain `Read`, a response body is a reader with a known length.

pub mod bucket;
pub mod checksum;
pub mod copy;
pub mod delete;
pub mod error;
pub mod headers;
pub mod list;
pub mod multipart;
pub mod object;
pub mod put;
pub mod xml;

use std::io::Read;
use std::time::SystemTime;

pub use error::{Code, S3Error};
pub use headers::{Headers, Query};

use crate::vfs::key;
use crate::vfs::Vfs;
use std::sync::Arc;

/// A response body: nothing, a small buffer, or a stream of known length.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// Bytes also kept elsewhere (a listing page).
    Shared(std::sync::Arc<Vec<u8>>),
    Stream(Box<dyn Read + Send>, u64),
    /// `len` bytes of an object, positioned at `offset`: streamed, or, for a file, handed
    /// to the front to send with sendfile(2).
    Object(Box<dyn crate::vfs::Body>, u64, u64),
    /// A `200` whose XML document (without its declaration) is still being produced: the
    /// front sends the declaration, keeps the connection alive with whitespace until the
    /// document or an error arrives, then sends that (S3's long-running-request convention).
    Pending(crossbeam_channel::Receiver<Result<Vec<u8>, S3Error>>),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    pub fn xml(status: u16, doc: Vec<u8>) -> Response {
        Response::empty(status)
            .header("Content-Type", "application/xml")
            .with_body(Body::Bytes(doc))
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn with_body(mut self, body: Body) -> Response {
        self.body = body;
        self
    }
}

pub type OpResult = Result<Response, S3Error>;

/// Server-wide settings the ops apply.
#[derive(Debug, Clone)]
pub struct OpsOptions {
    pub read_only: bool,
    /// `--no-modtime`: neither set file mtimes from `x-amz-meta-mtime` nor use them.
    pub no_modtime: bool,
    /// The owner shown in listings (the access key, or "anonymous").
    pub owner: String,
    /// `--multipart-max-uploads` (0: unlimited).
    pub max_uploads: usize,
}

/// What every op can reach: storage, settings and the request time.
pub struct Ctx<'a> {
    pub vfs: &'a Arc<Vfs>,
    pub opts: &'a OpsOptions,
    pub now: SystemTime,
}

/// One routed, authenticated request.
pub struct Request<'a> {
    pub bucket: String,
    pub key: String,
    pub query: &'a Query,
    pub headers: &'a Headers,
    pub body: &'a mut dyn Read,
    /// Declared body length (`Content-Length`, or the decoded length of an aws-chunked body).
    pub content_length: Option<u64>,
    /// A literal `x-amz-content-sha256` the body must match before anything is committed.
    pub expected_sha256: Option<[u8; 32]>,
    /// The access key that signed the request, if any.
    pub access_key: Option<String>,
    /// Trailer headers of an aws-chunked body, filled in as the body is read to its end.
    pub trailers: Option<Trailers>,
    /// The body's spool file, when the front spooled it (`body` reads the same file).
    pub spooled: Option<Spooled<'a>>,
}

/// A body the front received whole into a file before the request was taken.
pub struct Spooled<'a> {
    pub file: &'a std::fs::File,
    /// A path that `linkat(2)` with `AT_SYMLINK_FOLLOW` can give another name.
    pub link: std::path::PathBuf,
    /// Digests computed while it arrived, if any.
    pub digests: Option<&'a crate::vfs::Digests>,
}

/// Trailer headers (lower-case name, value) received after an aws-chunked body.
pub type Trailers = std::rc::Rc<std::cell::RefCell<Vec<(String, String)>>>;

impl Ctx<'_> {
    pub fn check_writable(&self) -> Result<(), S3Error> {
        if self.opts.read_only {
            return Err(S3Error::new(Code::AccessDenied, "The server is read-only."));
        }
        Ok(())
    }
}

impl Request<'_> {
    /// Checks the key maps safely to storage.
    pub fn check_key(&self) -> Result<(), S3Error> {
        key::check(&self.key).map_err(|e| S3Error::from(e).with_resource(self.resource()))
    }

    /// Whether the key is a folder marker (it ends in `/`).
    pub fn is_folder_marker(&self) -> bool {
        key::is_folder_marker(&self.key)
    }

    /// Refuses `size` bytes for a folder marker: the marker names a folder and holds no
    /// bytes of its own.
    pub fn check_marker_size(&self, size: u64) -> Result<(), S3Error> {
        if size == 0 || !self.is_folder_marker() {
            return Ok(());
        }
        Err(S3Error::new(
            Code::InvalidArgument,
            "A key ending in '/' is a folder marker and must be empty, but this object is not.",
        )
        .with("ArgumentName", "Content-Length")
        .with_resource(self.resource()))
    }

    /// `/bucket/key` for error bodies.
    pub fn resource(&self) -> String {
        if self.key.is_empty() {
            format!("/{}", self.bucket)
        } else {
            format!("/{}/{}", self.bucket, self.key)
        }
    }

    /// Reads a small XML body, verifying Content-MD5, the signed payload hash and a flexible
    /// checksum header.
    pub fn read_xml(&mut self) -> Result<Vec<u8>, S3Error> {
        self.read_xml_checked(true)
    }

    /// Reads a small XML body like [`Request::read_xml`]; with `body_checksum` false the
    /// `x-amz-checksum-*` headers are left alone, for a request whose checksum headers are
    /// about something else (CompleteMultipartUpload's name the whole object's checksum).
    pub fn read_xml_checked(&mut self, body_checksum: bool) -> Result<Vec<u8>, S3Error> {
        let body = xml::read_xml_body(self.body)?;
        if let Some(len) = self.content_length {
            if len != body.len() as u64 {
                return Err(S3Error::new(Code::IncompleteBody, "You did not provide the number of bytes specified by the Content-Length HTTP header."));
            }
        }
        let md5 = headers::content_md5(self.headers)?;
        let wanted = match body_checksum {
            true => checksum::from_headers(self.headers)?,
            false => None,
        };
        let mut hashes =
            crate::vfs::Hashes::new(md5.is_some(), false, self.expected_sha256.is_some())
                .with_checksum(wanted.as_ref().map(|w| w.alg));
        hashes.update(&body);
        let digests = hashes.finish();
        put::verify_digests(&digests, md5, self.expected_sha256)?;
        checksum::verify(wanted.as_ref(), digests.checksum.as_ref())?;
        Ok(body)
    }
}
