//! CORS for browsers (`--allow-origin`): preflight `OPTIONS` requests are answered without a
//! signature, echoing the method and headers asked for; real responses to an allowed origin
//! carry `Access-Control-Allow-Origin` and expose the headers browser uploads read (ETag
//! above all). Without the flag no CORS header is ever sent.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors.html>

use crate::ops::{Code, Headers, Response, S3Error};

/// Headers a browser script may read from responses.
const EXPOSE: &str = "ETag, Content-Length, Content-Range, Last-Modified, x-amz-request-id, x-amz-id-2, \
x-amz-version-id, x-amz-delete-marker, x-amz-mp-parts-count, x-amz-checksum-crc32, x-amz-checksum-crc32c, \
x-amz-checksum-crc64nvme, x-amz-checksum-sha1, x-amz-checksum-sha256, x-amz-checksum-type";
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];
/// How long a browser may cache a preflight answer, in seconds.
const MAX_AGE: &str = "3000";

pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    /// `None` when no origin is allowed (the flag is unset).
    pub fn new(origins: &[String]) -> Option<Cors> {
        (!origins.is_empty()).then(|| Cors {
            origins: origins.to_vec(),
        })
    }

    /// The `Access-Control-Allow-Origin` value for this request's origin, if allowed.
    fn allow(&self, origin: &str) -> Option<String> {
        if self.origins.iter().any(|o| o == "*") {
            return Some("*".into());
        }
        self.origins
            .iter()
            .find(|o| o.as_str() == origin.trim_end_matches('/'))
            .map(|_| origin.to_string())
    }

    /// Answers a preflight; a disallowed origin or method is 403.
    pub fn preflight(&self, h: &Headers) -> Result<Response, S3Error> {
        let forbidden = || {
            S3Error::new(Code::AccessForbidden, "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.")
        };
        let origin = h.get("origin").ok_or_else(forbidden)?;
        let method = h
            .get("access-control-request-method")
            .map(str::trim)
            .unwrap_or_default();
        let allow = self
            .allow(origin)
            .filter(|_| METHODS.contains(&method))
            .ok_or_else(forbidden)?;
        let mut resp = Response::empty(200)
            .header("Access-Control-Allow-Origin", allow)
            .header("Access-Control-Allow-Methods", method)
            .header("Access-Control-Max-Age", MAX_AGE)
            .header(
                "Vary",
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            );
        if let Some(asked) = h.get("access-control-request-headers") {
            resp = resp.header("Access-Control-Allow-Headers", asked);
        }
        Ok(resp)
    }

    /// Adds CORS headers to a response for a request from an allowed origin.
    /// A preflight answer already has them: one `Access-Control-Allow-Origin` only, or
    /// browsers refuse the response.
    pub fn decorate(&self, h: &Headers, mut resp: Response) -> Response {
        if resp
            .headers
            .iter()
            .any(|(n, _)| n == "Access-Control-Allow-Origin")
        {
            return resp;
        }
        resp = resp.header("Vary", "Origin");
        let Some(allow) = h.get("origin").and_then(|o| self.allow(o)) else {
            return resp;
        };
        resp.header("Access-Control-Allow-Origin", allow)
            .header("Access-Control-Expose-Headers", EXPOSE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        Headers::from_pairs(pairs)
    }

    fn header<'a>(r: &'a Response, n: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn preflight_echoes_method_and_headers() {
        let c = Cors::new(&["https://app.example".into()]).unwrap();
        let r = c
            .preflight(&hdrs(&[
                ("origin", "https://app.example"),
                ("access-control-request-method", "PUT"),
                (
                    "access-control-request-headers",
                    "content-type,x-amz-meta-a",
                ),
            ]))
            .unwrap();
        assert_eq!(
            header(&r, "Access-Control-Allow-Origin"),
            Some("https://app.example")
        );
        assert_eq!(header(&r, "Access-Control-Allow-Methods"), Some("PUT"));
        assert_eq!(
            header(&r, "Access-Control-Allow-Headers"),
            Some("content-type,x-amz-meta-a")
        );
        let e = c
            .preflight(&hdrs(&[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "PUT"),
            ]))
            .err()
            .unwrap();
        assert_eq!(e.status(), 403);
        assert!(c
            .preflight(&hdrs(&[
                ("origin", "https://app.example"),
                ("access-control-request-method", "TRACE")
            ]))
            .is_err());
        assert!(Cors::new(&[]).is_none());
    }

    #[test]
    fn real_responses_expose_etag_to_allowed_origins_only() {
        let c = Cors::new(&["*".into()]).unwrap();
        let r = c.decorate(&hdrs(&[("origin", "https://x")]), Response::empty(200));
        assert_eq!(header(&r, "Access-Control-Allow-Origin"), Some("*"));
        assert!(header(&r, "Access-Control-Expose-Headers")
            .unwrap()
            .contains("ETag"));
        let c = Cors::new(&["https://a".into()]).unwrap();
        let r = c.decorate(&hdrs(&[("origin", "https://b")]), Response::empty(200));
        assert_eq!(header(&r, "Access-Control-Allow-Origin"), None);
        assert_eq!(header(&r, "Vary"), Some("Origin"));
    }
}
