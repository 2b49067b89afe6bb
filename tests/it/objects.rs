//! PutObject, GetObject, HeadObject, DeleteObject, CopyObject through a real client.

use crate::harness::*;

fn server() -> (TempDir, TestServer) {
    let dir = TempDir::new();
    let s = start(config(&dir.0));
    s.create_bucket("bkt");
    (dir, s)
}

#[test]
fn put_get_round_trip_is_a_plain_file() {
    let (_d, s) = server();
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = s.put("bkt", "2026/cat.jpg", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("etag").unwrap(), format!("\"{}\"", md5_hex(&body)));
    assert_eq!(
        std::fs::read(s.root.join("bkt/2026/cat.jpg")).unwrap(),
        body
    );
    let g = s.get("bkt", "2026/cat.jpg", &[]);
    assert_eq!(g.status, 200);
    assert_eq!(g.body, body);
    assert_eq!(g.header("content-length").unwrap(), "300000");
    assert_eq!(g.header("content-type").unwrap(), "image/jpeg");
    assert_eq!(g.header("accept-ranges").unwrap(), "bytes");
    assert!(g.header("x-amz-request-id").is_some());
    let h = s.head("bkt", "2026/cat.jpg");
    assert_eq!(
        (h.status, h.header("content-length")),
        (200, Some("300000"))
    );
    assert!(h.body.is_empty());
}

#[test]
fn metadata_survives_a_restart_and_comes_back_as_stored() {
    let dir = TempDir::new();
    {
        let s = start(config(&dir.0));
        s.create_bucket("bkt");
        let hdrs = [
            ("content-type", "text/x-custom"),
            ("x-amz-meta-Color", "Blue Sky"),
            ("cache-control", "max-age=60"),
            ("content-disposition", "inline"),
        ];
        let r = s.put_with("bkt", "m.txt", b"meta", &hdrs);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let s = start(config(&dir.0));
    let h = s.head("bkt", "m.txt");
    assert_eq!(h.header("content-type"), Some("text/x-custom"));
    assert_eq!(h.header("x-amz-meta-color"), Some("Blue Sky"));
    assert_eq!(h.header("cache-control"), Some("max-age=60"));
    assert_eq!(h.header("content-disposition"), Some("inline"));
    assert!(h.header("x-amz-date").is_none() && h.header("x-amz-content-sha256").is_none());
}

#[test]
fn metadata_over_2kb_is_refused() {
    let (_d, s) = server();
    let big = "v".repeat(2100);
    let r = s.put_with("bkt", "k", b"x", &[("x-amz-meta-big", &big)]);
    assert_eq!((r.status, r.code().as_str()), (400, "MetadataTooLarge"));
    assert!(!s.root.join("bkt/k").exists());
}

#[test]
fn metadata_records_longer_than_a_kib_come_back_whole() {
    let (_d, s) = server();
    let long = "w".repeat(1900);
    let r = s.put_with("bkt", "k", b"x", &[("x-amz-meta-long", &long)]);
    assert_eq!(r.status, 200);
    let h = s.head("bkt", "k");
    assert_eq!(h.status, 200);
    assert_eq!(h.header("x-amz-meta-long"), Some(long.as_str()));
}

#[test]
fn content_md5_is_verified_before_commit() {
    let (_d, s) = server();
    let good = s3serve::util::base64(&s3serve::util::unhex(&md5_hex(b"abc")).unwrap());
    assert_eq!(
        s.put_with("bkt", "ok", b"abc", &[("content-md5", &good)])
            .status,
        200
    );
    let r = s.put_with("bkt", "bad", b"abd", &[("content-md5", &good)]);
    assert_eq!((r.status, r.code().as_str()), (400, "BadDigest"));
    let r = s.put_with("bkt", "bad", b"abd", &[("content-md5", "xyz")]);
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidDigest"));
    assert!(!s.root.join("bkt/bad").exists());
    let leftovers: Vec<_> = std::fs::read_dir(s.root.join("bkt"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("ok")]);
}

#[test]
fn ranges_and_conditionals() {
    let (_d, s) = server();
    let r = s.put("bkt", "r", b"0123456789abcdef");
    let etag = r.header("etag").unwrap().to_string();
    let g = s.get("bkt", "r", &[("range", "bytes=2-5")]);
    assert_eq!((g.status, g.text().as_str()), (206, "2345"));
    assert_eq!(g.header("content-range"), Some("bytes 2-5/16"));
    let g = s.get("bkt", "r", &[("range", "bytes=-3")]);
    assert_eq!((g.status, g.text().as_str()), (206, "def"));
    let g = s.get("bkt", "r", &[("range", "bytes=100-")]);
    assert_eq!((g.status, g.code().as_str()), (416, "InvalidRange"));
    assert_eq!(g.header("content-range"), Some("bytes */16"));
    let g = s.get("bkt", "r", &[("range", "bytes=0-1,4-5")]);
    assert_eq!((g.status, g.body.len()), (200, 16));
    let g = s.get("bkt", "r", &[("if-none-match", &etag)]);
    assert_eq!((g.status, g.header("etag")), (304, Some(etag.as_str())));
    let g = s.get("bkt", "r", &[("if-match", "\"nope\"")]);
    assert_eq!(g.status, 412);
    let g = s.get("bkt", "r", &[("if-match", &etag), ("range", "bytes=0-0")]);
    assert_eq!((g.status, g.text().as_str()), (206, "0"));
    let lm = g.header("last-modified").unwrap().to_string();
    assert_eq!(s.get("bkt", "r", &[("if-modified-since", &lm)]).status, 304);
    assert_eq!(
        s.get(
            "bkt",
            "r",
            &[("if-unmodified-since", "Mon, 01 Jan 2001 00:00:00 GMT")]
        )
        .status,
        412
    );
}

#[test]
fn conditional_writes() {
    let (_d, s) = server();
    assert_eq!(
        s.put_with("bkt", "c", b"one", &[("if-none-match", "*")])
            .status,
        200
    );
    let r = s.put_with("bkt", "c", b"two", &[("if-none-match", "*")]);
    assert_eq!((r.status, r.code().as_str()), (412, "PreconditionFailed"));
    let r = s.put_with("bkt", "missing", b"x", &[("if-match", "\"abc\"")]);
    assert_eq!((r.status, r.code().as_str()), (404, "NoSuchKey"));
    let etag = format!("\"{}\"", md5_hex(b"one"));
    assert_eq!(
        s.put_with("bkt", "c", b"three", &[("if-match", &etag)])
            .status,
        200
    );
    assert_eq!(
        s.put_with("bkt", "c", b"four", &[("if-match", &etag)])
            .status,
        412
    );
    assert_eq!(std::fs::read(s.root.join("bkt/c")).unwrap(), b"three");
}

/// A file's modification time, in seconds since the epoch.
fn mtime_secs(path: &std::path::Path) -> f64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn mtime_metadata_sets_the_file_time() {
    let (_d, s) = server();
    assert_eq!(
        s.put_with("bkt", "t", b"x", &[("x-amz-meta-mtime", "1600000000.5")])
            .status,
        200
    );
    let secs = mtime_secs(&s.root.join("bkt/t"));
    assert!((secs - 1_600_000_000.5).abs() < 0.01, "{secs}");
    assert_eq!(
        s.head("bkt", "t").header("last-modified"),
        Some("Sun, 13 Sep 2020 12:26:40 GMT")
    );
}

#[test]
fn no_modtime_leaves_the_file_time_alone() {
    let dir = TempDir::new();
    let mut c = config(&dir.0);
    c.no_modtime = true;
    let s = start(c);
    s.create_bucket("bkt");
    assert_eq!(
        s.put_with("bkt", "t", b"x", &[("x-amz-meta-mtime", "1600000000")])
            .status,
        200
    );
    assert!(mtime_secs(&s.root.join("bkt/t")) > 1_700_000_000.0);
}

#[test]
fn response_overrides() {
    let (_d, s) = server();
    s.put("bkt", "o.txt", b"x");
    let b = s.bucket("bkt");
    let mut a = b.get_object(Some(&s.creds), "o.txt");
    use rusty_s3::S3Action;
    a.query_mut()
        .insert("response-content-type", "application/x-test");
    a.query_mut().insert(
        "response-content-disposition",
        "attachment; filename=\"a.txt\"",
    );
    let g = s.raw_url(
        "GET",
        a.sign(std::time::Duration::from_secs(60)).as_str(),
        &[],
        b"",
    );
    assert_eq!(g.header("content-type"), Some("application/x-test"));
    assert_eq!(
        g.header("content-disposition"),
        Some("attachment; filename=\"a.txt\"")
    );
}

#[test]
fn delete_cleans_up_empty_parents_but_not_the_bucket() {
    let (_d, s) = server();
    s.put("bkt", "a/b/c/f.txt", b"x");
    s.put("bkt", "a/keep.txt", b"x");
    assert_eq!(s.delete("bkt", "a/b/c/f.txt").status, 204);
    assert!(!s.root.join("bkt/a/b").exists());
    assert!(s.root.join("bkt/a/keep.txt").exists());
    assert_eq!(s.delete("bkt", "a/keep.txt").status, 204);
    assert!(!s.root.join("bkt/a").exists());
    assert!(s.root.join("bkt").is_dir());
    assert_eq!(s.delete("bkt", "never/was").status, 204);
}

#[test]
fn no_cleanup_keeps_empty_parents() {
    let dir = TempDir::new();
    let mut c = config(&dir.0);
    c.cleanup = false;
    let s = start(c);
    s.create_bucket("bkt");
    s.put("bkt", "a/b/f.txt", b"x");
    assert_eq!(s.delete("bkt", "a/b/f.txt").status, 204);
    assert!(s.root.join("bkt/a/b").is_dir());
    assert!(!s.root.join("bkt/a/b/f.txt").exists());
}

#[test]
fn copy_object_on_disk_with_metadata_directives() {
    let (_d, s) = server();
    s.create_bucket("other");
    s.put_with(
        "bkt",
        "src.txt",
        b"copy me",
        &[("x-amz-meta-orig", "1"), ("content-type", "text/x-src")],
    );
    let copy = |dst_b: &str, dst: &str, extra: &[(&str, &str)]| {
        let b = s.bucket(dst_b);
        let mut a = b.put_object(Some(&s.creds), dst);
        use rusty_s3::S3Action;
        let mut hdrs = vec![("x-amz-copy-source", "bkt/src.txt")];
        hdrs.extend_from_slice(extra);
        for (n, v) in &hdrs {
            a.headers_mut().insert(n.to_string(), v.to_string());
        }
        s.raw_url(
            "PUT",
            a.sign(std::time::Duration::from_secs(60)).as_str(),
            &hdrs,
            b"",
        )
    };
    let r = copy("other", "dst.txt", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<CopyObjectResult"));
    assert!(r.text().contains(&md5_hex(b"copy me")));
    assert_eq!(
        std::fs::read(s.root.join("other/dst.txt")).unwrap(),
        b"copy me"
    );
    let h = s.head("other", "dst.txt");
    assert_eq!(
        (h.header("x-amz-meta-orig"), h.header("content-type")),
        (Some("1"), Some("text/x-src"))
    );
    let r = copy(
        "bkt",
        "rep.txt",
        &[
            ("x-amz-metadata-directive", "REPLACE"),
            ("x-amz-meta-new", "2"),
        ],
    );
    assert_eq!(r.status, 200);
    let h = s.head("bkt", "rep.txt");
    assert_eq!(
        (h.header("x-amz-meta-orig"), h.header("x-amz-meta-new")),
        (None, Some("2"))
    );
    let r = copy("bkt", "src.txt", &[]);
    assert_eq!((r.status, r.code().as_str()), (400, "InvalidRequest"));
    let r = copy("bkt", "c2", &[("x-amz-copy-source-if-match", "\"nope\"")]);
    assert_eq!(r.status, 412);
    let b = s.bucket("bkt");
    let mut a = b.put_object(Some(&s.creds), "c3");
    use rusty_s3::S3Action;
    a.headers_mut().insert("x-amz-copy-source", "bkt/missing");
    let r = s.raw_url(
        "PUT",
        a.sign(std::time::Duration::from_secs(60)).as_str(),
        &[("x-amz-copy-source", "bkt/missing")],
        b"",
    );
    assert_eq!((r.status, r.code().as_str()), (404, "NoSuchKey"));
}

#[test]
fn files_changed_behind_the_servers_back_show_at_once_with_right_etags() {
    let (_d, s) = server();
    std::fs::create_dir_all(s.root.join("bkt/ext")).unwrap();
    std::fs::write(s.root.join("bkt/ext/a.bin"), b"outside").unwrap();
    let h = s.head("bkt", "ext/a.bin");
    assert_eq!(
        h.header("etag").unwrap(),
        format!("\"{}\"", md5_hex(b"outside"))
    );
    s.put_with("bkt", "ext/a.bin", b"inside", &[("x-amz-meta-k", "v")]);
    std::fs::write(s.root.join("bkt/ext/a.bin"), b"changed again!").unwrap();
    let g = s.get("bkt", "ext/a.bin", &[]);
    assert_eq!(g.text(), "changed again!");
    assert_eq!(
        g.header("etag").unwrap(),
        format!("\"{}\"", md5_hex(b"changed again!"))
    );
    assert_eq!(
        g.header("x-amz-meta-k"),
        None,
        "metadata of the replaced file must not stick"
    );
}

#[test]
fn etag_hash_choices() {
    for (alg, want) in [
        (
            s3serve::vfs::EtagAlg::Sha256,
            Some("\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\""),
        ),
        (
            s3serve::vfs::EtagAlg::Sha1,
            Some("\"a9993e364706816aba3e25717850c26c9cd0d89d\""),
        ),
        (s3serve::vfs::EtagAlg::None, None),
    ] {
        let dir = TempDir::new();
        let mut c = config(&dir.0);
        c.etag = alg;
        let s = start(c);
        s.create_bucket("bkt");
        assert_eq!(s.put("bkt", "k", b"abc").header("etag"), want);
        assert_eq!(s.head("bkt", "k").header("etag"), want);
    }
}

#[test]
fn memory_backend_serves_objects() {
    let mut c = s3serve::config::Config::for_tests(s3serve::config::Storage::Memory);
    c.auth_keys = vec![(AK.into(), SK.into())];
    let s = start(c);
    s.create_bucket("mem");
    assert_eq!(s.put("mem", "a/b", b"hello").status, 200);
    assert_eq!(s.get("mem", "a/b", &[]).text(), "hello");
    assert_eq!(s.put("mem", "a", b"x").status, 409);
    assert_eq!(s.delete("mem", "a/b").status, 204);
    assert_eq!(s.get("mem", "a/b", &[]).status, 404);
}
