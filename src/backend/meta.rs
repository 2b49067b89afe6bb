//! Object metadata as stored beside the bytes: the HTTP headers S3 keeps (Content-Type and
//! friends), user metadata, the ETag and checksums. The record also carries the size and mtime
//! it describes, so a file changed behind our back is detected and its record ignored.
//! The encoding is a small line format (`name TAB value`, with `\`, TAB and newline escaped),
//! readable with `getfattr` and stable across versions (it starts with a version line).
//! A record with nothing but an ETag takes a one-line short form instead
//! (`s3m2 SIZE MTIME ETAG [ALG]`, numbers in hex): at most 64 bytes for objects under 64 GiB,
//! which ext4 keeps inside the inode. A longer value costs a block of its own, written with
//! every object and freed (with a synchronous discard, on a `discard` mount) with every
//! delete: the short form makes small PUTs and deletes several times cheaper there.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &str = "s3serve-meta 1";
const SHORT_MAGIC: &str = "s3m2";
/// The hash the short form assumes when it names none.
const SHORT_DEFAULT_ALG: &str = "MD5";

/// Key in [`ObjectMeta::checksums`] recording the type (`COMPOSITE` or `FULL_OBJECT`) of
/// the stored checksum.
pub const CHECKSUM_TYPE_KEY: &str = "TYPE";
/// Key in an upload's [`ObjectMeta::checksums`] naming the algorithm its parts carry.
pub const CHECKSUM_ALGORITHM_KEY: &str = "ALGORITHM";

/// What S3 stores with an object besides its bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectMeta {
    /// Unquoted ETag: hex digest, or `hex-N` for multipart objects.
    pub etag: Option<String>,
    /// The hash that produced `etag` (`MD5`, `SHA1`, `SHA256`, or `MULTIPART`).
    pub etag_alg: String,
    /// System headers, lower-case name to value: content-type, cache-control, …
    pub headers: Vec<(String, String)>,
    /// User metadata without the `x-amz-meta-` prefix, lower-case names.
    pub user: Vec<(String, String)>,
    /// Verified checksums: algorithm name (`CRC32`, …) to base64 value.
    pub checksums: Vec<(String, String)>,
    /// Part sizes of an object assembled from a multipart upload, in order (empty otherwise).
    pub parts: Vec<u64>,
}

impl ObjectMeta {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Serialises the record for an object of `size` bytes modified at `mtime`.
    pub fn encode(&self, size: u64, mtime: SystemTime) -> Vec<u8> {
        if let Some(short) = self.encode_short(size, mtime) {
            return short.into_bytes();
        }
        let mut out = String::with_capacity(256);
        out.push_str(MAGIC);
        out.push('\n');
        push(&mut out, "size", &size.to_string());
        push(&mut out, "mtime", &mtime_nanos(mtime).to_string());
        if let Some(etag) = &self.etag {
            push(&mut out, "etag", etag);
            push(&mut out, "etag-alg", &self.etag_alg);
        }
        for (n, v) in &self.headers {
            push(&mut out, &format!("h:{n}"), v);
        }
        for (n, v) in &self.user {
            push(&mut out, &format!("m:{n}"), v);
        }
        for (n, v) in &self.checksums {
            push(&mut out, &format!("c:{n}"), v);
        }
        if !self.parts.is_empty() {
            push(&mut out, "parts", &encode_parts(&self.parts));
        }
        out.into_bytes()
    }

    /// The one-line form, for a record that holds an ETag and nothing else.
    fn encode_short(&self, size: u64, mtime: SystemTime) -> Option<String> {
        let etag = self.etag.as_deref()?;
        let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        let nothing_else = self.headers.is_empty()
            && self.user.is_empty()
            && self.checksums.is_empty()
            && self.parts.is_empty();
        if !nothing_else || !plain(etag) || !plain(&self.etag_alg) {
            return None;
        }
        let mut out = format!("{SHORT_MAGIC} {size:x} {:x} {etag}", mtime_nanos(mtime));
        if self.etag_alg != SHORT_DEFAULT_ALG {
            out.push(' ');
            out.push_str(&self.etag_alg);
        }
        Some(out)
    }

    fn decode_short(text: &str, size: u64, mtime: SystemTime) -> Option<ObjectMeta> {
        let mut fields = text.split(' ');
        if fields.next()? != SHORT_MAGIC {
            return None;
        }
        let seen_size = u64::from_str_radix(fields.next()?, 16).ok()?;
        let seen_mtime = u128::from_str_radix(fields.next()?, 16).ok()?;
        let etag = fields.next()?.to_string();
        let alg = fields.next().unwrap_or(SHORT_DEFAULT_ALG).to_string();
        if fields.next().is_some() || seen_size != size || seen_mtime != mtime_nanos(mtime) {
            return None;
        }
        Some(ObjectMeta {
            etag: Some(etag),
            etag_alg: alg,
            ..ObjectMeta::default()
        })
    }

    /// Parses a record; `None` if it is damaged or describes another size or mtime.
    pub fn decode(raw: &[u8], size: u64, mtime: SystemTime) -> Option<ObjectMeta> {
        let text = std::str::from_utf8(raw).ok()?;
        if text.starts_with(SHORT_MAGIC) {
            return Self::decode_short(text, size, mtime);
        }
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut meta = ObjectMeta::default();
        let (mut seen_size, mut seen_mtime) = (None, None);
        for line in lines {
            let (name, value) = line.split_once('\t')?;
            let value = unescape(value)?;
            match name {
                "size" => seen_size = value.parse::<u64>().ok(),
                "mtime" => seen_mtime = value.parse::<u128>().ok(),
                "etag" => meta.etag = Some(value),
                "etag-alg" => meta.etag_alg = value,
                "parts" => meta.parts = decode_parts(&value)?,
                _ => meta.push_prefixed(name, value),
            }
        }
        (seen_size == Some(size) && seen_mtime == Some(mtime_nanos(mtime))).then_some(meta)
    }

    fn push_prefixed(&mut self, name: &str, value: String) {
        if let Some(n) = name.strip_prefix("h:") {
            self.headers.push((n.to_string(), value));
        } else if let Some(n) = name.strip_prefix("m:") {
            self.user.push((n.to_string(), value));
        } else if let Some(n) = name.strip_prefix("c:") {
            self.checksums.push((n.to_string(), value));
        }
    }

    /// Bytes of user metadata as S3 counts them (names plus values).
    pub fn user_size(&self) -> usize {
        self.user.iter().map(|(n, v)| n.len() + v.len()).sum()
    }
}

/// Part sizes run-length encoded (`size*count,…`): 10,000 equal parts stay one short line.
fn encode_parts(parts: &[u64]) -> String {
    let mut runs: Vec<(u64, usize)> = Vec::new();
    for &p in parts {
        match runs.last_mut() {
            Some((size, n)) if *size == p => *n += 1,
            _ => runs.push((p, 1)),
        }
    }
    runs.iter()
        .map(|(s, n)| format!("{s}*{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode_parts(s: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for run in s.split(',') {
        let (size, n) = run.split_once('*')?;
        let n: usize = n.parse().ok()?;
        if n > 10_000 || out.len() + n > 10_000 {
            return None;
        }
        out.extend(std::iter::repeat_n(size.parse::<u64>().ok()?, n));
    }
    Some(out)
}

/// Writes one `name TAB value` line of the record format (shared with upload manifests).
pub fn push_line(out: &mut String, name: &str, value: &str) {
    push(out, name, value)
}

/// Parses the lines of the record format into (name, value) pairs.
pub fn parse_lines(text: &str) -> Option<Vec<(String, String)>> {
    text.lines()
        .map(|l| {
            let (n, v) = l.split_once('\t')?;
            Some((n.to_string(), unescape(v)?))
        })
        .collect()
}

fn mtime_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos()
}

fn push(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push('\t');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out.push('\n');
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ObjectMeta {
        ObjectMeta {
            etag: Some("abc-2".into()),
            etag_alg: "MULTIPART".into(),
            headers: vec![("content-type".into(), "text/plain".into())],
            user: vec![("k".into(), "tab\there\nnew\\line".into())],
            checksums: vec![("CRC32".into(), "AAAAAA==".into())],
            parts: vec![5, 5, 5, 2],
        }
    }

    #[test]
    fn round_trips() {
        let t = UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
        let raw = sample().encode(42, t);
        assert_eq!(ObjectMeta::decode(&raw, 42, t), Some(sample()));
    }

    #[test]
    fn an_etag_alone_takes_the_short_form_that_fits_in_an_inode() {
        let t = UNIX_EPOCH + Duration::new(1_795_725_652, 974_960_673);
        let md5 = ObjectMeta {
            etag: Some("e420acd9558c726b254d6289829bd434".into()),
            etag_alg: "MD5".into(),
            ..ObjectMeta::default()
        };
        // Objects up to 64 GiB stay within ext4's 64 bytes of in-inode value room.
        for size in [0, 4096, (64 << 30) - 1] {
            let raw = md5.encode(size, t);
            assert!(
                raw.starts_with(b"s3m2 ") && raw.len() <= 64,
                "{}",
                raw.len()
            );
            assert_eq!(ObjectMeta::decode(&raw, size, t), Some(md5.clone()));
            assert_eq!(ObjectMeta::decode(&raw, size + 1, t), None);
            assert_eq!(
                ObjectMeta::decode(&raw, size, t + Duration::from_nanos(1)),
                None
            );
        }
        let sha1 = ObjectMeta {
            etag: Some("a".repeat(40)),
            etag_alg: "SHA1".into(),
            ..ObjectMeta::default()
        };
        let raw = sha1.encode(7, t);
        assert!(raw.ends_with(b" SHA1"));
        assert_eq!(ObjectMeta::decode(&raw, 7, t), Some(sha1));
        // Anything more, or no ETag at all, keeps the line format.
        assert!(sample().encode(42, t).starts_with(b"s3serve-meta 1\n"));
        let none = ObjectMeta::default();
        assert!(none.encode(1, t).starts_with(b"s3serve-meta 1\n"));
        assert_eq!(ObjectMeta::decode(&none.encode(1, t), 1, t), Some(none));
        assert_eq!(ObjectMeta::decode(b"s3m2 7 1 e extra junk", 7, t), None);
    }

    #[test]
    fn parts_are_run_length_encoded() {
        assert_eq!(encode_parts(&[5, 5, 5, 2]), "5*3,2*1");
        assert_eq!(decode_parts("5*3,2*1"), Some(vec![5, 5, 5, 2]));
        assert_eq!(decode_parts("5*99999"), None);
        assert_eq!(decode_parts("x"), None);
    }

    #[test]
    fn stale_or_damaged_records_are_ignored() {
        let t = UNIX_EPOCH + Duration::from_secs(5);
        let raw = sample().encode(42, t);
        assert_eq!(ObjectMeta::decode(&raw, 43, t), None);
        assert_eq!(
            ObjectMeta::decode(&raw, 42, t + Duration::from_nanos(1)),
            None
        );
        assert_eq!(ObjectMeta::decode(b"garbage", 42, t), None);
        assert_eq!(
            ObjectMeta::decode(b"s3serve-meta 1\nsize\t42\nbad", 42, t),
            None
        );
    }
}
