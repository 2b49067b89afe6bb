//! Multipart uploads through the Vfs, so that every write, a part or an assembled object,
//! passes the one layer that will later cache and order them.

use std::time::SystemTime;

use super::{key, Vfs};
use crate::backend::{
    BackendError, ErrorKind, ObjectMeta, ObjectWriter, PartInfo, PartWriter, Result, UploadInfo,
    Uploads,
};

impl Vfs {
    /// Multipart upload storage; NotImplemented where the backend has none.
    fn store(&self) -> Result<&dyn Uploads> {
        self.backend.uploads().ok_or_else(|| {
            BackendError::new(
                ErrorKind::Unsupported,
                "Multipart uploads are not supported by this storage backend.",
            )
        })
    }

    /// Starts an upload to `bucket`/`key`; returns its id.
    pub fn create_upload(&self, bucket: &str, key: &str, meta: &ObjectMeta) -> Result<String> {
        key::check(key)?;
        self.store()?.create(bucket, key, meta)
    }

    /// The upload's record; NoSuchUpload when unknown.
    pub fn upload(&self, id: &str) -> Result<UploadInfo> {
        self.store()?.info(id)
    }

    /// Uploads in progress in `bucket`.
    pub fn uploads_in(&self, bucket: &str) -> Result<Vec<UploadInfo>> {
        self.store()?.list(bucket)
    }

    /// Uploads in progress in every bucket (0 where the backend has none).
    pub fn upload_count(&self) -> usize {
        self.store().map_or(0, |s| s.count())
    }

    /// A writer for part `number` of upload `id`; `size`, when known, is its exact length.
    pub fn part_writer(
        &self,
        id: &str,
        number: u32,
        size: Option<u64>,
    ) -> Result<Box<dyn PartWriter + '_>> {
        self.store()?.part_writer(id, number, size)
    }

    /// The stored parts of upload `id`, by part number.
    pub fn parts(&self, id: &str) -> Result<Vec<PartInfo>> {
        self.store()?.parts(id)
    }

    /// Appends `parts` of upload `id`, in order, to `dst` (an object being created).
    pub fn assemble(&self, id: &str, parts: &[PartInfo], dst: &mut dyn ObjectWriter) -> Result<()> {
        self.store()?.assemble(id, parts, dst)
    }

    /// Records that upload `id` became an object with `etag`, and frees its parts.
    pub fn finish_upload(&self, id: &str, etag: &str) -> Result<()> {
        self.store()?.mark_done(id, etag)
    }

    pub fn abort_upload(&self, id: &str) -> Result<()> {
        self.store()?.abort(id)
    }

    /// Removes uploads idle since before `pending`, and forgets completed ones finished
    /// before `done`; returns how many.
    pub fn expire_uploads(&self, pending: Option<SystemTime>, done: SystemTime) -> usize {
        self.store().map_or(0, |s| s.expire(pending, done))
    }
}
