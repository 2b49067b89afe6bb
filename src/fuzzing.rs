//! Property checks over client bytes, one per parser that reads them. The fuzz targets in
//! `fuzz/` call these; the unit tests at the bottom run every seed kept in
//! `fuzz/regressions/<target>/` through them, so an input that once broke a property stays
//! a test. Each check takes arbitrary bytes and panics only when a property the server relies
//! on does not hold: "no panic" is the least of them.
//!
//! Compiled for tests and for `cargo fuzz` (which sets `--cfg fuzzing`), never into the binary.

use std::io::Read;
use std::path::{Component, Path};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::key;
use crate::ops::headers::{self, Headers, COPY_SOURCE_CONDS, GET_CONDS};
use crate::s3::auth::{self, Keys, Payload, SignedParts, Streaming};
use crate::s3::chunked::ChunkedReader;
use crate::server::head::{self, Chunked, Framing};
use crate::vfs::{ObjectInfo, ObjectMeta};

/// The names every target knows.
/// One check: arbitrary bytes in, a panic when a property breaks.
pub type Check = fn(&[u8]);

pub const TARGETS: &[(&str, Check)] = &[
    ("head", head),
    ("sigv4", sigv4),
    ("aws_chunked", aws_chunked),
    ("xml_bodies", xml_bodies),
    ("post_form", post_form),
    ("range_cond", range_cond),
    ("key_path", key_path),
    ("remote_config", remote_config),
    ("filter_rules", filter_rules),
];

/// A fixed "now" (2026-06-01T12:00:00Z), so runs repeat.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_315_200)
}

/// Splits fuzz input into its first byte (the knobs) and the rest.
fn knobs(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&k, rest)) => (k, rest),
        None => (0, &[]),
    }
}

fn lossy(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// `name: value` lines (one per `\n`) as the worker sees headers: lower-case names, trimmed values.
fn header_lines(text: &str) -> Headers {
    Headers(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect(),
    )
}

/// The relay's head framing, its header rewrite and its chunked-body walker.
/// - A head found ends at the first CRLFCRLF, within the limit; every shorter prefix is still
///   incomplete.
/// - The rewritten head frames the same way, and the only private (`x-s3serve-`) lines in it
///   are the one the relay adds and the renamed ones.
/// - The chunked walker gives the same answer whatever the pieces the body arrives in, and
///   never yields more data than it consumed.
pub fn head(data: &[u8]) {
    let (k, buf) = knobs(data);
    let limit = 16 + usize::from(k) * 32;
    let Ok(Some(h)) = head::find_head(buf, limit) else {
        return;
    };
    assert!(h.len <= buf.len() && h.len <= limit);
    assert!(buf[..h.len].ends_with(b"\r\n\r\n"));
    assert!(!buf[..h.len - 1].windows(4).any(|w| w == b"\r\n\r\n"));
    assert_eq!(head::find_head(&buf[..h.len - 1], limit), Ok(None));

    let rename: &[&str] = if k & 1 == 0 {
        &["content-length", "transfer-encoding", "expect"]
    } else {
        &["expect"]
    };
    let extra = "X-S3serve-Conn: 7";
    let mut out = Vec::new();
    head::rewrite_head(&buf[..h.len], rename, extra, &mut out);
    for line in out.split(|&b| b == b'\n').skip(1) {
        let lower = line.to_ascii_lowercase();
        if !lower.starts_with(crate::s3::relayed::PRIVATE_PREFIX.as_bytes()) {
            continue;
        }
        let renamed = lower
            .strip_prefix(crate::s3::relayed::RENAMED_PREFIX.as_bytes())
            .is_some_and(|rest| {
                rename
                    .iter()
                    .any(|n| rest.starts_with(n.as_bytes()) && rest.get(n.len()) == Some(&b':'))
            });
        assert!(
            renamed || line == extra.as_bytes() || line == format!("{extra}\r").as_bytes(),
            "a private header got through: {:?}",
            String::from_utf8_lossy(line)
        );
    }
    let again = head::find_head(&out, usize::MAX).expect("the rewritten head parses");
    let again = again.expect("the rewritten head is complete");
    assert_eq!(again.len, out.len());
    assert_eq!(again.is_head, h.is_head);
    if rename.len() == 1 {
        assert_eq!(again.framing, h.framing);
        assert_eq!(again.keep_alive, h.keep_alive);
    }

    if h.framing == Framing::Chunked {
        let body = &buf[h.len..];
        let whole = walk_chunked(body, &[body.len()]);
        let cuts: Vec<usize> = body.iter().map(|&b| usize::from(b % 7) + 1).collect();
        let pieces = walk_chunked(body, &cuts);
        assert_eq!(
            whole, pieces,
            "the chunked walker depends on how the body arrives"
        );
        if let Ok((used, decoded)) = &whole {
            assert!(*used <= body.len() && decoded.len() <= *used);
        }
    }
}

type Walked = Result<(usize, Vec<u8>), head::Refusal>;

/// Feeds `body` to a chunked walker in pieces of the given sizes (cycled).
fn walk_chunked(body: &[u8], sizes: &[usize]) -> Walked {
    let mut c = Chunked::default();
    let mut decoded = Vec::new();
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at >= body.len() || c.done() {
            break;
        }
        let piece = &body[at..(at + size.max(1)).min(body.len())];
        let used = c.decode(piece, |d| decoded.extend_from_slice(d))?;
        assert!(used <= piece.len());
        at += used;
        if used < piece.len() {
            assert!(c.done(), "the walker stopped early without finishing");
            break;
        }
    }
    Ok((at, decoded))
}

const AK: &str = "AKIDFUZZ";
const SK: &str = "fuzz/secret+key";

fn keys() -> Keys {
    Keys::new(&[(AK.to_string(), SK.to_string())])
}

/// Signature checking (SigV4 headers and presigned queries, SigV2 headers and queries).
/// - Nothing the fuzzer writes is accepted: the secret is not in the input, so every request
///   must be refused (an acceptance would be a way around the signature).
/// - A request built from the same parts and signed properly is accepted, and stops being
///   accepted when one character of its signature changes.
pub fn sigv4(data: &[u8]) {
    let text = lossy(data);
    let mut lines = text.splitn(4, '\n');
    let method = lines.next().unwrap_or("GET").to_string();
    let path = lines.next().unwrap_or("/").to_string();
    let query = lines.next().unwrap_or("").to_string();
    let headers = header_lines(lines.next().unwrap_or(""));
    let rq = SignedParts {
        method: &method,
        raw_path: &path,
        raw_query: &query,
        headers: &headers,
        vhost_bucket: None,
        baseurl: "",
    };
    if let Ok(id) = auth::authenticate(&keys(), &rq, now()) {
        panic!("a request without the secret was accepted: {id:?}");
    }

    // The same parts, made well-formed and signed.
    let method: String = method.chars().filter(char::is_ascii_uppercase).collect();
    let method = if method.is_empty() {
        "GET".into()
    } else {
        method
    };
    let path = format!("/{}", crate::util::uri_encode(&path, true));
    let query: String = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.to_ascii_lowercase().starts_with("x-amz-"))
        .filter(|p| !p.starts_with("AWSAccessKeyId") && !p.starts_with("Signature"))
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            format!(
                "{}={}",
                crate::util::uri_encode(n, false),
                crate::util::uri_encode(v, false)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let mut pairs: Vec<(String, String)> = headers
        .0
        .into_iter()
        .filter(|(n, v)| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !n.starts_with("x-amz-")
                && n != "authorization"
                && n != "host"
                && v.bytes().all(|b| (b' '..0x7f).contains(&b))
        })
        .collect();
    pairs.push(("host".into(), "fuzz.example".into()));
    let signer = crate::sigv4::Signer {
        access_key: AK.into(),
        secret: SK.into(),
        region: "us-east-1".into(),
        session_token: None,
    };
    signer.sign(
        &method,
        &path,
        &query,
        &mut pairs,
        "UNSIGNED-PAYLOAD",
        now(),
    );
    let signed = Headers(pairs.clone());
    let rq = SignedParts {
        method: &method,
        raw_path: &path,
        raw_query: &query,
        headers: &signed,
        vhost_bucket: None,
        baseurl: "",
    };
    match auth::authenticate(&keys(), &rq, now()) {
        Ok(id) => {
            assert_eq!(id.access_key.as_deref(), Some(AK));
            assert_eq!(id.payload, Payload::Unsigned);
        }
        Err(e) => panic!(
            "a properly signed request was refused: {} {}\n{method} {path}?{query}\n{pairs:?}",
            e.code.as_str(),
            e.message
        ),
    }
    let (n, auth) = pairs.last_mut().expect("the signer added authorization");
    assert_eq!(n, "authorization");
    let last = auth.pop().expect("a signature");
    auth.push(if last == '0' { '1' } else { '0' });
    let forged = Headers(pairs);
    let rq = SignedParts {
        headers: &forged,
        ..rq
    };
    assert!(auth::authenticate(&keys(), &rq, now()).is_err());
}

/// The aws-chunked decoder, with and without chunk signatures and trailers.
/// - It never yields more bytes than it was given, and what it yields does not depend on the
///   size of the reads that ask for it.
/// - With chunk signatures checked, no body the fuzzer writes is accepted whole.
/// - Any payload framed properly (random chunk sizes, a trailer) comes back exactly.
pub fn aws_chunked(data: &[u8]) {
    let (k, body) = knobs(data);
    let signed = k & 1 == 1;
    let trailer = (k & 2 == 2).then_some("x-amz-checksum-crc32");
    let mode = match (signed, trailer.is_some()) {
        (true, _) => "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        (false, true) => "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        (false, false) => "STREAMING-UNSIGNED-PAYLOAD",
    };
    let streaming = || Streaming {
        mode: mode.into(),
        signing_key: if signed { vec![7; 32] } else { Vec::new() },
        amz_date: "20260601T120000Z".into(),
        scope: "20260601/us-east-1/s3/aws4_request".into(),
        seed_signature: "0".repeat(64),
    };
    let read_all = |step: usize| {
        let mut input: &[u8] = body;
        let mut r = ChunkedReader::new(&mut input, streaming(), trailer, Default::default());
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => {
                    assert!(n <= step);
                    out.extend_from_slice(&buf[..n]);
                    assert!(out.len() <= body.len(), "more bytes out than in");
                }
                Err(e) => return Err((out, e.to_string())),
            }
        }
    };
    let big = read_all(64 * 1024);
    let small = read_all(usize::from(k >> 2) + 1);
    assert_eq!(big, small, "the result depends on the read size");
    if signed {
        assert!(big.is_err(), "a forged signed body was accepted");
    }

    // A proper framing of `body` itself, cut where its own bytes say.
    let mut framed = Vec::new();
    let mut rest = body;
    let mut cuts = body.iter().cycle();
    while !rest.is_empty() {
        let n = (usize::from(*cuts.next().unwrap_or(&1)) * 37 + 1).min(rest.len());
        framed.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        framed.extend_from_slice(&rest[..n]);
        framed.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    framed.extend_from_slice(b"0\r\n");
    let crc = "AAAAAA==";
    if trailer.is_some() {
        framed.extend_from_slice(format!("x-amz-checksum-crc32:{crc}\r\n").as_bytes());
    }
    framed.extend_from_slice(b"\r\n");
    let mut input: &[u8] = &framed;
    let trailers = crate::s3::chunked::Trailers::default();
    let unsigned = Streaming {
        mode: if trailer.is_some() {
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER".into()
        } else {
            "STREAMING-UNSIGNED-PAYLOAD".into()
        },
        signing_key: Vec::new(),
        ..streaming()
    };
    let mut r = ChunkedReader::new(&mut input, unsigned, trailer, trailers.clone());
    let mut out = Vec::new();
    r.read_to_end(&mut out).expect("a well-framed body decodes");
    assert_eq!(out, body);
    if trailer.is_some() {
        let got = trailers.borrow();
        assert!(got
            .iter()
            .any(|(n, v)| n == "x-amz-checksum-crc32" && v == crc));
    }
}

/// The XML request bodies: CompleteMultipartUpload and DeleteObjects.
/// - Whatever is sent, the parsers answer (a list or an S3 error) without panicking; a parsed
///   Delete names 1 to 1000 keys.
/// - A key written into a Delete document by our XML writer is read back unchanged.
pub fn xml_bodies(data: &[u8]) {
    let _ = crate::ops::multipart::fuzz_parse_complete(data);
    if let Ok(keys) = crate::ops::delete::fuzz_parse(data) {
        assert!(!keys.is_empty() && keys.len() <= crate::ops::delete::MAX_DELETE_KEYS);
    }
    let key: String = lossy(data)
        .chars()
        .filter(|&c| c >= ' ' && c != '\u{fffd}' && c != '%')
        .collect();
    if key.trim().is_empty() {
        return;
    }
    let mut w = crate::ops::xml::XmlWriter::new();
    w.root("Delete");
    w.open("Object");
    w.elem("Key", &key);
    w.close("Object");
    w.close("Delete");
    let doc = w.finish();
    let keys = crate::ops::delete::fuzz_parse(&doc).expect("our own Delete document parses");
    assert_eq!(keys, vec![key]);
}

/// The POST form parser and the policy check.
/// - Fields stay within the form limit, and the file part never yields more than was sent.
/// - A form built properly from arbitrary fields and file bytes reads back exactly.
/// - A policy, however malformed, is checked without panicking.
pub fn post_form(data: &[u8]) {
    let (k, rest) = knobs(data);
    let boundary = ["b", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "x-y-z"][usize::from(k % 3)];
    let mut input: &[u8] = rest;
    if let Ok((fields, file)) = crate::s3::post::fuzz_read_form(&mut input, boundary) {
        let values: usize = fields.iter().map(|(_, v)| v.len()).sum();
        assert!(values <= crate::s3::post::MAX_FIELDS);
        assert!(file.len() <= rest.len());
    }
    let text = lossy(rest);
    let _ = crate::json::parse_json(&text);
    let _ = crate::s3::post::fuzz_check_policy(&crate::util::base64(rest), Vec::new());

    // A well-formed form from the input's own lines: field values, then the file.
    let delim = format!("\r\n--{boundary}");
    let mut parts: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let file = parts.pop().unwrap_or_default();
    if parts
        .iter()
        .chain([&file])
        .any(|p| contains(p, delim.as_bytes()) || p.ends_with(b"\r"))
    {
        return;
    }
    let mut form = Vec::new();
    let mut want = Vec::new();
    for (i, value) in parts.iter().enumerate().take(20) {
        let Ok(value) = std::str::from_utf8(value) else {
            return;
        };
        let name = format!("field{i}");
        form.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
        want.push((name, value.to_string()));
    }
    form.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    form.extend_from_slice(file);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut input: &[u8] = &form;
    let (fields, got) =
        crate::s3::post::fuzz_read_form(&mut input, boundary).expect("a well-formed form parses");
    assert_eq!(fields, want);
    assert_eq!(got, file);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Range and conditional headers (and the metadata headers of a write).
/// - A range that is granted is not empty and lies within the object.
/// - Preconditions, write conditions, Content-MD5 and metadata headers answer without panic.
pub fn range_cond(data: &[u8]) {
    let (size_bytes, rest) = data.split_at(data.len().min(8));
    let mut b = [0u8; 8];
    b[..size_bytes.len()].copy_from_slice(size_bytes);
    let size = u64::from_le_bytes(b) >> (b[0] % 64);
    let h = header_lines(&lossy(rest));
    let mut range_only = h.clone();
    let value = lossy(rest);
    range_only
        .0
        .push(("range".into(), value.trim().to_string()));
    for h in [&h, &range_only] {
        if let Ok(Some((start, len))) = headers::range(h, size) {
            assert!(
                len >= 1 && start.checked_add(len).is_some_and(|e| e <= size),
                "{start}+{len} of {size}"
            );
        }
        let info = ObjectInfo {
            size,
            mtime: UNIX_EPOCH + Duration::from_secs(size % (1 << 34)),
            meta: Some(ObjectMeta {
                etag: Some("0123456789abcdef0123456789abcdef".into()),
                ..Default::default()
            }),
        };
        let _ = headers::evaluate(h, &GET_CONDS, &info);
        let _ = headers::evaluate(h, &COPY_SOURCE_CONDS, &info);
        let _ = headers::write_condition(h);
        let _ = headers::content_md5(h);
        let _ = headers::meta_from_request(h);
    }
}

/// From request target (and copy source) to a path under the root.
/// - A bucket and key that the mapper accepts resolve beneath the root: every component of
///   their path is a plain name, none is `.` or `..`, and only a folder marker's own file has
///   a private name.
pub fn key_path(data: &[u8]) {
    let (k, rest) = knobs(data);
    let text = lossy(rest);
    let baseurl = if k & 1 == 1 { "base" } else { "" };
    let vhost = (k & 2 == 2).then_some("vbucket");
    let mut targets = Vec::new();
    if let Ok(t) = crate::s3::fuzz_parse_target(&text, baseurl, vhost) {
        targets.push(t);
    }
    if let Ok(t) = crate::ops::copy::parse_copy_source(&text) {
        targets.push(t);
    }
    for (bucket, key) in targets {
        if key::check_bucket(&bucket).is_err() || key::check(&key).is_err() {
            continue;
        }
        let rel = format!("{bucket}/{}", key::storage_path(&key));
        let root = Path::new("/srv/root");
        let full = root.join(&rel);
        let comps: Vec<Component> = Path::new(&rel).components().collect();
        for (i, c) in comps.iter().enumerate() {
            let Component::Normal(name) = c else {
                panic!("{rel:?} has a {c:?} component");
            };
            let name = name.to_string_lossy();
            let last = i + 1 == comps.len();
            assert!(
                !key::is_hidden(&name) || (last && name == key::FOLDER_MARKER),
                "{rel:?} reaches a private name"
            );
            assert!(!name.contains('\0'));
        }
        assert!(full.starts_with(root) && full.components().count() == 3 + comps.len());
    }
}

/// The rclone config file and `remote:path` parsers.
/// - Any text reads as sections of `key = value` pairs with trimmed, one-line names.
/// - A spec that parses resolves against that config (found, or a clear error), without panic.
pub fn remote_config(data: &[u8]) {
    let text = lossy(data);
    let (config, spec) = text.split_once('\0').unwrap_or((&text, "remote:path"));
    let file = crate::cli::remote::ConfigFile::parse(config);
    for (name, items) in &file.sections {
        assert!(!name.contains('\n') && name.trim() == name);
        for (k, v) in items {
            assert!(!k.contains('\n') && !v.contains('\n') && k.trim() == k && v.trim() == v);
        }
    }
    if let Ok(Some(s)) = crate::cli::remote::parse_spec(spec) {
        let env = std::collections::HashMap::new();
        let _ = crate::cli::remote::resolve(&s, Some(&file), &env);
    }
}

/// The filter rules (`--filter`, `--include`, `--exclude` and their metadata twins).
/// - Any rule list compiles or is refused with a message; a compiled filter answers for any
///   path, directory and key.
/// - A plain name (no glob characters) included is served, and excluded is not, whatever the
///   directory it is in; with --ignore-case, in any case.
pub fn filter_rules(data: &[u8]) {
    use crate::vfs::filter::{Filter, FilterOptions};
    let (k, rest) = knobs(data);
    let text = lossy(rest);
    let mut lines = text.lines();
    let rules: Vec<String> = lines.by_ref().take(8).map(str::to_string).collect();
    let mut opts = FilterOptions {
        ignore_case: k & 1 == 1,
        ..Default::default()
    };
    match k >> 1 & 3 {
        0 => opts.rules.filter = rules.clone(),
        1 => opts.rules.include = rules.clone(),
        2 => opts.rules.exclude = rules.clone(),
        _ => opts.metadata.filter = rules.clone(),
    }
    if let Ok(Some(f)) = Filter::new(&opts) {
        for p in lines {
            let _ = f.path(p);
            let _ = f.dir(p);
            let _ = f.key("bucket", p);
            let _ = f.bucket(p);
        }
    }
    // One plain name as the only rule.
    let name: String = rules
        .first()
        .map(|r| {
            r.chars()
                .filter(|c| c.is_alphanumeric() || "._-".contains(*c))
                .collect()
        })
        .unwrap_or_default();
    if name.is_empty() || name.starts_with(['-', '+', '!', '#', ';']) {
        return;
    }
    for include in [true, false] {
        let mut opts = FilterOptions {
            ignore_case: k & 1 == 1,
            ..Default::default()
        };
        if include {
            opts.rules.include = vec![name.clone()];
        } else {
            opts.rules.exclude = vec![name.clone()];
        }
        let f = Filter::new(&opts)
            .expect("a plain name is a valid rule")
            .expect("one rule filters");
        let asked = if opts.ignore_case {
            name.to_uppercase()
        } else {
            name.clone()
        };
        for path in [
            asked.clone(),
            format!("dir/{asked}"),
            format!("a/b/{asked}"),
        ] {
            assert_eq!(f.path(&path), include, "{path:?} under rule {name:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Every seed kept under `fuzz/regressions/<target>/` (and the corpus seeds under
    /// `fuzz/seeds/<target>/`) still holds its target's properties.
    #[test]
    fn regression_seeds_hold() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut ran = 0;
        for (name, check) in TARGETS {
            for kind in ["regressions", "seeds"] {
                let Ok(dir) = fs::read_dir(root.join(kind).join(name)) else {
                    continue;
                };
                for entry in dir.flatten() {
                    let data = fs::read(entry.path()).expect("a seed");
                    let r = std::panic::catch_unwind(|| check(&data));
                    assert!(
                        r.is_ok(),
                        "{name}: {} breaks a property",
                        entry.path().display()
                    );
                    ran += 1;
                }
            }
        }
        assert!(ran > 0, "no seeds found under {}", root.display());
    }

    #[test]
    fn every_target_takes_empty_and_small_inputs() {
        for (_, check) in TARGETS {
            for data in [&b""[..], b"\0", b"\xff\xff", b"a\nb:c\r\n\r\n"] {
                check(data);
            }
        }
    }
}
