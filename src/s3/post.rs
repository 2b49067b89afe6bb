//! POST Object: browser form uploads to a bucket. The form's fields come first and are
//! checked before a byte of the file is stored: the signature over the base64 policy (SigV4,
//! or SigV2's HMAC-SHA1 with `AWSAccessKeyId`),
//! the policy's expiration and every condition, and that no field escapes the policy. The
//! file part then streams through the ordinary PutObject path, bounded by the policy's
//! content-length-range. <https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-HTTPPOSTConstructPolicy.html>

use std::io::{self, Read};
use std::time::SystemTime;

use crate::json::{parse_json, Json};
use crate::ops::{self, Code, Ctx, Headers, OpResult, OpsOptions, Query, Response, S3Error};
use crate::s3::auth::{signing_key, verify_mac, verify_policy_v2, Secrets};
use crate::s3::form::{self, FormReader};
use crate::s3::users::Tenant;
use crate::util;

/// Form fields before the file may add up to this much (S3's limit is 20 KB).
pub const MAX_FIELDS: usize = 20 * 1024;

fn policy_error(msg: &str) -> S3Error {
    S3Error::new(
        Code::AccessDenied,
        format!("Invalid according to Policy: {msg}"),
    )
}

/// The form fields, lower-case names.
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a policy allows: checked field names and the object size range.
#[derive(Debug)]
struct Checked {
    covered: Vec<String>,
    size: (u64, u64),
}

/// Parses `2026-12-01T12:00:00.000Z`.
fn parse_expiration(s: &str) -> Option<SystemTime> {
    let compact: String = s
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    let base = compact.get(..15)?;
    util::parse_amz_date(&format!("{base}Z"))
}

fn check_policy(
    policy_b64: &str,
    fields: &Fields,
    bucket: &str,
    now: SystemTime,
) -> Result<Checked, S3Error> {
    let bad = || {
        S3Error::new(
            Code::InvalidPolicyDocument,
            "Invalid Policy: the policy is not valid base64-encoded JSON.",
        )
    };
    let raw = util::unbase64(policy_b64.trim()).ok_or_else(bad)?;
    let doc = parse_json(std::str::from_utf8(&raw).map_err(|_| bad())?).ok_or_else(bad)?;
    let Json::Obj(top) = doc else {
        return Err(bad());
    };
    let get = |k: &str| top.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let Some(Json::Str(exp)) = get("expiration") else {
        return Err(policy_error("Policy missing expiration."));
    };
    let exp = parse_expiration(exp).ok_or_else(|| policy_error("Invalid expiration."))?;
    if now > exp {
        return Err(policy_error("Policy expired."));
    }
    let Some(Json::Arr(conditions)) = get("conditions") else {
        return Err(policy_error("Policy missing conditions."));
    };
    let value_of = |name: &str| -> String {
        match name {
            "bucket" => bucket.to_string(),
            n => fields.get(n).unwrap_or_default().to_string(),
        }
    };
    let mut checked = Checked {
        covered: Vec::new(),
        size: (0, u64::MAX),
    };
    for c in conditions {
        match c {
            Json::Obj(pairs) => {
                for (k, v) in pairs {
                    let (k, Json::Str(v)) = (k.to_ascii_lowercase(), v) else {
                        return Err(bad());
                    };
                    if value_of(&k) != *v {
                        return Err(policy_error(&format!(
                            "Policy Condition failed: [\"eq\", \"${k}\", \"{v}\"]"
                        )));
                    }
                    checked.covered.push(k);
                }
            }
            Json::Arr(items) => match items.as_slice() {
                [Json::Str(op), Json::Str(field), Json::Str(v)] => {
                    let k = field.trim_start_matches('$').to_ascii_lowercase();
                    let got = value_of(&k);
                    let ok = match op.to_ascii_lowercase().as_str() {
                        "eq" => got == *v,
                        "starts-with" => got.starts_with(v.as_str()),
                        _ => return Err(bad()),
                    };
                    if !ok {
                        return Err(policy_error(&format!(
                            "Policy Condition failed: [\"{op}\", \"{field}\", \"{v}\"]"
                        )));
                    }
                    checked.covered.push(k);
                }
                [Json::Str(op), Json::Num(min), Json::Num(max)]
                    if op.eq_ignore_ascii_case("content-length-range") =>
                {
                    checked.size = (*min as u64, *max as u64);
                }
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        }
    }
    Ok(checked)
}

/// Fields that need no condition of their own: the signature's (both versions'), the file
/// and the bucket.
fn exempt(name: &str) -> bool {
    matches!(
        name,
        "policy" | "x-amz-signature" | "awsaccesskeyid" | "signature" | "file" | "bucket"
    ) || name.starts_with("x-ignore-")
}

/// Checks the form's signature over its policy: version 4 (`x-amz-credential` and
/// `x-amz-signature`) or version 2 (`AWSAccessKeyId` and `signature`). Returns the key. A
/// mismatch with a remembered secret is checked once more with the secret asked afresh.
fn verify_signature(keys: &dyn Secrets, fields: &Fields) -> Result<Option<String>, S3Error> {
    loop {
        match verify_signature_once(keys, fields) {
            Err(e) if e.code == Code::SignatureDoesNotMatch && keys.ask_afresh() => continue,
            result => return result,
        }
    }
}

fn verify_signature_once(keys: &dyn Secrets, fields: &Fields) -> Result<Option<String>, S3Error> {
    if keys.anonymous() {
        return Ok(None);
    }
    let need = |n: &str| {
        fields.get(n).ok_or_else(|| {
            S3Error::new(
                Code::AccessDenied,
                format!("Bucket POST must contain a field named '{n}'."),
            )
        })
    };
    let policy = need("policy")?;
    if let Some(ak) = fields.get("awsaccesskeyid") {
        let secret = keys.secret(ak)?;
        if !verify_policy_v2(&secret, policy, need("signature")?) {
            return Err(mismatch());
        }
        return Ok(Some(ak.to_string()));
    }
    if need("x-amz-algorithm")? != "AWS4-HMAC-SHA256" {
        return Err(S3Error::new(
            Code::InvalidArgument,
            "x-amz-algorithm must be AWS4-HMAC-SHA256.",
        ));
    }
    let credential = need("x-amz-credential")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [ak, date, region, "s3", "aws4_request"] = parts[..] else {
        return Err(S3Error::new(
            Code::InvalidArgument,
            "x-amz-credential must be ACCESS_KEY/YYYYMMDD/REGION/s3/aws4_request.",
        ));
    };
    let secret = keys.secret(ak)?;
    let signature = util::unhex(need("x-amz-signature")?).unwrap_or_default();
    if !verify_mac(
        &signing_key(&secret, date, region),
        policy.as_bytes(),
        &signature,
    ) {
        return Err(mismatch());
    }
    Ok(Some(ak.to_string()))
}

fn mismatch() -> S3Error {
    S3Error::new(
        Code::SignatureDoesNotMatch,
        "The request signature we calculated does not match the signature you provided.",
    )
}

/// The file part, failing when it leaves the policy's content-length-range.
struct Bounded<'a, 'b> {
    inner: &'a mut FormReader<'b>,
    seen: u64,
    size: (u64, u64),
}

impl Read for Bounded<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.seen += n as u64;
        if self.seen > self.size.1 {
            return Err(io::Error::other(S3Error::new(
                Code::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size.",
            )));
        }
        if n == 0 && self.seen < self.size.0 {
            return Err(io::Error::other(S3Error::new(
                Code::EntityTooSmall,
                "Your proposed upload is smaller than the minimum allowed size.",
            )));
        }
        Ok(n)
    }
}

/// For the fuzz checks (`crate::fuzzing`): a form's fields and its file part's bytes.
#[cfg(any(test, fuzzing))]
pub(crate) fn fuzz_read_form(
    body: &mut dyn Read,
    boundary: &str,
) -> Result<(Vec<(String, String)>, Vec<u8>), S3Error> {
    #![allow(clippy::type_complexity)]
    let mut form = FormReader::new(body, boundary);
    let (fields, _) = read_fields(&mut form)?;
    let mut file = Vec::new();
    form.read_to_end(&mut file)
        .map_err(|e| S3Error::new(Code::MalformedPOSTRequest, e.to_string()))?;
    Ok((fields.0, file))
}

/// For the fuzz checks: a policy checked against the given fields.
#[cfg(any(test, fuzzing))]
pub(crate) fn fuzz_check_policy(policy_b64: &str, fields: Vec<(String, String)>) -> bool {
    check_policy(
        policy_b64,
        &Fields(fields),
        "bucket",
        SystemTime::UNIX_EPOCH,
    )
    .is_ok()
}

/// Reads the fields up to the file part.
fn read_fields(form: &mut FormReader) -> Result<(Fields, form::PartHeaders), S3Error> {
    let mut fields = Vec::new();
    let mut total = 0;
    while let Some(part) = form.next_part()? {
        if part.name.eq_ignore_ascii_case("file") {
            return Ok((Fields(fields), part));
        }
        let value = form.read_value(MAX_FIELDS - total.min(MAX_FIELDS))?;
        total += part.name.len() + value.len();
        fields.push((part.name.to_ascii_lowercase(), value));
    }
    Err(S3Error::new(
        Code::IncorrectNumberOfFilesInPostRequest,
        "POST requires exactly one file upload per request.",
    ))
}

/// A browser form's upload. The storage it reaches is known once its signature is checked.
pub fn post_object(
    tenant: &dyn Tenant,
    opts: &OpsOptions,
    now: SystemTime,
    bucket: &str,
    headers: &Headers,
    body: &mut dyn Read,
) -> OpResult {
    let ct = headers.get("content-type").unwrap_or_default();
    let boundary = form::boundary(ct).ok_or_else(|| {
        S3Error::new(
            Code::MalformedPOSTRequest,
            "POST Object needs a multipart/form-data body with a boundary.",
        )
    })?;
    let mut form = FormReader::new(body, &boundary);
    let (fields, file) = read_fields(&mut form)?;
    let access_key = verify_signature(tenant, &fields)?;
    let vfs = tenant.vfs()?;
    let ctx = &Ctx {
        vfs: &vfs,
        opts,
        now,
    };
    let checked = match fields.get("policy") {
        Some(p) => Some(check_policy(p, &fields, bucket, ctx.now)?),
        None => None,
    };
    if let Some(c) = &checked {
        if let Some((extra, _)) = fields
            .0
            .iter()
            .find(|(n, _)| !exempt(n) && !c.covered.contains(n))
        {
            return Err(policy_error(&format!("Extra input fields: {extra}")));
        }
    }
    let key = fields.get("key").ok_or_else(|| {
        S3Error::new(
            Code::InvalidArgument,
            "Bucket POST must contain a field named 'key'.",
        )
    })?;
    let key = key.replace("${filename}", file.filename.as_deref().unwrap_or_default());
    let mut put_headers: Vec<(String, String)> = fields
        .0
        .iter()
        .filter(|(n, _)| stored_field(n))
        .cloned()
        .collect();
    if !put_headers.iter().any(|(n, _)| n == "content-type") {
        if let Some(t) = &file.content_type {
            put_headers.push(("content-type".into(), t.clone()));
        }
    }
    let put_headers = Headers(put_headers);
    let query = Query::default();
    let size = checked.map_or((0, u64::MAX), |c| c.size);
    let mut file_body = Bounded {
        inner: &mut form,
        seen: 0,
        size,
    };
    let mut rq = ops::Request {
        bucket: bucket.to_string(),
        key: key.clone(),
        query: &query,
        headers: &put_headers,
        body: &mut file_body,
        content_length: None,
        expected_sha256: None,
        access_key,
        trailers: None,
        spooled: None,
    };
    let put = ops::put::put_object(ctx, &mut rq)?;
    let etag = put
        .headers
        .iter()
        .find(|(n, _)| n == "ETag")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Ok(success(&fields, bucket, &key, &etag))
}

/// Headers a form field may set on the stored object.
fn stored_field(n: &str) -> bool {
    n.starts_with("x-amz-meta-")
        || n.starts_with("x-amz-checksum-")
        || matches!(
            n,
            "content-type"
                | "cache-control"
                | "content-disposition"
                | "content-encoding"
                | "expires"
        )
}

/// The answer the form asked for: a redirect, 200, 201 with a document, or 204.
fn success(fields: &Fields, bucket: &str, key: &str, etag: &str) -> Response {
    let location = format!("/{bucket}/{}", util::uri_encode(key, true));
    if let Some(url) = fields
        .get("success_action_redirect")
        .or(fields.get("redirect"))
        .filter(|u| !u.is_empty())
    {
        let sep = if url.contains('?') { '&' } else { '?' };
        let target = format!(
            "{url}{sep}bucket={}&key={}&etag={}",
            util::uri_encode(bucket, false),
            util::uri_encode(key, false),
            util::uri_encode(etag, false)
        );
        return Response::empty(303)
            .header("Location", target)
            .header("ETag", etag);
    }
    match fields.get("success_action_status") {
        Some("200") => Response::empty(200)
            .header("ETag", etag)
            .header("Location", location),
        Some("201") => {
            let mut w = ops::xml::XmlWriter::new();
            w.open("PostResponse");
            w.elem("Location", &location);
            w.elem("Bucket", bucket);
            w.elem("Key", key);
            w.elem("ETag", etag);
            w.close("PostResponse");
            Response::xml(201, w.finish())
                .header("ETag", etag)
                .header("Location", location)
        }
        _ => Response::empty(204)
            .header("ETag", etag)
            .header("Location", location),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        util::base64(s.as_bytes())
    }

    #[test]
    fn policy_conditions() {
        let now = util::parse_amz_date("20260101T000000Z").unwrap();
        let fields = Fields(vec![
            ("key".into(), "uploads/a.txt".into()),
            ("content-type".into(), "text/plain".into()),
        ]);
        let policy = b64(
            r#"{"expiration": "2026-01-02T00:00:00.000Z", "conditions": [{"bucket": "b"}, ["starts-with", "$key", "uploads/"], ["eq", "$Content-Type", "text/plain"], ["content-length-range", 1, 100]]}"#,
        );
        let c = check_policy(&policy, &fields, "b", now).unwrap();
        assert_eq!(c.size, (1, 100));
        assert!(
            c.covered.contains(&"key".to_string())
                && c.covered.contains(&"content-type".to_string())
        );
        assert!(check_policy(&policy, &fields, "other", now).is_err());
        let later = util::parse_amz_date("20260103T000000Z").unwrap();
        assert_eq!(
            check_policy(&policy, &fields, "b", later)
                .unwrap_err()
                .message,
            "Invalid according to Policy: Policy expired."
        );
        let wrong = b64(
            r#"{"expiration": "2026-01-02T00:00:00Z", "conditions": [["starts-with", "$key", "private/"]]}"#,
        );
        assert!(check_policy(&wrong, &fields, "b", now).is_err());
        assert_eq!(
            check_policy("!!", &fields, "b", now).unwrap_err().code,
            Code::InvalidPolicyDocument
        );
    }
}
