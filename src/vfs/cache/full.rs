//! `--vfs-cache-mode full`: reads go through a sparse cache file. Only the missing ranges
//! are fetched from the remote, in blocks (plus `--vfs-read-ahead`), and a reader that needs
//! a block another reader is fetching waits for that fetch instead of starting its own.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};

use super::state::{Key, Shared};
use super::store::Ranges;
use crate::backend::Body;

/// Bytes fetched at least per trip to the remote.
const BLOCK: u64 = 4 << 20;

/// A sparse file being filled, shared by its readers.
pub(super) struct Fill {
    pub file: File,
    pub size: u64,
    state: Mutex<FillState>,
    cv: Condvar,
}

struct FillState {
    ranges: Ranges,
    /// Ranges some reader is fetching now.
    fetching: Vec<(u64, u64)>,
}

impl Fill {
    pub fn new(file: File, size: u64, ranges: Ranges) -> Fill {
        Fill {
            file,
            size,
            state: Mutex::new(FillState {
                ranges,
                fetching: Vec::new(),
            }),
            cv: Condvar::new(),
        }
    }

    pub fn ranges(&self) -> Ranges {
        self.lock().ranges.clone()
    }

    pub fn complete(&self) -> bool {
        self.lock().ranges.first_gap(0, self.size).is_none()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FillState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A reader of one object through its sparse cache file.
pub(super) struct SparseReader {
    pub sh: Arc<Shared>,
    pub key: Key,
    pub fill: Arc<Fill>,
    pub pos: u64,
    /// The remote's object, opened at the first fetch.
    pub source: Option<Box<dyn Body>>,
    pub source_pos: u64,
    pub fetched: bool,
}

impl SparseReader {
    /// Makes `[pos, end)` present, fetching what is missing or waiting for other readers'
    /// fetches of it.
    fn ensure(&mut self, pos: u64, end: u64) -> io::Result<()> {
        loop {
            let (start, stop) = {
                let mut st = self.fill.lock();
                let Some((gap_start, gap_end)) = st.ranges.first_gap(pos, end) else {
                    return Ok(());
                };
                if st
                    .fetching
                    .iter()
                    .any(|&(a, b)| a < gap_end && gap_start < b)
                {
                    drop(self.fill.cv.wait(st).unwrap_or_else(|p| p.into_inner()));
                    continue;
                }
                let want = gap_start + BLOCK.max(gap_end - gap_start) + self.sh.opts.read_ahead;
                let mut stop = want.min(self.fill.size);
                // Up to the next present range or fetch, whichever comes first.
                for r in &st.ranges.0 {
                    if r.pos > gap_start {
                        stop = stop.min(r.pos);
                    }
                }
                for &(a, _) in &st.fetching {
                    if a > gap_start {
                        stop = stop.min(a);
                    }
                }
                st.fetching.push((gap_start, stop));
                (gap_start, stop)
            };
            let fetched = self.fetch(start, stop);
            let mut st = self.fill.lock();
            st.fetching.retain(|&r| r != (start, stop));
            if fetched.is_ok() {
                st.ranges.insert(start, stop - start);
                self.fetched = true;
            }
            self.fill.cv.notify_all();
            fetched?;
        }
    }

    fn fetch(&mut self, start: u64, stop: u64) -> io::Result<()> {
        if self.source.is_none() {
            let reader = self
                .sh
                .inner
                .open(&self.key.0, &self.key.1)
                .map_err(io::Error::other)?;
            self.source = Some(reader.body);
            self.source_pos = 0;
        }
        let src = self.source.as_mut().expect("opened above");
        if self.source_pos != start {
            src.seek(SeekFrom::Start(start))?;
            self.source_pos = start;
        }
        let mut buf = vec![0u8; (stop - start).min(1 << 20) as usize];
        let mut at = start;
        while at < stop {
            let want = ((stop - at) as usize).min(buf.len());
            let n = src.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the remote's object ended early",
                ));
            }
            self.fill.file.write_all_at(&buf[..n], at)?;
            at += n as u64;
            self.source_pos = at;
        }
        Ok(())
    }
}

impl Read for SparseReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.fill.size || buf.is_empty() {
            return Ok(0);
        }
        let end = (self.pos + buf.len() as u64).min(self.fill.size);
        self.ensure(self.pos, end)?;
        let n = self
            .fill
            .file
            .read_at(&mut buf[..(end - self.pos) as usize], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SparseReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.fill.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

impl Body for SparseReader {}

impl Drop for SparseReader {
    fn drop(&mut self) {
        if self.fetched {
            self.sh.fill_progress(&self.key, &self.fill);
        }
    }
}
