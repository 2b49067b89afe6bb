//! Multipart uploads over raw HTTP on an anonymous server: the whole life cycle, the error
//! paths of Complete, restarts, limits, and what is left on disk.

use crate::harness::*;
use s3serve::config::{Config, Storage};

const MIB: usize = 1024 * 1024;

fn anon_config(dir: &TempDir) -> Config {
    Config::for_tests(Storage::Local(dir.0.clone()))
}

pub fn tag<'a>(xml: &'a str, t: &str) -> &'a str {
    xml.split(&format!("<{t}>"))
        .nth(1)
        .and_then(|r| r.split(&format!("</{t}>")).next())
        .unwrap_or("")
}

pub fn create(s: &TestServer, key: &str) -> String {
    let r = s.raw("POST", &format!("/bkt/{key}?uploads"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("<InitiateMultipartUploadResult"));
    tag(&r.text(), "UploadId").to_string()
}

pub fn part(s: &TestServer, key: &str, id: &str, n: u32, data: &[u8]) -> String {
    let r = s.raw(
        "PUT",
        &format!("/bkt/{key}?partNumber={n}&uploadId={id}"),
        &[],
        data,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("etag").unwrap().to_string()
}

pub fn complete(s: &TestServer, key: &str, id: &str, parts: &[(u32, &str)]) -> Resp {
    let body: String = parts
        .iter()
        .map(|(n, e)| format!("<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"))
        .collect();
    s.raw(
        "POST",
        &format!("/bkt/{key}?uploadId={id}"),
        &[],
        format!("<CompleteMultipartUpload>{body}</CompleteMultipartUpload>").as_bytes(),
    )
}

pub fn expected_etag(parts: &[&[u8]]) -> String {
    let mut cat = Vec::new();
    for p in parts {
        cat.extend(s3serve::util::unhex(&md5_hex(p)).unwrap());
    }
    format!("\"{}-{}\"", md5_hex(&cat), parts.len())
}

fn upload_entries(dir: &TempDir) -> Vec<String> {
    std::fs::read_dir(dir.0.join(".s3serve/uploads"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn life_cycle_etag_parts_and_part_reads() {
    let dir = TempDir::new();
    let s = start(anon_config(&dir));
    s.raw("PUT", "/bkt", &[], b"");
    let id = create(&s, "big/obj.bin");
    let p1 = vec![1u8; 5 * MIB];
    let p2 = vec![2u8; 1234];
    let e1 = part(&s, "big/obj.bin", &id, 1, &[9u8; 10]);
    assert_eq!(e1, format!("\"{}\"", md5_hex(&[9u8; 10])));
    let e1 = part(&s, "big/obj.bin", &id, 1, &p1); // a re-upload replaces the part
    let e2 = part(&s, "big/obj.bin", &id, 2, &p2);
    assert_eq!(
        s.raw("HEAD", "/bkt/big/obj.bin", &[], b"").status,
        404,
        "nothing visible before Complete"
    );
    let lp = s.raw(
        "GET",
        &format!("/bkt/big/obj.bin?uploadId={id}&max-parts=1"),
        &[],
        b"",
    );
    assert!(
        lp.text().contains("<IsTruncated>true</IsTruncated>")
            && lp
                .text()
                .contains("<NextPartNumberMarker>1</NextPartNumberMarker>")
    );
    assert_eq!(tag(&lp.text(), "Size"), (5 * MIB).to_string());
    let lu = s.raw("GET", "/bkt?uploads", &[], b"");
    assert!(lu.text().contains(&format!("<UploadId>{id}</UploadId>")));
    let r = complete(
        &s,
        "big/obj.bin",
        &id,
        &[(1, &e1), (2, e2.trim_matches('"'))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let want = expected_etag(&[&p1, &p2]);
    assert_eq!(tag(&r.text(), "ETag"), want.replace('"', "&quot;"));
    let mut all = p1.clone();
    all.extend_from_slice(&p2);
    assert!(std::fs::read(dir.0.join("bkt/big/obj.bin")).unwrap() == all);
    assert_eq!(
        s.raw("HEAD", "/bkt/big/obj.bin", &[], b"").header("etag"),
        Some(want.as_str())
    );
    assert!(s
        .raw("GET", "/bkt?list-type=2", &[], b"")
        .text()
        .contains(&want.replace('"', "&quot;")));
    let g = s.raw("GET", "/bkt/big/obj.bin?partNumber=2", &[], b"");
    assert_eq!((g.status, g.body.len()), (206, 1234));
    assert_eq!(g.header("x-amz-mp-parts-count"), Some("2"));
    assert_eq!(
        g.header("content-range"),
        Some(format!("bytes {}-{}/{}", 5 * MIB, 5 * MIB + 1233, 5 * MIB + 1234).as_str())
    );
    assert_eq!(
        s.raw("GET", "/bkt/big/obj.bin?partNumber=3", &[], b"")
            .code(),
        "InvalidPartNumber"
    );
    // A retried Complete gets the same answer; the parts themselves are gone from disk.
    let again = complete(&s, "big/obj.bin", &id, &[(1, &e1), (2, &e2)]);
    assert_eq!(
        (again.status, tag(&again.text(), "ETag")),
        (200, want.replace('"', "&quot;").as_str())
    );
    let left: Vec<_> = std::fs::read_dir(dir.0.join(".s3serve/uploads").join(&id))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter()
            .all(|n| !n.to_string_lossy().starts_with("part-")),
        "{left:?}"
    );
    assert!(!s
        .raw("GET", "/bkt?uploads", &[], b"")
        .text()
        .contains("<Upload>"));
}

#[test]
fn complete_errors_keep_the_upload() {
    let dir = TempDir::new();
    let s = start(anon_config(&dir));
    s.raw("PUT", "/bkt", &[], b"");
    let id = create(&s, "k");
    let small = vec![3u8; 100];
    let e1 = part(&s, "k", &id, 1, &small);
    let e2 = part(&s, "k", &id, 2, &small);
    let e3 = part(&s, "k", &id, 3, &vec![4u8; 5 * MIB]);
    assert_eq!(
        complete(&s, "k", &id, &[(2, &e2), (1, &e1)]).code(),
        "InvalidPartOrder"
    );
    assert_eq!(
        complete(&s, "k", &id, &[(1, "\"00000000000000000000000000000000\"")]).code(),
        "InvalidPart"
    );
    assert_eq!(
        complete(&s, "k", &id, &[(1, &e1), (4, &e1)]).code(),
        "InvalidPart"
    );
    assert_eq!(
        complete(&s, "k", &id, &[(1, &e1), (2, &e2)]).code(),
        "EntityTooSmall"
    );
    assert_eq!(
        s.raw(
            "POST",
            &format!("/bkt/k?uploadId={id}"),
            &[],
            b"<CompleteMultipartUpload/>"
        )
        .code(),
        "MalformedXML"
    );
    assert!(!dir.0.join("bkt/k").exists());
    // A subset of the parts, in order: part 3 alone.
    let r = complete(&s, "k", &id, &[(3, &e3)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(std::fs::read(dir.0.join("bkt/k")).unwrap().len(), 5 * MIB);
    let bad = s.raw(
        "PUT",
        &format!("/bkt/k?partNumber=0&uploadId={id}"),
        &[],
        b"x",
    );
    assert_eq!(bad.code(), "InvalidArgument");
    assert_eq!(
        s.raw(
            "PUT",
            "/bkt/k?partNumber=1&uploadId=0123456789ABCDEF0123456789ABCDEF",
            &[],
            b"x"
        )
        .code(),
        "NoSuchUpload"
    );
    assert_eq!(
        s.raw("PUT", "/bkt/k?partNumber=1&uploadId=../../x", &[], b"x")
            .code(),
        "NoSuchUpload"
    );
}

#[test]
fn conditional_complete_and_abort_leave_no_trace() {
    let dir = TempDir::new();
    let s = start(anon_config(&dir));
    s.raw("PUT", "/bkt", &[], b"");
    s.raw("PUT", "/bkt/exists", &[], b"old");
    let id = create(&s, "exists");
    let e = part(&s, "exists", &id, 1, b"new");
    let body = format!("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{e}</ETag></Part></CompleteMultipartUpload>");
    let r = s.raw(
        "POST",
        &format!("/bkt/exists?uploadId={id}"),
        &[("if-none-match", "*")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 412);
    assert_eq!(std::fs::read(dir.0.join("bkt/exists")).unwrap(), b"old");
    assert_eq!(
        s.raw("DELETE", &format!("/bkt/exists?uploadId={id}"), &[], b"")
            .status,
        204
    );
    assert!(
        upload_entries(&dir).is_empty(),
        "{:?}",
        upload_entries(&dir)
    );
    assert_eq!(
        s.raw("DELETE", &format!("/bkt/exists?uploadId={id}"), &[], b"")
            .code(),
        "NoSuchUpload"
    );
    assert_eq!(
        s.raw("GET", &format!("/bkt/exists?uploadId={id}"), &[], b"")
            .code(),
        "NoSuchUpload"
    );
    assert_eq!(
        std::fs::read_dir(dir.0.join("bkt")).unwrap().count(),
        1,
        "no temporary left in the bucket"
    );
}

#[test]
fn upload_part_copy_with_ranges() {
    let dir = TempDir::new();
    let s = start(anon_config(&dir));
    s.raw("PUT", "/bkt", &[], b"");
    let src: Vec<u8> = (0..6 * MIB).map(|i| (i % 253) as u8).collect();
    s.raw("PUT", "/bkt/src", &[], &src);
    let id = create(&s, "dst");
    let copy = |n: u32, range: &str| {
        let mut h = vec![("x-amz-copy-source", "/bkt/src")];
        if !range.is_empty() {
            h.push(("x-amz-copy-source-range", range));
        }
        s.raw(
            "PUT",
            &format!("/bkt/dst?partNumber={n}&uploadId={id}"),
            &h,
            b"",
        )
    };
    let r = copy(1, &format!("bytes=0-{}", 5 * MIB - 1));
    assert!(r.text().contains("<CopyPartResult"), "{}", r.text());
    let e1 = tag(&r.text(), "ETag").replace("&quot;", "\"");
    assert_eq!(e1, format!("\"{}\"", md5_hex(&src[..5 * MIB])));
    let r = copy(2, &format!("bytes={}-{}", 5 * MIB, 6 * MIB - 1));
    let e2 = tag(&r.text(), "ETag").replace("&quot;", "\"");
    assert_eq!(copy(3, "bytes=5-1").code(), "InvalidArgument");
    assert_eq!(copy(3, "bytes=x").code(), "InvalidArgument");
    assert_eq!(
        copy(3, &format!("bytes=0-{}", 6 * MIB)).code(),
        "InvalidRange"
    );
    assert_eq!(complete(&s, "dst", &id, &[(1, &e1), (2, &e2)]).status, 200);
    assert!(std::fs::read(dir.0.join("bkt/dst")).unwrap() == src);
}

#[test]
fn uploads_survive_a_restart_and_are_capped() {
    let dir = TempDir::new();
    let p1 = vec![5u8; 5 * MIB];
    let (id, e1) = {
        let s = start(anon_config(&dir));
        s.raw("PUT", "/bkt", &[], b"");
        let id = create(&s, "r");
        let e1 = part(&s, "r", &id, 1, &p1);
        (id, e1)
    };
    let mut c = anon_config(&dir);
    c.multipart_max_uploads = 1;
    let s = start(c);
    let e2 = part(&s, "r", &id, 2, b"tail");
    let r = s.raw("POST", "/bkt/other?uploads", &[], b"");
    assert_eq!((r.status, r.code().as_str()), (503, "SlowDown"));
    assert_eq!(complete(&s, "r", &id, &[(1, &e1), (2, &e2)]).status, 200);
    assert_eq!(
        std::fs::read(dir.0.join("bkt/r")).unwrap().len(),
        5 * MIB + 4
    );
    create(&s, "other"); // the finished upload no longer counts
}

#[test]
fn deleting_a_bucket_drops_its_pending_uploads() {
    let dir = TempDir::new();
    let s = start(anon_config(&dir));
    s.raw("PUT", "/bkt", &[], b"");
    let id = create(&s, "k");
    part(&s, "k", &id, 1, b"x");
    assert_eq!(s.raw("DELETE", "/bkt", &[], b"").status, 204);
    assert!(upload_entries(&dir).is_empty());
}

#[test]
fn long_completions_answer_200_and_keep_the_connection_alive() {
    let dir = TempDir::new();
    let s = start(anon_config(&dir));
    s.raw("PUT", "/bkt", &[], b"");
    s.raw("PUT", "/bkt/taken", &[], b"old");
    let part_data = vec![7u8; 5 * MIB];
    let n = (s3serve::ops::multipart::KEEPALIVE_ABOVE as usize).div_ceil(5 * MIB) as u32 + 1;
    let upload = |key: &str| {
        let id = create(&s, key);
        let etags: Vec<String> = (1..=n).map(|i| part(&s, key, &id, i, &part_data)).collect();
        (id, etags)
    };
    let (id, etags) = upload("big");
    let list: Vec<(u32, &str)> = etags
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u32 + 1, e.as_str()))
        .collect();
    let r = complete(&s, "big", &id, &list);
    assert_eq!(
        (r.status, r.header("transfer-encoding")),
        (200, Some("chunked"))
    );
    let text = r.text();
    assert!(
        text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{text}"
    );
    let parts: Vec<&[u8]> = (0..n).map(|_| &part_data[..]).collect();
    assert!(
        text.contains(&format!(
            "<ETag>{}</ETag>",
            expected_etag(&parts).replace('"', "&quot;")
        )),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(dir.0.join("bkt/big")).unwrap().len(),
        n as u64 * 5 * MIB as u64
    );
    // A failure after the 200 arrives as an error document in the body.
    let (id, etags) = upload("taken");
    let body: String = etags
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                i + 1
            )
        })
        .collect();
    let r = s.raw(
        "POST",
        &format!("/bkt/taken?uploadId={id}"),
        &[("if-none-match", "*")],
        format!("<CompleteMultipartUpload>{body}</CompleteMultipartUpload>").as_bytes(),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (200, "PreconditionFailed"),
        "{}",
        r.text()
    );
    assert_eq!(std::fs::read(dir.0.join("bkt/taken")).unwrap(), b"old");
    assert!(
        s.raw("GET", &format!("/bkt/taken?uploadId={id}"), &[], b"")
            .text()
            .contains("<Part>"),
        "the upload is kept"
    );
}
