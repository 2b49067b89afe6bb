//! The front of the data path: listeners, relays, the bounded queue and the worker pool.
//! Our accept loops take every connection (TCP, TLS, unix socket) and relay it, with limits
//! and timeouts, to one tiny_http server on a private unix socket (`listen`, `relay`). Its
//! pump thread moves requests into one bounded crossbeam channel; when that is full the pump
//! answers 503 SlowDown at once instead of queueing without bound. A fixed pool of workers
//! answers requests. Shutdown stops accepting, lets the relays finish the requests in flight,
//! then the workers, and joins every thread.

pub mod head;
pub mod listen;
pub mod relay;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::backend::local::{LocalBackend, Perms};
use crate::backend::memory::MemoryBackend;
use crate::backend::Backend;
use crate::config::{Config, Storage};
use crate::ops::{Code, OpsOptions, S3Error};
use crate::s3::{self, auth::Keys, App, Peer};
use crate::vfs::{Vfs, VfsOptions};
use listen::{Listener, Relays, Slots};
use relay::{Limits, Shared, RELAY_HEADER};

/// How often an idle pump looks at the stop flag.
const PUMP_TICK: Duration = Duration::from_millis(100);

/// A started server; dropping it does not stop it, call [`Running::shutdown`].
pub struct Running {
    /// The TCP addresses bound (with the real port when 0 was asked).
    pub addrs: Vec<SocketAddr>,
    /// Every listener as a URL (`http://…`, `unix://…`), for the start-up log.
    pub listening: Vec<String>,
    stop: Arc<AtomicBool>,
    accepts: Vec<JoinHandle<()>>,
    relays: Arc<Relays>,
    slots: Arc<Slots>,
    pump_stop: Arc<AtomicBool>,
    pump: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    expire: (Sender<()>, JoinHandle<()>),
    private_dir: PathBuf,
    /// Written at shutdown to wake every relay.
    stop_writer: std::os::fd::OwnedFd,
}

/// Longest wait at shutdown for connections to finish their requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Descriptors kept for everything but connections: files being served, the log, the
/// listeners, per worker and in all.
const FDS_PER_WORKER: u64 = 3;
const FDS_RESERVED: u64 = 24;
/// Connection cap when the descriptor limit does not make it lower.
const DEFAULT_MAX_CONNECTIONS: u64 = 4096;

/// How long a completed upload is remembered, so a retried Complete gets the same answer.
const DONE_UPLOAD_MEMORY: Duration = Duration::from_secs(3600);
/// Longest wait between two sweeps for expired uploads.
const EXPIRE_TICK: Duration = Duration::from_secs(600);

/// The `s3serve:expire` thread: removes idle multipart uploads (`--multipart-expiry`) and
/// forgets completed ones, at start-up and then on every tick, until told to stop.
fn spawn_expire(app: Arc<App>, expiry: Option<Duration>) -> (Sender<()>, JoinHandle<()>) {
    let (tx, rx) = bounded::<()>(1);
    let tick = expiry.map_or(EXPIRE_TICK, |e| {
        (e / 4).clamp(Duration::from_secs(1), EXPIRE_TICK)
    });
    let handle = std::thread::Builder::new()
        .name("s3serve:expire".into())
        .spawn(move || loop {
            if let Ok(uploads) = app.vfs.uploads() {
                let now = std::time::SystemTime::now();
                let pending = expiry.map(|e| now - e);
                let removed = uploads.expire(
                    pending,
                    now - expiry.unwrap_or(DONE_UPLOAD_MEMORY).min(DONE_UPLOAD_MEMORY),
                );
                if removed > 0 {
                    log::info!("expired {removed} multipart uploads");
                }
            }
            match rx.recv_timeout(tick) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        })
        .expect("spawning a thread at start-up");
    (tx, handle)
}

/// Builds storage, VFS and auth from the config.
pub fn build_app(config: &Config) -> Result<App, String> {
    let backend: Box<dyn Backend> = match &config.storage {
        Storage::Memory => Box::new(MemoryBackend::new()),
        Storage::Local(root) => {
            let perms = Perms {
                file: config.file_perms,
                dir: config.dir_perms,
            };
            let local =
                LocalBackend::open(root, perms).map_err(|e| format!("{}: {e}", root.display()))?;
            let swept = local.sweep_temporaries();
            if swept > 0 {
                log::warn!("removed {swept} temporary files left by an earlier crash");
            }
            Box::new(local)
        }
    };
    let vfs = Arc::new(Vfs::new(
        backend,
        VfsOptions {
            etag: config.etag,
            cleanup: config.cleanup,
        },
    ));
    let ops = OpsOptions {
        read_only: config.read_only,
        no_modtime: config.no_modtime,
        owner: "anonymous".into(),
        max_uploads: config.multipart_max_uploads,
    };
    Ok(App {
        vfs,
        ops,
        keys: Keys::new(&config.auth_keys),
        baseurl: config.baseurl.clone(),
        cors: s3::cors::Cors::new(&config.allow_origins),
        vhost_domain: config.vhost_domain.clone(),
        response_headers: config.response_headers.clone(),
    })
}

/// Binds every address, then starts accept loops, the pump and workers.
pub fn start(config: &Config) -> Result<Running, String> {
    let app = Arc::new(build_app(config)?);
    let tls = match &config.tls {
        Some(files) => {
            if files.older_than_supported {
                log::warn!(
                    "--min-tls-version: TLS 1.0 and 1.1 are not available; the minimum is TLS 1.2"
                );
            }
            Some(tls::server_config(files)?)
        }
        None => None,
    };
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for addr in &config.addrs {
        let listener = TcpListener::bind(addr).map_err(|e| format!("--addr {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let tls = tls.clone().filter(|_| !config.plain_addrs.contains(addr));
        let scheme = if tls.is_some() { "https" } else { "http" };
        listeners.push((format!("{scheme}://{local}"), Listener::Tcp(listener, tls)));
        addrs.push(local);
    }
    for path in &config.unix_sockets {
        listeners.push((
            format!("unix://{}", path.display()),
            Listener::Unix(bind_unix(path)?),
        ));
    }
    let private_dir = private_dir()?;
    let inner_path = private_dir.join("requests.sock");
    let inner =
        UnixListener::bind(&inner_path).map_err(|e| format!("{}: {e}", inner_path.display()))?;
    let server = tiny_http::Server::from_listener(inner, None).map_err(|e| e.to_string())?;
    let (stop_signal, stop_writer) =
        rustix::pipe::pipe().map_err(|e| format!("creating a pipe: {e}"))?;
    let shared = Arc::new(Shared {
        limits: Limits {
            max_head: config.max_header_bytes.saturating_add(4096),
            read_timeout: config.read_timeout,
            write_timeout: config.write_timeout,
            idle_timeout: config.idle_timeout,
        },
        inner_path: std::sync::RwLock::new(inner_path),
        gate: Default::default(),
        token: format!(
            "{}{}",
            crate::util::unique_token(),
            crate::util::unique_token()
        ),
        stopping: AtomicBool::new(false),
        stop_signal,
    });
    let slots = Arc::new(Slots::new(connection_cap(config)));
    let relays = Relays::new(shared.clone());
    let (tx, rx) = bounded(config.queue);
    let stop = Arc::new(AtomicBool::new(false));
    let pump_stop = Arc::new(AtomicBool::new(false));
    let listening = listeners.iter().map(|(l, _)| l.clone()).collect();
    let pump = spawn_pump(server, shared, tx, pump_stop.clone(), private_dir.clone());
    let workers = (0..config.workers)
        .map(|i| spawn_worker(i, rx.clone(), app.clone()))
        .collect();
    let accepts = listeners
        .into_iter()
        .map(|(name, l)| listen::spawn_accept(name, l, slots.clone(), relays.clone(), stop.clone()))
        .collect();
    let expire = spawn_expire(app, config.multipart_expiry);
    Ok(Running {
        addrs,
        listening,
        stop,
        accepts,
        relays,
        slots,
        pump_stop,
        pump,
        workers,
        expire,
        private_dir,
        stop_writer,
    })
}

/// The connection cap: `--max-connections`, lowered to what the descriptor limit allows.
fn connection_cap(config: &Config) -> usize {
    let fds = listen::raise_fd_limit();
    let spare = fds.saturating_sub(FDS_RESERVED + FDS_PER_WORKER * config.workers as u64);
    let by_fds = (spare / listen::FDS_PER_CONNECTION).max(1);
    let asked = match config.max_connections {
        0 => DEFAULT_MAX_CONNECTIONS,
        n => n as u64,
    };
    if by_fds < asked && config.max_connections != 0 {
        log::warn!("--max-connections {asked}: the descriptor limit ({fds}) allows {by_fds}");
    }
    let cap = asked.min(by_fds) as usize;
    log::info!("at most {cap} connections at once");
    cap
}

/// A directory only this user can enter, for tiny_http's socket: nobody else may reach it.
fn private_dir() -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "s3serve-{}-{}",
        std::process::id(),
        crate::util::unique_token()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Binds a unix socket, replacing a stale socket file (never any other kind of file).
fn bind_unix(path: &Path) -> Result<UnixListener, String> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if !md.file_type().is_socket() {
            return Err(format!(
                "--addr {}: exists and is not a socket",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("--addr {}: removing the stale socket: {e}", path.display()))?;
    }
    UnixListener::bind(path).map_err(|e| format!("--addr {}: {e}", path.display()))
}

/// A request as the pump passes it to a worker.
pub struct Incoming {
    rq: tiny_http::Request,
    peer: Peer,
}

/// Reads the relay's header: `token id first peer…`. `None` if it is missing or forged.
fn relay_info(rq: &tiny_http::Request, token: &str) -> Option<(u64, bool, Peer)> {
    let h = rq
        .headers()
        .iter()
        .rev()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(RELAY_HEADER))?;
    let mut parts = h.value.as_str().splitn(4, ' ');
    if parts.next()? != token {
        return None;
    }
    let id = parts.next()?.parse().ok()?;
    let first = parts.next()? == "1";
    let peer = parts.next()?;
    Some((id, first, Peer::parse(peer)))
}

fn spawn_pump(
    server: tiny_http::Server,
    shared: Arc<Shared>,
    tx: Sender<Incoming>,
    stop: Arc<AtomicBool>,
    dir: PathBuf,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("s3serve:pump".into())
        .spawn(move || {
            let mut server = server;
            // Servers whose accept loop died: their open connections still deliver requests.
            let mut retired: Vec<tiny_http::Server> = Vec::new();
            let mut generation = 0;
            while !stop.load(Ordering::Acquire) {
                let mut got = Vec::new();
                match server.recv_timeout(PUMP_TICK) {
                    Ok(Some(rq)) => got.push(rq),
                    Ok(None) => {}
                    Err(e) => {
                        // tiny_http's accept loop ends for good on any accept error.
                        generation += 1;
                        log::error!("request queue failed ({e}); starting a new one");
                        match rebuild(&dir, generation) {
                            Ok((path, fresh)) => {
                                retired.push(std::mem::replace(&mut server, fresh));
                                *shared.inner_path.write().unwrap_or_else(|e| e.into_inner()) =
                                    path;
                            }
                            Err(e) => {
                                log::error!("{e}");
                                std::thread::sleep(PUMP_TICK);
                            }
                        }
                    }
                }
                for old in &retired {
                    while let Ok(Some(rq)) = old.try_recv() {
                        got.push(rq);
                    }
                }
                for rq in got {
                    pass_on(rq, &shared, &tx);
                }
            }
        })
        .expect("spawning a thread at start-up")
}

fn rebuild(dir: &Path, generation: u32) -> Result<(PathBuf, tiny_http::Server), String> {
    let path = dir.join(format!("requests-{generation}.sock"));
    let l = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let server = tiny_http::Server::from_listener(l, None).map_err(|e| e.to_string())?;
    Ok((path, server))
}

/// Hands a request to the workers (the relay's hand-off is complete once its first request
/// is here). A request that did not come through a relay is refused.
fn pass_on(rq: tiny_http::Request, shared: &Shared, tx: &Sender<Incoming>) {
    let Some((id, first, peer)) = relay_info(&rq, &shared.token) else {
        let e = S3Error::new(Code::AccessDenied, "Access Denied");
        let id = crate::util::unique_token();
        s3::http::respond(rq, crate::ops::Response::xml(403, e.to_xml(&id)), &id);
        return;
    };
    if first {
        shared.gate.release(id);
    }
    let incoming = Incoming { rq, peer };
    if let Err(TrySendError::Full(incoming)) = tx.try_send(incoming) {
        shed_or_wait(incoming, tx);
    }
}

/// The queue is full. A request without a body is answered 503 SlowDown at once. One with
/// a body waits for a worker instead: answering it early would leave tiny_http draining the
/// body on this thread (and a client that sent `Expect: 100-continue` never sends it).
fn shed_or_wait(incoming: Incoming, tx: &Sender<Incoming>) {
    if s3::http::declares_body(&incoming.rq) {
        let _ = tx.send(incoming);
    } else {
        slow_down(incoming.rq);
    }
}

/// Answers on the pump thread when every worker is busy and the queue is full.
fn slow_down(rq: tiny_http::Request) {
    let e = S3Error::new(Code::SlowDown, "Please reduce your request rate.");
    let id = crate::util::unique_token();
    let resp = crate::ops::Response::xml(503, e.to_xml(&id)).header("Retry-After", "1");
    s3::http::respond(rq, resp, &id);
}

fn spawn_worker(i: usize, rx: Receiver<Incoming>, app: Arc<App>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("s3serve:worker:{i}"))
        .spawn(move || {
            while let Ok(Incoming { rq, peer }) = rx.recv() {
                let app = &app;
                // A bug must cost one request, not a worker: the dropped request gets a 500.
                let answer = || s3::handle(app, rq, &peer);
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(answer)).is_err() {
                    log::error!("a request handler panicked; the request was answered with 500");
                }
            }
        })
        .expect("spawning a thread at start-up")
}

impl Running {
    /// Stops accepting, lets connections finish the requests in flight (for a bounded
    /// time), drains the workers, and joins every thread.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Release);
        self.relays.stopping();
        let _ = rustix::io::write(&self.stop_writer, b"x");
        for a in self.accepts {
            let _ = a.join();
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while self.slots.open() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.slots.open() == 0 {
            self.relays.join();
        } else {
            log::warn!("{} connections still busy at shutdown", self.slots.open());
        }
        self.pump_stop.store(true, Ordering::Release);
        let _ = self.pump.join();
        for w in self.workers {
            let _ = w.join();
        }
        let _ = self.expire.0.send(());
        let _ = self.expire.1.join();
        let _ = std::fs::remove_dir_all(&self.private_dir);
    }
}
