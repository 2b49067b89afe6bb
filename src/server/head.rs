//! Request framing as the relay sees it: where a request head ends, whether it is acceptable,
//! and where its body ends. Nothing here allocates per byte or trusts a length it was not
//! able to parse: an oversized head is refused with 431, a malformed or ambiguous one with
//! 400, so tiny_http behind the relay only ever sees requests framed the way we framed them.

use crate::s3::relayed::{PRIVATE_PREFIX, RENAMED_PREFIX};

/// Why a request cannot be passed on; the relay answers it and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 431: the head is longer than `--max-header-bytes` allows.
    HeadTooLarge,
    /// 400, with the reason.
    Bad(&'static str),
    /// 501: a transfer coding other than chunked.
    NotImplemented(&'static str),
    /// 503: the request queue cannot be reached.
    Unavailable,
    /// 507: a body of `want` bytes does not fit in the `free` space for spooling.
    Full { want: u64, free: u64 },
    /// 500: the body could not be spooled (the log says why).
    Internal,
    /// 400: the client ended its side before the whole body arrived.
    Incomplete,
    /// 400: the body is longer than the request may have.
    TooLarge,
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(u64),
    Chunked,
}

/// A complete, acceptable request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, up to and including the empty line.
    pub len: usize,
    pub framing: Framing,
    /// A HEAD request: its answer has no body whatever its Content-Length says.
    pub is_head: bool,
    /// tiny_http keeps the connection open after answering (HTTP/1.1 without
    /// `Connection: close` or `upgrade`).
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expects_continue: bool,
}

/// Where the head that starts `buf` ends: `Ok(None)` while it is incomplete and within
/// `limit` bytes. Only `\r\n\r\n` ends a head, as in tiny_http.
pub fn find_head(buf: &[u8], limit: usize) -> Result<Option<Head>, Refusal> {
    let Some(end) = find_crlfcrlf(&buf[..buf.len().min(limit)]) else {
        return if buf.len() >= limit {
            Err(Refusal::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    check_head(&buf[..end]).map(Some)
}

fn find_crlfcrlf(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Validates the request line and headers, and finds the body's framing. tiny_http resets
/// the connection on non-ASCII headers and desynchronises on bad lengths: both are refused here.
fn check_head(head: &[u8]) -> Result<Head, Refusal> {
    if !head.iter().all(|&b| b.is_ascii() && b != 0) {
        return Err(Refusal::Bad("The request head is not ASCII."));
    }
    // A lone CR or LF would end a line for one parser and not for another (tiny_http, or our
    // own header rewrite), so it is refused rather than guessed at (RFC 9112 section 2.2).
    let lone = |i: usize, b: u8| match b {
        b'\r' => head.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || head[i - 1] != b'\r',
        _ => false,
    };
    if head.iter().enumerate().any(|(i, &b)| lone(i, b)) {
        return Err(Refusal::Bad("The request head has a bare CR or LF."));
    }
    let text =
        std::str::from_utf8(head).map_err(|_| Refusal::Bad("The request head is not ASCII."))?;
    let mut lines = text[..text.len() - 4].split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (method, http11) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None)
            if !m.is_empty() && !t.is_empty() && (v == "HTTP/1.1" || v == "HTTP/1.0") =>
        {
            (m, v == "HTTP/1.1")
        }
        _ => return Err(Refusal::Bad("The request line is malformed.")),
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut keep_alive = http11;
    let mut expects_continue = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(Refusal::Bad("A header line has no colon."));
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(Refusal::Bad("A header name is malformed."));
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            // Repeats are tolerated only when they agree (RFC 9112 section 6.3).
            for v in value.split(',').map(str::trim) {
                let n = parse_length(v)?;
                if length.is_some_and(|l| l != n) {
                    return Err(Refusal::Bad("Conflicting Content-Length headers."));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") || v.contains("upgrade") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case("100-continue") {
                return Err(Refusal::Bad(
                    "The only expectation supported is 100-continue.",
                ));
            }
            expects_continue = true;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") || chunked {
                return Err(Refusal::NotImplemented(
                    "Only the chunked transfer coding is supported.",
                ));
            }
            chunked = true;
        }
    }
    let framing = match (chunked, length) {
        (true, Some(_)) => {
            return Err(Refusal::Bad(
                "Content-Length and Transfer-Encoding must not both be sent.",
            ))
        }
        (true, None) => Framing::Chunked,
        (false, l) => Framing::Length(l.unwrap_or(0)),
    };
    Ok(Head {
        len: head.len(),
        framing,
        is_head: method == "HEAD",
        keep_alive,
        expects_continue,
    })
}

fn parse_length(v: &str) -> Result<u64, Refusal> {
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Bad("The Content-Length header is not a number."));
    }
    v.parse()
        .map_err(|_| Refusal::Bad("The Content-Length header is not a number."))
}

/// Copies `head` to `out` without any header whose name starts with [`PRIVATE_PREFIX`],
/// with the headers named in `rename` moved under [`RENAMED_PREFIX`], and with `extra` (a
/// whole `Name: value` line without its CRLF) added last.
pub fn rewrite_head(head: &[u8], rename: &[&str], extra: &str, out: &mut Vec<u8>) {
    let body = &head[..head.len() - 2]; // keeps the CRLF that ends the last line
    let named = |line: &[u8], name: &str| {
        line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
    };
    for (i, line) in body.split_inclusive(|&b| b == b'\n').enumerate() {
        if i == 0 {
            out.extend_from_slice(line);
        } else if named(line, PRIVATE_PREFIX) {
            continue;
        } else {
            let colon = line.iter().position(|&b| b == b':').unwrap_or(0);
            if rename
                .iter()
                .any(|n| n.eq_ignore_ascii_case(std::str::from_utf8(&line[..colon]).unwrap_or("")))
            {
                out.extend_from_slice(RENAMED_PREFIX.as_bytes());
            }
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Walks a chunked body (RFC 9112 section 7.1) to find its end, without decoding it.
#[derive(Debug, Clone, Default)]
pub struct Chunked {
    state: ChunkState,
    /// Bytes of the current size line or of the trailer section so far.
    line: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line: digits seen, and whether an extension started.
    #[default]
    Size,
    SizeDigits(u64, bool),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section; `bool`: at the start of a line.
    Trailer(bool),
    TrailerLf(bool),
    Done,
}

/// Longest chunk-size line (with extensions) and trailer section accepted.
const CHUNK_LINE_LIMIT: usize = 8192;

impl Chunked {
    /// Consumes body bytes from the start of `input`. Returns how many belong to the body;
    /// fewer than `input.len()` only once the body is complete ([`Chunked::done`]).
    pub fn advance(&mut self, input: &[u8]) -> Result<usize, Refusal> {
        self.decode(input, |_| {})
    }

    /// As [`Chunked::advance`], and gives each piece of chunk data to `data` as it passes.
    pub fn decode(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, Refusal> {
        let bad = Refusal::Bad("The chunked body is malformed.");
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                ChunkState::Done => return Ok(i),
                ChunkState::Data(n) => {
                    let take = (input.len() - i).min(n.min(usize::MAX as u64) as usize);
                    data(&input[i..i + take]);
                    i += take;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                    continue;
                }
                ChunkState::Size | ChunkState::SizeDigits(..) => {
                    self.line += 1;
                    if self.line > CHUNK_LINE_LIMIT {
                        return Err(bad);
                    }
                    let (n, ext) = match self.state {
                        ChunkState::SizeDigits(n, ext) => (Some(n), ext),
                        _ => (None, false),
                    };
                    match (b, n) {
                        (b'\r', Some(n)) => ChunkState::SizeLf(n),
                        (_, Some(n)) if ext => ChunkState::SizeDigits(n, true),
                        (b';' | b' ' | b'\t', Some(n)) => ChunkState::SizeDigits(n, true),
                        _ => {
                            let d = (b as char).to_digit(16).ok_or(bad)? as u64;
                            let n = n.unwrap_or(0);
                            if n > u64::MAX >> 4 {
                                return Err(bad);
                            }
                            ChunkState::SizeDigits(n << 4 | d, false)
                        }
                    }
                }
                ChunkState::SizeLf(n) => {
                    if b != b'\n' {
                        return Err(bad);
                    }
                    self.line = 0;
                    if n == 0 {
                        ChunkState::Trailer(true)
                    } else {
                        ChunkState::Data(n)
                    }
                }
                ChunkState::DataCr if b == b'\r' => ChunkState::DataLf,
                ChunkState::DataLf if b == b'\n' => ChunkState::Size,
                ChunkState::DataCr | ChunkState::DataLf => return Err(bad),
                ChunkState::Trailer(at_start) => {
                    self.line += 1;
                    if self.line > CHUNK_LINE_LIMIT {
                        return Err(bad);
                    }
                    if b == b'\r' {
                        ChunkState::TrailerLf(at_start)
                    } else {
                        ChunkState::Trailer(false)
                    }
                }
                ChunkState::TrailerLf(at_start) => {
                    if b != b'\n' {
                        return Err(bad);
                    }
                    if at_start {
                        ChunkState::Done
                    } else {
                        ChunkState::Trailer(true)
                    }
                }
            };
            i += 1;
        }
        Ok(i)
    }

    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Follows the answers coming back from tiny_http, to know when every request passed on has
/// been answered in full (then the connection to tiny_http can serve another client).
#[derive(Debug, Default)]
pub struct Responses {
    /// For each request passed on and not yet answered: whether it was a HEAD.
    pending: std::collections::VecDeque<bool>,
    state: RespState,
    head: Vec<u8>,
}

#[derive(Debug, Default)]
enum RespState {
    #[default]
    Head,
    Body(u64),
    Chunked(Chunked),
    /// Not followable (no length, or nonsense): the connection ends with this answer.
    UntilClose,
}

/// Longest answer head followed.
const RESPONSE_HEAD_LIMIT: usize = 64 * 1024;

impl Responses {
    pub fn expect(&mut self, is_head: bool) {
        self.pending.push_back(is_head);
    }

    /// Requests passed on whose answers have not fully arrived.
    pub fn awaiting(&self) -> bool {
        !self.pending.is_empty() || !matches!(self.state, RespState::Head) || !self.head.is_empty()
    }

    /// Every answer is complete and the stream is still followable.
    pub fn idle(&self) -> bool {
        !self.awaiting()
    }

    /// Body bytes of the current answer still to come when its length is known (0 otherwise).
    pub fn body_left(&self) -> u64 {
        match self.state {
            RespState::Body(n) => n,
            _ => 0,
        }
    }

    /// Counts `n` (at most [`Responses::body_left`]) body bytes that went by unseen.
    pub fn skip(&mut self, n: u64) {
        if let RespState::Body(left) = &mut self.state {
            *left -= n.min(*left);
            if *left == 0 {
                self.state = RespState::Head;
            }
        }
    }

    /// Whether the stream can no longer be followed.
    pub fn lost(&self) -> bool {
        matches!(self.state, RespState::UntilClose)
    }

    /// Follows answer bytes as they arrive.
    pub fn advance(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (k, _) = self.follow(data);
            data = &data[k..];
        }
    }

    /// Follows answer bytes up to the end of the next final answer head, if there is one
    /// in `data`: returns the bytes followed and whether such a head just ended.
    pub fn follow(&mut self, data: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < data.len() {
            match &mut self.state {
                RespState::UntilClose => return (data.len(), false),
                RespState::Body(n) => {
                    let k = (*n).min((data.len() - i) as u64);
                    i += k as usize;
                    *n -= k;
                    if *n == 0 {
                        self.state = RespState::Head;
                    }
                }
                RespState::Chunked(c) => match c.advance(&data[i..]) {
                    Ok(k) => {
                        i += k;
                        if c.done() {
                            self.state = RespState::Head;
                        }
                    }
                    Err(_) => self.state = RespState::UntilClose,
                },
                RespState::Head => {
                    while i < data.len() {
                        self.head.push(data[i]);
                        i += 1;
                        if self.head.ends_with(b"\r\n\r\n") {
                            let before = self.pending.len();
                            self.state = self.answer_head();
                            self.head.clear();
                            if self.pending.len() < before {
                                return (i, true);
                            }
                            break;
                        }
                        if self.head.len() > RESPONSE_HEAD_LIMIT {
                            self.state = RespState::UntilClose;
                            break;
                        }
                    }
                }
            }
        }
        (i, false)
    }

    /// What follows a complete answer head.
    fn answer_head(&mut self) -> RespState {
        let text = String::from_utf8_lossy(&self.head);
        let status: u16 = match text.get(9..12).and_then(|s| s.parse().ok()) {
            Some(s) => s,
            None => return RespState::UntilClose,
        };
        if (100..200).contains(&status) {
            return RespState::Head; // 100 Continue: the real answer follows
        }
        let Some(is_head) = self.pending.pop_front() else {
            return RespState::UntilClose;
        };
        let mut length = None;
        let mut chunked = false;
        for line in text.split("\r\n").skip(1) {
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<u64>().ok();
                } else if n.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.trim().eq_ignore_ascii_case("chunked");
                }
            }
        }
        match (is_head || status == 204 || status == 304, chunked, length) {
            (true, _, _) | (false, false, Some(0)) => RespState::Head,
            (false, true, _) => RespState::Chunked(Chunked::default()),
            (false, false, Some(n)) => RespState::Body(n),
            (false, false, None) => RespState::UntilClose,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Option<Head>, Refusal> {
        find_head(s.as_bytes(), 4096)
    }

    #[test]
    fn heads_and_their_framing() {
        let h = head("GET /b/k HTTP/1.1\r\nHost: x\r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(h.len, 30);
        assert_eq!(h.framing, Framing::Length(0));
        let h = head("PUT /b/k HTTP/1.1\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(12));
        let h = head("PUT / HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(head("GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let h = head("PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(h.unwrap().framing, Framing::Length(5));
    }

    #[test]
    fn bare_cr_and_lf_are_refused() {
        // Found by the `head` fuzz target: a lone LF ended a line for the header rewrite but
        // not for this parser, so a private header could hide behind it.
        let bare = Err(Refusal::Bad("The request head has a bare CR or LF."));
        for h in [
            "GET / HTTP/1.1\r\nX-A: 1\nX-S3serve-Conn: 2\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: 1\rX-B: 2\r\n\r\n",
            "\nGET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\nHost: x\r\n\r\n",
        ] {
            assert_eq!(head(h), bare, "{h:?}");
        }
    }

    #[test]
    fn method_and_keep_alive() {
        let h = head("HEAD /b/k HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.is_head && h.keep_alive);
        let h = head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.is_head && !h.keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        let h = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
    }

    #[test]
    fn answers_are_followed_to_their_end() {
        let mut r = Responses::default();
        r.expect(false);
        r.expect(true);
        r.expect(false);
        r.expect(false);
        let stream = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n";
        for split in 0..stream.len() {
            let mut r2 = Responses::default();
            for h in [false, true, false, false] {
                r2.expect(h);
            }
            r2.advance(&stream[..split]);
            r2.advance(&stream[split..]);
            assert!(r2.idle(), "split {split}");
        }
        r.advance(&stream[..stream.len() - 3]);
        assert!(r.awaiting());
        let mut lost = Responses::default();
        lost.expect(false);
        lost.advance(b"HTTP/1.1 200 OK\r\n\r\nbody until close");
        assert!(lost.lost() && !lost.idle());
    }

    #[test]
    fn bad_heads_are_refused() {
        for bad in [
            "PUT / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: something\r\n\r\n",
            "GET / HTTP/1.1\r\nX: caf\u{e9}\r\n\r\n",
        ] {
            assert!(matches!(head(bad), Err(Refusal::Bad(_))), "{bad:?}");
        }
        assert!(matches!(
            head("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(Refusal::NotImplemented(_))
        ));
    }

    #[test]
    fn the_head_limit_holds_whether_or_not_the_end_arrived() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(find_head(big.as_bytes(), 64), Err(Refusal::HeadTooLarge));
        assert_eq!(
            find_head(&big.as_bytes()[..70], 64),
            Err(Refusal::HeadTooLarge)
        );
        assert_eq!(find_head(&big.as_bytes()[..50], 64), Ok(None));
        assert!(find_head(big.as_bytes(), big.len()).unwrap().is_some());
    }

    #[test]
    fn rewriting_drops_spoofed_headers_renames_framing_and_appends_ours() {
        let h = b"PUT / HTTP/1.1\r\nHost: x\r\nX-S3serve-Relay: spoof\r\n\
x-s3serve-orig-content-length: 9\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\
X-Relay-Other: keep\r\n\r\n";
        let mut out = Vec::new();
        rewrite_head(
            h,
            &["content-length", "expect"],
            "x-s3serve-relay: real",
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PUT / HTTP/1.1\r\nHost: x\r\nx-s3serve-orig-Content-Length: 5\r\n\
x-s3serve-orig-Expect: 100-continue\r\nX-Relay-Other: keep\r\nx-s3serve-relay: real\r\n\r\n"
        );
    }

    #[test]
    fn chunked_data_is_decoded_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for split in 0..=body.len() - 4 {
            let mut c = Chunked::default();
            let mut got = Vec::new();
            c.decode(&body[..split], |d| got.extend_from_slice(d))
                .unwrap();
            c.decode(&body[split..], |d| got.extend_from_slice(d))
                .unwrap();
            assert!(c.done());
            assert_eq!(got, b"hello0123456789abcdef", "split at {split}");
        }
    }

    #[test]
    fn chunked_bodies_end_where_they_say_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for split in 0..=body.len() - 4 {
            let mut c = Chunked::default();
            let a = c.advance(&body[..split]).unwrap();
            assert_eq!(a, split);
            let b = c.advance(&body[split..]).unwrap();
            assert!(c.done());
            assert_eq!(a + b, body.len() - 4, "split at {split}");
        }
        let mut c = Chunked::default();
        assert_eq!(c.advance(b"0\r\n\r\nX").unwrap(), 5);
        assert!(c.done());
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for bad in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"5\nhello", &[b'f'; 20]] {
            assert!(Chunked::default().advance(bad).is_err(), "{bad:?}");
        }
        let long = vec![b'1'; 1]
            .into_iter()
            .chain([b';'])
            .chain(vec![b'x'; 9000])
            .collect::<Vec<_>>();
        assert!(Chunked::default().advance(&long).is_err());
    }
}
