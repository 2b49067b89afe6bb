//! Authentication seen from outside: presigned URLs, wrong keys, unsigned requests.

use crate::harness::*;
use rusty_s3::{Credentials, S3Action};
use std::time::Duration;

#[test]
fn presigned_get_put_head_delete() {
    let dir = TempDir::new();
    let s = start(config(&dir.0));
    s.create_bucket("bk1");
    assert_eq!(s.put("bk1", "k", b"v").status, 200);
    assert_eq!(s.get("bk1", "k", &[]).text(), "v");
    assert_eq!(s.head("bk1", "k").status, 200);
    assert_eq!(s.delete("bk1", "k").status, 204);
}

#[test]
fn bad_credentials_and_unsigned_requests_are_refused() {
    let dir = TempDir::new();
    let s = start(config(&dir.0));
    s.create_bucket("bk1");
    s.put("bk1", "k", b"secret");
    let b = s.bucket("bk1");
    let wrong = Credentials::new(AK, "not-the-secret");
    let url = b
        .get_object(Some(&wrong), "k")
        .sign(Duration::from_secs(60));
    let r = s.raw_url("GET", url.as_str(), &[], b"");
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "SignatureDoesNotMatch")
    );
    assert!(r.text().contains("<StringToSign>") && !r.text().contains("not-the-secret"));
    let unknown = Credentials::new("NOBODY", SK);
    let url = b
        .get_object(Some(&unknown), "k")
        .sign(Duration::from_secs(60));
    assert_eq!(
        s.raw_url("GET", url.as_str(), &[], b"").code(),
        "InvalidAccessKeyId"
    );
    let r = s.raw("GET", "/bk1/k", &[], b"");
    assert_eq!((r.status, r.code().as_str()), (403, "AccessDenied"));
    assert!(!r.text().contains("secret"));
    // A URL signed for one key does not open another.
    let url = b
        .get_object(Some(&s.creds), "k")
        .sign(Duration::from_secs(60));
    let other = url.as_str().replace("/bk1/k?", "/bk1/other?");
    assert_eq!(
        s.raw_url("GET", &other, &[], b"").code(),
        "SignatureDoesNotMatch"
    );
    // Unsigned metadata cannot ride along a presigned PUT.
    let url = b
        .put_object(Some(&s.creds), "m")
        .sign(Duration::from_secs(60));
    let r = s.raw_url("PUT", url.as_str(), &[("x-amz-meta-evil", "1")], b"x");
    assert_eq!((r.status, r.code().as_str()), (403, "AccessDenied"));
    // Presigned URLs live at most seven days.
    let url = b
        .get_object(Some(&s.creds), "k")
        .sign(Duration::from_secs(8 * 86400));
    assert_eq!(s.raw_url("GET", url.as_str(), &[], b"").status, 400);
}

#[test]
fn second_key_and_a_malformed_header() {
    let dir = TempDir::new();
    let mut c = config(&dir.0);
    c.auth_keys.push(("SECOND".into(), "other-secret".into()));
    let s = start(c);
    s.create_bucket("bk1");
    let b = s.bucket("bk1");
    let second = Credentials::new("SECOND", "other-secret");
    let url = b
        .put_object(Some(&second), "k")
        .sign(Duration::from_secs(60));
    assert_eq!(s.raw_url("PUT", url.as_str(), &[], b"2").status, 200);
    let r = s.raw(
        "GET",
        "/bk1/k",
        &[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDTEST/2026/x, SignedHeaders=host, Signature=00",
        )],
        b"",
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "AuthorizationHeaderMalformed")
    );
    let r = s.raw(
        "GET",
        "/bk1/k",
        &[("authorization", "AWS AKIDTEST:abc")],
        b"",
    );
    // Signature Version 2 without a Date or x-amz-date: refused as S3 does.
    assert_eq!((r.status, r.code().as_str()), (403, "AccessDenied"));
    assert!(r.text().contains("Date"), "{}", r.text());
}

#[test]
fn anonymous_mode_ignores_credentials() {
    let dir = TempDir::new();
    let s = start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Local(dir.0.clone()),
    ));
    assert_eq!(
        s.raw("PUT", "/bk1", &[("authorization", "garbage")], b"")
            .status,
        200
    );
    assert_eq!(s.raw("PUT", "/bk1/k", &[], b"x").status, 200);
}

#[test]
fn a_forged_relay_header_claims_nothing() {
    // The relay's own header tells a worker who the peer is (unix-socket peers skip auth).
    // A client's copy is dropped, whatever its length, before the relay adds the real one.
    let dir = TempDir::new();
    let s = start(config(&dir.0));
    let long = format!("{} 1 1 0 unix", "f".repeat(400));
    for forged in ["forged 1 1 0 unix", long.as_str()] {
        let r = s.raw("GET", "/", &[("x-s3serve-relay", forged)], b"");
        assert_eq!((r.status, r.code().as_str()), (403, "AccessDenied"));
    }
}

/// Signs a version 2 string to sign with the test secret.
fn v2_signature(string_to_sign: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SK.as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    s3serve::util::base64(&mac.finalize().into_bytes())
}

#[test]
fn signature_version_2_headers_and_presigned_urls() {
    let dir = TempDir::new();
    let s = start(config(&dir.0));
    s.create_bucket("bk1");
    let date = s3serve::util::http_date(std::time::SystemTime::now());
    let sts = format!("PUT\n\ntext/plain\n{date}\nx-amz-meta-who:v2\n/bk1/k");
    let auth = format!("AWS {AK}:{}", v2_signature(&sts));
    let headers = [
        ("Date", date.as_str()),
        ("Content-Type", "text/plain"),
        ("x-amz-meta-who", "v2"),
        ("Authorization", auth.as_str()),
    ];
    let r = s.raw("PUT", "/bk1/k", &headers, b"version two");
    assert_eq!(r.status, 200, "{}", r.text());
    // The same signature does not cover another body's metadata, or another key.
    let tampered = [
        headers[0],
        headers[1],
        ("x-amz-meta-who", "mallory"),
        headers[3],
    ];
    let r = s.raw("PUT", "/bk1/k", &tampered, b"evil");
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "SignatureDoesNotMatch")
    );
    assert!(r
        .text()
        .contains("x-amz-meta-who:mallory\n/bk1/k</StringToSign>"));
    assert_eq!(s.raw("PUT", "/bk1/other", &headers, b"x").status, 403);
    // A presigned URL, valid for a minute.
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let signature = v2_signature(&format!("GET\n\n\n{expires}\n/bk1/k"));
    let url = format!(
        "/bk1/k?AWSAccessKeyId={AK}&Expires={expires}&Signature={}",
        s3serve::util::uri_encode(&signature, false)
    );
    let r = s.raw("GET", &url, &[], b"");
    assert_eq!(r.text(), "version two");
    assert_eq!(r.header("x-amz-meta-who"), Some("v2"));
    let stale = url.replace(&format!("Expires={expires}"), "Expires=1000");
    assert_eq!(s.raw("GET", &stale, &[], b"").status, 403);
}
