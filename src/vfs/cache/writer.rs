//! Writes: into the cache (a new dirty generation, acknowledged once durable there), or past
//! it to the remote for what the cache cannot hold (folder markers, a key whose path is taken
//! by a folder) and for server-side copies. A write past the cache first stops and waits out
//! any upload of the key, so the remote ends with the newest write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::state::{unavailable, Item, Key, Room, Shared};
use super::store::{self, Ranges, Record};
use crate::backend::{
    BackendError, ErrorKind, Facts, ObjectInfo, ObjectMeta, ObjectWriter, Result,
};

/// Bytes on their way into the cache.
pub(super) struct CacheWriter<'a> {
    sh: &'a Shared,
    key: Key,
    gen: u64,
    tmp: PathBuf,
    file: Option<File>,
    room: Room,
}

impl<'a> CacheWriter<'a> {
    pub fn new(sh: &'a Shared, bucket: &str, key: &str) -> Result<CacheWriter<'a>> {
        let gen = sh.new_gen();
        let dir = sh.layout.tmp_dir();
        store::create_dirs(&dir)?;
        let tmp = dir.join(gen.to_string());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let mut w = CacheWriter {
            sh,
            key: (bucket.to_string(), key.to_string()),
            gen,
            tmp,
            file: Some(file),
            room: Room::default(),
        };
        // Refused at once when the cache is already full.
        w.grow(0)?;
        Ok(w)
    }

    fn grow(&mut self, more: u64) -> Result<()> {
        self.room.grow(self.sh, more)
    }

    fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("the file lives until commit or drop")
    }

    /// Makes the write the item's newest generation, durably, in the order that survives a
    /// crash at any point (see [`store`]).
    fn commit_inner(&mut self, meta: &ObjectMeta, mtime: Option<SystemTime>) -> Result<ObjectInfo> {
        let sh = self.sh;
        let mtime = mtime.unwrap_or_else(SystemTime::now);
        // The file's own length: parts are assembled into it in the kernel, not through
        // `write`.
        let size = {
            let f = self.file();
            f.set_modified(mtime)?;
            f.sync_all()?;
            f.metadata()?.len()
        };
        // Bytes put there in the kernel (assembled parts) are admitted now.
        self.room.written = size;
        self.grow(0)?;
        let data_path = sh.data_path(&self.key);
        let meta_path = sh.meta_path(&self.key);
        let (data_dir, meta_dir) = (parent(&data_path), parent(&meta_path));
        if let Err(e) = store::create_dirs(&data_dir).and_then(|()| store::create_dirs(&meta_dir)) {
            return Err(conflict(e));
        }
        let rec = Record {
            mtime,
            atime: SystemTime::now(),
            size,
            ranges: Ranges::full(size),
            fingerprint: String::new(),
            dirty: true,
            gen: self.gen,
            tries: 0,
            next_try: None,
            meta: meta.clone(),
            pending_data: Some(format!("tmp/{}", self.gen)),
            remote_upload: None,
        };
        let name = meta_path.file_name().unwrap_or_default().to_string_lossy();
        let meta_tmp = meta_dir.join(format!(".{name}.{}.s3serve-tmp", self.gen));
        write_synced(&meta_tmp, &rec.encode())?;
        {
            let mut st = sh.lock();
            let renamed =
                fs::rename(&meta_tmp, &meta_path).and_then(|()| fs::rename(&self.tmp, &data_path));
            if let Err(e) = renamed {
                let _ = fs::remove_file(&meta_tmp);
                // The old record (if any) may now name this generation: put it back in
                // line with the item still in memory, or drop it.
                match st.items.get(&self.key) {
                    Some(item) => sh.persist(&self.key, &item.rec.clone()),
                    None => {
                        let _ = fs::remove_file(&meta_path);
                    }
                }
                return Err(conflict(e));
            }
            let now = sh.clock.now();
            // An older generation's readers keep their open file.
            st.items.insert(
                self.key.clone(),
                Item {
                    rec: rec.clone(),
                    last_use: now,
                    hold: false,
                    fill: None,
                    uploaded: None,
                },
            );
            st.reserved = st.reserved.saturating_sub(self.room.reserved);
            self.room.reserved = 0;
        }
        store::sync_dir(&meta_dir)?;
        store::sync_dir(&data_dir)?;
        self.file = None;
        Ok(ObjectInfo {
            size,
            mtime,
            meta: Some(meta.clone()),
        })
    }
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A path in the cache taken by a folder (or the other way round).
fn conflict(e: io::Error) -> BackendError {
    BackendError::new(
        ErrorKind::Conflict,
        format!("the cache cannot hold this key: {e}"),
    )
}

impl Write for CacheWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.grow(buf.len() as u64).map_err(io::Error::other)?;
        let n = self.file().write(buf)?;
        self.room.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for CacheWriter<'_> {
    fn commit(
        mut self: Box<Self>,
        meta: &ObjectMeta,
        mtime: Option<SystemTime>,
    ) -> Result<ObjectInfo> {
        let sh = self.sh;
        let committed = self.commit_inner(meta, mtime);
        let info = match committed {
            Ok(info) => info,
            Err(e) if e.kind == ErrorKind::Conflict => {
                // The cache's tree cannot hold this key: the bytes go to the remote now.
                let mut file = File::open(&self.tmp)?;
                let mut w = PassWriter::new(
                    sh,
                    &self.key.0,
                    &self.key.1,
                    sh.inner.create(&self.key.0, &self.key.1)?,
                );
                io::copy(&mut file, &mut w)?;
                return Box::new(w).commit(meta, mtime);
            }
            Err(e) => return Err(e),
        };
        let key = self.key.clone();
        let gen = self.gen;
        if sh.opts.write_back.is_zero() {
            // Uploaded before the answer; a failure withdraws the write.
            match sh.claim(&key, gen) {
                Some(true) => {}
                // An older upload of the key is in flight, or a delete holds it: the write
                // is durable here, and goes up behind the answer once the key is free.
                Some(false) => {
                    sh.queue(key, gen, sh.clock.now());
                    return Ok(info);
                }
                None => return Ok(info),
            }
            let sent = sh.upload(&key, gen);
            sh.upload_ended(&key);
            if let Err(e) = sent {
                let mut st = sh.lock();
                if st.items.get(&key).is_some_and(|i| i.rec.gen == gen) {
                    st.items.remove(&key);
                    sh.remove_files(&key);
                }
                // The remote's refusal as it is (a conflict is 409); a failure is 503.
                return Err(match e.kind {
                    ErrorKind::Io | ErrorKind::Unavailable => {
                        unavailable(format!("uploading to the remote: {}", e.message))
                    }
                    _ => e,
                });
            }
        } else {
            sh.queue(key, gen, sh.clock.now() + sh.opts.write_back);
        }
        Ok(info)
    }

    fn file(&mut self) -> Option<&mut File> {
        self.file.as_mut()
    }
}

impl Drop for CacheWriter<'_> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
        self.room.release(self.sh);
    }
}

/// A write that goes to the remote directly; the cache's item for the key (an older
/// generation) is held meanwhile and dropped once the remote has the new object.
pub(super) struct PassWriter<'a> {
    sh: &'a Shared,
    key: Key,
    inner: Box<dyn ObjectWriter + 'a>,
}

impl<'a> PassWriter<'a> {
    pub fn new(
        sh: &'a Shared,
        bucket: &str,
        key: &str,
        inner: Box<dyn ObjectWriter + 'a>,
    ) -> PassWriter<'a> {
        PassWriter {
            sh,
            key: (bucket.to_string(), key.to_string()),
            inner,
        }
    }
}

impl Write for PassWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl ObjectWriter for PassWriter<'_> {
    fn commit(self: Box<Self>, meta: &ObjectMeta, mtime: Option<SystemTime>) -> Result<ObjectInfo> {
        let PassWriter { sh, key, inner } = *self;
        let held = sh.hold(&key);
        match inner.commit(meta, mtime) {
            Ok(info) => {
                if held {
                    sh.unhold(&key, true);
                }
                sh.listed_write(
                    &key,
                    Facts {
                        size: info.size,
                        mtime: info.mtime,
                        etag: info.meta.as_ref().and_then(|m| m.etag.clone()),
                    },
                );
                Ok(info)
            }
            Err(e) => {
                if held {
                    sh.unhold(&key, false);
                }
                Err(e)
            }
        }
    }

    fn file(&mut self) -> Option<&mut File> {
        self.inner.file()
    }

    fn adopt(&mut self, file: File, path: &Path) -> io::Result<bool> {
        self.inner.adopt(file, path)
    }
}
