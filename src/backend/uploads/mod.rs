//! Multipart upload storage: the contract (`Uploads`), and the local backend's uploads kept
//! on disk beside the objects.
//!
//! In the local backend an upload is a directory
//! `.s3serve/uploads/<id>/` holding a manifest (bucket, key, start time, the object's future
//! metadata) and its parts. Nothing is kept in memory: uploads survive restarts and any
//! instance sharing the filesystem can continue them.
//!
//! `local` holds the upload directory and parts written to files of their own; `slots`
//! writes parts in place and completes them without a copy.

mod local;
mod slots;

use std::io::Write;
use std::time::SystemTime;

use super::{ObjectInfo, ObjectMeta, ObjectWriter, Result};

pub use local::LocalUploads;

/// An upload as recorded in its manifest.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub initiated: SystemTime,
    pub meta: ObjectMeta,
    /// Set once completed: the ETag of the object it produced.
    pub done_etag: Option<String>,
    /// Whether the store lists each part's checksum, so Complete can compare the ones it
    /// names (an upstream's listing may not; the upstream then checks them itself).
    pub part_checksums: bool,
}

/// One stored part.
#[derive(Debug, Clone, PartialEq)]
pub struct PartInfo {
    pub number: u32,
    /// Lower-case hex MD5 of the part.
    pub etag: String,
    pub size: u64,
    pub mtime: SystemTime,
    /// The part's flexible checksum: algorithm name and base64 value.
    pub checksum: Option<(String, String)>,
    /// Where the part lies in the upload's shared file, if it was written in place.
    pub offset: Option<u64>,
}

/// A part being written; dropping it without `commit` discards it.
pub trait PartWriter: Write + Send {
    /// Makes the part visible with its MD5 and, if one was computed, its checksum.
    fn commit(self: Box<Self>, md5_hex: &str, checksum: Option<(&str, &str)>) -> Result<()>;

    /// Takes `file`, found at `path`, as the part's bytes in place of what was written, if
    /// the store can do so without copying; false when it cannot.
    fn adopt(&mut self, _file: std::fs::File, _path: &std::path::Path) -> std::io::Result<bool> {
        Ok(false)
    }
}

/// Where multipart uploads live while they are in progress.
pub trait Uploads: Send + Sync {
    fn create(&self, bucket: &str, key: &str, meta: &ObjectMeta) -> Result<String>;
    /// The upload's manifest; NoSuchUpload when unknown.
    fn info(&self, id: &str) -> Result<UploadInfo>;
    /// Uploads in progress (not completed) for `bucket`.
    fn list(&self, bucket: &str) -> Result<Vec<UploadInfo>>;
    /// A writer for part `number`; `size`, when known, is the part's exact length, and the
    /// writer refuses more.
    fn part_writer(
        &self,
        id: &str,
        number: u32,
        size: Option<u64>,
    ) -> Result<Box<dyn PartWriter + '_>>;
    /// Stored parts, by part number.
    fn parts(&self, id: &str) -> Result<Vec<PartInfo>>;
    /// Appends the given parts, in order, to `dst`.
    fn assemble(&self, id: &str, parts: &[PartInfo], dst: &mut dyn ObjectWriter) -> Result<()>;
    /// Whether the store joins an upload's parts into its object itself ([`join`]), rather
    /// than having them assembled into an object writer.
    ///
    /// [`join`]: Self::join
    fn joins(&self) -> bool {
        false
    }
    /// Joins `parts` into the upload's object, which then has ETag `etag`, where the store
    /// does so itself (an S3 upstream completing its own upload).
    fn join(&self, _id: &str, _parts: &[PartInfo], _etag: &str) -> Result<ObjectInfo> {
        Err(super::BackendError::new(
            super::ErrorKind::Unsupported,
            "this store does not join parts itself",
        ))
    }
    /// Records the result of a completed upload and frees its parts.
    fn mark_done(&self, id: &str, etag: &str) -> Result<()>;
    fn abort(&self, id: &str) -> Result<()>;
    /// Removes pending uploads last touched before `pending`, and completed ones (kept to
    /// answer retried Completes) finished before `done`; returns how many.
    fn expire(&self, pending: Option<SystemTime>, done: SystemTime) -> usize;
    /// Uploads in progress in every bucket.
    fn count(&self) -> usize;
}
