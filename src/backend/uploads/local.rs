//! An upload is the directory `.s3serve/uploads/<id>/`: its `manifest`, its parts' records,
//! and once completed a `done` file holding the object's ETag. A part written to a file of its
//! own is the file `part-<number>-<md5>`; `slots` covers parts written in place.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, FlockOperation};

use super::slots::{self, DATA};
use super::{PartInfo, PartWriter, UploadInfo, Uploads};
use crate::backend::local::DurableFile;
use crate::backend::meta::{parse_lines, push_line};
use crate::backend::{BackendError, ErrorKind, ObjectMeta, ObjectWriter, Result};
use crate::temps::TEMP_PREFIX;

pub struct LocalUploads {
    dir: PathBuf,
    /// Mode for the shared part file, which may become an object.
    file_mode: u32,
}

fn no_upload() -> BackendError {
    BackendError::new(
        ErrorKind::NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    )
}

/// Upload ids are ours: 32 upper-case hex digits, which also keeps them safe as file names.
fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
}

/// A part's record: `part-…` is the part's own file, `slot-…` a place in `DATA`.
pub(super) fn part_name(number: u32, md5: &str) -> String {
    format!("part-{number:05}-{md5}")
}

pub(super) fn slot_name(number: u32, md5: &str) -> String {
    format!("slot-{number:05}-{md5}")
}

pub(super) fn claim_name(number: u32) -> String {
    format!("claim-{number:05}")
}

/// Number, MD5 and whether it is a slot, for a part's record name.
fn parse_part_name(name: &str) -> Option<(u32, &str, bool)> {
    let (slot, rest) = match name.strip_prefix("part-") {
        Some(rest) => (false, rest),
        None => (true, name.strip_prefix("slot-")?),
    };
    let (n, md5) = rest.split_once('-')?;
    if !md5.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None; // a part's checksum file, `<record>.ck`
    }
    Some((n.parse().ok()?, md5, slot))
}

/// The checksum stored beside a part, `ALG TAB base64`.
fn read_part_checksum(path: &Path) -> Option<(String, String)> {
    let text = fs::read_to_string(path).ok()?;
    let (alg, value) = text.trim_end().split_once('\t')?;
    Some((alg.to_string(), value.to_string()))
}

impl LocalUploads {
    pub fn open(root: &Path, file_mode: u32) -> Result<LocalUploads> {
        let dir = root
            .join(crate::backend::key::HIDDEN_PREFIX)
            .join("uploads");
        LocalUploads::open_in(&dir, file_mode)
    }

    /// Keeps uploads in `dir` itself.
    pub fn open_in(dir: &Path, file_mode: u32) -> Result<LocalUploads> {
        let dir = dir.to_path_buf();
        fs::create_dir_all(&dir)?;
        Ok(LocalUploads { dir, file_mode })
    }

    fn path(&self, id: &str) -> Result<PathBuf> {
        if !valid_id(id) {
            return Err(no_upload());
        }
        let p = self.dir.join(id);
        if !p.is_dir() {
            return Err(no_upload());
        }
        Ok(p)
    }

    fn pending(&self, id: &str) -> Result<PathBuf> {
        let p = self.path(id)?;
        if p.join("done").exists() {
            return Err(no_upload());
        }
        Ok(p)
    }

    fn read_info(&self, id: &str, p: &Path) -> Result<UploadInfo> {
        let text = fs::read_to_string(p.join("manifest")).map_err(|_| no_upload())?;
        let mut info = UploadInfo {
            id: id.to_string(),
            bucket: String::new(),
            key: String::new(),
            initiated: UNIX_EPOCH,
            meta: ObjectMeta::default(),
            done_etag: fs::read_to_string(p.join("done")).ok(),
            part_checksums: true,
        };
        let lines = parse_lines(&text).ok_or_else(|| {
            BackendError::new(
                ErrorKind::Io,
                format!("damaged manifest in {}", p.display()),
            )
        })?;
        for (n, v) in lines {
            match n.as_str() {
                "bucket" => info.bucket = v,
                "key" => info.key = v,
                "initiated" => {
                    info.initiated = UNIX_EPOCH + Duration::from_nanos(v.parse().unwrap_or(0))
                }
                "meta" => {
                    info.meta = ObjectMeta::decode(v.as_bytes(), 0, UNIX_EPOCH).unwrap_or_default()
                }
                _ => {}
            }
        }
        Ok(info)
    }

    /// Removes temporaries of part writes that died with their process, and the folders of
    /// uploads whose creation or removal died with it (`<TEMP_PREFIX><id>`, `<TEMP_PREFIX>gone-…`).
    pub fn sweep_temporaries(&self) -> usize {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let temp = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
            if temp && entry.file_type().is_ok_and(|t| t.is_dir()) {
                removed += usize::from(remove_dir_if_unlocked(&entry.path()));
            } else {
                removed += crate::temps::sweep_dir(&entry.path());
            }
        }
        removed
    }
}

pub(super) fn new_id() -> String {
    format!(
        "{}{}",
        crate::util::unique_token(),
        crate::util::unique_token()
    )
}

impl Uploads for LocalUploads {
    fn create(&self, bucket: &str, key: &str, meta: &ObjectMeta) -> Result<String> {
        let id = new_id();
        let tmp = self.dir.join(format!("{TEMP_PREFIX}{id}"));
        fs::create_dir(&tmp)?;
        // Held until the upload is published, so that a sweep leaves it alone (best effort:
        // a filesystem without directory locks only loses that protection).
        let _lock = lock_dir(&tmp);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut text = String::new();
        push_line(&mut text, "bucket", bucket);
        push_line(&mut text, "key", key);
        push_line(&mut text, "initiated", &now.to_string());
        push_line(
            &mut text,
            "meta",
            &String::from_utf8_lossy(&meta.encode(0, UNIX_EPOCH)),
        );
        let mut f = File::create(tmp.join("manifest"))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(&id))?;
        Ok(id)
    }

    fn info(&self, id: &str) -> Result<UploadInfo> {
        let p = self.path(id)?;
        self.read_info(id, &p)
    }

    fn list(&self, bucket: &str) -> Result<Vec<UploadInfo>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)?.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !valid_id(&id) {
                continue;
            }
            match self.read_info(&id, &entry.path()) {
                Ok(info) if info.bucket == bucket && info.done_etag.is_none() => out.push(info),
                _ => {}
            }
        }
        Ok(out)
    }

    fn part_writer(
        &self,
        id: &str,
        number: u32,
        size: Option<u64>,
    ) -> Result<Box<dyn PartWriter + '_>> {
        let dir = self.pending(id)?;
        if let Some(writer) = slots::writer(&dir, number, size, self.file_mode)? {
            return Ok(Box::new(writer));
        }
        // A sweep may take the temporary before it is locked: then it is made again.
        let (name, file) = crate::temps::create_locked(|name| {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(name))
        })?;
        Ok(Box::new(LocalPartWriter {
            temp: dir.join(name),
            dir,
            file: DurableFile::new(file),
            number,
            room: size.unwrap_or(u64::MAX),
            committed: false,
        }))
    }

    fn parts(&self, id: &str) -> Result<Vec<PartInfo>> {
        let dir = self.pending(id)?;
        let mut parts = Vec::new();
        for entry in fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((number, md5, slot)) = parse_part_name(&name) else {
                continue;
            };
            let Ok(md) = entry.metadata() else { continue };
            let (offset, size) = if slot {
                let Some((offset, size)) = slots::read_slot(&entry.path()) else {
                    continue;
                };
                (Some(offset), size)
            } else {
                (None, md.len())
            };
            let mtime = md.modified().unwrap_or(UNIX_EPOCH);
            let checksum = read_part_checksum(&dir.join(format!("{name}.ck")));
            parts.push(PartInfo {
                number,
                etag: md5.to_string(),
                size,
                mtime,
                checksum,
                offset,
            });
        }
        parts.sort_by_key(|p| (p.number, std::cmp::Reverse(p.mtime)));
        parts.dedup_by_key(|p| p.number); // a racing re-upload: the newest wins
        Ok(parts)
    }

    fn assemble(&self, id: &str, parts: &[PartInfo], dst: &mut dyn ObjectWriter) -> Result<()> {
        let dir = self.pending(id)?;
        if slots::assemble(&dir, parts, dst)? {
            return Ok(());
        }
        let vanished = |number: u32| {
            BackendError::new(
                ErrorKind::Io,
                format!("part {number} vanished during completion"),
            )
        };
        let mut data: Option<File> = None;
        for part in parts {
            let own;
            let (src, from) = match part.offset {
                Some(offset) => {
                    if data.is_none() {
                        data = Some(File::open(dir.join(DATA)).map_err(|_| vanished(part.number))?);
                    }
                    (data.as_ref().unwrap(), offset)
                }
                None => {
                    own = File::open(dir.join(part_name(part.number, &part.etag)))
                        .map_err(|_| vanished(part.number))?;
                    (&own, 0)
                }
            };
            match dst.file() {
                Some(file) => crate::backend::local::append_on_disk(src, from, file, part.size)?,
                None => {
                    let mut reader = src.try_clone()?;
                    reader.seek(SeekFrom::Start(from))?;
                    let n = io::copy(&mut reader.take(part.size), dst)?;
                    if n != part.size {
                        return Err(BackendError::new(
                            ErrorKind::Io,
                            "a part shrank during completion",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn mark_done(&self, id: &str, etag: &str) -> Result<()> {
        let dir = self.path(id)?;
        let tmp = dir.join(format!("{TEMP_PREFIX}done"));
        fs::write(&tmp, etag)?;
        fs::rename(&tmp, dir.join("done"))?;
        for entry in fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name();
            if name != "manifest" && name != "done" {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn abort(&self, id: &str) -> Result<()> {
        let dir = self.pending(id)?;
        remove_upload_dir(&dir)
    }

    fn expire(&self, pending: Option<SystemTime>, done: SystemTime) -> usize {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let cutoff = if path.join("done").exists() {
                Some(done)
            } else {
                pending
            };
            let Some(cutoff) = cutoff else { continue };
            if last_touched(&path) < cutoff && remove_upload_dir(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    fn count(&self) -> usize {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                valid_id(&e.file_name().to_string_lossy()) && !e.path().join("done").exists()
            })
            .count()
    }
}

/// The newest mtime among an upload's files: a part written recently keeps it alive.
fn last_touched(dir: &Path) -> SystemTime {
    let own = fs::metadata(dir)
        .and_then(|m| m.modified())
        .unwrap_or(UNIX_EPOCH);
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .fold(own, SystemTime::max)
}

/// Removes an upload: first renamed out of the way, so a half-removed upload is never seen.
/// A removal cut short by a crash leaves that folder to the start-up sweep.
fn remove_upload_dir(dir: &Path) -> Result<()> {
    let gone = dir.with_file_name(format!("{TEMP_PREFIX}gone-{}", crate::util::unique_token()));
    fs::rename(dir, &gone).map_err(|_| no_upload())?;
    let _lock = lock_dir(&gone);
    fs::remove_dir_all(&gone)?;
    Ok(())
}

/// An exclusive lock on the folder `dir`, if the filesystem gives one.
fn lock_dir(dir: &Path) -> Option<File> {
    let file = File::open(dir).ok()?;
    rfs::flock(&file, FlockOperation::NonBlockingLockExclusive).ok()?;
    Some(file)
}

/// Removes the temporary folder `dir` if no live process holds its lock; true if it did.
fn remove_dir_if_unlocked(dir: &Path) -> bool {
    lock_dir(dir).is_some() && fs::remove_dir_all(dir).is_ok()
}

/// Refuses bytes past a part's declared length, which would run into the next part's place.
pub(super) fn take_room(room: &mut u64, len: usize) -> io::Result<()> {
    *room = room.checked_sub(len as u64).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the part is longer than its declared length",
        )
    })?;
    Ok(())
}

/// Makes a written part visible: its checksum file first, then its record `name` by renaming
/// `temp`; then drops older records of the same number, since a re-upload replaces a part.
pub(super) fn publish(
    dir: &Path,
    temp: &Path,
    number: u32,
    name: &str,
    checksum: Option<(&str, &str)>,
) -> Result<()> {
    let ck = dir.join(format!("{name}.ck"));
    match checksum {
        Some((alg, value)) => {
            let tmp = dir.join(format!("{TEMP_PREFIX}{}", crate::util::unique_token()));
            fs::write(&tmp, format!("{alg}\t{value}\n"))?;
            fs::rename(&tmp, &ck).map_err(|_| no_upload())?;
        }
        None => {
            let _ = fs::remove_file(&ck);
        }
    }
    fs::rename(temp, dir.join(name)).map_err(|_| no_upload())?;
    let ours = [part_name(number, ""), slot_name(number, "")];
    for entry in fs::read_dir(dir)?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if ours.iter().any(|p| n.starts_with(p.as_str())) && !n.starts_with(name) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// A part written to a file of its own.
struct LocalPartWriter {
    dir: PathBuf,
    temp: PathBuf,
    file: DurableFile,
    number: u32,
    room: u64,
    committed: bool,
}

impl Write for LocalPartWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        take_room(&mut self.room, buf.len())?;
        self.file.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PartWriter for LocalPartWriter {
    fn commit(mut self: Box<Self>, md5_hex: &str, checksum: Option<(&str, &str)>) -> Result<()> {
        self.file.sync_data()?;
        let name = part_name(self.number, md5_hex);
        publish(&self.dir, &self.temp, self.number, &name, checksum)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for LocalPartWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_removes_idle_and_forgets_done_uploads() {
        let root = std::env::temp_dir().join(format!("s3serve-up-{}", new_id()));
        let store = LocalUploads::open(&root, 0o644).unwrap();
        let idle = store.create("b", "k1", &ObjectMeta::default()).unwrap();
        let done = store.create("b", "k2", &ObjectMeta::default()).unwrap();
        store.mark_done(&done, "e-1").unwrap();
        assert_eq!(store.count(), 1);
        let past = SystemTime::now() - Duration::from_secs(3600);
        let future = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(store.expire(Some(past), past), 0);
        assert_eq!(store.expire(None, future), 1);
        assert!(store.info(&idle).is_ok() && store.info(&done).is_err());
        assert_eq!(store.expire(Some(future), past), 1);
        assert!(store.info(&idle).is_err());
        fs::remove_dir_all(root).unwrap();
    }

    /// A crash while an upload was being created (its folder not yet renamed to its id) or
    /// removed (renamed to `gone-…`, partly emptied) leaves a temporary folder: the start-up
    /// sweep removes it, unless a live process holds its lock.
    #[test]
    fn sweep_removes_upload_folders_left_by_a_crash() {
        let root = std::env::temp_dir().join(format!("s3serve-up-{}", new_id()));
        let store = LocalUploads::open(&root, 0o644).unwrap();
        let kept = store.create("b", "k", &ObjectMeta::default()).unwrap();
        let dir = root.join(".s3serve/uploads");
        let creating = dir.join(format!("{TEMP_PREFIX}{}", new_id()));
        fs::create_dir(&creating).unwrap();
        fs::write(creating.join("manifest"), "bucket\tb\n").unwrap();
        let removing = dir.join(format!("{TEMP_PREFIX}gone-{}", new_id()));
        fs::create_dir(&removing).unwrap();
        fs::write(removing.join("data"), vec![7u8; 4096]).unwrap();
        fs::write(removing.join("slot-00001-abc"), "0 4096\n").unwrap();
        let live = dir.join(format!("{TEMP_PREFIX}{}", new_id()));
        fs::create_dir(&live).unwrap();
        let lock = lock_dir(&live).expect("directory locks on the test filesystem");
        assert_eq!(store.sweep_temporaries(), 2);
        assert!(!creating.exists() && !removing.exists());
        assert!(live.exists(), "a folder a live process holds is not swept");
        assert!(store.info(&kept).is_ok());
        drop(lock);
        assert_eq!(store.sweep_temporaries(), 1);
        assert!(!live.exists());
        // Removing an upload leaves no folder behind.
        store.abort(&kept).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn part_names_round_trip() {
        let n = part_name(7, "abc");
        assert_eq!(n, "part-00007-abc");
        assert_eq!(parse_part_name(&n), Some((7, "abc", false)));
        assert_eq!(
            parse_part_name(&slot_name(7, "abc")),
            Some((7, "abc", true))
        );
        assert_eq!(parse_part_name("manifest"), None);
        assert_eq!(parse_part_name("part-00007-abc.ck"), None);
        assert_eq!(parse_part_name("claim-00007"), None);
        assert!(valid_id(&new_id()));
        assert!(!valid_id("../../etc"));
    }
}
