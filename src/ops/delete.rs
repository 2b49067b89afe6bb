//! DeleteObjects: up to 1000 keys in one request, each deleted on its own, with per-key
//! errors. Content-MD5 or a checksum header may come with the body (boto3 ≥ 1.36 sends only
//! a CRC32), or neither.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html>

use crate::ops::xml::{self, XmlWriter};
use crate::ops::{Ctx, OpResult, Request, Response, S3Error};

/// S3's cap on keys per DeleteObjects request.
pub const MAX_DELETE_KEYS: usize = 1000;

struct DeleteRequest {
    quiet: bool,
    keys: Vec<String>,
}

/// For the fuzz checks (`crate::fuzzing`): the keys a Delete document names.
#[cfg(any(test, fuzzing))]
pub(crate) fn fuzz_parse(body: &[u8]) -> Result<Vec<String>, S3Error> {
    parse(body).map(|r| r.keys)
}

fn parse(body: &[u8]) -> Result<DeleteRequest, S3Error> {
    let leaves = xml::parse_elements(body)?;
    if leaves.first().map(|l| l.path[0].as_str()) != Some("Delete") {
        return Err(xml::malformed("the root element must be Delete"));
    }
    let mut req = DeleteRequest {
        quiet: false,
        keys: Vec::new(),
    };
    for leaf in leaves {
        match leaf.path.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["Delete", "Quiet"] => req.quiet = leaf.text.trim().eq_ignore_ascii_case("true"),
            ["Delete", "Object", "Key"] => req.keys.push(leaf.text),
            _ => {}
        }
    }
    if req.keys.is_empty() {
        return Err(xml::malformed("no Object to delete"));
    }
    if req.keys.len() > MAX_DELETE_KEYS {
        return Err(xml::malformed("a request may delete at most 1000 keys"));
    }
    Ok(req)
}

pub fn delete_objects(ctx: &Ctx, rq: &mut Request) -> OpResult {
    ctx.check_writable()?;
    ctx.vfs
        .require_bucket(&rq.bucket)
        .map_err(|e| S3Error::from(e).with_resource(rq.resource()))?;
    let body = rq.read_xml()?;
    let req = parse(&body)?;
    let mut w = XmlWriter::new();
    w.root("DeleteResult");
    for k in &req.keys {
        let result = ctx.vfs.remove(&rq.bucket, k);
        match result {
            Ok(()) if req.quiet => {}
            Ok(()) => {
                w.open("Deleted");
                w.elem("Key", k);
                w.close("Deleted");
            }
            Err(e) => {
                let e = S3Error::from(e);
                w.open("Error");
                w.elem("Key", k);
                w.elem("Code", e.code.as_str());
                w.elem("Message", &e.message);
                w.close("Error");
            }
        }
    }
    w.close("DeleteResult");
    Ok(Response::xml(200, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delete_documents() {
        let r = parse(b"<Delete><Quiet>true</Quiet><Object><Key>a</Key><VersionId>x</VersionId></Object><Object><Key>b&#10;c</Key></Object></Delete>").unwrap();
        assert!(r.quiet);
        assert_eq!(r.keys, ["a", "b\nc"]);
        assert!(parse(b"<Other/>").is_err());
        assert!(parse(b"<Delete></Delete>").is_err());
        let many: String = (0..1001)
            .map(|i| format!("<Object><Key>k{i}</Key></Object>"))
            .collect();
        assert!(parse(format!("<Delete>{many}</Delete>").as_bytes()).is_err());
    }
}
