//! The VFS: the only storage interface the ops call (`ops -> vfs -> backend`). Over the local
//! backend it is a thin pass-through that adds what every backend needs: ETags that are right
//! even for files changed behind our back (computed lazily, then cached in the metadata),
//! per-key locks so conditional writes are checked under the same lock as the commit, and the
//! empty-directory cleanup policy. Every key is checked here (see [`key::check`]) before it
//! reaches a backend, whichever operation brought it. It speaks no S3 and knows no sockets.

pub mod cache;
pub mod checksum;
pub mod dircache;
pub mod filter;
pub mod hash;
pub mod pages;
mod prefixes;
mod uploads;

use std::hash::BuildHasher;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::backend::{Backend, BucketInfo, DirEntry, ObjectReader, Result};
use dircache::{Brief, DirCache, Listed, Listing};
use filter::Filter;
pub use hash::{Digests, EtagAlg, Hashes};

// The plain types and rules the layers above use: they reach storage only through the Vfs.
pub use crate::backend::key;
pub use crate::backend::{
    BackendError, Body, ErrorKind, ObjectInfo, ObjectMeta, ObjectWriter, PartInfo, PartWriter,
    UploadInfo, CHECKSUM_ALGORITHM_KEY, CHECKSUM_TYPE_KEY,
};
pub use prefixes::PrefixProbe;

/// Key locks are striped: enough stripes that unrelated keys rarely wait on each other.
const LOCK_STRIPES: usize = 256;
/// Read size when hashing a file for its ETag.
const HASH_BUF: usize = 1 << 20;

/// A condition on the object currently stored at a key, checked under the key's lock just
/// before a commit (conditional writes).
pub trait WriteCheck<E> {
    fn check(&self, current: Option<&ObjectInfo>) -> std::result::Result<(), E>;
}

pub struct Vfs {
    backend: Box<dyn Backend>,
    etag: EtagAlg,
    cleanup: bool,
    locks: Vec<Mutex<()>>,
    hasher: std::collections::hash_map::RandomState,
    /// Directories seen holding an object.
    holders: prefixes::Holders,
    /// Directory listings, for walks of many pages.
    dirs: DirCache,
    /// Whole listing pages.
    pages: pages::Pages,
    /// What is served of the storage, when not all of it.
    filter: Option<Arc<Filter>>,
}

/// Options the VFS applies on top of the backend.
#[derive(Debug, Clone)]
pub struct VfsOptions {
    pub etag: EtagAlg,
    /// Remove parent directories left empty by a delete (off with `--no-cleanup`).
    pub cleanup: bool,
    /// How long listings may be reused while their directory is unchanged.
    pub dir_cache_time: std::time::Duration,
    /// The filter flags, compiled; `None` serves everything.
    pub filter: Option<Arc<Filter>>,
}

impl Vfs {
    pub fn new(backend: Box<dyn Backend>, opts: VfsOptions) -> Vfs {
        Vfs {
            backend,
            etag: opts.etag,
            cleanup: opts.cleanup,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
            holders: Default::default(),
            dirs: DirCache::new(opts.dir_cache_time),
            pages: Default::default(),
            filter: opts.filter,
        }
    }

    pub fn etag_alg(&self) -> EtagAlg {
        self.etag
    }

    fn lock(&self, bucket: &str, key: &str) -> MutexGuard<'_, ()> {
        let stripe = &self.locks[self.hasher.hash_one((bucket, key)) as usize % LOCK_STRIPES];
        stripe.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let mut buckets = self.backend.list_buckets()?;
        if let Some(f) = &self.filter {
            buckets.retain(|b| f.bucket(&b.name));
        }
        Ok(buckets)
    }

    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.backend.create_bucket(bucket)
    }

    /// Deletes an empty bucket; uploads still pending in it go with it, as on S3.
    pub fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.backend.delete_bucket(bucket)?;
        if let Some(uploads) = self.backend.uploads() {
            for u in uploads.list(bucket).unwrap_or_default() {
                let _ = uploads.abort(&u.id);
            }
        }
        Ok(())
    }

    /// Lists every directory of every bucket once (`--vfs-refresh`); returns how many.
    pub fn refresh(&self) -> usize {
        let mut count = 0;
        for b in self.list_buckets().unwrap_or_default() {
            let mut dirs = vec![String::new()];
            while let Some(dir) = dirs.pop() {
                let Ok(entries) = self.backend.list_dir(&b.name, &dir) else {
                    continue;
                };
                count += 1;
                dirs.extend(
                    entries
                        .iter()
                        .filter(|e| e.is_dir)
                        .map(|e| format!("{dir}{}/", e.name)),
                );
            }
        }
        count
    }

    /// Stops the backend's background work (see [`Backend::shutdown`]).
    pub fn shutdown(&self) {
        self.backend.shutdown();
    }

    /// Removes temporaries a crash left (see [`Backend::sweep_temporaries`]).
    pub fn sweep_temporaries(&self) -> usize {
        self.backend.sweep_temporaries()
    }

    /// Whether the bucket exists and the filters let it be seen.
    pub fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        if self.filter.as_ref().is_some_and(|f| !f.bucket(bucket)) {
            return Ok(false);
        }
        self.backend.bucket_exists(bucket)
    }

    /// Fails with NoSuchBucket unless the bucket exists.
    pub fn require_bucket(&self, bucket: &str) -> Result<()> {
        if self.bucket_exists(bucket)? {
            Ok(())
        } else {
            Err(BackendError::new(
                ErrorKind::NoSuchBucket,
                "The specified bucket does not exist",
            ))
        }
    }

    /// Size, mtime and metadata, with the ETag filled in.
    pub fn stat(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        key::check(key)?;
        self.check_served(bucket, key)?;
        let info = self.backend.stat(bucket, key)?;
        self.check_info(&info)?;
        self.with_etag(bucket, key, info)
    }

    /// The entries of `dir` (ending with `/`, or empty for the bucket) in S3 order, from
    /// memory while the directory is unchanged (see [`dircache`]).
    pub fn listing(&self, bucket: &str, dir: &str) -> Result<Arc<Listing>> {
        let stamp = self.backend.dir_stamp(bucket, dir);
        if let Some(listing) = stamp.and_then(|s| self.dirs.get(bucket, dir, &s)) {
            return Ok(listing);
        }
        let mut entries = self.backend.list_dir(bucket, dir)?;
        let marked = self.filter_entries(bucket, dir, &mut entries);
        let listing = Arc::new(Listing::new(entries, stamp.map_or(0, |s| s.dev), marked));
        if let Some(stamp) = stamp {
            self.dirs.put(bucket, dir, stamp, &listing);
        }
        Ok(listing)
    }

    /// Drops the entries of `dir` the filters exclude; all of them, returning true, when one
    /// is an `--exclude-if-present` marker. Directories are judged by their path alone, as a
    /// walk enters them; objects by their size, time and metadata too where the filters ask.
    fn filter_entries(&self, bucket: &str, dir: &str, entries: &mut Vec<DirEntry>) -> bool {
        let Some(f) = &self.filter else {
            return false;
        };
        let marker = |e: &DirEntry| !e.is_dir && f.markers().contains(&e.name);
        if entries.iter().any(marker) {
            entries.clear();
            return true;
        }
        let mut path = String::with_capacity(bucket.len() + dir.len() + 64);
        path.push_str(bucket);
        path.push('/');
        path.push_str(dir);
        let base = path.len();
        entries.retain(|e| {
            path.truncate(base);
            path.push_str(&e.name);
            if e.is_dir {
                return f.dir(&path);
            }
            if !f.path(&path) {
                return false;
            }
            if !f.needs_info() {
                return true;
            }
            match &e.facts {
                Some(facts) if !f.reads_metadata() => f.info(facts.size, facts.mtime, None),
                _ => match self.backend.stat(bucket, &path[bucket.len() + 1..]) {
                    Ok(info) => f.info(info.size, info.mtime, info.meta.as_ref()),
                    Err(_) => false,
                },
            }
        });
        false
    }

    /// What a listing shows of `key`, an object file of a [`listing`](Self::listing); None
    /// once it is gone.
    pub fn brief<'a>(&self, bucket: &str, key: &str, entry: &'a Listed) -> Option<&'a Brief> {
        entry.brief(|| {
            let info = self.stat(bucket, key).ok()?;
            Some(Brief {
                size: info.size,
                mtime: info.mtime,
                etag: info.meta.and_then(|m| m.etag).map(Into::into),
            })
        })
    }

    /// Opens an object for reading, with its ETag filled in.
    pub fn open(&self, bucket: &str, key: &str) -> Result<ObjectReader> {
        key::check(key)?;
        self.check_served(bucket, key)?;
        let mut reader = self.backend.open(bucket, key)?;
        self.check_info(&reader.info)?;
        if !self.etag_is_current(&reader.info) {
            let info = std::mem::replace(&mut reader.info, placeholder());
            reader.info = self.hash_into_meta(bucket, key, info, &mut reader.body)?;
            reader.body.seek(SeekFrom::Start(0))?;
        }
        Ok(reader)
    }

    fn etag_is_current(&self, info: &ObjectInfo) -> bool {
        match &info.meta {
            _ if self.etag == EtagAlg::None => true,
            Some(m) => {
                m.etag.is_some()
                    && (m.etag_alg == self.etag.name()
                        || m.etag_alg == "MULTIPART"
                        || self.backend.keeps_etags())
            }
            None => false,
        }
    }

    fn with_etag(&self, bucket: &str, key: &str, info: ObjectInfo) -> Result<ObjectInfo> {
        if self.etag_is_current(&info) {
            return Ok(info);
        }
        let mut reader = self.backend.open(bucket, key)?;
        let info = if reader.info.size == info.size && reader.info.mtime == info.mtime {
            info
        } else {
            reader.info
        };
        self.hash_into_meta(bucket, key, info, &mut reader.body)
    }

    /// Hashes the whole body for the ETag and caches it in the stored metadata.
    fn hash_into_meta(
        &self,
        bucket: &str,
        key: &str,
        mut info: ObjectInfo,
        body: &mut dyn Read,
    ) -> Result<ObjectInfo> {
        let mut hashes = Hashes::for_etag(self.etag, false, false);
        let mut buf = vec![0u8; HASH_BUF];
        loop {
            match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hashes.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let digests = hashes.finish();
        let mut meta = info.meta.take().unwrap_or_default();
        meta.etag = digests.etag(self.etag);
        meta.etag_alg = self.etag.name().to_string();
        if digests.len == info.size {
            // The record is checked against size and mtime, so a racing change is never cached.
            if let Err(e) = self.backend.set_meta(bucket, key, &info, &meta) {
                log::warn!("caching the ETag of {bucket}/{key}: {e}");
            }
        }
        info.meta = Some(meta);
        Ok(info)
    }

    /// Fills in the part sizes of a multipart object whose metadata lacks them (an
    /// upstream's object), where the backend can learn them.
    pub fn fill_parts(&self, bucket: &str, key: &str, info: &mut ObjectInfo) -> Result<()> {
        let Some(meta) = info.meta.as_mut() else {
            return Ok(());
        };
        let count = meta
            .etag
            .as_deref()
            .and_then(|e| e.rsplit_once('-'))
            .and_then(|(_, n)| n.parse::<usize>().ok());
        let (Some(count), true) = (count, meta.parts.is_empty()) else {
            return Ok(());
        };
        let etag = meta.etag.clone().unwrap_or_default();
        let sizes = self.backend.part_sizes(bucket, key, &etag, count)?;
        if sizes.iter().sum::<u64>() == info.size {
            meta.parts = sizes;
        }
        Ok(())
    }

    /// Starts a streaming write of `bucket/key`; nothing is visible until [`Vfs::commit`].
    pub fn create(&self, bucket: &str, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        key::check(key)?;
        self.check_writable(bucket, key)?;
        self.backend.create(bucket, key)
    }

    /// Starts a write of `dst` holding the bytes of `src` (copied on disk where possible).
    /// Returns the source's info, with its ETag.
    pub fn copy(
        &self,
        src: (&str, &str),
        dst: (&str, &str),
    ) -> Result<(ObjectInfo, Box<dyn ObjectWriter + '_>)> {
        key::check(src.1)?;
        key::check(dst.1)?;
        self.check_served(src.0, src.1)?;
        self.check_writable(dst.0, dst.1)?;
        let (info, writer) = self.backend.copy(src, dst)?;
        self.check_info(&info)?;
        let info = self.with_etag(src.0, src.1, info)?;
        Ok((info, writer))
    }

    /// Commits a write after `check`, if any, approves the object currently at the key (None
    /// when absent). The check and the commit run under the key's lock, so conditional writes
    /// race safely with each other; without a check the current object is not looked at.
    pub fn commit<E: From<BackendError>>(
        &self,
        bucket: &str,
        key: &str,
        writer: Box<dyn ObjectWriter + '_>,
        meta: &ObjectMeta,
        mtime: Option<SystemTime>,
        check: Option<&dyn WriteCheck<E>>,
    ) -> std::result::Result<ObjectInfo, E> {
        let _guard = self.lock(bucket, key);
        self.approve(bucket, key, check)?;
        Ok(writer.commit(meta, mtime)?)
    }

    /// Runs `check`, if any, on the object now at `bucket`/`key` (None when absent). The
    /// caller holds the key's lock.
    fn approve<E: From<BackendError>>(
        &self,
        bucket: &str,
        key: &str,
        check: Option<&dyn WriteCheck<E>>,
    ) -> std::result::Result<(), E> {
        let Some(check) = check else {
            return Ok(());
        };
        let current = match self.stat(bucket, key) {
            Ok(info) => Some(info),
            Err(e) if e.kind == ErrorKind::NotFound || e.kind == ErrorKind::Conflict => None,
            Err(e) => return Err(e.into()),
        };
        check.check(current.as_ref())
    }

    /// Deletes an object (a missing key is fine), then cleans up empty parents unless
    /// `--no-cleanup`.
    /// An object the filters exclude is not deleted: it is NotFound.
    pub fn remove(&self, bucket: &str, key: &str) -> Result<()> {
        key::check(key)?;
        self.check_served(bucket, key)?;
        let _guard = self.lock(bucket, key);
        if self.filter.as_ref().is_some_and(|f| f.needs_info()) {
            match self.backend.stat(bucket, key) {
                Ok(info) => self.check_info(&info)?,
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.backend.remove(bucket, key, self.cleanup)
    }

    /// NotFound unless the filters serve `key` by its path: the path rules pass, and no
    /// directory above it holds an `--exclude-if-present` marker.
    fn check_served(&self, bucket: &str, key: &str) -> Result<()> {
        let Some(f) = &self.filter else {
            return Ok(());
        };
        if !f.key(bucket, key) || self.under_marker(f, bucket, key)? {
            return Err(excluded());
        }
        Ok(())
    }

    /// NotFound unless the filters serve an object of this size, time and metadata.
    fn check_info(&self, info: &ObjectInfo) -> Result<()> {
        match &self.filter {
            Some(f) if f.needs_info() && !f.info(info.size, info.mtime, info.meta.as_ref()) => {
                Err(excluded())
            }
            _ => Ok(()),
        }
    }

    /// Refuses a write the filters would hide: the object could never be read back.
    pub fn check_writable(&self, bucket: &str, key: &str) -> Result<()> {
        match self.check_served(bucket, key) {
            Err(e) if e.kind == ErrorKind::NotFound => Err(BackendError::new(
                ErrorKind::Excluded,
                "Access Denied: the key is excluded by the server's filters",
            )),
            other => other,
        }
    }

    /// Whether a directory above `key` (the bucket's top included) holds a marker file.
    fn under_marker(&self, f: &Filter, bucket: &str, key: &str) -> Result<bool> {
        if f.markers().is_empty() {
            return Ok(false);
        }
        let dirs = key.match_indices('/').map(|(i, _)| &key[..=i]);
        for dir in std::iter::once("").chain(dirs) {
            match self.listing(bucket, dir) {
                Ok(l) if l.marked => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

fn excluded() -> BackendError {
    BackendError::new(ErrorKind::NotFound, "The specified key does not exist.")
}

fn placeholder() -> ObjectInfo {
    ObjectInfo {
        size: 0,
        mtime: SystemTime::UNIX_EPOCH,
        meta: None,
    }
}
