//! Admission: the relay puts every request head with a body to this before it reads a byte
//! of the body (and before it answers `100 Continue`). A request that would fail on its
//! route, signature, permission, bucket or size is answered at once, and its body is never
//! read; an accepted one is told how to receive its body.

use std::time::SystemTime;

use super::auth::{self, Payload};
use super::route::Endpoint;
use super::users::Tenant;
use super::{
    check_bucket_name, error_response, http, parse_target, vhost_bucket, with_presigned_headers,
    AnyTenant, App, Peer,
};
use crate::ops::put::MAX_PUT_SIZE;
use crate::ops::{self, Code, Headers, S3Error};
use crate::util;
use crate::vfs::Hashes;

/// What the front says about a request head with a body, before the body is read.
pub enum Admission {
    /// The body may come.
    Accept(Accepted),
    /// The whole answer refusing the request; the connection closes after it.
    Refuse(Vec<u8>),
}

/// How an accepted body is received.
pub struct Accepted {
    /// A spooled body is hashed with these as it arrives.
    pub hashes: Option<Box<Hashes>>,
    /// It will likely become an object, so its write-back starts early.
    pub durable: bool,
    /// The longest body the request may have (as sent, before any aws-chunked decoding);
    /// a longer one is refused as soon as that shows.
    pub limit: u64,
}

impl Default for Accepted {
    fn default() -> Self {
        Accepted {
            hashes: None,
            durable: false,
            limit: u64::MAX,
        }
    }
}

/// Splits a request head (checked by the relay) into method, target and headers.
fn parse_head(head: &[u8]) -> Option<(&str, &str, Headers)> {
    use super::relayed::PRIVATE_PREFIX;
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.trim_end_matches("\r\n").split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, url) = (request_line.next()?, request_line.next()?);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(n, _)| !n.starts_with(PRIVATE_PREFIX))
        .collect();
    Some((method, url, Headers(headers)))
}

/// Decides, from its head alone, whether the body of a request may come: the relay asks
/// before it reads a byte of it (and before it answers `100 Continue`). A request that
/// would fail on its route, signature, permission or bucket is answered here, so its body is
/// never read. An accepted PUT or UploadPart is hashed as it arrives, with what a worker
/// will need (see [`put::receive`](crate::ops::put::receive)).
pub fn admit(app: &App, head: &[u8], peer: &str) -> Admission {
    let Some((method, url, headers)) = parse_head(head) else {
        return Admission::Accept(Default::default());
    };
    match admit_checks(app, method, url, &headers, peer) {
        Ok(accepted) => Admission::Accept(accepted),
        Err(e) => {
            let request_id = util::unique_token();
            let status = e.status();
            log::info!(target: "access", "{request_id} {} {method} - {status} 0 refused before the body: {}", Peer::new(peer, 0, 0, false).addr(), e.code.as_str());
            let mut response = error_response(&e, &request_id, method);
            if let Some(cors) = &app.cors {
                response = cors.decorate(&headers, response);
            }
            Admission::Refuse(http::closing_answer(response, &request_id))
        }
    }
}

fn admit_checks(
    app: &App,
    method: &str,
    url: &str,
    headers: &Headers,
    peer: &str,
) -> Result<Accepted, S3Error> {
    if method == "OPTIONS" && app.cors.is_some() {
        return Ok(Accepted::default());
    }
    let vhost = vhost_bucket(headers.get("host"), app.vhost_domain.as_deref());
    let t = parse_target(url, &app.baseurl, vhost.as_deref())?;
    let presigned = with_presigned_headers(headers, &t.query);
    let headers = presigned.as_ref().unwrap_or(headers);
    let endpoint = Endpoint::from_request(method, &t.bucket, &t.key, &t.query, headers)?;
    let tenant = app.tenant(peer);
    let payload = if endpoint == Endpoint::PostObject {
        None // signed by the form's policy, which is in the body
    } else {
        let parts = t.signed_parts(method, headers, &app.baseurl);
        Some(auth::authenticate(&tenant, &parts, SystemTime::now())?.payload)
    };
    if endpoint.writes() && app.ops.read_only {
        return Err(S3Error::new(Code::AccessDenied, "The server is read-only."));
    }
    // Under --auth-proxy, a form's storage is known once its policy is read, in the body.
    let vfs = match (&tenant, &payload) {
        (AnyTenant::Asking(_), None) => None,
        _ => Some(tenant.vfs()?),
    };
    if !t.bucket.is_empty() && endpoint != Endpoint::CreateBucket {
        check_bucket_name(&t.bucket)?;
        if let Some(vfs) = &vfs {
            vfs.require_bucket(&t.bucket)
                .map_err(|e| S3Error::from(e).with_resource(format!("/{}", t.bucket)))?;
        }
    }
    let streaming = matches!(payload, Some(Payload::Streaming(_)));
    let limit = match endpoint {
        Endpoint::PutObject | Endpoint::UploadPart => {
            let declared = ["x-amz-decoded-content-length", "content-length"]
                .iter()
                .find_map(|n| headers.get(n))
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_PUT_SIZE) {
                return Err(S3Error::new(
                    Code::EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed object size.",
                ));
            }
            // aws-chunked framing adds at most about 1% (a signed line per 8 KiB chunk).
            match streaming {
                true => MAX_PUT_SIZE + MAX_PUT_SIZE / 32,
                false => MAX_PUT_SIZE,
            }
        }
        // A form: the file, its fields and their framing.
        Endpoint::PostObject => MAX_PUT_SIZE + (1 << 20),
        _ => ops::xml::MAX_XML_BODY,
    };
    if !matches!(endpoint, Endpoint::PutObject | Endpoint::UploadPart) || streaming {
        return Ok(Accepted {
            limit,
            ..Default::default()
        });
    }
    let checksum = ops::checksum::from_headers(headers)
        .ok()
        .flatten()
        .map(|w| w.alg);
    let sha256 = matches!(payload, Some(Payload::Sha256(_)));
    let Some(vfs) = vfs else {
        return Ok(Accepted::default());
    };
    let hashes = crate::vfs::Hashes::for_etag(vfs.etag_alg(), true, sha256).with_checksum(checksum);
    Ok(Accepted {
        hashes: Some(Box::new(hashes)),
        durable: endpoint == Endpoint::PutObject,
        limit,
    })
}
