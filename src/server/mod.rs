//! The front of the data path: listeners, relays, tiny_http and the worker pool.
//! Our accept loops take every connection (TCP, TLS, unix socket) and relay it, with limits
//! and timeouts, to one tiny_http server on a private unix socket (`listen`, `relay`). A
//! fixed pool of workers takes requests from tiny_http and answers them. The queue between
//! is bounded by the relays: past `queue` waiting requests, those without a body get 503
//! SlowDown at once. Shutdown stops accepting, lets the relays finish the requests in
//! flight, then the workers, and joins every thread.

pub mod head;
pub mod listen;
pub mod relay;
pub mod tls;

use crate::backend::upstream::{Chunks, Upstream};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};

use crate::backend::local::{LocalBackend, Perms};
use crate::backend::memory::MemoryBackend;
use crate::backend::Backend;
use crate::config::{AuthProxyConfig, Config, Storage};
use crate::ops::{Code, OpsOptions, S3Error};
use crate::s3::auth::proxy::{Answer, AuthProxy};
use crate::s3::relayed::{self, RELAY_HEADER};
use crate::s3::users::Users;
use crate::s3::{self, auth::Keys, App, Peer, Tenancy};
use crate::vfs::cache::CacheOptions;
use crate::vfs::{Vfs, VfsOptions};
use listen::{Listener, Relays, Slots};
use relay::{Limits, Shared};
use std::collections::HashSet;

/// How often an idle worker looks at the stop flag.
const WORKER_TICK: Duration = Duration::from_millis(100);

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
    workers_stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    expire: (Sender<()>, JoinHandle<()>),
    app: Arc<App>,
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
            let now = std::time::SystemTime::now();
            let pending = expiry.map(|e| now - e);
            let done = now - expiry.unwrap_or(DONE_UPLOAD_MEMORY).min(DONE_UPLOAD_MEMORY);
            let removed: usize = app
                .all_vfs()
                .iter()
                .map(|vfs| vfs.expire_uploads(pending, done))
                .sum();
            if removed > 0 {
                log::info!("expired {removed} multipart uploads");
            }
            match rx.recv_timeout(tick) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        })
        .expect("spawning a thread at start-up");
    (tx, handle)
}

/// Removes what a crash left behind, in the background so that start-up does not wait for a
/// walk of the whole tree. Safe beside live writes: a temporary whose writer is alive, in
/// this process or another instance, is locked and kept.
fn spawn_sweep(vfs: Arc<Vfs>) {
    let spawned = std::thread::Builder::new()
        .name("s3serve:sweep".into())
        .spawn(move || {
            let swept = vfs.sweep_temporaries();
            if swept > 0 {
                log::warn!("removed {swept} temporary files left by an earlier crash");
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the crash sweep: {e}");
    }
}

/// `--vfs-refresh`: lists every directory once in the background, so the first listings
/// of a remote come from memory.
fn spawn_refresh(vfs: Arc<Vfs>) {
    let spawned = std::thread::Builder::new()
        .name("s3serve:refresh".into())
        .spawn(move || {
            let started = Instant::now();
            let dirs = vfs.refresh();
            log::info!(
                "--vfs-refresh: listed {dirs} directories in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        });
    if let Err(e) = spawned {
        log::error!("cannot start --vfs-refresh: {e}");
    }
}

/// The storage `storage` names, behind the cache when there is one. `user`: made for that
/// `--auth-proxy` user, whose metadata and uploads are their own.
fn make_vfs(
    config: &Config,
    storage: &Storage,
    cache: Option<CacheOptions>,
    user: Option<&str>,
) -> Result<Arc<Vfs>, String> {
    let backend: Box<dyn Backend> = match storage {
        Storage::Memory => Box::new(MemoryBackend::new()),
        Storage::Local(root) => {
            let perms = Perms {
                file: config.file_perms,
                dir: config.dir_perms,
            };
            let local = LocalBackend::open_for(root, perms, user)
                .map_err(|e| format!("{}: {e}", root.display()))?;
            Box::new(local)
        }
        Storage::Upstream(u) => Box::new(upstream_backend(u)?),
        Storage::AuthProxy(_) => return Err("an --auth-proxy answer names no backend".into()),
    };
    let backend: Box<dyn Backend> = match cache {
        Some(opts) => Box::new(crate::vfs::cache::Cache::open(backend, opts)?),
        None => backend,
    };
    Ok(Arc::new(Vfs::new(
        backend,
        VfsOptions {
            etag: config.etag,
            cleanup: config.cleanup,
            dir_cache_time: config.dir_cache_time,
            filter: config.filter.clone(),
        },
    )))
}

/// `--auth-proxy`: the program, and how a user's storage is made from its answer. Each
/// backend is swept for what a crash left (and listed, with `--vfs-refresh`) the first time
/// a user reaches it.
fn proxy_users(config: &Config, p: &AuthProxyConfig) -> Result<Users, String> {
    let proxy = AuthProxy::new(&p.program, p.cache_time, p.timeout)?;
    let (config, p) = (config.clone(), p.clone());
    let reached: Mutex<HashSet<String>> = Mutex::default();
    let make = move |user: &str, answer: &Answer| -> Result<Arc<Vfs>, String> {
        let (storage, notes) = p.storage(&answer.kind, &answer.root, &answer.options)?;
        for note in notes {
            log::warn!("--auth-proxy answer for access key {user:?}: {note}");
        }
        let name = crate::config::cache_remote(&storage)?;
        let cache = config.cache.clone().map(|mut c| {
            // Each user's cache is their own, as their metadata is.
            c.remote = format!("auth-proxy/{}/{name}", crate::util::user_tag(user));
            c
        });
        let vfs = make_vfs(&config, &storage, cache, Some(user))?;
        log::info!("--auth-proxy: access key {user:?} is served {name}");
        if reached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name)
        {
            spawn_sweep(vfs.clone());
            if config.vfs_refresh {
                spawn_refresh(vfs.clone());
            }
        }
        Ok(vfs)
    };
    Ok(Users::new(proxy, Box::new(make)))
}

/// Builds storage, VFS and auth from the config.
pub fn build_app(config: &Config) -> Result<App, String> {
    let storage = match &config.storage {
        Storage::AuthProxy(p) => Tenancy::PerUser(Arc::new(proxy_users(config, p)?)),
        s => Tenancy::Shared(make_vfs(config, s, config.cache.clone(), None)?),
    };
    let ops = OpsOptions {
        read_only: config.read_only,
        no_modtime: config.no_modtime,
        owner: "anonymous".into(),
        max_uploads: config.multipart_max_uploads,
    };
    Ok(App {
        storage,
        ops,
        keys: Keys::new(&config.auth_keys),
        baseurl: config.baseurl.clone(),
        cors: s3::cors::Cors::new(&config.allow_origins),
        vhost_domain: config.vhost_domain.clone(),
        response_headers: config.response_headers.clone(),
        file_bodies: Default::default(),
        spool: Arc::new(spool_dir(config)?),
        spools: Default::default(),
    })
}

/// An S3 upstream as a backend.
fn upstream_backend(u: &crate::config::UpstreamConfig) -> Result<Upstream, String> {
    use crate::backend::upstream::client::{Client, Endpoint};
    use crate::backend::upstream::http::Http;
    let fail = |e: String| format!("remote {}: {e}", u.label);
    let t = &u.tuning;
    let http = Http::new(t.low_level_retries, t.connect_timeout, t.timeout)
        .map_err(|e| fail(e.message))?;
    let endpoint = Endpoint::parse(&u.endpoint, u.path_style).map_err(fail)?;
    let signer = u.keys.as_ref().map(|(id, secret)| crate::sigv4::Signer {
        access_key: id.clone(),
        secret: secret.clone(),
        region: u.region.clone(),
        session_token: u.session_token.clone(),
    });
    let chunks = Chunks {
        first: t.read_chunk,
        limit: t.read_chunk_limit,
        streams: t.read_streams,
    };
    Ok(Upstream::new(
        Client::new(http, endpoint, signer),
        &u.path,
        chunks,
        u.writes.clone(),
        std::env::temp_dir(),
    ))
}

/// Body bytes all relays together may hold in memory; past this, bodies are spooled.
const HELD_BODIES: usize = 16 << 20;

/// Where request bodies are spooled: beside the served tree, so that a spooled PUT becomes
/// its object by a link; the temporary folder for storage that has no files.
fn spool_dir(config: &Config) -> Result<s3::spool::SpoolDir, String> {
    let path = match &config.storage {
        Storage::Local(root) => root.join(crate::backend::key::HIDDEN_PREFIX).join("spool"),
        Storage::Memory | Storage::Upstream(_) | Storage::AuthProxy(_) => std::env::temp_dir(),
    };
    s3::spool::SpoolDir::open(&path, config.file_perms)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Binds every address, then starts accept loops and workers.
pub fn start(config: &Config) -> Result<Running, String> {
    let app = Arc::new(build_app(config)?);
    let tls = match &config.tls {
        Some(files) => {
            if files.older_than_supported {
                log::warn!(
                    "--min-tls-version: TLS 1.0 and 1.1 are not available; the minimum is TLS 1.2"
                );
            }
            Some(tls::TlsServer::new(files)?)
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
        inner_generation: AtomicU32::new(0),
        gate: Default::default(),
        token: format!(
            "{}{}",
            crate::util::unique_token(),
            crate::util::unique_token()
        ),
        stopping: AtomicBool::new(false),
        stop_signal,
        queued: AtomicUsize::new(0),
        queue_cap: config.queue,
        file_bodies: app.file_bodies.clone(),
        admit: {
            let app = app.clone();
            Box::new(move |head: &[u8], peer: &str| s3::admit::admit(&app, head, peer))
        },
        spool: app.spool.clone(),
        spools: app.spools.clone(),
        held: AtomicUsize::new(0),
        held_cap: HELD_BODIES,
    });
    let slots = Arc::new(Slots::new(connection_cap(config)));
    let relays = Relays::new(shared.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let workers_stop = Arc::new(AtomicBool::new(false));
    let listening = listeners.iter().map(|(l, _)| l.clone()).collect();
    let inbox = Arc::new(Inbox {
        current: RwLock::new(Arc::new(server)),
        retired: Mutex::new(Vec::new()),
        dir: private_dir.clone(),
        shared: shared.clone(),
        stop: workers_stop.clone(),
    });
    let workers = (0..config.workers)
        .map(|i| spawn_worker(i, inbox.clone(), app.clone()))
        .collect();
    let accepts = listeners
        .into_iter()
        .map(|(name, l)| listen::spawn_accept(name, l, slots.clone(), relays.clone(), stop.clone()))
        .collect();
    if let Tenancy::Shared(vfs) = &app.storage {
        spawn_sweep(vfs.clone());
        if config.vfs_refresh {
            spawn_refresh(vfs.clone());
        }
    }
    let expire = spawn_expire(app.clone(), config.multipart_expiry);
    Ok(Running {
        addrs,
        listening,
        stop,
        accepts,
        relays,
        slots,
        workers_stop,
        workers,
        expire,
        app,
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
    sweep_private_dirs(&std::env::temp_dir());
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

/// Removes the private folders (`s3serve-<pid>-<token>`) of s3serve processes that were
/// killed before they could remove their own. A folder whose process still runs, or whose
/// pid now belongs to another process, is left alone.
fn sweep_private_dirs(tmp: &Path) {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("s3serve-"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        let mine = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == me);
        if mine && rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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

/// A request a worker took, with the peer the relay reported.
pub struct Incoming {
    rq: tiny_http::Request,
    peer: Peer,
}

/// Reads the relay's header: `token id first seq spooled peer…`. `None` if it is missing
/// or forged.
fn relay_info(rq: &tiny_http::Request, token: &str) -> Option<(u64, bool, Peer)> {
    let h = rq
        .headers()
        .iter()
        .rev()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(RELAY_HEADER))?;
    let r = relayed::parse(h.value.as_str(), token)?;
    Some((r.conn, r.first, Peer::new(r.peer, r.conn, r.seq, r.spooled)))
}

/// Where workers take requests: tiny_http's queue. If tiny_http's accept loop dies (it ends
/// for good on any accept error), the worker that notices starts a new server on a new
/// socket for the relays; the old one keeps delivering what its open connections send.
struct Inbox {
    current: RwLock<Arc<tiny_http::Server>>,
    retired: Mutex<Vec<Arc<tiny_http::Server>>>,
    dir: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Inbox {
    /// The next request that came through a relay; `None` once stopped and drained.
    fn next(&self) -> Option<Incoming> {
        loop {
            let server = self
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let rq = match server.recv_timeout(WORKER_TICK) {
                Ok(Some(rq)) => Some(rq),
                Ok(None) => self.take_retired(),
                Err(e) => {
                    self.rebuild(&server, &e);
                    None
                }
            };
            match rq {
                Some(rq) => {
                    if let Some(incoming) = self.admit(rq) {
                        return Some(incoming);
                    }
                }
                None if self.stop.load(Ordering::Acquire) => return None,
                None => {}
            }
        }
    }

    fn take_retired(&self) -> Option<tiny_http::Request> {
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.iter().find_map(|s| s.try_recv().ok().flatten())
    }

    fn rebuild(&self, dead: &Arc<tiny_http::Server>, e: &std::io::Error) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current, dead) {
            return; // another worker already did
        }
        let generation = self.shared.inner_generation.load(Ordering::Acquire) + 1;
        log::error!("the request queue failed ({e}); starting a new one");
        let path = self.dir.join(format!("requests-{generation}.sock"));
        let fresh = UnixListener::bind(&path)
            .map_err(|e| e.to_string())
            .and_then(|l| tiny_http::Server::from_listener(l, None).map_err(|e| e.to_string()));
        match fresh {
            Ok(server) => {
                let old = std::mem::replace(&mut *current, Arc::new(server));
                self.retired
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(old);
                let mut inner_path = self
                    .shared
                    .inner_path
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                *inner_path = path;
                self.shared
                    .inner_generation
                    .store(generation, Ordering::Release);
            }
            Err(e) => {
                log::error!("{}: {e}", path.display());
                std::thread::sleep(WORKER_TICK);
            }
        }
    }

    /// Checks the relay's header; a request that did not come through a relay is refused.
    fn admit(&self, rq: tiny_http::Request) -> Option<Incoming> {
        let shared = &self.shared;
        let Some((id, first, peer)) = relay_info(&rq, &shared.token) else {
            let e = S3Error::new(Code::AccessDenied, "Access Denied");
            let id = crate::util::unique_token();
            s3::http::respond(rq, crate::ops::Response::xml(403, e.to_xml(&id)), &id, None);
            return None;
        };
        let _ = shared
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(1))
            });
        if first {
            shared.gate.release(id);
        }
        Some(Incoming { rq, peer })
    }
}

fn spawn_worker(i: usize, inbox: Arc<Inbox>, app: Arc<App>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("s3serve:worker:{i}"))
        .spawn(move || {
            while let Some(Incoming { rq, peer }) = inbox.next() {
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
        self.workers_stop.store(true, Ordering::Release);
        for w in self.workers {
            let _ = w.join();
        }
        for vfs in self.app.all_vfs() {
            vfs.shutdown();
        }
        let _ = self.expire.0.send(());
        let _ = self.expire.1.join();
        let _ = std::fs::remove_dir_all(&self.private_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by scripts/harden/crash.py: every SIGKILL left its private socket folder in
    /// $TMPDIR. The next start removes those of dead processes, and only those.
    #[test]
    fn private_folders_of_dead_processes_are_swept() {
        let tmp =
            std::env::temp_dir().join(format!("s3serve-sweep-{}", crate::util::unique_token()));
        std::fs::create_dir(&tmp).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let names = [
            format!("s3serve-{dead}-aaaa"),
            format!("s3serve-{}-bbbb", std::process::id()),
            "s3serve-notapid-cccc".to_string(),
            "other-1-dddd".to_string(),
        ];
        for n in &names {
            std::fs::create_dir(tmp.join(n)).unwrap();
            std::fs::write(tmp.join(n).join("requests.sock"), b"").unwrap();
        }
        sweep_private_dirs(&tmp);
        let left: Vec<bool> = names.iter().map(|n| tmp.join(n).exists()).collect();
        assert_eq!(left, [false, true, true, true]);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
