//! The cache on disk. rclone's layout is kept, so an rclone cache dir reads the same way:
//! an item's bytes at `<cache-dir>/vfs/<remote>/<bucket>/<key>` and its record, JSON, at
//! `<cache-dir>/vfsMeta/<remote>/<bucket>/<key>`. rclone's fields (`ModTime`, `ATime`, `Size`,
//! `Rs`, `Fingerprint`, `Dirty`) come first; ours sit in an `S3serve` sub-object: the
//! generation, the upload tries and the next try's time, the object's metadata as the client
//! sent it, and the temporary file the bytes come from while a commit is under way.
//!
//! Our own working files live in `<cache-dir>/s3serve/<remote>/`: `lock` (one process per
//! cache), `tmp/` (bytes being received), `uploads/` (multipart parts) and `lost/` (data whose
//! record was damaged, kept for a person to look at).
//!
//! A write is committed in this order, so a crash at any instant leaves either the old item
//! or the new one: bytes to `tmp/<gen>` and fsync; the record (naming `tmp/<gen>`) to a
//! temporary, fsync, rename; the bytes renamed into place; both directories fsynced. At
//! start-up a record whose named temporary still exists finishes the rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::backend::ObjectMeta;
use crate::json::{parse_json, Json};

/// A byte range present in an item's data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub pos: u64,
    pub size: u64,
}

/// Merged, sorted byte ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(pub Vec<Range>);

impl Ranges {
    pub fn full(size: u64) -> Ranges {
        Ranges(if size == 0 {
            Vec::new()
        } else {
            vec![Range { pos: 0, size }]
        })
    }

    /// Adds `[pos, pos+size)`, merging neighbours.
    pub fn insert(&mut self, pos: u64, size: u64) {
        if size == 0 {
            return;
        }
        let (mut start, mut end) = (pos, pos + size);
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut placed = false;
        for r in &self.0 {
            let (a, b) = (r.pos, r.pos + r.size);
            if b < start {
                out.push(*r);
            } else if a > end {
                if !placed {
                    out.push(Range {
                        pos: start,
                        size: end - start,
                    });
                    placed = true;
                }
                out.push(*r);
            } else {
                start = start.min(a);
                end = end.max(b);
            }
        }
        if !placed {
            out.push(Range {
                pos: start,
                size: end - start,
            });
        }
        self.0 = out;
    }

    /// The first part of `[pos, end)` not present, if any.
    pub fn first_gap(&self, pos: u64, end: u64) -> Option<(u64, u64)> {
        let mut at = pos;
        for r in &self.0 {
            if r.pos + r.size <= at {
                continue;
            }
            if r.pos > at {
                return Some((at, r.pos.min(end)));
            }
            at = r.pos + r.size;
            if at >= end {
                return None;
            }
        }
        (at < end).then_some((at, end))
    }

    /// Bytes present.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|r| r.size).sum()
    }
}

/// An item's record, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Last local modification (the object's mtime).
    pub mtime: SystemTime,
    /// Last use, for eviction.
    pub atime: SystemTime,
    pub size: u64,
    pub ranges: Ranges,
    /// What the item was fetched as or uploaded to; empty when the upstream has never had it.
    pub fingerprint: String,
    pub dirty: bool,
    pub gen: u64,
    pub tries: u32,
    /// When the next upload try is due (wall clock), for a dirty item that failed before.
    pub next_try: Option<SystemTime>,
    /// The object's metadata (ETag, headers, user metadata, checksums, parts).
    pub meta: ObjectMeta,
    /// The temporary the bytes are renamed from while a commit is under way.
    pub pending_data: Option<String>,
    /// The remote's multipart upload an upload of this item started: recorded before its
    /// parts go, so the next try (after a crash too) aborts it rather than leaving it open.
    pub remote_upload: Option<String>,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut o = String::with_capacity(512);
        o.push_str("{\n");
        o.push_str(&format!("\t\"ModTime\": \"{}\",\n", rfc3339(self.mtime)));
        o.push_str(&format!("\t\"ATime\": \"{}\",\n", rfc3339(self.atime)));
        o.push_str(&format!("\t\"Size\": {},\n", self.size));
        if self.ranges.0.is_empty() {
            o.push_str("\t\"Rs\": null,\n");
        } else {
            let rs: Vec<String> = self
                .ranges
                .0
                .iter()
                .map(|r| format!("{{\"Pos\": {}, \"Size\": {}}}", r.pos, r.size))
                .collect();
            o.push_str(&format!("\t\"Rs\": [{}],\n", rs.join(", ")));
        }
        o.push_str(&format!(
            "\t\"Fingerprint\": {},\n",
            quote(&self.fingerprint)
        ));
        o.push_str(&format!("\t\"Dirty\": {},\n", self.dirty));
        let meta = String::from_utf8_lossy(&self.meta.encode(self.size, self.mtime)).into_owned();
        o.push_str("\t\"S3serve\": {\n");
        o.push_str(&format!("\t\t\"Gen\": {},\n", self.gen));
        o.push_str(&format!("\t\t\"Tries\": {},\n", self.tries));
        let next = self.next_try.map_or(0, unix_secs);
        o.push_str(&format!("\t\t\"NextTry\": {next},\n"));
        // As a string: a JSON number (a double) cannot hold nanoseconds since 1970.
        o.push_str(&format!(
            "\t\t\"MTimeNs\": \"{}\",\n",
            unix_nanos(self.mtime)
        ));
        if let Some(p) = &self.pending_data {
            o.push_str(&format!("\t\t\"Data\": {},\n", quote(p)));
        }
        if let Some(u) = &self.remote_upload {
            o.push_str(&format!("\t\t\"UploadId\": {},\n", quote(u)));
        }
        o.push_str(&format!("\t\t\"Object\": {}\n", quote(&meta)));
        o.push_str("\t}\n}\n");
        o.into_bytes()
    }

    /// Reads a record; `None` when it is damaged. rclone's own records (without our
    /// sub-object) read as items without object metadata.
    pub fn decode(raw: &[u8]) -> Option<Record> {
        let doc = parse_json(std::str::from_utf8(raw).ok()?)?;
        let Json::Obj(fields) = &doc else {
            return None;
        };
        let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let size = num(get("Size")?)?;
        let mtime = time(get("ModTime")?)?;
        let atime = get("ATime").and_then(time).unwrap_or(mtime);
        let mut ranges = Ranges::default();
        match get("Rs")? {
            Json::Null => {}
            Json::Arr(rs) => {
                for r in rs {
                    let Json::Obj(r) = r else { return None };
                    let f = |n: &str| r.iter().find(|(k, _)| k == n).and_then(|(_, v)| num(v));
                    ranges.insert(f("Pos")?, f("Size")?);
                }
            }
            _ => return None,
        }
        let fingerprint = match get("Fingerprint")? {
            Json::Str(s) => s.clone(),
            _ => return None,
        };
        let dirty = match get("Dirty")? {
            Json::Bool(b) => *b,
            _ => return None,
        };
        let mut rec = Record {
            mtime,
            atime,
            size,
            ranges,
            fingerprint,
            dirty,
            gen: 0,
            tries: 0,
            next_try: None,
            meta: ObjectMeta::default(),
            pending_data: None,
            remote_upload: None,
        };
        if let Some(ours) = get("S3serve") {
            let Json::Obj(ours) = ours else { return None };
            let f = |n: &str| ours.iter().find(|(k, _)| k == n).map(|(_, v)| v);
            rec.gen = num(f("Gen")?)?;
            rec.tries = num(f("Tries")?)? as u32;
            rec.next_try = match num(f("NextTry")?)? {
                0 => None,
                s => Some(UNIX_EPOCH + Duration::from_secs(s)),
            };
            if let Some(Json::Str(ns)) = f("MTimeNs") {
                rec.mtime = UNIX_EPOCH + Duration::from_nanos(ns.parse().ok()?);
            }
            rec.pending_data = match f("Data") {
                Some(Json::Str(s)) => Some(s.clone()),
                None => None,
                _ => return None,
            };
            rec.remote_upload = match f("UploadId") {
                Some(Json::Str(s)) => Some(s.clone()),
                None => None,
                _ => return None,
            };
            let Json::Str(meta) = f("Object")? else {
                return None;
            };
            rec.meta = ObjectMeta::decode(meta.as_bytes(), rec.size, rec.mtime)?;
        }
        Some(rec)
    }
}

fn num(v: &Json) -> Option<u64> {
    match v {
        Json::Num(n) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
        _ => None,
    }
}

fn time(v: &Json) -> Option<SystemTime> {
    match v {
        Json::Str(s) => crate::util::parse_iso8601(s),
        _ => None,
    }
}

fn rfc3339(t: SystemTime) -> String {
    crate::util::iso8601(t)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Where one remote's cache lives.
pub struct Layout {
    pub data: PathBuf,
    pub meta: PathBuf,
    pub own: PathBuf,
}

impl Layout {
    /// `remote` is rclone's name for the remote with its root (`local/srv/data`, `store/bkt`).
    pub fn new(cache_dir: &Path, remote: &str) -> Layout {
        let remote = remote.trim_matches('/');
        let own_name: String = remote
            .chars()
            .map(|c| if c == '/' { '_' } else { c })
            .collect();
        Layout {
            data: cache_dir.join("vfs").join(remote),
            meta: cache_dir.join("vfsMeta").join(remote),
            own: cache_dir.join("s3serve").join(own_name),
        }
    }

    pub fn data_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.data.join(bucket).join(key)
    }

    pub fn meta_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.meta.join(bucket).join(key)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.own.join("tmp")
    }

    pub fn lost_dir(&self) -> PathBuf {
        self.own.join("lost")
    }
}

/// Whether `key` can be an item: a file path under the bucket (not a folder marker).
pub fn storable(key: &str) -> bool {
    !key.is_empty()
        && !key.ends_with('/')
        && !key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
}

/// Creates `dir` and its missing parents, each made durable by an fsync of its parent.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` durably: a temporary beside it, fsync, rename. The directory is
/// not synced; the caller does that once for all its renames.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("no parent"))?;
    create_dirs(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.s3serve-tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// Removes `path` and then its parents left empty, up to (not including) `stop`.
pub fn remove_with_parents(path: &Path, stop: &Path) {
    let _ = fs::remove_file(path);
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Moves `path` (data or record) into `lost`, keeping its name relative to `base` (the
/// cache dir, so data and record do not collide), and says so.
pub fn keep_aside(path: &Path, base: &Path, lost: &Path, why: &str) {
    let rel = path.strip_prefix(base).unwrap_or(path);
    let stamp = unix_secs(SystemTime::now());
    let target = lost.join(stamp.to_string()).join(rel);
    let moved = target
        .parent()
        .map_or(Ok(()), create_dirs)
        .and_then(|()| fs::rename(path, &target));
    match moved {
        Ok(()) => log::error!(
            "cache: {why}: {} kept aside at {}",
            path.display(),
            target.display()
        ),
        Err(e) => log::error!(
            "cache: {why}: {} could not be moved aside ({e}); left where it is",
            path.display()
        ),
    }
}

/// Every file under `root`, as paths relative to it (hidden temporaries left out).
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let path = rel.join(&name);
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) if name.to_string_lossy().ends_with(".s3serve-tmp") => {
                    let _ = fs::remove_file(root.join(&path));
                }
                Ok(_) => out.push(path),
                Err(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_find_gaps() {
        let mut r = Ranges::default();
        r.insert(10, 10);
        r.insert(30, 10);
        assert_eq!(r.first_gap(0, 50), Some((0, 10)));
        assert_eq!(r.first_gap(10, 50), Some((20, 30)));
        r.insert(15, 20);
        assert_eq!(r.0, vec![Range { pos: 10, size: 30 }]);
        assert_eq!(r.first_gap(10, 40), None);
        assert_eq!(r.first_gap(12, 45), Some((40, 45)));
        r.insert(0, 10);
        assert_eq!(r.0, vec![Range { pos: 0, size: 40 }]);
        assert_eq!(r.bytes(), 40);
    }

    #[test]
    fn records_round_trip_and_damage_is_seen() {
        let mtime = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let short = ObjectMeta {
            etag: Some("abc".into()),
            etag_alg: "MD5".into(),
            ..ObjectMeta::default()
        };
        let rec = Record {
            mtime,
            // Kept to the millisecond, as rclone writes it.
            atime: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            size: 5,
            ranges: Ranges::full(5),
            fingerprint: String::new(),
            dirty: true,
            gen: 7,
            tries: 3,
            next_try: Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            meta: ObjectMeta {
                etag: Some("abc".into()),
                etag_alg: "MD5".into(),
                headers: vec![("content-type".into(), "text/x \"q\"\n".into())],
                user: vec![("k".into(), "v\tw".into())],
                ..ObjectMeta::default()
            },
            pending_data: Some("tmp/7".into()),
            remote_upload: Some("dXA.x".into()),
        };
        let raw = rec.encode();
        assert_eq!(Record::decode(&raw), Some(rec.clone()));
        // Nanosecond mtimes survive, whichever form the object's metadata takes.
        let plain = Record {
            meta: short,
            ..rec.clone()
        };
        assert_eq!(Record::decode(&plain.encode()), Some(plain));
        assert_eq!(Record::decode(&raw[..raw.len() / 2]), None);
        assert_eq!(Record::decode(b"garbage"), None);
        // rclone's own record, without our fields.
        let rclone = br#"{
	"ModTime": "2026-11-26T13:58:41.442056754Z",
	"ATime": "2026-11-26T13:58:41.442056754Z",
	"Size": 300000,
	"Rs": [{"Pos": 0, "Size": 300000}],
	"Fingerprint": "",
	"Dirty": true
}"#;
        let r = Record::decode(rclone).expect("rclone's record");
        assert!(r.dirty);
        assert_eq!(r.ranges, Ranges::full(300000));
    }

    #[test]
    fn only_plain_file_keys_are_storable() {
        assert!(storable("a/b.txt"));
        assert!(!storable("dir/"));
        assert!(!storable("a//b"));
        assert!(!storable(""));
    }
}
