//! The digests s3serve computes while bytes stream: the ETag hash (`--etag-hash`), plus MD5
//! and SHA-256 where a request asks for them to be verified. Each byte is hashed once.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::checksum::{ChecksumAlg, Crc};

/// The hash behind ETags (`--etag-hash`); `None` means objects have no ETag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagAlg {
    Md5,
    Sha1,
    Sha256,
    None,
}

impl EtagAlg {
    pub fn parse(s: &str) -> Option<EtagAlg> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" | "AUTO" => Some(EtagAlg::Md5),
            "SHA1" => Some(EtagAlg::Sha1),
            "SHA256" => Some(EtagAlg::Sha256),
            "" => Some(EtagAlg::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EtagAlg::Md5 => "MD5",
            EtagAlg::Sha1 => "SHA1",
            EtagAlg::Sha256 => "SHA256",
            EtagAlg::None => "",
        }
    }
}

/// Streams bytes through every digest that is wanted, once.
#[derive(Default)]
pub struct Hashes {
    md5: Option<Md5>,
    sha1: Option<Sha1>,
    sha256: Option<Sha256>,
    checksum: Option<(ChecksumAlg, Crc)>,
    pub len: u64,
}

/// Finished digests; a field is `None` when it was not asked for.
#[derive(Debug, Default, Clone)]
pub struct Digests {
    pub md5: Option<[u8; 16]>,
    pub sha1: Option<[u8; 20]>,
    pub sha256: Option<[u8; 32]>,
    /// The flexible checksum asked for, if any.
    pub checksum: Option<(ChecksumAlg, Vec<u8>)>,
    pub len: u64,
}

impl Hashes {
    pub fn new(md5: bool, sha1: bool, sha256: bool) -> Hashes {
        Hashes {
            md5: md5.then(Md5::new),
            sha1: sha1.then(Sha1::new),
            sha256: sha256.then(Sha256::new),
            checksum: None,
            len: 0,
        }
    }

    /// Also computes the flexible checksum `alg`.
    pub fn with_checksum(mut self, alg: Option<ChecksumAlg>) -> Hashes {
        self.checksum = alg.map(|a| (a, Crc::new(a)));
        self
    }

    /// Hashes for an ETag of `alg`, plus MD5 / SHA-256 when a request must be verified.
    pub fn for_etag(alg: EtagAlg, md5: bool, sha256: bool) -> Hashes {
        Hashes::new(
            md5 || alg == EtagAlg::Md5,
            alg == EtagAlg::Sha1,
            sha256 || alg == EtagAlg::Sha256,
        )
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
        if let Some((_, c)) = &mut self.checksum {
            c.update(data);
        }
        self.len += data.len() as u64;
    }

    pub fn finish(self) -> Digests {
        Digests {
            md5: self.md5.map(|h| h.finalize().into()),
            sha1: self.sha1.map(|h| h.finalize().into()),
            sha256: self.sha256.map(|h| h.finalize().into()),
            checksum: self.checksum.map(|(a, c)| (a, c.finish())),
            len: self.len,
        }
    }
}

impl Digests {
    /// Every digest `wanted` computes is here.
    pub fn covers(&self, wanted: &Hashes) -> bool {
        (wanted.md5.is_none() || self.md5.is_some())
            && (wanted.sha1.is_none() || self.sha1.is_some())
            && (wanted.sha256.is_none() || self.sha256.is_some())
            && match &wanted.checksum {
                None => true,
                Some((alg, _)) => self.checksum.as_ref().is_some_and(|(a, _)| a == alg),
            }
    }

    /// The unquoted ETag for `alg`, if that digest was computed.
    pub fn etag(&self, alg: EtagAlg) -> Option<String> {
        match alg {
            EtagAlg::Md5 => self.md5.map(|d| crate::util::hex(&d)),
            EtagAlg::Sha1 => self.sha1.map(|d| crate::util::hex(&d)),
            EtagAlg::Sha256 => self.sha256.map(|d| crate::util::hex(&d)),
            EtagAlg::None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let mut h = Hashes::new(true, true, true);
        h.update(b"hello ");
        h.update(b"world");
        let d = h.finish();
        assert_eq!(
            d.etag(EtagAlg::Md5).unwrap(),
            "5eb63bbbe01eeed093cb22bb8f5acdc3"
        );
        assert_eq!(
            d.etag(EtagAlg::Sha1).unwrap(),
            "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"
        );
        assert_eq!(
            d.etag(EtagAlg::Sha256).unwrap(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(d.len, 11);
        assert_eq!(EtagAlg::parse("sha1"), Some(EtagAlg::Sha1));
        assert_eq!(EtagAlg::parse(""), Some(EtagAlg::None));
        assert_eq!(EtagAlg::parse("crc"), None);
    }
}
