//! CompleteMultipartUpload: the requested parts are checked against the stored ones (order,
//! ETags, checksums, sizes), joined in the kernel into the object's temporary file and
//! committed under the key lock. Long joins answer 200 at once and keep the connection alive
//! with whitespace until the result or an error document is ready.

use md5::{Digest, Md5};

use super::{upload, upload_alg, upload_kind, MIN_PART_SIZE};
use crate::ops::checksum;
use crate::ops::headers::{self, quote};
use crate::ops::xml::{self, XmlWriter};
use crate::ops::{Body, Code, Ctx, Headers, OpResult, Request, Response, S3Error};
use crate::util;
use crate::vfs::checksum::ChecksumAlg;
use crate::vfs::PartInfo;
use crate::vfs::WriteCheck;

/// One `<Part>` of a Complete request.
#[derive(Debug, Default, PartialEq)]
struct CompletePart {
    number: Option<u32>,
    etag: String,
    checksum: Option<(ChecksumAlg, String)>,
}

/// For the fuzz checks (`crate::fuzzing`): how many parts a Complete document names.
#[cfg(any(test, fuzzing))]
pub(crate) fn fuzz_parse_complete(body: &[u8]) -> Result<usize, S3Error> {
    parse_complete(body).map(|p| p.len())
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

/// The whole object's checksum a Complete request claims in `x-amz-checksum-<alg>` (the
/// digest, and `-N` after a composite one), checked against the upload's algorithm, type
/// (`x-amz-checksum-type`, when sent) and part count; `None` when it claims none.
fn claimed_checksum(
    h: &Headers,
    alg: Option<ChecksumAlg>,
    kind: &str,
    parts: usize,
) -> Result<Option<Vec<u8>>, S3Error> {
    let bad = |m: String| S3Error::new(Code::InvalidRequest, m);
    if let Some(t) = h.get("x-amz-checksum-type") {
        if !t.trim().eq_ignore_ascii_case(kind) {
            return Err(bad(format!("The upload was created using the {kind} checksum mode. The complete request must use the same checksum mode.")));
        }
    }
    let mut named = ChecksumAlg::ALL
        .into_iter()
        .filter_map(|a| Some((a, h.get(&a.header())?.trim())));
    let Some((a, value)) = named.next() else {
        return Ok(None);
    };
    if named.next().is_some() {
        return Err(bad(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
                .into(),
        ));
    }
    if alg != Some(a) {
        let created = alg.map_or("no checksum algorithm".into(), |u| u.name().to_string());
        return Err(bad(format!(
            "The upload was created using {created}, but the complete request names {}.",
            a.name()
        )));
    }
    let invalid = || bad(format!("Value for {} header is invalid.", a.header()));
    let (digest, count) = match value.split_once('-') {
        Some((d, n)) => (d, Some(n.parse::<usize>().map_err(|_| invalid())?)),
        None => (value, None),
    };
    let raw = util::unbase64(digest)
        .filter(|r| r.len() == a.digest_len())
        .ok_or_else(invalid)?;
    match count {
        Some(_) if kind != checksum::COMPOSITE => Err(bad(format!(
            "A {kind} checksum has no part count; {} names one.",
            a.header()
        ))),
        Some(n) if n != parts => Err(bad(format!(
            "The {} names {n} parts, but the request completes {parts}.",
            a.header()
        ))),
        _ => Ok(Some(raw)),
    }
}

/// `md5(concatenated binary part MD5s)-N`.
pub fn multipart_etag(parts: &[PartInfo]) -> String {
    etag_of(parts.iter().map(|p| p.etag.as_str()))
}

/// The multipart ETag of parts with these (hex MD5) ETags.
fn etag_of<'a>(etags: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = etags.len();
    let mut h = Md5::new();
    for e in etags {
        h.update(util::unhex(e).unwrap_or_default());
    }
    format!("{}-{n}", util::hex(&h.finalize()))
}

fn complete_doc(rq: &Request, etag: &str, meta: &crate::vfs::ObjectMeta) -> XmlWriter {
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
    let body = rq.read_xml_checked(false)?;
    let wanted = parse_complete(&body)?;
    if let Some(etag) = &info.done_etag {
        return retried_complete(ctx, rq, etag);
    }
    let condition = headers::write_condition(rq.headers)?;
    let alg = upload_alg(&info);
    let mut stored = match ctx.vfs.parts(&info.id) {
        // Gone from a store that keeps no record of completed uploads (an S3 upstream): a
        // retry of a Complete that went through is known by the object it made.
        Err(e) if e.kind == crate::vfs::ErrorKind::NoSuchUpload => {
            let etag = etag_of(wanted.iter().map(|w| w.etag.as_str()));
            return retried_complete(ctx, rq, &etag);
        }
        r => r?,
    };
    if !info.part_checksums {
        // A store that does not list its parts' checksums (an upstream, which checks them
        // itself when it joins the parts) takes the ones claimed here; each was verified
        // against its bytes as the part came in.
        for p in &mut stored {
            let claimed = wanted.iter().find(|w| w.number == Some(p.number));
            if let Some((a, v)) = claimed.and_then(|w| w.checksum.as_ref()) {
                p.checksum = Some((a.name().to_string(), v.clone()));
            }
        }
    }
    let parts = check_parts(&wanted, &stored, alg)?;
    let etag = multipart_etag(&parts);
    let mut meta = info.meta.clone();
    meta.etag = Some(etag.clone());
    meta.etag_alg = "MULTIPART".into();
    meta.parts = parts.iter().map(|p| p.size).collect();
    meta.checksums.clear();
    let kind = upload_kind(&info).to_string();
    let claimed = claimed_checksum(rq.headers, alg, &kind, parts.len())?;
    let object_ck = alg.and_then(|a| Some((a, object_checksum(a, &kind, &parts)?)));
    if let Some((a, value)) = &object_ck {
        let computed = value.split('-').next().unwrap_or_default();
        if claimed.is_some_and(|raw| util::base64(&raw) != computed) {
            return Err(S3Error::new(
                Code::BadDigest,
                format!(
                    "The {} you specified did not match the calculated checksum.",
                    a.name()
                ),
            ));
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
    meta: crate::vfs::ObjectMeta,
    mtime: Option<std::time::SystemTime>,
    condition: Option<headers::WriteCondition>,
}

impl Assembly {
    fn run(self, vfs: &crate::vfs::Vfs) -> Result<(), S3Error> {
        let resource = format!("/{}/{}", self.bucket, self.key);
        let check = self
            .condition
            .as_ref()
            .map(|c| c as &dyn WriteCheck<S3Error>);
        vfs.complete_upload(
            &self.bucket,
            &self.key,
            &self.id,
            &self.parts,
            &self.meta,
            self.mtime,
            check,
        )
        .map_err(|e: S3Error| e.with_resource(resource))?;
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
            offset: None,
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
    fn claimed_object_checksums() {
        let crc = ChecksumAlg::Crc32;
        let h = |pairs: &[(&str, &str)]| Headers::from_pairs(pairs);
        let claim =
            |pairs: &[(&str, &str)], kind: &str| claimed_checksum(&h(pairs), Some(crc), kind, 3);
        let full = checksum::FULL_OBJECT;
        let composite = checksum::COMPOSITE;
        let raw = Some(vec![0x5a, 0x00, 0xe1, 0x05]);
        assert_eq!(
            claim(&[("x-amz-checksum-crc32", "WgDhBQ==")], full).unwrap(),
            raw
        );
        assert_eq!(
            claim(&[("x-amz-checksum-crc32", "WgDhBQ==-3")], composite).unwrap(),
            raw
        );
        assert_eq!(
            claim(&[("x-amz-checksum-crc32", "WgDhBQ==")], composite).unwrap(),
            raw
        );
        assert_eq!(claim(&[], full).unwrap(), None);
        let type_sent = [("x-amz-checksum-type", "full_object")];
        assert_eq!(claim(&type_sent, full).unwrap(), None);
        for (pairs, kind) in [
            (&[("x-amz-checksum-crc32", "WgDhBQ==-2")][..], composite),
            (&[("x-amz-checksum-crc32", "WgDhBQ==-3")], full),
            (&[("x-amz-checksum-crc32", "WgDhBQ==-x")], composite),
            (&[("x-amz-checksum-crc32", "WgDh")], full),
            (&[("x-amz-checksum-crc32c", "WgDhBQ==")], full),
            (&[("x-amz-checksum-type", "COMPOSITE")], full),
            (
                &[
                    ("x-amz-checksum-crc32", "WgDhBQ=="),
                    ("x-amz-checksum-sha1", "x"),
                ],
                full,
            ),
        ] {
            let code = claim(pairs, kind).unwrap_err().code;
            assert_eq!(code, Code::InvalidRequest, "{pairs:?} {kind}");
        }
        let none = claimed_checksum(
            &h(&[("x-amz-checksum-crc32", "WgDhBQ==")]),
            None,
            composite,
            3,
        );
        assert_eq!(none.unwrap_err().code, Code::InvalidRequest);
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
