//! aws-chunked request bodies (`STREAMING-…` payloads): a `Read` adapter that strips the
//! chunk framing as the bytes stream, checks every chunk signature (and the trailer
//! signature) against the seed signature of the request, and collects trailer headers such
//! as `x-amz-checksum-crc32` for the checksum check after the body. Any violation surfaces
//! as a read error carrying the S3Error, so nothing is committed.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html>

use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest, Sha256};

use crate::ops::{Code, S3Error};
use crate::s3::auth::{verify_mac, Streaming};
use crate::util;

/// Longest chunk header line (`hex-size;chunk-signature=<64 hex>`), with room to spare; a
/// peer that sends an endless line is cut off here instead of growing a buffer.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer bytes accepted (a few checksum lines and a signature).
pub const MAX_TRAILER: usize = 16 * 1024;
/// Largest chunk a client may announce.
pub const MAX_CHUNK: u64 = 1 << 32;
use crate::sigv4::EMPTY_SHA256;

pub use crate::ops::Trailers;

enum State {
    Header,
    Data(u64),
    Done,
}

pub struct ChunkedReader<'a> {
    inner: BufReader<&'a mut dyn Read>,
    signing: Option<Streaming>,
    prev_signature: String,
    chunk_signature: Option<String>,
    chunk_hash: Sha256,
    trailer_expected: Vec<String>,
    trailers: Trailers,
    state: State,
}

fn fail(code: Code, msg: &str) -> io::Error {
    io::Error::other(S3Error::new(code, msg.to_string()))
}

fn incomplete() -> io::Error {
    fail(
        Code::IncompleteBody,
        "The request body ended before its aws-chunked framing did.",
    )
}

impl<'a> ChunkedReader<'a> {
    /// `streaming` carries the signing key when chunk signatures must be checked (empty for
    /// anonymous servers); `trailer` is the `x-amz-trailer` header.
    pub fn new(
        inner: &'a mut dyn Read,
        streaming: Streaming,
        trailer: Option<&str>,
        trailers: Trailers,
    ) -> Self {
        let signed = streaming
            .mode
            .starts_with("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
            && !streaming.signing_key.is_empty();
        let trailer_expected = trailer
            .map(|t| {
                t.split(',')
                    .map(|n| n.trim().to_ascii_lowercase())
                    .filter(|n| !n.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        ChunkedReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            prev_signature: streaming.seed_signature.clone(),
            signing: signed.then_some(streaming),
            chunk_signature: None,
            chunk_hash: Sha256::new(),
            trailer_expected,
            trailers,
            state: State::Header,
        }
    }

    fn read_line(&mut self, limit: usize) -> io::Result<String> {
        let mut line = Vec::new();
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Err(incomplete());
            }
            let (take, done) = match buf.iter().position(|&c| c == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            line.extend_from_slice(&buf[..take]);
            self.inner.consume(take);
            if line.len() > limit {
                return Err(fail(
                    Code::InvalidRequest,
                    "An aws-chunked header line is too long.",
                ));
            }
            if done {
                let text = String::from_utf8(line)
                    .map_err(|_| fail(Code::InvalidRequest, "Malformed aws-chunked framing."))?;
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
        }
    }

    fn parse_header(&mut self) -> io::Result<u64> {
        let line = self.read_line(MAX_CHUNK_LINE)?;
        let (size, ext) = line.split_once(';').unwrap_or((line.as_str(), ""));
        let size = u64::from_str_radix(size.trim(), 16)
            .map_err(|_| fail(Code::InvalidRequest, "Malformed aws-chunked chunk size."))?;
        if size > MAX_CHUNK {
            return Err(fail(
                Code::InvalidRequest,
                "An aws-chunked chunk is too large.",
            ));
        }
        self.chunk_signature = ext
            .trim()
            .strip_prefix("chunk-signature=")
            .map(str::to_string);
        if self.signing.is_some() && self.chunk_signature.is_none() {
            return Err(fail(
                Code::SignatureDoesNotMatch,
                "A chunk of a signed aws-chunked body has no signature.",
            ));
        }
        self.chunk_hash = Sha256::new();
        Ok(size)
    }

    /// Checks the signature of the chunk just read (data hashed into `chunk_hash`).
    fn verify_chunk(&mut self) -> io::Result<()> {
        let Some(s) = &self.signing else {
            return Ok(());
        };
        let hash = util::hex(&std::mem::take(&mut self.chunk_hash).finalize());
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{hash}",
            s.amz_date, s.scope, self.prev_signature
        );
        let given = self.chunk_signature.take().unwrap_or_default();
        if !verify_mac(
            &s.signing_key,
            sts.as_bytes(),
            &util::unhex(&given).unwrap_or_default(),
        ) {
            return Err(fail(
                Code::SignatureDoesNotMatch,
                "The chunk signature we calculated does not match the signature you provided.",
            ));
        }
        self.prev_signature = given.to_ascii_lowercase();
        Ok(())
    }

    fn expect_crlf(&mut self) -> io::Result<()> {
        let line = self.read_line(2)?;
        if !line.is_empty() {
            return Err(fail(
                Code::InvalidRequest,
                "Malformed aws-chunked framing: a chunk is longer than announced.",
            ));
        }
        Ok(())
    }

    /// Reads trailer lines up to the blank line, checks the trailer signature and that every
    /// declared trailer arrived.
    fn read_trailer(&mut self) -> io::Result<()> {
        let mut canonical = String::new();
        let mut signature = None;
        let mut total = 0;
        loop {
            let line = match self.read_line(MAX_TRAILER) {
                Err(_) if self.trailer_expected.is_empty() && total == 0 => return Ok(()),
                r => r?,
            };
            total += line.len() + 2;
            if total > MAX_TRAILER {
                return Err(fail(
                    Code::MalformedTrailerError,
                    "The trailer is too large.",
                ));
            }
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| fail(Code::MalformedTrailerError, "A trailer line has no `:`."))?;
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
            if name == "x-amz-trailer-signature" {
                signature = Some(value);
            } else {
                canonical.push_str(&format!("{name}:{value}\n"));
                self.trailers.borrow_mut().push((name, value));
            }
        }
        if let Some(s) = &self.signing {
            let sig = signature.ok_or_else(|| {
                fail(
                    Code::SignatureDoesNotMatch,
                    "The trailer has no x-amz-trailer-signature.",
                )
            })?;
            let hash = util::hex(&Sha256::digest(canonical.as_bytes()));
            let sts = format!(
                "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{hash}",
                s.amz_date, s.scope, self.prev_signature
            );
            if !verify_mac(
                &s.signing_key,
                sts.as_bytes(),
                &util::unhex(&sig).unwrap_or_default(),
            ) {
                return Err(fail(Code::SignatureDoesNotMatch, "The trailer signature we calculated does not match the signature you provided."));
            }
        }
        let got = self.trailers.borrow();
        if let Some(missing) = self
            .trailer_expected
            .iter()
            .find(|n| !got.iter().any(|(g, _)| g == *n))
        {
            return Err(fail(
                Code::MalformedTrailerError,
                &format!("The request declared the trailer {missing} but did not send it."),
            ));
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.verify_chunk()?;
        if self
            .signing
            .as_ref()
            .is_some_and(|s| s.mode.ends_with("-TRAILER"))
            || !self.trailer_expected.is_empty()
            || self.signing.is_none()
        {
            self.read_trailer()?;
        } else {
            self.expect_crlf()?;
        }
        self.state = State::Done;
        Ok(())
    }
}

impl Read for ChunkedReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Header => match self.parse_header()? {
                    0 => self.finish()?,
                    n => self.state = State::Data(n),
                },
                State::Data(0) => {
                    self.expect_crlf()?;
                    self.verify_chunk()?;
                    self.state = State::Header;
                }
                State::Data(left) => {
                    let want = out.len().min(left as usize);
                    let n = self.inner.read(&mut out[..want])?;
                    if n == 0 {
                        return Err(incomplete());
                    }
                    if self.signing.is_some() {
                        self.chunk_hash.update(&out[..n]);
                    }
                    self.state = State::Data(left - n as u64);
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::auth::{hmac, signing_key};

    fn streaming(mode: &str, key: Vec<u8>, seed: &str) -> Streaming {
        Streaming {
            mode: mode.into(),
            signing_key: key,
            amz_date: "20130524T000000Z".into(),
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            seed_signature: seed.into(),
        }
    }

    type Decoded = (Result<Vec<u8>, Code>, Vec<(String, String)>);

    fn decode(body: &[u8], s: Streaming, trailer: Option<&str>) -> Decoded {
        let mut src: &[u8] = body;
        let trailers = Trailers::default();
        let mut r = ChunkedReader::new(&mut src, s, trailer, trailers.clone());
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).map(|_| out).map_err(|e| {
            e.get_ref()
                .and_then(|i| i.downcast_ref::<S3Error>())
                .map(|e| e.code)
                .unwrap_or(Code::InternalError)
        });
        let t = trailers.borrow().clone();
        (res, t)
    }

    /// Signs chunks the way SDKs do, to build test bodies.
    fn signed_body(key: &[u8], seed: &str, chunks: &[&[u8]], trailer: Option<&str>) -> Vec<u8> {
        let mut prev = seed.to_string();
        let mut out = Vec::new();
        let mut all: Vec<&[u8]> = chunks.to_vec();
        all.push(b"");
        for c in all {
            let sts = format!("AWS4-HMAC-SHA256-PAYLOAD\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n{prev}\n{EMPTY_SHA256}\n{}", util::hex(&Sha256::digest(c)));
            prev = util::hex(&hmac(key, sts.as_bytes()));
            out.extend(format!("{:x};chunk-signature={prev}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            if !c.is_empty() {
                out.extend(b"\r\n");
            }
        }
        match trailer {
            Some(t) => {
                let hash = util::hex(&Sha256::digest(format!("{t}\n").as_bytes()));
                let sts = format!("AWS4-HMAC-SHA256-TRAILER\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n{prev}\n{hash}");
                let sig = util::hex(&hmac(key, sts.as_bytes()));
                out.extend(format!("{t}\r\nx-amz-trailer-signature:{sig}\r\n\r\n").as_bytes());
            }
            None => out.extend(b"\r\n"),
        }
        out
    }

    #[test]
    fn signed_chunks_decode_and_verify() {
        let key = signing_key("secret", "20130524", "us-east-1");
        let body = signed_body(&key, "seed", &[&[b'a'; 65536], b"tail"], None);
        let (r, _) = decode(
            &body,
            streaming("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", key.clone(), "seed"),
            None,
        );
        let out = r.unwrap();
        assert_eq!(out.len(), 65540);
        assert!(out.ends_with(b"tail"));
        let mut tampered = body.clone();
        tampered[200] ^= 1;
        let (r, _) = decode(
            &tampered,
            streaming("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", key.clone(), "seed"),
            None,
        );
        assert_eq!(r.unwrap_err(), Code::SignatureDoesNotMatch);
        let (r, _) = decode(
            &body,
            streaming("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", key, "other-seed"),
            None,
        );
        assert_eq!(r.unwrap_err(), Code::SignatureDoesNotMatch);
    }

    // The example of the AWS "Signature Calculations for the Authorization Header: Transferring
    // Payload in Multiple Chunks" page: 65 KiB + 1 KiB of 'a', seed signature from its PUT.
    #[test]
    fn aws_published_chunked_example() {
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "20130524",
            "us-east-1",
        );
        let seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
        let sigs = [
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
        ];
        let mut body = Vec::new();
        for (len, sig) in [(65536usize, sigs[0]), (1024, sigs[1]), (0, sigs[2])] {
            body.extend(format!("{len:x};chunk-signature={sig}\r\n").as_bytes());
            body.extend(std::iter::repeat_n(b'a', len));
            body.extend(b"\r\n");
        }
        let (r, _) = decode(
            &body,
            streaming("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", key, seed),
            None,
        );
        assert_eq!(r.unwrap().len(), 66560);
    }

    #[test]
    fn signed_trailer_is_verified_and_collected() {
        let key = signing_key("secret", "20130524", "us-east-1");
        let body = signed_body(
            &key,
            "seed",
            &[b"hello"],
            Some("x-amz-checksum-crc32:NhCmhg=="),
        );
        let mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
        let (r, t) = decode(
            &body,
            streaming(mode, key.clone(), "seed"),
            Some("x-amz-checksum-crc32"),
        );
        assert_eq!(r.unwrap(), b"hello");
        assert_eq!(
            t,
            vec![("x-amz-checksum-crc32".to_string(), "NhCmhg==".to_string())]
        );
        let forged = String::from_utf8(body)
            .unwrap()
            .replace("NhCmhg==", "AAAAAA==");
        let (r, _) = decode(
            forged.as_bytes(),
            streaming(mode, key, "seed"),
            Some("x-amz-checksum-crc32"),
        );
        assert_eq!(r.unwrap_err(), Code::SignatureDoesNotMatch);
    }

    #[test]
    fn unsigned_trailer_mode() {
        let body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n";
        let s = streaming("STREAMING-UNSIGNED-PAYLOAD-TRAILER", Vec::new(), "");
        let (r, t) = decode(body, s.clone(), Some("x-amz-checksum-crc32"));
        assert_eq!(r.unwrap(), b"hello");
        assert_eq!(t.len(), 1);
        let (r, _) = decode(
            b"5\r\nhello\r\n0\r\n\r\n",
            s.clone(),
            Some("x-amz-checksum-crc32"),
        );
        assert_eq!(r.unwrap_err(), Code::MalformedTrailerError);
        let (r, _) = decode(b"5\r\nhel", s.clone(), None);
        assert_eq!(r.unwrap_err(), Code::IncompleteBody);
        let (r, _) = decode(b"zz\r\n", s.clone(), None);
        assert_eq!(r.unwrap_err(), Code::InvalidRequest);
        let long = format!("5;{}\r\n", "x".repeat(5000));
        let (r, _) = decode(long.as_bytes(), s, None);
        assert_eq!(r.unwrap_err(), Code::InvalidRequest);
    }
}
