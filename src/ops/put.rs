//! PutObject, and the streaming write every upload shares: the body flows from the socket
//! through the hashers into a temporary object in one pass, is checked against the declared
//! length, Content-MD5 and the signed payload hash, and is committed only if all of them hold.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html>

use std::cell::RefCell;
use std::io::{ErrorKind as IoKind, Read, Write};

use crate::backend::ObjectMeta;
use crate::ops::checksum;
use crate::ops::headers::{self, quote};
use crate::ops::{Code, Ctx, OpResult, Request, Response, S3Error};
use crate::vfs::checksum::ChecksumAlg;
use crate::vfs::{Digests, Hashes, WriteCheck};

/// Copy buffer for request bodies: large reads bypass tiny_http's small buffer.
pub const BODY_BUF: usize = 256 * 1024;
/// S3's largest single PUT.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; BODY_BUF]);
}

/// Streams `body` into `writer`, hashing as it goes; returns the digests.
pub fn stream_body(
    body: &mut dyn Read,
    writer: &mut dyn Write,
    mut hashes: Hashes,
    limit: u64,
) -> Result<Digests, S3Error> {
    BUF.with(|buf| {
        let buf = &mut buf.borrow_mut()[..];
        loop {
            let n = match body.read(buf) {
                Ok(0) => return Ok(hashes.finish()),
                Ok(n) => n,
                Err(e) if e.kind() == IoKind::Interrupted => continue,
                Err(e) => return Err(body_error(e)),
            };
            hashes.update(&buf[..n]);
            if hashes.len > limit {
                return Err(S3Error::new(
                    Code::EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed object size.",
                ));
            }
            writer
                .write_all(&buf[..n])
                .map_err(|e| S3Error::from(crate::backend::BackendError::from(e)))?;
        }
    })
}

/// A body read error is the client's doing (a truncated or malformed body), unless the
/// error says it is ours (an S3 error smuggled through io::Error by a decoding reader).
fn body_error(e: std::io::Error) -> S3Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<S3Error>())
    {
        Some(s3) => s3.clone(),
        None => S3Error::new(
            Code::IncompleteBody,
            format!("Reading the request body failed: {e}"),
        ),
    }
}

/// Checks what the client declared about the body against what arrived.
pub fn verify_digests(
    d: &Digests,
    md5: Option<[u8; 16]>,
    sha256: Option<[u8; 32]>,
) -> Result<(), S3Error> {
    if let (Some(want), Some(got)) = (md5, d.md5) {
        if want != got {
            return Err(S3Error::new(
                Code::BadDigest,
                "The Content-MD5 you specified did not match what we received.",
            ));
        }
    }
    if let (Some(want), Some(got)) = (sha256, d.sha256) {
        if want != got {
            return Err(S3Error::new(
                Code::XAmzContentSHA256Mismatch,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
            .with("ClientComputedContentSHA256", crate::util::hex(&want))
            .with("S3ComputedContentSHA256", crate::util::hex(&got)));
        }
    }
    Ok(())
}

fn check_length(declared: Option<u64>, got: u64) -> Result<(), S3Error> {
    match declared {
        Some(len) if len != got => Err(S3Error::new(
            Code::IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header.",
        )),
        _ => Ok(()),
    }
}

/// Streams a request body into `writer` and verifies it; the caller commits. MD5 is always
/// computed when `want_md5` (part ETags are MD5 whatever `--etag-hash` says), and the
/// checksum `default_checksum` when the request names none (a multipart upload's algorithm).
pub fn receive(
    ctx: &Ctx,
    rq: &mut Request,
    writer: &mut dyn Write,
    limit: u64,
    want_md5: bool,
    default_checksum: Option<ChecksumAlg>,
) -> Result<Digests, S3Error> {
    let md5 = headers::content_md5(rq.headers)?;
    let mut wanted = checksum::from_headers(rq.headers)?;
    let trailer_alg = checksum::trailer_alg(rq.headers, wanted.as_ref())?;
    if let Some(alg) = trailer_alg {
        wanted = Some(checksum::Wanted {
            alg,
            expected: None,
        });
    }
    if wanted.is_none() {
        wanted = default_checksum.map(|alg| checksum::Wanted {
            alg,
            expected: None,
        });
    }
    let hashes = Hashes::for_etag(
        ctx.vfs.etag_alg(),
        md5.is_some() || want_md5,
        rq.expected_sha256.is_some(),
    )
    .with_checksum(wanted.as_ref().map(|w| w.alg));
    let digests = stream_body(rq.body, writer, hashes, limit)?;
    check_length(rq.content_length, digests.len)?;
    verify_digests(&digests, md5, rq.expected_sha256)?;
    if let (Some(alg), Some(w)) = (trailer_alg, wanted.as_mut()) {
        w.expected = Some(checksum::from_trailer(alg, rq.trailers.as_ref())?);
    }
    checksum::verify(wanted.as_ref(), digests.checksum.as_ref())?;
    Ok(digests)
}

pub fn put_object(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    rq.check_key()?;
    if rq.content_length.is_some_and(|n| n > MAX_PUT_SIZE) {
        return Err(S3Error::new(
            Code::EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size.",
        ));
    }
    let mut meta = headers::meta_from_request(rq.headers)?;
    headers::content_md5(rq.headers)?;
    let condition = headers::write_condition(rq.headers)?;
    ctx.vfs.require_bucket(&rq.bucket)?;
    let mtime = if ctx.opts.no_modtime {
        None
    } else {
        headers::mtime_from_meta(&meta)
    };
    let (bucket, key) = (rq.bucket.clone(), rq.key.clone());
    let mut writer = ctx
        .vfs
        .create(&bucket, &key)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    let digests = receive(ctx, rq, writer.as_mut(), MAX_PUT_SIZE, false, None)?;
    set_etag(&mut meta, &digests, ctx);
    checksum::store(&mut meta, digests.checksum.as_ref());
    let check = condition.as_ref().map(|c| c as &dyn WriteCheck<S3Error>);
    let info = ctx
        .vfs
        .commit(&bucket, &key, writer, &meta, mtime, check)
        .map_err(|e: S3Error| e.with_resource(format!("/{bucket}/{key}")))?;
    let mut resp = checksum::add_headers(Response::empty(200), &meta);
    if let Some(etag) = info.meta.as_ref().and_then(|m| m.etag.as_deref()) {
        resp = resp.header("ETag", quote(etag));
    }
    Ok(resp)
}

/// Records the ETag of freshly received bytes in `meta`.
pub fn set_etag(meta: &mut ObjectMeta, digests: &Digests, ctx: &Ctx) {
    let alg = ctx.vfs.etag_alg();
    meta.etag = digests.etag(alg);
    meta.etag_alg = alg.name().to_string();
}
