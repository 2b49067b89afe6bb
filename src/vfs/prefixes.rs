//! Whether a directory holds an object: asked for every common prefix of a delimiter listing,
//! since an empty directory is not a prefix.
//!
//! Answers are remembered. Where the backend watches for removals, a remembered answer costs
//! no syscall: it stands until an entry leaves the directory, or leaves the subdirectory that
//! the answer came from. Elsewhere a directory that held an object directly is remembered with
//! its stamp, which is read again each time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::pages::Inputs;
use super::Vfs;
use crate::backend::{DirStamp, ErrorKind, RemovalWatch, Result, WatchTicket};

/// Past this many remembered directories the memory is cleared.
const HOLDERS_MAX: usize = 100_000;
/// Answers are spread over this many locks, so that workers listing at once rarely meet.
const SHARDS: usize = 32;

/// A directory: its device and inode. Unlike a path, it follows the directory when it moves,
/// and an empty directory made in its old place is a new one.
type Id = (u64, u64);

/// Remembered answers.
pub(super) struct Holders([Shard; SHARDS]);

/// One lock, on a cache line of its own.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<HashMap<Id, Holder, BuildHasherDefault<IdHasher>>>);

/// Inode numbers are already well spread: one multiply mixes them enough.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.write_u64(u64::from(b)));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

enum Holder {
    /// Held an object file directly when the directory had this stamp.
    Stamp(DirStamp),
    /// Held an object file directly when the watch was armed.
    Watched(WatchTicket),
    /// Its subdirectory with this inode held one when the watch was armed.
    Through(WatchTicket, u64),
}

impl Default for Holders {
    fn default() -> Holders {
        Holders(std::array::from_fn(|_| Shard::default()))
    }
}

impl Holders {
    fn lock(&self, id: Id) -> MutexGuard<'_, HashMap<Id, Holder, BuildHasherDefault<IdHasher>>> {
        let shard = (id.1 ^ id.0.rotate_left(17)) as usize % SHARDS;
        self.0[shard].0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, id: Id, holder: Holder) {
        let mut map = self.lock(id);
        if map.len() >= HOLDERS_MAX / SHARDS {
            map.clear();
        }
        map.insert(id, holder);
    }
}

/// Answers for one request.
pub struct PrefixProbe<'a> {
    vfs: &'a Vfs,
}

impl Vfs {
    /// A probe whose answers reflect every change completed before this call.
    pub fn prefix_probe(&self) -> PrefixProbe<'_> {
        if let Some(w) = self.backend.removals() {
            w.catch_up();
        }
        PrefixProbe { vfs: self }
    }
}

impl PrefixProbe<'_> {
    /// Whether directory `dir` (ending with `/`) holds at least one object, at any depth.
    /// `dev` and `ino` identify the directory as its parent's listing names it (0 where
    /// unknown). What a positive answer rests on goes into `inputs`.
    pub fn has_object(
        &self,
        bucket: &str,
        dir: &str,
        dev: u64,
        ino: u64,
        inputs: &mut Inputs,
    ) -> Result<bool> {
        if self.vfs.filter.is_some() {
            return self.filtered(bucket, dir, inputs);
        }
        let Some(w) = self.vfs.backend.removals() else {
            inputs.checkable = false;
            return self.stamped(bucket, dir);
        };
        let id = (dev, ino);
        if ino != 0 && self.remembered(w, id, Some(&mut inputs.tickets)) {
            return Ok(true);
        }
        let found = self.watched(w, bucket, dir, id)?;
        // A positive answer was just remembered, where it could be: its watches are the
        // page's inputs. A negative one has none that would tell when it changes.
        if !(found && ino != 0 && self.remembered(w, id, Some(&mut inputs.tickets))) {
            inputs.checkable = false;
        }
        Ok(found)
    }

    /// With filters, from the filtered listings (kept in the directory cache, and the page's
    /// inputs): whether `dir` holds an object the filters serve, at any depth.
    fn filtered(&self, bucket: &str, dir: &str, inputs: &mut Inputs) -> Result<bool> {
        let listing = match self.vfs.listing(bucket, dir) {
            Ok(l) => l,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        inputs
            .listings
            .push((bucket.to_string(), dir.to_string(), listing.clone()));
        if listing.entries.iter().any(|e| !e.is_dir) {
            return Ok(true);
        }
        for e in &listing.entries {
            if self.filtered(bucket, &format!("{dir}{}", e.name), inputs)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn watched(&self, w: &dyn RemovalWatch, bucket: &str, dir: &str, id: Id) -> Result<bool> {
        let known = id.1 != 0;
        if known && self.remembered(w, id, None) {
            return Ok(true);
        }
        let (entries, ticket) = match w.list_watched(bucket, dir) {
            Ok(l) => l,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        // A ticket for another directory than the listing named (a mount point, or one
        // replaced meanwhile) is not kept.
        let ticket = ticket.filter(|t| known && (t.dev, t.ino) == id);
        if entries.iter().any(|e| !e.is_dir) {
            if let Some(t) = ticket {
                self.vfs.holders.remember(id, Holder::Watched(t));
            }
            return Ok(true);
        }
        for e in entries {
            let sub = format!("{dir}{}/", e.name);
            if self.watched(w, bucket, &sub, (id.0, e.ino))? {
                if let Some(t) = ticket {
                    self.vfs.holders.remember(id, Holder::Through(t, e.ino));
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether a remembered answer for directory `id`, and each one it rests on, still
    /// stands; if so, their tickets are added to `trail`.
    fn remembered(
        &self,
        w: &dyn RemovalWatch,
        mut id: Id,
        mut trail: Option<&mut Vec<WatchTicket>>,
    ) -> bool {
        let start = trail.as_ref().map_or(0, |t| t.len());
        loop {
            let holders = self.vfs.holders.lock(id);
            let (ticket, next) = match holders.get(&id) {
                Some(Holder::Watched(t)) => (t, None),
                Some(Holder::Through(t, child)) => (t, Some(*child)),
                _ => {
                    if let Some(trail) = trail {
                        trail.truncate(start);
                    }
                    return false;
                }
            };
            if !w.unchanged(ticket) {
                if let Some(trail) = trail {
                    trail.truncate(start);
                }
                return false;
            }
            if let Some(trail) = trail.as_deref_mut() {
                trail.push(ticket.clone());
            }
            match next {
                Some(child) => id.1 = child,
                None => return true,
            }
        }
    }

    fn stamped(&self, bucket: &str, dir: &str) -> Result<bool> {
        let stamp = self.vfs.backend.dir_stamp(bucket, dir);
        if let Some(stamp) = stamp {
            let id = (stamp.dev, stamp.ino);
            if let Some(Holder::Stamp(s)) = self.vfs.holders.lock(id).get(&id) {
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
                let id = (stamp.dev, stamp.ino);
                self.vfs.holders.remember(id, Holder::Stamp(stamp));
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
