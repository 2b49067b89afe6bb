//! `--allow-origin`: preflights without a signature, CORS headers on real answers, and no
//! CORS headers at all without the flag.

use crate::harness::*;

fn server(origins: &[&str]) -> (TempDir, TestServer) {
    let dir = TempDir::new();
    let mut c = config(&dir.0);
    c.allow_origins = origins.iter().map(|o| o.to_string()).collect();
    let s = start(c);
    s.create_bucket("web");
    (dir, s)
}

#[test]
fn preflight_and_real_responses() {
    let (_d, s) = server(&["https://app.example"]);
    let pre = s.raw(
        "OPTIONS",
        "/web/up.bin",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "PUT"),
            (
                "access-control-request-headers",
                "content-type,x-amz-checksum-crc32",
            ),
        ],
        b"",
    );
    assert_eq!(pre.status, 200);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(pre.header("access-control-allow-methods"), Some("PUT"));
    assert_eq!(
        pre.header("access-control-allow-headers"),
        Some("content-type,x-amz-checksum-crc32")
    );
    assert!(pre.header("vary").unwrap().contains("Origin"));
    let evil = s.raw(
        "OPTIONS",
        "/web/up.bin",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "PUT"),
        ],
        b"",
    );
    assert_eq!(
        (evil.status, evil.header("access-control-allow-origin")),
        (403, None)
    );
    s.put("web", "k", b"v");
    let b = s.bucket("web");
    use rusty_s3::S3Action;
    let url = b
        .get_object(Some(&s.creds), "k")
        .sign(std::time::Duration::from_secs(60));
    let g = s.raw_url(
        "GET",
        url.as_str(),
        &[("origin", "https://app.example")],
        b"",
    );
    assert_eq!(
        g.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(g
        .header("access-control-expose-headers")
        .unwrap()
        .contains("ETag"));
    assert_eq!(g.header("vary"), Some("Origin"));
    // Errors carry them too, so the page can read why.
    let e = s.raw("GET", "/web/k", &[("origin", "https://app.example")], b"");
    assert_eq!(
        (e.status, e.header("access-control-allow-origin")),
        (403, Some("https://app.example"))
    );
}

#[test]
fn no_cors_headers_without_the_flag() {
    let (_d, s) = server(&[]);
    let pre = s.raw(
        "OPTIONS",
        "/web/k",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ],
        b"",
    );
    assert_eq!(pre.status, 405);
    let g = s.raw("GET", "/web/k", &[("origin", "https://app.example")], b"");
    assert!(
        g.headers
            .keys()
            .all(|k| !k.starts_with("access-control-") && k != "vary"),
        "{:?}",
        g.headers
    );
}
