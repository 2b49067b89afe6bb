//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListParts and ListMultipartUploads. Parts
//! stream to files on disk and are joined in the kernel at completion; no part is held in
//! memory. A failed Complete keeps the upload; a retried Complete of a finished upload gets
//! the same answer. <https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html>

use std::io::{Read, Seek, SeekFrom};

use md5::{Digest, Md5};

use crate::backend::{key, PartInfo, UploadInfo};
use crate::ops::copy::parse_copy_source;
use crate::ops::headers::{self, quote, Precondition, COPY_SOURCE_CONDS};
use crate::ops::put::{self, receive, MAX_PUT_SIZE};
use crate::ops::xml::{self, XmlWriter};
use crate::ops::{Body, Code, Ctx, OpResult, Request, Response, S3Error};
use crate::util;
use crate::vfs::WriteCheck;

/// S3's part-number range.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Every part but the last must be at least this large.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// ListParts and ListMultipartUploads pages.
pub const MAX_PAGE: usize = 1000;

fn uploads<'a>(ctx: &Ctx<'a>) -> Result<&'a dyn crate::backend::Uploads, S3Error> {
    Ok(ctx.vfs.uploads()?)
}

/// The upload named by `?uploadId=`, which must belong to this bucket and key.
fn upload(ctx: &Ctx, rq: &Request) -> Result<UploadInfo, S3Error> {
    let id = rq.query.get("uploadId").unwrap_or_default();
    let info = uploads(ctx)?
        .info(id)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    if info.bucket != rq.bucket || info.key != rq.key {
        return Err(
            S3Error::new(Code::NoSuchUpload, "The specified upload does not exist.")
                .with_resource(rq.resource()),
        );
    }
    Ok(info)
}

fn part_number(rq: &Request) -> Result<u32, S3Error> {
    let bad = || {
        S3Error::new(
            Code::InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive",
        )
        .with("ArgumentName", "partNumber")
    };
    let n: u32 = rq
        .query
        .get("partNumber")
        .and_then(|v| v.parse().ok())
        .ok_or_else(bad)?;
    if !(1..=MAX_PART_NUMBER).contains(&n) {
        return Err(bad());
    }
    Ok(n)
}

pub fn create_multipart_upload(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    rq.check_key()?;
    let meta = headers::meta_from_request(rq.headers)?;
    ctx.vfs
        .require_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    let store = uploads(ctx)?;
    if ctx.opts.max_uploads > 0 && store.count() >= ctx.opts.max_uploads {
        return Err(S3Error::new(Code::SlowDown, "Too many multipart uploads are in progress (--multipart-max-uploads); complete or abort some first."));
    }
    let id = store.create(&rq.bucket, &rq.key, &meta)?;
    let mut w = XmlWriter::new();
    w.root("InitiateMultipartUploadResult");
    w.elem("Bucket", &rq.bucket);
    w.elem("Key", &rq.key);
    w.elem("UploadId", &id);
    w.close("InitiateMultipartUploadResult");
    Ok(Response::xml(200, w.finish()))
}

pub fn upload_part(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    rq.check_key()?;
    let number = part_number(rq)?;
    let info = upload(ctx, rq)?;
    let mut writer = uploads(ctx)?.part_writer(&info.id, number)?;
    let digests = receive(ctx, rq, &mut writer, MAX_PUT_SIZE, true)?;
    let md5 = util::hex(&digests.md5.unwrap_or_default());
    writer.commit(&md5)?;
    Ok(Response::empty(200).header("ETag", quote(&md5)))
}

/// Parses `x-amz-copy-source-range: bytes=first-last` against a source of `size` bytes.
fn copy_range(rq: &Request, size: u64) -> Result<(u64, u64), S3Error> {
    let Some(v) = rq.headers.get("x-amz-copy-source-range") else {
        return Ok((0, size));
    };
    let bad = || {
        S3Error::new(Code::InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy").with("ArgumentName", "x-amz-copy-source-range")
    };
    let (a, b) = v
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let digits = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (first, last) = (digits(a).ok_or_else(bad)?, digits(b).ok_or_else(bad)?);
    if last < first {
        return Err(bad());
    }
    if last >= size {
        return Err(S3Error::new(
            Code::InvalidRange,
            "Range specified is not valid for source object of size",
        )
        .with("ActualObjectSize", size.to_string()));
    }
    Ok((first, last - first + 1))
}

pub fn upload_part_copy(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    rq.check_key()?;
    let number = part_number(rq)?;
    let info = upload(ctx, rq)?;
    let (sb, sk) = parse_copy_source(rq.headers.get("x-amz-copy-source").unwrap_or_default())?;
    let src_resource = format!("/{sb}/{sk}");
    key::check_bucket(&sb)
        .and_then(|_| key::check(&sk))
        .map_err(|e| S3Error::from(e).with_resource(src_resource.clone()))?;
    let mut src = ctx
        .vfs
        .open(&sb, &sk)
        .map_err(|e| S3Error::from(e).with_resource(src_resource.clone()))?;
    if headers::evaluate(rq.headers, &COPY_SOURCE_CONDS, &src.info) != Precondition::Proceed {
        return Err(S3Error::new(
            Code::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold",
        )
        .with_resource(src_resource));
    }
    let (offset, len) = copy_range(rq, src.info.size)?;
    src.body
        .seek(SeekFrom::Start(offset))
        .map_err(|e| S3Error::from(crate::backend::BackendError::from(e)))?;
    let mut writer = uploads(ctx)?.part_writer(&info.id, number)?;
    let hashes = crate::vfs::Hashes::new(true, false, false);
    let digests = put::stream_body(&mut src.body.take(len), &mut writer, hashes, MAX_PUT_SIZE)?;
    if digests.len != len {
        return Err(S3Error::new(
            Code::InternalError,
            "The source object changed while it was copied.",
        ));
    }
    let md5 = util::hex(&digests.md5.unwrap_or_default());
    writer.commit(&md5)?;
    let mut w = XmlWriter::new();
    w.root("CopyPartResult");
    w.elem("LastModified", &util::iso8601(ctx.now));
    w.elem("ETag", &quote(&md5));
    w.close("CopyPartResult");
    Ok(Response::xml(200, w.finish()))
}

/// The parts a Complete request names, in the order given.
fn parse_complete(body: &[u8]) -> Result<Vec<(u32, String)>, S3Error> {
    let leaves = xml::parse_elements(body)?;
    let mut parts: Vec<(Option<u32>, String)> = Vec::new();
    for leaf in leaves {
        let path: Vec<&str> = leaf.path.iter().map(String::as_str).collect();
        match path[..] {
            ["CompleteMultipartUpload", "Part", "PartNumber"]
            | ["CompleteMultipartUpload", "Part", "ETag"] => {
                if parts
                    .last()
                    .is_none_or(|p| p.0.is_some() && !p.1.is_empty())
                {
                    parts.push((None, String::new()));
                }
                let last = parts.last_mut().expect("pushed above");
                if path[2] == "PartNumber" {
                    last.0 = Some(
                        leaf.text
                            .trim()
                            .parse()
                            .map_err(|_| xml::malformed("PartNumber must be a number"))?,
                    );
                } else {
                    last.1 = leaf.text.trim().trim_matches('"').to_ascii_lowercase();
                }
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(xml::malformed("You must specify at least one part"));
    }
    parts
        .into_iter()
        .map(|(n, e)| {
            Ok((
                n.ok_or_else(|| xml::malformed("a Part has no PartNumber"))?,
                e,
            ))
        })
        .collect()
}

/// Matches the requested parts against the stored ones: order, ETags and sizes.
fn check_parts(wanted: &[(u32, String)], stored: &[PartInfo]) -> Result<Vec<PartInfo>, S3Error> {
    let mut out = Vec::with_capacity(wanted.len());
    for (i, (number, etag)) in wanted.iter().enumerate() {
        if i > 0 && *number <= wanted[i - 1].0 {
            return Err(S3Error::new(Code::InvalidPartOrder, "The list of parts was not in ascending order. The parts list must be specified in order by part number."));
        }
        let part = stored.iter().find(|p| p.number == *number && p.etag == *etag).ok_or_else(|| {
            S3Error::new(Code::InvalidPart, "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.")
                .with("PartNumber", number.to_string())
                .with("ETag", etag.as_str())
        })?;
        out.push(part.clone());
    }
    if let Some(small) = out[..out.len() - 1].iter().find(|p| p.size < MIN_PART_SIZE) {
        return Err(S3Error::new(
            Code::EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size.",
        )
        .with("PartNumber", small.number.to_string())
        .with("ProposedSize", small.size.to_string())
        .with("MinSizeAllowed", MIN_PART_SIZE.to_string()));
    }
    Ok(out)
}

/// `md5(concatenated binary part MD5s)-N`.
pub fn multipart_etag(parts: &[PartInfo]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(util::unhex(&p.etag).unwrap_or_default());
    }
    format!("{}-{}", util::hex(&h.finalize()), parts.len())
}

fn complete_doc(rq: &Request, etag: &str) -> XmlWriter {
    let mut w = XmlWriter::new();
    w.root("CompleteMultipartUploadResult");
    w.elem("Location", &format!("/{}/{}", rq.bucket, rq.key));
    w.elem("Bucket", &rq.bucket);
    w.elem("Key", &rq.key);
    w.elem("ETag", &quote(etag));
    w.close("CompleteMultipartUploadResult");
    w
}

pub fn complete_multipart_upload(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    rq.check_key()?;
    let info = upload(ctx, rq)?;
    let body = rq.read_xml()?;
    let wanted = parse_complete(&body)?;
    if let Some(etag) = &info.done_etag {
        return retried_complete(ctx, rq, etag);
    }
    let condition = headers::write_condition(rq.headers)?;
    let parts = check_parts(&wanted, &uploads(ctx)?.parts(&info.id)?)?;
    let etag = multipart_etag(&parts);
    let mut meta = info.meta.clone();
    meta.etag = Some(etag.clone());
    meta.etag_alg = "MULTIPART".into();
    meta.parts = parts.iter().map(|p| p.size).collect();
    let mtime = if ctx.opts.no_modtime {
        None
    } else {
        headers::mtime_from_meta(&meta)
    };
    let job = Assembly {
        id: info.id,
        bucket: rq.bucket.clone(),
        key: rq.key.clone(),
        parts,
        meta,
        mtime,
        condition,
    };
    let total: u64 = job.parts.iter().map(|p| p.size).sum();
    if total < KEEPALIVE_ABOVE {
        job.run(ctx.vfs)?;
        return Ok(Response::xml(200, complete_doc(rq, &etag).finish()));
    }
    // A long join: answer 200 now and keep the connection alive until the result is known.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let vfs = ctx.vfs.clone();
    let doc = complete_doc(rq, &etag).finish_body();
    std::thread::Builder::new()
        .name("s3serve:complete".into())
        .spawn(move || {
            let _ = tx.send(job.run(&vfs).map(|_| doc));
        })
        .map_err(|e| S3Error::new(Code::InternalError, format!("starting the assembly: {e}")))?;
    Ok(Response::empty(200)
        .header("Content-Type", "application/xml")
        .with_body(Body::Pending(rx)))
}

/// Uploads at least this large are completed behind keep-alive whitespace (S3's convention
/// for long requests), so client read timeouts do not fire while the parts are joined.
pub const KEEPALIVE_ABOVE: u64 = 64 * 1024 * 1024;

/// Everything needed to join an upload's parts into its object, owned so it can run on
/// another thread.
struct Assembly {
    id: String,
    bucket: String,
    key: String,
    parts: Vec<PartInfo>,
    meta: crate::backend::ObjectMeta,
    mtime: Option<std::time::SystemTime>,
    condition: Option<headers::WriteCondition>,
}

impl Assembly {
    fn run(self, vfs: &crate::vfs::Vfs) -> Result<(), S3Error> {
        let resource = format!("/{}/{}", self.bucket, self.key);
        let store = vfs.uploads()?;
        let mut writer = vfs
            .create(&self.bucket, &self.key)
            .map_err(|e| S3Error::from(e).with_resource(resource.clone()))?;
        store.assemble(&self.id, &self.parts, writer.as_mut())?;
        let check = self
            .condition
            .as_ref()
            .map(|c| c as &dyn WriteCheck<S3Error>);
        vfs.commit(
            &self.bucket,
            &self.key,
            writer,
            &self.meta,
            self.mtime,
            check,
        )
        .map_err(|e: S3Error| e.with_resource(resource))?;
        store.mark_done(&self.id, self.meta.etag.as_deref().unwrap_or_default())?;
        Ok(())
    }
}

/// A Complete for an upload that already completed: the same answer while the object it made
/// is still there.
fn retried_complete(ctx: &Ctx, rq: &Request, etag: &str) -> OpResult {
    let current = ctx.vfs.stat(&rq.bucket, &rq.key).ok();
    if current.and_then(|i| i.meta).and_then(|m| m.etag).as_deref() == Some(etag) {
        return Ok(Response::xml(200, complete_doc(rq, etag).finish()));
    }
    Err(
        S3Error::new(Code::NoSuchUpload, "The specified upload does not exist.")
            .with_resource(rq.resource()),
    )
}

pub fn abort_multipart_upload(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    let info = upload(ctx, rq)?;
    if info.done_etag.is_some() {
        return Err(
            S3Error::new(Code::NoSuchUpload, "The specified upload does not exist.")
                .with_resource(rq.resource()),
        );
    }
    uploads(ctx)?.abort(&info.id)?;
    Ok(Response::empty(204))
}

fn page_size(rq: &Request, name: &'static str) -> Result<usize, S3Error> {
    match rq.query.get(name) {
        None => Ok(MAX_PAGE),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| (n as usize).min(MAX_PAGE))
            .ok_or_else(|| {
                S3Error::new(
                    Code::InvalidArgument,
                    format!("Provided {name} is not a non-negative integer"),
                )
                .with("ArgumentName", name)
            }),
    }
}

pub fn list_parts(ctx: &Ctx, rq: &mut Request) -> OpResult {
    let info = upload(ctx, rq)?;
    if info.done_etag.is_some() {
        return Err(
            S3Error::new(Code::NoSuchUpload, "The specified upload does not exist.")
                .with_resource(rq.resource()),
        );
    }
    let max = page_size(rq, "max-parts")?;
    let marker: u32 = rq
        .query
        .get("part-number-marker")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let parts = uploads(ctx)?.parts(&info.id)?;
    let after: Vec<&PartInfo> = parts.iter().filter(|p| p.number > marker).collect();
    let page = &after[..after.len().min(max)];
    let truncated = after.len() > page.len();
    let mut w = XmlWriter::new();
    w.root("ListPartsResult");
    w.elem("Bucket", &rq.bucket);
    w.elem("Key", &rq.key);
    w.elem("UploadId", &info.id);
    crate::ops::bucket::owner_as(&mut w, "Initiator", &ctx.opts.owner);
    crate::ops::bucket::owner(&mut w, &ctx.opts.owner);
    w.elem("StorageClass", "STANDARD");
    w.elem("PartNumberMarker", &marker.to_string());
    w.elem(
        "NextPartNumberMarker",
        &page.last().map_or(marker, |p| p.number).to_string(),
    );
    w.elem("MaxParts", &max.to_string());
    w.elem("IsTruncated", if truncated { "true" } else { "false" });
    for p in page {
        w.open("Part");
        w.elem("PartNumber", &p.number.to_string());
        w.elem("LastModified", &util::iso8601(p.mtime));
        w.elem("ETag", &quote(&p.etag));
        w.elem("Size", &p.size.to_string());
        w.close("Part");
    }
    w.close("ListPartsResult");
    Ok(Response::xml(200, w.finish()))
}

pub fn list_multipart_uploads(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.vfs
        .require_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    let max = page_size(rq, "max-uploads")?;
    let prefix = rq.query.get("prefix").unwrap_or("");
    let delimiter = rq.query.get("delimiter").filter(|d| !d.is_empty());
    let key_marker = rq.query.get("key-marker").unwrap_or("");
    let id_marker = rq.query.get("upload-id-marker").unwrap_or("");
    let url = rq.query.get("encoding-type") == Some("url");
    let enc = |s: &str| {
        if url {
            util::uri_encode(s, true)
        } else {
            s.to_string()
        }
    };
    let mut all = uploads(ctx)?.list(&rq.bucket)?;
    all.sort_by(|a, b| {
        (a.key.as_str(), a.initiated, a.id.as_str()).cmp(&(
            b.key.as_str(),
            b.initiated,
            b.id.as_str(),
        ))
    });
    let mut entries: Vec<Result<&UploadInfo, String>> = Vec::new();
    for u in all.iter().filter(|u| u.key.starts_with(prefix)) {
        let after_marker = u.key.as_str() > key_marker
            || (u.key == key_marker && !id_marker.is_empty() && u.id.as_str() > id_marker);
        if !key_marker.is_empty() && !after_marker {
            continue;
        }
        match delimiter.and_then(|d| {
            u.key[prefix.len()..]
                .find(d)
                .map(|i| u.key[..prefix.len() + i + d.len()].to_string())
        }) {
            Some(cp)
                if entries
                    .last()
                    .is_some_and(|e| e.as_ref().err() == Some(&cp)) => {}
            Some(cp) => entries.push(Err(cp)),
            None => entries.push(Ok(u)),
        }
    }
    let truncated = entries.len() > max;
    entries.truncate(max);
    let mut w = XmlWriter::new();
    w.root("ListMultipartUploadsResult");
    w.elem("Bucket", &rq.bucket);
    w.elem("KeyMarker", &enc(key_marker));
    w.elem("UploadIdMarker", id_marker);
    if truncated {
        let (k, id) = match entries.last() {
            Some(Ok(u)) => (u.key.clone(), u.id.clone()),
            Some(Err(cp)) => (cp.clone(), String::new()),
            None => (String::new(), String::new()),
        };
        w.elem("NextKeyMarker", &enc(&k));
        w.elem("NextUploadIdMarker", &id);
    }
    w.elem("MaxUploads", &max.to_string());
    if let Some(d) = delimiter {
        w.elem("Delimiter", &enc(d));
    }
    w.elem("Prefix", &enc(prefix));
    if url {
        w.elem("EncodingType", "url");
    }
    w.elem("IsTruncated", if truncated { "true" } else { "false" });
    for e in &entries {
        match e {
            Ok(u) => {
                w.open("Upload");
                w.elem("Key", &enc(&u.key));
                w.elem("UploadId", &u.id);
                crate::ops::bucket::owner_as(&mut w, "Initiator", &ctx.opts.owner);
                crate::ops::bucket::owner(&mut w, &ctx.opts.owner);
                w.elem("StorageClass", "STANDARD");
                w.elem("Initiated", &util::iso8601(u.initiated));
                w.close("Upload");
            }
            Err(cp) => {
                w.open("CommonPrefixes");
                w.elem("Prefix", &enc(cp));
                w.close("CommonPrefixes");
            }
        }
    }
    w.close("ListMultipartUploadsResult");
    Ok(Response::xml(200, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn part(number: u32, etag: &str, size: u64) -> PartInfo {
        PartInfo {
            number,
            etag: etag.into(),
            size,
            mtime: UNIX_EPOCH,
        }
    }

    #[test]
    fn parses_complete_documents() {
        let doc = b"<CompleteMultipartUpload xmlns=\"x\"><Part><ETag>\"AB\"</ETag><PartNumber>1</PartNumber><ChecksumCRC32>x</ChecksumCRC32></Part><Part><PartNumber>3</PartNumber><ETag>cd</ETag></Part></CompleteMultipartUpload>";
        assert_eq!(
            parse_complete(doc).unwrap(),
            vec![(1, "ab".to_string()), (3, "cd".to_string())]
        );
        assert!(parse_complete(b"<CompleteMultipartUpload></CompleteMultipartUpload>").is_err());
        assert!(parse_complete(b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part></CompleteMultipartUpload>").is_err());
    }

    #[test]
    fn checks_order_etags_and_sizes() {
        let big = MIN_PART_SIZE;
        let stored = vec![part(1, "aa", big), part(2, "bb", 10), part(3, "cc", 10)];
        let w = |v: &[(u32, &str)]| {
            v.iter()
                .map(|(n, e)| (*n, e.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            check_parts(&w(&[(1, "aa"), (3, "cc")]), &stored)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            check_parts(&w(&[(2, "bb"), (1, "aa")]), &stored)
                .unwrap_err()
                .code,
            Code::InvalidPartOrder
        );
        assert_eq!(
            check_parts(&w(&[(1, "zz")]), &stored).unwrap_err().code,
            Code::InvalidPart
        );
        assert_eq!(
            check_parts(&w(&[(4, "dd")]), &stored).unwrap_err().code,
            Code::InvalidPart
        );
        assert_eq!(
            check_parts(&w(&[(2, "bb"), (3, "cc")]), &stored)
                .unwrap_err()
                .code,
            Code::EntityTooSmall
        );
    }

    #[test]
    fn etag_of_parts() {
        // Two parts whose MD5s are those of "a" and "b".
        let parts = [
            part(1, "0cc175b9c0f1b6a831c399e269772661", 1),
            part(2, "92eb5ffee6ae2fec3ad71c777531578f", 1),
        ];
        let mut h = Md5::new();
        h.update(util::unhex(&parts[0].etag).unwrap());
        h.update(util::unhex(&parts[1].etag).unwrap());
        assert_eq!(
            multipart_etag(&parts),
            format!("{}-2", util::hex(&h.finalize()))
        );
    }
}
