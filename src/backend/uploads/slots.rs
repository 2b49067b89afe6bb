//! Parts written in place, so completion needs no copy.
//!
//! Parts are written in place where they can be. Clients cut an object into parts of one size,
//! so the first part of at least 5 MiB fixes a stride (file `stride`), and part N is written
//! straight into the file `data` at offset (N-1)*stride. Its record `slot-<number>-<md5>`
//! holds the offset and size. A part that does not fit that pattern (unknown length, longer
//! than the stride, a number whose place is taken) is written to a file of its own,
//! `part-<number>-<md5>`. Either way a part's bytes and its ETag appear together in one rename.
//!
//! A place in `data` is taken by creating `claim-<number>` exclusively. It is given back if the
//! part fails and kept for good once the part is recorded, so recorded bytes are written once
//! and never overwritten: a re-upload of that number goes to a file of its own.
//!
//! Completion of parts 1..k that lie end to end from offset 0 costs no copy: `data` is
//! hard-linked as the object's temporary file and committed. Writers hold a shared flock on
//! `data` and completion an exclusive one, so no part is being written while `data` becomes
//! the object; a writer that locks `data` after that finds it linked twice or gone, and writes
//! a file of its own. Any other completion appends the parts to the object's temporary file
//! with `copy_file_range`. Completion then marks the upload done (keeping its result, so a
//! retried Complete gets the same answer) and drops the parts.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FlockOperation};

use super::local::{claim_name, publish, slot_name, take_room};
use super::{PartInfo, PartWriter};
use crate::backend::local::DurableFile;
use crate::backend::{ObjectWriter, Result};
use crate::temps::TEMP_PREFIX;

/// The file parts are written into in place.
pub(super) const DATA: &str = "data";
/// The part size that places parts in `DATA`, decimal.
const STRIDE: &str = "stride";
/// Parts smaller than this can only be an upload's last, so they never fix the stride.
const MIN_STRIDE: u64 = 5 << 20;
/// No part is placed past S3's largest object.
const MAX_OBJECT: u64 = 5 << 40;

/// A slot record's text: `OFFSET SIZE`.
pub(super) fn read_slot(path: &Path) -> Option<(u64, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let (offset, size) = text.trim_end().split_once(' ')?;
    Some((offset.parse().ok()?, size.parse().ok()?))
}

/// Whether `file` is still the upload's `DATA` and nothing else: not yet linked as an object,
/// not removed by a completion.
fn sole_data(file: &File, path: &Path) -> bool {
    let (Ok(open), Ok(named)) = (rfs::fstat(file), rfs::stat(path)) else {
        return false;
    };
    open.st_nlink == 1 && open.st_dev == named.st_dev && open.st_ino == named.st_ino
}

/// The upload's stride, fixed now by a part of `size` if none is yet.
fn stride(dir: &Path, size: u64) -> Result<Option<u64>> {
    let path = dir.join(STRIDE);
    if let Ok(text) = fs::read_to_string(&path) {
        return Ok(text.trim().parse().ok());
    }
    if size < MIN_STRIDE {
        return Ok(None);
    }
    // Published whole with a hard link, which fails if a racing part fixed it first.
    let tmp = dir.join(format!("{TEMP_PREFIX}{}", crate::util::unique_token()));
    fs::write(&tmp, size.to_string())?;
    let linked = fs::hard_link(&tmp, &path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Some(size)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Ok(fs::read_to_string(&path)?.trim().parse().ok())
        }
        Err(_) => Ok(None), // no hard links here: parts get files of their own
    }
}

/// A writer into part `number`'s place in `DATA`, where the part fits one.
pub(super) fn writer(
    dir: &Path,
    number: u32,
    size: Option<u64>,
    file_mode: u32,
) -> Result<Option<SlotWriter>> {
    let Some(size) = size.filter(|&s| s > 0 && number > 0) else {
        return Ok(None);
    };
    let Some(stride) = stride(dir, size)? else {
        return Ok(None);
    };
    let offset = u64::from(number - 1).saturating_mul(stride);
    if size > stride || offset.saturating_add(size) > MAX_OBJECT {
        return Ok(None);
    }
    let claim = dir.join(claim_name(number));
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&claim)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let claim = Claim(Some(claim));
    let path = dir.join(DATA);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(file_mode)
        .open(&path)?;
    // Shared with other writers, excluded by a completion taking the file.
    if rfs::flock(&file, FlockOperation::NonBlockingLockShared).is_err() || !sole_data(&file, &path)
    {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(Some(SlotWriter {
        dir: dir.to_path_buf(),
        file: DurableFile::at(file, offset),
        number,
        offset,
        room: size,
        written: 0,
        claim,
    }))
}

/// Commits `data` as the object without a copy when the parts lie end to end in it from
/// its start and fill it exactly; false when they do not or the file is busy.
pub(super) fn assemble(dir: &Path, parts: &[PartInfo], dst: &mut dyn ObjectWriter) -> Result<bool> {
    let mut end = 0u64;
    for p in parts {
        if p.offset != Some(end) {
            return Ok(false);
        }
        end += p.size;
    }
    let path = dir.join(DATA);
    let Ok(file) = fs::OpenOptions::new().read(true).write(true).open(&path) else {
        return Ok(false);
    };
    if rfs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err()
        || !sole_data(&file, &path)
    {
        return Ok(false);
    }
    let len = file.metadata()?.len();
    // Bytes past the parts can only be a failed part's (its range holds a hole now) while no
    // recorded part lies there; with no writer left (the lock), they are cut off.
    if len > end && recorded_end(dir)? <= end {
        file.set_len(end)?;
    } else if len != end {
        return Ok(false);
    }
    // Every part was made durable when it was recorded.
    Ok(dst.adopt(file, &path)?)
}

/// Where the last part recorded in `DATA` ends.
fn recorded_end(dir: &Path) -> Result<u64> {
    let mut end = 0;
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_name().to_string_lossy().starts_with("slot-") {
            let (offset, size) = read_slot(&entry.path()).unwrap_or((u64::MAX, 0));
            end = end.max(offset.saturating_add(size));
        }
    }
    Ok(end)
}

/// A part's place in `DATA`, given back on drop unless kept.
struct Claim(Option<PathBuf>);

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// A part written in place into the upload's `DATA`.
pub(super) struct SlotWriter {
    dir: PathBuf,
    file: DurableFile,
    number: u32,
    offset: u64,
    room: u64,
    written: u64,
    claim: Claim,
}

impl Write for SlotWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        take_room(&mut self.room, buf.len())?;
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SlotWriter {
    /// A part that failed gives its place back empty: the blocks it wrote are freed (a hole),
    /// so a part cut short by a full disk or a lost client leaves no space taken.
    fn drop(&mut self) {
        if self.claim.0.is_some() {
            if let Some(len) = std::num::NonZeroU64::new(self.written + self.room) {
                let flags = rfs::FallocateFlags::PUNCH_HOLE | rfs::FallocateFlags::KEEP_SIZE;
                let _ = rfs::fallocate(self.file.file(), flags, self.offset, len.get());
            }
        }
    }
}

impl PartWriter for SlotWriter {
    fn commit(mut self: Box<Self>, md5_hex: &str, checksum: Option<(&str, &str)>) -> Result<()> {
        self.file.sync_data()?;
        let temp = self
            .dir
            .join(format!("{TEMP_PREFIX}{}", crate::util::unique_token()));
        fs::write(&temp, format!("{} {}\n", self.offset, self.written))?;
        let name = slot_name(self.number, md5_hex);
        let published = publish(&self.dir, &temp, self.number, &name, checksum);
        if published.is_err() {
            let _ = fs::remove_file(&temp);
        } else {
            // Recorded bytes are never written again: the place stays taken.
            self.claim.0 = None;
        }
        published
    }
}

#[cfg(test)]
mod tests {
    use super::super::local::new_id;
    use super::super::Uploads;
    use super::*;
    use crate::backend::local::{LocalBackend, Perms};
    use crate::backend::{Backend, ObjectMeta};
    use std::os::unix::fs::MetadataExt;

    const MIB: usize = 1 << 20;

    fn store() -> (PathBuf, LocalBackend) {
        let root = std::env::temp_dir().join(format!("s3serve-up-{}", new_id()));
        let perms = Perms {
            file: 0o644,
            dir: 0o755,
        };
        let backend = LocalBackend::open(&root, perms).unwrap();
        backend.create_bucket("b").unwrap();
        (root, backend)
    }

    fn body(number: u32, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32 * 7 + number * 13) as u8)
            .collect()
    }

    fn put_part(up: &dyn Uploads, id: &str, number: u32, bytes: &[u8]) {
        let mut w = up
            .part_writer(id, number, Some(bytes.len() as u64))
            .unwrap();
        w.write_all(bytes).unwrap();
        let md5 = crate::util::hex(&<md5::Md5 as md5::Digest>::digest(bytes));
        w.commit(&md5, None).unwrap();
    }

    /// Completes `numbers` of upload `id` into b/k and returns the object's inode, read
    /// before the upload is marked done.
    fn complete(backend: &LocalBackend, id: &str, numbers: &[u32]) -> u64 {
        let up = backend.uploads().unwrap();
        let parts: Vec<PartInfo> = up
            .parts(id)
            .unwrap()
            .into_iter()
            .filter(|p| numbers.contains(&p.number))
            .collect();
        let mut w = backend.create("b", "k").unwrap();
        up.assemble(id, &parts, w.as_mut()).unwrap();
        w.commit(&ObjectMeta::default(), None).unwrap();
        let ino = fs::metadata(backend.root().join("b/k")).unwrap().ino();
        up.mark_done(id, "x").unwrap();
        ino
    }

    fn data_ino(root: &Path, id: &str) -> u64 {
        let dir = root
            .join(crate::backend::key::HIDDEN_PREFIX)
            .join("uploads")
            .join(id);
        fs::metadata(dir.join(DATA)).unwrap().ino()
    }

    /// Found by scripts/harden/diskfull.py: a part that failed half-way (a full disk) kept
    /// its bytes in `data`, so the space stayed taken and Complete had to copy.
    #[test]
    fn a_failed_part_frees_its_place_and_completion_still_links() {
        let (root, backend) = store();
        let up = backend.uploads().unwrap();
        let id = up.create("b", "k", &ObjectMeta::default()).unwrap();
        let p1 = body(1, 5 * MIB);
        put_part(up, &id, 1, &p1);
        let data = root.join(".s3serve/uploads").join(&id).join(DATA);
        let blocks = || fs::metadata(&data).unwrap().blocks() * 512;
        let before = blocks();
        let mut w = up.part_writer(&id, 2, Some(5 * MIB as u64)).unwrap();
        w.write_all(&body(2, 3 * MIB)).unwrap();
        assert!(blocks() >= before + 3 * MIB as u64);
        drop(w);
        assert!(blocks() <= before, "{} > {before}", blocks());
        assert_eq!(fs::metadata(&data).unwrap().len(), 8 * MIB as u64);
        let ino = data_ino(&root, &id);
        assert_eq!(complete(&backend, &id, &[1]), ino, "linked, not copied");
        assert!(fs::read(root.join("b/k")).unwrap() == p1);
        fs::remove_dir_all(root).unwrap();
    }

    /// Bytes past the completed parts are cut off only when no recorded part lies there.
    #[test]
    fn a_recorded_part_past_the_completed_ones_is_not_cut_off() {
        let (root, backend) = store();
        let up = backend.uploads().unwrap();
        let id = up.create("b", "k", &ObjectMeta::default()).unwrap();
        let p1 = body(1, 5 * MIB);
        put_part(up, &id, 1, &p1);
        put_part(up, &id, 2, &body(2, 5 * MIB));
        let data = data_ino(&root, &id);
        assert_ne!(
            complete(&backend, &id, &[1]),
            data,
            "copied: part 2 stays whole"
        );
        assert!(fs::read(root.join("b/k")).unwrap() == p1);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn parts_of_one_size_become_the_object_without_a_copy() {
        let (root, backend) = store();
        let up = backend.uploads().unwrap();
        let id = up.create("b", "k", &ObjectMeta::default()).unwrap();
        let (p1, p2, p3) = (body(1, 5 * MIB), body(2, 5 * MIB), body(3, MIB + 17));
        // Out of order: the first part to arrive fixes the stride.
        put_part(up, &id, 2, &p2);
        put_part(up, &id, 3, &p3);
        put_part(up, &id, 1, &p1);
        let parts = up.parts(&id).unwrap();
        let offsets: Vec<_> = parts.iter().map(|p| p.offset).collect();
        assert_eq!(
            offsets,
            [Some(0), Some(5 * MIB as u64), Some(10 * MIB as u64)]
        );
        assert_eq!(parts[2].size, p3.len() as u64);
        let data = data_ino(&root, &id);
        assert_eq!(complete(&backend, &id, &[1, 2, 3]), data);
        let got = fs::read(root.join("b/k")).unwrap();
        assert!(got == [p1, p2, p3].concat());
        let dir = root.join(".s3serve/uploads").join(&id);
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}"); // manifest and done
        assert_eq!(fs::metadata(root.join("b/k")).unwrap().nlink(), 1);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn other_shapes_are_copied() {
        let (root, backend) = store();
        let up = backend.uploads().unwrap();
        let id = up.create("b", "k", &ObjectMeta::default()).unwrap();
        let (p1, p3) = (body(1, 5 * MIB), body(3, 5 * MIB));
        put_part(up, &id, 1, &p1);
        put_part(up, &id, 2, &body(2, 5 * MIB));
        put_part(up, &id, 3, &p3);
        // A re-upload of a recorded place gets a file of its own and replaces the part.
        let p2 = body(22, 5 * MIB);
        put_part(up, &id, 2, &p2);
        let parts = up.parts(&id).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1].offset, None);
        // A part longer than the stride gets a file of its own.
        put_part(up, &id, 4, &body(4, 5 * MIB + 1));
        assert_eq!(up.parts(&id).unwrap()[3].offset, None);
        // A failed part gives its place back.
        let mut w = up.part_writer(&id, 5, Some(MIB as u64)).unwrap();
        w.write_all(&body(5, 1000)).unwrap();
        drop(w);
        put_part(up, &id, 5, &body(5, MIB));
        assert!(up.parts(&id).unwrap()[4].offset.is_some());
        // Writers refuse bytes past the declared length.
        let mut w = up.part_writer(&id, 6, Some(10)).unwrap();
        let e = w.write_all(&[0; 11]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        drop(w);
        let data = data_ino(&root, &id);
        assert_ne!(complete(&backend, &id, &[1, 2, 3]), data);
        let got = fs::read(root.join("b/k")).unwrap();
        assert!(got == [p1, p2, p3].concat());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn busy_or_taken_data_is_not_linked() {
        let (root, backend) = store();
        let up = backend.uploads().unwrap();
        let id = up.create("b", "k", &ObjectMeta::default()).unwrap();
        let (p1, p2) = (body(1, 5 * MIB), body(2, 100));
        put_part(up, &id, 1, &p1);
        put_part(up, &id, 2, &p2);
        // A part being written holds the file: the completion copies.
        let busy = up.part_writer(&id, 3, Some(MIB as u64)).unwrap();
        let data = data_ino(&root, &id);
        assert_ne!(complete(&backend, &id, &[1, 2]), data);
        drop(busy);
        assert!(fs::read(root.join("b/k")).unwrap() == [p1.clone(), p2.clone()].concat());

        // Once `data` is linked as an object, new parts do not write into it.
        let id = up.create("b", "k", &ObjectMeta::default()).unwrap();
        put_part(up, &id, 1, &p1);
        put_part(up, &id, 2, &p2);
        let parts = up.parts(&id).unwrap();
        let mut w = backend.create("b", "k").unwrap();
        up.assemble(&id, &parts, w.as_mut()).unwrap();
        w.commit(&ObjectMeta::default(), None).unwrap();
        put_part(up, &id, 3, &body(3, MIB));
        assert_eq!(up.parts(&id).unwrap()[2].offset, None);
        assert!(fs::read(root.join("b/k")).unwrap() == [p1, p2].concat());
        fs::remove_dir_all(root).unwrap();
    }
}
