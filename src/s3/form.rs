//! `multipart/form-data` request bodies (browser form uploads), read as a stream: small
//! fields are collected with a size limit, and the file part is handed on as a `Read` that
//! stops at the next boundary, so a large upload never sits in memory.
//! <https://www.rfc-editor.org/rfc/rfc7578>

use std::io::{self, Read};

use crate::ops::{Code, S3Error};

/// Largest header block of one part.
pub const MAX_PART_HEADER: usize = 8 * 1024;
/// Read buffer; must exceed the longest boundary (70 bytes by RFC 2046) many times over.
const BUF: usize = 64 * 1024;

/// The headers of one part that matter here.
#[derive(Debug, Default, PartialEq)]
pub struct PartHeaders {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

pub struct FormReader<'a> {
    inner: &'a mut dyn Read,
    /// `\r\n--boundary`: what ends a part's data.
    delimiter: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes of `buf` not yet consumed start here.
    pos: usize,
    eof: bool,
    /// The current part's data has ended (its delimiter is consumed).
    part_done: bool,
    finished: bool,
}

fn bad(msg: &str) -> S3Error {
    S3Error::new(
        Code::MalformedPOSTRequest,
        format!("The body of your POST request is not well-formed multipart/form-data: {msg}"),
    )
}

/// The boundary parameter of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

impl<'a> FormReader<'a> {
    pub fn new(inner: &'a mut dyn Read, boundary: &str) -> FormReader<'a> {
        FormReader {
            inner,
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            buf: Vec::with_capacity(BUF),
            pos: 0,
            eof: false,
            // The body starts with `--boundary` (no CRLF): pretend one came before it.
            part_done: true,
            finished: false,
        }
        .primed()
    }

    fn primed(mut self) -> Self {
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Makes at least `n` unconsumed bytes available unless the body ends first.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        if self.pos > 0 && self.buf.len() - self.pos < n {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        while !self.eof && self.buf.len() - self.pos < n {
            let start = self.buf.len();
            self.buf.resize(start + BUF.max(n), 0);
            let got = self.inner.read(&mut self.buf[start..])?;
            self.buf.truncate(start + got);
            self.eof = got == 0;
        }
        Ok(())
    }

    fn find_delimiter(&self) -> Option<usize> {
        let hay = &self.buf[self.pos..];
        hay.windows(self.delimiter.len())
            .position(|w| w == self.delimiter.as_slice())
    }

    /// Reads the current part's data into `out`; 0 at the part's end.
    fn read_data(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.part_done {
            return Ok(0);
        }
        self.fill(self.delimiter.len() + 4096)?;
        let available = self.buf.len() - self.pos;
        let (data_len, at_delimiter) = match self.find_delimiter() {
            Some(i) => (i, true),
            None if self.eof => return Err(io::Error::other(bad("the body ended inside a part"))),
            None => (available - (self.delimiter.len() - 1), false),
        };
        let n = data_len.min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if at_delimiter && n == data_len {
            self.pos += self.delimiter.len();
            self.part_done = true;
        }
        Ok(n)
    }

    /// Moves to the next part and returns its headers; `None` after the closing boundary.
    pub fn next_part(&mut self) -> Result<Option<PartHeaders>, S3Error> {
        let mut sink = [0u8; 4096];
        while !self.part_done {
            if self.read_data(&mut sink).map_err(io_error)? == 0 && !self.part_done {
                return Err(bad("a part has no end"));
            }
        }
        if self.finished {
            return Ok(None);
        }
        self.fill(2).map_err(io_error)?;
        let tail = &self.buf[self.pos..(self.pos + 2).min(self.buf.len())];
        if tail == b"--" {
            self.finished = true;
            return Ok(None);
        }
        let headers = self.read_headers()?;
        self.part_done = false;
        Ok(Some(headers))
    }

    fn read_headers(&mut self) -> Result<PartHeaders, S3Error> {
        self.fill(MAX_PART_HEADER).map_err(io_error)?;
        let hay = &self.buf[self.pos..];
        let end = hay
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad("part headers are missing or too long"))?;
        let block = String::from_utf8_lossy(&hay[..end]).into_owned();
        self.pos += end + 4;
        let mut h = PartHeaders::default();
        for line in block.split("\r\n").filter(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    h.name = param(value, "name").unwrap_or_default();
                    h.filename = param(value, "filename");
                }
                "content-type" => h.content_type = Some(value.trim().to_string()),
                _ => {}
            }
        }
        Ok(h)
    }

    /// The current part's whole value, at most `limit` bytes.
    pub fn read_value(&mut self, limit: usize) -> Result<String, S3Error> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.read_data(&mut chunk).map_err(io_error)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
            if out.len() > limit {
                return Err(S3Error::new(
                    Code::MaxPostPreDataLengthExceeded,
                    "Your POST request fields preceeding the upload file were too large.",
                ));
            }
        }
        String::from_utf8(out).map_err(|_| bad("a field is not UTF-8"))
    }
}

/// The current part's data, as a stream.
impl Read for FormReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.read_data(out)
    }
}

fn io_error(e: io::Error) -> S3Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<S3Error>()) {
        Some(s) => s.clone(),
        None => S3Error::new(
            Code::IncompleteBody,
            format!("Reading the request body failed: {e}"),
        ),
    }
}

/// A `name="value"` parameter of a Content-Disposition header.
fn param(header: &str, name: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(file: &[u8]) -> Vec<u8> {
        let mut b = b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nuploads/${filename}\r\n--XyZ\r\n".to_vec();
        b.extend_from_slice(b"Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n");
        b.extend_from_slice(file);
        b.extend_from_slice(b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"after\"\r\n\r\nignored\r\n--XyZ--\r\n");
        b
    }

    #[test]
    fn fields_then_a_streamed_file() {
        let file: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 7) as u8 + if i % 1000 == 0 { b'\r' } else { 0 })
            .collect();
        let raw = body(&file);
        let mut src: &[u8] = &raw;
        let mut f = FormReader::new(&mut src, "XyZ");
        let key = f.next_part().unwrap().unwrap();
        assert_eq!(key.name, "key");
        assert_eq!(f.read_value(1024).unwrap(), "uploads/${filename}");
        let part = f.next_part().unwrap().unwrap();
        assert_eq!(
            (
                part.name.as_str(),
                part.filename.as_deref(),
                part.content_type.as_deref()
            ),
            ("file", Some("a.txt"), Some("text/plain"))
        );
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert!(got == file);
        assert_eq!(f.next_part().unwrap().unwrap().name, "after");
        assert!(f.next_part().unwrap().is_none());
    }

    #[test]
    fn malformed_forms() {
        let mut src: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end";
        let mut f = FormReader::new(&mut src, "XyZ");
        f.next_part().unwrap();
        assert_eq!(
            f.read_value(100).unwrap_err().code,
            Code::MalformedPOSTRequest
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=\"abc\"").as_deref(),
            Some("abc")
        );
        assert_eq!(boundary("text/plain"), None);
        let big = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n{}\r\n--XyZ--",
            "v".repeat(5000)
        );
        let mut src: &[u8] = big.as_bytes();
        let mut f = FormReader::new(&mut src, "XyZ");
        f.next_part().unwrap();
        assert_eq!(
            f.read_value(100).unwrap_err().code,
            Code::MaxPostPreDataLengthExceeded
        );
    }
}
