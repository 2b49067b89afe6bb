//! Request headers and query parameters as the ops see them, and the header rules shared by
//! several operations: stored metadata, Content-MD5, conditional requests (RFC 9110 §13.2.2,
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html>) and ranges.

use std::time::SystemTime;

use crate::ops::error::{Code, S3Error};
use crate::util;
use crate::vfs::{ObjectInfo, ObjectMeta};

/// S3's limit on user metadata (names plus values).
pub const MAX_USER_META: usize = 2048;

/// The system headers S3 stores and returns, in the order they are returned.
pub const STORED_HEADERS: [&str; 6] = [
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
];

/// Request headers with lower-case names, in arrival order.
#[derive(Debug, Default, Clone)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// Builds headers from (name, value) pairs; names are lower-cased.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Decoded query parameters, in order; a parameter without `=` has an empty value.
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Parses `Content-MD5`: base64 of 16 bytes, else 400 InvalidDigest.
pub fn content_md5(h: &Headers) -> Result<Option<[u8; 16]>, S3Error> {
    let Some(v) = h.get("content-md5") else {
        return Ok(None);
    };
    let bytes = util::unbase64(v.trim()).filter(|b| b.len() == 16);
    match bytes.and_then(|b| <[u8; 16]>::try_from(b).ok()) {
        Some(d) => Ok(Some(d)),
        None => Err(S3Error::new(
            Code::InvalidDigest,
            "The Content-MD5 you specified was invalid.",
        )),
    }
}

/// Collects what PutObject stores: system headers and `x-amz-meta-*` (lower-cased names).
pub fn meta_from_request(h: &Headers) -> Result<ObjectMeta, S3Error> {
    let mut meta = ObjectMeta::default();
    for name in STORED_HEADERS {
        if let Some(v) = h.get(name) {
            let v = if name == "content-encoding" {
                strip_aws_chunked(v)
            } else {
                v.to_string()
            };
            if !v.is_empty() {
                meta.headers.push((name.to_string(), v));
            }
        }
    }
    for (n, v) in &h.0 {
        if let Some(user) = n.strip_prefix("x-amz-meta-") {
            meta.user.push((user.to_string(), v.clone()));
        }
    }
    if meta.user_size() > MAX_USER_META {
        return Err(S3Error::new(
            Code::MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size.",
        )
        .with("MaxSizeAllowed", MAX_USER_META.to_string()));
    }
    Ok(meta)
}

fn strip_aws_chunked(v: &str) -> String {
    v.split(',')
        .map(str::trim)
        .filter(|e| !e.eq_ignore_ascii_case("aws-chunked"))
        .collect::<Vec<_>>()
        .join(",")
}

/// rclone's `x-amz-meta-mtime` (float seconds since the epoch) as a file time.
pub fn mtime_from_meta(meta: &ObjectMeta) -> Option<SystemTime> {
    let v = meta
        .user
        .iter()
        .find(|(n, _)| n == "mtime")?
        .1
        .trim()
        .to_string();
    let secs: f64 = v.parse().ok()?;
    if !secs.is_finite() || !(0.0..=1e11).contains(&secs) {
        return None;
    }
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs))
}

/// The quoted form of an ETag.
pub fn quote(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn etag_matches(list: &str, etag: Option<&str>) -> bool {
    list.split(',').map(str::trim).any(|t| {
        t == "*" || etag.is_some_and(|e| t.trim_start_matches("W/").trim_matches('"') == e)
    })
}

/// The names of one family of conditional headers (object or copy source).
pub struct CondNames {
    pub if_match: &'static str,
    pub if_none_match: &'static str,
    pub if_modified_since: &'static str,
    pub if_unmodified_since: &'static str,
}

pub const GET_CONDS: CondNames = CondNames {
    if_match: "if-match",
    if_none_match: "if-none-match",
    if_modified_since: "if-modified-since",
    if_unmodified_since: "if-unmodified-since",
};

pub const COPY_SOURCE_CONDS: CondNames = CondNames {
    if_match: "x-amz-copy-source-if-match",
    if_none_match: "x-amz-copy-source-if-none-match",
    if_modified_since: "x-amz-copy-source-if-modified-since",
    if_unmodified_since: "x-amz-copy-source-if-unmodified-since",
};

/// Outcome of read preconditions.
#[derive(Debug, PartialEq)]
pub enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// Evaluates read preconditions in RFC 9110 order: If-Match beats If-Unmodified-Since,
/// If-None-Match beats If-Modified-Since. Dates compare at whole seconds; bad dates are ignored.
pub fn evaluate(h: &Headers, names: &CondNames, info: &ObjectInfo) -> Precondition {
    let etag = info.meta.as_ref().and_then(|m| m.etag.as_deref());
    let mtime = util::whole_seconds(info.mtime);
    let date = |n: &str| h.get(n).and_then(util::parse_http_date);
    if let Some(list) = h.get(names.if_match) {
        if !etag_matches(list, etag) {
            return Precondition::Failed;
        }
    } else if date(names.if_unmodified_since).is_some_and(|d| mtime > d) {
        return Precondition::Failed;
    }
    if let Some(list) = h.get(names.if_none_match) {
        if etag_matches(list, etag) {
            return Precondition::NotModified;
        }
    } else if date(names.if_modified_since).is_some_and(|d| mtime <= d) {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// The check for conditional writes (`If-None-Match: *`, `If-Match`), run under the key lock
/// against the object currently stored.
pub fn write_condition(h: &Headers) -> Result<Option<WriteCondition>, S3Error> {
    let none_match = h.get("if-none-match").map(str::trim);
    if let Some(v) = none_match {
        if v != "*" {
            return Err(S3Error::new(
                Code::NotImplemented,
                "If-None-Match on writes supports only `*`.",
            ));
        }
    }
    let if_match = h.get("if-match").map(str::to_string);
    if none_match.is_none() && if_match.is_none() {
        return Ok(None);
    }
    Ok(Some(WriteCondition {
        if_none_match: none_match.is_some(),
        if_match,
    }))
}

pub struct WriteCondition {
    if_none_match: bool,
    if_match: Option<String>,
}

impl crate::vfs::WriteCheck<S3Error> for WriteCondition {
    fn check(&self, current: Option<&ObjectInfo>) -> Result<(), S3Error> {
        let failed = || {
            S3Error::new(
                Code::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            )
        };
        if self.if_none_match && current.is_some() {
            return Err(failed());
        }
        if let Some(list) = &self.if_match {
            let Some(info) = current else {
                return Err(S3Error::new(
                    Code::NoSuchKey,
                    "The specified key does not exist.",
                ));
            };
            let etag = info.meta.as_ref().and_then(|m| m.etag.as_deref());
            if !etag_matches(list, etag) || list.trim() == "*" && etag.is_none() {
                return Err(failed());
            }
        }
        Ok(())
    }
}

/// Resolves a `Range` header against an object of `size` bytes. `Ok(None)` means "send the
/// whole object": no header, several ranges, a non-bytes unit, or a malformed or reversed
/// range (all ignored, as S3 does). A start past the end is 416 InvalidRange.
pub fn range(h: &Headers, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(spec) = h.get("range").and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ok(None),
        (true, false) => {
            let Some(n) = num(b) else { return Ok(None) };
            if n == 0 || size == 0 {
                return Err(invalid_range(size));
            }
            (size.saturating_sub(n), size - 1)
        }
        (false, _) => {
            let Some(s) = num(a) else { return Ok(None) };
            let e = if b.is_empty() { Some(u64::MAX) } else { num(b) };
            let Some(e) = e else { return Ok(None) };
            if e < s {
                return Ok(None);
            }
            if s >= size {
                return Err(invalid_range(size));
            }
            (s, e.min(size - 1))
        }
    };
    Ok(Some((start, end - start + 1)))
}

fn invalid_range(size: u64) -> S3Error {
    S3Error::new(Code::InvalidRange, "The requested range is not satisfiable")
        .with("RangeRequested", String::new())
        .with("ActualObjectSize", size.to_string())
        .with_header("Content-Range", format!("bytes */{size}"))
}

/// A Content-Type for objects stored without one, from the file extension.
pub fn guess_content_type(key: &str) -> &'static str {
    let ext = key
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::WriteCheck;
    use std::time::{Duration, UNIX_EPOCH};

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs)
    }

    fn info(etag: &str, secs: u64) -> ObjectInfo {
        let meta = ObjectMeta {
            etag: Some(etag.into()),
            ..Default::default()
        };
        ObjectInfo {
            size: 10,
            mtime: UNIX_EPOCH + Duration::from_millis(secs * 1000 + 500),
            meta: Some(meta),
        }
    }

    #[test]
    fn ranges() {
        let r = |v: &str, size| range(&hdrs(&[("range", v)]), size);
        assert_eq!(r("bytes=2-5", 10).unwrap(), Some((2, 4)));
        assert_eq!(r("bytes=2-", 10).unwrap(), Some((2, 8)));
        assert_eq!(r("bytes=-3", 10).unwrap(), Some((7, 3)));
        assert_eq!(r("bytes=-30", 10).unwrap(), Some((0, 10)));
        assert_eq!(r("bytes=5-100", 10).unwrap(), Some((5, 5)));
        assert_eq!(r("bytes=0-1,3-4", 10).unwrap(), None);
        assert_eq!(r("bytes=5-2", 10).unwrap(), None);
        assert_eq!(r("items=1-2", 10).unwrap(), None);
        assert_eq!(r("bytes=x-2", 10).unwrap(), None);
        assert_eq!(r("bytes=10-", 10).unwrap_err().code, Code::InvalidRange);
        assert_eq!(r("bytes=0-0", 0).unwrap_err().code, Code::InvalidRange);
        assert_eq!(r("bytes=-1", 0).unwrap_err().code, Code::InvalidRange);
    }

    #[test]
    fn conditionals_follow_rfc_precedence() {
        let i = info("abc", 1000);
        let at = |s: u64| util::http_date(UNIX_EPOCH + Duration::from_secs(s));
        let e = |pairs: &[(&str, &str)]| evaluate(&hdrs(pairs), &GET_CONDS, &i);
        assert_eq!(e(&[("if-match", "\"abc\"")]), Precondition::Proceed);
        assert_eq!(e(&[("if-match", "\"zzz\"")]), Precondition::Failed);
        assert_eq!(
            e(&[("if-match", "abc"), ("if-unmodified-since", &at(10))]),
            Precondition::Proceed
        );
        assert_eq!(e(&[("if-unmodified-since", &at(10))]), Precondition::Failed);
        assert_eq!(
            e(&[("if-unmodified-since", &at(1000))]),
            Precondition::Proceed
        );
        assert_eq!(
            e(&[("if-none-match", "\"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            e(&[("if-none-match", "W/\"zzz\", \"abc\"")]),
            Precondition::NotModified
        );
        assert_eq!(
            e(&[
                ("if-none-match", "\"zzz\""),
                ("if-modified-since", &at(2000))
            ]),
            Precondition::Proceed
        );
        assert_eq!(
            e(&[("if-modified-since", &at(1000))]),
            Precondition::NotModified
        );
        assert_eq!(e(&[("if-modified-since", &at(999))]), Precondition::Proceed);
        assert_eq!(
            e(&[("if-modified-since", "garbage")]),
            Precondition::Proceed
        );
    }

    #[test]
    fn write_conditions() {
        let i = info("abc", 1);
        let c = write_condition(&hdrs(&[("if-none-match", "*")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            c.check(Some(&i)).unwrap_err().code,
            Code::PreconditionFailed
        );
        assert!(c.check(None).is_ok());
        let c = write_condition(&hdrs(&[("if-match", "\"abc\"")]))
            .unwrap()
            .unwrap();
        assert!(c.check(Some(&i)).is_ok());
        assert_eq!(c.check(None).unwrap_err().code, Code::NoSuchKey);
        let c = write_condition(&hdrs(&[("if-match", "\"x\"")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            c.check(Some(&i)).unwrap_err().code,
            Code::PreconditionFailed
        );
        assert!(write_condition(&hdrs(&[])).unwrap().is_none());
    }

    #[test]
    fn metadata_from_headers() {
        let h = hdrs(&[
            ("content-type", "text/x"),
            ("content-encoding", "gzip, aws-chunked"),
            ("x-amz-meta-foo", "Bar"),
            ("x-amz-date", "x"),
        ]);
        let m = meta_from_request(&h).unwrap();
        assert_eq!(m.header("content-type"), Some("text/x"));
        assert_eq!(m.header("content-encoding"), Some("gzip"));
        assert_eq!(m.user, vec![("foo".to_string(), "Bar".to_string())]);
        let big = "x".repeat(2100);
        let h = hdrs(&[("x-amz-meta-big", big.as_str())]);
        assert_eq!(
            meta_from_request(&h).unwrap_err().code,
            Code::MetadataTooLarge
        );
    }

    #[test]
    fn content_md5_forms() {
        assert!(
            content_md5(&hdrs(&[("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg==")]))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            content_md5(&hdrs(&[("content-md5", "nope")]))
                .unwrap_err()
                .code,
            Code::InvalidDigest
        );
        assert_eq!(
            content_md5(&hdrs(&[("content-md5", "")])).unwrap_err().code,
            Code::InvalidDigest
        );
    }
}
