//! ListObjects v1 and v2: order, prefixes, delimiters, paging, encoding.

use crate::harness::*;
use rusty_s3::actions::ListObjectsV2;
use rusty_s3::S3Action;
use std::io::Write;
use std::time::Duration;

fn anon(dir: &TempDir) -> TestServer {
    start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Local(dir.0.clone()),
    ))
}

fn keys_of(xml: &str, tag: &str) -> Vec<String> {
    xml.split(&format!("<{tag}>"))
        .skip(1)
        .map(|p| p.split(&format!("</{tag}>")).next().unwrap().to_string())
        .collect()
}

#[test]
fn keys_come_in_utf8_byte_order() {
    let dir = TempDir::new();
    let s = anon(&dir);
    s.raw("PUT", "/bk1", &[], b"");
    for k in ["ab", "a-b", "a+b", "a/x", "a/y/z", "%C3%A9", "Z"] {
        assert_eq!(
            s.raw("PUT", &format!("/bk1/{k}"), &[], b"1").status,
            200,
            "{k}"
        );
    }
    let r = s.raw("GET", "/bk1?list-type=2", &[], b"");
    assert_eq!(
        keys_of(&r.text(), "Key"),
        ["Z", "a+b", "a-b", "a/x", "a/y/z", "ab", "é"]
    );
    assert!(r.text().contains("<KeyCount>7</KeyCount>"));
    let r = s.raw("GET", "/bk1?list-type=2&delimiter=%2F", &[], b"");
    assert_eq!(keys_of(&r.text(), "Key"), ["Z", "a+b", "a-b", "ab", "é"]);
    assert_eq!(keys_of(&r.text(), "Prefix")[1..], ["a/"]);
    let r = s.raw("GET", "/bk1?list-type=2&delimiter=-", &[], b"");
    assert!(
        r.text()
            .contains("<CommonPrefixes><Prefix>a-</Prefix></CommonPrefixes>"),
        "{}",
        r.text()
    );
    let r = s.raw("GET", "/bk1?prefix=a%2Fy&delimiter=%2F", &[], b"");
    assert_eq!(keys_of(&r.text(), "Prefix")[1..], ["a/y/"]);
    assert!(r.text().contains("<Marker></Marker>"));
    assert!(s
        .raw("GET", "/bk1", &[], b"")
        .text()
        .contains("<Owner><ID>anonymous</ID>"));
}

#[test]
fn pages_through_a_bucket_with_tokens_and_markers() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.0.join("bk1")).unwrap();
    let mut all = Vec::new();
    for i in 0..25 {
        let k = format!("d{}/k{:02}", i % 3, i);
        std::fs::create_dir_all(dir.0.join("bk1").join(format!("d{}", i % 3))).unwrap();
        std::fs::write(dir.0.join("bk1").join(&k), format!("v{i}")).unwrap();
        all.push(k);
    }
    all.sort();
    let s = start(config(&dir.0));
    let b = s.bucket("bk1");
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut a = ListObjectsV2::new(&b, Some(&s.creds));
        a.with_max_keys(7);
        if let Some(t) = &token {
            a.with_continuation_token(t.clone());
        }
        let r = s.raw_url("GET", a.sign(Duration::from_secs(60)).as_str(), &[], b"");
        let parsed = ListObjectsV2::parse_response(&r.body).unwrap();
        assert!(parsed.contents.len() <= 7);
        for c in &parsed.contents {
            let i: u32 = c.key[4..].parse().unwrap();
            assert_eq!(
                c.etag,
                format!("\"{}\"", md5_hex(format!("v{i}").as_bytes())),
                "{}",
                c.key
            );
        }
        seen.extend(parsed.contents.into_iter().map(|c| c.key));
        match parsed.next_continuation_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, all);
    // v1 with a marker and a delimiter pages over CommonPrefixes too.
    let anon = anon(&dir);
    let r = anon.raw("GET", "/bk1?delimiter=%2F&max-keys=2", &[], b"");
    assert!(
        r.text().contains("<IsTruncated>true</IsTruncated>")
            && r.text().contains("<NextMarker>d1/</NextMarker>"),
        "{}",
        r.text()
    );
    let r = anon.raw("GET", "/bk1?delimiter=%2F&marker=d1%2F", &[], b"");
    assert_eq!(keys_of(&r.text(), "Prefix")[1..], ["d2/"]);
    let r = anon.raw("GET", "/bk1?list-type=2&start-after=d2%2Fk20", &[], b"");
    assert_eq!(keys_of(&r.text(), "Key"), ["d2/k23"]);
}

#[test]
fn max_keys_zero_capped_and_invalid() {
    let dir = TempDir::new();
    let s = anon(&dir);
    s.raw("PUT", "/bk1", &[], b"");
    s.raw("PUT", "/bk1/k", &[], b"1");
    let r = s.raw("GET", "/bk1?list-type=2&max-keys=0", &[], b"");
    assert!(
        r.text().contains("<KeyCount>0</KeyCount>") && r.text().contains("<MaxKeys>0</MaxKeys>")
    );
    let r = s.raw("GET", "/bk1?list-type=2&max-keys=5000", &[], b"");
    assert!(r.text().contains("<MaxKeys>1000</MaxKeys>"));
    assert_eq!(
        s.raw("GET", "/bk1?list-type=2&max-keys=-1", &[], b"")
            .code(),
        "InvalidArgument"
    );
    assert_eq!(
        s.raw(
            "GET",
            "/bk1?list-type=2&continuation-token=%21%21",
            &[],
            b""
        )
        .code(),
        "InvalidArgument"
    );
    assert_eq!(
        s.raw("GET", "/nobucket?list-type=2", &[], b"").code(),
        "NoSuchBucket"
    );
}

#[test]
fn url_encoding_type_encodes_plus_and_percent() {
    let dir = TempDir::new();
    let s = anon(&dir);
    s.raw("PUT", "/bk1", &[], b"");
    s.raw("PUT", "/bk1/a%2Bb%20c%25d", &[], b"1");
    let r = s.raw(
        "GET",
        "/bk1?list-type=2&encoding-type=url&prefix=a",
        &[],
        b"",
    );
    assert!(
        r.text().contains("<Key>a%2Bb%20c%25d</Key>")
            && r.text().contains("<EncodingType>url</EncodingType>"),
        "{}",
        r.text()
    );
    let r = s.raw("GET", "/bk1?list-type=2", &[], b"");
    assert!(r.text().contains("<Key>a+b c%d</Key>"));
}

#[test]
fn empty_directories_are_not_common_prefixes() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.0.join("bk1/empty/deeper")).unwrap();
    std::fs::create_dir_all(dir.0.join("bk1/full/x")).unwrap();
    std::fs::write(dir.0.join("bk1/full/x/f"), b"1").unwrap();
    let s = anon(&dir);
    let r = s.raw("GET", "/bk1?delimiter=%2F", &[], b"");
    assert_eq!(keys_of(&r.text(), "Prefix")[1..], ["full/"]);
}

#[test]
fn a_directory_emptied_after_a_listing_is_no_longer_a_common_prefix() {
    let dir = TempDir::new();
    let a = dir.0.join("bk1/a");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("x"), b"1").unwrap();
    // Settled an hour ago, so that the listing remembers that it holds an object.
    settle(&a);
    let s = anon(&dir);
    let r = s.raw("GET", "/bk1?delimiter=%2F", &[], b"");
    assert_eq!(keys_of(&r.text(), "Prefix")[1..], ["a/"]);
    std::fs::remove_file(a.join("x")).unwrap();
    let r = s.raw("GET", "/bk1?delimiter=%2F", &[], b"");
    assert!(keys_of(&r.text(), "Prefix")[1..].is_empty(), "{}", r.text());
}

#[test]
fn a_prefix_whose_only_object_lies_deeper_goes_when_that_object_goes() {
    let dir = TempDir::new();
    let deep = dir.0.join("bk1/y/m/d");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f"), b"1").unwrap();
    std::fs::create_dir_all(dir.0.join("bk1/y/other")).unwrap();
    let s = anon(&dir);
    let prefixes = |s: &TestServer| common_prefixes(s, "/bk1?delimiter=%2F");
    // Asked twice, so that the second answer comes from what the first one remembered.
    assert_eq!(prefixes(&s), ["y/"]);
    assert_eq!(prefixes(&s), ["y/"]);
    std::fs::remove_file(deep.join("f")).unwrap();
    assert!(prefixes(&s).is_empty());
    std::fs::write(dir.0.join("bk1/y/other/g"), b"1").unwrap();
    assert_eq!(prefixes(&s), ["y/"]);
}

#[test]
fn a_directory_moved_away_does_not_vouch_for_an_empty_one_in_its_place() {
    let dir = TempDir::new();
    let bk = dir.0.join("bk1");
    std::fs::create_dir_all(bk.join("a/sub")).unwrap();
    std::fs::write(bk.join("a/sub/f"), b"1").unwrap();
    let s = anon(&dir);
    let prefixes = |s: &TestServer| common_prefixes(s, "/bk1?delimiter=%2F&prefix=a%2F");
    assert_eq!(prefixes(&s), ["a/sub/"]);
    assert_eq!(prefixes(&s), ["a/sub/"]);
    // The watched directory keeps its object under another path; an empty one takes its name.
    std::fs::rename(bk.join("a"), bk.join("b")).unwrap();
    std::fs::create_dir_all(bk.join("a/sub")).unwrap();
    assert!(prefixes(&s).is_empty());
}

#[test]
fn prefixes_follow_subdirectories_that_gain_or_lose_objects_behind_our_back() {
    let dir = TempDir::new();
    let bk = dir.0.join("bk1");
    std::fs::create_dir_all(bk.join("a")).unwrap();
    std::fs::create_dir_all(bk.join("e")).unwrap();
    std::fs::write(bk.join("a/x"), b"1").unwrap();
    settle(&bk);
    let s = anon(&dir);
    let prefixes = |s: &TestServer| common_prefixes(s, "/bk1?list-type=2&delimiter=%2F");
    assert_eq!(prefixes(&s), ["a/"]);
    assert_eq!(prefixes(&s), ["a/"]);
    // The bucket's directory does not change: only e/ does.
    std::fs::write(bk.join("e/y"), b"1").unwrap();
    assert_eq!(prefixes(&s), ["a/", "e/"]);
    // The same page asked through v1 is v1's document, not one kept for v2.
    let r = s.raw("GET", "/bk1?delimiter=%2F", &[], b"");
    assert!(r.text().contains("<Marker></Marker>"), "{}", r.text());
    // A page kept while the bucket's directory stays as it is still follows a prefix emptied.
    assert_eq!(prefixes(&s), ["a/", "e/"]);
    std::fs::remove_file(bk.join("a/x")).unwrap();
    assert_eq!(prefixes(&s), ["e/"]);
}

/// The common prefixes of a listing (the first `Prefix` element is the request's).
fn common_prefixes(s: &TestServer, path: &str) -> Vec<String> {
    let r = s.raw("GET", path, &[], b"");
    keys_of(&r.text(), "Prefix")[1..].to_vec()
}

/// Moves a directory's modification time an hour back, so that its listing may be cached.
fn settle(path: &std::path::Path) {
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(old))
        .unwrap();
}

fn list_sizes(s: &TestServer, query: &str) -> (Vec<String>, Vec<String>) {
    let r = s.raw("GET", &format!("/bk1?list-type=2{query}"), &[], b"");
    assert_eq!(r.status, 200);
    (keys_of(&r.text(), "Key"), keys_of(&r.text(), "Size"))
}

#[test]
fn cached_listings_follow_every_write_through_s3() {
    let dir = TempDir::new();
    let s = anon(&dir);
    s.raw("PUT", "/bk1", &[], b"");
    s.raw("PUT", "/bk1/d/a", &[], b"1");
    s.raw("PUT", "/bk1/d/b", &[], b"22");
    let settle_all = || {
        settle(&dir.0.join("bk1/d"));
        settle(&dir.0.join("bk1"));
    };
    settle_all();
    assert_eq!(
        list_sizes(&s, ""),
        (
            vec!["d/a".into(), "d/b".into()],
            vec!["1".into(), "2".into()]
        )
    );
    // Each listing below would come from memory if writes did not move the directory's stamp.
    s.raw("PUT", "/bk1/d/c", &[], b"333");
    assert_eq!(list_sizes(&s, "").0, ["d/a", "d/b", "d/c"]);
    settle_all();
    list_sizes(&s, "");
    s.raw("PUT", "/bk1/d/a", &[], b"4444");
    assert_eq!(list_sizes(&s, "").1, ["4", "2", "3"]);
    settle_all();
    list_sizes(&s, "&max-keys=1");
    assert_eq!(s.raw("DELETE", "/bk1/d/b", &[], b"").status, 204);
    assert_eq!(list_sizes(&s, "").0, ["d/a", "d/c"]);
    assert_eq!(list_sizes(&s, "&start-after=d/a").0, ["d/c"]);
}

#[test]
fn a_file_changed_in_place_shows_in_listings_after_the_dir_cache_time() {
    for (cache_time, seen_at_once) in [(Duration::from_secs(300), false), (Duration::ZERO, true)] {
        let dir = TempDir::new();
        let d = dir.0.join("bk1/d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("f"), b"1").unwrap();
        settle(&d);
        settle(&dir.0.join("bk1"));
        let mut c =
            s3serve::config::Config::for_tests(s3serve::config::Storage::Local(dir.0.clone()));
        c.dir_cache_time = cache_time;
        let s = start(c);
        assert_eq!(list_sizes(&s, "").1, ["1"]);
        // Behind our back and in place: the directory's stamp does not move.
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("f"))
            .unwrap()
            .write_all(b"2")
            .unwrap();
        let want = if seen_at_once { "2" } else { "1" };
        assert_eq!(list_sizes(&s, "").1, [want], "cache time {cache_time:?}");
        // GET and HEAD read the file itself.
        assert_eq!(s.raw("GET", "/bk1/d/f", &[], b"").body, b"12");
    }
}

/// Folder markers (keys ending in `/`) list as keys, and as common prefixes when empty, on
/// both backends; over cached listings, a marker made or removed shows at once.
#[test]
fn folder_markers_list_on_both_backends() {
    let dir = TempDir::new();
    let local = anon(&dir);
    let memory = start(s3serve::config::Config::for_tests(
        s3serve::config::Storage::Memory,
    ));
    for s in [&local, &memory] {
        s.raw("PUT", "/bk1", &[], b"");
        assert_eq!(s.raw("PUT", "/bk1/d/e/", &[], b"").status, 200);
        assert_eq!(s.raw("PUT", "/bk1/d/f", &[], b"ff").status, 200);
        assert_eq!(s.raw("PUT", "/bk1/d/e/", &[], b"x").status, 400);
        assert_eq!(list_sizes(s, "").0, ["d/e/", "d/f"]);
        assert_eq!(common_prefixes(s, "/bk1?delimiter=/&prefix=d/"), ["d/e/"]);
        let head = s.raw("HEAD", "/bk1/d/e/", &[], b"");
        assert_eq!(head.header("content-length"), Some("0"));
        let get = s.raw("GET", "/bk1/d/", &[], b"");
        assert_eq!((get.status, get.code()), (404, "NoSuchKey".to_string()));
    }
    settle(&dir.0.join("bk1/d"));
    settle(&dir.0.join("bk1"));
    list_sizes(&local, "");
    for s in [&local, &memory] {
        assert_eq!(s.raw("PUT", "/bk1/d/", &[], b"").status, 200);
        assert_eq!(list_sizes(s, "").0, ["d/", "d/e/", "d/f"]);
        assert_eq!(s.raw("DELETE", "/bk1/d/e/", &[], b"").status, 204);
        assert_eq!(list_sizes(s, "").0, ["d/", "d/f"]);
        assert!(common_prefixes(s, "/bk1?delimiter=/&prefix=d/").is_empty());
    }
    assert!(!dir.0.join("bk1/d/e").exists());
}
