//! The upstream backend's S3 client against a real S3 server: s3serve itself, in-process.

use std::io::Read;
use std::time::Duration;

use s3serve::backend::upstream::client::{Client, Endpoint};
use s3serve::backend::upstream::http::{Http, Payload};
use s3serve::backend::ErrorKind;
use s3serve::sigv4::Signer;

use crate::harness::{config, start, TempDir, AK, SK};

fn client(addr: std::net::SocketAddr, secret: &str, path_style: bool) -> Client {
    let http = Http::new(2, Duration::from_secs(10), Duration::from_secs(30)).unwrap();
    let endpoint = Endpoint::parse(&format!("http://{addr}"), path_style).unwrap();
    let signer = Signer {
        access_key: AK.into(),
        secret: secret.into(),
        region: "us-east-1".into(),
        session_token: None,
    };
    Client::new(http, endpoint, Some(signer))
}

#[test]
fn objects_buckets_and_listings_round_trip() {
    let dir = TempDir::new();
    let s = start(config(&dir.0));
    let c = client(s.addr, SK, true);
    c.create_bucket("upb", None, None).unwrap();
    let meta = vec![
        ("content-type".to_string(), "text/plain".to_string()),
        ("x-amz-meta-note".to_string(), "hello".to_string()),
    ];
    let etag = c
        .put("upb", "dir/a b.txt", &meta, Payload::Bytes(b"0123456789"))
        .unwrap();
    assert_eq!(
        etag.as_deref(),
        Some("\"781e5e245d69b566979b86e28d23f2c7\"")
    );
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let file_dir = TempDir::new();
    let path = file_dir.0.join("big");
    std::fs::write(&path, &big).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    c.put(
        "upb",
        "dir/big",
        &[],
        Payload::File {
            file: &file,
            offset: 0,
            len: big.len() as u64,
        },
    )
    .unwrap();
    c.put("upb", "top", &[], Payload::Empty).unwrap();

    let head = c.head("upb", "dir/a b.txt").unwrap();
    assert_eq!((head.size, head.etag), (10, etag.clone()));
    assert!(head
        .headers
        .contains(&("x-amz-meta-note".into(), "hello".into())));
    assert!(head
        .headers
        .contains(&("content-type".into(), "text/plain".into())));

    let mut got = Vec::new();
    let a = c.get("upb", "dir/big", Some((1000, 1999)), None).unwrap();
    assert_eq!(a.status, 206);
    a.body.take(u64::MAX).read_to_end(&mut got).unwrap();
    assert_eq!(got, &big[1000..2000]);
    let wrong = c
        .get("upb", "dir/a b.txt", None, Some("\"other\""))
        .err()
        .unwrap();
    assert_eq!(wrong.kind, ErrorKind::Conflict);

    // Pages of two, rolled up at `/`, then the whole bucket.
    let page = c.list("upb", "", Some("/"), None, 1000).unwrap();
    assert_eq!(page.prefixes, vec!["dir/".to_string()]);
    assert_eq!(
        page.objects
            .iter()
            .map(|o| o.key.as_str())
            .collect::<Vec<_>>(),
        ["top"]
    );
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = c.list("upb", "", None, token.as_deref(), 2).unwrap();
        keys.extend(page.objects.into_iter().map(|o| o.key));
        token = page.next;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(keys, ["dir/a b.txt", "dir/big", "top"]);
    assert!(c.list_buckets().unwrap().iter().any(|(n, _)| n == "upb"));

    c.delete("upb", "top").unwrap();
    c.delete("upb", "top").unwrap();
    assert_eq!(c.head("upb", "top").unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        c.head("nobucket", "k").unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        c.list("nobucket", "", None, None, 10).unwrap_err().kind,
        ErrorKind::NoSuchBucket
    );
    assert_eq!(
        c.delete_bucket("upb").unwrap_err().kind,
        ErrorKind::BucketNotEmpty
    );
}

#[test]
fn refusals_and_an_unreachable_upstream_are_told_apart_from_missing_objects() {
    let dir = TempDir::new();
    let s = start(config(&dir.0));
    let good = client(s.addr, SK, true);
    good.create_bucket("upb", None, None).unwrap();
    let bad = client(s.addr, "not-the-secret", true);
    assert_eq!(bad.head("upb", "k").unwrap_err().kind, ErrorKind::ReadOnly);
    // A port nothing listens on: never "no such key".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let gone = client(addr, SK, true);
    assert_eq!(
        gone.head("upb", "k").unwrap_err().kind,
        ErrorKind::Unavailable
    );
    assert_eq!(
        gone.get("upb", "k", None, None).err().unwrap().kind,
        ErrorKind::Unavailable
    );
}

/// A gateway over the S3 server at `up`, serving `path` of it.
pub fn gateway(up: std::net::SocketAddr, path: &str) -> crate::harness::TestServer {
    gateway_with(up, path, |_| {})
}

/// A gateway over the S3 server at `up`, serving `path` of it, its settings changed by `set`.
pub fn gateway_with(
    up: std::net::SocketAddr,
    path: &str,
    set: impl FnOnce(&mut s3serve::config::UpstreamConfig),
) -> crate::harness::TestServer {
    start(gateway_config(up, path, set))
}

/// The config of [`gateway_with`].
pub fn gateway_config(
    up: std::net::SocketAddr,
    path: &str,
    set: impl FnOnce(&mut s3serve::config::UpstreamConfig),
) -> s3serve::config::Config {
    use s3serve::config::{Config, Storage, UpstreamConfig};
    let mut u = UpstreamConfig {
        label: "up".into(),
        endpoint: format!("http://{up}"),
        path_style: true,
        region: "us-east-1".into(),
        keys: Some((AK.into(), SK.into())),
        session_token: None,
        path: path.into(),
        tuning: s3serve::config::UpstreamTuning {
            low_level_retries: 2,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            // Small chunks, so that a read takes several ranged requests.
            read_chunk: 100_000,
            read_chunk_limit: 400_000,
            read_streams: 0,
        },
        writes: Default::default(),
    };
    set(&mut u);
    Config::for_tests(Storage::Upstream(Box::new(u)))
}

#[test]
fn a_gateway_serves_the_upstreams_buckets() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    let g = gateway(up.addr, "");
    g.create_bucket("gwb");
    assert!(dir.0.join("gwb").is_dir());
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let r = g.put_with(
        "gwb",
        "d/obj",
        &data,
        &[("content-type", "image/png"), ("x-amz-meta-who", "me")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(std::fs::read(dir.0.join("gwb/d/obj")).unwrap(), data);
    let r = g.get("gwb", "d/obj", &[]);
    assert_eq!((r.status, r.body.len()), (200, data.len()));
    assert!(r.body == data);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("x-amz-meta-who"), Some("me"));
    assert_eq!(
        r.header("etag").unwrap(),
        format!("\"{}\"", crate::harness::md5_hex(&data))
    );
    let r = g.get("gwb", "d/obj", &[("range", "bytes=1234567-1234599")]);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (206, &data[1_234_567..1_234_600])
    );
    let r = g.raw("GET", "/gwb?list-type=2&delimiter=%2F", &[], b"");
    assert!(r.text().contains("<Prefix>d/</Prefix>"), "{}", r.text());
    let r = g.raw("GET", "/gwb?list-type=2", &[], b"");
    assert!(r.text().contains("<Key>d/obj</Key>"), "{}", r.text());
    assert_eq!(g.delete("gwb", "d/obj").status, 204);
    assert!(!dir.0.join("gwb/d/obj").exists());
    assert_eq!(g.get("gwb", "d/obj", &[]).code(), "NoSuchKey");
}

#[test]
fn a_gateway_below_a_bucket_serves_its_folders_as_buckets() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("base");
    let g = gateway(up.addr, "base/pre");
    g.create_bucket("inner");
    assert_eq!(g.put("inner", "k.txt", b"inside").status, 200);
    assert_eq!(
        std::fs::read(dir.0.join("base/pre/inner/k.txt")).unwrap(),
        b"inside"
    );
    assert_eq!(g.get("inner", "k.txt", &[]).body, b"inside");
    let r = g.raw("GET", "/", &[], b"");
    assert!(r.text().contains("<Name>inner</Name>"), "{}", r.text());
}

#[test]
fn a_gateway_whose_upstream_is_down_answers_503_not_404() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let g = gateway(addr, "");
    let r = g.get("gwb", "k", &[]);
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "SlowDown"),
        "{}",
        r.text()
    );
    let r = g.head("gwb", "k");
    assert_eq!(r.status, 503);
}

/// The text of the first `<name>` element in `doc`.
fn element(doc: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = doc.find(&open).map(|i| i + open.len()).unwrap_or(0);
    let end = doc[start..].find('<').map_or(start, |i| start + i);
    doc[start..end].to_string()
}

#[test]
fn multipart_through_a_gateway_is_the_upstreams_own_multipart() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    let g = gateway(up.addr, "base/pre");
    up.create_bucket("base");
    g.create_bucket("mpb");
    let r = g.raw(
        "POST",
        "/mpb/big%20file?uploads",
        &[("content-type", "video/mp4"), ("x-amz-meta-who", "me")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = element(&r.text(), "UploadId");
    // The upstream holds the upload: its parts never gather on the gateway.
    let pending = || std::fs::read_dir(dir.0.join(".s3serve/uploads")).map_or(0, |d| d.count());
    assert_eq!(pending(), 1);
    let enc = s3serve::util::uri_encode(&id, false);
    let one: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    let two = b"the tail".to_vec();
    let mut etags = Vec::new();
    for (n, part) in [(1, &one), (2, &two)] {
        let r = g.raw(
            "PUT",
            &format!("/mpb/big%20file?partNumber={n}&uploadId={enc}"),
            &[],
            part,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        etags.push(r.header("etag").unwrap().to_string());
    }
    assert_eq!(etags[1], format!("\"{}\"", crate::harness::md5_hex(&two)));
    let r = g.raw("GET", &format!("/mpb/big%20file?uploadId={enc}"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<Size>8</Size>"), "{}", r.text());
    let r = g.raw("GET", "/mpb?uploads", &[], b"");
    assert!(r.text().contains("<Key>big file</Key>"), "{}", r.text());
    // A wrong ETag is the upstream's InvalidPart, and the upload survives it.
    let bad = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"{}\"</ETag></Part></CompleteMultipartUpload>",
        "0".repeat(32)
    );
    let r = g.raw(
        "POST",
        &format!("/mpb/big%20file?uploadId={enc}"),
        &[],
        bad.as_bytes(),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "InvalidPart"),
        "{}",
        r.text()
    );
    let doc = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part><Part><PartNumber>2</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>",
        etags[0], etags[1]
    );
    let r = g.raw(
        "POST",
        &format!("/mpb/big%20file?uploadId={enc}"),
        &[],
        doc.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let whole = [one.as_slice(), two.as_slice()].concat();
    assert!(std::fs::read(dir.0.join("base/pre/mpb/big file")).unwrap() == whole);
    let r = g.get("mpb", "big file", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body == whole);
    assert!(r.header("etag").unwrap().ends_with("-2\""));
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    assert_eq!(r.header("x-amz-meta-who"), Some("me"));

    // An aborted upload is gone upstream too.
    let r = g.raw("POST", "/mpb/gone?uploads", &[], b"");
    let id = element(&r.text(), "UploadId");
    let upstream_id = id.split_once('.').unwrap().1;
    assert!(dir.0.join(".s3serve/uploads").join(upstream_id).exists());
    let enc = s3serve::util::uri_encode(&id, false);
    let r = g.raw(
        "PUT",
        &format!("/mpb/gone?partNumber=1&uploadId={enc}"),
        &[],
        b"x",
    );
    assert_eq!(r.status, 200);
    let r = g.raw("DELETE", &format!("/mpb/gone?uploadId={enc}"), &[], b"");
    assert_eq!(r.status, 204, "{}", r.text());
    let upstream_id = id.split_once('.').unwrap().1;
    assert!(!dir.0.join(".s3serve/uploads").join(upstream_id).exists());
    let r = g.raw(
        "PUT",
        &format!("/mpb/gone?partNumber=2&uploadId={enc}"),
        &[],
        b"x",
    );
    assert_eq!(r.code(), "NoSuchUpload");
    // An id that was never ours.
    let r = g.raw("GET", "/mpb/gone?uploadId=bogus", &[], b"");
    assert_eq!(r.code(), "NoSuchUpload");
}

#[test]
fn listings_come_from_the_upstreams_listing_without_a_head_per_object() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("lst");
    for k in ["a", "b", "d/c", "d/e"] {
        assert_eq!(up.put("lst", k, k.as_bytes()).status, 200);
    }
    let proxy = crate::fault::FaultProxy::start(up.addr);
    let g = gateway(proxy.addr, "");
    let r = g.raw("GET", "/lst?list-type=2", &[], b"");
    assert_eq!(r.status, 200);
    let t = r.text();
    for k in ["a", "b", "d/c", "d/e"] {
        assert!(t.contains(&format!("<Key>{k}</Key>")), "{t}");
    }
    assert!(
        t.contains(&format!(
            "<ETag>&quot;{}&quot;</ETag>",
            crate::harness::md5_hex(b"d/c")
        )),
        "{t}"
    );
    let seen = proxy.plan().seen.clone();
    assert!(seen.iter().all(|l| l.starts_with("GET ")), "{seen:?}");
}

#[test]
fn large_puts_go_up_in_parts_with_the_remotes_acl_and_location() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    let proxy = crate::fault::FaultProxy::start(up.addr);
    let g = gateway_with(proxy.addr, "", |u| {
        u.tuning.low_level_retries = 1;
        u.writes.upload_cutoff = 1 << 20;
        u.writes.acl = Some("private".into());
        u.writes.bucket_acl = Some("public-read".into());
        u.writes.location_constraint = Some("eu-west-1".into());
    });
    g.create_bucket("cut");
    let head = proxy.plan().seen.last().unwrap().clone();
    assert!(head.starts_with("PUT /cut "), "{head}");
    assert!(head.contains("x-amz-acl: public-read"), "{head}");
    // Under the cutoff: one PUT, with the object's ACL.
    assert_eq!(g.put("cut", "small", &[7; 1000]).status, 200);
    let seen = proxy.plan().seen.clone();
    let head = seen
        .iter()
        .rfind(|h| h.starts_with("PUT /cut/small "))
        .unwrap();
    assert!(
        head.contains("x-amz-acl: private") && head.contains("content-md5"),
        "{head}"
    );
    // Over it: 5 MiB parts. The object keeps the ETag a single PUT has, its MD5, in
    // answers, on GET and in listings; the upstream has its multipart ETag.
    let body: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 239) as u8).collect();
    let md5 = format!("\"{}\"", crate::harness::md5_hex(&body));
    let r = g.put("cut", "big", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("etag"), Some(md5.as_str()));
    assert!(std::fs::read(dir.0.join("cut/big")).unwrap() == body);
    let parts = proxy
        .plan()
        .seen
        .iter()
        .filter(|h| h.contains("partNumber="))
        .count();
    assert_eq!(parts, 3);
    assert!(up
        .head("cut", "big")
        .header("etag")
        .unwrap()
        .ends_with("-3\""));
    let r = g.get("cut", "big", &[]);
    assert_eq!(r.header("etag"), Some(md5.as_str()));
    assert!(
        r.headers.keys().all(|h| !h.contains("s3serve-md5")),
        "{:?}",
        r.headers
    );
    let r = g.raw("GET", "/cut?list-type=2", &[], b"");
    assert!(
        r.text().contains(&md5.replace('"', "&quot;")),
        "{}",
        r.text()
    );
    // A part that cannot go up aborts the upload: nothing is left behind.
    proxy.plan().only = Some("partNumber=2".into());
    proxy.plan().cut_requests = Some((100_000, 100));
    let uploads_before = std::fs::read_dir(dir.0.join(".s3serve/uploads")).map_or(0, |d| d.count());
    let r = g.put("cut", "failed", &body);
    assert_eq!(r.status, 503, "{}", r.text());
    proxy.plan().cut_requests = None;
    assert!(!dir.0.join("cut/failed").exists());
    let r = g.raw("GET", "/cut?uploads", &[], b"");
    assert!(!r.text().contains("<Key>failed</Key>"), "{}", r.text());
    let uploads_after = std::fs::read_dir(dir.0.join(".s3serve/uploads")).map_or(0, |d| d.count());
    assert_eq!(uploads_after, uploads_before);
}

#[test]
fn a_head_is_one_upstream_head() {
    let dir = TempDir::new();
    let up = start(config(&dir.0));
    up.create_bucket("one");
    let crc = [("x-amz-checksum-crc32", "R5SCIQ==")];
    assert_eq!(up.put_with("one", "k", b"small body", &crc).status, 200);
    assert_eq!(up.put("one", "empty", b"").status, 200);
    let proxy = crate::fault::FaultProxy::start(up.addr);
    let g = gateway(proxy.addr, "");
    let r = g.head("one", "k");
    assert_eq!(r.header("content-length"), Some("10"));
    let seen = proxy.plan().seen.clone();
    assert!(seen.len() == 1 && seen[0].starts_with("HEAD "), "{seen:?}");
    // The whole object's checksum comes with it.
    let r = g.get("one", "k", &[("x-amz-checksum-mode", "ENABLED")]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"small body"[..]));
    assert_eq!(r.header("x-amz-checksum-crc32"), Some("R5SCIQ=="));
    let r = g.get("one", "empty", &[]);
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = g.get("one", "k", &[("range", "bytes=6-9")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &b"body"[..]));
    assert_eq!(g.get("one", "missing", &[]).code(), "NoSuchKey");
    assert_eq!(g.get("nobucket", "k", &[]).code(), "NoSuchBucket");
}
