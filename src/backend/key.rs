//! Which keys and bucket names map safely to paths. A key is split on `/` and every segment
//! must be a plain file name: never empty, `.` or `..`, never with NUL, at most 255 bytes, and
//! never starting with `.s3serve` (our private names). Unsafe keys are rejected, never
//! "cleaned" into another path, so no input can reach outside the served root.

use super::{BackendError, ErrorKind};

/// S3's key limit, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;
/// The usual file-name limit (NAME_MAX).
pub const MAX_SEGMENT_LEN: usize = 255;
/// Prefix of every name s3serve keeps for itself.
pub const HIDDEN_PREFIX: &str = ".s3serve";

pub fn is_hidden(name: &str) -> bool {
    name.starts_with(HIDDEN_PREFIX)
}

/// Checks a key; the error says what is wrong with it.
pub fn check(key: &str) -> Result<(), BackendError> {
    if key.len() > MAX_KEY_LEN {
        return Err(BackendError::new(
            ErrorKind::KeyTooLong,
            "Your key is too long",
        ));
    }
    if key.is_empty() {
        return Err(invalid("the key is empty"));
    }
    for seg in key.split('/') {
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
    fn rejects_unsafe_keys() {
        for k in [
            "",
            "/a",
            "a/",
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
