//! Whether a directory holds an object: asked for every common prefix of a delimiter listing,
//! since an empty directory is not a prefix.
//!
//! Answers are remembered. Where the backend watches for removals, a remembered answer costs
//! no syscall: it stands until an entry leaves the directory, or leaves the subdirectory that
//! the answer came from. Elsewhere a directory that held an object directly is remembered with
//! its stamp, which is read again each time.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::Vfs;
use crate::backend::{DirStamp, ErrorKind, RemovalWatch, Result, WatchTicket};

/// Past this many remembered directories the memory is cleared.
const HOLDERS_MAX: usize = 100_000;
/// Answers are spread over this many locks, so that workers listing at once rarely meet.
const SHARDS: usize = 32;

/// Remembered answers, by `bucket/dir`.
pub(super) struct Holders([Shard; SHARDS]);

/// One lock, on a cache line of its own.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<HashMap<String, Holder>>);

impl Default for Holders {
    fn default() -> Holders {
        Holders(std::array::from_fn(|_| Shard::default()))
    }
}

enum Holder {
    /// Held an object file directly when the directory had this stamp.
    Stamp(DirStamp),
    /// Held an object file directly when the watch was armed.
    Watched(WatchTicket),
    /// Its subdirectory (name ending with `/`, and inode) held one when the watch was armed.
    Through(WatchTicket, String, u64),
}

impl Holders {
    fn lock(&self, key: &str) -> MutexGuard<'_, HashMap<String, Holder>> {
        // FNV-1a: the shard only needs to differ between neighbouring names.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        self.0[hash as usize % SHARDS]
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, key: &str, holder: Holder) {
        let mut map = self.lock(key);
        if map.len() >= HOLDERS_MAX / SHARDS {
            map.clear();
        }
        map.insert(key.to_string(), holder);
    }
}

/// Answers for one request.
pub struct PrefixProbe<'a> {
    vfs: &'a Vfs,
    /// Scratch for `bucket/dir` keys.
    key: String,
}

impl Vfs {
    /// A probe whose answers reflect every change completed before this call.
    pub fn prefix_probe(&self) -> PrefixProbe<'_> {
        if let Some(w) = self.backend.removals() {
            w.catch_up();
        }
        PrefixProbe {
            vfs: self,
            key: String::new(),
        }
    }
}

impl PrefixProbe<'_> {
    /// Whether directory `dir` (ending with `/`) holds at least one object, at any depth.
    /// `ino` is the directory's inode as its parent's listing names it (0 where unknown).
    pub fn has_object(&mut self, bucket: &str, dir: &str, ino: u64) -> Result<bool> {
        match self.vfs.backend.removals() {
            Some(w) => self.watched(w, bucket, dir, ino),
            None => self.stamped(bucket, dir),
        }
    }

    fn set_key(&mut self, bucket: &str, dir: &str) {
        self.key.clear();
        self.key.push_str(bucket);
        self.key.push('/');
        self.key.push_str(dir);
    }

    fn watched(&mut self, w: &dyn RemovalWatch, bucket: &str, dir: &str, ino: u64) -> Result<bool> {
        if ino != 0 && self.remembered(w, bucket, dir, ino) {
            return Ok(true);
        }
        let (entries, ticket) = match w.list_watched(bucket, dir) {
            Ok(l) => l,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        // A ticket for another inode than the listing named (a mount point, or a directory
        // replaced meanwhile) is not kept.
        let ticket = ticket.filter(|t| ino != 0 && t.ino == ino);
        if entries.iter().any(|e| !e.is_dir) {
            if let Some(t) = ticket {
                self.set_key(bucket, dir);
                self.vfs.holders.remember(&self.key, Holder::Watched(t));
            }
            return Ok(true);
        }
        for e in entries {
            let sub = format!("{dir}{}/", e.name);
            if self.watched(w, bucket, &sub, e.ino)? {
                if let Some(t) = ticket {
                    self.set_key(bucket, dir);
                    let child = Holder::Through(t, format!("{}/", e.name), e.ino);
                    self.vfs.holders.remember(&self.key, child);
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether a remembered answer for `dir`, and each one it rests on, still stands.
    fn remembered(&mut self, w: &dyn RemovalWatch, bucket: &str, dir: &str, ino: u64) -> bool {
        self.set_key(bucket, dir);
        let mut ino = ino;
        loop {
            let holders = self.vfs.holders.lock(&self.key);
            match holders.get(&self.key) {
                Some(Holder::Watched(t)) => return t.ino == ino && w.unchanged(t),
                Some(Holder::Through(t, child, child_ino)) if t.ino == ino && w.unchanged(t) => {
                    let child = child.clone();
                    ino = *child_ino;
                    drop(holders);
                    self.key.push_str(&child);
                }
                _ => return false,
            }
        }
    }

    fn stamped(&mut self, bucket: &str, dir: &str) -> Result<bool> {
        let stamp = self.vfs.backend.dir_stamp(bucket, dir);
        self.set_key(bucket, dir);
        if let Some(stamp) = stamp {
            if let Some(Holder::Stamp(s)) = self.vfs.holders.lock(&self.key).get(&self.key) {
                if *s == stamp {
                    return Ok(true);
                }
            }
        }
        let entries = match self.vfs.backend.list_dir(bucket, dir) {
            Ok(e) => e,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if entries.iter().any(|e| !e.is_dir) {
            // A directory changed within the last second is not remembered: a change in the
            // same clock tick could leave its modification time as it was.
            let settled = |s: &DirStamp| {
                let now = SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                s.mtime_sec < now - 1
            };
            if let Some(stamp) = stamp.filter(settled) {
                self.set_key(bucket, dir);
                self.vfs.holders.remember(&self.key, Holder::Stamp(stamp));
            }
            return Ok(true);
        }
        for e in entries {
            if self.stamped(bucket, &format!("{dir}{}/", e.name))? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
