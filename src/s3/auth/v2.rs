//! AWS Signature Version 2: the `Authorization: AWS key:signature` header, presigned URLs
//! (`AWSAccessKeyId`, `Expires`, `Signature`) and the signature of a POST form's policy.
//! Still spoken by boto3's default presigner, s3cmd, older SDKs and backup appliances.
//!
//! The string to sign is the method, Content-MD5, Content-Type, the date (or `Expires`), the
//! `x-amz-*` headers (lower case, sorted, values trimmed, repeats joined with commas) and the
//! resource: the path as sent, after `/bucket` for a virtual-hosted request, then the
//! subresources in the query, sorted. Its HMAC-SHA1 is compared in constant time.
//!
//! Clients differ where the documentation is loose, so a few strings are tried, all under
//! the secret: with `x-amz-date`, an empty date line (the documented rule) or that date in
//! the date line; and the path with or without the `--baseurl` prefix.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/RESTAuthentication.html>

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::{
    check_skew, payload_mode, query_param, signature_mismatch, Identity, Payload, Secrets,
    SignedParts, MAX_PRESIGN_EXPIRES, MAX_SKEW,
};
use crate::ops::{Code, S3Error};
use crate::util;

type HmacSha1 = Hmac<Sha1>;

/// Query parameters that are subresources: they belong to the resource that is signed. AWS's
/// list, with the ones SDKs add (boto3's among them).
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// The parts of a string to sign that do not depend on which candidate is tried.
struct Canon<'a> {
    method: &'a str,
    content_md5: String,
    content_type: String,
    /// `name:value` lines of the `x-amz-*` headers, sorted by name.
    amz: Vec<(String, String)>,
}

impl Canon<'_> {
    fn string_to_sign(&self, date: &str, skip_amz: Option<&str>, resource: &str) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n{date}\n",
            self.method, self.content_md5, self.content_type
        );
        for (name, value) in self
            .amz
            .iter()
            .filter(|(n, _)| Some(n.as_str()) != skip_amz)
        {
            s.push_str(name);
            s.push(':');
            s.push_str(value);
            s.push('\n');
        }
        s.push_str(resource);
        s
    }
}

/// `Authorization: AWS ACCESS_KEY:SIGNATURE`.
pub(super) fn header_auth(
    keys: &dyn Secrets,
    rq: &SignedParts,
    auth: &str,
    now: SystemTime,
) -> Result<Identity, S3Error> {
    let (access_key, signature) = auth
        .strip_prefix("AWS ")
        .and_then(|r| r.trim().split_once(':'))
        .filter(|(a, s)| !a.is_empty() && !s.is_empty())
        .ok_or_else(|| {
            S3Error::new(
                Code::InvalidArgument,
                "The Authorization header is malformed; expected AWS ACCESS_KEY:SIGNATURE.",
            )
            .with("ArgumentName", "Authorization")
        })?;
    let amz_date = rq.headers.get("x-amz-date").map(str::trim);
    let date = rq.headers.get("date").map(str::trim);
    let Some(when) = amz_date.or(date) else {
        return Err(S3Error::new(
            Code::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header",
        ));
    };
    let time = parse_date(when).ok_or_else(|| {
        S3Error::new(
            Code::AccessDenied,
            "AWS authentication requires a valid Date or x-amz-date header",
        )
    })?;
    check_skew(time, now, when)?;
    let secret = keys.secret(access_key)?;
    let canon = canon(rq);
    // The date line: the Date header, or with x-amz-date empty (as documented) or that date
    // in place of its header (as the documentation's own example does).
    let mut dates = vec![(date.unwrap_or(""), None)];
    if let Some(d) = amz_date {
        dates.push(("", None));
        dates.push((d, Some("x-amz-date")));
    }
    let payload = payload(rq)?;
    verify(&secret, access_key, signature, rq, &canon, &dates)?;
    Ok(Identity {
        access_key: Some(access_key.to_string()),
        payload,
    })
}

/// A presigned URL: `AWSAccessKeyId`, `Expires` (seconds since the epoch) and `Signature`.
pub(super) fn presigned_auth(
    keys: &dyn Secrets,
    rq: &SignedParts,
    now: SystemTime,
) -> Result<Identity, S3Error> {
    let param = |n: &str| {
        query_param(rq.raw_query, n).ok_or_else(|| {
            S3Error::new(
                Code::AccessDenied,
                format!("Query-string authentication requires the {n} parameter."),
            )
        })
    };
    let access_key = param("AWSAccessKeyId")?;
    let expires_text = param("Expires")?;
    let signature = param("Signature")?;
    let too_far = || {
        S3Error::new(
            Code::AccessDenied,
            "Expires lies more than seven days ahead; a presigned URL lives at most seven days.",
        )
    };
    let secs = expires_text.parse::<u64>().map_err(|_| {
        S3Error::new(
            Code::AccessDenied,
            "Expires must be a number of seconds since the epoch.",
        )
    })?;
    // A time past what SystemTime holds is surely more than seven days ahead.
    let expires = UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .ok_or_else(too_far)?;
    if now > expires {
        return Err(S3Error::new(Code::AccessDenied, "Request has expired")
            .with("Expires", util::iso8601(expires))
            .with("ServerTime", util::iso8601(now)));
    }
    // The same bound as a version 4 URL's X-Amz-Expires, counted from now: the signing
    // time is not in the URL.
    if expires > now + Duration::from_secs(MAX_PRESIGN_EXPIRES) + MAX_SKEW {
        return Err(too_far());
    }
    let secret = keys.secret(&access_key)?;
    let canon = canon(rq);
    verify(
        &secret,
        &access_key,
        &signature,
        rq,
        &canon,
        &[(&expires_text, None)],
    )?;
    Ok(Identity {
        access_key: Some(access_key),
        payload: Payload::Unsigned,
    })
}

/// A version 2 body is never aws-chunked; a literal `x-amz-content-sha256`, signed like
/// every `x-amz-*` header, is still checked while the body streams.
fn payload(rq: &SignedParts) -> Result<Payload, S3Error> {
    let Some(hash) = rq.headers.get("x-amz-content-sha256").map(str::trim) else {
        return Ok(Payload::Unsigned);
    };
    match payload_mode(hash)? {
        Payload::Streaming(_) => Err(S3Error::new(
            Code::InvalidRequest,
            "aws-chunked bodies (STREAMING-…) need Signature Version 4.",
        )),
        p => Ok(p),
    }
}

/// The string-to-sign parts of the request. (A presigned URL's `x-amz-*`, Content-Type and
/// Content-MD5 parameters arrive here as headers: see `s3::with_presigned_headers`.)
fn canon<'a>(rq: &SignedParts<'a>) -> Canon<'a> {
    let header = |name: &str| rq.headers.get(name).unwrap_or_default().trim().to_string();
    let mut amz: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in rq.headers.0.iter().filter(|(n, _)| n.starts_with("x-amz-")) {
        let value = value.trim().to_string();
        match amz.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => amz.push((name.clone(), vec![value])),
        }
    }
    amz.sort_by(|a, b| a.0.cmp(&b.0));
    Canon {
        method: rq.method,
        content_md5: header("content-md5"),
        content_type: header("content-type"),
        amz: amz.into_iter().map(|(n, v)| (n, v.join(","))).collect(),
    }
}

/// The resources a client may have signed: the path as sent (after `/bucket` when the
/// bucket came in the host name), with and without the `--baseurl` prefix, then the
/// subresources. A path-style request for a bucket alone (`/bucket`) is also tried as
/// `/bucket/`, which is what boto3 signs for it (and S3 accepts).
fn resources(rq: &SignedParts) -> Vec<String> {
    let mut paths = vec![rq.raw_path.to_string()];
    if !rq.baseurl.is_empty() {
        let stripped = rq
            .raw_path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(rq.baseurl))
            .filter(|rest| rest.is_empty() || rest.starts_with('/'));
        paths.extend(stripped.map(str::to_string));
    }
    if rq.vhost_bucket.is_none() {
        let bucket_only = |p: &String| {
            p.get(1..)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        };
        let with_slash: Vec<String> = paths
            .iter()
            .filter(|p| bucket_only(p))
            .map(|p| format!("{p}/"))
            .collect();
        paths.extend(with_slash);
    }
    let subs = [
        subresources(rq.raw_query, true),
        subresources(rq.raw_query, false),
    ];
    let subs = if subs[0] == subs[1] {
        &subs[..1]
    } else {
        &subs[..]
    };
    let mut out = Vec::with_capacity(paths.len() * subs.len());
    for p in &paths {
        let p = if p.is_empty() { "/" } else { p.as_str() };
        for sub in subs {
            out.push(match rq.vhost_bucket {
                Some(b) => format!("/{b}{p}{sub}"),
                None => format!("{p}{sub}"),
            });
        }
    }
    out
}

/// `?name&name=value…` for the subresources in the query, sorted by name; values decoded
/// (boto3 signs them so) or as sent (s3cmd does).
fn subresources(raw_query: &str, decode: bool) -> String {
    let mut found: Vec<(String, Option<String>)> = raw_query
        .split('&')
        .filter_map(|pair| {
            let (n, v) = match pair.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (pair, None),
            };
            let n = util::percent_decode(n)?;
            SUBRESOURCES.contains(&n.as_str()).then_some(())?;
            let v = match v {
                Some(v) if decode => Some(util::percent_decode(v)?),
                other => other.map(str::to_string),
            };
            Some((n, v))
        })
        .collect();
    if found.is_empty() {
        return String::new();
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let parts: Vec<String> = found
        .into_iter()
        .map(|(n, v)| match v {
            Some(v) => format!("{n}={v}"),
            None => n,
        })
        .collect();
    format!("?{}", parts.join("&"))
}

/// Checks `signature` (base64) against every candidate string to sign.
fn verify(
    secret: &str,
    access_key: &str,
    signature: &str,
    rq: &SignedParts,
    canon: &Canon,
    dates: &[(&str, Option<&str>)],
) -> Result<(), S3Error> {
    let provided = util::unbase64(signature.trim()).unwrap_or_default();
    let mut first = None;
    for resource in resources(rq) {
        for (date, skip) in dates {
            let sts = canon.string_to_sign(date, *skip, &resource);
            if verify_hmac_sha1(secret.as_bytes(), sts.as_bytes(), &provided) {
                return Ok(());
            }
            first.get_or_insert(sts);
        }
    }
    Err(signature_mismatch(
        access_key,
        &first.unwrap_or_default(),
        signature,
    ))
}

/// A POST form's version 2 signature: base64 HMAC-SHA1 of the base64 policy.
pub fn verify_policy(secret: &str, policy: &str, signature: &str) -> bool {
    let provided = util::unbase64(signature.trim()).unwrap_or_default();
    verify_hmac_sha1(secret.as_bytes(), policy.as_bytes(), &provided)
}

/// Constant-time check of an HMAC-SHA1 over `data`.
fn verify_hmac_sha1(key: &[u8], data: &[u8], expected: &[u8]) -> bool {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.verify_slice(expected).is_ok()
}

/// An RFC 1123 date, also with `+0000` for the zone as AWS's examples write it.
fn parse_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    util::parse_http_date(s)
        .or_else(|| util::parse_http_date(&format!("{} GMT", s.strip_suffix("+0000")?.trim())))
        .or_else(|| util::parse_amz_date(s))
}

#[cfg(test)]
mod tests {
    use super::super::{authenticate, Keys};
    use super::*;
    use crate::ops::Headers;

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn keys() -> Keys {
        Keys::new(&[(AK.into(), SECRET.into())])
    }

    fn at(http_date: &str) -> SystemTime {
        parse_date(http_date).unwrap()
    }

    /// Signs `sts` as a client would.
    fn sign(sts: &str) -> String {
        let mut mac = HmacSha1::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(sts.as_bytes());
        util::base64(&mac.finalize().into_bytes())
    }

    struct Case<'a> {
        method: &'a str,
        target: &'a str,
        vhost: Option<&'a str>,
        headers: &'a [(&'a str, &'a str)],
    }

    fn check(case: Case, now: SystemTime) -> Result<Identity, S3Error> {
        let h = Headers::from_pairs(case.headers);
        let (path, query) = case.target.split_once('?').unwrap_or((case.target, ""));
        let rq = SignedParts {
            method: case.method,
            raw_path: path,
            raw_query: query,
            headers: &h,
            vhost_bucket: case.vhost,
            baseurl: "",
        };
        authenticate(&keys(), &rq, now)
    }

    // The examples of the AWS S3 developer guide, "Signing and authenticating REST requests
    // (AWS signature version 2)". The guide later renamed its bucket from johnsmith to
    // awsexamplebucket1 without signing again; these are the original, consistent ones.
    #[test]
    fn aws_example_object_get_put_list_fetch() {
        for (method, target, date, extra, signature) in [
            (
                "GET",
                "/photos/puppy.jpg",
                "Tue, 27 Mar 2007 19:36:42 +0000",
                None,
                "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
            ),
            (
                "PUT",
                "/photos/puppy.jpg",
                "Tue, 27 Mar 2007 21:15:45 +0000",
                Some(("Content-Type", "image/jpeg")),
                "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
            ),
            (
                "GET",
                "/?prefix=photos&max-keys=50&marker=puppy",
                "Tue, 27 Mar 2007 19:42:41 +0000",
                Some(("User-Agent", "Mozilla/5.0")),
                "htDYFYduRNen8P9ZfE/s9SuKy0U=",
            ),
            (
                "GET",
                "/?acl",
                "Tue, 27 Mar 2007 19:44:46 +0000",
                None,
                "c2WLPFtWHVgbEmeEG93a4cG37dM=",
            ),
        ] {
            let auth = format!("AWS {AK}:{signature}");
            let mut headers = vec![
                ("Host", "johnsmith.s3.amazonaws.com"),
                ("Date", date),
                ("Authorization", auth.as_str()),
            ];
            headers.extend(extra);
            let case = Case {
                method,
                target,
                vhost: Some("johnsmith"),
                headers: &headers,
            };
            let id = check(case, at(date)).unwrap_or_else(|e| panic!("{target}: {e:?}"));
            assert_eq!(id.access_key.as_deref(), Some(AK));
            assert_eq!(id.payload, Payload::Unsigned);
        }
    }

    #[test]
    fn aws_example_delete_with_x_amz_date() {
        let headers = [
            ("Host", "s3.amazonaws.com"),
            ("Date", "Tue, 27 Mar 2007 21:20:27 +0000"),
            ("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"),
            (
                "Authorization",
                "AWS AKIAIOSFODNN7EXAMPLE:lx3byBScXR6KzyMaifNkardMwNk=",
            ),
        ];
        let case = Case {
            method: "DELETE",
            target: "/johnsmith/photos/puppy.jpg",
            vhost: None,
            headers: &headers,
        };
        assert!(check(case, at("Tue, 27 Mar 2007 21:25:00 +0000")).is_ok());
    }

    #[test]
    fn aws_example_upload_with_amz_headers_to_a_cname_bucket() {
        let headers = [
            ("Host", "static.johnsmith.net:8080"),
            ("Date", "Tue, 27 Mar 2007 21:06:08 +0000"),
            ("x-amz-acl", "public-read"),
            ("content-type", "application/x-download"),
            ("Content-MD5", "4gJE4saaMU4BqNR0kLY+lw=="),
            ("X-Amz-Meta-ReviewedBy", "joe@johnsmith.net"),
            ("X-Amz-Meta-ReviewedBy", "jane@johnsmith.net"),
            ("X-Amz-Meta-FileChecksum", "0x02661779"),
            ("X-Amz-Meta-ChecksumAlgorithm", "crc32"),
            ("Content-Disposition", "attachment; filename=database.dat"),
            ("Content-Encoding", "gzip"),
            (
                "Authorization",
                "AWS AKIAIOSFODNN7EXAMPLE:ilyl83RwaSoYIEdixDQcA4OnAnc=",
            ),
        ];
        let case = Case {
            method: "PUT",
            target: "/db-backup.dat.gz",
            vhost: Some("static.johnsmith.net"),
            headers: &headers,
        };
        assert!(check(case, at("Tue, 27 Mar 2007 21:06:08 +0000")).is_ok());
    }

    #[test]
    fn aws_example_list_all_buckets_and_unicode_keys() {
        for (target, date, signature) in [
            (
                "/",
                "Wed, 28 Mar 2007 01:29:59 +0000",
                "qGdzdERIC03wnaRNKh6OqZehG9s=",
            ),
            (
                "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
                "Wed, 28 Mar 2007 01:49:49 +0000",
                "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
            ),
        ] {
            let auth = format!("AWS {AK}:{signature}");
            let headers = [
                ("Host", "s3.amazonaws.com"),
                ("Date", date),
                ("Authorization", auth.as_str()),
            ];
            let case = Case {
                method: "GET",
                target,
                vhost: None,
                headers: &headers,
            };
            assert!(check(case, at(date)).is_ok(), "{target}");
        }
    }

    #[test]
    fn aws_example_query_string_authentication() {
        let target = "/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620";
        let headers = [("Host", "johnsmith.s3.amazonaws.com")];
        let case = |t| Case {
            method: "GET",
            target: t,
            vhost: Some("johnsmith"),
            headers: &headers,
        };
        let before = UNIX_EPOCH + Duration::from_secs(1_175_139_000);
        let id = check(case(target), before).unwrap();
        assert_eq!(id.access_key.as_deref(), Some(AK));
        let after = UNIX_EPOCH + Duration::from_secs(1_175_139_621);
        let e = check(case(target), after).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (Code::AccessDenied, "Request has expired")
        );
        // An Expires more than seven days ahead is refused, like X-Amz-Expires.
        let long_ago = UNIX_EPOCH + Duration::from_secs(1_175_139_620 - 8 * 86_400);
        assert_eq!(
            check(case(target), long_ago).unwrap_err().code,
            Code::AccessDenied
        );
        let tampered = target.replace("puppy", "kitten");
        assert_eq!(
            check(case(&tampered), before).unwrap_err().code,
            Code::SignatureDoesNotMatch
        );
    }

    #[test]
    fn wrong_secret_unknown_key_skew_and_malformed_headers() {
        let date = "Tue, 27 Mar 2007 19:36:42 +0000";
        let run = |auth: &str, now| {
            let headers = [("Host", "h"), ("Date", date), ("Authorization", auth)];
            let case = Case {
                method: "GET",
                target: "/johnsmith/photos/puppy.jpg",
                vhost: None,
                headers: &headers,
            };
            check(case, now).map(|_| ()).map_err(|e| e.code)
        };
        let good = "AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU=";
        assert_eq!(run(good, at(date)), Ok(()));
        let wrong = "AWS AKIAIOSFODNN7EXAMPLE:AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert_eq!(run(wrong, at(date)), Err(Code::SignatureDoesNotMatch));
        let unknown = "AWS SOMEONEELSE:bWq2s1WEIj+Ydj0vQ697zp+IXMU=";
        assert_eq!(run(unknown, at(date)), Err(Code::InvalidAccessKeyId));
        let late = at("Tue, 27 Mar 2007 19:52:43 +0000");
        assert_eq!(run(good, late), Err(Code::RequestTimeTooSkewed));
        assert_eq!(run("AWS nocolon", at(date)), Err(Code::InvalidArgument));
    }

    #[test]
    fn resources_carry_subresources_sorted_and_the_baseurl_is_optional() {
        assert_eq!(
            subresources("uploadId=a%2Bb&partNumber=2&max-keys=1", true),
            "?partNumber=2&uploadId=a+b"
        );
        assert_eq!(
            subresources("response-content-type=text%2Fplain", false),
            "?response-content-type=text%2Fplain"
        );
        assert_eq!(subresources("uploads&prefix=x", true), "?uploads");
        assert_eq!(subresources("list-type=2", true), "");
        let h = Headers::from_pairs(&[]);
        let rq = SignedParts {
            method: "GET",
            raw_path: "/s3/b/k",
            raw_query: "acl",
            headers: &h,
            vhost_bucket: None,
            baseurl: "s3",
        };
        assert_eq!(resources(&rq), ["/s3/b/k?acl", "/b/k?acl"]);
        let rq = SignedParts {
            raw_path: "/s3/b",
            raw_query: "",
            ..rq
        };
        assert_eq!(resources(&rq), ["/s3/b", "/b", "/b/"]);
    }

    #[test]
    fn signed_amz_headers_and_x_amz_date_as_clients_send_them() {
        // s3cmd's form: x-amz-date in its place among the amz headers, an empty date line.
        let sts =
            "PUT\n\ntext/plain\n\nx-amz-date:Tue, 27 Mar 2007 21:20:26 +0000\nx-amz-meta-a:1\n/b/k";
        let auth = format!("AWS {AK}:{}", sign(sts));
        let headers = [
            ("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"),
            ("content-type", "text/plain"),
            ("x-amz-meta-a", " 1 "),
            ("authorization", auth.as_str()),
        ];
        let case = Case {
            method: "PUT",
            target: "/b/k",
            vhost: None,
            headers: &headers,
        };
        assert!(check(case, at("Tue, 27 Mar 2007 21:20:26 +0000")).is_ok());
    }

    #[test]
    fn policy_signatures() {
        let policy =
            util::base64(b"{\"expiration\": \"2030-01-01T00:00:00Z\", \"conditions\": []}");
        let good = sign(&policy);
        assert!(verify_policy(SECRET, &policy, &good));
        assert!(!verify_policy("other", &policy, &good));
        assert!(!verify_policy(SECRET, &policy, "not base64!"));
    }
}
