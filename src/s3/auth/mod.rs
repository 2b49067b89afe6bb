//! Who sent a request: the signature checks, dispatched on the request's form. Signature
//! Version 4 ([`v4`]) in the `Authorization` header or a presigned URL; Signature Version 2
//! ([`v2`]) likewise. Signatures are compared in constant time, requests must be within 15
//! minutes of the server clock, and a presigned URL lives at most seven days. The payload
//! hash mode is returned so the body can be verified while it streams. Without keys, access
//! is anonymous.

pub mod proxy;
mod v2;
mod v4;

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::ops::{Code, Headers, S3Error};
use crate::util;

pub use crate::sigv4::{canonical_query, hmac, signing_key, verify_mac};
pub use v2::verify_policy as verify_policy_v2;

/// Requests may be at most this far from the server clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// Presigned URLs live at most seven days.
pub const MAX_PRESIGN_EXPIRES: u64 = 604_800;
use crate::sigv4::EMPTY_SHA256;

/// Access key id to secret.
#[derive(Clone, Default)]
pub struct Keys(HashMap<String, String>);

impl Keys {
    pub fn new(pairs: &[(String, String)]) -> Keys {
        Keys(pairs.iter().cloned().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where the secrets of access keys come from: `--auth-key`, or the `--auth-proxy` program.
pub trait Secrets {
    /// No keys at all: every request is anonymous.
    fn anonymous(&self) -> bool;
    /// The secret of an access key; InvalidAccessKeyId for one that has none.
    fn secret(&self, access_key: &str) -> Result<Cow<'_, str>, S3Error>;
    /// After SignatureDoesNotMatch: whether the secret came from memory and should be
    /// asked for afresh (it may have been rotated), in which case the next [`Secrets::secret`]
    /// asks.
    fn ask_afresh(&self) -> bool {
        false
    }
}

impl Secrets for Keys {
    fn anonymous(&self) -> bool {
        self.0.is_empty()
    }

    fn secret(&self, access_key: &str) -> Result<Cow<'_, str>, S3Error> {
        self.0
            .get(access_key)
            .map(|s| Cow::Borrowed(s.as_str()))
            .ok_or_else(unknown_key)
    }
}

/// How the body is covered by the signature.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Not covered (`UNSIGNED-PAYLOAD`, presigned URLs, anonymous access).
    Unsigned,
    /// A literal SHA-256 that the body must match before anything is committed.
    Sha256([u8; 32]),
    /// An aws-chunked body (`STREAMING-…`), with what is needed to check chunk signatures.
    Streaming(Streaming),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Streaming {
    pub mode: String,
    pub signing_key: Vec<u8>,
    pub amz_date: String,
    pub scope: String,
    pub seed_signature: String,
}

/// Who sent the request and how its body is covered.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub access_key: Option<String>,
    pub payload: Payload,
}

/// The parts of a request that the signature covers.
pub struct SignedParts<'a> {
    pub method: &'a str,
    /// The path as sent, still percent-encoded.
    pub raw_path: &'a str,
    /// The query string as sent, without `?`.
    pub raw_query: &'a str,
    pub headers: &'a Headers,
    /// The bucket, when the `Host` header named it (virtual-hosted style).
    pub vhost_bucket: Option<&'a str>,
    /// `--baseurl` without slashes; "" when unset.
    pub baseurl: &'a str,
}

/// Checks the request's signature; anonymous when no keys are configured. A signature that
/// does not match a remembered secret is checked once more with the secret asked afresh.
pub fn authenticate(
    keys: &dyn Secrets,
    rq: &SignedParts,
    now: SystemTime,
) -> Result<Identity, S3Error> {
    loop {
        match authenticate_once(keys, rq, now) {
            Err(e) if e.code == Code::SignatureDoesNotMatch && keys.ask_afresh() => continue,
            result => return result,
        }
    }
}

fn authenticate_once(
    keys: &dyn Secrets,
    rq: &SignedParts,
    now: SystemTime,
) -> Result<Identity, S3Error> {
    if keys.anonymous() {
        // Anonymous: nothing is verified, but an aws-chunked body must still be unframed.
        let hash = rq
            .headers
            .get("x-amz-content-sha256")
            .unwrap_or_default()
            .trim();
        let payload = match payload_mode(hash) {
            Ok(p @ Payload::Streaming(_)) => p,
            _ => Payload::Unsigned,
        };
        return Ok(Identity {
            access_key: None,
            payload,
        });
    }
    if let Some(auth) = rq.headers.get("authorization") {
        if auth.starts_with("AWS ") {
            return v2::header_auth(keys, rq, auth, now);
        }
        return v4::header_auth(keys, rq, auth, now);
    }
    if has_query_param(rq.raw_query, "X-Amz-Algorithm") {
        return v4::presigned_auth(keys, rq, now);
    }
    if has_query_param(rq.raw_query, "AWSAccessKeyId") {
        return v2::presigned_auth(keys, rq, now);
    }
    Err(S3Error::new(
        Code::AccessDenied,
        "Access Denied: this server requires signed requests.",
    ))
}

/// SignatureDoesNotMatch, with what S3 puts in it to help a client see where its signing went
/// another way: the string to sign (and its bytes) that the server computed.
fn signature_mismatch(access_key: &str, string_to_sign: &str, provided: &str) -> S3Error {
    let bytes: Vec<String> = string_to_sign.bytes().map(|b| format!("{b:02x}")).collect();
    S3Error::new(
        Code::SignatureDoesNotMatch,
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
    )
    .with("AWSAccessKeyId", access_key)
    .with("StringToSign", string_to_sign)
    .with("StringToSignBytes", bytes.join(" "))
    .with("SignatureProvided", provided)
}

/// InvalidAccessKeyId, for a key not in `--auth-key`.
pub fn unknown_key() -> S3Error {
    S3Error::new(
        Code::InvalidAccessKeyId,
        "The AWS Access Key Id you provided does not exist in our records.",
    )
}

fn check_skew(t: SystemTime, now: SystemTime, amz_date: &str) -> Result<(), S3Error> {
    let skew = now
        .duration_since(t)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(S3Error::new(
            Code::RequestTimeTooSkewed,
            "The difference between the request time and the current time is too large.",
        )
        .with("RequestTime", amz_date)
        .with("ServerTime", util::iso8601(now))
        .with("MaxAllowedSkewMilliseconds", "900000"));
    }
    Ok(())
}

fn payload_mode(hash: &str) -> Result<Payload, S3Error> {
    if hash == "UNSIGNED-PAYLOAD" {
        return Ok(Payload::Unsigned);
    }
    if hash.starts_with("STREAMING-AWS4-ECDSA") {
        return Err(S3Error::new(
            Code::NotImplemented,
            "Signature Version 4A streaming is not supported.",
        ));
    }
    if let Some(mode) = hash.strip_prefix("STREAMING-") {
        let known = [
            "AWS4-HMAC-SHA256-PAYLOAD",
            "AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            "UNSIGNED-PAYLOAD-TRAILER",
        ];
        if known.contains(&mode) {
            return Ok(Payload::Streaming(Streaming {
                mode: hash.to_string(),
                signing_key: Vec::new(),
                amz_date: String::new(),
                scope: String::new(),
                seed_signature: String::new(),
            }));
        }
    }
    match util::unhex(hash).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(d) => Ok(Payload::Sha256(d)),
        None => Err(S3Error::new(
            Code::InvalidArgument,
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-…, or a hex SHA-256.",
        )
        .with("ArgumentName", "x-amz-content-sha256")),
    }
}

fn has_query_param(raw: &str, name: &str) -> bool {
    raw.split('&').any(|p| p.split('=').next() == Some(name))
}

fn query_param(raw: &str, name: &str) -> Option<String> {
    raw.split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| util::form_decode(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn keys() -> Keys {
        Keys::new(&[("AKID".into(), "SECRET".into())])
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs)
    }

    #[test]
    fn unsigned_and_anonymous() {
        let h = hdrs(&[("host", "h")]);
        let rq = SignedParts {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &h,
            vhost_bucket: None,
            baseurl: "",
        };
        assert_eq!(
            authenticate(&keys(), &rq, UNIX_EPOCH).unwrap_err().code,
            Code::AccessDenied
        );
        let id = authenticate(&Keys::default(), &rq, UNIX_EPOCH).unwrap();
        assert_eq!(id.access_key, None);
    }
}
