//! GetObject, HeadObject and DeleteObject. Reads open the file once and take size, mtime,
//! metadata and bytes from that one open; preconditions are evaluated before the range.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html>

use std::io::{Seek, SeekFrom};

use crate::ops::headers::{self, quote, Precondition, GET_CONDS, STORED_HEADERS};
use crate::ops::{Body, Code, Ctx, OpResult, Request, Response, S3Error};
use crate::util;
use crate::vfs::ObjectInfo;

/// `response-*` query overrides and the header each one sets.
const OVERRIDES: [(&str, &str); 6] = [
    ("response-content-type", "Content-Type"),
    ("response-content-language", "Content-Language"),
    ("response-expires", "Expires"),
    ("response-cache-control", "Cache-Control"),
    ("response-content-disposition", "Content-Disposition"),
    ("response-content-encoding", "Content-Encoding"),
];

pub fn get_object(ctx: &Ctx, rq: &mut Request) -> OpResult {
    read_object(ctx, rq, true)
}

pub fn head_object(ctx: &Ctx, rq: &mut Request) -> OpResult {
    read_object(ctx, rq, false)
}

fn read_object(ctx: &Ctx, rq: &mut Request, with_body: bool) -> OpResult {
    rq.check_key()?;
    let not_found = |e| S3Error::from(e).with_resource(rq.resource());
    // A HEAD needs no bytes: it asks the storage only for the object's facts.
    let (mut info, body) = match with_body {
        true => {
            let r = ctx.vfs.open(&rq.bucket, &rq.key).map_err(not_found)?;
            (r.info, Some(r.body))
        }
        false => (ctx.vfs.stat(&rq.bucket, &rq.key).map_err(not_found)?, None),
    };
    if rq.query.has("partNumber") {
        ctx.vfs
            .fill_parts(&rq.bucket, &rq.key, &mut info)
            .map_err(S3Error::from)?;
    }
    let info = &info;
    let part = part_range(rq, info)?;
    match headers::evaluate(rq.headers, &GET_CONDS, info) {
        Precondition::Failed => {
            return Err(S3Error::new(
                Code::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            )
            .with_resource(rq.resource()))
        }
        Precondition::NotModified => return Ok(validators(Response::empty(304), info)),
        Precondition::Proceed => {}
    }
    let range = match part {
        Some(p) => Some(p),
        None => {
            headers::range(rq.headers, info.size).map_err(|e| e.with_resource(rq.resource()))?
        }
    };
    let (status, start, len) = match range {
        Some((start, len)) => (206, start, len),
        None => (200, 0, info.size),
    };
    let mut resp = object_headers(Response::empty(status), &rq.key, info, rq);
    // Checksums describe the whole object: never sent with a range or a part.
    let checksum_mode = rq
        .headers
        .get("x-amz-checksum-mode")
        .is_some_and(|v| v.eq_ignore_ascii_case("enabled"));
    if status == 200 && checksum_mode {
        if let Some(meta) = &info.meta {
            resp = crate::ops::checksum::add_headers(resp, meta);
        }
    }
    if status == 206 {
        resp = resp.header(
            "Content-Range",
            format!("bytes {}-{}/{}", start, start + len - 1, info.size),
        );
    }
    let Some(mut body) = body else {
        return Ok(resp.with_body(Body::Stream(Box::new(std::io::empty()), len)));
    };
    if start > 0 {
        body.seek(SeekFrom::Start(start))
            .map_err(|e| S3Error::from(crate::vfs::BackendError::from(e)))?;
    }
    Ok(resp.with_body(Body::Object(body, start, len)))
}

/// The byte range of `?partNumber=N`: a part of a multipart object, or, for an object stored
/// by a single PUT, part 1 as the whole object.
fn part_range(rq: &Request, info: &ObjectInfo) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(p) = rq.query.get("partNumber") else {
        return Ok(None);
    };
    let bad = || {
        S3Error::new(
            Code::InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive",
        )
        .with("ArgumentName", "partNumber")
    };
    let n: usize = p.parse().map_err(|_| bad())?;
    if !(1..=10000).contains(&n) {
        return Err(bad());
    }
    let parts = info
        .meta
        .as_ref()
        .map(|m| m.parts.clone())
        .unwrap_or_default();
    if parts.is_empty() {
        return match n {
            1 => Ok(None),
            _ => Err(S3Error::new(
                Code::InvalidPartNumber,
                "The requested partnumber is not satisfiable",
            )),
        };
    }
    if n > parts.len() {
        return Err(S3Error::new(
            Code::InvalidPartNumber,
            "The requested partnumber is not satisfiable",
        ));
    }
    let start: u64 = parts[..n - 1].iter().sum();
    Ok(Some((start, parts[n - 1])))
}

fn validators(mut resp: Response, info: &ObjectInfo) -> Response {
    if let Some(etag) = info.meta.as_ref().and_then(|m| m.etag.as_deref()) {
        resp = resp.header("ETag", quote(etag));
    }
    resp.header("Last-Modified", util::http_date(info.mtime))
}

fn object_headers(resp: Response, key: &str, info: &ObjectInfo, rq: &Request) -> Response {
    let mut resp = validators(resp, info).header("Accept-Ranges", "bytes");
    let meta = info.meta.clone().unwrap_or_default();
    for name in STORED_HEADERS {
        let over = OVERRIDES
            .iter()
            .find(|(_, h)| h.eq_ignore_ascii_case(name))
            .and_then(|(q, _)| rq.query.get(q));
        let value = over.or(meta.header(name));
        match (name, value) {
            (_, Some(v)) => resp = resp.header(&canonical(name), v),
            ("content-type", None) => {
                resp = resp.header("Content-Type", headers::guess_content_type(key))
            }
            _ => {}
        }
    }
    for (n, v) in &meta.user {
        resp = resp.header(&format!("x-amz-meta-{n}"), v.as_str());
    }
    if rq.query.has("partNumber") {
        resp = resp.header("x-amz-mp-parts-count", meta.parts.len().max(1).to_string());
    }
    resp
}

fn canonical(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

pub fn delete_object(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    rq.check_key()?;
    ctx.vfs.require_bucket(&rq.bucket)?;
    ctx.vfs
        .remove(&rq.bucket, &rq.key)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    Ok(Response::empty(204))
}

/// GetObjectAttributes: the attributes named in `x-amz-object-attributes`, without the body.
/// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObjectAttributes.html>
pub fn get_object_attributes(ctx: &Ctx, rq: &mut Request) -> OpResult {
    rq.check_key()?;
    let wanted: Vec<String> = rq
        .headers
        .get("x-amz-object-attributes")
        .unwrap_or_default()
        .split(',')
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    const KNOWN: [&str; 5] = [
        "ETag",
        "Checksum",
        "ObjectParts",
        "StorageClass",
        "ObjectSize",
    ];
    if wanted.is_empty() || wanted.iter().any(|a| !KNOWN.contains(&a.as_str())) {
        return Err(S3Error::new(Code::InvalidArgument, "x-amz-object-attributes must list some of ETag, Checksum, ObjectParts, StorageClass, ObjectSize.").with("ArgumentName", "x-amz-object-attributes"));
    }
    let mut info = ctx
        .vfs
        .stat(&rq.bucket, &rq.key)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    let has = |a: &str| wanted.iter().any(|w| w == a);
    if has("ObjectParts") {
        ctx.vfs.fill_parts(&rq.bucket, &rq.key, &mut info)?;
    }
    let meta = info.meta.clone().unwrap_or_default();
    let mut w = crate::ops::xml::XmlWriter::new();
    w.root("GetObjectAttributesOutput");
    if has("ETag") {
        if let Some(etag) = &meta.etag {
            w.elem("ETag", etag);
        }
    }
    if has("Checksum") {
        if let Some((alg, value, kind)) = crate::ops::checksum::stored(&meta) {
            w.open("Checksum");
            w.elem(&alg.element(), value);
            w.elem("ChecksumType", kind);
            w.close("Checksum");
        }
    }
    if has("ObjectParts") && !meta.parts.is_empty() {
        write_parts(&mut w, rq, &meta.parts)?;
    }
    if has("StorageClass") {
        w.elem("StorageClass", "STANDARD");
    }
    if has("ObjectSize") {
        w.elem("ObjectSize", &info.size.to_string());
    }
    w.close("GetObjectAttributesOutput");
    Ok(Response::xml(200, w.finish()).header("Last-Modified", util::http_date(info.mtime)))
}

/// The `ObjectParts` element, paged by `x-amz-max-parts` and `x-amz-part-number-marker`.
fn write_parts(
    w: &mut crate::ops::xml::XmlWriter,
    rq: &Request,
    parts: &[u64],
) -> Result<(), S3Error> {
    let num = |h: &str, default: usize| -> Result<usize, S3Error> {
        match rq.headers.get(h) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                S3Error::new(Code::InvalidArgument, format!("{h} must be a number."))
                    .with("ArgumentName", h.to_string())
            }),
        }
    };
    let max = num("x-amz-max-parts", 1000)?.min(1000);
    let marker = num("x-amz-part-number-marker", 0)?;
    let page: Vec<(usize, u64)> = parts
        .iter()
        .copied()
        .enumerate()
        .map(|(i, s)| (i + 1, s))
        .filter(|(n, _)| *n > marker)
        .take(max)
        .collect();
    let truncated = page.last().is_some_and(|(n, _)| *n < parts.len());
    w.open("ObjectParts");
    w.elem("IsTruncated", if truncated { "true" } else { "false" });
    w.elem("MaxParts", &max.to_string());
    w.elem(
        "NextPartNumberMarker",
        &page.last().map_or(marker, |p| p.0).to_string(),
    );
    w.elem("PartNumberMarker", &marker.to_string());
    for (n, size) in &page {
        w.open("Part");
        w.elem("PartNumber", &n.to_string());
        w.elem("Size", &size.to_string());
        w.close("Part");
    }
    w.elem("PartsCount", &parts.len().to_string());
    w.close("ObjectParts");
    Ok(())
}
