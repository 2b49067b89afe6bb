//! SigV4 request heads (header authentication), with the server's own signing primitives.

use s3serve::s3::auth::{canonical_query, hmac, signing_key};
use s3serve::util::{amz_date, hex};
use sha2::{Digest, Sha256};
use std::time::SystemTime;

pub const UNSIGNED: &str = "UNSIGNED-PAYLOAD";
const REGION: &str = "us-east-1";

pub struct Signer {
    ak: String,
    sk: String,
    host: String,
    /// The signing key of `day`.
    key: Vec<u8>,
    day: String,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

impl Signer {
    pub fn new(ak: &str, sk: &str, host: &str) -> Signer {
        Signer {
            ak: ak.into(),
            sk: sk.into(),
            host: host.into(),
            key: Vec::new(),
            day: String::new(),
        }
    }

    /// The head of a signed request. `path` and `query` are already URI-encoded; `extra`
    /// headers are signed too; `payload` is the body's SHA-256 in hex or [`UNSIGNED`].
    pub fn head(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        extra: &[(&str, String)],
        payload: &str,
        content_length: u64,
    ) -> Vec<u8> {
        let now = amz_date(SystemTime::now());
        let day = &now[..8];
        if self.day != day {
            self.key = signing_key(&self.sk, day, REGION);
            self.day = day.to_string();
        }
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.host.clone()),
            ("x-amz-content-sha256".into(), payload.into()),
            ("x-amz-date".into(), now.clone()),
        ];
        headers.extend(
            extra
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string())),
        );
        headers.sort();
        let signed = headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let mut canonical = format!("{method}\n{path}\n{}\n", canonical_query(query, None));
        for (n, v) in &headers {
            canonical.push_str(n);
            canonical.push(':');
            canonical.push_str(v);
            canonical.push('\n');
        }
        canonical.push('\n');
        canonical.push_str(&signed);
        canonical.push('\n');
        canonical.push_str(payload);
        let scope = format!("{day}/{REGION}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{now}\n{scope}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let signature = hex(&hmac(&self.key, to_sign.as_bytes()));
        let target = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let mut head = format!("{method} {target} HTTP/1.1\r\n");
        for (n, v) in &headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!(
            "authorization: AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}\r\n",
            self.ak
        ));
        if content_length > 0 || matches!(method, "PUT" | "POST") {
            head.push_str(&format!("content-length: {content_length}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }
}
