//! What the cache knows in memory, and the operations on it that the requests, the
//! write-back thread and the eviction thread share: the items by bucket and key, which of
//! them is uploading, the bytes reserved by writes under way, and the remote's listings.
//! Everything here is rebuilt from the records on disk at start-up ([`Shared::reload`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use super::clock::Clock;
use super::evict;
use super::store::{self, Layout, Record};
use super::{CacheOptions, Mode};
use crate::backend::{
    Backend, BackendError, DirEntry, DirStamp, ErrorKind, Facts, ObjectInfo, Result,
};
use crate::backend::{CHECKSUM_ALGORITHM_KEY, CHECKSUM_TYPE_KEY};
use crate::vfs::checksum::ChecksumAlg;

pub(super) type Key = (String, String);

/// One cached object.
pub(super) struct Item {
    pub rec: Record,
    pub last_use: Instant,
    /// A delete or a write past the cache is under way: not to be uploaded meanwhile.
    pub hold: bool,
    /// Full mode: the sparse file being filled, shared with its readers.
    pub fill: Option<Arc<super::full::Fill>>,
    /// When this process uploaded it: a listing of the remote fetched before then may
    /// lack it, so it stays in the overlay for `--dir-cache-time`.
    pub uploaded: Option<Instant>,
}

impl Item {
    /// Bytes the item holds on disk.
    pub fn bytes(&self) -> u64 {
        match &self.fill {
            Some(f) => f.ranges().bytes(),
            None => self.rec.ranges.bytes(),
        }
    }

    pub fn info(&self) -> ObjectInfo {
        ObjectInfo {
            size: self.rec.size,
            mtime: self.rec.mtime,
            meta: Some(self.rec.meta.clone()),
        }
    }
}

/// A listing of the remote, kept for `--dir-cache-time` (or while the directory's stamp is
/// unchanged, where the backend has stamps).
struct Kept {
    at: Instant,
    stamp: Option<DirStamp>,
    entries: Vec<DirEntry>,
}

#[derive(Default)]
pub(super) struct State {
    pub items: BTreeMap<Key, Item>,
    /// Keys with an upload in flight, and the generation it uploads.
    pub uploading: HashMap<Key, u64>,
    pub next_gen: u64,
    /// Bytes promised to writes under way.
    pub reserved: u64,
    listings: HashMap<Key, Kept>,
    /// Counts the changes our own writes and deletes made to the remote's folders: a
    /// listing fetched while it moved may predate one of them, and is not kept.
    listing_epoch: u64,
    /// Buckets the remote said exist, and when.
    buckets: HashMap<String, Instant>,
}

/// Messages to the write-back thread.
pub(super) enum Msg {
    Queue {
        key: Key,
        gen: u64,
        due: Instant,
    },
    Done {
        key: Key,
        gen: u64,
        error: Option<String>,
    },
    Stop(Sender<usize>),
}

pub(super) struct Shared {
    pub inner: Box<dyn Backend>,
    pub opts: CacheOptions,
    pub layout: Layout,
    pub uploads: super::parts::CacheUploads,
    pub state: Mutex<State>,
    /// Signalled whenever an upload ends.
    pub changed: Condvar,
    pub wb: Sender<Msg>,
    pub clock: Arc<dyn Clock>,
    /// Kicks the eviction thread.
    pub evict_kick: Sender<()>,
    /// Keeps the cache dir ours while we run.
    pub _lock: File,
}

pub(super) fn unavailable(msg: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::Unavailable, msg)
}

/// Reservations for writes grow in steps of this much.
const RESERVE_STEP: u64 = 1 << 20;

/// The room a write under way holds in the cache: bytes written, and bytes promised.
#[derive(Default)]
pub(super) struct Room {
    pub written: u64,
    pub reserved: u64,
}

impl Room {
    /// Makes sure `more` bytes past those written are promised, asking the cache for at
    /// least a step at a time.
    pub fn grow(&mut self, sh: &Shared, more: u64) -> Result<()> {
        let need = self.written + more;
        if need <= self.reserved && self.reserved > 0 {
            return Ok(());
        }
        let step = (need - self.reserved.min(need)).max(RESERVE_STEP);
        sh.reserve(step)?;
        self.reserved += step;
        Ok(())
    }

    /// Gives the promised bytes back (the write is committed or dropped).
    pub fn release(&mut self, sh: &Shared) {
        if self.reserved > 0 {
            sh.release(std::mem::take(&mut self.reserved));
        }
    }
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn caches_writes(&self) -> bool {
        self.opts.mode != Mode::Off
    }

    pub fn data_path(&self, key: &Key) -> PathBuf {
        self.layout.data_path(&key.0, &key.1)
    }

    pub fn meta_path(&self, key: &Key) -> PathBuf {
        self.layout.meta_path(&key.0, &key.1)
    }

    /// Free bytes on the cache's filesystem (or the test figure, less what the cache holds).
    pub fn free_space(&self, st: &State) -> u64 {
        if let Some(total) = self.opts.test_free_space {
            let used: u64 = st.items.values().map(Item::bytes).sum();
            return total.saturating_sub(used + st.reserved);
        }
        match rustix::fs::statvfs(&self.layout.data) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
            Err(_) => u64::MAX,
        }
    }

    fn used(st: &State) -> u64 {
        st.items.values().map(Item::bytes).sum::<u64>() + st.reserved
    }

    /// Promises `n` more bytes to a write, evicting clean items if that makes room; fails
    /// (503 SlowDown) when the cache cannot take them.
    pub fn reserve(&self, n: u64) -> Result<()> {
        let mut st = self.lock();
        for attempt in 0..2 {
            let over_size = self
                .opts
                .max_size
                .is_some_and(|max| Self::used(&st) + n > max);
            let free = self.free_space(&st);
            let short = free < n.saturating_add(self.opts.min_free);
            if !over_size && !short {
                st.reserved += n;
                return Ok(());
            }
            if attempt == 0 {
                let limits = evict::Limits {
                    max_age: None,
                    max_size: self.opts.max_size.map(|m| m.saturating_sub(n)),
                    min_free: self.opts.min_free.saturating_add(n),
                };
                self.evict_locked(&mut st, &limits);
            }
        }
        Err(unavailable(
            "The cache is full (--vfs-cache-max-size or --vfs-cache-min-free-space); \
             try again once uploads have drained",
        ))
    }

    pub fn release(&self, n: u64) {
        let mut st = self.lock();
        st.reserved = st.reserved.saturating_sub(n);
    }

    /// Removes the clean, idle items `limits` asks for; returns how many.
    pub fn evict_locked(&self, st: &mut State, limits: &evict::Limits) -> usize {
        let now = self.clock.now();
        let items: Vec<evict::Item<Key>> = st
            .items
            .iter()
            .map(|(k, i)| evict::Item {
                key: k.clone(),
                size: i.bytes(),
                last_use: i.last_use,
                pinned: i.rec.dirty || i.hold || st.uploading.contains_key(k),
            })
            .collect();
        let free = self.free_space(st);
        let victims = evict::plan(&items, now, limits, free);
        for key in &victims {
            st.items.remove(key);
            self.remove_files(key);
        }
        if !victims.is_empty() {
            log::info!("cache: evicted {} clean items", victims.len());
        }
        victims.len()
    }

    /// Data first, then the record: a crash between leaves a record without data, which
    /// start-up drops when clean.
    pub fn remove_files(&self, key: &Key) {
        store::remove_with_parents(&self.data_path(key), &self.layout.data);
        store::remove_with_parents(&self.meta_path(key), &self.layout.meta);
    }

    pub fn persist(&self, key: &Key, rec: &Record) {
        if let Err(e) = store::write_atomic(&self.meta_path(key), &rec.encode()) {
            log::error!("cache: writing the record of {}/{}: {e}", key.0, key.1);
        }
    }

    /// A new generation number: later writes have higher ones.
    pub fn new_gen(&self) -> u64 {
        let mut st = self.lock();
        st.next_gen += 1;
        st.next_gen
    }

    /// Stops uploads of `key` and waits for one in flight to end, so that a delete or a
    /// write past the cache lands after it. Returns whether an item was held.
    pub fn hold(&self, key: &Key) -> bool {
        let mut st = self.lock();
        let held = match st.items.get_mut(key) {
            Some(item) => {
                item.hold = true;
                true
            }
            None => false,
        };
        while st.uploading.contains_key(key) {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        held
    }

    /// Ends a [`hold`](Self::hold): with `drop_item` the item goes (the remote now has what
    /// the client asked for); otherwise it stays, and a dirty one is queued again.
    pub fn unhold(&self, key: &Key, drop_item: bool) {
        let mut st = self.lock();
        if drop_item {
            if st.items.remove(key).is_some() {
                self.remove_files(key);
            }
            return;
        }
        if let Some(item) = st.items.get_mut(key) {
            item.hold = false;
            if item.rec.dirty {
                let gen = item.rec.gen;
                drop(st);
                self.queue(key.clone(), gen, self.clock.now());
            }
        }
    }

    pub fn queue(&self, key: Key, gen: u64, due: Instant) {
        let _ = self.wb.send(Msg::Queue { key, gen, due });
    }

    /// The delay the retries double from: `--vfs-write-back`, or a second when that is 0
    /// (uploads before the answer, whose retries after a restart still need a pace).
    pub fn retry_base(&self) -> Duration {
        match self.opts.write_back.is_zero() {
            true => Duration::from_secs(1),
            false => self.opts.write_back,
        }
    }

    /// What the remote's object is, as a string that changes when it does.
    pub fn fingerprint(&self, info: &ObjectInfo) -> String {
        let etag = info.meta.as_ref().and_then(|m| m.etag.as_deref());
        let mtime = info
            .mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let keeps = self.inner.keeps_etags();
        let mut fp = info.size.to_string();
        if !(self.opts.fast_fingerprint && keeps) {
            fp.push_str(&format!(",{mtime}"));
        }
        if let Some(e) = etag.filter(|_| keeps || !self.opts.fast_fingerprint) {
            fp.push(',');
            fp.push_str(e);
        }
        fp
    }

    // ---- the remote's listings and buckets, kept in memory ----

    /// Whether `bucket` is known to exist: from the remote within `--dir-cache-time` when
    /// `fresh`; otherwise from any answer of the remote's, or from the items in it.
    pub fn bucket_known(&self, bucket: &str, fresh: bool) -> bool {
        let st = self.lock();
        let seen = st.buckets.get(bucket);
        if fresh {
            return seen.is_some_and(|at| self.is_fresh(*at));
        }
        seen.is_some() || st.items.range(bucket_range(bucket)).next().is_some()
    }

    /// Whether something learnt from the remote at `at` is within `--dir-cache-time`.
    fn is_fresh(&self, at: Instant) -> bool {
        self.clock.now().saturating_duration_since(at) < self.opts.dir_cache_time
    }

    pub fn bucket_seen(&self, bucket: &str, exists: bool) {
        let mut st = self.lock();
        if exists {
            let now = self.clock.now();
            st.buckets.insert(bucket.to_string(), now);
        } else {
            st.buckets.remove(bucket);
            st.listings.retain(|(b, _), _| b != bucket);
        }
    }

    /// The remote's entries of `dir`, from memory while fresh; a stale copy stands in when
    /// the remote cannot be reached.
    pub fn remote_listing(&self, bucket: &str, dir: &str) -> Result<Vec<DirEntry>> {
        let key = (bucket.to_string(), dir.to_string());
        let stamp = self.inner.dir_stamp(bucket, dir);
        {
            let st = self.lock();
            if let Some(k) = st.listings.get(&key) {
                let fresh = match (stamp, k.stamp) {
                    (Some(now), Some(then)) => now == then,
                    _ => self.is_fresh(k.at),
                };
                if fresh {
                    return Ok(k.entries.clone());
                }
            }
        }
        let epoch = self.lock().listing_epoch;
        match self.inner.list_dir(bucket, dir) {
            Ok(entries) => {
                let mut st = self.lock();
                if st.listing_epoch == epoch {
                    let now = self.clock.now();
                    st.listings.insert(
                        key,
                        Kept {
                            at: now,
                            stamp,
                            entries: entries.clone(),
                        },
                    );
                }
                Ok(entries)
            }
            Err(e) if e.kind == ErrorKind::Unavailable => {
                let st = self.lock();
                if let Some(k) = st.listings.get(&key) {
                    log::info!("cache: {bucket}/{dir}: the remote is unavailable ({e}); listing from memory");
                    return Ok(k.entries.clone());
                }
                // A folder the parent's fresh listing did not have is one our own writes
                // made: the remote has nothing in it yet.
                if !dir.is_empty() {
                    let (parent, leaf) = split_key(&dir[..dir.len() - 1]);
                    let parent = st.listings.get(&(bucket.to_string(), parent.to_string()));
                    let fresh = parent.filter(|k| self.is_fresh(k.at));
                    if fresh.is_some_and(|k| !k.entries.iter().any(|e| e.is_dir && e.name == leaf))
                    {
                        return Ok(Vec::new());
                    }
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Our own write of `key` is on the remote: kept listings show it.
    pub fn listed_write(&self, key: &Key, facts: Facts) {
        let mut st = self.lock();
        st.listing_epoch += 1;
        let (dir, name) = split_key(&key.1);
        if let Some(k) = st.listings.get_mut(&(key.0.clone(), dir.to_string())) {
            k.entries.retain(|e| e.is_dir || e.name != name);
            k.entries.push(DirEntry {
                name: name.to_string(),
                facts: Some(facts),
                ..DirEntry::default()
            });
            k.stamp = None;
        }
        // Each parent directory is an entry of its own parent.
        let mut rest = dir;
        while !rest.is_empty() {
            let trimmed = &rest[..rest.len() - 1];
            let (parent, leaf) = split_key(trimmed);
            if let Some(k) = st.listings.get_mut(&(key.0.clone(), parent.to_string())) {
                if !k.entries.iter().any(|e| e.is_dir && e.name == leaf) {
                    k.entries.push(DirEntry {
                        name: leaf.to_string(),
                        is_dir: true,
                        ..DirEntry::default()
                    });
                }
                k.stamp = None;
            }
            rest = parent;
        }
    }

    /// `key` is gone from the remote: its entry leaves the kept listing, and the parents'
    /// listings are read again (the folder may have gone with it).
    pub fn listed_removal(&self, key: &Key) {
        let mut st = self.lock();
        st.listing_epoch += 1;
        let (dir, name) = split_key(&key.1);
        if let Some(k) = st.listings.get_mut(&(key.0.clone(), dir.to_string())) {
            k.entries.retain(|e| e.is_dir || e.name != name);
            k.stamp = None;
        }
        let mut rest = dir;
        while !rest.is_empty() {
            let (parent, _) = split_key(&rest[..rest.len() - 1]);
            st.listings.remove(&(key.0.clone(), parent.to_string()));
            rest = parent;
        }
    }

    /// The entries our items add to `dir`: objects not uploaded yet or uploaded lately, and
    /// folders holding them.
    pub fn overlay(&self, bucket: &str, dir: &str) -> Vec<DirEntry> {
        let st = self.lock();
        let now = self.clock.now();
        let recent = |at: Option<Instant>| {
            at.is_some_and(|t| now.saturating_duration_since(t) < self.opts.dir_cache_time)
        };
        let mut out: Vec<DirEntry> = Vec::new();
        let start = (bucket.to_string(), dir.to_string());
        for ((b, k), item) in st.items.range(start..) {
            if b != bucket || !k.starts_with(dir) {
                break;
            }
            if !(item.rec.dirty || item.hold || recent(item.uploaded)) {
                continue;
            }
            let rest = &k[dir.len()..];
            match rest.split_once('/') {
                Some((sub, _)) => {
                    if !out.iter().any(|e| e.is_dir && e.name == sub) {
                        out.push(DirEntry {
                            name: sub.to_string(),
                            is_dir: true,
                            ..DirEntry::default()
                        });
                    }
                }
                None => out.push(DirEntry {
                    name: rest.to_string(),
                    facts: Some(Facts {
                        size: item.rec.size,
                        mtime: item.rec.mtime,
                        etag: item.rec.meta.etag.clone(),
                    }),
                    ..DirEntry::default()
                }),
            }
        }
        out
    }

    // ---- uploads ----

    /// Marks `key` at `gen` as uploading, if it is due for it; `None` to drop the queue
    /// entry, `Some(false)` to try again shortly (another upload of it is in flight).
    pub fn claim(&self, key: &Key, gen: u64) -> Option<bool> {
        let mut st = self.lock();
        let item = st.items.get(key)?;
        if item.rec.gen != gen || !item.rec.dirty {
            return None;
        }
        if item.hold || st.uploading.contains_key(key) {
            return Some(false);
        }
        st.uploading.insert(key.clone(), gen);
        Some(true)
    }

    /// Uploads generation `gen` of `key` in the shape the client gave it, and marks the item
    /// clean if it is still that generation.
    pub fn upload(&self, key: &Key, gen: u64) -> Result<()> {
        let (rec, file) = {
            let st = self.lock();
            let Some(item) = st.items.get(key).filter(|i| i.rec.gen == gen) else {
                return Ok(());
            };
            (item.rec.clone(), File::open(self.data_path(key))?)
        };
        let info = self.send_up(key, &rec, file)?;
        let fp = self.fingerprint(&info);
        {
            let mut st = self.lock();
            let now = self.clock.now();
            if let Some(item) = st.items.get_mut(key).filter(|i| i.rec.gen == gen) {
                item.uploaded = Some(now);
                item.rec.dirty = false;
                item.rec.tries = 0;
                item.rec.next_try = None;
                item.rec.fingerprint = fp;
                item.rec.pending_data = None;
                item.rec.remote_upload = None;
                let rec = item.rec.clone();
                self.persist(key, &rec);
            }
        }
        self.listed_write(
            key,
            Facts {
                size: rec.size,
                mtime: rec.mtime,
                etag: rec.meta.etag.clone(),
            },
        );
        Ok(())
    }

    /// One PUT, or a multipart upload with the client's part sizes where the object was
    /// made of parts and the remote joins parts itself: either way the remote's ETag is the
    /// one the client was given.
    fn send_up(&self, key: &Key, rec: &Record, mut file: File) -> Result<ObjectInfo> {
        let (bucket, k) = (&key.0, &key.1);
        let store = self.inner.uploads().filter(|u| u.joins());
        if let (false, Some(store), Some(etag)) =
            (rec.meta.parts.is_empty(), store, rec.meta.etag.as_deref())
        {
            // The upload is asked for the object's checksum algorithm and type, and each part
            // carries its own checksum, so the remote ends with the checksum the client got.
            let (upload_meta, alg) = upload_meta(&rec.meta);
            // One an earlier try started (a crash, or a failed abort) goes first.
            if let Some(old) = &rec.remote_upload {
                let _ = store.abort(old);
            }
            let id = store.create(bucket, k, &upload_meta)?;
            self.note_remote_upload(key, rec.gen, Some(id.clone()));
            let sent = (|| -> Result<ObjectInfo> {
                let mut offset = 0;
                for (i, &size) in rec.meta.parts.iter().enumerate() {
                    let number = i as u32 + 1;
                    let mut w = store.part_writer(&id, number, Some(size))?;
                    file.seek(SeekFrom::Start(offset))?;
                    let d = copy_hashing(&mut (&mut file).take(size), &mut w, alg)?;
                    let md5 = crate::util::hex(&d.md5.unwrap_or_default());
                    let ck = d.checksum.map(|(a, v)| (a.name(), crate::util::base64(&v)));
                    w.commit(&md5, ck.as_ref().map(|(a, v)| (*a, v.as_str())))?;
                    offset += size;
                }
                let parts = store.parts(&id)?;
                store.join(&id, &parts, etag)
            })();
            if sent.is_err() && store.abort(&id).is_ok() {
                self.note_remote_upload(key, rec.gen, None);
            }
            return sent;
        }
        let mut w = self.inner.create(bucket, k)?;
        let path = self.data_path(key);
        if !w.adopt(file.try_clone()?, &path)? {
            io::copy(&mut file, &mut w)?;
        }
        w.commit(&rec.meta, Some(rec.mtime))
    }

    /// Records the remote multipart upload an upload of generation `gen` has open (or that
    /// it has none), so that it is never left open on the remote.
    fn note_remote_upload(&self, key: &Key, gen: u64, id: Option<String>) {
        let mut st = self.lock();
        if let Some(item) = st.items.get_mut(key).filter(|i| i.rec.gen == gen) {
            item.rec.remote_upload = id;
            let rec = item.rec.clone();
            self.persist(key, &rec);
        }
    }

    /// An upload failed: the next try is scheduled `--vfs-write-back` doubled per failure
    /// (at most 5 min, with jitter) ahead, and recorded with the item.
    pub fn upload_failed(&self, key: &Key, gen: u64, error: &str, unit: f64) -> Option<Instant> {
        let mut st = self.lock();
        let item = st
            .items
            .get_mut(key)
            .filter(|i| i.rec.gen == gen && i.rec.dirty)?;
        item.rec.tries += 1;
        let delay = super::retry::delay(self.retry_base(), item.rec.tries, unit);
        item.rec.next_try = Some(SystemTime::now() + delay);
        let rec = item.rec.clone();
        self.persist(key, &rec);
        log::warn!(
            "cache: upload of {}/{} failed (try #{}): {error}; next try in {:.1}s",
            key.0,
            key.1,
            rec.tries,
            delay.as_secs_f64()
        );
        Some(self.clock.now() + delay)
    }

    pub fn upload_ended(&self, key: &Key) {
        let mut st = self.lock();
        st.uploading.remove(key);
        self.changed.notify_all();
    }

    /// Records what a full-mode reader fetched, once its bytes are on disk.
    pub fn fill_progress(&self, key: &Key, fill: &Arc<super::full::Fill>) {
        let _ = fill.file.sync_data();
        let ranges = fill.ranges();
        let mut st = self.lock();
        let same = |i: &&mut Item| i.fill.as_ref().is_some_and(|f| Arc::ptr_eq(f, fill));
        if let Some(item) = st.items.get_mut(key).filter(same) {
            item.rec.ranges = ranges;
            item.rec.atime = SystemTime::now();
            let rec = item.rec.clone();
            self.persist(key, &rec);
        }
    }

    /// Drops the (clean) items of a deleted bucket.
    pub fn forget_bucket(&self, bucket: &str) {
        let mut st = self.lock();
        let keys: Vec<Key> = st
            .items
            .range(bucket_range(bucket))
            .filter(|(_, i)| !i.rec.dirty && !i.hold)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            st.items.remove(&k);
            self.remove_files(&k);
        }
    }

    /// Whether `bucket` holds objects not uploaded yet.
    pub fn bucket_has_pending(&self, bucket: &str) -> bool {
        let st = self.lock();
        let pending = st
            .items
            .range(bucket_range(bucket))
            .any(|(_, i)| i.rec.dirty || i.hold);
        pending
    }

    pub fn pending(&self) -> usize {
        self.lock().items.values().filter(|i| i.rec.dirty).count()
    }

    // ---- start-up ----

    /// One record and its data, checked: a commit cut short is finished; a damaged record,
    /// or a dirty one whose data is missing or of the wrong size, is moved aside with its
    /// data; a clean record without data is dropped. `None` for all of those.
    fn load_record(&self, rel: &Path, lost: &Path) -> Option<(Key, Record)> {
        let meta_path = self.layout.meta.join(rel);
        let data_path = self.layout.data.join(rel);
        let key = key_of(rel)?;
        let rec = fs::read(&meta_path)
            .ok()
            .and_then(|raw| Record::decode(&raw));
        let Some(mut rec) = rec else {
            if data_path.exists() {
                store::keep_aside(&data_path, &self.opts.dir, lost, "damaged record");
            }
            store::keep_aside(&meta_path, &self.opts.dir, lost, "damaged record");
            return None;
        };
        if let Some(p) = &rec.pending_data {
            let from = self.layout.own.join(p);
            if from.exists() {
                let _ = fs::rename(&from, &data_path);
            }
        }
        let len = fs::metadata(&data_path).map(|m| m.len()).ok();
        if rec.dirty && len != Some(rec.size) {
            if len.is_some() {
                store::keep_aside(&data_path, &self.opts.dir, lost, "data of the wrong size");
            }
            let why = "dirty record without its data";
            store::keep_aside(&meta_path, &self.opts.dir, lost, why);
            return None;
        }
        if !rec.dirty && len.is_none() {
            let _ = fs::remove_file(&meta_path);
            return None;
        }
        if rec.meta.etag.is_none() && rec.dirty {
            // An rclone record: the ETag is made from the bytes.
            let hashed = File::open(&data_path)
                .map_err(Into::into)
                .and_then(|mut f| copy_hashing(&mut f, &mut io::sink(), None));
            if let Ok(d) = hashed {
                rec.meta.etag = d.etag(crate::vfs::EtagAlg::Md5);
                rec.meta.etag_alg = "MD5".into();
            }
        }
        Some((key, rec))
    }

    /// Rebuilds the items from their records, without asking the remote anything: a commit
    /// cut short is finished, damaged records and the data they describe are moved aside,
    /// clean records without data are dropped. Returns the dirty items to queue.
    pub fn reload(&self) -> Vec<(Key, u64)> {
        use rayon::prelude::*;
        let tmp = self.layout.tmp_dir();
        let lost = self.layout.lost_dir();
        let mut dirty = Vec::new();
        let now_sys = SystemTime::now();
        let now = self.clock.now();
        // Reading records is waiting on the disk: many reads in flight at once pay even on
        // two cores (29,000 records from a cold cache: 2.0 s one at a time).
        let rels = store::walk(&self.layout.meta);
        let load = |rel: &PathBuf| {
            self.load_record(rel, &lost)
                .map(|(k, r)| (rel.clone(), k, r))
        };
        let loaded: Vec<(PathBuf, Key, Record)> = match rayon::ThreadPoolBuilder::new()
            .num_threads(RELOAD_THREADS)
            .thread_name(|i| format!("s3serve:reload{i}"))
            .build()
        {
            Ok(pool) => pool.install(|| rels.par_iter().filter_map(load).collect()),
            Err(_) => rels.iter().filter_map(load).collect(),
        };
        let mut st = self.lock();
        let mut seen_data = std::collections::HashSet::new();
        for (rel, key, rec) in loaded {
            seen_data.insert(rel);
            st.next_gen = st.next_gen.max(rec.gen);
            let idle = now_sys.duration_since(rec.atime).unwrap_or_default();
            let last_use = now.checked_sub(idle).unwrap_or(now);
            if rec.dirty {
                dirty.push((key.clone(), rec.gen));
            }
            st.items.insert(
                key,
                Item {
                    rec,
                    last_use,
                    hold: false,
                    fill: None,
                    uploaded: None,
                },
            );
        }
        // Data without a record was never acknowledged by us; keep it aside all the same.
        for rel in store::walk(&self.layout.data) {
            if !seen_data.contains(&rel) {
                store::keep_aside(
                    &self.layout.data.join(&rel),
                    &self.opts.dir,
                    &lost,
                    "data without a record",
                );
            }
        }
        // Items of older generations reload with generation 0; make them unique.
        let mut gens: Vec<(Key, u64)> = Vec::new();
        let st = &mut *st;
        for (k, item) in st.items.iter_mut() {
            if item.rec.gen == 0 {
                st.next_gen += 1;
                item.rec.gen = st.next_gen;
                gens.push((k.clone(), item.rec.gen));
            }
        }
        for d in dirty.iter_mut() {
            if let Some((_, g)) = gens.iter().find(|(k, _)| *k == d.0) {
                d.1 = *g;
            }
        }
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        dirty
    }
}

/// Threads reading records at start-up.
const RELOAD_THREADS: usize = 8;

/// The key a relative record path names: its first segment is the bucket.
fn key_of(rel: &Path) -> Option<Key> {
    let s = rel.to_str()?;
    let (bucket, key) = s.split_once('/')?;
    Some((bucket.to_string(), key.to_string()))
}

fn bucket_range(bucket: &str) -> std::ops::Range<Key> {
    (bucket.to_string(), String::new())..(format!("{bucket}\0"), String::new())
}

/// `("a/b/", "c")` for `a/b/c`.
fn split_key(key: &str) -> (&str, &str) {
    match key.rfind('/') {
        Some(i) => (&key[..=i], &key[i + 1..]),
        None => ("", key),
    }
}

/// The metadata a multipart upload of the object is created with: its own, with the
/// checksum algorithm and type in place of the checksum's value; and that algorithm.
fn upload_meta(
    meta: &crate::backend::ObjectMeta,
) -> (crate::backend::ObjectMeta, Option<ChecksumAlg>) {
    let mut m = meta.clone();
    let kind = meta
        .checksums
        .iter()
        .find(|(n, _)| n == CHECKSUM_TYPE_KEY)
        .map(|(_, v)| v.clone());
    let alg = meta
        .checksums
        .iter()
        .find(|(n, _)| n != CHECKSUM_TYPE_KEY && n != CHECKSUM_ALGORITHM_KEY)
        .and_then(|(n, _)| ChecksumAlg::parse(n));
    m.checksums.clear();
    m.etag = None;
    m.parts.clear();
    if let Some(a) = alg {
        m.checksums
            .push((CHECKSUM_ALGORITHM_KEY.into(), a.name().into()));
        m.checksums.push((
            CHECKSUM_TYPE_KEY.into(),
            kind.unwrap_or_else(|| "COMPOSITE".into()),
        ));
    }
    (m, alg)
}

/// Copies everything from `r` to `w`, returning the bytes' MD5 and, if asked, checksum.
fn copy_hashing(
    r: &mut dyn Read,
    w: &mut dyn io::Write,
    alg: Option<ChecksumAlg>,
) -> Result<crate::vfs::Digests> {
    let mut h = crate::vfs::Hashes::new(true, false, false).with_checksum(alg);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        h.update(&buf[..n]);
        w.write_all(&buf[..n])?;
    }
    Ok(h.finish())
}
