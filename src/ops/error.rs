//! Every failure that reaches a client is an [`S3Error`]: a [`Code`] (wire name and HTTP status
//! side by side), a message and the resource it concerns. It is rendered to XML in exactly one
//! place, [`S3Error::to_xml`]. Lower layers keep their own small error enums and convert here.
//! Codes: <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>

use crate::ops::xml::XmlWriter;
use crate::vfs::{BackendError, ErrorKind};

macro_rules! codes {
    ($($name:ident = $status:literal),* $(,)?) => {
        /// An S3 error code; its wire string is its name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code { $($name),* }
        impl Code {
            pub fn status(self) -> u16 { match self { $(Code::$name => $status),* } }
            pub fn as_str(self) -> &'static str { match self { $(Code::$name => stringify!($name)),* } }
        }
    };
}

codes! {
    AccessDenied = 403,
    AccessForbidden = 403,
    AuthorizationHeaderMalformed = 400,
    AuthorizationQueryParametersError = 400,
    BadDigest = 400,
    BucketAlreadyOwnedByYou = 409,
    BucketNotEmpty = 409,
    ConditionalRequestConflict = 409,
    EntityTooLarge = 400,
    IncompleteBody = 400,
    InternalError = 500,
    InvalidAccessKeyId = 403,
    InvalidArgument = 400,
    InvalidBucketName = 400,
    InvalidDigest = 400,
    InsufficientStorage = 507,
    InvalidRange = 416,
    InvalidPartNumber = 416,
    InvalidRequest = 400,
    InvalidToken = 400,
    KeyTooLongError = 400,
    MalformedXML = 400,
    MalformedPOSTRequest = 400,
    MaxPostPreDataLengthExceeded = 400,
    IncorrectNumberOfFilesInPostRequest = 400,
    InvalidPolicyDocument = 400,
    MalformedTrailerError = 400,
    MetadataTooLarge = 400,
    MethodNotAllowed = 405,
    MissingContentLength = 411,
    NoSuchBucket = 404,
    NoSuchKey = 404,
    NoSuchUpload = 404,
    InvalidPart = 400,
    InvalidPartOrder = 400,
    EntityTooSmall = 400,
    NotImplemented = 501,
    ObjectPathConflict = 409,
    PreconditionFailed = 412,
    RequestHeaderSectionTooLarge = 431,
    RequestTimeTooSkewed = 403,
    SignatureDoesNotMatch = 403,
    SlowDown = 503,
    ServiceUnavailable = 503,
    XAmzContentSHA256Mismatch = 400,
    NotModified = 304,
}

/// An error answer: code, human message, and the bucket or key it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Error {
    pub code: Code,
    pub message: String,
    pub resource: String,
    /// Extra elements for the body, e.g. `StringToSign` on a signature mismatch.
    pub extra: Vec<(&'static str, String)>,
    /// Response headers the error needs (e.g. `Content-Range` on 416).
    pub headers: Vec<(&'static str, String)>,
}

impl S3Error {
    pub fn new(code: Code, message: impl Into<String>) -> S3Error {
        S3Error {
            code,
            message: message.into(),
            resource: String::new(),
            extra: Vec::new(),
            headers: Vec::new(),
        }
    }

    pub fn with_resource(mut self, resource: impl Into<String>) -> S3Error {
        self.resource = resource.into();
        self
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        self.extra.push((name, value.into()));
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        self.headers.push((name, value.into()));
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The one place an error becomes bytes.
    pub fn to_xml(&self, request_id: &str) -> Vec<u8> {
        self.writer(request_id).finish()
    }

    /// The error document without the XML declaration (for a `200` whose declaration and
    /// keep-alive whitespace are already sent).
    pub fn to_xml_body(&self, request_id: &str) -> Vec<u8> {
        self.writer(request_id).finish_body()
    }

    fn writer(&self, request_id: &str) -> XmlWriter {
        let mut w = XmlWriter::new();
        w.open("Error");
        w.elem("Code", self.code.as_str());
        w.elem("Message", &self.message);
        if !self.resource.is_empty() {
            w.elem("Resource", &self.resource);
        }
        for (name, value) in &self.extra {
            w.elem(name, value);
        }
        w.elem("RequestId", request_id);
        w.close("Error");
        w
    }
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for S3Error {}

impl From<BackendError> for S3Error {
    fn from(e: BackendError) -> S3Error {
        let code = match e.kind {
            ErrorKind::NotFound => Code::NoSuchKey,
            ErrorKind::NoSuchBucket => Code::NoSuchBucket,
            ErrorKind::NoSuchUpload => Code::NoSuchUpload,
            ErrorKind::InvalidPart => Code::InvalidPart,
            ErrorKind::BucketExists => Code::BucketAlreadyOwnedByYou,
            ErrorKind::BucketNotEmpty => Code::BucketNotEmpty,
            ErrorKind::Conflict => Code::ObjectPathConflict,
            ErrorKind::InvalidKey => Code::InvalidArgument,
            ErrorKind::KeyTooLong => Code::KeyTooLongError,
            ErrorKind::ReadOnly | ErrorKind::Excluded => Code::AccessDenied,
            ErrorKind::Unsupported => Code::NotImplemented,
            ErrorKind::Unavailable => Code::SlowDown,
            ErrorKind::NoSpace => Code::InsufficientStorage,
            ErrorKind::Io => Code::InternalError,
        };
        if code == Code::InternalError {
            log::error!("storage error: {}", e.message);
            return S3Error::new(code, "We encountered an internal error. Please try again.");
        }
        S3Error::new(code, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_error_document() {
        let e = S3Error::new(Code::NoSuchKey, "The specified key does not exist.")
            .with_resource("/b/k&1");
        let xml = String::from_utf8(e.to_xml("REQ1")).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
        assert!(xml.contains("<Code>NoSuchKey</Code>"));
        assert!(xml.contains("<Resource>/b/k&amp;1</Resource>"));
        assert!(xml.contains("<RequestId>REQ1</RequestId>"));
        assert_eq!(e.status(), 404);
    }

    #[test]
    fn backend_errors_map_to_codes() {
        let e: S3Error = BackendError::new(ErrorKind::BucketNotEmpty, "x").into();
        assert_eq!((e.code, e.status()), (Code::BucketNotEmpty, 409));
        let e: S3Error = BackendError::new(ErrorKind::Io, "disk on fire").into();
        assert_eq!(e.status(), 500);
        assert!(!e.message.contains("disk"));
        // Found by scripts/harden/diskfull.py: a full disk answered 500 InternalError.
        let e: S3Error = BackendError::from(std::io::Error::from_raw_os_error(28)).into();
        assert_eq!((e.code, e.status()), (Code::InsufficientStorage, 507));
        let e: S3Error = BackendError::from(std::io::Error::from_raw_os_error(122)).into();
        assert_eq!(e.status(), 507, "EDQUOT");
    }
}
