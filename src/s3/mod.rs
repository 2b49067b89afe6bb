//! The S3 front: turns one tiny_http request into one response. Route first, then check the
//! signature on the headers, and only then touch the body. A request with a body was first
//! put to [`admit`] by the relay, which reads the body only if the head passes (and only then
//! answers `100 Continue`), so a worker always finds the body whole: after the head, or in a
//! spool file. Every response carries `x-amz-request-id`; errors become XML in one place.

pub mod admit;
pub mod auth;
pub mod chunked;
pub mod cors;
pub mod form;
pub mod growing;
pub mod http;
pub mod post;
pub mod relayed;
pub mod route;
pub mod spool;
pub mod users;

use std::io::Read;
use std::time::{Instant, SystemTime};

use crate::ops::{self, Code, Ctx, Headers, OpResult, OpsOptions, Query, Request, S3Error};
use crate::util;
use crate::vfs::Vfs;
use auth::{Keys, Payload};
use route::Endpoint;
use std::sync::Arc;

/// Everything a worker needs to answer requests; shared read-only by all workers.
pub struct App {
    /// What requests reach: one storage, or each user's.
    pub storage: Tenancy,
    pub ops: OpsOptions,
    pub keys: Keys,
    /// `--baseurl` without slashes; "" when unset.
    pub baseurl: String,
    /// `--allow-origin`; `None` sends no CORS headers.
    pub cors: Option<cors::Cors>,
    /// `--response-header`: set on every response, replacing any of the same name.
    pub response_headers: Vec<(String, String)>,
    /// File bodies left for the relays to send (see [`http::FileBodies`]).
    pub file_bodies: Arc<http::FileBodies>,
    /// The spool folder: request bodies the relays receive, and answers too large to wait in
    /// a relay's buffer (see [`spool::SpoolDir`]).
    pub spool: Arc<spool::SpoolDir>,
    /// Request bodies the relays spooled (see [`spool::Spools`]).
    pub spools: Arc<spool::Spools>,
    /// The base domain of virtual-hosted-style requests (`--vhost-domain`, with
    /// `--force-path-style=false`); `None` means path style only.
    pub vhost_domain: Option<String>,
}

/// Whose storage a request reaches.
pub enum Tenancy {
    /// One storage for every request.
    Shared(Arc<Vfs>),
    /// `--auth-proxy`: each user's own (see [`users`]).
    PerUser(Arc<users::Users>),
}

impl App {
    /// The secrets that check a request from `peer` (as the relay names it), and the storage
    /// the request reaches. Requests on a unix socket are anonymous, except under
    /// `--auth-proxy`, where there is no storage but a user's.
    pub fn tenant<'a>(&'a self, peer: &str) -> AnyTenant<'a> {
        static ANONYMOUS: std::sync::LazyLock<Keys> = std::sync::LazyLock::new(Keys::default);
        let unix = peer == "unix";
        match &self.storage {
            Tenancy::PerUser(users) => AnyTenant::Asking(users.asking(client_ip(peer))),
            Tenancy::Shared(vfs) => AnyTenant::Shared(users::Shared {
                keys: if unix { &ANONYMOUS } else { &self.keys },
                vfs,
            }),
        }
    }

    /// Every storage made so far: the one, or each user's.
    pub fn all_vfs(&self) -> Vec<Arc<Vfs>> {
        match &self.storage {
            Tenancy::PerUser(users) => users.all(),
            Tenancy::Shared(vfs) => vec![vfs.clone()],
        }
    }
}

/// The client's IP address as rclone gives it to the auth proxy: without the port, an IPv4
/// address mapped into IPv6 as IPv4. `None` on a unix socket.
fn client_ip(peer: &str) -> Option<String> {
    let (_, addr) = peer.split_once(' ')?;
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    Some(addr.ip().to_canonical().to_string())
}

/// A request's [`users::Tenant`], without a box.
pub enum AnyTenant<'a> {
    Shared(users::Shared<'a>),
    Asking(users::Asking<'a>),
}

impl AnyTenant<'_> {
    fn inner(&self) -> &dyn users::Tenant {
        match self {
            AnyTenant::Shared(t) => t,
            AnyTenant::Asking(t) => t,
        }
    }
}

impl auth::Secrets for AnyTenant<'_> {
    fn anonymous(&self) -> bool {
        self.inner().anonymous()
    }

    fn secret(&self, access_key: &str) -> Result<std::borrow::Cow<'_, str>, S3Error> {
        self.inner().secret(access_key)
    }

    fn ask_afresh(&self) -> bool {
        self.inner().ask_afresh()
    }
}

impl users::Tenant for AnyTenant<'_> {
    fn vfs(&self) -> Result<Arc<Vfs>, S3Error> {
        self.inner().vfs()
    }
}

/// Who sent a request, as the relay that carried it saw it: `tcp ADDR`, `tls ADDR` or
/// `unix`; and which connection and request on it this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    text: String,
    pub conn: u64,
    pub seq: u64,
    /// The relay left the request's body in a spool file.
    pub spooled: bool,
}

impl Peer {
    pub fn new(text: &str, conn: u64, seq: u64, spooled: bool) -> Peer {
        Peer {
            text: text.to_string(),
            conn,
            seq,
            spooled,
        }
    }

    /// Unix-socket requests are not authenticated (as in rclone): whoever may open the
    /// socket file may use the server.
    pub fn is_unix(&self) -> bool {
        self.text == "unix"
    }

    /// The address alone, for logs.
    pub fn addr(&self) -> &str {
        self.text.split_once(' ').map_or(&self.text, |(_, a)| a)
    }

    /// The request came through a relay, which can send file bodies itself.
    fn takes_files(&self) -> bool {
        self.text.starts_with("tcp ") || self.text.starts_with("tls ") || self.is_unix()
    }
}

/// A request's target split into its parts.
struct Target {
    /// The path as sent (still encoded), as the client signed it.
    raw_path: String,
    raw_query: String,
    bucket: String,
    /// The bucket came from the `Host` header (virtual-hosted style).
    bucket_from_host: bool,
    key: String,
    query: Query,
}

impl Target {
    /// What a signature of this request covers.
    fn signed_parts<'a>(
        &'a self,
        method: &'a str,
        headers: &'a Headers,
        baseurl: &'a str,
    ) -> auth::SignedParts<'a> {
        auth::SignedParts {
            method,
            raw_path: &self.raw_path,
            raw_query: &self.raw_query,
            headers,
            vhost_bucket: self.bucket_from_host.then_some(self.bucket.as_str()),
            baseurl,
        }
    }
}

/// For the fuzz checks (`crate::fuzzing`): the bucket and key a request target names.
#[cfg(any(test, fuzzing))]
pub(crate) fn fuzz_parse_target(
    url: &str,
    baseurl: &str,
    vhost_bucket: Option<&str>,
) -> Result<(String, String), S3Error> {
    parse_target(url, baseurl, vhost_bucket).map(|t| (t.bucket, t.key))
}

/// Splits the request target. With `vhost_bucket` (virtual-hosted style) the whole path is
/// the key; otherwise the first path segment is the bucket.
fn parse_target(url: &str, baseurl: &str, vhost_bucket: Option<&str>) -> Result<Target, S3Error> {
    let url = strip_absolute_form(url);
    let (raw_path, raw_query) = url.split_once('?').unwrap_or((url, ""));
    let bad = || {
        S3Error::new(
            Code::InvalidArgument,
            "The request path is not valid percent-encoded UTF-8.",
        )
    };
    let mut path = raw_path;
    if !baseurl.is_empty() {
        let rest = path.strip_prefix('/').and_then(|p| p.strip_prefix(baseurl));
        path = match rest {
            Some(r) if r.is_empty() || r.starts_with('/') => r,
            _ => {
                return Err(S3Error::new(
                    Code::NoSuchBucket,
                    "The request is outside the server's base URL.",
                ))
            }
        };
    }
    let path = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = match vhost_bucket {
        Some(b) => (b, path),
        None => path.split_once('/').unwrap_or((path, "")),
    };
    let query = Query(
        raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (n, v) = p.split_once('=').unwrap_or((p, ""));
                Some((util::form_decode(n)?, util::form_decode(v)?))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?,
    );
    Ok(Target {
        raw_path: raw_path.to_string(),
        raw_query: raw_query.to_string(),
        bucket: util::percent_decode(bucket).ok_or_else(bad)?,
        bucket_from_host: vhost_bucket.is_some(),
        key: util::percent_decode(key).ok_or_else(bad)?,
        query,
    })
}

/// The bucket named by the `Host` header under a configured base domain
/// (`bucket.s3.example:8080` → `bucket`). The bare domain, IP literals and other hosts are
/// path style. Never "the first label" of an arbitrary host.
fn vhost_bucket(host: Option<&str>, domain: Option<&str>) -> Option<String> {
    let (host, domain) = (host?.trim(), domain?);
    if host.starts_with('[') {
        return None; // an IPv6 literal
    }
    let name = host
        .rsplit_once(':')
        .map_or(host, |(h, _)| h)
        .to_ascii_lowercase();
    if name.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let suffix = format!(".{}", domain.to_ascii_lowercase());
    name.strip_suffix(&suffix)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
}

fn strip_absolute_form(url: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    url
}

/// The request's headers as the client sent them: without the one the relay added, and
/// with those it renamed (so that tiny_http would not act on them) under their own names.
fn headers_of(rq: &tiny_http::Request) -> Headers {
    use relayed::{PRIVATE_PREFIX, RENAMED_PREFIX};
    Headers(
        rq.headers()
            .iter()
            .filter_map(|h| {
                let name = h.field.as_str().as_str().to_ascii_lowercase();
                let name = match name.strip_prefix(RENAMED_PREFIX) {
                    Some(original) => original.to_string(),
                    None if name.starts_with(PRIVATE_PREFIX) => return None,
                    None => name,
                };
                Some((name, h.value.as_str().to_string()))
            })
            .collect(),
    )
}

/// Answers one request; never panics on bad input, and always responds.
pub fn handle(app: &App, mut rq: tiny_http::Request, peer: &Peer) {
    let started = Instant::now();
    let request_id = util::unique_token();
    let method = rq.method().as_str().to_string();
    let headers = headers_of(&rq);
    let mut spooled = match peer.spooled {
        true => app.spools.take(peer.conn, peer.seq),
        false => None,
    };
    let (result, endpoint) = match &app.cors {
        Some(cors) if method == "OPTIONS" => (cors.preflight(&headers), None),
        _ if peer.spooled && spooled.is_none() => (
            Err(S3Error::new(
                Code::IncompleteBody,
                "The connection closed before the request could be answered.",
            )),
            None,
        ),
        // A bug must cost one request, and that request still gets an S3 error.
        _ => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process(app, &mut rq, spooled.as_mut(), &method, &headers, peer)
        }))
        .unwrap_or_else(|_| {
            log::error!("{request_id}: the request handler panicked");
            let e = S3Error::new(
                Code::InternalError,
                "We encountered an internal error. Please try again.",
            );
            (Err(e), None)
        }),
    };
    drop(spooled);
    let status = match &result {
        Ok(r) => r.status,
        Err(e) => e.status(),
    };
    let name = endpoint.map_or_else(|| "-".to_string(), |e| format!("{e:?}"));
    drain_body(&mut rq);
    let mut response = match result {
        Ok(r) => r,
        Err(e) => error_response(&e, &request_id, &method),
    };
    if let Some(cors) = &app.cors {
        response = cors.decorate(&headers, response);
    }
    for (name, value) in &app.response_headers {
        response
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        response.headers.push((name.clone(), value.clone()));
    }
    let handoff = peer.takes_files().then(|| http::Handoff {
        bodies: &app.file_bodies,
        conn: peer.conn,
        seq: peer.seq,
        scratch: &app.spool,
    });
    let sent = http::respond(rq, response, &request_id, handoff);
    log::info!(target: "access", "{request_id} {} {method} {name} {status} {sent} {:.1}ms", peer.addr(), started.elapsed().as_secs_f64() * 1000.0);
}

/// Most a refused request's body is read and discarded here, with a fixed buffer; past it,
/// tiny_http keeps draining when the request is dropped.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads what is left of a request's body before answering. For a refused request, a client
/// that sent `Expect: 100-continue` is told to continue first: tiny_http cannot close the
/// connection and drains the declared body before the next request, so a client left
/// waiting for a `100` would pin this worker for as long as it keeps the connection open.
/// For a chunked body, the final `0` chunk that follows an aws-chunked payload is read here:
/// tiny_http does not drain chunked bodies, and would parse the rest as the next request.
fn drain_body(rq: &mut tiny_http::Request) {
    if http::declares_body(rq) {
        let _ = std::io::copy(&mut rq.as_reader().take(DRAIN_LIMIT), &mut std::io::sink());
    }
}

fn error_response(e: &S3Error, request_id: &str, method: &str) -> ops::Response {
    if e.code == Code::NotModified {
        return ops::Response::empty(304);
    }
    if e.code == Code::InternalError {
        log::error!("{request_id}: {e}");
    }
    let mut resp = if method == "HEAD" {
        ops::Response::empty(e.status()).header("Content-Type", "application/xml")
    } else {
        ops::Response::xml(e.status(), e.to_xml(request_id))
    };
    for (n, v) in &e.headers {
        resp = resp.header(n, v.as_str());
    }
    resp
}

fn process(
    app: &App,
    rq: &mut tiny_http::Request,
    spooled: Option<&mut spool::Spooled>,
    method: &str,
    headers: &Headers,
    peer: &Peer,
) -> (OpResult, Option<Endpoint>) {
    let vhost = vhost_bucket(headers.get("host"), app.vhost_domain.as_deref());
    let target = match parse_target(rq.url(), &app.baseurl, vhost.as_deref()) {
        Ok(t) => t,
        Err(e) => return (Err(e), None),
    };
    let presigned = with_presigned_headers(headers, &target.query);
    let headers = presigned.as_ref().unwrap_or(headers);
    let endpoint =
        match Endpoint::from_request(method, &target.bucket, &target.key, &target.query, headers) {
            Ok(e) => e,
            Err(e) => return (Err(e), None),
        };
    (
        dispatch_authenticated(app, rq, spooled, method, headers, &target, endpoint, peer),
        Some(endpoint),
    )
}

/// A Signature Version 2 presigned URL carries the `x-amz-*` headers, Content-Type and
/// Content-MD5 it was signed with as query parameters (boto3 moves them there). They stand
/// for those headers, for the signature and the operation alike, unless the request sends
/// its own. `None` when there is nothing to add.
fn with_presigned_headers(headers: &Headers, query: &Query) -> Option<Headers> {
    query.get("AWSAccessKeyId")?;
    let extra: Vec<(String, String)> = query
        .0
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .filter(|(n, _)| n.starts_with("x-amz-") || n == "content-type" || n == "content-md5")
        .filter(|(n, _)| !headers.has(n))
        .map(|(n, v)| (n, v.clone()))
        .collect();
    if extra.is_empty() {
        return None;
    }
    let mut merged = headers.clone();
    merged.0.extend(extra);
    Some(merged)
}

/// A bucket name S3 would accept, or InvalidBucketName.
fn check_bucket_name(bucket: &str) -> Result<(), S3Error> {
    crate::vfs::key::check_bucket(bucket).map_err(|_| {
        S3Error::new(
            Code::InvalidBucketName,
            "The specified bucket is not valid.",
        )
        .with("BucketName", bucket)
    })
}

#[allow(clippy::too_many_arguments)]
fn dispatch_authenticated(
    app: &App,
    rq: &mut tiny_http::Request,
    spooled: Option<&mut spool::Spooled>,
    method: &str,
    headers: &Headers,
    t: &Target,
    endpoint: Endpoint,
    peer: &Peer,
) -> OpResult {
    let now = SystemTime::now();
    let tenant = app.tenant(&peer.text);
    if endpoint == Endpoint::PostObject {
        // Signed by the form's policy, not by headers: checked inside, before the file.
        check_bucket_name(&t.bucket)?;
        let body: &mut dyn Read = match spooled {
            Some(s) => &mut s.file,
            None => rq.as_reader(),
        };
        return post::post_object(&tenant, &app.ops, now, &t.bucket, headers, body);
    }
    let parts = t.signed_parts(method, headers, &app.baseurl);
    let identity = auth::authenticate(&tenant, &parts, now)?;
    let vfs = users::Tenant::vfs(&tenant)?;
    if !t.bucket.is_empty() && endpoint != Endpoint::CreateBucket {
        check_bucket_name(&t.bucket)?;
    }
    let (expected_sha256, streaming) = match identity.payload {
        Payload::Unsigned => (None, None),
        Payload::Sha256(d) => (Some(d), None),
        Payload::Streaming(s) => (None, Some(s)),
    };
    let content_length = match &streaming {
        Some(_) => decoded_length(headers)?,
        None => content_length(rq, headers)?,
    };
    let mut opts = app.ops.clone();
    if let Some(ak) = &identity.access_key {
        opts.owner = ak.clone();
    }
    let ctx = Ctx {
        vfs: &vfs,
        opts: &opts,
        now,
    };
    let trailers = chunked::Trailers::default();
    let spooled = spooled.map(|s| &*s);
    let mut spool_file = spooled.map(|s| &s.file);
    let raw_body: &mut dyn Read = match spool_file.as_mut() {
        Some(f) => f,
        None => rq.as_reader(),
    };
    let mut decoder;
    let body: &mut dyn std::io::Read = match streaming {
        Some(s) => {
            decoder = chunked::ChunkedReader::new(
                raw_body,
                s,
                headers.get("x-amz-trailer"),
                trailers.clone(),
            );
            &mut decoder
        }
        None => raw_body,
    };
    let mut request = Request {
        bucket: t.bucket.clone(),
        key: t.key.clone(),
        query: &t.query,
        headers,
        body,
        content_length,
        expected_sha256,
        access_key: identity.access_key,
        trailers: Some(trailers),
        spooled: spooled.map(|s| ops::Spooled {
            file: &s.file,
            link: s.link_path(),
            digests: s.digests.as_ref(),
        }),
    };
    dispatch(&ctx, endpoint, &mut request)
}

/// `x-amz-decoded-content-length`: the object size of an aws-chunked body (the
/// Content-Length, if any, counts the framing too).
fn decoded_length(h: &Headers) -> Result<Option<u64>, S3Error> {
    match h.get("x-amz-decoded-content-length") {
        None => Ok(None),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            S3Error::new(
                Code::InvalidArgument,
                "x-amz-decoded-content-length is not a valid number.",
            )
        }),
    }
}

/// The declared body length; a malformed Content-Length is a 400, never "no body".
fn content_length(rq: &tiny_http::Request, h: &Headers) -> Result<Option<u64>, S3Error> {
    if h.has("transfer-encoding") {
        return Ok(None);
    }
    match h.get("content-length") {
        None => Ok(rq.body_length().map(|n| n as u64)),
        Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
            S3Error::new(
                Code::InvalidArgument,
                "Content-Length is not a valid number.",
            )
        }),
    }
}

/// POST Object is answered before header authentication (see `dispatch_authenticated`).
fn unreachable_post() -> OpResult {
    Err(S3Error::new(
        Code::InternalError,
        "POST Object reached the header-signed path.",
    ))
}

/// The only `match` over operations.
fn dispatch(ctx: &Ctx, endpoint: Endpoint, rq: &mut Request) -> OpResult {
    use ops::{bucket, copy, delete, list, multipart, object, put};
    match endpoint {
        Endpoint::ListBuckets => bucket::list_buckets(ctx, rq),
        Endpoint::CreateBucket => bucket::create_bucket(ctx, rq),
        Endpoint::DeleteBucket => bucket::delete_bucket(ctx, rq),
        Endpoint::HeadBucket => bucket::head_bucket(ctx, rq),
        Endpoint::GetBucketLocation => bucket::get_bucket_location(ctx, rq),
        Endpoint::GetBucketVersioning => bucket::get_bucket_versioning(ctx, rq),
        Endpoint::ListObjects => list::list_objects(ctx, rq),
        Endpoint::ListObjectsV2 => list::list_objects_v2(ctx, rq),
        Endpoint::DeleteObjects => delete::delete_objects(ctx, rq),
        Endpoint::PutObject => put::put_object(ctx, rq),
        Endpoint::CopyObject => copy::copy_object(ctx, rq),
        Endpoint::GetObject => object::get_object(ctx, rq),
        Endpoint::HeadObject => object::head_object(ctx, rq),
        Endpoint::DeleteObject => object::delete_object(ctx, rq),
        Endpoint::GetObjectAttributes => object::get_object_attributes(ctx, rq),
        Endpoint::PostObject => unreachable_post(),
        Endpoint::CreateMultipartUpload => multipart::create_multipart_upload(ctx, rq),
        Endpoint::UploadPart => multipart::upload_part(ctx, rq),
        Endpoint::UploadPartCopy => multipart::upload_part_copy(ctx, rq),
        Endpoint::CompleteMultipartUpload => multipart::complete_multipart_upload(ctx, rq),
        Endpoint::AbortMultipartUpload => multipart::abort_multipart_upload(ctx, rq),
        Endpoint::ListParts => multipart::list_parts(ctx, rq),
        Endpoint::ListMultipartUploads => multipart::list_multipart_uploads(ctx, rq),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("/b/a%20b/c+d?prefix=x+y&delete", "", None).unwrap();
        assert_eq!((t.bucket.as_str(), t.key.as_str()), ("b", "a b/c+d"));
        assert_eq!(t.query.get("prefix"), Some("x y"));
        assert!(t.query.has("delete"));
        let t = parse_target("/s3/b/k", "s3", None).unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.key.as_str(), t.raw_path.as_str()),
            ("b", "k", "/s3/b/k")
        );
        assert!(parse_target("/other/b", "s3", None).is_err());
        assert!(parse_target("/s3x/b", "s3", None).is_err());
        let t = parse_target("http://host:1/b/k", "", None).unwrap();
        assert_eq!(t.key, "k");
        assert!(parse_target("/b/%ff", "", None).is_err());
        let t = parse_target("/a/b.txt", "", Some("photos")).unwrap();
        assert_eq!((t.bucket.as_str(), t.key.as_str()), ("photos", "a/b.txt"));
        let t = parse_target("/", "", Some("photos")).unwrap();
        assert_eq!((t.bucket.as_str(), t.key.as_str()), ("photos", ""));
    }

    #[test]
    fn the_auth_proxy_is_given_the_client_ip_without_its_port() {
        assert_eq!(client_ip("tcp 10.1.2.3:5555").as_deref(), Some("10.1.2.3"));
        assert_eq!(client_ip("tls [::1]:443").as_deref(), Some("::1"));
        assert_eq!(
            client_ip("tcp [::ffff:192.168.1.9]:80").as_deref(),
            Some("192.168.1.9")
        );
        assert_eq!(client_ip("unix"), None);
    }

    #[test]
    fn virtual_hosts_only_under_the_base_domain() {
        let d = Some("s3.example.com");
        assert_eq!(
            vhost_bucket(Some("photos.s3.example.com:8080"), d),
            Some("photos".into())
        );
        assert_eq!(
            vhost_bucket(Some("my.dotted.bucket.s3.example.com"), d),
            Some("my.dotted.bucket".into())
        );
        assert_eq!(vhost_bucket(Some("s3.example.com:8080"), d), None);
        assert_eq!(vhost_bucket(Some("127.0.0.1:8080"), d), None);
        assert_eq!(vhost_bucket(Some("[::1]:8080"), d), None);
        assert_eq!(vhost_bucket(Some("evil-s3.example.com"), d), None);
        assert_eq!(vhost_bucket(Some("photos.s3.example.com"), None), None);
        assert_eq!(
            vhost_bucket(Some("localhost:8080"), Some("localhost")),
            None
        );
        assert_eq!(
            vhost_bucket(Some("b1.localhost:8080"), Some("localhost")),
            Some("b1".into())
        );
    }
}
