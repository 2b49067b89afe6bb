//! Which keys and bucket names map safely to paths. A key is split on `/` and every segment
//! must be a plain file name: never empty, `.` or `..`, never with NUL, at most 255 bytes, and
//! never starting with `.s3serve` (our private names). Unsafe keys are rejected, never
//! "cleaned" into another path, so no input can reach outside the served root.
//!
//! One `/` may end a key: that key is a folder marker, the empty object that S3 tools (the
//! AWS console's "Create folder", Hadoop S3A, s3fs, rclone) make to stand for a folder. It is
//! kept as the folder itself, with a hidden file inside ([`FOLDER_MARKER`]) that holds its
//! metadata the way any object file does. While the marker stands, the folder is not empty,
//! so the cleanup of empty folders after a delete, from this process or another sharing the
//! filesystem, can never take it away; and like any entry it moves the folder's modification
//! time and is seen by directory watches.

use std::borrow::Cow;

use super::{BackendError, ErrorKind};

/// S3's key limit, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;
/// The usual file-name limit (NAME_MAX).
pub const MAX_SEGMENT_LEN: usize = 255;
/// Prefix of every name s3serve keeps for itself.
pub const HIDDEN_PREFIX: &str = ".s3serve";

/// The file inside a folder that makes the folder a folder marker (see the module notes).
pub const FOLDER_MARKER: &str = ".s3serve-folder";

pub fn is_hidden(name: &str) -> bool {
    name.starts_with(HIDDEN_PREFIX)
}

/// Whether `key` names a folder marker.
pub fn is_folder_marker(key: &str) -> bool {
    key.ends_with('/')
}

/// Where `key` is stored, from its bucket: the key itself, or the marker file inside the
/// folder that a folder marker's key names.
pub fn storage_path(key: &str) -> Cow<'_, str> {
    if is_folder_marker(key) {
        Cow::Owned(format!("{key}{FOLDER_MARKER}"))
    } else {
        Cow::Borrowed(key)
    }
}

/// Checks a key; the error says what is wrong with it.
pub fn check(key: &str) -> Result<(), BackendError> {
    if key.len() > MAX_KEY_LEN {
        return Err(BackendError::new(
            ErrorKind::KeyTooLong,
            "Your key is too long",
        ));
    }
    let path = key.strip_suffix('/').unwrap_or(key);
    if path.is_empty() {
        return Err(invalid("the key is empty"));
    }
    for seg in path.split('/') {
        check_segment(seg)?;
    }
    Ok(())
}

fn check_segment(seg: &str) -> Result<(), BackendError> {
    match seg {
        "" => Err(invalid(
            "empty path segments (`//`, leading or trailing `/`) cannot be stored",
        )),
        "." | ".." => Err(invalid("`.` and `..` segments cannot be stored")),
        _ if seg.contains('\0') => Err(invalid("NUL cannot be stored")),
        _ if seg.len() > MAX_SEGMENT_LEN => Err(invalid("a path segment is longer than 255 bytes")),
        _ if is_hidden(seg) => Err(invalid("names starting with `.s3serve` are reserved")),
        _ => Ok(()),
    }
}

fn invalid(why: &str) -> BackendError {
    BackendError::new(
        ErrorKind::InvalidKey,
        format!("Object name contains unsupported characters: {why}"),
    )
}

/// A bucket name that may be served: one safe path segment. (CreateBucket applies the stricter
/// S3 naming rules on top.)
pub fn check_bucket(bucket: &str) -> Result<(), BackendError> {
    if bucket.contains('/') {
        return Err(invalid("bucket names cannot contain `/`"));
    }
    check_segment(bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_keys() {
        for k in ["a", "a/b/c.txt", "sp ace+%/ünï", "..a", "a..", ".hidden"] {
            assert!(check(k).is_ok(), "{k}");
        }
    }

    #[test]
    fn folder_markers_are_stored_inside_their_folder() {
        for k in ["a/", "photos/2026/"] {
            assert!(check(k).is_ok() && is_folder_marker(k), "{k}");
        }
        assert_eq!(storage_path("photos/2026/"), "photos/2026/.s3serve-folder");
        assert_eq!(storage_path("photos/2026"), "photos/2026");
        assert!(!is_folder_marker("a"));
    }

    #[test]
    fn rejects_unsafe_keys() {
        for k in [
            "",
            "/",
            "//",
            "/a",
            "a//",
            "a//b",
            "./a",
            "a/./b",
            "a/..",
            "../x",
            "a\0b",
            ".s3serve/x",
            "d/.s3serve-tmp-1",
        ] {
            assert_eq!(check(k).unwrap_err().kind, ErrorKind::InvalidKey, "{k:?}");
        }
        let long = "a".repeat(1025);
        assert_eq!(check(&long).unwrap_err().kind, ErrorKind::KeyTooLong);
        let long_seg = "a".repeat(256);
        assert_eq!(check(&long_seg).unwrap_err().kind, ErrorKind::InvalidKey);
    }

    #[test]
    fn bucket_segments() {
        assert!(check_bucket("photos").is_ok());
        assert!(check_bucket("..").is_err());
        assert!(check_bucket("a/b").is_err());
        assert!(check_bucket(".s3serve").is_err());
    }
}
