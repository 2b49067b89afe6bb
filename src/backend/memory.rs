//! The memory backend: buckets and objects in a map, for tests and ephemeral use (`:memory:`).
//! It keeps the same rules as the local backend, including file/directory collisions, so a
//! test against it means the same thing as one against a directory.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::{
    Backend, BackendError, BucketInfo, DirEntry, ErrorKind, ObjectInfo, ObjectMeta, ObjectReader,
    ObjectWriter, Result,
};

#[derive(Clone)]
struct Object {
    data: Arc<Vec<u8>>,
    mtime: SystemTime,
    meta: ObjectMeta,
}

struct Bucket {
    created: SystemTime,
    objects: BTreeMap<String, Object>,
}

type Buckets = BTreeMap<String, Bucket>;

#[derive(Default)]
pub struct MemoryBackend {
    buckets: Arc<Mutex<Buckets>>,
}

fn lock(m: &Mutex<Buckets>) -> MutexGuard<'_, Buckets> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn no_bucket() -> BackendError {
    BackendError::new(
        ErrorKind::NoSuchBucket,
        "The specified bucket does not exist",
    )
}

fn no_key() -> BackendError {
    BackendError::new(ErrorKind::NotFound, "The specified key does not exist.")
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }
}

fn bucket<'a>(b: &'a Buckets, name: &str) -> Result<&'a Bucket> {
    b.get(name).ok_or_else(no_bucket)
}

/// Whether storing `key` would collide with a "directory" or with a parent "file".
fn collides(objects: &BTreeMap<String, Object>, key: &str) -> bool {
    let as_dir = format!("{key}/");
    let under = objects.range(as_dir.clone()..).next();
    if under.is_some_and(|(k, _)| k.starts_with(&as_dir)) {
        return true;
    }
    key.match_indices('/')
        .any(|(i, _)| objects.contains_key(&key[..i]))
}

impl Backend for MemoryBackend {
    fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let b = lock(&self.buckets);
        Ok(b.iter()
            .map(|(name, b)| BucketInfo {
                name: name.clone(),
                created: b.created,
            })
            .collect())
    }

    fn create_bucket(&self, name: &str) -> Result<()> {
        let mut b = lock(&self.buckets);
        if b.contains_key(name) {
            return Err(BackendError::new(ErrorKind::BucketExists, "Your previous request to create the named bucket succeeded and you already own it."));
        }
        let created = SystemTime::now();
        b.insert(
            name.to_string(),
            Bucket {
                created,
                objects: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn delete_bucket(&self, name: &str) -> Result<()> {
        let mut b = lock(&self.buckets);
        if !bucket(&b, name)?.objects.is_empty() {
            return Err(BackendError::new(
                ErrorKind::BucketNotEmpty,
                "The bucket you tried to delete is not empty",
            ));
        }
        b.remove(name);
        Ok(())
    }

    fn bucket_exists(&self, name: &str) -> Result<bool> {
        Ok(lock(&self.buckets).contains_key(name))
    }

    fn stat(&self, b: &str, key: &str) -> Result<ObjectInfo> {
        let buckets = lock(&self.buckets);
        let o = bucket(&buckets, b)?.objects.get(key).ok_or_else(no_key)?;
        Ok(ObjectInfo {
            size: o.data.len() as u64,
            mtime: o.mtime,
            meta: Some(o.meta.clone()),
        })
    }

    fn open(&self, b: &str, key: &str) -> Result<ObjectReader> {
        let buckets = lock(&self.buckets);
        let o = bucket(&buckets, b)?.objects.get(key).ok_or_else(no_key)?;
        let info = ObjectInfo {
            size: o.data.len() as u64,
            mtime: o.mtime,
            meta: Some(o.meta.clone()),
        };
        let cursor = Cursor::new(SharedBytes(o.data.clone()));
        Ok(ObjectReader {
            info,
            body: Box::new(cursor),
        })
    }

    fn create(&self, b: &str, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        let buckets = lock(&self.buckets);
        if collides(&bucket(&buckets, b)?.objects, key) {
            return Err(BackendError::new(
                ErrorKind::Conflict,
                "The key collides with a directory",
            ));
        }
        Ok(Box::new(MemoryWriter {
            buckets: self.buckets.clone(),
            bucket: b.to_string(),
            key: key.to_string(),
            data: Vec::new(),
        }))
    }

    fn remove(&self, b: &str, key: &str, _cleanup: bool) -> Result<()> {
        let mut buckets = lock(&self.buckets);
        buckets
            .get_mut(b)
            .ok_or_else(no_bucket)?
            .objects
            .remove(key);
        Ok(())
    }

    fn list_dir(&self, b: &str, dir: &str) -> Result<Vec<DirEntry>> {
        let buckets = lock(&self.buckets);
        let objects = &bucket(&buckets, b)?.objects;
        let mut out: Vec<DirEntry> = Vec::new();
        for (k, _) in objects
            .range(dir.to_string()..)
            .take_while(|(k, _)| k.starts_with(dir))
        {
            let rest = &k[dir.len()..];
            let entry = match rest.split_once('/') {
                Some((d, _)) => DirEntry {
                    name: d.to_string(),
                    is_dir: true,
                    ino: 0,
                    facts: None,
                },
                None => DirEntry {
                    name: rest.to_string(),
                    is_dir: false,
                    ino: 0,
                    facts: None,
                },
            };
            if out.last() != Some(&entry) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    fn set_meta(&self, b: &str, key: &str, _info: &ObjectInfo, meta: &ObjectMeta) -> Result<()> {
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.get_mut(b).ok_or_else(no_bucket)?;
        bucket.objects.get_mut(key).ok_or_else(no_key)?.meta = meta.clone();
        Ok(())
    }
}

struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

struct MemoryWriter {
    buckets: Arc<Mutex<Buckets>>,
    bucket: String,
    key: String,
    data: Vec<u8>,
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for MemoryWriter {
    fn commit(self: Box<Self>, meta: &ObjectMeta, mtime: Option<SystemTime>) -> Result<ObjectInfo> {
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.get_mut(&self.bucket).ok_or_else(no_bucket)?;
        if collides(&bucket.objects, &self.key) {
            return Err(BackendError::new(
                ErrorKind::Conflict,
                "The key collides with a directory",
            ));
        }
        let mtime = mtime.unwrap_or_else(SystemTime::now);
        let size = self.data.len() as u64;
        let object = Object {
            data: Arc::new(self.data),
            mtime,
            meta: meta.clone(),
        };
        bucket.objects.insert(self.key.clone(), object);
        Ok(ObjectInfo {
            size,
            mtime,
            meta: Some(meta.clone()),
        })
    }
}
