//! The local backend: a directory whose top-level directories are buckets and whose files are
//! objects at their key's path. Every path is resolved with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` from the root, so no key and no symlink planted in the tree can reach
//! outside it. Writes go to a hidden, flock-ed temporary file in the destination directory and
//! are renamed into place after `fdatasync`, so readers see the old object or the new one.
//! Metadata lives in the `user.s3serve` xattr (it moves with the rename), or in a sidecar tree
//! under `.s3serve/meta/` where the filesystem has no xattrs. A backend opened for one user
//! of `--auth-proxy` keeps that user's metadata and uploads apart from everyone else's on the
//! same directory: in `user.s3serve.u.<tag>` and under `.s3serve/users/<tag>/`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};

use super::key::{is_hidden, storage_path, FOLDER_MARKER, HIDDEN_PREFIX};
use super::uploads::{LocalUploads, Uploads};
use super::watch::Removals;
use super::{
    Backend, BackendError, BucketInfo, DirEntry, DirStamp, ErrorKind, ObjectInfo, ObjectMeta,
    ObjectReader, ObjectWriter, RemovalWatch, Result, WatchTicket,
};
use crate::temps::{remove_if_unlocked, TEMP_PREFIX};

const XATTR: &str = "user.s3serve";
/// Where the records and uploads of `--auth-proxy` users live, each under its tag.
const USERS_DIR: &str = "users";
const SIDECAR_SUFFIX: &str = ".s3m";
/// Large enough for any record we write (2 KiB of user metadata plus headers, escaped).
const META_BUF: usize = 64 * 1024;

/// Modes for new files and directories (the process umask still applies).
#[derive(Debug, Clone, Copy)]
pub struct Perms {
    pub file: u32,
    pub dir: u32,
}

pub struct LocalBackend {
    root: PathBuf,
    root_fd: OwnedFd,
    perms: Perms,
    xattrs: bool,
    /// The xattr that holds records: [`XATTR`], or a user's own.
    xattr: String,
    /// `.s3serve`, or a user's folder in it: the sidecar records' home.
    private: PathBuf,
    uploads: LocalUploads,
    /// Where the filesystem is local: directories watched for entries leaving.
    removals: Option<Removals>,
}

fn resolve() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

impl LocalBackend {
    /// Opens (creating if missing) the served directory and probes for xattr support.
    pub fn open(root: &Path, perms: Perms) -> Result<LocalBackend> {
        LocalBackend::open_for(root, perms, None)
    }

    /// As [`LocalBackend::open`], for one `--auth-proxy` user when `user` is given: the
    /// objects are everyone's, the metadata and multipart uploads are the user's own.
    pub fn open_for(root: &Path, perms: Perms, user: Option<&str>) -> Result<LocalBackend> {
        std::fs::create_dir_all(root)?;
        let root_fd = rfs::open(
            root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let (private, xattr) = match user {
            None => (root.join(HIDDEN_PREFIX), XATTR.to_string()),
            Some(user) => {
                let tag = crate::util::user_tag(user);
                let dir = root.join(HIDDEN_PREFIX).join(USERS_DIR).join(&tag);
                (dir, format!("{XATTR}.u.{tag}"))
            }
        };
        std::fs::create_dir_all(&private)?;
        let probe = private.join(format!("xattr-probe{}", crate::util::unique_token()));
        let file = File::create(&probe)?;
        let xattrs = rfs::fsetxattr(&file, &xattr, b"1", rfs::XattrFlags::empty()).is_ok();
        drop(file);
        let _ = std::fs::remove_file(&probe);
        if !xattrs {
            log::warn!(
                "{} has no user xattrs: metadata goes to {}",
                root.display(),
                private.join("meta").display()
            );
        }
        let uploads = LocalUploads::open_in(&private.join("uploads"), perms.file)?;
        let removals = Removals::new(&root_fd);
        Ok(LocalBackend {
            root: root.to_path_buf(),
            root_fd,
            perms,
            xattrs,
            xattr,
            private,
            uploads,
            removals,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn open_at(&self, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
        rfs::openat2(
            &self.root_fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            resolve(),
        )
        .map_err(errno)
    }

    fn bucket_fd(&self, bucket: &str) -> Result<OwnedFd> {
        self.open_at(bucket, OFlags::DIRECTORY | OFlags::RDONLY)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => BackendError::new(
                    ErrorKind::NoSuchBucket,
                    "The specified bucket does not exist",
                ),
                _ => e.into(),
            })
    }

    /// Opens directory `dir` ("" for the bucket, else ending with `/`); None where it cannot
    /// be opened as a directory beneath the bucket.
    fn dir_fd(&self, bucket: &str, dir: &str) -> Result<Option<OwnedFd>> {
        let bucket_fd = self.bucket_fd(bucket)?;
        if dir.is_empty() {
            return Ok(Some(bucket_fd));
        }
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let path = dir.trim_end_matches('/');
        Ok(rfs::openat2(&bucket_fd, path, flags, Mode::empty(), resolve()).ok())
    }

    /// Opens the directory that holds `key`, creating missing directories when `create`.
    /// Also returns the shallowest directory this call created, from the bucket.
    fn parent_fd(&self, bucket: &str, key: &str, create: bool) -> Result<(OwnedFd, Option<usize>)> {
        let bucket_fd = self.bucket_fd(bucket)?;
        let Some((dir, _)) = key.rsplit_once('/') else {
            return Ok((bucket_fd, None));
        };
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        match rfs::openat2(&bucket_fd, dir, flags, Mode::empty(), resolve()) {
            Ok(fd) => Ok((fd, None)),
            Err(rustix::io::Errno::NOENT) if create => self.make_dirs(bucket_fd, dir),
            Err(e) => Err(dir_error(errno(e))),
        }
    }

    /// Makes the missing directories of path `dir` under `fd`; returns the last one opened
    /// and the length of `dir`'s prefix that names the first one made, if any.
    fn make_dirs(&self, mut fd: OwnedFd, dir: &str) -> Result<(OwnedFd, Option<usize>)> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let mut made = None;
        let mut end = 0;
        for seg in dir.split('/') {
            end += seg.len();
            match rfs::mkdirat(&fd, seg, Mode::from_raw_mode(self.perms.dir)) {
                Ok(()) => {
                    made.get_or_insert(end);
                }
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(dir_error(errno(e))),
            }
            end += 1;
            fd = rfs::openat2(&fd, seg, flags, Mode::empty(), resolve())
                .map_err(|e| dir_error(errno(e)))?;
        }
        Ok((fd, made))
    }

    /// Opens an object file and stats it. A missing key is told from a missing bucket only
    /// when the open fails, so that the common case costs one open and one stat.
    fn open_file(&self, bucket: &str, key: &str) -> Result<(File, rfs::Stat)> {
        let fd = match self.open_at(&format!("{bucket}/{key}"), OFlags::RDONLY) {
            Ok(fd) => fd,
            Err(e) => {
                let e = not_found_or(e, bucket);
                if e.kind == ErrorKind::NotFound {
                    self.bucket_fd(bucket)?;
                }
                return Err(e);
            }
        };
        let file = File::from(fd);
        let st = rfs::fstat(&file).map_err(errno)?;
        if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
            return Err(BackendError::new(
                ErrorKind::NotFound,
                "The specified key does not exist.",
            ));
        }
        Ok((file, st))
    }

    fn info_of(&self, file: &File, st: &rfs::Stat, bucket: &str, key: &str) -> ObjectInfo {
        let size = st.st_size as u64;
        let mtime = to_system_time(st);
        let raw = self.read_meta(file, bucket, key);
        let meta = raw.and_then(|raw| ObjectMeta::decode(&raw, size, mtime));
        ObjectInfo { size, mtime, meta }
    }

    fn read_meta(&self, file: &File, bucket: &str, key: &str) -> Option<Vec<u8>> {
        if self.xattrs {
            // Most records are short: a stack buffer first, the largest size only if needed.
            let mut small = [0u8; 1024];
            match rfs::fgetxattr(file, &self.xattr, &mut small[..]) {
                Ok(n) => return Some(small[..n].to_vec()),
                Err(rustix::io::Errno::RANGE) => {
                    let mut buf = vec![0u8; META_BUF];
                    if let Ok(n) = rfs::fgetxattr(file, &self.xattr, &mut buf[..]) {
                        buf.truncate(n);
                        return Some(buf);
                    }
                }
                Err(_) => {}
            }
        }
        std::fs::read(self.sidecar(bucket, key)).ok()
    }

    fn sidecar(&self, bucket: &str, key: &str) -> PathBuf {
        self.private
            .join("meta")
            .join(bucket)
            .join(format!("{key}{SIDECAR_SUFFIX}"))
    }

    fn write_sidecar(&self, bucket: &str, key: &str, raw: &[u8]) -> io::Result<()> {
        let path = self.sidecar(bucket, key);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", crate::util::unique_token()));
        std::fs::write(&tmp, raw)?;
        std::fs::rename(&tmp, &path)
    }

    /// Stores `raw` for the object open as `file`: in the xattr, else in the sidecar.
    fn write_meta(&self, file: &File, bucket: &str, key: &str, raw: &[u8]) -> Result<()> {
        if self.xattrs && rfs::fsetxattr(file, &self.xattr, raw, rfs::XattrFlags::empty()).is_ok() {
            return Ok(());
        }
        Ok(self.write_sidecar(bucket, key, raw)?)
    }

    fn remove_sidecar(&self, bucket: &str, key: &str) {
        if !self.xattrs {
            let _ = std::fs::remove_file(self.sidecar(bucket, key));
        }
    }

    /// Removes the directories above `key` that are empty, deepest first, down to those
    /// at least `floor` bytes long (0: all of them, up to the bucket).
    fn cleanup_parents(&self, bucket: &str, key: &str, floor: usize) {
        let Ok(bucket_fd) = self.bucket_fd(bucket) else {
            return;
        };
        let mut dir = key;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if parent.len() < floor
                || rfs::unlinkat(&bucket_fd, parent, AtFlags::REMOVEDIR).is_err()
            {
                break;
            }
            dir = parent;
        }
    }
}

fn dir_error(e: io::Error) -> BackendError {
    match e.raw_os_error() {
        Some(code)
            if code == rustix::io::Errno::NOTDIR.raw_os_error()
                || code == rustix::io::Errno::EXIST.raw_os_error() =>
        {
            BackendError::new(
                ErrorKind::Conflict,
                "A file exists where the key needs a directory",
            )
        }
        _ if e.kind() == io::ErrorKind::NotADirectory => BackendError::new(
            ErrorKind::Conflict,
            "A file exists where the key needs a directory",
        ),
        Some(code)
            if code == rustix::io::Errno::LOOP.raw_os_error()
                || code == rustix::io::Errno::XDEV.raw_os_error() =>
        {
            BackendError::new(
                ErrorKind::Conflict,
                "The key's path crosses a symbolic link",
            )
        }
        _ => e.into(),
    }
}

fn not_found_or(e: io::Error, bucket: &str) -> BackendError {
    let _ = bucket;
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
            BackendError::new(ErrorKind::NotFound, "The specified key does not exist.")
        }
        _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            BackendError::new(ErrorKind::NotFound, "The specified key does not exist.")
        }
        _ => e.into(),
    }
}

fn to_system_time(st: &rfs::Stat) -> SystemTime {
    UNIX_EPOCH + Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32)
}

impl Backend for LocalBackend {
    /// Removes temporary files left by a crash (see [`crate::temps`]).
    fn sweep_temporaries(&self) -> usize {
        let mut removed = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let Ok(ft) = entry.file_type() else { continue };
                if ft.is_dir() && !(dir == self.root && name == HIDDEN_PREFIX) {
                    stack.push(entry.path());
                } else if ft.is_file()
                    && name.starts_with(TEMP_PREFIX)
                    && remove_if_unlocked(&entry.path())
                {
                    removed += 1;
                }
            }
        }
        removed + self.uploads.sweep_temporaries()
    }

    fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_hidden(&name) || !entry.file_type()?.is_dir() {
                continue;
            }
            let md = entry.metadata()?;
            let created = md
                .created()
                .or_else(|_| md.modified())
                .unwrap_or(UNIX_EPOCH);
            out.push(BucketInfo { name, created });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn create_bucket(&self, bucket: &str) -> Result<()> {
        match rfs::mkdirat(&self.root_fd, bucket, Mode::from_raw_mode(self.perms.dir)) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => {
                Err(BackendError::new(ErrorKind::BucketExists, "Your previous request to create the named bucket succeeded and you already own it."))
            }
            Err(e) => Err(errno(e).into()),
        }
    }

    fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.bucket_fd(bucket)?;
        match rfs::unlinkat(&self.root_fd, bucket, AtFlags::REMOVEDIR) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(self.private.join("meta").join(bucket));
                Ok(())
            }
            Err(rustix::io::Errno::NOTEMPTY) | Err(rustix::io::Errno::EXIST) => {
                Err(BackendError::new(
                    ErrorKind::BucketNotEmpty,
                    "The bucket you tried to delete is not empty",
                ))
            }
            Err(e) => Err(errno(e).into()),
        }
    }

    fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self.bucket_fd(bucket) {
            Ok(_) => Ok(true),
            Err(e) if e.kind == ErrorKind::NoSuchBucket => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn stat(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        let key = &storage_path(key);
        let (file, st) = self.open_file(bucket, key)?;
        Ok(self.info_of(&file, &st, bucket, key))
    }

    fn open(&self, bucket: &str, key: &str) -> Result<ObjectReader> {
        let key = &storage_path(key);
        let (file, st) = self.open_file(bucket, key)?;
        let info = self.info_of(&file, &st, bucket, key);
        Ok(ObjectReader {
            info,
            body: Box::new(file),
        })
    }

    fn create(&self, bucket: &str, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        Ok(Box::new(LocalWriter::create(
            self,
            bucket,
            &storage_path(key),
        )?))
    }

    fn remove(&self, bucket: &str, key: &str, cleanup: bool) -> Result<()> {
        let key = &storage_path(key);
        let dir = match self.parent_fd(bucket, key, false) {
            Ok((fd, _)) => fd,
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Conflict) => return Ok(()),
            Err(e) => return Err(e),
        };
        let name = key.rsplit('/').next().unwrap_or(key);
        match rfs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => self.remove_sidecar(bucket, key),
            Err(rustix::io::Errno::NOENT)
            | Err(rustix::io::Errno::ISDIR)
            | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(errno(e).into()),
        }
        if cleanup {
            self.cleanup_parents(bucket, key, 0);
        }
        Ok(())
    }

    fn list_dir(&self, bucket: &str, dir: &str) -> Result<Vec<DirEntry>> {
        match self.dir_fd(bucket, dir)? {
            Some(fd) => read_entries(&fd, dir),
            None => Ok(Vec::new()),
        }
    }

    fn dir_stamp(&self, bucket: &str, dir: &str) -> Option<DirStamp> {
        // Only a cache key: a symlink on the way changes the identity, and the listing
        // that the cached answer came from resolves beneath the root.
        let path = format!("{bucket}/{}", dir.trim_end_matches('/'));
        let st = rfs::statat(&self.root_fd, path.as_str(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
        (rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory).then_some(DirStamp {
            dev: st.st_dev,
            ino: st.st_ino,
            mtime_sec: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as u64,
        })
    }

    fn set_meta(
        &self,
        bucket: &str,
        key: &str,
        info: &ObjectInfo,
        meta: &ObjectMeta,
    ) -> Result<()> {
        let key = &storage_path(key);
        let (file, st) = self.open_file(bucket, key)?;
        if st.st_size as u64 != info.size || to_system_time(&st) != info.mtime {
            return Ok(()); // changed again meanwhile: the record would be stale at once
        }
        self.write_meta(&file, bucket, key, &meta.encode(info.size, info.mtime))
    }

    fn uploads(&self) -> Option<&dyn Uploads> {
        Some(&self.uploads)
    }

    fn removals(&self) -> Option<&dyn RemovalWatch> {
        let usable = self.removals.as_ref().is_some_and(Removals::usable);
        usable.then_some(self as &dyn RemovalWatch)
    }

    fn copy(
        &self,
        src: (&str, &str),
        dst: (&str, &str),
    ) -> Result<(ObjectInfo, Box<dyn ObjectWriter + '_>)> {
        let src = (src.0, &*storage_path(src.1));
        let (source, st) = self.open_file(src.0, src.1)?;
        let info = self.info_of(&source, &st, src.0, src.1);
        let mut writer = LocalWriter::create(self, dst.0, &storage_path(dst.1))?;
        copy_on_disk(&source, writer.file.file_mut(), info.size)?;
        Ok((info, Box::new(writer)))
    }
}

impl RemovalWatch for LocalBackend {
    fn list_watched(
        &self,
        bucket: &str,
        dir: &str,
    ) -> Result<(Vec<DirEntry>, Option<WatchTicket>)> {
        let Some(fd) = self.dir_fd(bucket, dir)? else {
            return Ok((Vec::new(), None));
        };
        // Armed before the entries are read, so no removal falls between the two.
        let ticket = self.removals.as_ref().and_then(|r| r.arm(&fd));
        Ok((read_entries(&fd, dir)?, ticket))
    }

    fn catch_up(&self) {
        if let Some(r) = &self.removals {
            r.catch_up();
        }
    }

    fn unchanged(&self, ticket: &WatchTicket) -> bool {
        self.removals.as_ref().is_some_and(|r| r.unchanged(ticket))
    }
}

/// The entries of directory `dir` (open as `fd`). A folder marker inside it is the entry
/// with an empty name, so that `dir` followed by the name is the marker's key; a marker file
/// at the bucket root stands for no key and is left out.
fn read_entries(fd: &OwnedFd, dir: &str) -> Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    let mut entries = rfs::Dir::read_from(fd).map_err(errno)?;
    while let Some(entry) = entries.read() {
        let entry = entry.map_err(errno)?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        let marker = name == FOLDER_MARKER && !dir.is_empty();
        if !marker && (name == "." || name == ".." || is_hidden(name)) {
            continue;
        }
        let ft = match entry.file_type() {
            rfs::FileType::Unknown => match rfs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => rfs::FileType::from_raw_mode(st.st_mode),
                Err(_) => continue,
            },
            ft => ft,
        };
        let is_dir = match ft {
            rfs::FileType::Directory if !marker => true,
            rfs::FileType::RegularFile => false,
            _ => continue, // symlinks, sockets, devices are not objects
        };
        out.push(DirEntry {
            name: if marker {
                String::new()
            } else {
                name.to_string()
            },
            is_dir,
            ino: entry.ino(),
            facts: None,
        });
    }
    Ok(out)
}

/// Copies `len` bytes between files in the kernel: a reflink where the filesystem can share
/// extents, else `copy_file_range`, else a plain buffered copy.
fn copy_on_disk(src: &File, dst: &mut File, len: u64) -> io::Result<()> {
    if len == 0 || rfs::ioctl_ficlone(dst.as_fd(), src.as_fd()).is_ok() {
        return Ok(());
    }
    let mut done = 0u64;
    while done < len {
        let chunk = (len - done).min(1 << 30) as usize;
        let mut offset = done;
        match rfs::copy_file_range(src, Some(&mut offset), &*dst, None, chunk) {
            Ok(0) => break,
            Ok(n) => done += n as u64,
            Err(_) if done == 0 => return buffered_copy(src, dst),
            Err(e) => return Err(errno(e)),
        }
    }
    if done != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "source shrank during copy",
        ));
    }
    Ok(())
}

/// Appends `len` bytes of `src` from offset `from` at `dst`'s position, in the kernel where
/// the filesystem allows (`copy_file_range`, which also shares extents on btrfs and XFS).
pub(crate) fn append_on_disk(src: &File, from: u64, dst: &mut File, len: u64) -> io::Result<()> {
    let shrank = || io::Error::new(io::ErrorKind::UnexpectedEof, "source shrank during copy");
    let end = from + len;
    let mut offset = from;
    while offset < end {
        let chunk = (end - offset).min(1 << 30) as usize;
        match rfs::copy_file_range(src, Some(&mut offset), &*dst, None, chunk) {
            Ok(0) => return Err(shrank()),
            Ok(_) => {}
            Err(_) if offset == from => {
                let mut reader = src.try_clone()?;
                reader.seek(SeekFrom::Start(from))?;
                let n = io::copy(&mut reader.take(len), dst)?;
                return if n == len { Ok(()) } else { Err(shrank()) };
            }
            Err(e) => return Err(errno(e)),
        }
    }
    Ok(())
}

fn buffered_copy(src: &File, dst: &mut File) -> io::Result<()> {
    let mut src = src.try_clone()?;
    src.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        dst.write_all(&buf[..n])?;
    }
}

/// How many times a write makes its path again after a concurrent cleanup removed a
/// directory on it.
const CREATE_ATTEMPTS: u32 = 16;

/// A write in progress: a locked temporary file beside the final name.
struct LocalWriter<'a> {
    backend: &'a LocalBackend,
    dir: OwnedFd,
    file: DurableFile,
    temp: String,
    name: String,
    bucket: String,
    key: String,
    /// How much of the key's path names the first directory this write made: a write that
    /// never commits takes those away again (while they are empty).
    made_dirs: Option<usize>,
    committed: bool,
}

impl<'a> LocalWriter<'a> {
    fn create(backend: &'a LocalBackend, bucket: &str, key: &str) -> Result<LocalWriter<'a>> {
        let name = key.rsplit('/').next().unwrap_or(key).to_string();
        let mut temp = format!("{TEMP_PREFIX}{}", crate::util::unique_token());
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC;
        // A concurrent delete's cleanup may remove an empty parent directory at any moment
        // until the temporary is in it: while it is being made, entered, or just made. Each
        // of those shows as NotFound, and the path is made again.
        let mut attempt = 0;
        let mut made_dirs = None;
        let (dir, file) = loop {
            let (dir, made) = match backend.parent_fd(bucket, key, true) {
                Ok(found) => found,
                Err(e) if e.kind == ErrorKind::NotFound && attempt < CREATE_ATTEMPTS => {
                    attempt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            made_dirs = made_dirs.or(made);
            match rfs::openat(
                &dir,
                temp.as_str(),
                flags,
                Mode::from_raw_mode(backend.perms.file),
            ) {
                Ok(fd) => {
                    // A sweep (this process's start-up one, or another instance's) may take
                    // the temporary between its creation and this lock: then the lock fails,
                    // or the file is already gone, and the write starts over under a new name.
                    let file = File::from(fd);
                    if crate::temps::lock_new(&file) {
                        break (dir, file);
                    }
                    if attempt >= CREATE_ATTEMPTS {
                        return Err(BackendError::new(
                            ErrorKind::Io,
                            "temporary files keep being swept away",
                        ));
                    }
                    attempt += 1;
                    temp = format!("{TEMP_PREFIX}{}", crate::util::unique_token());
                }
                Err(rustix::io::Errno::NOENT) if attempt < CREATE_ATTEMPTS => attempt += 1,
                Err(e) => return Err(errno(e).into()),
            }
        };
        Ok(LocalWriter {
            backend,
            dir,
            file: DurableFile::new(file),
            temp,
            name,
            bucket: bucket.to_string(),
            key: key.to_string(),
            made_dirs,
            committed: false,
        })
    }
}

impl Write for LocalWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A file being written that will be made durable at the end: every few MiB it asks the
/// kernel to start writing what has arrived, so the disk works while the body is still
/// streaming in and the final `fdatasync` has little left to wait for.
pub(super) struct DurableFile {
    file: File,
    written: u64,
    started: u64,
}

/// How much arrives between two starts of write-back.
const WRITEBACK_STEP: u64 = 8 << 20;

impl DurableFile {
    pub(super) fn new(file: File) -> DurableFile {
        DurableFile::at(file, 0)
    }

    /// A file positioned at `offset`, where this write begins.
    pub(super) fn at(file: File, offset: u64) -> DurableFile {
        DurableFile {
            file,
            written: offset,
            started: offset,
        }
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    pub(super) fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Makes everything written durable.
    pub(super) fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

impl Write for DurableFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_STEP {
            // POSIX_FADV_DONTNEED starts write-back of the dirty range without waiting for
            // it; pages still dirty or under write-back stay cached.
            let len = std::num::NonZeroU64::new(self.written - self.started);
            let _ = rfs::fadvise(&self.file, self.started, len, rfs::Advice::DontNeed);
            self.started = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for LocalWriter<'_> {
    fn commit(
        mut self: Box<Self>,
        meta: &ObjectMeta,
        mtime: Option<SystemTime>,
    ) -> Result<ObjectInfo> {
        self.file.sync_data()?;
        if let Some(t) = mtime {
            self.file.file().set_modified(t)?;
        }
        let st = rfs::fstat(self.file.file()).map_err(errno)?;
        let info = ObjectInfo {
            size: st.st_size as u64,
            mtime: to_system_time(&st),
            meta: Some(meta.clone()),
        };
        let raw = meta.encode(info.size, info.mtime);
        self.backend
            .write_meta(self.file.file(), &self.bucket, &self.key, &raw)?;
        match rfs::renameat(&self.dir, self.temp.as_str(), &self.dir, self.name.as_str()) {
            Ok(()) => {}
            Err(rustix::io::Errno::ISDIR)
            | Err(rustix::io::Errno::NOTEMPTY)
            | Err(rustix::io::Errno::EXIST) => {
                return Err(BackendError::new(
                    ErrorKind::Conflict,
                    "A directory exists at this key",
                ));
            }
            Err(e) => return Err(errno(e).into()),
        }
        self.committed = true;
        rfs::fsync(&self.dir).map_err(errno)?;
        Ok(info)
    }

    fn file(&mut self) -> Option<&mut File> {
        Some(self.file.file_mut())
    }

    /// Takes `file` (at `path`, already durable) as the object's bytes: a hard link to it
    /// replaces the temporary file, so a crash before the commit leaves `path` as it was.
    fn adopt(&mut self, file: File, path: &Path) -> io::Result<bool> {
        let link = format!("{TEMP_PREFIX}{}", crate::util::unique_token());
        // Following the path lets `/proc/self/fd/N` name an unnamed (O_TMPFILE) file.
        let follow = AtFlags::SYMLINK_FOLLOW;
        if rfs::linkat(rfs::CWD, path, &self.dir, link.as_str(), follow).is_err() {
            return Ok(false); // no hard links here, or another filesystem: copy instead
        }
        if let Err(e) = rfs::renameat(&self.dir, link.as_str(), &self.dir, self.temp.as_str()) {
            let _ = rfs::unlinkat(&self.dir, link.as_str(), AtFlags::empty());
            return Err(errno(e));
        }
        // Written when its parts arrived; the object is made now, as a copy would be.
        file.set_modified(SystemTime::now())?;
        self.file = DurableFile::new(file);
        Ok(true)
    }
}

impl Drop for LocalWriter<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = rfs::unlinkat(&self.dir, self.temp.as_str(), AtFlags::empty());
            if let Some(floor) = self.made_dirs {
                self.backend.cleanup_parents(&self.bucket, &self.key, floor);
            }
        }
    }
}

#[cfg(test)]
mod cleanup_race_tests {
    use super::*;

    /// A backend over a fresh folder (named with `tag`), with a bucket `bkt`, for threads.
    fn shared_backend(tag: &str) -> (PathBuf, std::sync::Arc<LocalBackend>) {
        let root =
            std::env::temp_dir().join(format!("s3serve-{tag}-{}", crate::util::unique_token()));
        let perms = Perms {
            file: 0o644,
            dir: 0o755,
        };
        let backend = std::sync::Arc::new(LocalBackend::open(&root, perms).unwrap());
        backend.create_bucket("bkt").unwrap();
        (root, backend)
    }

    /// Writes of deep keys race deletes whose cleanup removes the directories those writes
    /// are making or about to use: a write must never fail for a directory that vanished
    /// under it (it answered 404 NoSuchKey "No such file or directory" over S3).
    #[test]
    fn writes_survive_concurrent_cleanup_of_their_parent_directories() {
        let (root, backend) = shared_backend("cleanrace");
        // Few keys on deep paths: most deletes empty a chain of directories, which their
        // cleanup then removes while other threads are making or entering it.
        let keys: Vec<String> = (0..4)
            .map(|i| format!("a/{}/b/c/{}/k", i & 1, (i >> 1) & 1))
            .collect();
        let until = std::time::Instant::now() + Duration::from_secs(2);
        let threads: Vec<_> = (0..8usize)
            .map(|t| {
                let backend = backend.clone();
                let keys = keys.clone();
                std::thread::spawn(move || {
                    let mut x = (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) + 1;
                    while std::time::Instant::now() < until {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let key = &keys[(x >> 33) as usize % keys.len()];
                        if (x >> 40) & 1 == 0 {
                            let mut w = backend
                                .create("bkt", key)
                                .unwrap_or_else(|e| panic!("create {key}: {e}"));
                            w.write_all(b"x").unwrap();
                            w.commit(&ObjectMeta::default(), None)
                                .unwrap_or_else(|e| panic!("commit {key}: {e}"));
                        } else {
                            backend.remove("bkt", key, true).unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Another instance's start-up sweep runs while this one writes: a sweep that takes a
    /// temporary before its writer locked it must not fail the write.
    #[test]
    fn writes_survive_a_concurrent_sweep() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (root, backend) = shared_backend("sweeprace");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let sweeper = {
            let (backend, stop) = (backend.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    backend.sweep_temporaries();
                }
            })
        };
        let writers: Vec<_> = (0..2)
            .map(|t| {
                let backend = backend.clone();
                std::thread::spawn(move || {
                    for i in 0..3000 {
                        let key = format!("k{t}");
                        let mut w = backend
                            .create("bkt", &key)
                            .unwrap_or_else(|e| panic!("create #{i}: {e}"));
                        w.write_all(b"x").unwrap();
                        w.commit(&ObjectMeta::default(), None)
                            .unwrap_or_else(|e| panic!("commit #{i}: {e}"));
                    }
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        stop.store(true, Ordering::Relaxed);
        sweeper.join().unwrap();
        let _ = std::fs::remove_dir_all(&root);
        assert!(results.iter().all(|r| r.is_ok()), "a write failed");
    }
}
