//! AWS Signature Version 4: the `Authorization` header form and presigned URLs, for S3.
//! The canonical request follows the S3 rules: the path is decoded and re-encoded once and
//! never normalised; query names and values are re-encoded with the RFC 3986 unreserved set
//! and sorted; only the signed headers are canonicalised. Any region is accepted.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::{
    check_skew, payload_mode, query_param, signature_mismatch, Identity, Payload, Secrets,
    SignedParts, EMPTY_SHA256, MAX_PRESIGN_EXPIRES, MAX_SKEW,
};
use crate::ops::{Code, Headers, S3Error};
use crate::sigv4::{
    canonical_query, canonical_request, collapse_spaces, scope, signing_key, string_to_sign,
    verify_mac, ALGORITHM,
};
use crate::util;

struct Credential<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
}

fn parse_credential(c: &str) -> Result<Credential<'_>, S3Error> {
    let parts: Vec<&str> = c.split('/').collect();
    let [access_key, date, region, service, terminal] = parts[..] else {
        return Err(malformed(
            "the Credential must be ACCESS_KEY/DATE/REGION/s3/aws4_request",
        ));
    };
    if service != "s3" || terminal != "aws4_request" || date.len() != 8 || access_key.is_empty() {
        return Err(malformed(
            "the Credential must be ACCESS_KEY/YYYYMMDD/REGION/s3/aws4_request",
        ));
    }
    Ok(Credential {
        access_key,
        date,
        region,
    })
}

fn malformed(why: &str) -> S3Error {
    S3Error::new(
        Code::AuthorizationHeaderMalformed,
        format!("The authorization header is malformed; {why}."),
    )
}

pub(super) fn header_auth(
    keys: &dyn Secrets,
    rq: &SignedParts,
    auth: &str,
    now: SystemTime,
) -> Result<Identity, S3Error> {
    let Some(rest) = auth.strip_prefix(ALGORITHM) else {
        if auth.starts_with("AWS4-ECDSA-P256-SHA256") {
            return Err(S3Error::new(
                Code::NotImplemented,
                "Signature Version 4A is not supported.",
            ));
        }
        return Err(S3Error::new(Code::InvalidRequest, "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."));
    };
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| malformed("expected Credential, SignedHeaders and Signature"))?;
        fields.insert(k.trim(), v.trim());
    }
    let get = |k: &str| {
        fields
            .get(k)
            .copied()
            .ok_or_else(|| malformed(&format!("missing {k}")))
    };
    let cred = parse_credential(get("Credential")?)?;
    let signed_headers = get("SignedHeaders")?;
    let signature = get("Signature")?;
    let (amz_date, time) = request_date(rq.headers)?;
    if !amz_date.starts_with(cred.date) {
        return Err(malformed(&format!(
            "the Credential date {} does not match the request date {amz_date}",
            cred.date
        )));
    }
    check_skew(time, now, &amz_date)?;
    let secret = keys.secret(cred.access_key)?;
    check_unsigned_amz_headers(rq.headers, signed_headers)?;
    let hash = rq
        .headers
        .get("x-amz-content-sha256")
        .unwrap_or(EMPTY_SHA256)
        .trim();
    let payload = payload_mode(hash)?;
    let query = canonical_query(rq.raw_query, None);
    let sig = Sig {
        secret: &secret,
        cred: &cred,
        amz_date: &amz_date,
        signed_headers,
        payload_hash: hash,
    };
    let key = sig.verify(rq, &query, signature)?;
    let payload = match payload {
        Payload::Streaming(mut s) => {
            s.signing_key = key;
            s.amz_date = amz_date.clone();
            s.scope = sig.scope();
            s.seed_signature = signature.to_ascii_lowercase();
            Payload::Streaming(s)
        }
        p => p,
    };
    Ok(Identity {
        access_key: Some(cred.access_key.to_string()),
        payload,
    })
}

fn request_date(h: &Headers) -> Result<(String, SystemTime), S3Error> {
    if let Some(d) = h.get("x-amz-date") {
        let t = util::parse_amz_date(d.trim())
            .ok_or_else(|| malformed("x-amz-date is not in the form YYYYMMDDTHHMMSSZ"))?;
        return Ok((d.trim().to_string(), t));
    }
    if let Some(d) = h.get("date") {
        let t = util::parse_http_date(d)
            .ok_or_else(|| malformed("the Date header is not a valid HTTP date"))?;
        return Ok((util::amz_date(t), t));
    }
    Err(S3Error::new(
        Code::AccessDenied,
        "AWS authentication requires a valid Date or x-amz-date header",
    ))
}

/// Headers a client may send without signing: they carry the body's own integrity data.
fn exempt_from_signing(name: &str) -> bool {
    matches!(
        name,
        "x-amz-content-sha256"
            | "x-amz-decoded-content-length"
            | "x-amz-trailer"
            | "x-amz-sdk-checksum-algorithm"
    ) || name.starts_with("x-amz-checksum-")
}

/// Every other `x-amz-*` header must be signed, or a proxy (or a presigned URL holder) could
/// add metadata or change a copy source.
fn check_unsigned_amz_headers(h: &Headers, signed: &str) -> Result<(), S3Error> {
    let signed: Vec<String> = signed.split(';').map(str::to_ascii_lowercase).collect();
    let signed: Vec<&str> = signed.iter().map(String::as_str).collect();
    if !signed.contains(&"host") {
        return Err(S3Error::new(
            Code::AccessDenied,
            "The host header must be signed.",
        ));
    }
    for (name, _) in &h.0 {
        if name.starts_with("x-amz-")
            && !exempt_from_signing(name)
            && !signed.contains(&name.as_str())
        {
            return Err(S3Error::new(
                Code::AccessDenied,
                "There were headers present in the request which were not signed",
            )
            .with("HeadersNotSigned", name.as_str()));
        }
    }
    Ok(())
}

pub(super) fn presigned_auth(
    keys: &dyn Secrets,
    rq: &SignedParts,
    now: SystemTime,
) -> Result<Identity, S3Error> {
    let bad = |why: &str| S3Error::new(Code::AuthorizationQueryParametersError, why.to_string());
    let param = |n: &str| {
        query_param(rq.raw_query, n).ok_or_else(|| {
            bad(&format!(
                "Query-string authentication requires the {n} parameter."
            ))
        })
    };
    if param("X-Amz-Algorithm")? != ALGORITHM {
        return Err(bad("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"."));
    }
    let credential = param("X-Amz-Credential")?;
    let cred = parse_credential(&credential)
        .map_err(|_| bad("X-Amz-Credential must be ACCESS_KEY/YYYYMMDD/REGION/s3/aws4_request."))?;
    let amz_date = param("X-Amz-Date")?;
    let time = util::parse_amz_date(&amz_date).ok_or_else(|| {
        bad("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\".")
    })?;
    if !amz_date.starts_with(cred.date) {
        return Err(bad("The X-Amz-Credential date does not match X-Amz-Date."));
    }
    let expires: u64 = param("X-Amz-Expires")?
        .parse()
        .map_err(|_| bad("X-Amz-Expires should be a number."))?;
    if expires == 0 || expires > MAX_PRESIGN_EXPIRES {
        return Err(bad(
            "X-Amz-Expires must be between 1 and 604800 seconds (7 days).",
        ));
    }
    if time > now + MAX_SKEW {
        return Err(S3Error::new(
            Code::AccessDenied,
            "Request is not valid yet.",
        ));
    }
    if now > time + Duration::from_secs(expires) {
        return Err(S3Error::new(Code::AccessDenied, "Request has expired")
            .with("X-Amz-Expires", expires.to_string())
            .with(
                "Expires",
                util::iso8601(time + Duration::from_secs(expires)),
            )
            .with("ServerTime", util::iso8601(now)));
    }
    let signed_headers = param("X-Amz-SignedHeaders")?;
    let signature = param("X-Amz-Signature")?;
    let secret = keys.secret(cred.access_key)?;
    check_unsigned_amz_headers(rq.headers, &signed_headers)?;
    let query = canonical_query(rq.raw_query, Some("X-Amz-Signature"));
    let sig = Sig {
        secret: &secret,
        cred: &cred,
        amz_date: &amz_date,
        signed_headers: &signed_headers,
        payload_hash: "UNSIGNED-PAYLOAD",
    };
    sig.verify(rq, &query, &signature)?;
    Ok(Identity {
        access_key: Some(cred.access_key.to_string()),
        payload: Payload::Unsigned,
    })
}

/// One signature to check.
struct Sig<'a> {
    secret: &'a str,
    cred: &'a Credential<'a>,
    amz_date: &'a str,
    signed_headers: &'a str,
    payload_hash: &'a str,
}

impl Sig<'_> {
    fn scope(&self) -> String {
        scope(self.cred.date, self.cred.region)
    }

    /// Verifies `signature`; returns the signing key (needed for chunk signatures).
    fn verify(&self, rq: &SignedParts, query: &str, signature: &str) -> Result<Vec<u8>, S3Error> {
        let key = signing_key(self.secret, self.cred.date, self.cred.region);
        let provided = util::unhex(signature.trim()).unwrap_or_default();
        // S3 URIs are encoded once; some SDKs encode twice against custom hosts, so the path
        // exactly as sent is tried as a second candidate. Both still need the secret.
        let decoded = util::percent_decode(rq.raw_path).map(|p| util::uri_encode(&p, true));
        let mut candidates = vec![];
        if let Some(uri) = &decoded {
            candidates.push(uri.as_str());
        }
        if decoded.as_deref() != Some(rq.raw_path) {
            candidates.push(rq.raw_path);
        }
        let mut first = None;
        for uri in candidates {
            let creq = self.canonical_request(rq, uri, query)?;
            let sts = self.string_to_sign(&creq);
            if verify_mac(&key, sts.as_bytes(), &provided) {
                return Ok(key);
            }
            first.get_or_insert((creq, sts));
        }
        let (creq, sts) = first.unwrap_or_default();
        Err(signature_mismatch(self.cred.access_key, &sts, signature)
            .with("CanonicalRequest", creq))
    }

    fn canonical_request(
        &self,
        rq: &SignedParts,
        uri: &str,
        query: &str,
    ) -> Result<String, S3Error> {
        let mut headers = Vec::new();
        for name in self.signed_headers.split(';') {
            let values: Vec<String> = rq
                .headers
                .0
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| collapse_spaces(v))
                .collect();
            if values.is_empty() {
                return Err(S3Error::new(
                    Code::SignatureDoesNotMatch,
                    format!("The signed header {name} is missing from the request."),
                ));
            }
            headers.push((name, values.join(",")));
        }
        Ok(canonical_request(
            rq.method,
            uri,
            query,
            headers,
            self.signed_headers,
            self.payload_hash,
        ))
    }

    fn string_to_sign(&self, creq: &str) -> String {
        string_to_sign(self.amz_date, &self.scope(), creq)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{authenticate, Keys};
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn keys() -> Keys {
        Keys::new(&[("AKIAIOSFODNN7EXAMPLE".into(), SECRET.into())])
    }

    fn at(amz: &str) -> SystemTime {
        util::parse_amz_date(amz).unwrap()
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs)
    }

    // The GET Object example of the AWS SigV4 header-auth documentation.
    #[test]
    fn aws_example_get_object() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        let h = hdrs(&[
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
            ("authorization", auth),
        ]);
        let rq = SignedParts {
            method: "GET",
            raw_path: "/test.txt",
            raw_query: "",
            headers: &h,
            vhost_bucket: None,
            baseurl: "",
        };
        let id = authenticate(&keys(), &rq, at("20130524T000500Z")).unwrap();
        assert_eq!(id.access_key.as_deref(), Some("AKIAIOSFODNN7EXAMPLE"));
        assert!(matches!(id.payload, Payload::Sha256(_)));
        let late = authenticate(&keys(), &rq, at("20130524T002000Z")).unwrap_err();
        assert_eq!(late.code, Code::RequestTimeTooSkewed);
        let other = Keys::new(&[("AKIAIOSFODNN7EXAMPLE".into(), "wrong".into())]);
        assert_eq!(
            authenticate(&other, &rq, at("20130524T000000Z"))
                .unwrap_err()
                .code,
            Code::SignatureDoesNotMatch
        );
        let unknown = Keys::new(&[("OTHER".into(), SECRET.into())]);
        assert_eq!(
            authenticate(&unknown, &rq, at("20130524T000000Z"))
                .unwrap_err()
                .code,
            Code::InvalidAccessKeyId
        );
    }

    // The presigned GET example of the AWS query-string-auth documentation.
    #[test]
    fn aws_example_presigned() {
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
        let h = hdrs(&[("host", "examplebucket.s3.amazonaws.com")]);
        let rq = SignedParts {
            method: "GET",
            raw_path: "/test.txt",
            raw_query: q,
            headers: &h,
            vhost_bucket: None,
            baseurl: "",
        };
        let id = authenticate(&keys(), &rq, at("20130524T100000Z")).unwrap();
        assert_eq!(id.payload, Payload::Unsigned);
        let expired = authenticate(&keys(), &rq, at("20130525T000001Z")).unwrap_err();
        assert_eq!(
            (expired.code, expired.message.as_str()),
            (Code::AccessDenied, "Request has expired")
        );
        let early = authenticate(&keys(), &rq, at("20130523T230000Z")).unwrap_err();
        assert_eq!(early.code, Code::AccessDenied);
        let long = q.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801");
        let rq = SignedParts {
            method: "GET",
            raw_path: "/test.txt",
            raw_query: &long,
            headers: &h,
            vhost_bucket: None,
            baseurl: "",
        };
        assert_eq!(
            authenticate(&keys(), &rq, at("20130524T000000Z"))
                .unwrap_err()
                .code,
            Code::AuthorizationQueryParametersError
        );
    }

    #[test]
    fn unsigned_amz_headers_are_refused() {
        let h = hdrs(&[
            ("host", "h"),
            ("x-amz-meta-a", "1"),
            ("x-amz-checksum-crc32", "x"),
        ]);
        assert_eq!(
            check_unsigned_amz_headers(&h, "host").unwrap_err().code,
            Code::AccessDenied
        );
        assert!(check_unsigned_amz_headers(&h, "host;x-amz-meta-a").is_ok());
        assert!(check_unsigned_amz_headers(&h, "x-amz-meta-a").is_err());
    }

    // What the upstream backend will send passes the front's own check, query and all.
    #[test]
    fn the_signer_and_the_verifier_agree() {
        let signer = crate::sigv4::Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: SECRET.into(),
            region: "eu-west-3".into(),
            session_token: Some("token/with+chars".into()),
        };
        let now = at("20260101T120000Z");
        let mut pairs = vec![
            ("host".to_string(), "127.0.0.1:9000".to_string()),
            ("content-type".to_string(), "text/plain".to_string()),
            ("x-amz-meta-note".to_string(), "two  spaces".to_string()),
        ];
        let (path, query) = ("/bkt/a%20b/c.txt", "uploadId=x%2By&partNumber=2");
        signer.sign("PUT", path, query, &mut pairs, "UNSIGNED-PAYLOAD", now);
        let h = Headers(pairs);
        let rq = SignedParts {
            method: "PUT",
            raw_path: path,
            raw_query: query,
            headers: &h,
            vhost_bucket: None,
            baseurl: "",
        };
        let id = authenticate(&keys(), &rq, now).unwrap();
        assert_eq!(id.access_key.as_deref(), Some("AKIAIOSFODNN7EXAMPLE"));
        let tampered = SignedParts {
            raw_query: "uploadId=x%2By&partNumber=3",
            ..rq
        };
        assert_eq!(
            authenticate(&keys(), &tampered, now).unwrap_err().code,
            Code::SignatureDoesNotMatch
        );
    }
}
