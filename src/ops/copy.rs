//! CopyObject. The bytes are copied on the disk (a reflink or `copy_file_range` in the local
//! backend), never through this process; the metadata follows `x-amz-metadata-directive`.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html>

use crate::ops::headers::{self, quote, Precondition, COPY_SOURCE_CONDS};
use crate::ops::xml::XmlWriter;
use crate::ops::{Code, Ctx, OpResult, Request, Response, S3Error};
use crate::util;
use crate::vfs::checksum::ChecksumAlg;
use crate::vfs::key;
use crate::vfs::WriteCheck;

/// Parses `x-amz-copy-source`: `[/]bucket/key[?versionId=…]`, percent-decoded once.
pub fn parse_copy_source(raw: &str) -> Result<(String, String), S3Error> {
    let bad = || {
        S3Error::new(
            Code::InvalidArgument,
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
        )
        .with("ArgumentName", "x-amz-copy-source")
    };
    let (path, query) = raw.trim().split_once('?').unwrap_or((raw.trim(), ""));
    for param in query.split('&').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("versionId", "null")) => {}
            Some(("versionId", _)) => {
                return Err(S3Error::new(
                    Code::NotImplemented,
                    "Versioning is not supported: the only version is `null`.",
                ))
            }
            _ => return Err(bad()),
        }
    }
    let decoded = util::percent_decode(path).ok_or_else(bad)?;
    let decoded = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (bucket, key) = decoded.split_once('/').ok_or_else(bad)?;
    if bucket.is_empty() || key.is_empty() {
        return Err(bad());
    }
    Ok((bucket.to_string(), key.to_string()))
}

/// `x-amz-checksum-algorithm` on a copy asks for that checksum on the new object.
fn requested_checksum(rq: &Request) -> Result<Option<ChecksumAlg>, S3Error> {
    match rq.headers.get("x-amz-checksum-algorithm") {
        None => Ok(None),
        Some(a) => ChecksumAlg::parse(a).map(Some).ok_or_else(|| {
            S3Error::new(
                Code::InvalidRequest,
                format!("Checksum algorithm {a:?} is not supported."),
            )
        }),
    }
}

/// Reads an object once to compute a checksum the copy must carry (the bytes themselves are
/// copied on the disk, without passing through here).
fn checksum_of(ctx: &Ctx, src: (&str, &str), alg: ChecksumAlg) -> Result<Vec<u8>, S3Error> {
    let mut reader = ctx.vfs.open(src.0, src.1)?;
    let hashes = crate::vfs::Hashes::new(false, false, false).with_checksum(Some(alg));
    let digests =
        crate::ops::put::stream_body(&mut reader.body, &mut std::io::sink(), hashes, u64::MAX)?;
    Ok(digests.checksum.map(|(_, v)| v).unwrap_or_default())
}

pub fn copy_object(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    rq.check_key()?;
    let raw = rq.headers.get("x-amz-copy-source").unwrap_or_default();
    let (sb, sk) = parse_copy_source(raw)?;
    let src_resource = format!("/{sb}/{sk}");
    key::check_bucket(&sb).map_err(|e| S3Error::from(e).with_resource(src_resource.clone()))?;
    key::check(&sk).map_err(|e| S3Error::from(e).with_resource(src_resource.clone()))?;
    let replace = match rq
        .headers
        .get("x-amz-metadata-directive")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(_) => {
            return Err(
                S3Error::new(Code::InvalidArgument, "Unknown metadata directive.")
                    .with("ArgumentName", "x-amz-metadata-directive"),
            )
        }
    };
    if (sb.as_str(), sk.as_str()) == (rq.bucket.as_str(), rq.key.as_str()) && !replace {
        return Err(S3Error::new(Code::InvalidRequest, "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.").with_resource(rq.resource()));
    }
    let new_meta = if replace {
        Some(headers::meta_from_request(rq.headers)?)
    } else {
        None
    };
    let condition = headers::write_condition(rq.headers)?;
    ctx.vfs
        .require_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    let src_info = ctx
        .vfs
        .stat(&sb, &sk)
        .map_err(|e| S3Error::from(e).with_resource(src_resource.clone()))?;
    rq.check_marker_size(src_info.size)?;
    if headers::evaluate(rq.headers, &COPY_SOURCE_CONDS, &src_info) != Precondition::Proceed {
        return Err(S3Error::new(
            Code::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold",
        )
        .with_resource(src_resource));
    }
    let (src, writer) = ctx
        .vfs
        .copy((&sb, &sk), (&rq.bucket, &rq.key))
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    let src_meta = src.meta.clone().unwrap_or_default();
    let mut meta = match new_meta {
        Some(mut m) => {
            m.etag = src_meta.etag.clone();
            m.etag_alg = src_meta.etag_alg.clone();
            m.checksums = src_meta.checksums.clone();
            m
        }
        None => src_meta,
    };
    if let Some(alg) = requested_checksum(rq)? {
        let have = crate::ops::checksum::stored(&meta)
            .is_some_and(|(a, _, kind)| a == alg && kind == crate::ops::checksum::FULL_OBJECT);
        if !have {
            let value = checksum_of(ctx, (&sb, &sk), alg)
                .map_err(|e| e.with_resource(src_resource.clone()))?;
            crate::ops::checksum::store(&mut meta, Some(&(alg, value)));
        }
    }
    let mtime = if ctx.opts.no_modtime {
        None
    } else {
        headers::mtime_from_meta(&meta)
    };
    let check = condition.as_ref().map(|c| c as &dyn WriteCheck<S3Error>);
    let info = ctx
        .vfs
        .commit(&rq.bucket, &rq.key, writer, &meta, mtime, check)?;
    let mut w = XmlWriter::new();
    w.root("CopyObjectResult");
    w.elem("LastModified", &util::iso8601(info.mtime));
    if let Some(etag) = &meta.etag {
        w.elem("ETag", &quote(etag));
    }
    if let Some((alg, value, kind)) = crate::ops::checksum::stored(&meta) {
        w.elem(&alg.element(), value);
        w.elem("ChecksumType", kind);
    }
    w.close("CopyObjectResult");
    Ok(Response::xml(200, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_forms() {
        assert_eq!(
            parse_copy_source("b/k%20x+y").unwrap(),
            ("b".into(), "k x+y".into())
        );
        assert_eq!(
            parse_copy_source("/b/a/b?versionId=null").unwrap(),
            ("b".into(), "a/b".into())
        );
        assert_eq!(
            parse_copy_source("b/k%3Fq").unwrap(),
            ("b".into(), "k?q".into())
        );
        assert_eq!(
            parse_copy_source("b").unwrap_err().code,
            Code::InvalidArgument
        );
        assert_eq!(
            parse_copy_source("/b/").unwrap_err().code,
            Code::InvalidArgument
        );
        assert_eq!(
            parse_copy_source("b/k?versionId=abc").unwrap_err().code,
            Code::NotImplemented
        );
    }
}
