//! Test servers, a temporary directory, presigned requests via rusty-s3, and a raw HTTP client.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use s3serve::config::{Config, Storage};
use s3serve::server::{self, Running};

pub const AK: &str = "AKIDTEST";
pub const SK: &str = "SECRETTEST";

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("s3serve-it-{}", s3serve::util::unique_token()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct TestServer {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub creds: Credentials,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
        }
    }
}

/// Config for a server over `root`, signed with the test key.
pub fn config(root: &Path) -> Config {
    let mut c = Config::for_tests(Storage::Local(root.to_path_buf()));
    c.auth_keys = vec![(AK.into(), SK.into())];
    c
}

pub fn start(c: Config) -> TestServer {
    let root = match &c.storage {
        Storage::Local(p) => p.clone(),
        Storage::Memory | Storage::Upstream(_) | Storage::AuthProxy(_) => PathBuf::new(),
    };
    let running = server::start(&c).unwrap();
    let addr = running.addrs[0];
    TestServer {
        running: Some(running),
        addr,
        root,
        creds: Credentials::new(AK, SK),
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .get(&n.to_ascii_lowercase())
            .map(String::as_str)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `<Code>` of an error body.
    pub fn code(&self) -> String {
        let t = self.text();
        t.split("<Code>")
            .nth(1)
            .and_then(|r| r.split("</Code>").next())
            .unwrap_or("")
            .to_string()
    }
}

impl TestServer {
    pub fn bucket(&self, name: &str) -> Bucket {
        let url = format!("http://{}", self.addr).parse().unwrap();
        Bucket::new(url, UrlStyle::Path, name.to_string(), "us-east-1").unwrap()
    }

    /// Sends a presigned action with an optional body and extra (unsigned) headers.
    pub fn send<'a>(&self, method: &str, action: impl S3Action<'a>, body: &[u8]) -> Resp {
        let url = action.sign(Duration::from_secs(600));
        self.raw_url(method, url.as_str(), &[], body)
    }

    /// Creates a bucket with a presigned CreateBucket.
    pub fn create_bucket(&self, name: &str) {
        let b = self.bucket(name);
        let r = self.send("PUT", b.create_bucket(&self.creds), b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }

    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> Resp {
        let b = self.bucket(bucket);
        self.send("PUT", b.put_object(Some(&self.creds), key), body)
    }

    pub fn put_with(&self, bucket: &str, key: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
        let b = self.bucket(bucket);
        let mut action = b.put_object(Some(&self.creds), key);
        for (n, v) in headers {
            action.headers_mut().insert(n.to_string(), v.to_string());
        }
        let url = action.sign(Duration::from_secs(600));
        self.raw_url("PUT", url.as_str(), headers, body)
    }

    pub fn get(&self, bucket: &str, key: &str, headers: &[(&str, &str)]) -> Resp {
        let b = self.bucket(bucket);
        let url = b
            .get_object(Some(&self.creds), key)
            .sign(Duration::from_secs(600));
        self.raw_url("GET", url.as_str(), headers, b"")
    }

    pub fn head(&self, bucket: &str, key: &str) -> Resp {
        let b = self.bucket(bucket);
        let url = b
            .head_object(Some(&self.creds), key)
            .sign(Duration::from_secs(600));
        self.raw_url("HEAD", url.as_str(), &[], b"")
    }

    pub fn delete(&self, bucket: &str, key: &str) -> Resp {
        let b = self.bucket(bucket);
        self.send("DELETE", b.delete_object(Some(&self.creds), key), b"")
    }

    /// Sends one request to a full URL over a fresh connection.
    pub fn raw_url(&self, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let target = url
            .split_once(&format!("{}", self.addr))
            .map(|(_, t)| t)
            .unwrap_or(url);
        self.raw(method, target, headers, body)
    }

    /// Sends `method target` with the given headers and body, `Host` and `Content-Length` added.
    pub fn raw(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "PUT" || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        raw_exchange(self.addr, &bytes, method == "HEAD")
    }
}

/// Writes `request` and reads one response.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], head: bool) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    read_response(&mut BufReader::new(s), head)
}

pub fn read_response(r: &mut impl BufRead, head: bool) -> Resp {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        let body = read_chunked(r);
        return Resp {
            status,
            headers,
            body,
        };
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![
        0;
        if head || status == 304 || status == 204 {
            0
        } else {
            len
        }
    ];
    r.read_exact(&mut body).unwrap();
    Resp {
        status,
        headers,
        body,
    }
}

pub fn md5_hex(data: &[u8]) -> String {
    let mut h = s3serve::vfs::Hashes::new(true, false, false);
    h.update(data);
    s3serve::vfs::Hashes::finish(h)
        .etag(s3serve::vfs::EtagAlg::Md5)
        .unwrap()
}

fn read_chunked(r: &mut impl BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let size = usize::from_str_radix(line.trim(), 16).unwrap();
        let mut chunk = vec![0; size + 2];
        r.read_exact(&mut chunk).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&chunk[..size]);
    }
}
