//! The spool folder: where the relay writes a request body too large to wait in its buffer,
//! on the filesystem of the served root so that a PUT's spool file can become the object by
//! a link, without a second copy. A declared length is checked against the free space
//! before the body is accepted, and every body reserves room a step ahead of what it
//! writes, so spooling never fills the disk. Only those steps are promised, not whole
//! declared lengths: clients that declare large bodies and send nothing cannot make the
//! server refuse everyone else. (Two bodies that each fit, but not together, are both
//! accepted; the one that runs out of room is refused then.) Spool files are unnamed (`O_TMPFILE`) where the filesystem
//! allows, and vanish with their last descriptor; elsewhere they are named, locked while in
//! use, and swept at start-up.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use rustix::fs::{self as rfs, FlockOperation, Mode, OFlags};

use super::Spooled;
use crate::temps::TEMP_PREFIX;
use crate::vfs::Hashes;

/// A body reserves room ahead of its writes in steps of this much: one `statvfs` per step.
const GROW_STEP: u64 = 1 << 20;
/// Free space kept back from spooling: a hundredth of the filesystem, at most this.
const MARGIN_MAX: u64 = 64 << 20;
/// A body that will become an object has its write-back started every this many bytes,
/// so that the worker's final sync has little left to wait for.
const WRITEBACK_STEP: u64 = 8 << 20;

/// The spool folder, shared by every relay.
pub struct SpoolDir {
    path: PathBuf,
    mode: u32,
    /// Bytes promised to bodies still arriving.
    reserved: AtomicU64,
    /// Unnamed files cannot be made here: fall back to named ones.
    named_only: AtomicBool,
}

/// Why a body cannot be spooled.
#[derive(Debug)]
pub enum SpoolError {
    /// Not enough free space for `want` more bytes (`free` is what could be promised).
    Full {
        want: u64,
        free: u64,
    },
    Io(io::Error),
}

impl SpoolDir {
    /// Opens (creating it) the spool folder at `path`, and removes spool files an earlier
    /// process left (those still locked belong to a live instance sharing the folder).
    pub fn open(path: &Path, mode: u32) -> io::Result<SpoolDir> {
        std::fs::create_dir_all(path)?;
        let swept = crate::temps::sweep_dir(path);
        if swept > 0 {
            log::warn!("removed {swept} spool files left by an earlier crash");
        }
        Ok(SpoolDir {
            path: path.to_path_buf(),
            mode,
            reserved: AtomicU64::new(0),
            named_only: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a spool file for a body of `declared` bytes (`None`: not said), hashing it
    /// with `hashes` as it arrives. `durable`: the file will likely become an object.
    pub fn start(
        self: &Arc<Self>,
        declared: Option<u64>,
        hashes: Option<Box<Hashes>>,
        durable: bool,
    ) -> Result<SpoolWriter, SpoolError> {
        if let Some(want) = declared {
            let free = self.room()?;
            if want > free {
                return Err(SpoolError::Full { want, free });
            }
        }
        let mut w = SpoolWriter {
            dir: self.clone(),
            file: None,
            named: None,
            reserved: 0,
            written: 0,
            kicked: 0,
            hashes: hashes.map(|h| Hasher::new(h, declared)),
            durable,
        };
        let (file, named) = self.create().map_err(SpoolError::Io)?;
        w.file = Some(file);
        w.named = named;
        Ok(w)
    }

    /// The free space less the margin and what is promised.
    fn room(&self) -> Result<u64, SpoolError> {
        let usable = self.usable()?;
        Ok(usable.saturating_sub(self.reserved.load(Ordering::Acquire)))
    }

    /// The free space less the margin kept back.
    fn usable(&self) -> Result<u64, SpoolError> {
        let st = rfs::statvfs(&self.path).map_err(|e| SpoolError::Io(e.into()))?;
        let avail = st.f_bavail.saturating_mul(st.f_frsize);
        let total = st.f_blocks.saturating_mul(st.f_frsize);
        Ok(avail.saturating_sub((total / 100).min(MARGIN_MAX)))
    }

    /// Promises `want` bytes if they fit in the free space; returns `want`.
    fn reserve(&self, want: u64) -> Result<u64, SpoolError> {
        let usable = self.usable()?;
        let mut promised = self.reserved.load(Ordering::Acquire);
        loop {
            let free = usable.saturating_sub(promised);
            if want > free {
                return Err(SpoolError::Full { want, free });
            }
            match self.reserved.compare_exchange_weak(
                promised,
                promised + want,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(want),
                Err(now) => promised = now,
            }
        }
    }

    fn release(&self, n: u64) {
        self.reserved.fetch_sub(n, Ordering::AcqRel);
    }

    fn create(&self) -> io::Result<(File, Option<PathBuf>)> {
        let mode = Mode::from_raw_mode(self.mode);
        if !self.named_only.load(Ordering::Relaxed) {
            let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
            match rfs::open(&self.path, flags, mode) {
                Ok(fd) => return Ok((File::from(fd), None)),
                Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {
                    self.named_only.store(true, Ordering::Relaxed);
                }
                Err(rustix::io::Errno::INVAL) => self.named_only.store(true, Ordering::Relaxed),
                Err(e) => return Err(e.into()),
            }
        }
        let path = self
            .path
            .join(format!("{TEMP_PREFIX}{}", crate::util::unique_token()));
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC;
        let file = File::from(rfs::open(&path, flags, mode)?);
        rfs::flock(&file, FlockOperation::NonBlockingLockExclusive)?;
        Ok((file, Some(path)))
    }
}

/// One body being spooled. Dropped before [`SpoolWriter::finish`], it leaves nothing.
pub struct SpoolWriter {
    dir: Arc<SpoolDir>,
    file: Option<File>,
    named: Option<PathBuf>,
    /// Bytes promised to this body and not yet written.
    reserved: u64,
    written: u64,
    kicked: u64,
    hashes: Option<Hasher>,
    durable: bool,
}

impl SpoolWriter {
    /// Appends body bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), SpoolError> {
        let n = data.len() as u64;
        if n > self.reserved {
            self.reserved += self.dir.reserve((n - self.reserved).max(GROW_STEP))?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(SpoolError::Io(io::Error::other("the spool file is closed")));
        };
        file.write_all(data).map_err(SpoolError::Io)?;
        if let Some(h) = &mut self.hashes {
            h.update(data);
        }
        self.reserved -= n;
        self.dir.release(n);
        self.written += n;
        if self.durable && self.written - self.kicked >= WRITEBACK_STEP {
            // Starts write-back of what arrived without waiting for it (as the object
            // writer does); the pages stay cached for the worker.
            let len = std::num::NonZeroU64::new(self.written - self.kicked);
            let _ = rfs::fadvise(&*file, self.kicked, len, rfs::Advice::DontNeed);
            self.kicked = self.written;
        }
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// The file being written.
    pub fn file(&self) -> Option<&std::fs::File> {
        self.file.as_ref()
    }

    /// The whole body arrived: hands it over, positioned at its start.
    pub fn finish(mut self) -> io::Result<Spooled> {
        use std::io::Seek;
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("the spool file is closed"))?;
        file.rewind()?;
        let digests = match self.hashes.take() {
            Some(h) => Some(h.finish()?),
            None => None,
        };
        Ok(Spooled::new(file, self.named.take(), self.written, digests))
    }
}

impl Drop for SpoolWriter {
    fn drop(&mut self) {
        self.dir.release(self.reserved);
        if let Some(p) = &self.named {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Hashes a spooled body as it arrives: on the relay's thread, or, for a large body while
/// few others have one, on a thread of its own that follows the writes, so that receiving
/// and hashing overlap (a single upload would otherwise go at the rate of one core doing
/// both).
enum Hasher {
    Inline(Box<Hashes>),
    Follower(Follower),
}

/// Bodies from this size up may get a follower thread.
const FOLLOW_MIN: u64 = 8 << 20;
/// Buffers in flight between the relay and a follower.
const FOLLOW_BUFFERS: usize = 4;
/// Followers running in the process.
static FOLLOWERS: AtomicUsize = AtomicUsize::new(0);

struct Follower {
    /// Chunks to hash, in order; dropped to end the thread.
    chunks: Option<crossbeam_channel::Sender<Vec<u8>>>,
    /// Hashed chunks come back to be filled again.
    spare: crossbeam_channel::Receiver<Vec<u8>>,
    made: usize,
    thread: Option<std::thread::JoinHandle<Box<Hashes>>>,
}

impl Hasher {
    fn new(hashes: Box<Hashes>, declared: Option<u64>) -> Hasher {
        let cap = std::thread::available_parallelism().map_or(1, |n| n.get());
        let large = declared.is_none_or(|n| n >= FOLLOW_MIN);
        let slot = large
            && FOLLOWERS
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < cap).then_some(n + 1)
                })
                .is_ok();
        if !slot {
            return Hasher::Inline(hashes);
        }
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(FOLLOW_BUFFERS);
        let (back_tx, back_rx) = crossbeam_channel::bounded(FOLLOW_BUFFERS);
        // The hashes go to the thread once it runs: if it cannot start, they stay here.
        let (give, given) = crossbeam_channel::bounded::<Box<Hashes>>(1);
        let spawned = std::thread::Builder::new()
            .name("s3serve:hash".into())
            .spawn(move || {
                let mut hashes = given.recv().unwrap_or_default();
                for chunk in rx {
                    hashes.update(&chunk);
                    let _ = back_tx.try_send(chunk);
                }
                FOLLOWERS.fetch_sub(1, Ordering::AcqRel);
                hashes
            });
        match spawned {
            Ok(thread) => {
                let _ = give.send(hashes);
                Hasher::Follower(Follower {
                    chunks: Some(tx),
                    spare: back_rx,
                    made: 0,
                    thread: Some(thread),
                })
            }
            Err(e) => {
                FOLLOWERS.fetch_sub(1, Ordering::AcqRel);
                log::warn!("starting a hashing thread: {e}");
                Hasher::Inline(hashes)
            }
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Inline(h) => h.update(data),
            Hasher::Follower(f) => {
                let mut buf = match f.spare.try_recv() {
                    Ok(b) => b,
                    Err(_) if f.made < FOLLOW_BUFFERS => {
                        f.made += 1;
                        Vec::with_capacity(data.len().max(256 << 10))
                    }
                    // Every buffer is out: wait for the follower to finish one.
                    Err(_) => f.spare.recv().unwrap_or_default(),
                };
                buf.clear();
                buf.extend_from_slice(data);
                if let Some(tx) = &f.chunks {
                    let _ = tx.send(buf);
                }
            }
        }
    }

    fn finish(self) -> io::Result<crate::vfs::Digests> {
        match self {
            Hasher::Inline(h) => Ok(h.finish()),
            Hasher::Follower(mut f) => {
                f.chunks = None;
                let thread = f.thread.take().expect("joined once");
                thread
                    .join()
                    .map(|h| h.finish())
                    .map_err(|_| io::Error::other("the hashing thread failed"))
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn dir(name: &str) -> Arc<SpoolDir> {
        let path =
            std::env::temp_dir().join(format!("s3serve-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Arc::new(SpoolDir::open(&path, 0o600).unwrap())
    }

    #[test]
    fn declared_lengths_are_checked_but_only_written_steps_are_promised() {
        let d = dir("promise");
        let free = d.room().unwrap();
        // Each fits on its own; together they declare more than the disk holds.
        let mut a = d.start(Some(free / 2 + 1), None, false).unwrap();
        let mut b = d.start(Some(free / 2 + 1), None, false).unwrap();
        assert_eq!(d.reserved.load(Ordering::Acquire), 0);
        a.write(b"abc").unwrap();
        b.write(b"de").unwrap();
        assert_eq!(d.reserved.load(Ordering::Acquire), 2 * GROW_STEP - 5);
        let c = d.start(Some(free + GROW_STEP), None, false);
        assert!(matches!(c, Err(SpoolError::Full { .. })));
        let mut got = String::new();
        a.finish().unwrap().file.read_to_string(&mut got).unwrap();
        assert_eq!(got, "abc");
        drop(b);
        assert_eq!(d.reserved.load(Ordering::Acquire), 0);
        let _ = std::fs::remove_dir_all(d.path());
    }

    #[test]
    fn a_large_body_is_hashed_by_a_follower_like_a_small_one_inline() {
        let d = dir("follow");
        let body: Vec<u8> = (0..(FOLLOW_MIN as u32 + 12345))
            .map(|i| (i % 253) as u8)
            .collect();
        let mut want = Hashes::new(true, false, true);
        want.update(&body);
        let want = want.finish();
        for declared in [Some(body.len() as u64), None, Some(FOLLOW_MIN - 1)] {
            let hashes = Box::new(Hashes::new(true, false, true));
            let mut w = d.start(declared, Some(hashes), false).unwrap();
            let follows = matches!(w.hashes, Some(Hasher::Follower(_)));
            assert_eq!(follows, declared != Some(FOLLOW_MIN - 1));
            for piece in body.chunks(100_000) {
                w.write(piece).unwrap();
            }
            let spooled = w.finish().unwrap();
            let got = spooled.digests.clone().unwrap();
            assert_eq!(
                (got.md5, got.sha256, got.len),
                (want.md5, want.sha256, want.len)
            );
        }
        let _ = std::fs::remove_dir_all(d.path());
    }
}
