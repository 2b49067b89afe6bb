//! The upstream's multipart calls: create, upload a part, list parts and uploads, complete
//! and abort. A Complete that the upstream answers 200 with an error document inside (S3
//! does so for long joins) is reported as the error it carries.

use std::time::SystemTime;

use super::client::{bad_answer, error_code, error_kind, expect_ok, Client, MAX_DOC};
use super::http::Payload;
use crate::backend::{BackendError, Result};
use crate::util;

/// Pages asked for when listing parts and uploads.
const PAGE: usize = 1000;

/// One part as the upstream lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamPart {
    pub number: u32,
    /// As the upstream gives it, quotes and all.
    pub etag: String,
    pub size: u64,
    pub mtime: SystemTime,
    /// Algorithm name (`CRC32`, …) and base64 value, where the upstream keeps one.
    pub checksum: Option<(String, String)>,
}

/// An upload in progress as the upstream lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamUpload {
    pub key: String,
    pub id: String,
    pub initiated: SystemTime,
}

/// What a new upload answered: its id and whether the upstream took the checksum
/// algorithm asked for (it names it back).
pub struct Created {
    pub id: String,
    pub checksums: bool,
}

fn query(pairs: &mut [(&str, String)]) -> String {
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| match v.is_empty() {
            true => n.to_string(),
            false => format!("{n}={}", util::uri_encode(v, false)),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Client {
    /// Starts an upload of `bucket`/`key` with `headers` (Content-Type, `x-amz-meta-*`,
    /// `x-amz-checksum-algorithm`).
    pub fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        headers: &[(String, String)],
    ) -> Result<Created> {
        let a = self.request("POST", bucket, key, "uploads", headers, Payload::Empty)?;
        let checksums = a.header("x-amz-checksum-algorithm").is_some();
        let doc = expect_ok(a, None)?.text(MAX_DOC)?;
        let leaves = crate::xml::leaves(&doc).map_err(bad_answer)?;
        let id = leaves
            .into_iter()
            .find(|l| l.path.last().is_some_and(|n| n == "UploadId"))
            .map(|l| l.text)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| bad_answer("an upload without an UploadId"))?;
        Ok(Created { id, checksums })
    }

    /// Sends part `number` of upload `id`; returns the ETag the upstream gave it.
    #[allow(clippy::too_many_arguments)]
    pub fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        number: u32,
        headers: &[(String, String)],
        body: Payload<'_>,
    ) -> Result<Option<String>> {
        let q = query(&mut [
            ("partNumber", number.to_string()),
            ("uploadId", id.to_string()),
        ]);
        let a = self.request("PUT", bucket, key, &q, headers, body)?;
        let a = expect_ok(a, None)?;
        Ok(a.header("etag").map(str::to_string))
    }

    /// Every part of upload `id`, by part number.
    pub fn list_parts(&self, bucket: &str, key: &str, id: &str) -> Result<Vec<UpstreamPart>> {
        let mut parts = Vec::new();
        let mut marker = String::new();
        loop {
            let mut q = vec![
                ("max-parts", PAGE.to_string()),
                ("uploadId", id.to_string()),
            ];
            if !marker.is_empty() {
                q.push(("part-number-marker", marker.clone()));
            }
            let a = self.request("GET", bucket, key, &query(&mut q), &[], Payload::Empty)?;
            let doc = expect_ok(a, None)?.text(MAX_DOC)?;
            let (page, next) = parse_parts(&doc)?;
            let progressed = !page.is_empty();
            parts.extend(page);
            match next {
                Some(n) if progressed && n != marker => marker = n,
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        parts.dedup_by_key(|p| p.number);
        Ok(parts)
    }

    /// Uploads in progress in `bucket` under `prefix`.
    pub fn list_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<UpstreamUpload>> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut q = vec![
                ("uploads", String::new()),
                ("max-uploads", PAGE.to_string()),
                ("prefix", prefix.to_string()),
            ];
            if let Some((k, u)) = &markers {
                q.push(("key-marker", k.clone()));
                q.push(("upload-id-marker", u.clone()));
            }
            let a = self.request("GET", bucket, "", &query(&mut q), &[], Payload::Empty)?;
            let doc = match expect_ok(a, None) {
                // rclone serve s3 says so when a bucket has no uploads.
                Err(e) if e.kind == crate::backend::ErrorKind::NoSuchUpload => return Ok(out),
                r => r?.text(MAX_DOC)?,
            };
            let (page, next) = parse_uploads(&doc)?;
            let progressed = !page.is_empty();
            out.extend(page);
            match next {
                Some(n) if progressed && Some(&n) != markers.as_ref() => markers = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// Joins `parts` into the object; the upstream checks them.
    pub fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        parts: &[UpstreamPart],
    ) -> Result<()> {
        let mut doc = String::from("<CompleteMultipartUpload>");
        for p in parts {
            doc.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag>",
                p.number,
                escape(&p.etag)
            ));
            if let Some((alg, value)) = &p.checksum {
                doc.push_str(&format!("<Checksum{alg}>{}</Checksum{alg}>", escape(value)));
            }
            doc.push_str("</Part>");
        }
        doc.push_str("</CompleteMultipartUpload>");
        let q = query(&mut [("uploadId", id.to_string())]);
        let headers = [("content-type".to_string(), "application/xml".to_string())];
        let a = self.request(
            "POST",
            bucket,
            key,
            &q,
            &headers,
            Payload::Bytes(doc.as_bytes()),
        )?;
        let answer = expect_ok(a, None)?.text(MAX_DOC)?;
        let leaves = crate::xml::leaves(&answer).map_err(bad_answer)?;
        if leaves.first().is_some_and(|l| l.path[0] == "Error") {
            let code = error_code(&leaves).unwrap_or("InternalError");
            return Err(BackendError::new(
                error_kind(500, code, None),
                format!("the upstream's Complete failed: {code}"),
            ));
        }
        Ok(())
    }

    /// Abandons upload `id` and frees its parts.
    pub fn abort_upload(&self, bucket: &str, key: &str, id: &str) -> Result<()> {
        let q = query(&mut [("uploadId", id.to_string())]);
        let a = self.request("DELETE", bucket, key, &q, &[], Payload::Empty)?;
        expect_ok(a, None).map(drop)
    }
}

/// The element name under `Part`/`Upload` and its parent, for a leaf.
fn names(path: &[String]) -> (Option<&str>, &str) {
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    (parent, path.last().map(String::as_str).unwrap_or(""))
}

/// One ListParts page and the marker of the next, if truncated.
fn parse_parts(doc: &[u8]) -> Result<(Vec<UpstreamPart>, Option<String>)> {
    let leaves = crate::xml::leaves(doc).map_err(bad_answer)?;
    let mut out = Vec::new();
    let (mut truncated, mut next) = (false, None);
    let mut current: Option<UpstreamPart> = None;
    let bad = |what: &str| bad_answer(format!("a part's {what}"));
    for leaf in leaves {
        let (parent, name) = names(&leaf.path);
        match (parent, name) {
            (Some("Part"), "PartNumber") => {
                let number = leaf.text.parse().map_err(|_| bad("PartNumber"))?;
                current = Some(UpstreamPart {
                    number,
                    etag: String::new(),
                    size: 0,
                    mtime: SystemTime::UNIX_EPOCH,
                    checksum: None,
                });
            }
            (Some("Part"), field) => {
                let Some(p) = &mut current else { continue };
                match field {
                    "ETag" => p.etag = leaf.text,
                    "Size" => p.size = leaf.text.parse().map_err(|_| bad("Size"))?,
                    "LastModified" => {
                        p.mtime = util::parse_iso8601(&leaf.text).unwrap_or(p.mtime);
                    }
                    f => {
                        if let Some(alg) = f.strip_prefix("Checksum") {
                            if !alg.is_empty() && alg != "Type" && !leaf.text.is_empty() {
                                p.checksum = Some((alg.to_string(), leaf.text));
                            }
                        }
                    }
                }
            }
            (_, "Part") => out.extend(current.take()),
            (Some("ListPartsResult"), "IsTruncated") => truncated = leaf.text == "true",
            (Some("ListPartsResult"), "NextPartNumberMarker") => next = Some(leaf.text),
            _ => {}
        }
    }
    Ok((out, next.filter(|_| truncated)))
}

/// One ListMultipartUploads page and the markers of the next, if truncated.
#[allow(clippy::type_complexity)]
fn parse_uploads(doc: &[u8]) -> Result<(Vec<UpstreamUpload>, Option<(String, String)>)> {
    let leaves = crate::xml::leaves(doc).map_err(bad_answer)?;
    let mut out = Vec::new();
    let (mut truncated, mut next_key, mut next_id) = (false, None, None);
    let mut current: Option<UpstreamUpload> = None;
    for leaf in leaves {
        let (parent, name) = names(&leaf.path);
        let upload = current.get_or_insert_with(|| UpstreamUpload {
            key: String::new(),
            id: String::new(),
            initiated: SystemTime::UNIX_EPOCH,
        });
        match (parent, name) {
            (Some("Upload"), "Key") => upload.key = leaf.text,
            (Some("Upload"), "UploadId") => upload.id = leaf.text,
            (Some("Upload"), "Initiated") => {
                upload.initiated = util::parse_iso8601(&leaf.text).unwrap_or(upload.initiated)
            }
            (_, "Upload") => out.extend(current.take().filter(|u| !u.id.is_empty())),
            (Some(_), "IsTruncated") => truncated = leaf.text == "true",
            (Some(_), "NextKeyMarker") => next_key = Some(leaf.text),
            (Some(_), "NextUploadIdMarker") => next_id = Some(leaf.text),
            _ => {}
        }
    }
    let next = match (truncated, next_key) {
        (true, Some(k)) => Some((k, next_id.unwrap_or_default())),
        _ => None,
    };
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_pages_parse() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket>
<Key>k</Key><UploadId>u</UploadId><IsTruncated>true</IsTruncated>
<NextPartNumberMarker>2</NextPartNumberMarker>
<Part><PartNumber>1</PartNumber><LastModified>2026-01-02T03:04:05.000Z</LastModified>
<ETag>"aa"</ETag><Size>5242880</Size><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>
<Part><PartNumber>2</PartNumber><ETag>&quot;bb&quot;</ETag><Size>3</Size></Part>
</ListPartsResult>"#;
        let (parts, next) = parse_parts(doc).unwrap();
        assert_eq!(next.as_deref(), Some("2"));
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].etag, "\"aa\"");
        assert_eq!(parts[0].size, 5242880);
        assert_eq!(
            parts[0].checksum,
            Some(("CRC32".to_string(), "AAAAAA==".to_string()))
        );
        assert_eq!((parts[1].number, parts[1].etag.as_str()), (2, "\"bb\""));
        assert_eq!(parts[1].checksum, None);
    }

    #[test]
    fn upload_pages_parse() {
        let doc = br#"<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated>
<NextKeyMarker>x</NextKeyMarker>
<Upload><Key>dir/a</Key><UploadId>u1</UploadId><Initiated>2026-01-02T03:04:05.000Z</Initiated></Upload>
<Upload><Key>dir/b</Key><UploadId>u2</UploadId></Upload></ListMultipartUploadsResult>"#;
        let (uploads, next) = parse_uploads(doc).unwrap();
        assert_eq!(next, None);
        let ids: Vec<_> = uploads
            .iter()
            .map(|u| (u.key.as_str(), u.id.as_str()))
            .collect();
        assert_eq!(ids, vec![("dir/a", "u1"), ("dir/b", "u2")]);
    }
}
