//! ListParts and ListMultipartUploads, paged at 1000.

use super::{upload, upload_alg, upload_kind, MAX_PAGE};
use crate::ops::headers::quote;
use crate::ops::xml::XmlWriter;
use crate::ops::{Code, Ctx, OpResult, Request, Response, S3Error};
use crate::util;
use crate::vfs::checksum::ChecksumAlg;
use crate::vfs::{PartInfo, UploadInfo};

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
    let parts = ctx.vfs.parts(&info.id)?;
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
    let mut all = ctx.vfs.uploads_in(&rq.bucket)?;
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
