//! Multipart uploads through the Vfs, so that every write, a part or an assembled object,
//! passes the one layer that will later cache and order them.

use std::time::SystemTime;

use super::{key, Vfs, WriteCheck};
use crate::backend::{
    BackendError, ErrorKind, ObjectInfo, ObjectMeta, PartInfo, PartWriter, Result, UploadInfo,
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
        self.check_writable(bucket, key)?;
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

    /// Makes `parts` of upload `id` the object `bucket`/`key` with `meta` (its ETag among
    /// them) and `mtime`, after `check`, if any, approves the object there now; then
    /// records the upload as done and frees its parts. Where the store joins parts itself
    /// it does so; otherwise they are appended to a new object and committed like a PUT.
    #[allow(clippy::too_many_arguments)]
    pub fn complete_upload<E: From<BackendError>>(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        parts: &[PartInfo],
        meta: &ObjectMeta,
        mtime: Option<SystemTime>,
        check: Option<&dyn WriteCheck<E>>,
    ) -> std::result::Result<ObjectInfo, E> {
        key::check(key)?;
        let store = self.store()?;
        let etag = meta.etag.as_deref().unwrap_or_default();
        let info = if store.joins() {
            let _guard = self.lock(bucket, key);
            self.approve(bucket, key, check)?;
            store.join(id, parts, etag)?
        } else {
            let mut writer = self.create(bucket, key)?;
            store.assemble(id, parts, writer.as_mut())?;
            self.commit(bucket, key, writer, meta, mtime, check)?
        };
        store.mark_done(id, etag)?;
        Ok(info)
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
