//! An S3 store as a backend. Served at its root (`remote:`), its buckets are ours; served
//! below a bucket (`remote:bucket/prefix`), the folders there are our buckets, as in rclone.
//! Reads stream in ranged chunks that double in size, each pinned to the object's ETag with
//! `If-Match`, so a read never mixes two versions. A write collects its bytes in a spool
//! file (a spooled PUT body is adopted without a copy) and is sent with its length on
//! commit, so nothing is visible upstream before then, and nothing is held in memory.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::client::{Client, Head, Listed};
use super::http::{Answer, Payload};
use super::multipart::UpstreamPart;
use crate::backend::{
    Backend, BackendError, BucketInfo, DirEntry, ErrorKind, Facts, ObjectInfo, ObjectMeta,
    ObjectReader, ObjectWriter, Result, Uploads, CHECKSUM_ALGORITHM_KEY, CHECKSUM_TYPE_KEY,
};

/// ListObjectsV2 page size.
const PAGE: usize = 1000;

/// How reads are chunked: `--vfs-read-chunk-size` (0: the whole rest in one request),
/// doubling after each chunk up to `--vfs-read-chunk-size-limit` (0: no limit).
#[derive(Debug, Clone, Copy)]
pub struct Chunks {
    pub first: u64,
    pub limit: u64,
    /// `--vfs-read-chunk-streams`: above 1, that many fixed-size chunks are fetched at once
    /// (see [`super::streams`]).
    pub streams: usize,
}

/// How objects and buckets are written, from the remote's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Writes {
    /// A canned ACL (`x-amz-acl`) for new objects, and for new buckets.
    pub acl: Option<String>,
    pub bucket_acl: Option<String>,
    /// The region new buckets are made in (CreateBucket's LocationConstraint).
    pub location_constraint: Option<String>,
    /// Objects larger than this go up as multipart uploads of `chunk_size` parts (more
    /// where 10,000 parts would not hold them), as rclone uploads them. No cutoff unless
    /// the remote sets one: a PUT keeps the client's shape.
    pub upload_cutoff: u64,
    pub chunk_size: u64,
    /// Parts of such an upload sent at once.
    pub upload_concurrency: usize,
}

impl Default for Writes {
    fn default() -> Writes {
        Writes {
            acl: None,
            bucket_acl: None,
            location_constraint: None,
            upload_cutoff: u64::MAX,
            chunk_size: 5 << 20,
            upload_concurrency: 4,
        }
    }
}

pub struct Upstream {
    pub(super) client: Arc<Client>,
    /// The upstream bucket and key prefix (ending in `/`) our buckets live under, when
    /// served below a bucket.
    root: Option<(String, String)>,
    chunks: Chunks,
    pub(super) writes: Writes,
    /// Where writes collect their bytes before they are sent.
    pub(super) scratch: PathBuf,
}

impl Upstream {
    /// `path`: what followed the remote's `:` (`""`, `bucket` or `bucket/prefix`).
    pub fn new(
        client: Client,
        path: &str,
        chunks: Chunks,
        writes: Writes,
        scratch: PathBuf,
    ) -> Upstream {
        let path = path.trim_matches('/');
        let root = (!path.is_empty()).then(|| match path.split_once('/') {
            Some((b, p)) => (b.to_string(), format!("{}/", p.trim_end_matches('/'))),
            None => (path.to_string(), String::new()),
        });
        Upstream {
            client: Arc::new(client),
            root,
            chunks,
            writes,
            scratch,
        }
    }

    /// The headers that store `meta` with an object: system headers, user metadata and the
    /// remote's ACL. The object's modification time is the upstream's to set: it is not
    /// made up as user metadata (clients that keep one, as rclone does, send their own
    /// `x-amz-meta-mtime`).
    pub(super) fn put_headers(&self, meta: &ObjectMeta) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = meta.headers.clone();
        for (n, v) in &meta.user {
            h.push((format!("x-amz-meta-{n}"), v.clone()));
        }
        if let Some(acl) = &self.writes.acl {
            h.push(("x-amz-acl".into(), acl.clone()));
        }
        h
    }

    /// Our `bucket`/`key` as the upstream's bucket and key.
    pub(super) fn place(&self, bucket: &str, key: &str) -> (String, String) {
        match &self.root {
            None => (bucket.to_string(), key.to_string()),
            Some((b, prefix)) => (b.clone(), format!("{prefix}{bucket}/{key}")),
        }
    }

    /// Stores the `len` bytes of `file` as a multipart upload of `chunk_size` parts (larger
    /// where 10,000 would not hold them), `upload_concurrency` at a time, each with its
    /// Content-MD5; the upload is aborted if any part fails, so nothing is left behind.
    fn put_in_parts(
        &self,
        b: &str,
        k: &str,
        headers: &[(String, String)],
        file: &File,
        len: u64,
    ) -> Result<()> {
        let part = self.writes.chunk_size.max(len.div_ceil(MAX_PARTS));
        let count = len.div_ceil(part);
        let id = self.client.create_upload(b, k, headers)?.id;
        let send = |i: u64| -> Result<UpstreamPart> {
            let (offset, n) = (i * part, part.min(len - i * part));
            let md5 = md5_of(file, offset, n)?;
            let number = i as u32 + 1;
            let h = [md5_header(&md5)];
            let body = Payload::File {
                file,
                offset,
                len: n,
            };
            self.client.upload_part(b, k, &id, number, &h, body)?;
            Ok(UpstreamPart {
                number,
                etag: format!("\"{}\"", crate::util::hex(&md5)),
                size: n,
                mtime: UNIX_EPOCH,
                checksum: None,
            })
        };
        // `upload_concurrency` senders take the parts in turn; the first failure stops them.
        let next = AtomicU64::new(0);
        let outcome = Mutex::new(Ok(Vec::new()));
        let senders = self
            .writes
            .upload_concurrency
            .clamp(1, count.max(1) as usize);
        std::thread::scope(|scope| {
            for _ in 0..senders {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count || lock(&outcome).is_err() {
                        return;
                    }
                    let sent = send(i);
                    let mut o = lock(&outcome);
                    match (sent, o.as_mut()) {
                        (Ok(p), Ok(parts)) => parts.push(p),
                        (Err(e), Ok(_)) => *o = Err(e),
                        (_, Err(_)) => {}
                    }
                });
            }
        });
        let sent = outcome.into_inner().unwrap_or_else(|p| p.into_inner());
        let done = sent.and_then(|mut parts: Vec<UpstreamPart>| {
            parts.sort_by_key(|p| p.number);
            self.client.complete_upload(b, k, &id, &parts)
        });
        if done.is_err() {
            if let Err(e) = self.client.abort_upload(b, k, &id) {
                log::warn!("aborting the upload of {b}/{k}: {e}");
            }
        }
        done
    }

    /// HEAD of the upstream's `b`/`k`, which is our `bucket`'s object. A HEAD's 404 does
    /// not say what is missing, the bucket or the key: a missing bucket is told apart.
    fn head(&self, bucket: &str, b: &str, k: &str) -> Result<Head> {
        match self.client.head(b, k) {
            Err(e) if e.kind == ErrorKind::NotFound && !self.bucket_exists(bucket)? => {
                Err(BackendError::new(
                    ErrorKind::NoSuchBucket,
                    "The specified bucket does not exist.",
                ))
            }
            r => r,
        }
    }

    /// Every page of a listing, as (objects, prefixes) with `prefix` taken off their keys.
    fn list_all(&self, bucket: &str, prefix: &str) -> Result<(Vec<Listed>, Vec<String>)> {
        let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
        let mut token = None;
        loop {
            let page = self
                .client
                .list(bucket, prefix, Some("/"), token.as_deref(), PAGE)?;
            objects.extend(page.objects.into_iter().filter_map(|mut o| {
                o.key = o.key.strip_prefix(prefix)?.to_string();
                Some(o)
            }));
            prefixes.extend(
                page.prefixes
                    .into_iter()
                    .filter_map(|p| p.strip_prefix(prefix).map(str::to_string)),
            );
            token = page.next;
            if token.is_none() {
                return Ok((objects, prefixes));
            }
        }
    }
}

fn info_of(head: &Head) -> ObjectInfo {
    let mut meta = ObjectMeta::default();
    let mut mtime = head.mtime;
    let mut md5 = None;
    for (n, v) in &head.headers {
        if let Some(alg) = n.strip_prefix("x-amz-checksum-") {
            let name = match alg {
                "type" => CHECKSUM_TYPE_KEY.to_string(),
                alg => alg.to_ascii_uppercase(),
            };
            meta.checksums.push((name, v.clone()));
            continue;
        }
        match n.strip_prefix("x-amz-meta-") {
            Some(MD5_META) => md5 = Some(v.clone()),
            Some(user) => {
                if user == "mtime" {
                    if let Some(t) = float_seconds(v) {
                        mtime = t;
                    }
                }
                meta.user.push((user.to_string(), v.clone()));
            }
            None => meta.headers.push((n.clone(), v.clone())),
        }
    }
    if let Some(etag) = &head.etag {
        let etag = etag.trim_matches('"').to_string();
        // A plain MD5, as S3 gives for single-part objects; anything else is kept as given,
        // unless it is a PUT we sent up in parts, whose MD5 we recorded.
        let plain = |e: &str| e.len() == 32 && e.bytes().all(|c| c.is_ascii_hexdigit());
        let etag = match md5.filter(|m| plain(m) && !plain(&etag)) {
            Some(m) => m.to_ascii_lowercase(),
            None => etag,
        };
        meta.etag_alg = if plain(&etag) { "MD5" } else { "MULTIPART" }.to_string();
        meta.etag = Some(etag);
    }
    ObjectInfo {
        size: head.size,
        mtime,
        meta: Some(meta),
    }
}

/// User metadata that records the MD5 of an object s3serve received in one PUT and sent up
/// in parts (beyond `upload_cutoff`), so that its ETag stays the MD5 a single PUT has, as
/// clients expect. Not shown as user metadata.
const MD5_META: &str = "s3serve-md5";

/// Whether an upstream ETag is a multipart one (`hex-N`), which a recorded MD5 may stand for.
fn multipart_etag(etag: &str) -> bool {
    etag.trim_matches('"').contains('-')
}

/// rclone's `x-amz-meta-mtime`: seconds since the epoch, with a fraction.
fn float_seconds(v: &str) -> Option<SystemTime> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && (0.0..=1e11).contains(&secs))
        .then(|| UNIX_EPOCH + Duration::from_secs_f64(secs))
}

/// `Content-MD5` of a binary MD5: the upstream refuses bytes that do not match it.
pub(super) fn md5_header(md5: &[u8]) -> (String, String) {
    ("content-md5".into(), crate::util::base64(md5))
}

/// `x-amz-checksum-<alg>` with its base64 value (`alg` as `CRC32`, …).
pub(super) fn checksum_header(alg: &str, value: &str) -> (String, String) {
    (
        format!("x-amz-checksum-{}", alg.to_ascii_lowercase()),
        value.to_string(),
    )
}

/// Content-MD5 and the flexible checksum of `meta`, so that the upstream checks the bytes
/// it gets against the ones we hashed, and keeps the checksum.
fn check_headers(meta: &ObjectMeta) -> Vec<(String, String)> {
    let mut h = Vec::new();
    if meta.etag_alg == "MD5" {
        if let Some(md5) = meta.etag.as_deref().and_then(crate::util::unhex) {
            h.push(md5_header(&md5));
        }
    }
    for (n, v) in &meta.checksums {
        if n != CHECKSUM_TYPE_KEY && n != CHECKSUM_ALGORITHM_KEY {
            h.push(checksum_header(n, v));
        }
    }
    h
}

impl Backend for Upstream {
    fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        match &self.root {
            None => Ok(self
                .client
                .list_buckets()?
                .into_iter()
                .map(|(name, created)| BucketInfo { name, created })
                .collect()),
            Some((b, prefix)) => {
                let (_, prefixes) = self.list_all(b, prefix)?;
                Ok(prefixes
                    .into_iter()
                    .map(|p| BucketInfo {
                        name: p.trim_end_matches('/').to_string(),
                        created: UNIX_EPOCH,
                    })
                    .collect())
            }
        }
    }

    fn create_bucket(&self, bucket: &str) -> Result<()> {
        match &self.root {
            None => self.client.create_bucket(
                bucket,
                self.writes.bucket_acl.as_deref(),
                self.writes.location_constraint.as_deref(),
            ),
            // A folder on the upstream is only there while something is in it: a marker
            // keeps the new bucket listed until then.
            Some(_) => {
                if self.bucket_exists(bucket)? {
                    return Err(BackendError::new(
                        ErrorKind::BucketExists,
                        "The bucket already exists.",
                    ));
                }
                let (b, k) = self.place(bucket, "");
                self.client.put(&b, &k, &[], Payload::Empty).map(drop)
            }
        }
    }

    fn delete_bucket(&self, bucket: &str) -> Result<()> {
        match &self.root {
            None => self.client.delete_bucket(bucket),
            Some(_) => {
                let (b, prefix) = self.place(bucket, "");
                let page = self.client.list(&b, &prefix, None, None, 2)?;
                if page.objects.iter().any(|o| o.key != prefix) {
                    return Err(BackendError::new(
                        ErrorKind::BucketNotEmpty,
                        "The bucket you tried to delete is not empty.",
                    ));
                }
                if page.objects.is_empty() {
                    return Err(BackendError::new(
                        ErrorKind::NoSuchBucket,
                        "The specified bucket does not exist.",
                    ));
                }
                self.client.delete(&b, &prefix)
            }
        }
    }

    fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match &self.root {
            None => match self.client.list(bucket, "", None, None, 1) {
                Ok(_) => Ok(true),
                Err(e) if e.kind == ErrorKind::NoSuchBucket => Ok(false),
                Err(e) => Err(e),
            },
            Some(_) => {
                let (b, prefix) = self.place(bucket, "");
                Ok(!self
                    .client
                    .list(&b, &prefix, None, None, 1)?
                    .objects
                    .is_empty()
                    || !self.list_all(&b, &prefix)?.1.is_empty())
            }
        }
    }

    fn stat(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        let (b, k) = self.place(bucket, key);
        Ok(info_of(&self.head(bucket, &b, &k)?))
    }

    fn open(&self, bucket: &str, key: &str) -> Result<ObjectReader> {
        let (b, k) = self.place(bucket, key);
        // A HEAD first, not a peeking GET: a ranged answer carries no checksum, and the
        // reader may want bytes far from the start.
        let head = self.head(bucket, &b, &k)?;
        let info = info_of(&head);
        let ahead = (self.chunks.streams > 1 && self.chunks.first > 0).then(|| {
            let src = super::streams::Source {
                client: self.client.clone(),
                bucket: b.clone(),
                key: k.clone(),
                etag: head.etag.clone(),
                size: head.size,
            };
            super::streams::Ahead::new(
                src,
                self.chunks.first,
                self.chunks.streams,
                self.scratch.clone(),
            )
        });
        let body = Ranged {
            client: self.client.clone(),
            bucket: b,
            key: k,
            etag: head.etag.clone(),
            size: head.size,
            pos: 0,
            next_chunk: self.chunks.first,
            chunks: self.chunks,
            stream: None,
            resumes: 0,
            ahead,
        };
        Ok(ObjectReader {
            info,
            body: Box::new(body),
        })
    }

    fn create(&self, bucket: &str, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        let (b, k) = self.place(bucket, key);
        Ok(Box::new(Writer {
            upstream: self,
            bucket: b,
            key: k,
            bytes: Scratch::new(&self.scratch)?,
        }))
    }

    fn remove(&self, bucket: &str, key: &str, _cleanup: bool) -> Result<()> {
        let (b, k) = self.place(bucket, key);
        self.client.delete(&b, &k)
    }

    fn list_dir(&self, bucket: &str, dir: &str) -> Result<Vec<DirEntry>> {
        let (b, prefix) = self.place(bucket, dir);
        let (objects, prefixes) = self.list_all(&b, &prefix)?;
        let mut out: Vec<DirEntry> = objects
            .into_iter()
            // An object named like the folder itself is its marker (a key ending in `/`),
            // listed with an empty name as the local backend lists one; at a bucket's root
            // it is the marker that keeps a bucket below a bucket.
            .filter(|o| !o.key.is_empty() || !dir.is_empty())
            .map(|o| DirEntry {
                // A multipart ETag may stand for a recorded MD5 that only a HEAD shows: such
                // an entry is looked at when a listing needs it.
                facts: (!o.etag.as_deref().is_some_and(multipart_etag)).then(|| Facts {
                    size: o.size,
                    mtime: o.mtime,
                    etag: o.etag.map(|e| e.trim_matches('"').to_string()),
                }),
                name: o.key,
                ..DirEntry::default()
            })
            .collect();
        out.extend(prefixes.into_iter().map(|p| DirEntry {
            name: p.trim_end_matches('/').to_string(),
            is_dir: true,
            ..DirEntry::default()
        }));
        Ok(out)
    }

    fn uploads(&self) -> Option<&dyn Uploads> {
        Some(self)
    }

    fn keeps_etags(&self) -> bool {
        true
    }

    fn part_sizes(&self, bucket: &str, key: &str, etag: &str, count: usize) -> Result<Vec<u64>> {
        let (b, k) = self.place(bucket, key);
        let etag = format!("\"{}\"", etag.trim_matches('"'));
        (1..=count)
            .map(|n| self.client.part_size(&b, &k, n, &etag))
            .collect()
    }

    fn set_meta(&self, _: &str, _: &str, _: &ObjectInfo, _: &ObjectMeta) -> Result<()> {
        // The upstream keeps the ETag itself: there is nothing to cache beside the object.
        Ok(())
    }

    fn copy(
        &self,
        src: (&str, &str),
        dst: (&str, &str),
    ) -> Result<(ObjectInfo, Box<dyn ObjectWriter + '_>)> {
        let (sb, sk) = self.place(src.0, src.1);
        let info = info_of(&self.head(src.0, &sb, &sk)?);
        let (db, dk) = self.place(dst.0, dst.1);
        let source = format!("/{sb}/{}", crate::util::uri_encode(&sk, true));
        Ok((
            info,
            Box::new(CopyWriter {
                upstream: self,
                bucket: db,
                key: dk,
                source,
            }),
        ))
    }
}

/// A lock whose holder may have panicked: the value is still good.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// S3's most parts in one upload.
const MAX_PARTS: u64 = 10_000;

/// The MD5 of `len` bytes of `file` from `offset`.
fn md5_of(file: &File, offset: u64, len: u64) -> Result<[u8; 16]> {
    use md5::Digest;
    use std::os::unix::fs::FileExt;
    let mut h = md5::Md5::new();
    let mut buf = vec![0; (1 << 20).min(len as usize).max(1)];
    let mut done = 0;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = file.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(BackendError::new(
                ErrorKind::Io,
                "the spooled body ended early",
            ));
        }
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(h.finalize().into())
}

/// An unnamed file for a write's bytes.
pub(super) fn tempfile_in(dir: &Path) -> Result<File> {
    use rustix::fs::{Mode, OFlags};
    std::fs::create_dir_all(dir)?;
    let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
    match rustix::fs::open(dir, flags, Mode::from_raw_mode(0o600)) {
        Ok(fd) => Ok(File::from(fd)),
        Err(_) => {
            let path = dir.join(format!(
                "{}{}",
                crate::temps::TEMP_PREFIX,
                crate::util::unique_token()
            ));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
    }
}

/// The bytes of a write on their way up: written to a scratch file, or a spooled body taken
/// whole in its place.
pub(super) struct Scratch {
    file: File,
    adopted: Option<File>,
}

impl Scratch {
    pub(super) fn new(dir: &Path) -> Result<Scratch> {
        Ok(Scratch {
            file: tempfile_in(dir)?,
            adopted: None,
        })
    }

    pub(super) fn adopt(&mut self, file: File) {
        self.adopted = Some(file);
    }

    /// The file holding the bytes, and their length.
    pub(super) fn finish(self) -> Result<(File, u64)> {
        let file = self.adopted.unwrap_or(self.file);
        let len = file.metadata()?.len();
        Ok((file, len))
    }
}

impl Write for Scratch {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Writer<'a> {
    upstream: &'a Upstream,
    bucket: String,
    key: String,
    bytes: Scratch,
}

impl Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for Writer<'_> {
    fn commit(self: Box<Self>, meta: &ObjectMeta, _: Option<SystemTime>) -> Result<ObjectInfo> {
        let Writer {
            upstream,
            bucket,
            key,
            bytes,
        } = *self;
        let (file, len) = bytes.finish()?;
        let mut headers = upstream.put_headers(meta);
        if len > upstream.writes.upload_cutoff {
            if let Some(md5) = meta.etag.as_ref().filter(|_| meta.etag_alg == "MD5") {
                headers.push((format!("x-amz-meta-{MD5_META}"), md5.clone()));
            }
            upstream.put_in_parts(&bucket, &key, &headers, &file, len)?;
        } else {
            headers.extend(check_headers(meta));
            let body = Payload::File {
                file: &file,
                offset: 0,
                len,
            };
            upstream.client.put(&bucket, &key, &headers, body)?;
        }
        Ok(info_of(&upstream.client.head(&bucket, &key)?))
    }

    fn adopt(&mut self, file: File, _path: &Path) -> io::Result<bool> {
        self.bytes.adopt(file);
        Ok(true)
    }
}

/// A server-side copy, made on commit with the metadata given then.
struct CopyWriter<'a> {
    upstream: &'a Upstream,
    bucket: String,
    key: String,
    source: String,
}

impl Write for CopyWriter<'_> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("a copy takes no bytes"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for CopyWriter<'_> {
    fn commit(self: Box<Self>, meta: &ObjectMeta, _: Option<SystemTime>) -> Result<ObjectInfo> {
        let mut headers = self.upstream.put_headers(meta);
        // The upstream computes the copy's checksum with the algorithm asked for.
        if let Some((alg, _)) = meta
            .checksums
            .iter()
            .find(|(n, _)| n != CHECKSUM_TYPE_KEY && n != CHECKSUM_ALGORITHM_KEY)
        {
            headers.push(("x-amz-checksum-algorithm".into(), alg.clone()));
        }
        headers.push(("x-amz-copy-source".into(), self.source.clone()));
        headers.push(("x-amz-metadata-directive".into(), "REPLACE".into()));
        let c = &self.upstream.client;
        c.put(&self.bucket, &self.key, &headers, Payload::Empty)?;
        Ok(info_of(&c.head(&self.bucket, &self.key)?))
    }
}

/// The first byte of `bytes FIRST-LAST/SIZE`.
fn range_start(v: &str) -> Option<u64> {
    let v = v.trim().strip_prefix("bytes")?.trim_start();
    v.split_once('-')?.0.trim().parse().ok()
}

/// The body of a ranged answer, positioned at byte `pos` of the object. Where its bytes
/// start is what its Content-Range says, whatever the status (rclone serve s3 sends a range
/// with 200); a 200 without one is the whole object.
pub(super) fn answer_from(answer: Answer, pos: u64) -> io::Result<Box<dyn Read + Send + Sync>> {
    let start = match (answer.header("content-range"), answer.status) {
        (Some(v), _) => range_start(v).ok_or_else(|| {
            io::Error::other(format!("the upstream's Content-Range {v:?} cannot be read"))
        })?,
        (None, 200) => 0,
        (None, s) => return Err(io::Error::other(format!("a {s} without Content-Range"))),
    };
    if start > pos {
        return Err(io::Error::other(format!(
            "the upstream answered from byte {start}, not {pos}"
        )));
    }
    let mut body = answer.body;
    io::copy(&mut (&mut body).take(pos - start), &mut io::sink())?;
    Ok(body)
}

/// An object read in ranged GETs as the reader asks for bytes.
struct Ranged {
    client: Arc<Client>,
    bucket: String,
    key: String,
    etag: Option<String>,
    size: u64,
    pos: u64,
    next_chunk: u64,
    chunks: Chunks,
    /// The answer being read, and the bytes of it still to come.
    stream: Option<(Box<dyn Read + Send + Sync>, u64)>,
    /// Answers cut short so far, each resumed with a new request from where it stopped.
    resumes: u32,
    /// With `--vfs-read-chunk-streams`: the chunks in flight ahead of the reader.
    ahead: Option<super::streams::Ahead>,
}

impl Ranged {
    fn fetch(&mut self) -> io::Result<()> {
        let left = self.size - self.pos;
        let len = match self.next_chunk {
            0 => left,
            n => n.min(left),
        };
        let last = self.pos + len - 1;
        let answer: Answer = self
            .client
            .get(
                &self.bucket,
                &self.key,
                Some((self.pos, last)),
                self.etag.as_deref(),
            )
            .map_err(|e| io::Error::other(e.message))?;
        let body = answer_from(answer, self.pos)?;
        self.stream = Some((body, len));
        self.next_chunk = match self.chunks.limit {
            0 => self.next_chunk.saturating_mul(2),
            limit => self
                .next_chunk
                .saturating_mul(2)
                .min(limit.max(self.chunks.first)),
        };
        Ok(())
    }
}

impl Read for Ranged {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos >= self.size || buf.is_empty() {
                return Ok(0);
            }
            if let Some(ahead) = &mut self.ahead {
                let n = ahead.read_at(self.pos, buf)?;
                self.pos += n as u64;
                return Ok(n);
            }
            if self.stream.is_none() {
                self.fetch()?;
            }
            let Some((body, left)) = &mut self.stream else {
                return Ok(0);
            };
            let want = (*left).min(buf.len() as u64) as usize;
            let error = match body.read(&mut buf[..want]) {
                Ok(0) => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream's answer ended early",
                ),
                Ok(n) => {
                    *left -= n as u64;
                    if *left == 0 {
                        self.stream = None;
                    }
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) => e,
            };
            // Cut short: ask again from here, still pinned to the same ETag.
            if self.resumes >= self.client.retries() {
                return Err(error);
            }
            self.resumes += 1;
            log::debug!(
                "resuming {}/{} at {}: {error}",
                self.bucket,
                self.key,
                self.pos
            );
            self.stream = None;
        }
    }
}

impl Seek for Ranged {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        if pos != self.pos {
            self.stream = None;
            self.next_chunk = self.chunks.first;
            self.pos = pos;
        }
        Ok(pos)
    }
}

impl crate::backend::Body for Ranged {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_give_their_start() {
        assert_eq!(range_start("bytes 2-5/16"), Some(2));
        assert_eq!(range_start("bytes  10-15/16"), Some(10));
        assert_eq!(range_start("bytes 0-0/*"), Some(0));
        assert_eq!(range_start("items 1-2/3"), None);
        assert_eq!(range_start("bytes x-5/16"), None);
    }
}
