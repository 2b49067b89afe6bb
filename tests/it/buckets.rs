//! Bucket operations and the unknown-subresource guard.

use crate::harness::*;

#[test]
fn bucket_life_cycle() {
    let dir = TempDir::new();
    let s = start(config(&dir.0));
    s.create_bucket("photos");
    assert!(dir.0.join("photos").is_dir());
    let b = s.bucket("photos");
    let r = s.send("PUT", b.create_bucket(&s.creds), b"");
    assert_eq!(
        (r.status, r.code().as_str()),
        (409, "BucketAlreadyOwnedByYou")
    );
    let bad = s.bucket("Bad_Name");
    let r = s.send("PUT", bad.create_bucket(&s.creds), b"");
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidBucketName"));
    assert_eq!(
        s.send("HEAD", b.head_bucket(Some(&s.creds)), b"").status,
        200
    );
    s.put("photos", "x", b"1");
    let r = s.send("DELETE", b.delete_bucket(&s.creds), b"");
    assert_eq!((r.status, r.code().as_str()), (409, "BucketNotEmpty"));
    s.delete("photos", "x");
    assert_eq!(s.send("DELETE", b.delete_bucket(&s.creds), b"").status, 204);
    assert_eq!(
        s.send("HEAD", b.head_bucket(Some(&s.creds)), b"").status,
        404
    );
    let r = s.send("DELETE", b.delete_bucket(&s.creds), b"");
    assert_eq!((r.status, r.code().as_str()), (404, "NoSuchBucket"));
}

#[test]
fn anonymous_server_lists_buckets_and_locations() {
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("bk1")).unwrap();
    std::fs::write(dir.0.join("rootfile.txt"), b"not a bucket").unwrap();
    // Too short for any of S3's naming rules, so no client could name it: not a bucket.
    std::fs::create_dir(dir.0.join("b2")).unwrap();
    let s = start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Local(dir.0.clone()),
    ));
    let r = s.raw("GET", "/", &[], b"");
    assert_eq!(r.header("content-type"), Some("application/xml"));
    assert!(
        !r.text().contains("rootfile")
            && !r.text().contains(".s3serve")
            && !r.text().contains("<Name>b2</Name>"),
        "{}",
        r.text()
    );
    assert!(r
        .text()
        .contains("<ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"));
    assert!(r.text().contains("<Name>bk1</Name>"));
    assert!(s
        .raw("GET", "/bk1?location", &[], b"")
        .text()
        .contains("<LocationConstraint"));
    let v = s.raw("GET", "/bk1?versioning", &[], b"");
    assert!(v.text().contains("<VersioningConfiguration") && !v.text().contains("<Status>"));
    assert_eq!(
        s.raw("GET", "/nope?location", &[], b"").code(),
        "NoSuchBucket"
    );
}

#[test]
fn unknown_subresources_never_touch_data() {
    let dir = TempDir::new();
    let s = start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Local(dir.0.clone()),
    ));
    assert_eq!(s.raw("PUT", "/bk1", &[], b"").status, 200);
    assert_eq!(s.raw("PUT", "/bk1/obj", &[], b"precious").status, 200);
    for (m, t) in [
        ("PUT", "/bk1/obj?tagging"),
        ("PUT", "/bk1/obj?acl"),
        ("DELETE", "/bk1/obj?tagging"),
        ("GET", "/bk1/obj?acl"),
        ("GET", "/bk1?policy"),
        ("DELETE", "/bk1?cors"),
        ("PUT", "/bk1?lifecycle"),
        ("GET", "/bk1?versions"),
        ("PUT", "/bk1/obj?retention"),
    ] {
        let r = s.raw(m, t, &[], if m == "PUT" { b"<Tagging/>" } else { b"" });
        assert_eq!(
            (r.status, r.code().as_str()),
            (501, "NotImplemented"),
            "{m} {t}"
        );
    }
    assert_eq!(std::fs::read(dir.0.join("bk1/obj")).unwrap(), b"precious");
    assert!(dir.0.join("bk1").is_dir());
    let r = s.raw("PATCH", "/bk1/obj", &[], b"");
    assert_eq!((r.status, r.code().as_str()), (405, "MethodNotAllowed"));
}

#[test]
fn read_only_refuses_every_write() {
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("bk1")).unwrap();
    std::fs::write(dir.0.join("bk1/k"), b"keep").unwrap();
    let mut c = s3serve::config::Config::for_tests(s3serve::config::Storage::Local(dir.0.clone()));
    c.read_only = true;
    let s = start(c);
    for (m, t, body) in [
        ("PUT", "/bk1/new", &b"x"[..]),
        ("DELETE", "/bk1/k", b""),
        ("PUT", "/newbucket", b""),
        ("DELETE", "/bk1", b""),
        (
            "POST",
            "/bk1?delete",
            b"<Delete><Object><Key>k</Key></Object></Delete>",
        ),
    ] {
        let r = s.raw(m, t, &[], body);
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "AccessDenied"),
            "{m} {t}"
        );
    }
    let r = s.raw("PUT", "/bk1/copy", &[("x-amz-copy-source", "bk1/k")], b"");
    assert_eq!(r.status, 403);
    assert_eq!(s.raw("GET", "/bk1/k", &[], b"").text(), "keep");
    assert!(!dir.0.join("newbucket").exists() && !dir.0.join("bk1/new").exists());
}

#[test]
fn delete_objects_with_quiet_and_errors() {
    let dir = TempDir::new();
    let s = start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Local(dir.0.clone()),
    ));
    s.raw("PUT", "/bk1", &[], b"");
    for k in ["a", "d/b", "c"] {
        s.raw("PUT", &format!("/bk1/{k}"), &[], b"x");
    }
    let body = b"<Delete><Object><Key>a</Key></Object><Object><Key>d/b</Key></Object><Object><Key>a/../../x</Key></Object><Object><Key>missing</Key></Object></Delete>";
    let r = s.raw("POST", "/bk1?delete", &[], body);
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.text();
    assert!(
        t.contains("<Deleted><Key>a</Key></Deleted>")
            && t.contains("<Deleted><Key>missing</Key></Deleted>")
    );
    assert!(
        t.contains("<Error><Key>a/../../x</Key><Code>InvalidArgument</Code>"),
        "{t}"
    );
    assert!(
        !dir.0.join("bk1/a").exists()
            && !dir.0.join("bk1/d").exists()
            && dir.0.join("bk1/c").exists()
    );
    let r = s.raw(
        "POST",
        "/bk1?delete",
        &[],
        b"<Delete><Quiet>true</Quiet><Object><Key>c</Key></Object></Delete>",
    );
    assert!(!r.text().contains("<Deleted>") && !dir.0.join("bk1/c").exists());
    let many: String = (0..1001)
        .map(|i| format!("<Object><Key>k{i}</Key></Object>"))
        .collect();
    let r = s.raw(
        "POST",
        "/bk1?delete",
        &[],
        format!("<Delete>{many}</Delete>").as_bytes(),
    );
    assert_eq!((r.status, r.code().as_str()), (400, "MalformedXML"));
    let r = s.raw(
        "POST",
        "/bk1?delete",
        &[("content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")],
        b"<Delete><Object><Key>c</Key></Object></Delete>",
    );
    assert_eq!((r.status, r.code().as_str()), (400, "BadDigest"));
    assert_eq!(
        s.raw("POST", "/bk1?delete", &[], b"<Delete><Object>")
            .code(),
        "MalformedXML"
    );
}

#[test]
fn virtual_hosted_and_path_style_on_one_server() {
    let dir = TempDir::new();
    let mut c = config(&dir.0);
    c.vhost_domain = Some("s3.test".into());
    let s = start(c);
    s.create_bucket("photos");
    let port = s.addr.port();
    let base: url::Url = format!("http://s3.test:{port}").parse().unwrap();
    let b = rusty_s3::Bucket::new(
        base,
        rusty_s3::UrlStyle::VirtualHost,
        "photos".to_string(),
        "us-east-1",
    )
    .unwrap();
    use rusty_s3::S3Action;
    let send = |method: &str, url: url::Url, body: &[u8]| {
        let host = format!("{}:{port}", url.host_str().unwrap());
        assert_eq!(host, format!("photos.s3.test:{port}"));
        let target = format!("{}?{}", url.path(), url.query().unwrap_or(""));
        let req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        raw_exchange(s.addr, &bytes, false)
    };
    let put = send(
        "PUT",
        b.put_object(Some(&s.creds), "dir/cat.jpg")
            .sign(std::time::Duration::from_secs(60)),
        b"meow",
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        std::fs::read(dir.0.join("photos/dir/cat.jpg")).unwrap(),
        b"meow"
    );
    let get = send(
        "GET",
        b.get_object(Some(&s.creds), "dir/cat.jpg")
            .sign(std::time::Duration::from_secs(60)),
        b"",
    );
    assert_eq!(get.text(), "meow");
    let list = send(
        "GET",
        rusty_s3::actions::ListObjectsV2::new(&b, Some(&s.creds))
            .sign(std::time::Duration::from_secs(60)),
        b"",
    );
    assert!(
        list.text().contains("<Key>dir/cat.jpg</Key>"),
        "{}",
        list.text()
    );
    // Path style keeps working on the same server (an IP literal host).
    assert_eq!(s.get("photos", "dir/cat.jpg", &[]).text(), "meow");
}

#[test]
fn response_headers_are_set_on_every_answer() {
    let dir = TempDir::new();
    let mut c = s3serve::config::Config::for_tests(s3serve::config::Storage::Local(dir.0.clone()));
    c.response_headers = vec![
        ("X-Frame-Options".into(), "DENY".into()),
        ("Server".into(), "storage".into()),
    ];
    let s = start(c);
    for (m, t) in [("GET", "/"), ("GET", "/missing-bucket"), ("HEAD", "/nope")] {
        let r = s.raw(m, t, &[], b"");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{m} {t}");
        assert_eq!(r.header("server"), Some("storage"), "{m} {t}");
    }
}
