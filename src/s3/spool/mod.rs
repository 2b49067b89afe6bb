//! Request bodies that arrived whole before their request reached a worker. The relay
//! receives every body before it passes the request on (so that no worker waits on a
//! client's network): small ones stay in its buffer and follow the head, larger ones go to a
//! spool file, which the worker that takes the request finds here.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::vfs::Digests;

mod dir;
pub use dir::{SpoolDir, SpoolError, SpoolWriter};

/// One received body in a spool file.
pub struct Spooled {
    pub file: File,
    /// The file's name in the spool folder; `None` for an unnamed (`O_TMPFILE`) file.
    named: Option<PathBuf>,
    /// The body's length (decoded from the chunked coding, if it was sent that way).
    pub len: u64,
    /// Digests computed while the body arrived, when its head asked for them.
    pub digests: Option<Digests>,
}

impl Spooled {
    pub fn new(file: File, named: Option<PathBuf>, len: u64, digests: Option<Digests>) -> Self {
        Spooled {
            file,
            named,
            len,
            digests,
        }
    }

    /// A path that `linkat(2)` with `AT_SYMLINK_FOLLOW` can give another name.
    pub fn link_path(&self) -> PathBuf {
        match &self.named {
            Some(p) => p.clone(),
            None => PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd())),
        }
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Some(p) = &self.named {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Spooled bodies on their way from relays to workers, by connection and request number.
#[derive(Default)]
pub struct Spools {
    waiting: Mutex<HashMap<(u64, u64), Spooled>>,
}

impl Spools {
    /// Leaves the body of request `seq` on connection `conn`.
    pub fn give(&self, conn: u64, seq: u64, body: Spooled) {
        self.lock().insert((conn, seq), body);
    }

    /// The body of request `seq` on `conn`; `None` if its connection ended first.
    pub fn take(&self, conn: u64, seq: u64) -> Option<Spooled> {
        self.lock().remove(&(conn, seq))
    }

    /// The connection ended: bodies no worker took are removed.
    pub fn close(&self, conn: u64) {
        let mut waiting = self.lock();
        if waiting.is_empty() {
            return;
        }
        waiting.retain(|(c, _), _| *c != conn);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u64, u64), Spooled>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}
