//! The flexible checksums S3 clients send since 2025 (CRC32, CRC32C, CRC64NVME, SHA1,
//! SHA256): values are base64 of the big-endian digest. CRCs come from crc-fast (SIMD), and
//! can be combined, which gives a multipart object's full-object CRC from its parts' CRCs.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html>

use crc_fast::CrcAlgorithm;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlg {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlg {
    pub const ALL: [ChecksumAlg; 5] = [
        ChecksumAlg::Crc32,
        ChecksumAlg::Crc32c,
        ChecksumAlg::Crc64Nvme,
        ChecksumAlg::Sha1,
        ChecksumAlg::Sha256,
    ];

    /// The wire name: `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlg::Crc32 => "CRC32",
            ChecksumAlg::Crc32c => "CRC32C",
            ChecksumAlg::Crc64Nvme => "CRC64NVME",
            ChecksumAlg::Sha1 => "SHA1",
            ChecksumAlg::Sha256 => "SHA256",
        }
    }

    pub fn parse(s: &str) -> Option<ChecksumAlg> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
    }

    /// `x-amz-checksum-crc32` and so on.
    pub fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name().to_ascii_lowercase())
    }

    /// `ChecksumCRC32` and so on, as in XML documents.
    pub fn element(self) -> String {
        format!("Checksum{}", self.name())
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlg::Crc32 | ChecksumAlg::Crc32c => 4,
            ChecksumAlg::Crc64Nvme => 8,
            ChecksumAlg::Sha1 => 20,
            ChecksumAlg::Sha256 => 32,
        }
    }

    fn crc(self) -> Option<CrcAlgorithm> {
        match self {
            ChecksumAlg::Crc32 => Some(CrcAlgorithm::Crc32IsoHdlc),
            ChecksumAlg::Crc32c => Some(CrcAlgorithm::Crc32Iscsi),
            ChecksumAlg::Crc64Nvme => Some(CrcAlgorithm::Crc64Nvme),
            _ => None,
        }
    }

    pub fn is_crc(self) -> bool {
        self.crc().is_some()
    }

    /// The CRC of `a ++ b` from the CRCs of `a` and `b` and the length of `b`.
    pub fn combine(self, a: &[u8], b: &[u8], b_len: u64) -> Option<Vec<u8>> {
        let alg = self.crc()?;
        let value = crc_fast::checksum_combine(alg, from_be(a)?, from_be(b)?, b_len);
        Some(to_be(value, self.digest_len()))
    }

    /// The digest of `data` (for composite checksums, over the parts' raw checksums).
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut c = Crc::new(self);
        c.update(data);
        c.finish()
    }
}

fn from_be(b: &[u8]) -> Option<u64> {
    (b.len() <= 8).then(|| b.iter().fold(0u64, |acc, x| acc << 8 | *x as u64))
}

fn to_be(v: u64, len: usize) -> Vec<u8> {
    v.to_be_bytes()[8 - len..].to_vec()
}

/// A running checksum of one algorithm.
pub enum Crc {
    Crc(crc_fast::Digest, ChecksumAlg),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Crc {
    pub fn new(alg: ChecksumAlg) -> Crc {
        use sha2::Digest;
        match alg.crc() {
            Some(c) => Crc::Crc(crc_fast::Digest::new(c), alg),
            None if alg == ChecksumAlg::Sha1 => Crc::Sha1(sha1::Sha1::new()),
            None => Crc::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        use sha2::Digest;
        match self {
            Crc::Crc(d, _) => d.update(data),
            Crc::Sha1(h) => h.update(data),
            Crc::Sha256(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Crc::Crc(d, alg) => to_be(d.finalize(), alg.digest_len()),
            Crc::Sha1(h) => h.finalize().to_vec(),
            Crc::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Check values of "123456789" (protocol-notes B4).
    #[test]
    fn check_values() {
        assert_eq!(
            ChecksumAlg::Crc32.digest(b"123456789"),
            0xCBF43926u32.to_be_bytes()
        );
        assert_eq!(
            ChecksumAlg::Crc32c.digest(b"123456789"),
            0xE3069283u32.to_be_bytes()
        );
        assert_eq!(
            ChecksumAlg::Crc64Nvme.digest(b"123456789"),
            0xAE8B14860A799888u64.to_be_bytes()
        );
        assert_eq!(ChecksumAlg::Sha256.digest(b"").len(), 32);
        assert_eq!(
            ChecksumAlg::parse("crc64nvme"),
            Some(ChecksumAlg::Crc64Nvme)
        );
        assert_eq!(ChecksumAlg::Crc32c.header(), "x-amz-checksum-crc32c");
    }

    #[test]
    fn crcs_combine() {
        for alg in [
            ChecksumAlg::Crc32,
            ChecksumAlg::Crc32c,
            ChecksumAlg::Crc64Nvme,
        ] {
            let (a, b) = (b"hello ".as_slice(), b"world, combined".as_slice());
            let whole = alg.digest(b"hello world, combined");
            assert_eq!(
                alg.combine(&alg.digest(a), &alg.digest(b), b.len() as u64)
                    .unwrap(),
                whole
            );
        }
        assert!(ChecksumAlg::Sha1.combine(&[0; 20], &[0; 20], 1).is_none());
    }
}
