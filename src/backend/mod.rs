//! Storage backends: the bottom of the data path (`ops -> vfs -> backend`). A backend stores
//! objects under bucket and key, with their metadata, and knows no HTTP and no S3 wire format.
//! Optional capabilities (server-side copy) are default methods, so a backend only implements
//! what it can do natively.

pub mod key;
pub mod local;
pub mod memory;
pub mod meta;
pub mod uploads;
pub mod upstream;
pub mod watch;

use std::io::{self, Read, Seek, Write};
use std::time::SystemTime;

pub use watch::WatchTicket;

pub use meta::{ObjectMeta, CHECKSUM_ALGORITHM_KEY, CHECKSUM_TYPE_KEY};
pub use uploads::{PartInfo, PartWriter, UploadInfo, Uploads};

/// Why a backend call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    NoSuchBucket,
    NoSuchUpload,
    /// A part named to complete an upload is missing, differs, or is too small.
    InvalidPart,
    BucketExists,
    BucketNotEmpty,
    /// A key collides with a directory, or a file sits where a directory is needed.
    Conflict,
    InvalidKey,
    KeyTooLong,
    ReadOnly,
    /// The server's filters hide the key, so it may not be written.
    Excluded,
    Unsupported,
    /// The storage cannot be reached or failed for now (an upstream that is down, times
    /// out or answers 5xx): the request may succeed later.
    Unavailable,
    /// The filesystem is full, or the user's quota is spent.
    NoSpace,
    Io,
}

#[derive(Debug, Clone)]
pub struct BackendError {
    pub kind: ErrorKind,
    pub message: String,
}

impl BackendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BackendError {
        BackendError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for BackendError {}

impl From<io::Error> for BackendError {
    fn from(e: io::Error) -> BackendError {
        // A backend error carried through an io::Error (a writer refusing bytes) keeps its kind.
        if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<BackendError>()) {
            return inner.clone();
        }
        let kind = match e.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => ErrorKind::Conflict,
            io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => {
                ErrorKind::ReadOnly
            }
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::NoSpace,
            _ => ErrorKind::Io,
        };
        BackendError::new(kind, e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// A bucket as listed.
#[derive(Debug, Clone)]
pub struct BucketInfo {
    pub name: String,
    pub created: SystemTime,
}

/// An object's size, modification time and stored metadata. `meta` is `None` when nothing was
/// stored for it, or when what was stored describes another size or mtime (the file changed
/// behind our back).
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub size: u64,
    pub mtime: SystemTime,
    pub meta: Option<ObjectMeta>,
}

/// A directory's identity and modification time: equal stamps mean the same entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStamp {
    pub dev: u64,
    pub ino: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u64,
}

/// Listings that stay trustworthy until an entry leaves the directory (see [`watch`]).
pub trait RemovalWatch: Sync {
    /// Lists `dir` as [`Backend::list_dir`] does, with a ticket that says, once the watch
    /// has caught up, whether an entry may have left it since.
    fn list_watched(&self, bucket: &str, dir: &str)
        -> Result<(Vec<DirEntry>, Option<WatchTicket>)>;
    /// Takes in every change completed before this call.
    fn catch_up(&self);
    /// Whether no entry has left the directory since `ticket` was issued, as of the last
    /// [`catch_up`](Self::catch_up).
    fn unchanged(&self, ticket: &WatchTicket) -> bool;
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    /// The inode number where the backend has one, else 0.
    pub ino: u64,
    /// An object's size, mtime and ETag, where the backend's listing gives them (an S3
    /// upstream's does), so that no one has to stat it.
    pub facts: Option<Facts>,
}

/// What a listing says of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub size: u64,
    pub mtime: SystemTime,
    /// Unquoted.
    pub etag: Option<String>,
}

/// A streaming object write. Dropping it without `commit` discards everything written.
pub trait ObjectWriter: Write + Send {
    /// Makes the object visible atomically with `meta` and, if given, `mtime`.
    fn commit(self: Box<Self>, meta: &ObjectMeta, mtime: Option<SystemTime>) -> Result<ObjectInfo>;

    /// The file being written, where there is one, so data can be appended in the kernel.
    fn file(&mut self) -> Option<&mut std::fs::File> {
        None
    }

    /// Makes `file`, found at `path`, the object's bytes in place of what was written, if the
    /// backend can do so without copying; false when it cannot.
    fn adopt(&mut self, _file: std::fs::File, _path: &std::path::Path) -> io::Result<bool> {
        Ok(false)
    }
}

/// A seekable object body.
pub trait Body: Read + Seek + Send {
    /// The open file behind the body, if it is one: the front can then send it with
    /// sendfile(2) instead of reading it.
    fn file(&self) -> Option<&std::fs::File> {
        None
    }
}

impl Body for std::fs::File {
    fn file(&self) -> Option<&std::fs::File> {
        Some(self)
    }
}

impl<T: AsRef<[u8]> + Send> Body for std::io::Cursor<T> {}

/// An open object with the info it was opened with, positioned at its start. Callers seek
/// and limit it to the range they serve, so the info and the bytes come from one open.
pub struct ObjectReader {
    pub info: ObjectInfo,
    pub body: Box<dyn Body>,
}

/// The storage interface. Keys passed in have been checked by [`key::check`].
pub trait Backend: Send + Sync {
    fn list_buckets(&self) -> Result<Vec<BucketInfo>>;
    fn create_bucket(&self, bucket: &str) -> Result<()>;
    fn delete_bucket(&self, bucket: &str) -> Result<()>;
    fn bucket_exists(&self, bucket: &str) -> Result<bool>;

    fn stat(&self, bucket: &str, key: &str) -> Result<ObjectInfo>;
    fn open(&self, bucket: &str, key: &str) -> Result<ObjectReader>;
    fn create(&self, bucket: &str, key: &str) -> Result<Box<dyn ObjectWriter + '_>>;
    /// Removes an object; a missing key is not an error. With `cleanup`, parent directories
    /// left empty are removed up to, not including, the bucket.
    fn remove(&self, bucket: &str, key: &str, cleanup: bool) -> Result<()>;
    /// Lists one directory level: `dir` is "" for the bucket root or ends with `/`.
    /// Entries come in no particular order; hidden names are left out.
    fn list_dir(&self, bucket: &str, dir: &str) -> Result<Vec<DirEntry>>;
    /// Something that changes whenever entries are added to or removed from directory
    /// `dir` (ending with `/`), cheaper to get than its listing; `None` where there is no
    /// such thing.
    fn dir_stamp(&self, _bucket: &str, _dir: &str) -> Option<DirStamp> {
        None
    }
    /// Where the backend sees every change made to its storage: a way to learn that a
    /// directory lost an entry without reading it again.
    fn removals(&self) -> Option<&dyn RemovalWatch> {
        None
    }
    /// Rewrites stored metadata of an unchanged object (e.g. a freshly computed ETag).
    fn set_meta(&self, bucket: &str, key: &str, info: &ObjectInfo, meta: &ObjectMeta)
        -> Result<()>;

    /// The part sizes of multipart object `bucket`/`key`, whose ETag `etag` says it has
    /// `count` parts, where the backend can learn them beyond its stored metadata; empty
    /// when it cannot.
    fn part_sizes(
        &self,
        _bucket: &str,
        _key: &str,
        _etag: &str,
        _count: usize,
    ) -> Result<Vec<u64>> {
        Ok(Vec::new())
    }

    /// Whether the ETags in the backend's metadata are the storage's own, to be served as
    /// they are (an S3 upstream's), rather than computed here with `--etag-hash`.
    fn keeps_etags(&self) -> bool {
        false
    }

    /// Multipart upload storage, where the backend has it.
    fn uploads(&self) -> Option<&dyn Uploads> {
        None
    }

    /// Stops background work at shutdown (a cache's uploads), saying what is left.
    fn shutdown(&self) {}

    /// Removes temporary files a crash left behind, sparing those a live writer holds;
    /// returns how many. Nothing to do where writes leave no files.
    fn sweep_temporaries(&self) -> usize {
        0
    }

    /// Starts a write of `dst` that already holds the bytes of `src`, copied without passing
    /// through this process where the storage can. Returns the source's info too.
    fn copy(
        &self,
        src: (&str, &str),
        dst: (&str, &str),
    ) -> Result<(ObjectInfo, Box<dyn ObjectWriter + '_>)> {
        let mut reader = self.open(src.0, src.1)?;
        let mut writer = self.create(dst.0, dst.1)?;
        io::copy(&mut reader.body, &mut writer)?;
        Ok((reader.info, writer))
    }
}
