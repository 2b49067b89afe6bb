//! The S3 calls the upstream backend makes, signed with SigV4: objects (HEAD, ranged GET,
//! PUT, DELETE), buckets, and listings as the upstream pages them. Answers are mapped to
//! backend errors honestly: only the upstream saying "no such key" is NotFound; a 5xx, a
//! timeout or an unreachable upstream is Unavailable, never a missing object.

use std::time::SystemTime;

use super::http::{Answer, Http, Payload};
use crate::backend::{BackendError, ErrorKind, Result};
use crate::sigv4::{Signer, EMPTY_SHA256, UNSIGNED_PAYLOAD};
use crate::util;

/// Error documents and listing pages are read whole, up to this size.
pub(super) const MAX_DOC: u64 = 16 << 20;

/// Where the upstream is and how to address it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host` or `host:port`.
    pub host: String,
    /// Path style (`/bucket/key`) rather than virtual-hosted (`bucket.host/key`).
    pub path_style: bool,
}

impl Endpoint {
    /// Reads `http://host:port` or `https://host` (a bare host means https).
    pub fn parse(url: &str, path_style: bool) -> std::result::Result<Endpoint, String> {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) if s == "http" || s == "https" => (s, r),
            Some((s, _)) => return Err(format!("endpoint {url:?}: scheme {s:?} is not http(s)")),
            None => ("https", url),
        };
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(format!("endpoint {url:?}: expected scheme://host[:port]"));
        }
        Ok(Endpoint {
            scheme: scheme.into(),
            host: host.into(),
            path_style,
        })
    }
}

/// One object as the upstream describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub size: u64,
    pub mtime: SystemTime,
    pub etag: Option<String>,
    /// Stored headers and `x-amz-meta-*`, lower-case names.
    pub headers: Vec<(String, String)>,
}

/// One page of a listing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Page {
    pub objects: Vec<Listed>,
    pub prefixes: Vec<String>,
    /// Where the next page starts; `None` on the last.
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub mtime: SystemTime,
    pub etag: Option<String>,
}

pub struct Client {
    http: Http,
    endpoint: Endpoint,
    /// `None`: anonymous requests.
    signer: Option<Signer>,
}

impl Client {
    pub fn new(http: Http, endpoint: Endpoint, signer: Option<Signer>) -> Client {
        Client {
            http,
            endpoint,
            signer,
        }
    }

    /// How many times a failed request, or a read cut short, is retried.
    pub fn retries(&self) -> u32 {
        self.http.retries()
    }

    /// Sends one request for `bucket`/`key` (either may be empty) with the raw `query`.
    pub fn request(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        query: &str,
        headers: &[(String, String)],
        payload: Payload<'_>,
    ) -> Result<Answer> {
        let encoded_key = util::uri_encode(key, true);
        let (host, path) = match (self.endpoint.path_style, bucket.is_empty()) {
            (true, _) | (false, true) => {
                let mut path = String::from("/");
                if !bucket.is_empty() {
                    path.push_str(bucket);
                    if !key.is_empty() {
                        path.push('/');
                    }
                }
                path.push_str(&encoded_key);
                (self.endpoint.host.clone(), path)
            }
            (false, false) => (
                format!("{bucket}.{}", self.endpoint.host),
                format!("/{encoded_key}"),
            ),
        };
        let url = match query {
            "" => format!("{}://{host}{path}", self.endpoint.scheme),
            q => format!("{}://{host}{path}?{q}", self.endpoint.scheme),
        };
        let payload_hash = match payload {
            Payload::Empty => EMPTY_SHA256,
            _ => UNSIGNED_PAYLOAD,
        };
        let sign = || {
            let mut h: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect();
            h.push(("host".into(), host.clone()));
            if let Some(s) = &self.signer {
                s.sign(
                    method,
                    &path,
                    query,
                    &mut h,
                    payload_hash,
                    SystemTime::now(),
                );
            }
            h
        };
        self.http.send(method, &url, &sign, payload)
    }

    /// The object's size, mtime, ETag and stored headers.
    pub fn head(&self, bucket: &str, key: &str) -> Result<Head> {
        let a = self.request("HEAD", bucket, key, "", &checksum_mode(), Payload::Empty)?;
        let a = expect_ok(a, Some(ErrorKind::NotFound))?;
        head_of(&a)
    }

    /// The size of part `number` of the multipart object, only if its ETag is still
    /// `if_match`.
    pub fn part_size(&self, bucket: &str, key: &str, number: usize, if_match: &str) -> Result<u64> {
        let mut headers = vec![("if-match".to_string(), if_match.to_string())];
        headers.extend(checksum_mode());
        let q = format!("partNumber={number}");
        let a = self.request("HEAD", bucket, key, &q, &headers, Payload::Empty)?;
        Ok(head_of(&expect_ok(a, Some(ErrorKind::NotFound))?)?.size)
    }

    /// The object's bytes from `range` (`first`, `last` inclusive) or whole, only if its
    /// ETag is still `if_match`. The answer's body streams.
    pub fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<Answer> {
        let mut headers = checksum_mode();
        if let Some((first, last)) = range {
            headers.push(("range".to_string(), format!("bytes={first}-{last}")));
        }
        if let Some(etag) = if_match {
            headers.push(("if-match".to_string(), etag.to_string()));
        }
        let a = self.request("GET", bucket, key, "", &headers, Payload::Empty)?;
        expect_ok(a, Some(ErrorKind::NotFound))
    }

    /// Stores `len` bytes of `body` with `headers` (Content-Type, `x-amz-meta-*`, checksums).
    /// Returns the upstream's ETag.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        headers: &[(String, String)],
        body: Payload<'_>,
    ) -> Result<Option<String>> {
        let a = self.request("PUT", bucket, key, "", headers, body)?;
        let a = expect_ok(a, None)?;
        Ok(a.header("etag").map(str::to_string))
    }

    /// Deletes an object; a missing one is fine.
    pub fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let a = self.request("DELETE", bucket, key, "", &[], Payload::Empty)?;
        expect_ok(a, None).map(drop)
    }

    /// Makes a bucket, with a canned ACL and in a region (LocationConstraint) if given.
    pub fn create_bucket(
        &self,
        bucket: &str,
        acl: Option<&str>,
        location: Option<&str>,
    ) -> Result<()> {
        let headers: Vec<(String, String)> = acl
            .map(|a| ("x-amz-acl".to_string(), a.to_string()))
            .into_iter()
            .collect();
        let doc = location.map(|l| {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{l}</LocationConstraint></CreateBucketConfiguration>"
            )
        });
        let body = match &doc {
            Some(d) => Payload::Bytes(d.as_bytes()),
            None => Payload::Empty,
        };
        let a = self.request("PUT", bucket, "", "", &headers, body)?;
        expect_ok(a, None).map(drop)
    }

    pub fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let a = self.request("DELETE", bucket, "", "", &[], Payload::Empty)?;
        expect_ok(a, None).map(drop)
    }

    /// The buckets, with their creation times.
    pub fn list_buckets(&self) -> Result<Vec<(String, SystemTime)>> {
        let a = self.request("GET", "", "", "", &[], Payload::Empty)?;
        let doc = expect_ok(a, None)?.text(MAX_DOC)?;
        let leaves = crate::xml::leaves(&doc).map_err(bad_answer)?;
        let mut out = Vec::new();
        let mut name = None;
        for leaf in leaves {
            match leaf.path.last().map(String::as_str) {
                Some("Name") => name = Some(leaf.text),
                Some("CreationDate") => {
                    if let Some(n) = name.take() {
                        let t = util::parse_iso8601(&leaf.text).unwrap_or(SystemTime::UNIX_EPOCH);
                        out.push((n, t));
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// One page of ListObjectsV2 under `prefix`, rolled up at `delimiter` if given, from
    /// `token` (a continuation token from the page before).
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<&str>,
        max: usize,
    ) -> Result<Page> {
        let mut q = vec![
            ("list-type", "2".to_string()),
            ("max-keys", max.to_string()),
        ];
        q.push(("prefix", prefix.to_string()));
        if let Some(d) = delimiter {
            q.push(("delimiter", d.to_string()));
        }
        if let Some(t) = token {
            q.push(("continuation-token", t.to_string()));
        }
        q.sort();
        let query = q
            .iter()
            .map(|(n, v)| format!("{n}={}", util::uri_encode(v, false)))
            .collect::<Vec<_>>()
            .join("&");
        let a = self.request("GET", bucket, "", &query, &[], Payload::Empty)?;
        let doc = expect_ok(a, None)?.text(MAX_DOC)?;
        parse_page(&doc)
    }
}

fn parse_page(doc: &[u8]) -> Result<Page> {
    let leaves = crate::xml::leaves(doc).map_err(bad_answer)?;
    let mut page = Page::default();
    let mut truncated = false;
    let mut current: Option<Listed> = None;
    for leaf in leaves {
        let parent = leaf
            .path
            .len()
            .checked_sub(2)
            .map(|i| leaf.path[i].as_str());
        let name = leaf.path.last().map(String::as_str).unwrap_or("");
        match (parent, name) {
            (Some("Contents"), "Key") => {
                current = Some(Listed {
                    key: leaf.text,
                    size: 0,
                    mtime: SystemTime::UNIX_EPOCH,
                    etag: None,
                })
            }
            (Some("Contents"), "Size") => {
                if let Some(c) = &mut current {
                    c.size = leaf.text.parse().map_err(|_| bad_answer("a Size"))?;
                }
            }
            (Some("Contents"), "LastModified") => {
                if let Some(c) = &mut current {
                    c.mtime = util::parse_iso8601(&leaf.text).unwrap_or(SystemTime::UNIX_EPOCH);
                }
            }
            (Some("Contents"), "ETag") => {
                if let Some(c) = &mut current {
                    c.etag = Some(leaf.text);
                }
            }
            (_, "Contents") => page.objects.extend(current.take()),
            (Some("CommonPrefixes"), "Prefix") => page.prefixes.push(leaf.text),
            (Some("ListBucketResult"), "IsTruncated") => truncated = leaf.text == "true",
            (Some("ListBucketResult"), "NextContinuationToken") => page.next = Some(leaf.text),
            _ => {}
        }
    }
    if !truncated {
        page.next = None;
    } else if page.next.is_none() {
        return Err(bad_answer(
            "a truncated listing without NextContinuationToken",
        ));
    }
    Ok(page)
}

/// The answer if it is a success; otherwise the backend error it stands for. `missing` is
/// what a 404 without an error document (a HEAD) means.
pub(super) fn expect_ok(a: Answer, missing: Option<ErrorKind>) -> Result<Answer> {
    if (200..300).contains(&a.status) {
        return Ok(a);
    }
    let status = a.status;
    let code = if status >= 500 {
        String::new()
    } else {
        let doc = a.text(MAX_DOC).unwrap_or_default();
        crate::xml::leaves(&doc)
            .ok()
            .and_then(|l| error_code(&l).map(str::to_string))
            .unwrap_or_default()
    };
    Err(BackendError::new(
        error_kind(status, &code, missing),
        format!("the upstream answered {status} {code}"),
    ))
}

/// The `Code` of an S3 error document, as its leaves.
pub(super) fn error_code(leaves: &[crate::xml::Leaf]) -> Option<&str> {
    leaves
        .iter()
        .find(|l| l.path.last().is_some_and(|n| n == "Code"))
        .map(|l| l.text.as_str())
}

/// The backend error an upstream's status and error code stand for.
pub(super) fn error_kind(status: u16, code: &str, missing: Option<ErrorKind>) -> ErrorKind {
    match (status, code) {
        (_, "NoSuchKey") => ErrorKind::NotFound,
        (_, "NoSuchBucket") => ErrorKind::NoSuchBucket,
        (_, "NoSuchUpload") => ErrorKind::NoSuchUpload,
        (_, "BucketNotEmpty") => ErrorKind::BucketNotEmpty,
        (_, "BucketAlreadyOwnedByYou" | "BucketAlreadyExists") => ErrorKind::BucketExists,
        (_, "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall") => ErrorKind::InvalidPart,
        (404, "") if missing.is_some() => missing.unwrap_or(ErrorKind::NotFound),
        (403, _) => ErrorKind::ReadOnly,
        (409 | 412, _) => ErrorKind::Conflict,
        (500.., _) => ErrorKind::Unavailable,
        _ => ErrorKind::Io,
    }
}

fn head_of(a: &Answer) -> Result<Head> {
    let size = a
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad_answer("an answer without Content-Length"))?;
    let mtime = a
        .header("last-modified")
        .and_then(util::parse_http_date)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let headers = a
        .headers()
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .filter(|(n, _)| {
            n.starts_with("x-amz-meta-")
                || n.starts_with("x-amz-checksum-") && n != "x-amz-checksum-mode"
                || matches!(
                    n.as_str(),
                    "content-type"
                        | "content-encoding"
                        | "content-disposition"
                        | "content-language"
                        | "cache-control"
                        | "expires"
                )
        })
        .collect();
    Ok(Head {
        size,
        mtime,
        etag: a.header("etag").map(str::to_string),
        headers,
    })
}

/// Asks for the object's stored checksum along with it.
fn checksum_mode() -> Vec<(String, String)> {
    vec![("x-amz-checksum-mode".into(), "ENABLED".into())]
}

pub(super) fn bad_answer(what: impl std::fmt::Display) -> BackendError {
    BackendError::new(
        ErrorKind::Unavailable,
        format!("the upstream's answer could not be read: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("http://127.0.0.1:9000/", true).unwrap();
        assert_eq!(
            (e.scheme.as_str(), e.host.as_str()),
            ("http", "127.0.0.1:9000")
        );
        assert_eq!(
            Endpoint::parse("s3.example.com", false).unwrap().scheme,
            "https"
        );
        assert!(Endpoint::parse("ftp://x", true).is_err());
        assert!(Endpoint::parse("http://x/path", true).is_err());
    }

    #[test]
    fn listing_pages_parse() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>a&amp;b</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified><ETag>"e1"</ETag><Size>5</Size></Contents>
<CommonPrefixes><Prefix>dir/</Prefix></CommonPrefixes>
<NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"#;
        let page = parse_page(doc).unwrap();
        assert_eq!(page.objects.len(), 1);
        assert_eq!(page.objects[0].key, "a&b");
        assert_eq!(page.objects[0].size, 5);
        assert_eq!(page.objects[0].etag.as_deref(), Some("\"e1\""));
        assert_eq!(page.prefixes, vec!["dir/".to_string()]);
        assert_eq!(page.next.as_deref(), Some("tok"));
    }
}
