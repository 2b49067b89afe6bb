//! Noticing, without asking the filesystem each time, that a directory may have lost an entry.
//!
//! A delimiter listing names a subdirectory as a common prefix only while it holds an object.
//! Checking that for each of a page's prefixes costs a `stat` per prefix, which dominates
//! such a page. Instead, a directory seen holding an object file is watched with inotify for
//! any entry leaving it (unlinked, renamed away or replaced) and for its own removal. Until
//! such an event arrives the earlier answer stands.
//!
//! The kernel queues an event before the syscall that caused it returns, and a reader drains
//! the queue ([`Removals::catch_up`]) before it trusts any answer, so a change completed
//! before a request began is always seen by it: nothing here depends on timing. This holds
//! only where every change goes through this kernel, so watches are used on local
//! filesystems alone; on network and FUSE filesystems the caller keeps checking stamps.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use super::key::{is_hidden, FOLDER_MARKER};

/// At most this many directories are watched at once; past it every watch is dropped and
/// watching starts over. Each costs the kernel about 1 KiB and counts against the user's
/// `fs.inotify.max_user_watches`.
const WATCHES_MAX: usize = 32_768;

/// Filesystems whose every change is made through this kernel (from `statfs(2)`).
const LOCAL_FILESYSTEMS: [i64; 9] = [
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0x0102_1994, // tmpfs
    0xF2F5_2010, // f2fs
    0x2FC1_2FC1, // zfs
    0xCA45_1A4E, // bcachefs
    0x794C_7630, // overlayfs
    0x3153_464A, // jfs
];

/// A watch armed on one directory, valid until an entry may have left it.
#[derive(Debug, Clone)]
pub struct WatchTicket {
    /// Cleared by the first event after the arming: read without a lock.
    quiet: Arc<AtomicBool>,
    /// The directory watched: its device and inode.
    pub dev: u64,
    pub ino: u64,
}

pub struct Removals {
    fd: OwnedFd,
    /// At most this many watches at once ([`WATCHES_MAX`] but in tests).
    cap: usize,
    state: Mutex<State>,
    /// Set once the kernel refuses a watch for want of room: from then on callers check
    /// stamps, since re-reading every directory each time would cost more.
    full: AtomicBool,
}

#[derive(Default)]
struct State {
    /// The watches the kernel holds for us, each with the flag its tickets share. A flag
    /// once cleared stays so; arming the watch again gives it a new one.
    live: HashMap<i32, Arc<AtomicBool>>,
}

impl State {
    /// Ends every ticket of watch `wd`, or of every watch.
    fn end(&mut self, wd: Option<i32>) {
        let end = |q: &Arc<AtomicBool>| q.store(false, Ordering::Release);
        match wd {
            Some(wd) => self.live.get(&wd).map_or((), end),
            None => self.live.values().for_each(end),
        }
    }
}

impl Removals {
    /// Watching for directories under `root`, or None where the filesystem may change
    /// without this kernel seeing it, or inotify is unavailable.
    pub fn new(root: &impl AsFd) -> Option<Removals> {
        Removals::with_cap(root, WATCHES_MAX)
    }

    fn with_cap(root: &impl AsFd, cap: usize) -> Option<Removals> {
        let fs = rustix::fs::fstatfs(root).ok()?;
        if !LOCAL_FILESYSTEMS.contains(&(fs.f_type as i64)) {
            log::info!(
                "filesystem type {:#x} may change behind this host's back: listings check each prefix",
                fs.f_type
            );
            return None;
        }
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC).ok()?;
        Some(Removals {
            fd,
            cap,
            state: Mutex::default(),
            full: AtomicBool::new(false),
        })
    }

    /// Starts watching the open directory `dir`. Read its entries after this call: a change
    /// made before it would otherwise go unnoticed.
    pub fn arm(&self, dir: &OwnedFd) -> Option<WatchTicket> {
        let st = rustix::fs::fstat(dir).ok()?;
        // The magic link names exactly the directory opened, whatever happened to its path.
        let path = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let flags = WatchFlags::DELETE
            | WatchFlags::MOVED_FROM
            | WatchFlags::MOVED_TO
            | WatchFlags::DELETE_SELF
            | WatchFlags::MOVE_SELF
            | WatchFlags::ONLYDIR;
        let mut state = self.lock();
        if state.live.len() >= self.cap {
            state.end(None);
            for (wd, _) in state.live.drain() {
                let _ = inotify::remove_watch(&self.fd, wd);
            }
        }
        let wd = match inotify::add_watch(&self.fd, path.as_str(), flags) {
            Ok(wd) => wd,
            Err(rustix::io::Errno::NOSPC) => {
                if !self.full.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "no room for more inotify watches (fs.inotify.max_user_watches): \
                         delimiter listings check each prefix from now on"
                    );
                }
                return None;
            }
            Err(_) => return None,
        };
        let quiet = state.live.entry(wd).or_default();
        if !quiet.load(Ordering::Acquire) {
            *quiet = Arc::new(AtomicBool::new(true));
        }
        Some(WatchTicket {
            quiet: quiet.clone(),
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// Whether watches can still be armed.
    pub fn usable(&self) -> bool {
        !self.full.load(Ordering::Relaxed)
    }

    /// Takes in every event queued so far.
    pub fn catch_up(&self) {
        let mut state = self.lock();
        let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
        let mut events = inotify::Reader::new(&self.fd, &mut buf);
        loop {
            let event = match events.next() {
                Ok(e) => e,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(e) => {
                    // Events may be lost: trust no watch.
                    log::warn!("reading directory watch events: {e}");
                    state.end(None);
                    break;
                }
            };
            let flags = event.events();
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                state.end(None);
            } else if flags.contains(ReadFlags::IGNORED) {
                state.end(Some(event.wd()));
                state.live.remove(&event.wd());
            } else if !event
                .file_name()
                .and_then(|n| n.to_str().ok())
                .is_some_and(|n| is_hidden(n) && n != FOLDER_MARKER)
            {
                // Temporary files coming and going are not objects leaving; a folder
                // marker is an object.
                state.end(Some(event.wd()));
            }
        }
    }

    /// Whether no entry has left the directory since `ticket` was armed, as of the last
    /// [`catch_up`](Self::catch_up).
    pub fn unchanged(&self, ticket: &WatchTicket) -> bool {
        ticket.quiet.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags};

    fn open_dir(path: &std::path::Path) -> OwnedFd {
        rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    fn tempdir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("s3serve-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_entry_leaving_ends_the_watch_and_a_temporary_file_does_not() {
        let dir = tempdir("leave");
        std::fs::write(dir.join("a"), b"1").unwrap();
        std::fs::write(dir.join("b"), b"1").unwrap();
        let Some(w) = Removals::new(&open_dir(&dir)) else {
            return; // a filesystem that is not local: nothing to watch
        };
        let fd = open_dir(&dir);
        let t = w.arm(&fd).unwrap();
        assert_eq!(t.ino, rustix::fs::fstat(&fd).unwrap().st_ino);
        // Creating and renaming a temporary file over a key names no object leaving.
        std::fs::write(dir.join(".s3serve-tmp"), b"2").unwrap();
        std::fs::write(dir.join("c"), b"1").unwrap();
        std::fs::remove_file(dir.join(".s3serve-tmp")).unwrap();
        w.catch_up();
        assert!(w.unchanged(&t));
        std::fs::remove_file(dir.join("a")).unwrap();
        w.catch_up();
        assert!(!w.unchanged(&t));
        // Armed again, the same directory is watched anew; a rename over a key ends it.
        let t2 = w.arm(&fd).unwrap();
        w.catch_up();
        assert!(w.unchanged(&t2));
        std::fs::rename(dir.join("c"), dir.join("b")).unwrap();
        w.catch_up();
        assert!(!w.unchanged(&t2));
        let t3 = w.arm(&fd).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        w.catch_up();
        assert!(!w.unchanged(&t3));
    }

    #[test]
    fn a_folder_marker_leaving_ends_the_watch() {
        let dir = tempdir("marker");
        std::fs::write(dir.join(FOLDER_MARKER), b"").unwrap();
        let Some(w) = Removals::new(&open_dir(&dir)) else {
            return;
        };
        let t = w.arm(&open_dir(&dir)).unwrap();
        std::fs::remove_file(dir.join(FOLDER_MARKER)).unwrap();
        w.catch_up();
        assert!(!w.unchanged(&t));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn past_the_cap_every_watch_starts_over() {
        let dir = tempdir("cap");
        let Some(w) = Removals::with_cap(&open_dir(&dir), 3) else {
            return;
        };
        let fds: Vec<OwnedFd> = (0..4)
            .map(|i| {
                std::fs::create_dir(dir.join(i.to_string())).unwrap();
                open_dir(&dir.join(i.to_string()))
            })
            .collect();
        let tickets: Vec<WatchTicket> = fds.iter().map(|fd| w.arm(fd).unwrap()).collect();
        w.catch_up();
        // The fourth arming dropped the three watches before it: their tickets end, since
        // nothing would tell them of a removal any more.
        assert_eq!(
            tickets.iter().map(|t| w.unchanged(t)).collect::<Vec<_>>(),
            [false, false, false, true]
        );
        assert_eq!(w.lock().live.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
