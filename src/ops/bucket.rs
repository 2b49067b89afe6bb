//! Bucket operations: ListBuckets, CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation
//! and GetBucketVersioning. A bucket is a top-level directory of the served root.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>

use crate::ops::list;
use crate::ops::xml::{self, XmlWriter};
use crate::ops::{Code, Ctx, OpResult, Request, Response, S3Error};
use crate::util;
use crate::vfs::key;

/// The one region s3serve reports, as HeadBucket and GetBucketLocation do.
const REGION: &str = "us-east-1";
/// S3's page size for ListBuckets: the most `max-buckets` may ask, and the default once any
/// paging parameter is given.
const MAX_BUCKETS: usize = 10_000;

/// ListBuckets, with S3's paging (`max-buckets`, `continuation-token`, `prefix`,
/// `bucket-region`). Without any of those, every bucket is listed on one page.
/// <https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListBuckets.html>
pub fn list_buckets(ctx: &Ctx, rq: &mut Request) -> OpResult {
    let q = &rq.query;
    let max = match q.get("max-buckets") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_BUCKETS).contains(n))
            .ok_or_else(|| {
                S3Error::new(
                    Code::InvalidArgument,
                    "max-buckets must be an integer from 1 to 10000.",
                )
                .with("ArgumentName", "max-buckets")
                .with("ArgumentValue", v)
            })?,
        None => MAX_BUCKETS,
    };
    let after = match q.get("continuation-token") {
        Some(t) => Some(list::decode_token(t)?),
        None => None,
    };
    let prefix = q.get("prefix").unwrap_or("");
    let in_region = q.get("bucket-region").is_none_or(|r| r == REGION);
    let mut listed = ctx
        .vfs
        .list_buckets()?
        .into_iter()
        .filter(|b| in_region && is_listed_bucket(&b.name) && b.name.starts_with(prefix))
        .filter(|b| after.as_deref().is_none_or(|a| b.name.as_str() > a))
        .take(max + 1)
        .collect::<Vec<_>>();
    let truncated = listed.len() > max;
    listed.truncate(max);
    let mut w = XmlWriter::new();
    w.root("ListAllMyBucketsResult");
    owner(&mut w, &ctx.opts.owner);
    w.open("Buckets");
    for b in &listed {
        w.open("Bucket");
        w.elem("Name", &b.name);
        w.elem("CreationDate", &util::iso8601(b.created));
        w.elem("BucketRegion", REGION);
        w.close("Bucket");
    }
    w.close("Buckets");
    if let Some(last) = listed.last().filter(|_| truncated) {
        w.elem("ContinuationToken", &util::base64_url(last.name.as_bytes()));
    }
    if q.get("prefix").is_some() {
        w.elem("Prefix", prefix);
    }
    w.close("ListAllMyBucketsResult");
    Ok(Response::xml(200, w.finish()))
}

/// Whether a top-level directory is listed as a bucket: only if a client could have named
/// it, by S3's rules or by the legacy rules S3 still serves buckets under (upper case and
/// `_` allowed, up to 255 characters), always beginning and ending with a letter or digit.
/// The folders a NAS or the system keeps in a volume (`.snapshots`, `@eaDir`, `#recycle`,
/// `lost+found`, `.Trash-1000`) are not buckets.
fn is_listed_bucket(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |c: Option<&u8>| c.is_some_and(u8::is_ascii_alphanumeric);
    (3..=255).contains(&bytes.len())
        && edge(bytes.first())
        && edge(bytes.last())
        && bytes
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

/// The `<Owner>` element; the ID is the access key (or "anonymous").
pub fn owner(w: &mut XmlWriter, id: &str) {
    owner_as(w, "Owner", id);
}

/// An owner-shaped element (`Owner`, `Initiator`).
pub fn owner_as(w: &mut XmlWriter, element: &str, id: &str) {
    w.open(element);
    w.elem("ID", id);
    w.elem("DisplayName", id);
    w.close(element);
}

/// S3's naming rules for new buckets.
pub fn check_new_bucket_name(name: &str) -> Result<(), S3Error> {
    let bad = |why: &str| {
        Err(S3Error::new(
            Code::InvalidBucketName,
            format!("The specified bucket is not valid: {why}"),
        )
        .with("BucketName", name))
    };
    if !(3..=63).contains(&name.len()) {
        return bad("names are 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return bad("names use only lower-case letters, digits, dots and hyphens");
    }
    let edge_ok = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(name.bytes().next()) || !edge_ok(name.bytes().last()) {
        return bad("names begin and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return bad("dots may not be adjacent to each other or to hyphens");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("names must not be formatted as an IP address");
    }
    if name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
    {
        return bad("the name uses a reserved prefix or suffix");
    }
    Ok(())
}

pub fn create_bucket(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    check_new_bucket_name(&rq.bucket)?;
    if rq.content_length.unwrap_or(0) > 0 || rq.headers.has("transfer-encoding") {
        let body = rq.read_xml()?;
        if !body.iter().all(u8::is_ascii_whitespace) {
            xml::parse_elements(&body)?;
        }
    }
    ctx.vfs
        .create_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    Ok(Response::empty(200).header("Location", format!("/{}", rq.bucket)))
}

/// Serving any existing directory name is fine, as long as it is one safe path segment.
pub fn check_bucket(rq: &Request) -> Result<(), S3Error> {
    key::check_bucket(&rq.bucket).map_err(|_| {
        S3Error::new(
            Code::InvalidBucketName,
            "The specified bucket is not valid.",
        )
        .with("BucketName", rq.bucket.as_str())
    })
}

pub fn delete_bucket(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    ctx.vfs
        .delete_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    Ok(Response::empty(204))
}

pub fn head_bucket(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.vfs
        .require_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    Ok(Response::empty(200).header("x-amz-bucket-region", REGION))
}

pub fn get_bucket_location(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.vfs
        .require_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    let mut w = XmlWriter::new();
    w.root("LocationConstraint");
    w.close("LocationConstraint");
    Ok(Response::xml(200, w.finish()))
}

pub fn get_bucket_versioning(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.vfs
        .require_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    let mut w = XmlWriter::new();
    w.root("VersioningConfiguration");
    w.close("VersioningConfiguration");
    Ok(Response::xml(200, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addressable_folders_are_listed_as_buckets() {
        for listed in ["abc", "photos-2026", "Photos", "my_share", "a.b-c_D9"] {
            assert!(is_listed_bucket(listed), "{listed}");
        }
        let long = "a".repeat(256);
        for hidden in [
            ".snapshots",
            "@eaDir",
            "#recycle",
            "lost+found",
            ".Trash-1000",
            "$RECYCLE.BIN",
            "System Volume Information",
            "ab",
            "share-",
            "_tmp",
            "caf\u{e9}",
            long.as_str(),
        ] {
            assert!(!is_listed_bucket(hidden), "{hidden}");
        }
    }

    #[test]
    fn bucket_name_rules() {
        for ok in ["abc", "my-bucket.2026", "a".repeat(63).as_str()] {
            assert!(check_new_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "a_b",
            "a".repeat(64).as_str(),
            "abc-s3alias",
        ] {
            assert_eq!(
                check_new_bucket_name(bad).unwrap_err().code,
                Code::InvalidBucketName,
                "{bad}"
            );
        }
    }
}
