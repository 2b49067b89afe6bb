//! The file cache (`--vfs-cache-mode`), between the Vfs and a backend. It is a backend
//! itself, wrapping the one that holds the data, so every operation reaches it the same way.
//!
//! - `minimal` and `writes`: PUT, Complete and a copy of a dirty source write a new dirty item
//!   in the cache and answer once it is durable there; the item is served (GET, HEAD,
//!   listings) until the write-back thread has uploaded it, in the shape the client gave it.
//! - `full`: as `writes`, and reads go through sparse cache files (see [`full`]).
//! - Two threads of their own: write-back ([`writeback`], retrying with [`retry`]'s backoff,
//!   forever) and eviction ([`evict`], never a dirty item).
//!
//! The records on disk ([`store`]) are the truth: start-up rebuilds everything from them
//! without asking the remote, and serves while the uploads resume.

pub mod clock;
pub mod evict;
mod full;
mod parts;
pub mod retry;
mod state;
pub mod store;
mod writeback;
mod writer;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::backend::uploads::LocalUploads;
use crate::backend::{
    Backend, BackendError, BucketInfo, DirEntry, ErrorKind, ObjectInfo, ObjectMeta, ObjectReader,
    ObjectWriter, Result, Uploads,
};
use clock::{Clock, SystemClock};
use state::{Item, Key, Msg, Shared};
use store::{Layout, Ranges, Record};
use writer::{CacheWriter, PassWriter};

/// `--vfs-cache-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Minimal,
    Writes,
    Full,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Some(Mode::Off),
            "minimal" => Some(Mode::Minimal),
            "writes" => Some(Mode::Writes),
            "full" => Some(Mode::Full),
            _ => None,
        }
    }
}

/// The cache's flags, with rclone's meanings.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub dir: PathBuf,
    /// rclone's name for the remote and its root, which places the cache's files.
    pub remote: String,
    pub mode: Mode,
    pub write_back: Duration,
    pub max_age: Duration,
    pub max_size: Option<u64>,
    pub min_free: u64,
    /// 0: no eviction thread.
    pub poll_interval: Duration,
    pub read_ahead: u64,
    pub transfers: usize,
    pub dir_cache_time: Duration,
    pub fast_fingerprint: bool,
    /// A test seam: the cache's filesystem is taken to have this many bytes, less what the
    /// cache holds (`S3SERVE_TEST_CACHE_BYTES`).
    pub test_free_space: Option<u64>,
}

/// rclone's default cache dir: `$XDG_CACHE_HOME/rclone`, `~/.cache/rclone`, `$TMPDIR/rclone`.
pub fn default_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("rclone");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".cache").join("rclone");
    }
    std::env::temp_dir().join("rclone")
}

pub struct Cache {
    sh: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stopped: Arc<AtomicBool>,
}

impl Cache {
    /// Opens the cache for `inner`: takes its lock, reloads its records and starts its
    /// threads. Dirty items found are queued for upload after `--vfs-write-back`.
    pub fn open(inner: Box<dyn Backend>, opts: CacheOptions) -> std::result::Result<Cache, String> {
        Cache::open_with_clock(inner, opts, Arc::new(SystemClock))
    }

    pub fn open_with_clock(
        inner: Box<dyn Backend>,
        opts: CacheOptions,
        clock: Arc<dyn Clock>,
    ) -> std::result::Result<Cache, String> {
        let layout = Layout::new(&opts.dir, &opts.remote);
        let fail = |what: &str, e: std::io::Error| {
            format!("--cache-dir {}: {what}: {e}", opts.dir.display())
        };
        for d in [&layout.data, &layout.meta, &layout.own] {
            store::create_dirs(d).map_err(|e| fail("creating it", e))?;
        }
        let lock = take_lock(&layout.own.join("lock")).map_err(|e| {
            format!(
                "--cache-dir {}: {e} (two processes must not share one cache; give each its own --cache-dir)",
                opts.dir.display()
            )
        })?;
        let uploads = parts::CacheUploads {
            local: LocalUploads::open(&layout.own, 0o600)
                .map_err(|e| format!("--cache-dir: {e}"))?,
            sh: Default::default(),
        };
        let (wb_tx, wb_rx) = crossbeam_channel::unbounded();
        let (kick_tx, kick_rx) = crossbeam_channel::bounded(1);
        let sh = Arc::new(Shared {
            inner,
            opts,
            layout,
            uploads,
            state: Default::default(),
            changed: Default::default(),
            wb: wb_tx,
            clock,
            evict_kick: kick_tx,
            _lock: lock,
        });
        let _ = sh.uploads.sh.set(Arc::downgrade(&sh));
        let started = std::time::Instant::now();
        let dirty = sh.reload();
        let items = sh.lock().items.len();
        if items > 0 {
            log::warn!(
                "cache: {items} items in {} ({} to upload), read in {:.0} ms",
                sh.opts.dir.display(),
                dirty.len(),
                started.elapsed().as_secs_f64() * 1000.0
            );
        }
        let due = sh.clock.now() + sh.opts.write_back;
        for (key, gen) in dirty {
            sh.queue(key, gen, due);
        }
        let mut threads = writeback::spawn(sh.clone(), wb_rx);
        let stopped = Arc::new(AtomicBool::new(false));
        if !sh.opts.poll_interval.is_zero() {
            let (sh2, stop) = (sh.clone(), stopped.clone());
            let h = std::thread::Builder::new()
                .name("s3serve:evict".into())
                .spawn(move || evict_loop(&sh2, &kick_rx, &stop))
                .map_err(|e| format!("starting the eviction thread: {e}"))?;
            threads.push(h);
        }
        Ok(Cache {
            sh,
            threads: Mutex::new(threads),
            stopped,
        })
    }

    fn key(bucket: &str, key: &str) -> Key {
        (bucket.to_string(), key.to_string())
    }

    /// The item for `key` if it may be served as it is: dirty (or held) items always, clean
    /// ones when the remote still has what they were fetched as.
    /// With `open`, the item's file comes too when it holds the whole object.
    fn served(
        &self,
        key: &Key,
        remote: Option<&ObjectInfo>,
        open: bool,
    ) -> Option<(ObjectInfo, Option<File>)> {
        let mut st = self.sh.lock();
        let now = self.sh.clock.now();
        let item = st.items.get_mut(key)?;
        let current = item.rec.dirty || item.hold;
        let same = remote.is_some_and(|r| self.sh.fingerprint(r) == item.rec.fingerprint);
        if !(current || same) {
            return None;
        }
        item.last_use = now;
        let whole = open
            && match &item.fill {
                Some(f) => f.complete(),
                None => item.rec.ranges.first_gap(0, item.rec.size).is_none(),
            };
        let file = whole
            .then(|| File::open(self.sh.data_path(key)).ok())
            .flatten();
        Some((item.info(), file))
    }

    /// Drops a clean item the remote no longer has in the same version.
    fn drop_stale(&self, key: &Key) {
        let mut st = self.sh.lock();
        let stale = st.items.get(key).is_some_and(|i| !i.rec.dirty && !i.hold)
            && !st.uploading.contains_key(key);
        if stale {
            st.items.remove(key);
            self.sh.remove_files(key);
        }
    }

    /// Full mode: the sparse item for `key`, made or reused.
    fn fill_for(&self, key: &Key, info: &ObjectInfo) -> Result<Arc<full::Fill>> {
        let fp = self.sh.fingerprint(info);
        let mut st = self.sh.lock();
        if let Some(item) = st.items.get_mut(key).filter(|i| i.rec.fingerprint == fp) {
            if let Some(f) = &item.fill {
                return Ok(f.clone());
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.sh.data_path(key))?;
            let f = Arc::new(full::Fill::new(
                file,
                item.rec.size,
                item.rec.ranges.clone(),
            ));
            item.fill = Some(f.clone());
            return Ok(f);
        }
        if st.items.get(key).is_some_and(|i| i.rec.dirty || i.hold) {
            return Err(BackendError::new(
                ErrorKind::Unavailable,
                "the key is being written",
            ));
        }
        let data = self.sh.data_path(key);
        let dir = data.parent().map(PathBuf::from).unwrap_or_default();
        store::create_dirs(&dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&data)?;
        file.set_len(info.size)?;
        st.next_gen += 1;
        let rec = Record {
            mtime: info.mtime,
            atime: SystemTime::now(),
            size: info.size,
            ranges: Ranges::default(),
            fingerprint: fp,
            dirty: false,
            gen: st.next_gen,
            tries: 0,
            next_try: None,
            meta: info.meta.clone().unwrap_or_default(),
            pending_data: None,
            remote_upload: None,
        };
        self.sh.persist(key, &rec);
        let f = Arc::new(full::Fill::new(file, info.size, Ranges::default()));
        let now = self.sh.clock.now();
        st.items.insert(
            key.clone(),
            Item {
                rec,
                last_use: now,
                hold: false,
                fill: Some(f.clone()),
                uploaded: None,
            },
        );
        Ok(f)
    }

    /// How many items are still to be uploaded.
    pub fn pending(&self) -> usize {
        self.sh.pending()
    }
}

/// Takes the cache's lock file, or says who holds it.
fn take_lock(path: &std::path::Path) -> std::io::Result<File> {
    use rustix::fs::{flock, FlockOperation};
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if flock(&f, FlockOperation::NonBlockingLockExclusive).is_err() {
        let holder = std::fs::read_to_string(path).unwrap_or_default();
        return Err(std::io::Error::other(format!(
            "in use by another s3serve (pid {})",
            holder.trim()
        )));
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

fn evict_loop(sh: &Shared, kick: &crossbeam_channel::Receiver<()>, stop: &AtomicBool) {
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let limits = evict::Limits {
            max_age: Some(sh.opts.max_age),
            max_size: sh.opts.max_size,
            min_free: sh.opts.min_free,
        };
        {
            let mut st = sh.lock();
            sh.evict_locked(&mut st, &limits);
        }
        match kick.recv_timeout(sh.opts.poll_interval) {
            Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(_) => return,
        }
    }
}

impl Backend for Cache {
    fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let buckets = self.sh.inner.list_buckets()?;
        for b in &buckets {
            self.sh.bucket_seen(&b.name, true);
        }
        Ok(buckets)
    }

    fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.sh.inner.create_bucket(bucket)?;
        self.sh.bucket_seen(bucket, true);
        Ok(())
    }

    fn delete_bucket(&self, bucket: &str) -> Result<()> {
        if self.sh.bucket_has_pending(bucket) {
            return Err(BackendError::new(
                ErrorKind::BucketNotEmpty,
                "The bucket you tried to delete is not empty",
            ));
        }
        self.sh.inner.delete_bucket(bucket)?;
        self.sh.bucket_seen(bucket, false);
        self.sh.forget_bucket(bucket);
        Ok(())
    }

    fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        if self.sh.bucket_known(bucket, true) {
            return Ok(true);
        }
        match self.sh.inner.bucket_exists(bucket) {
            Ok(exists) => {
                self.sh.bucket_seen(bucket, exists);
                Ok(exists)
            }
            Err(e) if e.kind == ErrorKind::Unavailable && self.sh.bucket_known(bucket, false) => {
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    fn stat(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        let k = Cache::key(bucket, key);
        if let Some((info, _)) = self.served(&k, None, false) {
            return Ok(info);
        }
        match self.sh.inner.stat(bucket, key) {
            // The same version the item holds: told as the item tells it, which is how the
            // client wrote it (and how GET, served from the item, tells it too).
            Ok(info) => match self.served(&k, Some(&info), false) {
                Some((ours, _)) => Ok(ours),
                None => {
                    self.drop_stale(&k);
                    Ok(info)
                }
            },
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.drop_stale(&k);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn open(&self, bucket: &str, key: &str) -> Result<ObjectReader> {
        let k = Cache::key(bucket, key);
        if let Some((info, Some(file))) = self.served(&k, None, true) {
            return Ok(ObjectReader {
                info,
                body: Box::new(file),
            });
        }
        let has_item = self.sh.lock().items.contains_key(&k);
        let fills = self.sh.opts.mode == Mode::Full && store::storable(key);
        if !has_item && !fills {
            return self.sh.inner.open(bucket, key);
        }
        let remote = match self.sh.inner.stat(bucket, key) {
            Ok(info) => info,
            Err(e) => {
                if e.kind == ErrorKind::NotFound {
                    self.drop_stale(&k);
                }
                return Err(e);
            }
        };
        if let Some((info, file)) = self.served(&k, Some(&remote), true) {
            if let Some(file) = file {
                return Ok(ObjectReader {
                    info,
                    body: Box::new(file),
                });
            }
        } else {
            self.drop_stale(&k);
        }
        if !fills {
            return self.sh.inner.open(bucket, key);
        }
        let fill = self.fill_for(&k, &remote)?;
        if fill.complete() {
            return Ok(ObjectReader {
                info: remote,
                body: Box::new(File::open(self.sh.data_path(&k))?),
            });
        }
        Ok(ObjectReader {
            info: remote,
            body: Box::new(full::SparseReader {
                sh: self.sh.clone(),
                key: k,
                fill,
                pos: 0,
                source: None,
                source_pos: 0,
                fetched: false,
            }),
        })
    }

    fn create(&self, bucket: &str, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        if self.sh.caches_writes() && store::storable(key) {
            return Ok(Box::new(CacheWriter::new(&self.sh, bucket, key)?));
        }
        let inner = self.sh.inner.create(bucket, key)?;
        Ok(Box::new(PassWriter::new(&self.sh, bucket, key, inner)))
    }

    fn remove(&self, bucket: &str, key: &str, cleanup: bool) -> Result<()> {
        let k = Cache::key(bucket, key);
        let held = self.sh.hold(&k);
        match self.sh.inner.remove(bucket, key, cleanup) {
            Ok(()) => {
                if held {
                    self.sh.unhold(&k, true);
                }
                self.sh.listed_removal(&k);
                Ok(())
            }
            Err(e) => {
                if held {
                    self.sh.unhold(&k, false);
                }
                Err(e)
            }
        }
    }

    fn list_dir(&self, bucket: &str, dir: &str) -> Result<Vec<DirEntry>> {
        let mut entries = self.sh.remote_listing(bucket, dir)?;
        let overlay = self.sh.overlay(bucket, dir);
        if !overlay.is_empty() {
            entries.retain(|e| {
                !overlay
                    .iter()
                    .any(|o| o.name == e.name && o.is_dir == e.is_dir)
            });
            entries.extend(overlay);
        }
        Ok(entries)
    }

    fn dir_stamp(&self, _bucket: &str, _dir: &str) -> Option<crate::backend::DirStamp> {
        // Our own items change listings without touching the remote's directories.
        None
    }

    fn set_meta(
        &self,
        bucket: &str,
        key: &str,
        info: &ObjectInfo,
        meta: &ObjectMeta,
    ) -> Result<()> {
        if self.sh.lock().items.contains_key(&Cache::key(bucket, key)) {
            return Ok(());
        }
        self.sh.inner.set_meta(bucket, key, info, meta)
    }

    fn part_sizes(&self, bucket: &str, key: &str, etag: &str, count: usize) -> Result<Vec<u64>> {
        self.sh.inner.part_sizes(bucket, key, etag, count)
    }

    fn keeps_etags(&self) -> bool {
        self.sh.inner.keeps_etags()
    }

    fn uploads(&self) -> Option<&dyn Uploads> {
        match self.sh.caches_writes() {
            true => Some(&self.sh.uploads),
            false => self.sh.inner.uploads(),
        }
    }

    fn sweep_temporaries(&self) -> usize {
        self.sh.inner.sweep_temporaries()
    }

    fn copy(
        &self,
        src: (&str, &str),
        dst: (&str, &str),
    ) -> Result<(ObjectInfo, Box<dyn ObjectWriter + '_>)> {
        let sk = Cache::key(src.0, src.1);
        let dirty = self
            .sh
            .lock()
            .items
            .get(&sk)
            .is_some_and(|i| i.rec.dirty || i.hold);
        if dirty {
            if let Some((info, Some(mut file))) = self.served(&sk, None, true) {
                let mut w = self.create(dst.0, dst.1)?;
                std::io::copy(&mut file, &mut w)?;
                return Ok((info, w));
            }
        }
        let (info, inner) = self.sh.inner.copy(src, dst)?;
        Ok((
            info,
            Box::new(PassWriter::new(&self.sh, dst.0, dst.1, inner)),
        ))
    }

    fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
        let _ = self.sh.evict_kick.try_send(());
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = self.sh.wb.send(Msg::Stop(tx));
        match rx.recv_timeout(writeback::SHUTDOWN_WAIT) {
            Ok(0) => log::warn!("cache: every write has been uploaded"),
            Ok(n) => log::warn!(
                "cache: {n} writes not uploaded yet; they are safe in {} and resume at the next start",
                self.sh.opts.dir.display()
            ),
            Err(_) => log::warn!(
                "cache: uploads still running after {}s; what they have not finished resumes at the next start",
                writeback::SHUTDOWN_WAIT.as_secs()
            ),
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        drop(threads);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use clock::ManualClock;
    use std::io::Write;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn opened(clock: Arc<ManualClock>) -> (Cache, Dir) {
        let dir = Dir(
            std::env::temp_dir().join(format!("s3serve-cache-{}", crate::util::unique_token()))
        );
        (opened_in(&dir, clock), dir)
    }

    fn opened_in(dir: &Dir, clock: Arc<ManualClock>) -> Cache {
        let opts = CacheOptions {
            dir: dir.0.clone(),
            remote: "mem".into(),
            mode: Mode::Writes,
            write_back: Duration::from_secs(3600),
            max_age: Duration::from_secs(3600),
            max_size: None,
            min_free: 0,
            poll_interval: Duration::ZERO,
            read_ahead: 0,
            transfers: 1,
            dir_cache_time: Duration::from_secs(300),
            fast_fingerprint: false,
            test_free_space: Some(1 << 30),
        };
        let cache = Cache::open_with_clock(Box::new(MemoryBackend::new()), opts, clock).unwrap();
        cache.create_bucket("bkt").unwrap();
        cache
    }

    #[test]
    fn an_rclone_cache_is_taken_over_with_etags_made_from_the_bytes() {
        let dir = Dir(
            std::env::temp_dir().join(format!("s3serve-cache-{}", crate::util::unique_token()))
        );
        let body = b"rclone wrote this";
        let data = dir.0.join("vfs/mem/bkt/d/from-rclone");
        std::fs::create_dir_all(data.parent().unwrap()).unwrap();
        std::fs::write(&data, body).unwrap();
        let meta = dir.0.join("vfsMeta/mem/bkt/d/from-rclone");
        std::fs::create_dir_all(meta.parent().unwrap()).unwrap();
        let record = format!(
            "{{\n\t\"ModTime\": \"2026-11-26T13:58:41.442056754Z\",\n\t\"ATime\": \
             \"2026-11-26T13:58:41.442056754Z\",\n\t\"Size\": {},\n\t\"Rs\": [{{\"Pos\": 0, \
             \"Size\": {}}}],\n\t\"Fingerprint\": \"\",\n\t\"Dirty\": true\n}}\n",
            body.len(),
            body.len()
        );
        std::fs::write(&meta, record).unwrap();
        let cache = opened_in(&dir, Arc::new(ManualClock::new()));
        let info = cache.stat("bkt", "d/from-rclone").unwrap();
        let md5 = crate::util::hex(&<md5::Md5 as md5::Digest>::digest(body));
        assert_eq!(info.size, body.len() as u64);
        assert_eq!(info.meta.unwrap().etag, Some(md5));
        assert_eq!(cache.pending(), 1);
    }

    fn put(cache: &Cache, key: &str, body: &[u8]) -> u64 {
        let mut w = cache.create("bkt", key).unwrap();
        w.write_all(body).unwrap();
        let meta = ObjectMeta {
            etag: Some(crate::util::hex(&<md5::Md5 as md5::Digest>::digest(body))),
            etag_alg: "MD5".into(),
            ..ObjectMeta::default()
        };
        w.commit(&meta, None).unwrap();
        cache.sh.lock().items[&Cache::key("bkt", key)].rec.gen
    }

    fn upload(cache: &Cache, key: &str, gen: u64) {
        let k = Cache::key("bkt", key);
        assert_eq!(cache.sh.claim(&k, gen), Some(true));
        cache.sh.upload(&k, gen).unwrap();
        cache.sh.upload_ended(&k);
    }

    #[test]
    fn eviction_by_age_takes_clean_items_and_never_dirty_ones() {
        let clock = Arc::new(ManualClock::new());
        let (cache, _dir) = opened(clock.clone());
        let a = put(&cache, "a", b"uploaded");
        put(&cache, "dirty", b"not uploaded");
        upload(&cache, "a", a);
        let limits = evict::Limits {
            max_age: Some(Duration::from_secs(3600)),
            max_size: None,
            min_free: 0,
        };
        let evict = || cache.sh.evict_locked(&mut cache.sh.lock(), &limits);
        assert_eq!(evict(), 0, "nothing is idle yet");
        clock.advance(Duration::from_secs(7200));
        assert_eq!(evict(), 1);
        let st = cache.sh.lock();
        assert!(!st.items.contains_key(&Cache::key("bkt", "a")));
        assert!(st.items.contains_key(&Cache::key("bkt", "dirty")));
        assert!(!cache.sh.data_path(&Cache::key("bkt", "a")).exists());
        assert!(cache.sh.data_path(&Cache::key("bkt", "dirty")).exists());
        drop(st);
        // The remote has the evicted object; the dirty one is still served from the cache.
        assert_eq!(cache.stat("bkt", "a").unwrap().size, 8);
        assert_eq!(cache.stat("bkt", "dirty").unwrap().size, 12);
    }

    #[test]
    fn a_failed_upload_comes_back_after_the_doubled_delay_and_remembers_its_tries() {
        let clock = Arc::new(ManualClock::new());
        let (cache, _dir) = opened(clock.clone());
        let gen = put(&cache, "k", b"bytes");
        let k = Cache::key("bkt", "k");
        let base = cache.sh.opts.write_back;
        for tries in 1..=3u32 {
            let next = cache
                .sh
                .upload_failed(&k, gen, "the remote is down", 0.5)
                .unwrap();
            let want = retry::delay(base, tries, 0.5);
            assert_eq!(next, clock.now() + want);
            let rec = Record::decode(&std::fs::read(cache.sh.meta_path(&k)).unwrap()).unwrap();
            assert_eq!((rec.tries, rec.dirty), (tries, true));
        }
        // An older generation's failure is not scheduled: the newer write has its own turn.
        put(&cache, "k", b"newer");
        assert!(cache.sh.upload_failed(&k, gen, "late", 0.5).is_none());
    }
}
