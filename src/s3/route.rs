//! Routing: one pure function from method, path and query to an [`Endpoint`] named after the
//! AWS operation. Subresources this server does not implement answer 501 and never fall
//! through to a data operation (rclone overwrites objects on `PUT ?tagging`).

use crate::ops::{Code, Headers, Query, S3Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ListBuckets,
    CreateBucket,
    DeleteBucket,
    HeadBucket,
    GetBucketLocation,
    GetBucketVersioning,
    ListObjects,
    ListObjectsV2,
    DeleteObjects,
    PutObject,
    CopyObject,
    GetObject,
    HeadObject,
    DeleteObject,
    GetObjectAttributes,
    PostObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    ListMultipartUploads,
}

/// Query parameters that never change which operation a request is: signatures (SigV4 and
/// SigV2) and the SDKs' `x-id` tag.
fn is_neutral(name: &str) -> bool {
    name.starts_with("X-Amz-")
        || name.starts_with("x-amz-")
        || matches!(name, "x-id" | "AWSAccessKeyId" | "Signature" | "Expires")
        // What a SigV2 presigned URL carries for the headers it signed.
        || matches!(name, "content-type" | "content-md5")
}

const OBJECT_READ_PARAMS: [&str; 8] = [
    "response-content-type",
    "response-content-language",
    "response-expires",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "partNumber",
    "versionId",
];

const LIST_BUCKETS_PARAMS: [&str; 4] = [
    "max-buckets",
    "continuation-token",
    "prefix",
    "bucket-region",
];

const LIST_PARAMS: [&str; 9] = [
    "list-type",
    "prefix",
    "delimiter",
    "marker",
    "max-keys",
    "encoding-type",
    "continuation-token",
    "start-after",
    "fetch-owner",
];

const LIST_UPLOADS_PARAMS: [&str; 7] = [
    "uploads",
    "delimiter",
    "prefix",
    "key-marker",
    "upload-id-marker",
    "max-uploads",
    "encoding-type",
];
const LIST_PARTS_PARAMS: [&str; 4] = [
    "uploadId",
    "max-parts",
    "part-number-marker",
    "encoding-type",
];

fn not_implemented(what: &str) -> S3Error {
    S3Error::new(
        Code::NotImplemented,
        format!("{what} is not implemented by this server."),
    )
}

fn method_not_allowed(method: &str) -> S3Error {
    S3Error::new(
        Code::MethodNotAllowed,
        format!("The specified method {method} is not allowed against this resource."),
    )
}

/// The one subresource parameter of a request, if any: a parameter that is neither neutral
/// nor one of `allowed`.
fn subresource<'a>(q: &'a Query, allowed: &[&str]) -> Option<&'a str> {
    q.0.iter()
        .map(|(n, _)| n.as_str())
        .find(|n| !is_neutral(n) && !allowed.contains(n))
}

impl Endpoint {
    /// The operation changes what is stored (refused with `--read-only`).
    pub fn writes(self) -> bool {
        use Endpoint::*;
        matches!(
            self,
            CreateBucket
                | DeleteBucket
                | DeleteObjects
                | PutObject
                | CopyObject
                | DeleteObject
                | PostObject
                | CreateMultipartUpload
                | UploadPart
                | UploadPartCopy
                | CompleteMultipartUpload
                | AbortMultipartUpload
        )
    }

    pub fn from_request(
        method: &str,
        bucket: &str,
        key: &str,
        q: &Query,
        h: &Headers,
    ) -> Result<Endpoint, S3Error> {
        if let Some(v) = q.get("versionId").filter(|v| *v != "null") {
            let _ = v;
            return Err(not_implemented("Object versioning"));
        }
        if bucket.is_empty() {
            return match (method, subresource(q, &LIST_BUCKETS_PARAMS)) {
                ("GET", None) => Ok(Endpoint::ListBuckets),
                ("GET", Some(s)) => Err(not_implemented(&format!("The ?{s} subresource"))),
                _ => Err(method_not_allowed(method)),
            };
        }
        if key.is_empty() {
            bucket_endpoint(method, q)
        } else {
            object_endpoint(method, q, h)
        }
    }
}

fn bucket_endpoint(method: &str, q: &Query) -> Result<Endpoint, S3Error> {
    if q.has("uploads") {
        return match (method, subresource(q, &LIST_UPLOADS_PARAMS)) {
            ("GET", None) => Ok(Endpoint::ListMultipartUploads),
            ("GET", Some(s)) => Err(not_implemented(&format!("The ?{s} subresource"))),
            _ => Err(method_not_allowed(method)),
        };
    }
    let sub = subresource(q, &LIST_PARAMS);
    match (method, sub) {
        ("GET", None) if q.get("list-type") == Some("2") => Ok(Endpoint::ListObjectsV2),
        ("GET", None) => Ok(Endpoint::ListObjects),
        ("GET", Some("location")) => Ok(Endpoint::GetBucketLocation),
        ("GET", Some("versioning")) => Ok(Endpoint::GetBucketVersioning),
        ("PUT", None) => Ok(Endpoint::CreateBucket),
        ("DELETE", None) => Ok(Endpoint::DeleteBucket),
        ("HEAD", None) => Ok(Endpoint::HeadBucket),
        ("POST", Some("delete")) => Ok(Endpoint::DeleteObjects),
        ("POST", None) => Ok(Endpoint::PostObject),
        ("GET" | "PUT" | "DELETE" | "HEAD" | "POST", Some("uploads")) => {
            Err(not_implemented("Multipart upload"))
        }
        ("GET" | "PUT" | "DELETE" | "HEAD" | "POST", Some(s)) => {
            Err(not_implemented(&format!("The ?{s} subresource")))
        }
        _ => Err(method_not_allowed(method)),
    }
}

fn object_endpoint(method: &str, q: &Query, h: &Headers) -> Result<Endpoint, S3Error> {
    if q.has("uploads") || q.has("uploadId") {
        return multipart_endpoint(method, q, h);
    }
    if q.has("attributes") {
        return match (method, subresource(q, &["attributes", "versionId"])) {
            ("GET", None) => Ok(Endpoint::GetObjectAttributes),
            ("GET", Some(s)) => Err(not_implemented(&format!("The ?{s} subresource"))),
            _ => Err(method_not_allowed(method)),
        };
    }
    let sub = match method {
        "GET" | "HEAD" => subresource(q, &OBJECT_READ_PARAMS),
        _ => subresource(q, &["versionId"]),
    };
    if let Some(s) = sub {
        return match method {
            "GET" | "PUT" | "DELETE" | "HEAD" | "POST" => {
                Err(not_implemented(&format!("The ?{s} subresource")))
            }
            _ => Err(method_not_allowed(method)),
        };
    }
    match method {
        "GET" => Ok(Endpoint::GetObject),
        "HEAD" => Ok(Endpoint::HeadObject),
        "PUT" if h.has("x-amz-copy-source") => Ok(Endpoint::CopyObject),
        "PUT" => Ok(Endpoint::PutObject),
        "DELETE" => Ok(Endpoint::DeleteObject),
        _ => Err(method_not_allowed(method)),
    }
}

fn multipart_endpoint(method: &str, q: &Query, h: &Headers) -> Result<Endpoint, S3Error> {
    let allowed: &[&str] = match method {
        "POST" if q.has("uploads") => &["uploads"],
        "PUT" => &["uploadId", "partNumber"],
        "GET" => &LIST_PARTS_PARAMS,
        _ => &["uploadId"],
    };
    if let Some(s) = subresource(q, allowed) {
        return Err(not_implemented(&format!("The ?{s} subresource")));
    }
    match method {
        "POST" if q.has("uploads") => Ok(Endpoint::CreateMultipartUpload),
        "PUT" if !q.has("partNumber") => Err(S3Error::new(
            Code::InvalidArgument,
            "UploadPart needs partNumber and uploadId.",
        )),
        "PUT" if h.has("x-amz-copy-source") => Ok(Endpoint::UploadPartCopy),
        "PUT" => Ok(Endpoint::UploadPart),
        "POST" => Ok(Endpoint::CompleteMultipartUpload),
        "DELETE" => Ok(Endpoint::AbortMultipartUpload),
        "GET" => Ok(Endpoint::ListParts),
        _ => Err(method_not_allowed(method)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(line: &str) -> Result<Endpoint, Code> {
        let (method, target) = line.split_once(' ').unwrap();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let q = Query(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (n, v) = p.split_once('=').unwrap_or((p, ""));
                    (n.to_string(), v.to_string())
                })
                .collect(),
        );
        let path = path.trim_start_matches('/');
        let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
        let mut h = Headers::default();
        if line.contains("COPY") {
            h.0.push(("x-amz-copy-source".into(), "b/k".into()));
        }
        Endpoint::from_request(method, bucket, key, &q, &h).map_err(|e| e.code)
    }

    #[test]
    fn routes_request_lines() {
        use Endpoint::*;
        let table: &[(&str, Result<Endpoint, Code>)] = &[
            ("GET /", Ok(ListBuckets)),
            (
                "GET /?max-buckets=2&prefix=a&bucket-region=us-east-1",
                Ok(ListBuckets),
            ),
            ("GET /?continuation-token=YQ", Ok(ListBuckets)),
            ("PUT /b", Ok(CreateBucket)),
            ("DELETE /b", Ok(DeleteBucket)),
            ("HEAD /b", Ok(HeadBucket)),
            ("GET /b?location", Ok(GetBucketLocation)),
            ("GET /b?versioning", Ok(GetBucketVersioning)),
            ("GET /b", Ok(ListObjects)),
            ("GET /b?list-type=2&prefix=a", Ok(ListObjectsV2)),
            ("GET /b?prefix=a&encoding-type=url", Ok(ListObjects)),
            ("POST /b?delete", Ok(DeleteObjects)),
            ("POST /b", Ok(PostObject)),
            ("PUT /b/k", Ok(PutObject)),
            ("PUT /b/k?x-id=PutObject", Ok(PutObject)),
            ("PUT /b/k COPY", Ok(CopyObject)),
            ("GET /b/k", Ok(GetObject)),
            (
                "GET /b/k?response-content-type=x&X-Amz-Signature=1",
                Ok(GetObject),
            ),
            ("GET /b/k?versionId=null", Ok(GetObject)),
            (
                "GET /b/k?AWSAccessKeyId=a&Signature=s&Expires=1",
                Ok(GetObject),
            ),
            ("HEAD /b/k?partNumber=1", Ok(HeadObject)),
            ("DELETE /b/k", Ok(DeleteObject)),
            ("GET /b/k?acl", Err(Code::NotImplemented)),
            ("GET /b/k?attributes", Ok(GetObjectAttributes)),
            ("PUT /b/k?attributes", Err(Code::MethodNotAllowed)),
            ("PUT /b/k?tagging", Err(Code::NotImplemented)),
            ("DELETE /b/k?tagging", Err(Code::NotImplemented)),
            ("GET /b?policy", Err(Code::NotImplemented)),
            ("DELETE /b?cors", Err(Code::NotImplemented)),
            ("PUT /b?lifecycle", Err(Code::NotImplemented)),
            ("GET /b?versions", Err(Code::NotImplemented)),
            ("GET /b/k?versionId=abc", Err(Code::NotImplemented)),
            ("PUT /b/k?partNumber=1&uploadId=x", Ok(UploadPart)),
            ("PUT /b/k?partNumber=1&uploadId=x COPY", Ok(UploadPartCopy)),
            ("POST /b/k?uploads", Ok(CreateMultipartUpload)),
            ("POST /b/k?uploadId=x", Ok(CompleteMultipartUpload)),
            ("DELETE /b/k?uploadId=x", Ok(AbortMultipartUpload)),
            (
                "GET /b/k?uploadId=x&max-parts=2&part-number-marker=1",
                Ok(ListParts),
            ),
            (
                "GET /b?uploads&prefix=a&max-uploads=3",
                Ok(ListMultipartUploads),
            ),
            ("HEAD /b/k?uploadId=x", Err(Code::MethodNotAllowed)),
            ("PUT /b/k?uploadId=x", Err(Code::InvalidArgument)),
            (
                "PUT /b/k?uploadId=x&partNumber=1&tagging",
                Err(Code::NotImplemented),
            ),
            ("PUT /b?uploads", Err(Code::MethodNotAllowed)),
            ("GET /?acl", Err(Code::NotImplemented)),
            ("PUT /", Err(Code::MethodNotAllowed)),
            ("POST /b/k", Err(Code::MethodNotAllowed)),
            ("PATCH /b/k", Err(Code::MethodNotAllowed)),
            ("PATCH /b", Err(Code::MethodNotAllowed)),
        ];
        for (line, want) in table {
            assert_eq!(&route(line), want, "{line}");
        }
    }
}
