//! The front of the data path: listeners, the bounded queue and the worker pool.
//! Each listener is a tiny_http server whose pump thread moves requests into one bounded
//! crossbeam channel; when it is full the pump answers 503 SlowDown at once instead of
//! queueing without bound. A fixed pool of workers answers requests. Shutdown stops the pumps,
//! lets the workers finish what is queued and in flight, and joins every thread.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::backend::local::{LocalBackend, Perms};
use crate::backend::memory::MemoryBackend;
use crate::backend::Backend;
use crate::config::{Config, Storage};
use crate::ops::{Code, OpsOptions, S3Error};
use crate::s3::{self, auth::Keys, App};
use crate::vfs::{Vfs, VfsOptions};

/// How often an idle pump looks at the stop flag.
const PUMP_TICK: Duration = Duration::from_millis(100);

/// A started server; dropping it does not stop it, call [`Running::shutdown`].
pub struct Running {
    /// The TCP addresses bound (with the real port when 0 was asked).
    pub addrs: Vec<SocketAddr>,
    /// Every listener as a URL (`http://…`, `unix://…`), for the start-up log.
    pub listening: Vec<String>,
    stop: Arc<AtomicBool>,
    pumps: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    expire: (Sender<()>, JoinHandle<()>),
}

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

/// Binds every address, then starts pumps and workers.
pub fn start(config: &Config) -> Result<Running, String> {
    let app = Arc::new(build_app(config)?);
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for addr in &config.addrs {
        let listener = TcpListener::bind(addr).map_err(|e| format!("--addr {addr}: {e}"))?;
        // Accepted sockets inherit TCP_NODELAY: without it keep-alive clients wait 40 ms for
        // every small response.
        rustix::net::sockopt::set_tcp_nodelay(&listener, true)
            .map_err(|e| format!("--addr {addr}: TCP_NODELAY: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| format!("--addr {addr}: {e}"))?;
        servers.push((format!("http://{local}"), server));
        addrs.push(local);
    }
    for path in &config.unix_sockets {
        servers.push((format!("unix://{}", path.display()), bind_unix(path)?));
    }
    let (tx, rx) = bounded(config.queue);
    let stop = Arc::new(AtomicBool::new(false));
    let listening = servers.iter().map(|(l, _)| l.clone()).collect();
    let pumps = servers
        .into_iter()
        .map(|(addr, server)| spawn_pump(addr, server, tx.clone(), stop.clone()))
        .collect();
    let workers = (0..config.workers)
        .map(|i| spawn_worker(i, rx.clone(), app.clone()))
        .collect();
    let expire = spawn_expire(app, config.multipart_expiry);
    Ok(Running {
        addrs,
        listening,
        stop,
        pumps,
        workers,
        expire,
    })
}

/// Binds a unix socket, replacing a stale socket file (never any other kind of file).
fn bind_unix(path: &std::path::Path) -> Result<tiny_http::Server, String> {
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
    tiny_http::Server::http_unix(path).map_err(|e| format!("--addr {}: {e}", path.display()))
}

fn spawn_pump(
    addr: String,
    server: tiny_http::Server,
    tx: Sender<tiny_http::Request>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("s3serve:accept:{addr}"))
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match server.recv_timeout(PUMP_TICK) {
                    Ok(Some(rq)) => {
                        if let Err(TrySendError::Full(rq)) = tx.try_send(rq) {
                            shed_or_wait(rq, &tx);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => log::warn!("accept on {addr}: {e}"),
                }
            }
            // Requests already received are in flight: hand them on before stopping.
            while let Ok(Some(rq)) = server.try_recv() {
                if tx.send(rq).is_err() {
                    break;
                }
            }
        })
        .expect("spawning a thread at start-up")
}

/// The queue is full. A request without a body is answered 503 SlowDown at once. One with
/// a body waits for a worker instead: answering it early would leave tiny_http draining the
/// body on this thread (and a client that sent `Expect: 100-continue` never sends it).
fn shed_or_wait(rq: tiny_http::Request, tx: &Sender<tiny_http::Request>) {
    if s3::http::declares_body(&rq) {
        let _ = tx.send(rq);
    } else {
        slow_down(rq);
    }
}

/// Answers on the pump thread when every worker is busy and the queue is full.
fn slow_down(rq: tiny_http::Request) {
    let e = S3Error::new(Code::SlowDown, "Please reduce your request rate.");
    let id = crate::util::unique_token();
    let resp = crate::ops::Response::xml(503, e.to_xml(&id)).header("Retry-After", "1");
    s3::http::respond(rq, resp, &id);
}

fn spawn_worker(i: usize, rx: Receiver<tiny_http::Request>, app: Arc<App>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("s3serve:worker:{i}"))
        .spawn(move || {
            while let Ok(rq) = rx.recv() {
                let app = &app;
                // A bug must cost one request, not a worker: the dropped request gets a 500.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s3::handle(app, rq)))
                    .is_err()
                {
                    log::error!("a request handler panicked; the request was answered with 500");
                }
            }
        })
        .expect("spawning a thread at start-up")
}

impl Running {
    /// Stops accepting, drains queued and in-flight requests, and joins every thread.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Release);
        for p in self.pumps {
            let _ = p.join();
        }
        for w in self.workers {
            let _ = w.join();
        }
        let _ = self.expire.0.send(());
        let _ = self.expire.1.join();
    }
}
