//! The upstream backend's S3 client against a real S3 server: s3serve itself, in-process.

use std::io::Read;
use std::time::Duration;

use s3serve::backend::upstream::client::{Client, Endpoint};
use s3serve::backend::upstream::http::{Http, Payload};
use s3serve::backend::ErrorKind;
use s3serve::sigv4::Signer;

use crate::harness::{config, start, TempDir, AK, SK};

fn client(addr: std::net::SocketAddr, secret: &str, path_style: bool) -> Client {
    let http = Http::new(2, Duration::from_secs(30)).unwrap();
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
    c.create_bucket("upb").unwrap();
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
    let mut reader = big.as_slice();
    c.put(
        "upb",
        "dir/big",
        &[],
        Payload::Stream(&mut reader, big.len() as u64),
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
    good.create_bucket("upb").unwrap();
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
