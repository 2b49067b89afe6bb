//! What a request says about flexible checksums: at most one `x-amz-checksum-<alg>` value,
//! optionally named again by `x-amz-sdk-checksum-algorithm`. The value is checked against
//! the bytes while they stream (400 BadDigest on a mismatch) and stored with the object.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html>

use crate::ops::{Code, Headers, Response, S3Error};
use crate::util;
use crate::vfs::checksum::ChecksumAlg;
use crate::vfs::ObjectMeta;

pub use crate::vfs::CHECKSUM_TYPE_KEY as TYPE_KEY;
pub const FULL_OBJECT: &str = "FULL_OBJECT";
pub const COMPOSITE: &str = "COMPOSITE";

/// The checksum a request asks for, with the value it claims when it sends one.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub alg: ChecksumAlg,
    pub expected: Option<Vec<u8>>,
}

fn invalid(msg: String) -> S3Error {
    S3Error::new(Code::InvalidRequest, msg)
}

/// Reads the checksum headers of a write.
pub fn from_headers(h: &Headers) -> Result<Option<Wanted>, S3Error> {
    let mut found: Option<Wanted> = None;
    for alg in ChecksumAlg::ALL {
        let Some(v) = h.get(&alg.header()) else {
            continue;
        };
        if found.is_some() {
            return Err(invalid("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.".into()));
        }
        let raw = util::unbase64(v.trim()).filter(|b| b.len() == alg.digest_len());
        let raw =
            raw.ok_or_else(|| invalid(format!("Value for {} header is invalid.", alg.header())))?;
        found = Some(Wanted {
            alg,
            expected: Some(raw),
        });
    }
    if let Some(name) = h.get("x-amz-sdk-checksum-algorithm") {
        let alg = ChecksumAlg::parse(name)
            .ok_or_else(|| invalid(format!("Checksum algorithm {name:?} is not supported.")))?;
        match &found {
            Some(w) if w.alg != alg => {
                return Err(invalid(format!("Value for x-amz-sdk-checksum-algorithm header is invalid: {name} does not match the {} header.", w.alg.header())))
            }
            Some(_) => {}
            None => found = Some(Wanted { alg, expected: None }),
        }
    }
    Ok(found)
}

/// The checksum an aws-chunked body promises in its trailer (`x-amz-trailer`), if any. A
/// checksum both in a header and in the trailer is refused.
pub fn trailer_alg(
    h: &Headers,
    from_headers: Option<&Wanted>,
) -> Result<Option<ChecksumAlg>, S3Error> {
    let Some(t) = h.get("x-amz-trailer") else {
        return Ok(None);
    };
    let alg = ChecksumAlg::ALL.into_iter().find(|a| {
        t.split(',')
            .any(|n| n.trim().eq_ignore_ascii_case(&a.header()))
    });
    match (alg, from_headers) {
        (Some(_), Some(w)) if w.expected.is_some() => Err(invalid(
            "A checksum cannot be sent both as a header and as a trailer.".into(),
        )),
        (Some(a), Some(w)) if w.alg != a => Err(invalid(
            "x-amz-sdk-checksum-algorithm does not match the checksum in x-amz-trailer.".into(),
        )),
        (a, _) => Ok(a),
    }
}

/// The value of a trailer checksum once the body has been read to its end.
pub fn from_trailer(
    alg: ChecksumAlg,
    trailers: Option<&crate::ops::Trailers>,
) -> Result<Vec<u8>, S3Error> {
    let header = alg.header();
    let value = trailers.and_then(|t| {
        t.borrow()
            .iter()
            .find(|(n, _)| *n == header)
            .map(|(_, v)| v.clone())
    });
    let value = value.ok_or_else(|| {
        S3Error::new(
            Code::MalformedTrailerError,
            format!("The request declared the trailer {header} but did not send it."),
        )
    })?;
    util::unbase64(value.trim())
        .filter(|b| b.len() == alg.digest_len())
        .ok_or_else(|| {
            S3Error::new(
                Code::InvalidRequest,
                format!("Value for {header} trailer is invalid."),
            )
        })
}

/// Fails with BadDigest when the computed value differs from the claimed one.
pub fn verify(
    wanted: Option<&Wanted>,
    got: Option<&(ChecksumAlg, Vec<u8>)>,
) -> Result<(), S3Error> {
    let (Some(w), Some((alg, value))) = (wanted, got) else {
        return Ok(());
    };
    if let Some(expected) = &w.expected {
        if expected != value {
            return Err(S3Error::new(
                Code::BadDigest,
                format!(
                    "The {} you specified did not match the calculated checksum.",
                    alg.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Records a verified full-object checksum in the metadata.
pub fn store(meta: &mut ObjectMeta, got: Option<&(ChecksumAlg, Vec<u8>)>) {
    meta.checksums.clear();
    if let Some((alg, value)) = got {
        meta.checksums
            .push((alg.name().into(), util::base64(value)));
        meta.checksums.push((TYPE_KEY.into(), FULL_OBJECT.into()));
    }
}

/// The stored checksum: algorithm, base64 value and type.
pub fn stored(meta: &ObjectMeta) -> Option<(ChecksumAlg, &str, &str)> {
    let (alg, value) = meta
        .checksums
        .iter()
        .find_map(|(n, v)| Some((ChecksumAlg::parse(n)?, v.as_str())))?;
    let kind = meta
        .checksums
        .iter()
        .find(|(n, _)| n == TYPE_KEY)
        .map_or(FULL_OBJECT, |(_, v)| v.as_str());
    Some((alg, value, kind))
}

/// Adds `x-amz-checksum-<alg>` and `x-amz-checksum-type` for a stored checksum.
pub fn add_headers(mut resp: Response, meta: &ObjectMeta) -> Response {
    if let Some((alg, value, kind)) = stored(meta) {
        resp = resp
            .header(&alg.header(), value)
            .header("x-amz-checksum-type", kind);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs)
    }

    #[test]
    fn parses_checksum_headers() {
        let w = from_headers(&hdrs(&[
            ("x-amz-checksum-crc32", "y/Q5Jg=="),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (w.alg, w.expected),
            (ChecksumAlg::Crc32, Some(vec![0xcb, 0xf4, 0x39, 0x26]))
        );
        let w = from_headers(&hdrs(&[("x-amz-sdk-checksum-algorithm", "sha256")]))
            .unwrap()
            .unwrap();
        assert_eq!((w.alg, w.expected), (ChecksumAlg::Sha256, None));
        assert!(from_headers(&hdrs(&[])).unwrap().is_none());
        let e = |p: &[(&str, &str)]| from_headers(&hdrs(p)).unwrap_err().code;
        assert_eq!(
            e(&[
                ("x-amz-checksum-crc32", "y/Q5Jg=="),
                ("x-amz-checksum-crc32c", "AAAAAA==")
            ]),
            Code::InvalidRequest
        );
        assert_eq!(
            e(&[
                ("x-amz-checksum-crc32", "y/Q5Jg=="),
                ("x-amz-sdk-checksum-algorithm", "CRC32C")
            ]),
            Code::InvalidRequest
        );
        assert_eq!(e(&[("x-amz-checksum-crc32", "nope")]), Code::InvalidRequest);
        assert_eq!(
            e(&[("x-amz-sdk-checksum-algorithm", "MD4")]),
            Code::InvalidRequest
        );
    }

    #[test]
    fn verifies_values() {
        let w = Wanted {
            alg: ChecksumAlg::Crc32,
            expected: Some(vec![1, 2, 3, 4]),
        };
        assert!(verify(Some(&w), Some(&(ChecksumAlg::Crc32, vec![1, 2, 3, 4]))).is_ok());
        assert_eq!(
            verify(Some(&w), Some(&(ChecksumAlg::Crc32, vec![0; 4])))
                .unwrap_err()
                .code,
            Code::BadDigest
        );
    }
}
