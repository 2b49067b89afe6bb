//! Directory listings kept in memory (rclone's `--dir-cache-time`), so that a listing of
//! many pages does not read every directory, and stat every file, again for each page.
//!
//! A cached listing is used only while its directory's stamp (identity and modification time)
//! is unchanged and it is younger than the cache time. Every write through S3 renames into or
//! unlinks from the directory, which moves its modification time, so those are seen at once,
//! from this instance or from any other sharing the filesystem. What a stamp cannot show is a
//! file changed in place behind our back: its size and ETag in listings may then be as old as
//! the cache time, as with rclone. GET and HEAD always read the file itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::backend::{DirEntry, DirStamp};

/// Past this many cached entries the cache is emptied. An entry with its ETag takes about
/// 260 bytes (measured: 26 MB for a bucket of 100,000 keys), so this caps it near 35 MB.
const ENTRIES_MAX: usize = 1 << 17;

/// A directory's entries in S3 order: a subdirectory is named and sorted as `name/`.
pub struct Listing {
    pub entries: Vec<Listed>,
    /// The device the directory is on where the backend has one, else 0.
    pub dev: u64,
    /// The directory holds an `--exclude-if-present` marker: nothing in it is served.
    pub marked: bool,
}

/// One entry, with the object file's listing facts once someone asked for them.
pub struct Listed {
    /// The name, with `/` appended for a directory.
    pub name: String,
    pub is_dir: bool,
    /// The inode number where the backend has one, else 0.
    pub ino: u64,
    brief: OnceLock<Option<Brief>>,
}

/// What a listing shows of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Brief {
    pub size: u64,
    pub mtime: SystemTime,
    pub etag: Option<Box<str>>,
}

impl Listing {
    pub fn new(entries: Vec<DirEntry>, dev: u64, marked: bool) -> Listing {
        let mut entries: Vec<Listed> = entries
            .into_iter()
            .map(|e| Listed {
                name: if e.is_dir { e.name + "/" } else { e.name },
                is_dir: e.is_dir,
                ino: e.ino,
                // Facts the backend's listing gave need no stat.
                brief: match e.facts {
                    Some(f) => OnceLock::from(Some(Brief {
                        size: f.size,
                        mtime: f.mtime,
                        etag: f.etag.map(Into::into),
                    })),
                    None => OnceLock::new(),
                },
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Listing {
            entries,
            dev,
            marked,
        }
    }
}

impl Listed {
    /// The entry's facts, read by `read` the first time they are asked for.
    pub fn brief(&self, read: impl FnOnce() -> Option<Brief>) -> Option<&Brief> {
        self.brief.get_or_init(read).as_ref()
    }
}

/// Listings by bucket and directory, with the stamp and time they were read at.
pub struct DirCache {
    ttl: Duration,
    inner: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    dirs: HashMap<(String, String), (DirStamp, Instant, Arc<Listing>)>,
    entries: usize,
}

impl DirCache {
    /// A cache keeping listings for `ttl`; zero keeps none.
    pub fn new(ttl: Duration) -> DirCache {
        DirCache {
            ttl,
            inner: Mutex::default(),
        }
    }

    /// Whether listings are kept at all.
    pub fn keeps_any(&self) -> bool {
        !self.ttl.is_zero()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached listing of `dir`, if it was read at `stamp` within the cache time.
    pub fn get(&self, bucket: &str, dir: &str, stamp: &DirStamp) -> Option<Arc<Listing>> {
        let cached = self.lock();
        let (seen, at, listing) = cached.dirs.get(&(bucket.to_string(), dir.to_string()))?;
        (seen == stamp && at.elapsed() < self.ttl).then(|| listing.clone())
    }

    /// Keeps `listing`, read when the directory had `stamp`. A directory changed within the
    /// last second is not kept: a change in the same clock tick could leave its stamp as it was.
    pub fn put(&self, bucket: &str, dir: &str, stamp: DirStamp, listing: &Arc<Listing>) {
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if self.ttl.is_zero() || stamp.mtime_sec >= now - 1 {
            return;
        }
        let mut cached = self.lock();
        let id = (bucket.to_string(), dir.to_string());
        if let Some((_, _, old)) = cached.dirs.remove(&id) {
            cached.entries -= old.entries.len() + 1;
        }
        let size = listing.entries.len() + 1;
        if cached.entries + size > ENTRIES_MAX {
            cached.dirs.clear();
            cached.entries = 0;
        }
        cached
            .dirs
            .insert(id, (stamp, Instant::now(), listing.clone()));
        cached.entries += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(mtime_sec: i64) -> DirStamp {
        DirStamp {
            dev: 1,
            ino: 2,
            mtime_sec,
            mtime_nsec: 0,
        }
    }

    fn listing() -> Arc<Listing> {
        let e = |name: &str, is_dir| DirEntry {
            name: name.into(),
            is_dir,
            ino: 0,
            facts: None,
        };
        Arc::new(Listing::new(
            vec![e("b", false), e("a", true), e("a-", false)],
            0,
            false,
        ))
    }

    #[test]
    fn entries_sort_in_s3_order() {
        let names: Vec<_> = listing().entries.iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["a-", "a/", "b"]);
    }

    #[test]
    fn a_listing_is_used_only_at_its_stamp_and_within_the_time() {
        let cache = DirCache::new(Duration::from_secs(60));
        let l = listing();
        cache.put("bk", "", stamp(1000), &l);
        assert!(cache.get("bk", "", &stamp(1000)).is_some());
        assert!(cache.get("bk", "", &stamp(1001)).is_none());
        assert!(cache.get("bk", "d/", &stamp(1000)).is_none());
        // Changed within the last second: not kept.
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        cache.put("bk", "new/", stamp(now), &l);
        assert!(cache.get("bk", "new/", &stamp(now)).is_none());
        // A zero cache time keeps nothing.
        let off = DirCache::new(Duration::ZERO);
        off.put("bk", "", stamp(1000), &l);
        assert!(off.get("bk", "", &stamp(1000)).is_none());
    }

    #[test]
    fn the_cache_is_emptied_past_its_bound() {
        let cache = DirCache::new(Duration::from_secs(60));
        let big = Arc::new(Listing::new(
            (0..ENTRIES_MAX / 2 - 1)
                .map(|i| DirEntry {
                    name: i.to_string(),
                    is_dir: false,
                    ino: 0,
                    facts: None,
                })
                .collect(),
            0,
            false,
        ));
        cache.put("bk", "1/", stamp(1000), &big);
        cache.put("bk", "1/", stamp(1000), &big); // a replaced listing is not counted twice
        cache.put("bk", "2/", stamp(1000), &big);
        assert!(cache.get("bk", "1/", &stamp(1000)).is_some());
        assert_eq!(cache.lock().entries, ENTRIES_MAX);
        cache.put("bk", "3/", stamp(1000), &big);
        assert!(cache.get("bk", "1/", &stamp(1000)).is_none());
        assert!(cache.get("bk", "3/", &stamp(1000)).is_some());
        assert_eq!(cache.lock().entries, ENTRIES_MAX / 2);
    }

    #[test]
    fn facts_are_read_once() {
        let l = listing();
        let mut reads = 0;
        let brief = Brief {
            size: 3,
            mtime: SystemTime::UNIX_EPOCH,
            etag: Some("e".into()),
        };
        for _ in 0..3 {
            let got = l.entries[0].brief(|| {
                reads += 1;
                Some(brief.clone())
            });
            assert_eq!(got, Some(&brief));
        }
        assert_eq!(reads, 1);
    }
}
