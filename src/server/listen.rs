//! The listeners: our own accept loops (TCP, TLS, unix sockets), a cap on connections, and
//! a pool of relay threads that carry each connection to tiny_http (see [`super::relay`]).
//! An accept error never ends a loop: running out of descriptors waits for some to free up,
//! and an aborted connection is skipped.

use std::net::TcpListener;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;

use super::relay::{self, Plain, Shared, Side};
use super::tls::{Tls, TlsServer};

/// How often an accept loop looks at the stop flag.
const ACCEPT_TICK: Duration = Duration::from_millis(200);
/// How long an idle relay thread waits for a new connection before it exits.
const RELAY_IDLE: Duration = Duration::from_secs(30);
/// Pause after an accept error, so that a persistent one (out of descriptors) does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// One bound listening socket.
pub enum Listener {
    Tcp(TcpListener, Option<Arc<TlsServer>>),
    Unix(UnixListener),
}

/// Counts open connections against the cap; accept loops wait while it is reached.
pub struct Slots {
    open: Mutex<usize>,
    freed: Condvar,
    cap: usize,
}

impl Slots {
    pub fn new(cap: usize) -> Slots {
        Slots {
            open: Mutex::new(0),
            freed: Condvar::new(),
            cap: cap.max(1),
        }
    }

    /// Waits up to `wait` for a free slot.
    fn take(self: &Arc<Self>, wait: Duration) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if *open >= self.cap {
            open = self
                .freed
                .wait_timeout(open, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if *open >= self.cap {
                return None;
            }
        }
        *open += 1;
        Some(Slot(self.clone()))
    }

    pub fn open(&self) -> usize {
        *self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One open connection; freed when dropped.
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().unwrap_or_else(|e| e.into_inner());
        *open -= 1;
        self.0.freed.notify_one();
    }
}

/// An accepted connection on its way to a relay thread.
struct Job {
    side: Box<dyn Side + Send>,
    peer: String,
    slot: Slot,
}

/// Relay threads: a connection goes to an idle thread if one is waiting, else to a new one.
/// The channel has no buffer, so a hand-off succeeds only into a waiting thread and no
/// connection is ever queued behind busy ones.
pub struct Relays {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Relays {
    pub fn new(shared: Arc<Shared>) -> Arc<Relays> {
        let (tx, rx) = bounded(0);
        Arc::new(Relays {
            tx,
            rx,
            shared,
            next_id: Arc::new(AtomicU64::new(1)),
            threads: Mutex::new(Vec::new()),
        })
    }

    fn dispatch(self: &Arc<Self>, job: Job) {
        let job = match self.tx.try_send(job) {
            Ok(()) => return,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job,
        };
        // The thread holds no sender: once the accept loops and `Relays` are gone, an idle
        // thread sees the channel disconnect and ends.
        let (rx, shared, ids) = (self.rx.clone(), self.shared.clone(), self.next_id.clone());
        let spawned = std::thread::Builder::new()
            .name("s3serve:relay".into())
            .spawn(move || {
                let mut kept = relay::Kept::default();
                let mut run = |job| run(job, &shared, &ids, &mut kept);
                run(job);
                while let Ok(job) = rx.recv_timeout(RELAY_IDLE) {
                    run(job);
                }
            });
        match spawned {
            Ok(h) => {
                let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
                threads.retain(|t| !t.is_finished());
                threads.push(h);
            }
            // The job (and its socket) was dropped with the closure: the client sees a close.
            Err(e) => log::error!("cannot start a relay thread: {e}"),
        }
    }

    /// Tells every connection to close once it is idle.
    pub fn stopping(&self) {
        self.shared.stopping.store(true, Ordering::Release);
    }

    /// Drops the hand-off channel and waits for every relay thread to end. Call it once
    /// the accept loops have stopped and every connection has closed.
    pub fn join(self: Arc<Self>) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        drop(self);
        for t in threads {
            let _ = t.join();
        }
    }
}

fn run(mut job: Job, shared: &Shared, ids: &AtomicU64, kept: &mut relay::Kept) {
    let id = ids.fetch_add(1, Ordering::Relaxed);
    // A bug must cost one connection, not the thread.
    let relayed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        relay::serve(job.side.as_mut(), &job.peer, id, shared, kept)
    }));
    if relayed.is_err() {
        log::error!("connection {id}: the relay panicked; the connection was closed");
        *kept = relay::Kept::default();
        shared.gate.release(id);
    }
    drop(job.slot);
}

/// Starts the accept loop for one listener.
pub fn spawn_accept(
    name: String,
    listener: Listener,
    slots: Arc<Slots>,
    relays: Arc<Relays>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("s3serve:accept:{name}"))
        .spawn(move || {
            let mut last_error_log: Option<Instant> = None;
            while !stop.load(Ordering::Acquire) {
                let Some(slot) = slots.take(ACCEPT_TICK) else {
                    continue;
                };
                if !readable(&listener, &relays.shared.stop_signal) {
                    continue;
                }
                match accept(&listener) {
                    Ok(Some((side, peer))) => relays.dispatch(Job { side, peer, slot }),
                    Ok(None) => {}
                    Err(e) => {
                        drop(slot);
                        let quiet =
                            last_error_log.is_some_and(|t| t.elapsed() < Duration::from_secs(10));
                        if !quiet {
                            log::warn!("accept on {name}: {e} (still accepting)");
                            last_error_log = Some(Instant::now());
                        }
                        std::thread::sleep(ACCEPT_BACKOFF);
                    }
                }
            }
        })
        .expect("spawning a thread at start-up")
}

/// Waits up to a tick for a connection to accept; false at shutdown.
fn readable(listener: &Listener, stop: &std::os::fd::OwnedFd) -> bool {
    let fd = match listener {
        Listener::Tcp(l, _) => l.as_fd(),
        Listener::Unix(l) => l.as_fd(),
    };
    let ts = Timespec {
        tv_sec: 0,
        tv_nsec: ACCEPT_TICK.as_nanos() as i64,
    };
    let mut fds = [
        PollFd::from_borrowed_fd(fd, PollFlags::IN),
        PollFd::new(stop, PollFlags::IN),
    ];
    matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
        && fds[1].revents().is_empty()
        && !fds[0].revents().is_empty()
}

type Accepted = (Box<dyn Side + Send>, String);

/// Accepts one connection; `Ok(None)` when there was none after all, or it was aborted.
fn accept(listener: &Listener) -> std::io::Result<Option<Accepted>> {
    let result = match listener {
        Listener::Tcp(l, tls) => l.accept().and_then(|(s, addr)| {
            s.set_nonblocking(true)?;
            s.set_nodelay(true)?;
            Ok(match tls {
                Some(config) => (
                    Box::new(Tls::new(config.clone(), s)?) as Box<dyn Side + Send>,
                    format!("tls {addr}"),
                ),
                None => (
                    Box::new(Plain(s)) as Box<dyn Side + Send>,
                    format!("tcp {addr}"),
                ),
            })
        }),
        Listener::Unix(l) => l.accept().and_then(|(s, _)| {
            s.set_nonblocking(true)?;
            Ok((
                Box::new(Plain(s)) as Box<dyn Side + Send>,
                "unix".to_string(),
            ))
        }),
    };
    match result {
        Ok(a) => Ok(Some(a)),
        Err(e) => match Errno::from_io_error(&e) {
            Some(Errno::AGAIN | Errno::CONNABORTED | Errno::INTR | Errno::PROTO) => Ok(None),
            _ => Err(e),
        },
    }
}

/// Raises the soft descriptor limit to the hard one and returns it.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum) {
        if cur < max {
            lim.current = Some(max);
            let _ = setrlimit(Resource::Nofile, lim);
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(1 << 20)
}

/// Descriptors one relayed connection holds: the client socket, the relay's end of the
/// internal socket, tiny_http's end of it and its duplicate, a request body's spool file,
/// and a file body being sent. An idle relay thread keeps the middle three.
pub const FDS_PER_CONNECTION: u64 = 6;
