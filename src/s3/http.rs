//! The one response builder that owns HTTP framing on top of tiny_http: every response gets
//! its exact length (tiny_http would otherwise switch to chunked encoding at 32 KiB and drop
//! Content-Length, even for HEAD), header values are kept ASCII, and a client that hangs up
//! mid-body is normal, not an error.

use std::io::{BufReader, Read};

use tiny_http::{Header, StatusCode};

use crate::ops::{Body, Response};

/// Read size for streamed response bodies.
const RESPONSE_BUF: usize = 256 * 1024;

/// Sends `resp`; returns the body bytes it declared.
pub fn respond(rq: tiny_http::Request, resp: Response, request_id: &str) -> u64 {
    let mut headers = Vec::with_capacity(resp.headers.len() + 3);
    push(&mut headers, "x-amz-request-id", request_id);
    push(&mut headers, "x-amz-id-2", request_id);
    push(&mut headers, "Server", "s3serve");
    for (n, v) in &resp.headers {
        push(&mut headers, n, v);
    }
    let (reader, len): (Box<dyn Read + Send>, u64) = match resp.body {
        Body::Empty => (Box::new(std::io::empty()), 0),
        Body::Bytes(b) => {
            let n = b.len() as u64;
            (Box::new(std::io::Cursor::new(b)), n)
        }
        Body::Stream(r, n) => (Box::new(BufReader::with_capacity(RESPONSE_BUF, r)), n),
    };
    let response = tiny_http::Response::new(
        StatusCode(resp.status),
        headers,
        reader,
        Some(len as usize),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    if let Err(e) = rq.respond(response) {
        log::debug!("{request_id}: client went away: {e}");
    }
    len
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_values_are_encoded() {
        assert_eq!(ascii_header_value("plain"), "plain");
        assert_eq!(ascii_header_value("café"), "=?UTF-8?B?Y2Fmw6k=?=");
        assert_eq!(ascii_header_value("a\nb"), "=?UTF-8?B?YQpi?=");
    }
}
