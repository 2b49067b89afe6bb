//! A keep-alive HTTP/1.1 client connection: one request at a time, answers framed by
//! Content-Length or chunked encoding, bodies handed to the caller in big slices.

use std::io::{self, Read, Write};
use std::net::TcpStream;

const BUF: usize = 1 << 20;

pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub close: bool,
    len: Option<u64>,
    chunked: bool,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Conn {
    pub fn open(addr: &str) -> io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s,
            buf: vec![0; BUF],
            start: 0,
            end: 0,
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes)
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.s.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    pub fn read_head(&mut self) -> io::Result<Answer> {
        let head_end = loop {
            if let Some(i) = self.buf[self.start..self.end]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                break self.start + i + 4;
            }
            if self.end - self.start > 64 * 1024 {
                return Err(bad("answer head too long"));
            }
            self.fill()?;
        };
        let text = std::str::from_utf8(&self.buf[self.start..head_end])
            .map_err(|_| bad("answer head is not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.get(9..12))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut a = Answer {
            status,
            headers: Vec::new(),
            close: false,
            len: None,
            chunked: false,
        };
        for line in lines.filter(|l| !l.is_empty()) {
            let Some((n, v)) = line.split_once(':') else {
                continue;
            };
            let (n, v) = (n.trim(), v.trim());
            if n.eq_ignore_ascii_case("content-length") {
                a.len = Some(v.parse().map_err(|_| bad("bad Content-Length"))?);
            } else if n.eq_ignore_ascii_case("transfer-encoding") {
                a.chunked = v.eq_ignore_ascii_case("chunked");
            } else if n.eq_ignore_ascii_case("connection") {
                a.close = v.eq_ignore_ascii_case("close");
            }
            a.headers.push((n.to_string(), v.to_string()));
        }
        self.start = head_end;
        Ok(a)
    }

    /// Reads the body of `a` (none after HEAD), giving it to `sink` piece by piece; returns
    /// its length.
    pub fn read_body(
        &mut self,
        a: &Answer,
        is_head: bool,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        if is_head || a.status == 204 || a.status == 304 {
            return Ok(0);
        }
        if a.chunked {
            let mut total = 0;
            loop {
                let line = self.read_line()?;
                let size = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !self.read_line()?.is_empty() {}
                    return Ok(total);
                }
                self.copy_out(size, sink)?;
                total += size;
                if !self.read_line()?.is_empty() {
                    return Err(bad("chunk not followed by CRLF"));
                }
            }
        }
        match a.len {
            Some(n) => {
                self.copy_out(n, sink)?;
                Ok(n)
            }
            None if a.close => {
                let mut total = 0;
                loop {
                    if self.start == self.end {
                        match self.fill() {
                            Ok(()) => {}
                            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(total),
                            Err(e) => return Err(e),
                        }
                    }
                    sink(&self.buf[self.start..self.end])?;
                    total += (self.end - self.start) as u64;
                    self.start = self.end;
                }
            }
            None => Ok(0),
        }
    }

    fn copy_out(
        &mut self,
        mut n: u64,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        while n > 0 {
            if self.start == self.end {
                self.fill()?;
            }
            let k = ((self.end - self.start) as u64).min(n) as usize;
            sink(&self.buf[self.start..self.start + k])?;
            self.start += k;
            n -= k as u64;
        }
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf[self.start..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line =
                    String::from_utf8_lossy(&self.buf[self.start..self.start + i]).into_owned();
                self.start += i + 2;
                return Ok(line);
            }
            if self.end - self.start > 4096 {
                return Err(bad("line too long"));
            }
            self.fill()?;
        }
    }
}
