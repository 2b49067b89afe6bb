//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy,
//! CompleteMultipartUpload, AbortMultipartUpload, ListParts and ListMultipartUploads. Parts
//! stream to files on disk and are joined in the kernel at completion; no part is held in
//! memory. A failed Complete keeps the upload; a retried Complete of a finished upload gets
//! the same answer. <https://docs.aws.amazon.com/AmazonS3/latest/userguide/mpuoverview.html>

use std::io::{Read, Seek, SeekFrom};

use md5::{Digest, Md5};

use crate::backend::{key, PartInfo, UploadInfo};
use crate::ops::checksum;
use crate::ops::copy::parse_copy_source;
use crate::ops::headers::{self, quote, Precondition, COPY_SOURCE_CONDS};
use crate::ops::put::{self, receive, MAX_PUT_SIZE};
use crate::ops::xml::{self, XmlWriter};
use crate::ops::{Body, Code, Ctx, OpResult, Request, Response, S3Error};
use crate::util;
use crate::vfs::checksum::ChecksumAlg;
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
    let mut resp = Response::xml(200, w.finish());
    if let Some(alg) = alg {
        resp = resp
            .header("x-amz-checksum-algorithm", alg.name())
            .header("x-amz-checksum-type", kind);
    }
    Ok(resp)
}

/// Key in an upload's metadata naming the checksum algorithm its parts carry.
const ALGORITHM_KEY: &str = "ALGORITHM";

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
    writer: Box<dyn crate::backend::PartWriter + '_>,
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
    let mut writer = uploads(ctx)?.part_writer(&info.id, number)?;
    let digests = receive(ctx, rq, &mut writer, MAX_PUT_SIZE, true, upload_alg(&info))?;
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
        .map_err(|e| S3Error::from(crate::backend::BackendError::from(e)))?;
    let mut writer = uploads(ctx)?.part_writer(&info.id, number)?;
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

/// One `<Part>` of a Complete request.
#[derive(Debug, Default, PartialEq)]
struct CompletePart {
    number: Option<u32>,
    etag: String,
    checksum: Option<(ChecksumAlg, String)>,
}

/// The parts a Complete request names, in the order given. Unknown elements are ignored.
fn parse_complete(body: &[u8]) -> Result<Vec<CompletePart>, S3Error> {
    let mut parts = Vec::new();
    let mut current = CompletePart::default();
    for leaf in xml::parse_elements(body)? {
        let path: Vec<&str> = leaf.path.iter().map(String::as_str).collect();
        let text = leaf.text.trim();
        match path[..] {
            ["CompleteMultipartUpload", "Part"] => {
                current
                    .number
                    .ok_or_else(|| xml::malformed("a Part has no PartNumber"))?;
                parts.push(std::mem::take(&mut current));
            }
            ["CompleteMultipartUpload", "Part", "PartNumber"] => {
                current.number = Some(
                    text.parse()
                        .map_err(|_| xml::malformed("PartNumber must be a number"))?,
                );
            }
            ["CompleteMultipartUpload", "Part", "ETag"] => {
                current.etag = text.trim_matches('"').to_ascii_lowercase()
            }
            ["CompleteMultipartUpload", "Part", element] => {
                if let Some(alg) = element
                    .strip_prefix("Checksum")
                    .and_then(ChecksumAlg::parse)
                {
                    current.checksum = Some((alg, text.to_string()));
                }
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(xml::malformed("You must specify at least one part"));
    }
    Ok(parts)
}

/// Matches the requested parts against the stored ones: order, ETags, checksums and sizes.
fn check_parts(
    wanted: &[CompletePart],
    stored: &[PartInfo],
    alg: Option<ChecksumAlg>,
) -> Result<Vec<PartInfo>, S3Error> {
    let mut out: Vec<PartInfo> = Vec::with_capacity(wanted.len());
    for w in wanted {
        let number = w.number.unwrap_or_default();
        if out.last().is_some_and(|p| number <= p.number) {
            return Err(S3Error::new(Code::InvalidPartOrder, "The list of parts was not in ascending order. The parts list must be specified in order by part number."));
        }
        let invalid = |why: &str| {
            S3Error::new(Code::InvalidPart, format!("One or more of the specified parts could not be found or did not match: {why}."))
                .with("PartNumber", number.to_string())
                .with("ETag", w.etag.as_str())
        };
        let part = stored
            .iter()
            .find(|p| p.number == number)
            .ok_or_else(|| invalid("the part was not uploaded"))?;
        if part.etag != w.etag {
            return Err(invalid("the entity tag differs"));
        }
        let stored_ck = part
            .checksum
            .as_ref()
            .and_then(|(a, v)| Some((ChecksumAlg::parse(a)?, v.as_str())));
        if let Some((a, v)) = &w.checksum {
            if stored_ck != Some((*a, v.as_str())) {
                return Err(invalid(&format!("the {} differs", a.name())));
            }
        }
        if alg.is_some() && stored_ck.map(|c| c.0) != alg {
            return Err(invalid(
                "the part was uploaded without the upload's checksum",
            ));
        }
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

/// The object's checksum from its parts': the checksum of the checksums plus `-N`
/// (composite), or the CRCs combined into the whole object's CRC (full object).
fn object_checksum(alg: ChecksumAlg, kind: &str, parts: &[PartInfo]) -> Option<String> {
    let raws: Vec<Vec<u8>> = parts
        .iter()
        .map(|p| util::unbase64(&p.checksum.as_ref()?.1))
        .collect::<Option<_>>()?;
    if kind == checksum::FULL_OBJECT {
        let mut acc = raws[0].clone();
        for (raw, part) in raws.iter().zip(parts).skip(1) {
            acc = alg.combine(&acc, raw, part.size)?;
        }
        return Some(util::base64(&acc));
    }
    Some(format!(
        "{}-{}",
        util::base64(&alg.digest(&raws.concat())),
        parts.len()
    ))
}

/// `md5(concatenated binary part MD5s)-N`.
pub fn multipart_etag(parts: &[PartInfo]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(util::unhex(&p.etag).unwrap_or_default());
    }
    format!("{}-{}", util::hex(&h.finalize()), parts.len())
}

fn complete_doc(rq: &Request, etag: &str, meta: &crate::backend::ObjectMeta) -> XmlWriter {
    let mut w = XmlWriter::new();
    w.root("CompleteMultipartUploadResult");
    w.elem("Location", &format!("/{}/{}", rq.bucket, rq.key));
    w.elem("Bucket", &rq.bucket);
    w.elem("Key", &rq.key);
    w.elem("ETag", &quote(etag));
    if let Some((alg, value, kind)) = checksum::stored(meta) {
        w.elem(&alg.element(), value);
        w.elem("ChecksumType", kind);
    }
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
    let alg = upload_alg(&info);
    let parts = check_parts(&wanted, &uploads(ctx)?.parts(&info.id)?, alg)?;
    let etag = multipart_etag(&parts);
    let mut meta = info.meta.clone();
    meta.etag = Some(etag.clone());
    meta.etag_alg = "MULTIPART".into();
    meta.parts = parts.iter().map(|p| p.size).collect();
    meta.checksums.clear();
    let kind = upload_kind(&info).to_string();
    let object_ck = alg.and_then(|a| Some((a, object_checksum(a, &kind, &parts)?)));
    if let Some((a, value)) = &object_ck {
        if let Some(claimed) = rq.headers.get(&a.header()) {
            if claimed.trim() != value.split('-').next().unwrap_or_default()
                && claimed.trim() != value
            {
                return Err(S3Error::new(
                    Code::BadDigest,
                    format!(
                        "The {} you specified did not match the calculated checksum.",
                        a.name()
                    ),
                ));
            }
        }
        meta.checksums = vec![
            (a.name().into(), value.clone()),
            (checksum::TYPE_KEY.into(), kind.clone()),
        ];
    }
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
        let doc = complete_doc(rq, &etag, &job.meta).finish();
        job.run(ctx.vfs)?;
        return Ok(Response::xml(200, doc));
    }
    // A long join: answer 200 now and keep the connection alive until the result is known.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let vfs = ctx.vfs.clone();
    let doc = complete_doc(rq, &etag, &job.meta).finish_body();
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
        let meta = ctx
            .vfs
            .stat(&rq.bucket, &rq.key)
            .ok()
            .and_then(|i| i.meta)
            .unwrap_or_default();
        return Ok(Response::xml(200, complete_doc(rq, etag, &meta).finish()));
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
    if let Some(alg) = upload_alg(&info) {
        w.elem("ChecksumAlgorithm", alg.name());
        w.elem("ChecksumType", upload_kind(&info));
    }
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
        if let Some(alg) = p
            .checksum
            .as_ref()
            .and_then(|(a, v)| Some((ChecksumAlg::parse(a)?, v)))
        {
            w.elem(&alg.0.element(), alg.1);
        }
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
            checksum: None,
        }
    }

    #[test]
    fn parses_complete_documents() {
        let doc = b"<CompleteMultipartUpload xmlns=\"x\"><Part><ETag>\"AB\"</ETag><PartNumber>1</PartNumber><ChecksumCRC32>y/Q5Jg==</ChecksumCRC32></Part><Part><PartNumber>3</PartNumber><ETag>cd</ETag><Unknown/></Part></CompleteMultipartUpload>";
        let parts = parse_complete(doc).unwrap();
        assert_eq!(
            parts[0],
            CompletePart {
                number: Some(1),
                etag: "ab".into(),
                checksum: Some((ChecksumAlg::Crc32, "y/Q5Jg==".into()))
            }
        );
        assert_eq!(
            parts[1],
            CompletePart {
                number: Some(3),
                etag: "cd".into(),
                checksum: None
            }
        );
        assert!(parse_complete(b"<CompleteMultipartUpload></CompleteMultipartUpload>").is_err());
        assert!(parse_complete(b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part></CompleteMultipartUpload>").is_err());
        assert!(parse_complete(
            b"<CompleteMultipartUpload><Part><ETag>a</ETag></Part></CompleteMultipartUpload>"
        )
        .is_err());
    }

    fn want(n: u32, etag: &str) -> CompletePart {
        CompletePart {
            number: Some(n),
            etag: etag.into(),
            checksum: None,
        }
    }

    #[test]
    fn checks_order_etags_checksums_and_sizes() {
        let big = MIN_PART_SIZE;
        let mut stored = vec![part(1, "aa", big), part(2, "bb", 10), part(3, "cc", 10)];
        assert_eq!(
            check_parts(&[want(1, "aa"), want(3, "cc")], &stored, None)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            check_parts(&[want(2, "bb"), want(1, "aa")], &stored, None)
                .unwrap_err()
                .code,
            Code::InvalidPartOrder
        );
        assert_eq!(
            check_parts(&[want(1, "zz")], &stored, None)
                .unwrap_err()
                .code,
            Code::InvalidPart
        );
        assert_eq!(
            check_parts(&[want(4, "dd")], &stored, None)
                .unwrap_err()
                .code,
            Code::InvalidPart
        );
        assert_eq!(
            check_parts(&[want(2, "bb"), want(3, "cc")], &stored, None)
                .unwrap_err()
                .code,
            Code::EntityTooSmall
        );
        assert_eq!(
            check_parts(&[want(3, "cc")], &stored, Some(ChecksumAlg::Crc32))
                .unwrap_err()
                .code,
            Code::InvalidPart
        );
        stored[2].checksum = Some(("CRC32".into(), "AAAAAA==".into()));
        assert!(check_parts(&[want(3, "cc")], &stored, Some(ChecksumAlg::Crc32)).is_ok());
        let mut w = want(3, "cc");
        w.checksum = Some((ChecksumAlg::Crc32, "AAAAAQ==".into()));
        assert_eq!(
            check_parts(&[w], &stored, None).unwrap_err().code,
            Code::InvalidPart
        );
    }

    #[test]
    fn object_checksums_from_parts() {
        let alg = ChecksumAlg::Crc32;
        let mut parts = vec![part(1, "aa", 6), part(2, "bb", 15)];
        parts[0].checksum = Some(("CRC32".into(), util::base64(&alg.digest(b"hello "))));
        parts[1].checksum = Some((
            "CRC32".into(),
            util::base64(&alg.digest(b"world, combined")),
        ));
        let full = object_checksum(alg, checksum::FULL_OBJECT, &parts).unwrap();
        assert_eq!(full, util::base64(&alg.digest(b"hello world, combined")));
        let composite = object_checksum(alg, checksum::COMPOSITE, &parts).unwrap();
        let raw = [alg.digest(b"hello "), alg.digest(b"world, combined")].concat();
        assert_eq!(composite, format!("{}-2", util::base64(&alg.digest(&raw))));
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
