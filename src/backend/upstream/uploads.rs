//! Multipart uploads as the upstream's own: each part is sent on as an upstream part (with
//! its Content-MD5 and checksum, which the upstream verifies again) and Complete is the
//! upstream's Complete, so no upload is ever joined on s3serve's disk. Nothing is kept
//! here: our upload id carries the bucket, the key and the checksum algorithm beside the
//! upstream's id, so any instance can continue an upload and none loses one on restart.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

use super::http::Payload;
use super::multipart::UpstreamPart;
use super::store::{checksum_header, md5_header, Scratch, Upstream};
use crate::backend::{
    Backend, BackendError, ErrorKind, ObjectInfo, ObjectMeta, ObjectWriter, PartInfo, PartWriter,
    Result, UploadInfo, Uploads, CHECKSUM_ALGORITHM_KEY, CHECKSUM_TYPE_KEY,
};
use crate::util;

/// What our upload id says.
#[derive(Debug, Clone, PartialEq)]
struct UploadId {
    bucket: String,
    key: String,
    /// The parts' checksum algorithm and the checksum type, where the upstream took them.
    checksum: Option<(String, String)>,
    upstream: String,
}

impl UploadId {
    /// `<base64url of bucket NUL key NUL algorithm NUL type>.<the upstream's id>`.
    fn encode(&self) -> String {
        let (alg, kind) = self
            .checksum
            .as_ref()
            .map_or(("", ""), |(a, k)| (a.as_str(), k.as_str()));
        let head = format!("{}\0{}\0{alg}\0{kind}", self.bucket, self.key);
        format!("{}.{}", util::base64_url(head.as_bytes()), self.upstream)
    }

    fn decode(id: &str) -> Option<UploadId> {
        let (head, upstream) = id.split_once('.')?;
        let head = String::from_utf8(util::unbase64(head)?).ok()?;
        let (bucket, rest) = head.split_once('\0')?;
        let (rest, kind) = rest.rsplit_once('\0')?;
        let (key, alg) = rest.rsplit_once('\0')?;
        if bucket.is_empty() || key.is_empty() || upstream.is_empty() {
            return None;
        }
        Some(UploadId {
            bucket: bucket.into(),
            key: key.into(),
            checksum: (!alg.is_empty()).then(|| (alg.into(), kind.into())),
            upstream: upstream.into(),
        })
    }
}

fn no_such_upload() -> BackendError {
    BackendError::new(
        ErrorKind::NoSuchUpload,
        "The specified upload does not exist.",
    )
}

impl Upstream {
    fn upload_id(&self, id: &str) -> Result<UploadId> {
        UploadId::decode(id).ok_or_else(no_such_upload)
    }

    /// The upstream bucket and key of an upload.
    fn upload_place(&self, u: &UploadId) -> (String, String) {
        self.place(&u.bucket, &u.key)
    }
}

fn checksum_of(meta: &ObjectMeta, name: &str) -> Option<String> {
    meta.checksums
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

impl Uploads for Upstream {
    fn create(&self, bucket: &str, key: &str, meta: &ObjectMeta) -> Result<String> {
        let (b, k) = self.place(bucket, key);
        let mut headers = self.put_headers(meta);
        let wanted = checksum_of(meta, CHECKSUM_ALGORITHM_KEY).map(|alg| {
            let kind = checksum_of(meta, CHECKSUM_TYPE_KEY).unwrap_or("COMPOSITE".into());
            (alg, kind)
        });
        if let Some((alg, kind)) = &wanted {
            headers.push(("x-amz-checksum-algorithm".into(), alg.clone()));
            headers.push(("x-amz-checksum-type".into(), kind.clone()));
        }
        let created = self.client.create_upload(&b, &k, &headers)?;
        Ok(UploadId {
            bucket: bucket.into(),
            key: key.into(),
            // An upstream that does not name the algorithm back ignores checksums: the
            // parts' are still verified as they arrive, but not sent on.
            checksum: wanted.filter(|_| created.checksums),
            upstream: created.id,
        }
        .encode())
    }

    fn info(&self, id: &str) -> Result<UploadInfo> {
        let u = self.upload_id(id)?;
        let mut meta = ObjectMeta::default();
        if let Some((alg, kind)) = &u.checksum {
            meta.checksums = vec![
                (CHECKSUM_ALGORITHM_KEY.into(), alg.clone()),
                (CHECKSUM_TYPE_KEY.into(), kind.clone()),
            ];
        }
        Ok(UploadInfo {
            id: id.to_string(),
            // Not every upstream lists them (moto does not); each checks them on Complete.
            part_checksums: false,
            bucket: u.bucket,
            key: u.key,
            initiated: SystemTime::now(),
            meta,
            done_etag: None,
        })
    }

    fn list(&self, bucket: &str) -> Result<Vec<UploadInfo>> {
        let (b, prefix) = self.place(bucket, "");
        let listed = self.client.list_uploads(&b, &prefix)?;
        Ok(listed
            .into_iter()
            .filter_map(|up| {
                let key = up.key.strip_prefix(&prefix)?.to_string();
                let id = UploadId {
                    bucket: bucket.into(),
                    key: key.clone(),
                    checksum: None,
                    upstream: up.id,
                };
                Some(UploadInfo {
                    id: id.encode(),
                    bucket: bucket.into(),
                    key,
                    initiated: up.initiated,
                    meta: ObjectMeta::default(),
                    done_etag: None,
                    part_checksums: false,
                })
            })
            .collect())
    }

    fn part_writer(
        &self,
        id: &str,
        number: u32,
        _size: Option<u64>,
    ) -> Result<Box<dyn PartWriter + '_>> {
        Ok(Box::new(Part {
            upstream: self,
            upload: self.upload_id(id)?,
            number,
            bytes: Scratch::new(&self.scratch)?,
        }))
    }

    fn parts(&self, id: &str) -> Result<Vec<PartInfo>> {
        let u = self.upload_id(id)?;
        let (b, k) = self.upload_place(&u);
        Ok(self
            .client
            .list_parts(&b, &k, &u.upstream)?
            .into_iter()
            .map(|p| PartInfo {
                number: p.number,
                etag: p.etag.trim_matches('"').to_string(),
                size: p.size,
                mtime: p.mtime,
                checksum: p.checksum,
                offset: None,
            })
            .collect())
    }

    fn assemble(&self, _: &str, _: &[PartInfo], _: &mut dyn ObjectWriter) -> Result<()> {
        Err(BackendError::new(
            ErrorKind::Unsupported,
            "the upstream joins its uploads itself",
        ))
    }

    fn joins(&self) -> bool {
        true
    }

    fn join(&self, id: &str, parts: &[PartInfo], etag: &str) -> Result<ObjectInfo> {
        let u = self.upload_id(id)?;
        let (b, k) = self.upload_place(&u);
        let listed: Vec<UpstreamPart> = parts
            .iter()
            .map(|p| UpstreamPart {
                number: p.number,
                etag: format!("\"{}\"", p.etag),
                size: p.size,
                mtime: p.mtime,
                checksum: p.checksum.clone().filter(|_| u.checksum.is_some()),
            })
            .collect();
        match self.client.complete_upload(&b, &k, &u.upstream, &listed) {
            Ok(()) => {}
            // A retried Complete whose first attempt got through: the object is there.
            Err(e) if e.kind == ErrorKind::NoSuchUpload => {
                let info = self.stat(&u.bucket, &u.key).map_err(|_| e.clone())?;
                let same = info.meta.as_ref().and_then(|m| m.etag.as_deref()) == Some(etag);
                return if same { Ok(info) } else { Err(e) };
            }
            Err(e) => return Err(e),
        }
        self.stat(&u.bucket, &u.key)
    }

    fn mark_done(&self, _: &str, _: &str) -> Result<()> {
        Ok(())
    }

    fn abort(&self, id: &str) -> Result<()> {
        let u = self.upload_id(id)?;
        let (b, k) = self.upload_place(&u);
        self.client.abort_upload(&b, &k, &u.upstream)
    }

    fn expire(&self, _: Option<SystemTime>, _: SystemTime) -> usize {
        // The upstream's own lifecycle rules expire its uploads.
        0
    }

    fn count(&self) -> usize {
        0
    }
}

/// A part collected in a scratch file (or a spooled body taken whole), sent on commit.
struct Part<'a> {
    upstream: &'a Upstream,
    upload: UploadId,
    number: u32,
    bytes: Scratch,
}

impl Write for Part<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PartWriter for Part<'_> {
    fn commit(self: Box<Self>, md5_hex: &str, checksum: Option<(&str, &str)>) -> Result<()> {
        let Part {
            upstream,
            upload,
            number,
            bytes,
        } = *self;
        let (file, len) = bytes.finish()?;
        let mut headers = Vec::new();
        if let Some(md5) = util::unhex(md5_hex) {
            headers.push(md5_header(&md5));
        }
        if let (Some((alg, value)), Some(_)) = (checksum, &upload.checksum) {
            headers.push(checksum_header(alg, value));
        }
        let (b, k) = upstream.upload_place(&upload);
        // With Content-MD5 the upstream checks the bytes it got against the ones we hashed.
        upstream.client.upload_part(
            &b,
            &k,
            &upload.upstream,
            number,
            &headers,
            Payload::File {
                file: &file,
                offset: 0,
                len,
            },
        )?;
        Ok(())
    }

    fn adopt(&mut self, file: File, _path: &Path) -> io::Result<bool> {
        self.bytes.adopt(file);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = UploadId {
            bucket: "bkt".into(),
            key: "dir/a b\u{e9}.txt".into(),
            checksum: Some(("CRC32".into(), "COMPOSITE".into())),
            upstream: "2~abc.def_-x".into(),
        };
        let s = id.encode();
        assert!(s.bytes().all(|c| c.is_ascii_graphic()), "{s}");
        assert_eq!(UploadId::decode(&s), Some(id.clone()));
        let plain = UploadId {
            checksum: None,
            ..id
        };
        assert_eq!(UploadId::decode(&plain.encode()), Some(plain));
        assert_eq!(UploadId::decode("nonsense"), None);
        assert_eq!(UploadId::decode("!!.x"), None);
        assert_eq!(UploadId::decode(""), None);
    }
}
