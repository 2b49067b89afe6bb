//! Multipart uploads while the cache takes writes: parts wait in the cache's own folder
//! (`LocalUploads`), and Complete makes one dirty item of them. A part's bytes are admitted
//! as they arrive, as a PUT's are, so a full cache answers 503 to a part too.

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::SystemTime;

use super::state::{Room, Shared};
use crate::backend::uploads::LocalUploads;
use crate::backend::{ObjectMeta, ObjectWriter, PartInfo, PartWriter, Result, UploadInfo, Uploads};

pub(super) struct CacheUploads {
    pub local: LocalUploads,
    /// The cache the parts count against, set once it exists.
    pub sh: OnceLock<Weak<Shared>>,
}

impl CacheUploads {
    fn shared(&self) -> Option<Arc<Shared>> {
        self.sh.get().and_then(Weak::upgrade)
    }
}

/// A part writer that asks the cache for room before each step of bytes.
struct Admitted<'a> {
    inner: Box<dyn PartWriter + 'a>,
    sh: Option<Arc<Shared>>,
    room: Room,
}

impl Admitted<'_> {
    fn admit(&mut self, more: u64) -> Result<()> {
        match &self.sh {
            Some(sh) => self.room.grow(sh, more),
            None => Ok(()),
        }
    }
}

impl Write for Admitted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.admit(buf.len() as u64).map_err(io::Error::other)?;
        let n = self.inner.write(buf)?;
        self.room.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl PartWriter for Admitted<'_> {
    fn commit(mut self: Box<Self>, md5_hex: &str, checksum: Option<(&str, &str)>) -> Result<()> {
        let inner = std::mem::replace(&mut self.inner, Box::new(Nothing));
        inner.commit(md5_hex, checksum)
    }

    fn adopt(&mut self, file: std::fs::File, path: &Path) -> io::Result<bool> {
        let len = file.metadata()?.len();
        self.admit(len).map_err(io::Error::other)?;
        self.room.written += len;
        self.inner.adopt(file, path)
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Some(sh) = &self.sh {
            self.room.release(sh);
        }
    }
}

/// Stands in for a part writer already committed.
struct Nothing;

impl Write for Nothing {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("the part is committed"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PartWriter for Nothing {
    fn commit(self: Box<Self>, _: &str, _: Option<(&str, &str)>) -> Result<()> {
        Ok(())
    }
}

impl Uploads for CacheUploads {
    fn create(&self, bucket: &str, key: &str, meta: &ObjectMeta) -> Result<String> {
        self.local.create(bucket, key, meta)
    }
    fn info(&self, id: &str) -> Result<UploadInfo> {
        self.local.info(id)
    }
    fn list(&self, bucket: &str) -> Result<Vec<UploadInfo>> {
        self.local.list(bucket)
    }
    fn part_writer(
        &self,
        id: &str,
        number: u32,
        size: Option<u64>,
    ) -> Result<Box<dyn PartWriter + '_>> {
        let inner = self.local.part_writer(id, number, size)?;
        let mut w = Admitted {
            inner,
            sh: self.shared(),
            room: Room::default(),
        };
        // A declared size is admitted whole, before any byte is taken.
        w.admit(size.unwrap_or(0))?;
        Ok(Box::new(w))
    }
    fn parts(&self, id: &str) -> Result<Vec<PartInfo>> {
        self.local.parts(id)
    }
    fn assemble(&self, id: &str, parts: &[PartInfo], dst: &mut dyn ObjectWriter) -> Result<()> {
        self.local.assemble(id, parts, dst)
    }
    fn mark_done(&self, id: &str, etag: &str) -> Result<()> {
        self.local.mark_done(id, etag)
    }
    fn abort(&self, id: &str) -> Result<()> {
        self.local.abort(id)
    }
    fn expire(&self, pending: Option<SystemTime>, done: SystemTime) -> usize {
        self.local.expire(pending, done)
    }
    fn count(&self) -> usize {
        self.local.count()
    }
}
