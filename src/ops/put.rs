//! PutObject, and the streaming write every upload shares: the body flows from the socket
//! through the hashers into a temporary object in one pass, is checked against the declared
//! length, Content-MD5 and the signed payload hash, and is committed only if all of them hold.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html>

use std::cell::RefCell;
use std::io::{ErrorKind as IoKind, Read, Write};

use crate::ops::checksum;
use crate::ops::headers::{self, quote};
use crate::ops::{Code, Ctx, OpResult, Request, Response, S3Error};
use crate::vfs::checksum::ChecksumAlg;
use crate::vfs::{Digests, Hashes, WriteCheck};
use crate::vfs::{ObjectMeta, ObjectWriter};

/// Copy buffer for request bodies: large reads bypass tiny_http's small buffer.
pub const BODY_BUF: usize = 256 * 1024;
/// S3's largest single PUT.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; BODY_BUF]);
}

/// Bodies longer than this are hashed on a helper thread while the next bytes are read and
/// written, so that hashing (MD5 runs at about one core's 600 MB/s) is not added to the I/O.
const PIPELINE_AFTER: u64 = 8 << 20;
/// Buffers in flight between the reading and the hashing thread, and their size.
const PIPELINE_BUFS: usize = 3;
const PIPELINE_BUF: usize = 1 << 20;

/// Streams `body` into `writer`, hashing as it goes; returns the digests.
pub fn stream_body(
    body: &mut dyn Read,
    writer: &mut dyn Write,
    mut hashes: Hashes,
    limit: u64,
) -> Result<Digests, S3Error> {
    if stream_inline(body, writer, &mut hashes, limit, PIPELINE_AFTER)? {
        return Ok(hashes.finish());
    }
    // A helper only pays while a core is idle: when many uploads run at once, each hashes
    // on its own thread.
    match Pipelines::enter() {
        Some(_running) => stream_pipelined(body, writer, hashes, limit),
        None => {
            stream_inline(body, writer, &mut hashes, limit, u64::MAX)?;
            Ok(hashes.finish())
        }
    }
}

/// Reads, hashes and writes on this thread until the body ends (true) or `until` bytes
/// have passed (false).
fn stream_inline(
    body: &mut dyn Read,
    writer: &mut dyn Write,
    hashes: &mut Hashes,
    limit: u64,
    until: u64,
) -> Result<bool, S3Error> {
    BUF.with(|buf| {
        let buf = &mut buf.borrow_mut()[..];
        while hashes.len < until {
            let n = read_some(body, buf)?;
            if n == 0 {
                return Ok(true);
            }
            hashes.update(&buf[..n]);
            check_limit(hashes.len, limit)?;
            write_body(writer, &buf[..n])?;
        }
        Ok(false)
    })
}

/// Counts the uploads hashing on a helper thread: at most one fewer than the cores.
struct Pipelines;

static PIPELINES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Pipelines {
    fn enter() -> Option<Pipelines> {
        // Asked once: the answer reads cgroup files.
        static MOST: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let most = *MOST.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            cores.saturating_sub(1).max(1)
        });
        let ordering = std::sync::atomic::Ordering::AcqRel;
        PIPELINES
            .fetch_update(ordering, std::sync::atomic::Ordering::Acquire, |n| {
                (n < most).then_some(n + 1)
            })
            .ok()
            .map(|_| Pipelines)
    }
}

impl Drop for Pipelines {
    fn drop(&mut self) {
        PIPELINES.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The rest of a long body: this thread reads and writes, a helper hashes what was written.
fn stream_pipelined(
    body: &mut dyn Read,
    writer: &mut dyn Write,
    hashes: Hashes,
    limit: u64,
) -> Result<Digests, S3Error> {
    let (full_tx, full_rx) = crossbeam_channel::bounded::<(Vec<u8>, usize)>(PIPELINE_BUFS);
    let (free_tx, free_rx) = crossbeam_channel::bounded::<Vec<u8>>(PIPELINE_BUFS);
    for _ in 0..PIPELINE_BUFS {
        let _ = free_tx.send(vec![0u8; PIPELINE_BUF]);
    }
    let mut len = hashes.len;
    std::thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut hashes = hashes;
            for (buf, n) in full_rx {
                hashes.update(&buf[..n]);
                let _ = free_tx.send(buf);
            }
            hashes
        });
        let streamed = (|| -> Result<(), S3Error> {
            loop {
                let Ok(mut buf) = free_rx.recv() else {
                    return Err(S3Error::new(
                        Code::InternalError,
                        "the hashing thread ended early",
                    ));
                };
                let n = fill(body, &mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                len += n as u64;
                check_limit(len, limit)?;
                write_body(writer, &buf[..n])?;
                if full_tx.send((buf, n)).is_err() {
                    return Err(S3Error::new(
                        Code::InternalError,
                        "the hashing thread ended early",
                    ));
                }
            }
        })();
        drop(full_tx);
        let hashes = hasher
            .join()
            .map_err(|_| S3Error::new(Code::InternalError, "the hashing thread failed"))?;
        streamed.map(|()| hashes.finish())
    })
}

/// One read, retried when interrupted; 0 at the end of the body.
fn read_some(body: &mut dyn Read, buf: &mut [u8]) -> Result<usize, S3Error> {
    loop {
        match body.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == IoKind::Interrupted => continue,
            Err(e) => return Err(body_error(e)),
        }
    }
}

/// Reads until `buf` is full or the body ends.
fn fill(body: &mut dyn Read, buf: &mut [u8]) -> Result<usize, S3Error> {
    let mut n = 0;
    while n < buf.len() {
        match read_some(body, &mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn check_limit(len: u64, limit: u64) -> Result<(), S3Error> {
    if len > limit {
        return Err(S3Error::new(
            Code::EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size.",
        ));
    }
    Ok(())
}

/// Writers refuse bytes past a declared length with InvalidInput: the body was longer than
/// it said.
fn write_body(writer: &mut dyn Write, data: &[u8]) -> Result<(), S3Error> {
    writer.write_all(data).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => length_mismatch(),
        _ => S3Error::from(crate::vfs::BackendError::from(e)),
    })
}

fn length_mismatch() -> S3Error {
    S3Error::new(
        Code::IncompleteBody,
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
    )
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
        Some(len) if len != got => Err(length_mismatch()),
        _ => Ok(()),
    }
}

/// Where a received body goes: any writer, or an object writer that may take a spooled
/// body's file as it is.
pub enum Sink<'a> {
    Bytes(&'a mut dyn Write),
    Object(&'a mut dyn ObjectWriter),
    Part(&'a mut dyn crate::vfs::PartWriter),
}

/// Streams a request body into `writer` and verifies it; the caller commits. MD5 is always
/// computed when `want_md5` (part ETags are MD5 whatever `--etag-hash` says), and the
/// checksum `default_checksum` when the request names none (a multipart upload's algorithm).
/// A body the front spooled and already hashed becomes an object's bytes by a link to its
/// file, without a copy, where the writer can take it.
pub fn receive(
    ctx: &Ctx,
    rq: &mut Request,
    sink: Sink<'_>,
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
    let digests = match sink {
        Sink::Object(w) => match adopt_spooled(rq, &mut |f, p| w.adopt(f, p), &hashes, limit)? {
            Some(d) => d,
            None => stream_body(rq.body, w, hashes, limit)?,
        },
        Sink::Part(w) => match adopt_spooled(rq, &mut |f, p| w.adopt(f, p), &hashes, limit)? {
            Some(d) => d,
            None => stream_body(rq.body, w, hashes, limit)?,
        },
        Sink::Bytes(w) => stream_body(rq.body, w, hashes, limit)?,
    };
    check_length(rq.content_length, digests.len)?;
    verify_digests(&digests, md5, rq.expected_sha256)?;
    if let (Some(alg), Some(w)) = (trailer_alg, wanted.as_mut()) {
        w.expected = Some(checksum::from_trailer(alg, rq.trailers.as_ref())?);
    }
    checksum::verify(wanted.as_ref(), digests.checksum.as_ref())?;
    Ok(digests)
}

/// Makes a spooled body the object's bytes, if it was hashed with everything `wanted` and
/// the writer can link its file; `None` when the body must be streamed instead.
fn adopt_spooled(
    rq: &Request,
    adopt: &mut dyn FnMut(std::fs::File, &std::path::Path) -> std::io::Result<bool>,
    wanted: &Hashes,
    limit: u64,
) -> Result<Option<Digests>, S3Error> {
    let Some(sp) = &rq.spooled else {
        return Ok(None);
    };
    let Some(d) = sp.digests.filter(|d| d.covers(wanted)) else {
        return Ok(None);
    };
    check_limit(d.len, limit)?;
    let file = sp
        .file
        .try_clone()
        .map_err(|e| S3Error::from(crate::vfs::BackendError::from(e)))?;
    match adopt(file, &sp.link) {
        Ok(true) => Ok(Some(d.clone())),
        Ok(false) => Ok(None),
        Err(e) => Err(crate::vfs::BackendError::from(e).into()),
    }
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
    rq.check_marker_size(rq.content_length.unwrap_or(0))?;
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
    // A folder marker takes no bytes, even from a body of undeclared length.
    let limit = match rq.is_folder_marker() {
        true => 0,
        false => MAX_PUT_SIZE,
    };
    let digests =
        receive(ctx, rq, Sink::Object(writer.as_mut()), limit, false, None).map_err(|e| match e
            .code
        {
            Code::EntityTooLarge => rq.check_marker_size(1).err().unwrap_or(e),
            _ => e,
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    /// A reader that hands out odd-sized pieces, as a socket does.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(200_003);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn long_bodies_hash_and_land_whole_through_the_helper_thread() {
        for len in [
            0,
            1,
            PIPELINE_AFTER as usize,
            PIPELINE_AFTER as usize + 3 * PIPELINE_BUF + 17,
        ] {
            let data = body(len);
            let mut out = Vec::new();
            let d = stream_body(
                &mut Trickle(&data),
                &mut out,
                Hashes::new(true, false, true),
                u64::MAX,
            )
            .unwrap();
            assert_eq!(d.len, len as u64);
            assert_eq!(d.md5.unwrap(), <[u8; 16]>::from(Md5::digest(&data)));
            assert!(out == data, "{len} bytes written differ");
        }
    }

    #[test]
    fn the_size_limit_holds_past_the_hand_over() {
        let data = body(PIPELINE_AFTER as usize + 2 * PIPELINE_BUF);
        let limit = PIPELINE_AFTER + PIPELINE_BUF as u64;
        let e = stream_body(
            &mut Trickle(&data),
            &mut Vec::new(),
            Hashes::new(true, false, false),
            limit,
        )
        .unwrap_err();
        assert_eq!(e.code, Code::EntityTooLarge);
    }
}
