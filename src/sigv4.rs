//! AWS Signature Version 4 for S3, the pieces both sides use: the canonical request, the
//! string to sign and the signing key. The front checks signatures with them
//! (`s3::auth::v4`); [`Signer`] signs requests sent to an S3 upstream.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html>

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::util;

type HmacSha256 = Hmac<Sha256>;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The SHA-256 of an empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Constant-time check of an HMAC-SHA256 over `data`.
pub fn verify_mac(key: &[u8], data: &[u8], expected: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.verify_slice(expected).is_ok()
}

pub fn signing_key(secret: &str, date: &str, region: &str) -> Vec<u8> {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, b"s3");
    hmac(&k, b"aws4_request")
}

/// `date/region/s3/aws4_request`.
pub fn scope(date: &str, region: &str) -> String {
    format!("{date}/{region}/s3/aws4_request")
}

/// The SigV4 query string: names and values re-encoded, sorted, `skip` left out.
pub fn canonical_query(raw: &str, skip: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            let n = util::form_decode(n)?;
            let v = util::form_decode(v)?;
            Some((util::uri_encode(&n, false), util::uri_encode(&v, false)))
        })
        .filter(|(n, _)| Some(n.as_str()) != skip)
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as it is signed: runs of spaces made one, ends trimmed.
pub fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The canonical request. `headers` are the signed ones, in `signed_headers` order, each
/// with its values already joined by `,`.
pub fn canonical_request<'a>(
    method: &str,
    uri: &str,
    query: &str,
    headers: impl IntoIterator<Item = (&'a str, String)>,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    let mut out = format!("{method}\n{uri}\n{query}\n");
    for (name, value) in headers {
        out.push_str(name);
        out.push(':');
        out.push_str(&value);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(payload_hash);
    out
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    let digest = util::hex(&Sha256::digest(canonical_request.as_bytes()));
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{digest}")
}

/// Signs requests to an S3 upstream with one key pair.
#[derive(Clone)]
pub struct Signer {
    pub access_key: String,
    pub secret: String,
    pub region: String,
    /// Temporary credentials' token, sent as `x-amz-security-token` (and signed).
    pub session_token: Option<String>,
}

impl Signer {
    /// Adds `x-amz-date`, `x-amz-content-sha256`, the session token if any and
    /// `authorization` to `headers` (lower-case names; `host` among them), for a request to
    /// the already encoded `path` with the raw `query`.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &mut Vec<(String, String)>,
        payload_hash: &str,
        now: SystemTime,
    ) {
        let amz_date = util::amz_date(now);
        let date = &amz_date[..8];
        headers.retain(|(n, _)| {
            !matches!(
                n.as_str(),
                "authorization" | "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
            )
        });
        headers.push(("x-amz-date".into(), amz_date.clone()));
        headers.push(("x-amz-content-sha256".into(), payload_hash.into()));
        if let Some(token) = &self.session_token {
            headers.push(("x-amz-security-token".into(), token.clone()));
        }
        let mut names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let signed_headers = names.join(";");
        let values = names.iter().map(|&name| {
            let joined = headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| collapse_spaces(v))
                .collect::<Vec<_>>()
                .join(",");
            (name, joined)
        });
        let creq = canonical_request(
            method,
            path,
            &canonical_query(query, None),
            values,
            &signed_headers,
            payload_hash,
        );
        let scope = scope(date, &self.region);
        let sts = string_to_sign(&amz_date, &scope, &creq);
        let signature = util::hex(&hmac(
            &signing_key(&self.secret, date, &self.region),
            sts.as_bytes(),
        ));
        let authorization = format!(
            "{ALGORITHM} Credential={}/{scope},SignedHeaders={signed_headers},Signature={signature}",
            self.access_key
        );
        headers.push(("authorization".into(), authorization));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The GET Object example of the AWS SigV4 header-auth documentation, signed from scratch.
    #[test]
    fn signs_the_aws_get_object_example() {
        let signer = Signer {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
            session_token: None,
        };
        let mut headers = vec![
            (
                "host".to_string(),
                "examplebucket.s3.amazonaws.com".to_string(),
            ),
            ("range".to_string(), "bytes=0-9".to_string()),
        ];
        let when = util::parse_amz_date("20130524T000000Z").unwrap();
        signer.sign("GET", "/test.txt", "", &mut headers, EMPTY_SHA256, when);
        let auth = &headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn canonical_query_rules() {
        assert_eq!(canonical_query("b=2&a=1&a=0", None), "a=0&a=1&b=2");
        assert_eq!(canonical_query("x&y=a%20b", None), "x=&y=a%20b");
        assert_eq!(
            canonical_query("uploads&prefix=a%2Fb&max-keys=2", None),
            "max-keys=2&prefix=a%2Fb&uploads="
        );
        assert_eq!(canonical_query("a=x+y&b=%7E", None), "a=x%20y&b=~");
        assert_eq!(
            canonical_query("a=1&X-Amz-Signature=s", Some("X-Amz-Signature")),
            "a=1"
        );
    }
}
