//! What the relay and the worker agree on about a request passed between them: the header
//! the relay adds (who the peer is, which connection and request this is, whether its body
//! waits in a spool file), and the headers it renames so that tiny_http does not act on
//! them. Spooled bodies themselves are in [`super::spool`].

/// The header the relay adds to every request head (and removes when a client sends it).
pub const RELAY_HEADER: &str = "x-s3serve-relay";
/// Header names starting with this are the relay's own: a client's are dropped.
pub const PRIVATE_PREFIX: &str = "x-s3serve-";
/// A header the relay renames so that tiny_http does not act on it keeps its value under
/// this prefix (`Content-Length` becomes `x-s3serve-orig-content-length`).
pub const RENAMED_PREFIX: &str = "x-s3serve-orig-";

/// The relay header's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed<'a> {
    /// The relay's connection.
    pub conn: u64,
    /// The first request on a new connection to tiny_http (its hand-off gate opens on it).
    pub first: bool,
    /// The request's number on its connection.
    pub seq: u64,
    /// Its body waits in a spool file.
    pub spooled: bool,
    /// `tcp ADDR`, `tls ADDR` or `unix`.
    pub peer: &'a str,
}

impl Relayed<'_> {
    /// The header line (without its line end), carrying the per-process `token`.
    pub fn line(&self, token: &str) -> String {
        format!(
            "{RELAY_HEADER}: {token} {} {} {} {} {}",
            self.conn,
            u8::from(self.first),
            self.seq,
            u8::from(self.spooled),
            self.peer
        )
    }
}

/// Reads a relay header's `value`; `None` if it is malformed or lacks the `token` (forged).
pub fn parse<'a>(value: &'a str, token: &str) -> Option<Relayed<'a>> {
    let mut parts = value.splitn(6, ' ');
    if parts.next()? != token {
        return None;
    }
    Some(Relayed {
        conn: parts.next()?.parse().ok()?,
        first: parts.next()? == "1",
        seq: parts.next()?.parse().ok()?,
        spooled: parts.next()? == "1",
        peer: parts.next()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_and_a_forged_one_does_not() {
        let r = Relayed {
            conn: 7,
            first: true,
            seq: 3,
            spooled: false,
            peer: "tcp 127.0.0.1:5",
        };
        let line = r.line("tok");
        let value = line.strip_prefix(&format!("{RELAY_HEADER}: ")).unwrap();
        assert_eq!(parse(value, "tok"), Some(r));
        assert_eq!(parse(value, "other"), None);
        assert_eq!(parse("tok 7 1", "tok"), None);
    }
}
