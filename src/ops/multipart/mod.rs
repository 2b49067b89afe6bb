//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListParts and ListMultipartUploads. Parts
//! stream to files on disk and are joined in the kernel at completion; no part is held in
//! memory. A failed Complete keeps the upload; a retried Complete of a finished upload gets
//! the same answer. <https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html>

mod complete;
#[cfg(any(test, fuzzing))]
pub(crate) use complete::fuzz_parse_complete;
mod list;

pub use complete::{complete_multipart_upload, multipart_etag, KEEPALIVE_ABOVE};
pub use list::{list_multipart_uploads, list_parts};

use std::io::{Read, Seek, SeekFrom};

use crate::ops::checksum;
use crate::ops::copy::parse_copy_source;
use crate::ops::headers::{self, quote, Precondition, COPY_SOURCE_CONDS};
use crate::ops::put::{self, receive, Sink, MAX_PUT_SIZE};
use crate::ops::xml::XmlWriter;
use crate::ops::{Code, Ctx, OpResult, Request, Response, S3Error};
use crate::util;
use crate::vfs::checksum::ChecksumAlg;
use crate::vfs::{key, UploadInfo};

/// S3's part-number range.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Every part but the last must be at least this large.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// ListParts and ListMultipartUploads pages.
pub const MAX_PAGE: usize = 1000;

/// The upload named by `?uploadId=`, which must belong to this bucket and key.
fn upload(ctx: &Ctx, rq: &Request) -> Result<UploadInfo, S3Error> {
    let id = rq.query.get("uploadId").unwrap_or_default();
    let info = ctx
        .vfs
        .upload(id)
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
    if rq.is_folder_marker() {
        return Err(S3Error::new(
            Code::InvalidArgument,
            "A key ending in '/' is a folder marker: it is made by an empty PutObject, not by a multipart upload.",
        )
        .with_resource(rq.resource()));
    }
    let mut meta = headers::meta_from_request(rq.headers)?;
    let (alg, kind) = upload_checksum_request(rq)?;
    if let Some(alg) = alg {
        meta.checksums = vec![
            (ALGORITHM_KEY.into(), alg.name().into()),
            (checksum::TYPE_KEY.into(), kind.into()),
        ];
    }
    ctx.vfs
        .require_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    if ctx.opts.max_uploads > 0 && ctx.vfs.upload_count() >= ctx.opts.max_uploads {
        return Err(S3Error::new(Code::SlowDown, "Too many multipart uploads are in progress (--multipart-max-uploads); complete or abort some first."));
    }
    let id = ctx.vfs.create_upload(&rq.bucket, &rq.key, &meta)?;
    let mut w = XmlWriter::new();
    w.root("InitiateMultipartUploadResult");
    w.elem("Bucket", &rq.bucket);
    w.elem("Key", &rq.key);
    w.elem("UploadId", &id);
    w.close("InitiateMultipartUploadResult");
    let mut resp = Response::xml(200, w.finish());
    if let Some(alg) = alg {
        resp = resp
            .header("x-amz-checksum-algorithm", alg.name())
            .header("x-amz-checksum-type", kind);
    }
    Ok(resp)
}

use crate::vfs::CHECKSUM_ALGORITHM_KEY as ALGORITHM_KEY;

/// `x-amz-checksum-algorithm` and `x-amz-checksum-type` of CreateMultipartUpload. CRC64NVME
/// is full-object by default, the others composite; only CRCs can be full-object.
fn upload_checksum_request(rq: &Request) -> Result<(Option<ChecksumAlg>, &'static str), S3Error> {
    let bad = |m: String| S3Error::new(Code::InvalidRequest, m);
    let alg = match rq.headers.get("x-amz-checksum-algorithm") {
        None => None,
        Some(a) => Some(
            ChecksumAlg::parse(a)
                .ok_or_else(|| bad(format!("Checksum algorithm {a:?} is not supported.")))?,
        ),
    };
    let kind = match rq
        .headers
        .get("x-amz-checksum-type")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None if alg == Some(ChecksumAlg::Crc64Nvme) => checksum::FULL_OBJECT,
        None => checksum::COMPOSITE,
        Some("COMPOSITE") if alg != Some(ChecksumAlg::Crc64Nvme) => checksum::COMPOSITE,
        Some("FULL_OBJECT") if alg.is_some_and(ChecksumAlg::is_crc) => checksum::FULL_OBJECT,
        Some(t) => {
            return Err(bad(format!(
                "The checksum type {t} is not supported with this algorithm."
            )))
        }
    };
    Ok((alg, kind))
}

/// The checksum algorithm an upload's parts carry, from its metadata.
fn upload_alg(info: &UploadInfo) -> Option<ChecksumAlg> {
    info.meta
        .checksums
        .iter()
        .find(|(n, _)| n == ALGORITHM_KEY)
        .and_then(|(_, v)| ChecksumAlg::parse(v))
}

fn upload_kind(info: &UploadInfo) -> &str {
    info.meta
        .checksums
        .iter()
        .find(|(n, _)| n == checksum::TYPE_KEY)
        .map_or(checksum::COMPOSITE, |(_, v)| v.as_str())
}

/// Commits a part with its MD5 and checksum; answers with both.
fn commit_part(
    writer: Box<dyn crate::vfs::PartWriter + '_>,
    d: &crate::vfs::Digests,
    info: &UploadInfo,
) -> Result<(String, Option<(ChecksumAlg, String)>), S3Error> {
    if let (Some(want), Some((got, _))) = (upload_alg(info), &d.checksum) {
        if want != *got {
            return Err(S3Error::new(
                Code::InvalidRequest,
                format!(
                    "This upload's parts carry {} checksums, not {}.",
                    want.name(),
                    got.name()
                ),
            ));
        }
    }
    let md5 = util::hex(&d.md5.unwrap_or_default());
    let ck = d.checksum.as_ref().map(|(a, v)| (*a, util::base64(v)));
    writer.commit(&md5, ck.as_ref().map(|(a, v)| (a.name(), v.as_str())))?;
    Ok((md5, ck))
}

pub fn upload_part(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    rq.check_key()?;
    let number = part_number(rq)?;
    let info = upload(ctx, rq)?;
    let mut writer = ctx.vfs.part_writer(&info.id, number, rq.content_length)?;
    let sink = Sink::Part(writer.as_mut());
    let digests = receive(ctx, rq, sink, MAX_PUT_SIZE, true, upload_alg(&info))?;
    let (md5, ck) = commit_part(writer, &digests, &info)?;
    let mut resp = Response::empty(200).header("ETag", quote(&md5));
    if let Some((alg, v)) = ck {
        resp = resp.header(&alg.header(), v);
    }
    Ok(resp)
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
        .map_err(|e| S3Error::from(crate::vfs::BackendError::from(e)))?;
    let mut writer = ctx.vfs.part_writer(&info.id, number, Some(len))?;
    let hashes = crate::vfs::Hashes::new(true, false, false).with_checksum(upload_alg(&info));
    let digests = put::stream_body(&mut src.body.take(len), &mut writer, hashes, MAX_PUT_SIZE)?;
    if digests.len != len {
        return Err(S3Error::new(
            Code::InternalError,
            "The source object changed while it was copied.",
        ));
    }
    let (md5, ck) = commit_part(writer, &digests, &info)?;
    let mut w = XmlWriter::new();
    w.root("CopyPartResult");
    w.elem("LastModified", &util::iso8601(ctx.now));
    w.elem("ETag", &quote(&md5));
    if let Some((alg, v)) = ck {
        w.elem(&alg.element(), &v);
    }
    w.close("CopyPartResult");
    Ok(Response::xml(200, w.finish()))
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
    ctx.vfs.abort_upload(&info.id)?;
    Ok(Response::empty(204))
}
