//! aws-chunked bodies over raw HTTP (anonymous server: framing and trailers; the signature
//! checks are unit-tested beside the decoder).

use crate::harness::*;
use std::io::Write;
use std::net::TcpStream;

fn anon(dir: &TempDir) -> TestServer {
    let s = start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Local(dir.0.clone()),
    ));
    s.raw("PUT", "/bkt", &[], b"");
    s
}

fn crc32_b64(data: &[u8]) -> String {
    s3serve::util::base64(&s3serve::vfs::checksum::ChecksumAlg::Crc32.digest(data))
}

const HDRS: [(&str, &str); 3] = [
    ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
    ("content-encoding", "aws-chunked"),
    ("x-amz-trailer", "x-amz-checksum-crc32"),
];

fn framed(data: &[u8], trailer: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for c in data.chunks(65536) {
        out.extend(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend(b"\r\n");
    }
    out.extend(format!("0\r\n{trailer}\r\n").as_bytes());
    out
}

#[test]
fn trailer_checksum_is_verified_and_stored() {
    let dir = TempDir::new();
    let s = anon(&dir);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
    let len = data.len().to_string();
    let mut h = HDRS.to_vec();
    h.push(("x-amz-decoded-content-length", &len));
    let good = framed(
        &data,
        &format!("x-amz-checksum-crc32:{}\r\n", crc32_b64(&data)),
    );
    let r = s.raw("PUT", "/bkt/ok", &h, &good);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(std::fs::read(dir.0.join("bkt/ok")).unwrap() == data);
    let head = s.raw(
        "HEAD",
        "/bkt/ok",
        &[("x-amz-checksum-mode", "ENABLED")],
        b"",
    );
    assert_eq!(
        head.header("x-amz-checksum-crc32"),
        Some(crc32_b64(&data).as_str())
    );
    assert_eq!(
        head.header("content-encoding"),
        None,
        "aws-chunked is not stored"
    );
    let bad = framed(&data, "x-amz-checksum-crc32:AAAAAA==\r\n");
    assert_eq!(s.raw("PUT", "/bkt/bad", &h, &bad).code(), "BadDigest");
    let missing = framed(&data, "");
    assert_eq!(
        s.raw("PUT", "/bkt/bad", &h, &missing).code(),
        "MalformedTrailerError"
    );
    let mut short = good.clone();
    short.truncate(good.len() - 200);
    let mut c = TcpStream::connect(s.addr).unwrap();
    let mut req = format!(
        "PUT /bkt/bad HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n",
        good.len()
    );
    for (n, v) in &h {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    c.write_all(format!("{req}\r\n").as_bytes()).unwrap();
    c.write_all(&short).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let r = read_response(&mut std::io::BufReader::new(c), false);
    assert_eq!((r.status, r.code().as_str()), (400, "IncompleteBody"));
    let wrong_len = s.raw(
        "PUT",
        "/bkt/bad",
        &[
            HDRS[0],
            HDRS[1],
            HDRS[2],
            ("x-amz-decoded-content-length", "5"),
        ],
        &good,
    );
    assert_eq!(wrong_len.code(), "IncompleteBody");
    assert_eq!(
        std::fs::read_dir(dir.0.join("bkt")).unwrap().count(),
        1,
        "nothing but `ok` was stored"
    );
}

#[test]
fn aws_chunked_inside_http_chunking_without_content_length() {
    let dir = TempDir::new();
    let s = anon(&dir);
    let data = b"nested framing".repeat(1000);
    let inner = framed(
        &data,
        &format!("x-amz-checksum-crc32:{}\r\n", crc32_b64(&data)),
    );
    let mut req = b"PUT /bkt/nested HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n".to_vec();
    for (n, v) in HDRS {
        req.extend(format!("{n}: {v}\r\n").as_bytes());
    }
    req.extend(format!("x-amz-decoded-content-length: {}\r\n\r\n", data.len()).as_bytes());
    for c in inner.chunks(7000) {
        req.extend(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    let r = raw_exchange(s.addr, &req, false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(std::fs::read(dir.0.join("bkt/nested")).unwrap(), data);
}

#[test]
fn sigv4a_streaming_is_not_implemented() {
    let dir = TempDir::new();
    let mut c = s3serve::config::Config::for_tests(s3serve::config::Storage::Local(dir.0.clone()));
    c.auth_keys = vec![(AK.into(), SK.into())];
    let s = start(c);
    let auth = "AWS4-ECDSA-P256-SHA256 Credential=AKIDTEST/20260101/s3/aws4_request, SignedHeaders=host, Signature=00";
    let r = s.raw(
        "PUT",
        "/bkt/k",
        &[
            ("authorization", auth),
            (
                "x-amz-content-sha256",
                "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
            ),
        ],
        b"x",
    );
    assert_eq!((r.status, r.code().as_str()), (501, "NotImplemented"));
}

#[test]
fn the_connection_stays_in_sync_after_a_nested_chunked_body() {
    let dir = TempDir::new();
    let s = anon(&dir);
    let data = b"keep-alive".repeat(500);
    let inner = framed(
        &data,
        &format!("x-amz-checksum-crc32:{}\r\n", crc32_b64(&data)),
    );
    let mut req = b"PUT /bkt/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n".to_vec();
    for (n, v) in HDRS {
        req.extend(format!("{n}: {v}\r\n").as_bytes());
    }
    req.extend(b"\r\n");
    req.extend(format!("{:x}\r\n", inner.len()).as_bytes());
    req.extend_from_slice(&inner);
    req.extend(b"\r\n0\r\n\r\n");
    let mut conn = TcpStream::connect(s.addr).unwrap();
    conn.write_all(&req).unwrap();
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    assert_eq!(read_response(&mut reader, false).status, 200);
    // The next request on the same connection is parsed as a request, not as leftovers.
    conn.write_all(b"GET /bkt/k HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let r = read_response(&mut reader, false);
    assert_eq!((r.status, r.body.len()), (200, data.len()));
}
