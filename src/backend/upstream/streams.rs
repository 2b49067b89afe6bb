//! `--vfs-read-chunk-streams N`: a read of an upstream object keeps N ranged GETs of a fixed
//! chunk size in flight ahead of the reader, each on a thread of its own, and hands their
//! bytes over in order. As in rclone, except that a chunk lands in an unlinked scratch file,
//! not in memory, so N streams of 128 MiB chunks cost disk, not 512 MiB of RAM.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::client::Client;
use super::store::{answer_from, tempfile_in};

/// Chunks of a parallel read are whole MiBs, as rclone rounds them.
const ROUND: u64 = 1 << 20;

/// The object a parallel read is of.
#[derive(Clone)]
pub(super) struct Source {
    pub client: Arc<Client>,
    pub bucket: String,
    pub key: String,
    pub etag: Option<String>,
    pub size: u64,
}

struct Chunk {
    start: u64,
    len: u64,
    arrived: Receiver<io::Result<File>>,
    file: Option<File>,
}

/// The chunks in flight ahead of a reader.
pub(super) struct Ahead {
    src: Source,
    chunk: u64,
    streams: usize,
    scratch: PathBuf,
    queue: VecDeque<Chunk>,
    /// Where the next chunk to ask for starts.
    next: u64,
}

impl Ahead {
    /// `chunk` is `--vfs-read-chunk-size`, rounded up to whole MiBs.
    pub fn new(src: Source, chunk: u64, streams: usize, scratch: PathBuf) -> Ahead {
        Ahead {
            src,
            chunk: chunk.div_ceil(ROUND).max(1) * ROUND,
            streams,
            scratch,
            queue: VecDeque::new(),
            next: 0,
        }
    }

    /// Reads bytes at `pos` (below the object's size), waiting for the chunk that holds them.
    pub fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        while self.queue.front().is_some_and(|c| c.start + c.len <= pos) {
            self.queue.pop_front();
        }
        // A seek back, or past what is in flight: start again from there.
        if self.queue.front().is_some_and(|c| c.start > pos) {
            self.queue.clear();
        }
        if self.queue.is_empty() {
            self.next = pos;
        }
        while self.queue.len() < self.streams && self.next < self.src.size {
            self.ask();
        }
        let c = self
            .queue
            .front_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the object's end"))?;
        if c.file.is_none() {
            let file = c
                .arrived
                .recv()
                .map_err(|_| io::Error::other("a chunk's fetch ended without an answer"))??;
            c.file = Some(file);
        }
        let want = ((c.start + c.len - pos) as usize).min(buf.len());
        let file = c.file.as_ref().expect("set above");
        let n = file.read_at(&mut buf[..want], pos - c.start)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a chunk ended early",
            ));
        }
        Ok(n)
    }

    fn ask(&mut self) {
        let start = self.next;
        let len = self.chunk.min(self.src.size - start);
        self.next += len;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (src, scratch) = (self.src.clone(), self.scratch.clone());
        let fetch = move || {
            let _ = tx.send(fetch(&src, start, len, &scratch));
        };
        if let Err(e) = std::thread::Builder::new()
            .name("s3serve:chunk".into())
            .spawn(fetch)
        {
            log::warn!("no thread for a read-ahead chunk: {e}");
        }
        self.queue.push_back(Chunk {
            start,
            len,
            arrived: rx,
            file: None,
        });
    }
}

/// Fetches `[start, start+len)` into an unlinked scratch file, resuming an answer cut short
/// from where it stopped, up to the client's retries.
fn fetch(src: &Source, start: u64, len: u64, scratch: &std::path::Path) -> io::Result<File> {
    let mut file = tempfile_in(scratch).map_err(io::Error::other)?;
    let end = start + len;
    let mut at = start;
    let mut resumes = 0;
    while at < end {
        let answer = src
            .client
            .get(
                &src.bucket,
                &src.key,
                Some((at, end - 1)),
                src.etag.as_deref(),
            )
            .map_err(|e| io::Error::other(e.message))?;
        let mut body = answer_from(answer, at)?;
        let copied = io::copy(&mut (&mut body).take(end - at), &mut file);
        match copied {
            Ok(n) if n == end - at => at = end,
            Ok(n) => at += n,
            Err(e) if resumes >= src.client.retries() => return Err(e),
            Err(_) => {}
        }
        if at < end {
            at = start + file.metadata()?.len();
            resumes += 1;
            if resumes > src.client.retries() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream's answer ended early",
                ));
            }
        }
    }
    Ok(file)
}
