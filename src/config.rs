//! `Config`: everything derived from the command line, checked once at start-up and then
//! immutable (`cli::Args -> Config`). Errors name the flag they come from.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::Args;
use crate::vfs::EtagAlg;

/// Where objects are stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    Local(PathBuf),
    Memory,
    /// An S3 store (a remote of type `s3`).
    Upstream(Box<UpstreamConfig>),
    /// `--auth-proxy`: each access key's own backend, as the program describes it.
    AuthProxy(Box<AuthProxyConfig>),
}

/// `--auth-proxy` and what the backends it describes take from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthProxyConfig {
    /// The program and its arguments, split at whitespace when it is run.
    pub program: String,
    /// How long an answer is used before the program is asked again.
    pub cache_time: Duration,
    /// How long the program may take before it is killed.
    pub timeout: Duration,
    /// The flags that tune S3 upstreams, for users whose backend is one.
    pub tuning: UpstreamTuning,
    /// The `AWS_*` variables, for an answer that sets `env_auth`.
    pub aws_env: HashMap<String, String>,
}

/// The flags that tune an S3 upstream (as opposed to its remote's options).
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTuning {
    /// `--low-level-retries`.
    pub low_level_retries: u32,
    /// `--contimeout` and `--timeout` (0: none).
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// `--vfs-read-chunk-size` and its limit (0: none).
    pub read_chunk: u64,
    pub read_chunk_limit: u64,
    /// `--vfs-read-chunk-streams` (0 or 1: one request at a time).
    pub read_streams: usize,
}

impl Default for UpstreamTuning {
    /// rclone's defaults.
    fn default() -> UpstreamTuning {
        UpstreamTuning {
            low_level_retries: 10,
            connect_timeout: Duration::from_secs(60),
            timeout: Duration::from_secs(300),
            read_chunk: 128 << 20,
            read_chunk_limit: 0,
            read_streams: 0,
        }
    }
}

impl UpstreamTuning {
    fn from_args(a: &Args) -> UpstreamTuning {
        UpstreamTuning {
            low_level_retries: a.low_level_retries,
            connect_timeout: a.contimeout,
            timeout: a.timeout,
            read_chunk: a.vfs_read_chunk_size,
            read_chunk_limit: a.vfs_read_chunk_size_limit.unwrap_or(0),
            read_streams: a.vfs_read_chunk_streams,
        }
    }
}

impl AuthProxyConfig {
    /// The storage an answer of the program describes: its `type`, `_root` and options.
    /// As in rclone, only the answer configures the backend (not the environment's
    /// `RCLONE_*` variables); options s3serve does not use are returned as notes.
    pub fn storage(
        &self,
        kind: &str,
        root: &str,
        options: &[(String, String)],
    ) -> Result<(Storage, Vec<String>), String> {
        let mut remote = crate::cli::remote::Remote {
            label: format!(":{kind}"),
            kind: kind.to_string(),
            options: options.iter().cloned().collect(),
            path: root.to_string(),
        };
        let storage = match kind {
            "local" => Storage::Local(PathBuf::from(match root {
                "" => ".",
                r => r,
            })),
            "memory" => Storage::Memory,
            "s3" => {
                let mut u = s3_upstream(&mut remote, &self.aws_env)
                    .map_err(|e| e.trim_start_matches("PATH: ").to_string())?;
                u.tuning = self.tuning.clone();
                Storage::Upstream(Box::new(u))
            }
            other => {
                return Err(format!(
                    "type {other:?} is not supported; s3serve serves local, memory and s3 \
                     backends"
                ))
            }
        };
        let notes = remote
            .options
            .keys()
            .map(|o| format!("option {o:?} is not supported by s3serve for type {kind}"))
            .collect();
        Ok((storage, notes))
    }
}

/// An S3 upstream as its remote's options describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// How messages name it: the remote's name or `:s3`.
    pub label: String,
    /// `http(s)://host[:port]`.
    pub endpoint: String,
    pub path_style: bool,
    pub region: String,
    /// Access key and secret; `None` for anonymous access.
    pub keys: Option<(String, String)>,
    pub session_token: Option<String>,
    /// What follows the remote's `:`: `""`, `bucket` or `bucket/prefix`.
    pub path: String,
    /// What the flags set.
    pub tuning: UpstreamTuning,
    /// How writes are made: the remote's `acl`, `bucket_acl`, `location_constraint`,
    /// `upload_cutoff` and `chunk_size`.
    pub writes: crate::backend::upstream::Writes,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub storage: Storage,
    /// Warnings about PATH's remote (options it ignores), logged once logging is up.
    pub storage_notes: Vec<String>,
    pub addrs: Vec<SocketAddr>,
    /// Unix-socket listeners (`unix:///path` or an absolute path). Requests on them skip
    /// authentication, as in rclone: the socket's file permissions are the access control.
    pub unix_sockets: Vec<PathBuf>,
    pub auth_keys: Vec<(String, String)>,
    pub read_only: bool,
    pub cleanup: bool,
    pub etag: EtagAlg,
    pub baseurl: String,
    /// Base domain for virtual-hosted-style requests; `None`: path style only.
    pub vhost_domain: Option<String>,
    /// Headers set on every response, replacing any of the same name.
    pub response_headers: Vec<(String, String)>,
    /// Origins allowed cross-site (`*` for any); empty means no CORS headers at all.
    pub allow_origins: Vec<String>,
    pub file_perms: u32,
    pub dir_perms: u32,
    pub umask: u32,
    pub no_modtime: bool,
    pub log_level: log::LevelFilter,
    pub log_file: Option<PathBuf>,
    pub workers: usize,
    /// Idle multipart uploads are removed after this; `None` keeps them forever.
    pub multipart_expiry: Option<std::time::Duration>,
    /// Uploads in progress at once; 0 means unlimited.
    pub multipart_max_uploads: usize,
    /// How long directory listings are reused while their directory is unchanged.
    pub dir_cache_time: std::time::Duration,
    /// The file cache, unless `--vfs-cache-mode off`.
    pub cache: Option<crate::vfs::cache::CacheOptions>,
    /// `--vfs-refresh`: list every directory once in the background at start.
    pub vfs_refresh: bool,
    /// Requests waiting for a worker before new ones without a body get 503 SlowDown.
    pub queue: usize,
    /// `--cert`/`--key`: TCP listeners speak TLS, except those given as `http://`.
    pub tls: Option<TlsFiles>,
    /// TCP listeners given as `http://…`: plain even when TLS is configured.
    pub plain_addrs: Vec<SocketAddr>,
    /// `--max-header-bytes`: the request line and headers, as Go's server (and so rclone)
    /// counts them: this many bytes plus 4 KiB of allowance.
    pub max_header_bytes: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// `--max-connections`; 0 derives the cap from the descriptor limit.
    pub max_connections: usize,
    /// The filter flags, compiled once; `None` serves everything.
    pub filter: Option<std::sync::Arc<crate::vfs::filter::Filter>>,
}

/// The TLS material and policy.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub tls13_only: bool,
    /// `--min-tls-version` was given, and asked for a version rustls does not have (TLS 1.0
    /// or 1.1). Not set by rclone's default, which the user did not ask for.
    pub older_than_supported: bool,
}

/// The file cache's options, from the `--vfs-*` flags; `None` in mode off.
fn cache_options(
    a: &Args,
    storage: &Storage,
    env: &HashMap<String, String>,
) -> Result<Option<crate::vfs::cache::CacheOptions>, String> {
    use crate::vfs::cache::{default_dir, CacheOptions, Mode};
    if a.vfs_cache_mode == Mode::Off {
        return Ok(None);
    }
    // Each --auth-proxy user's is named when the user's backend is made.
    let remote = match storage {
        Storage::AuthProxy(_) => String::new(),
        s => cache_remote(s).map_err(|e| format!("PATH: {e}"))?,
    };
    let test_free_space = match env.get("S3SERVE_TEST_CACHE_BYTES") {
        Some(v) => Some(
            crate::cli::parse_size(v)
                .map_err(|e| format!("S3SERVE_TEST_CACHE_BYTES: {e}"))?
                .unwrap_or(0),
        ),
        None => None,
    };
    Ok(Some(CacheOptions {
        dir: a.cache_dir.clone().unwrap_or_else(default_dir),
        remote,
        mode: a.vfs_cache_mode,
        write_back: a.vfs_write_back,
        max_age: a.vfs_cache_max_age,
        max_size: a.vfs_cache_max_size,
        min_free: a.vfs_cache_min_free_space.unwrap_or(0),
        poll_interval: a.vfs_cache_poll_interval,
        read_ahead: a.vfs_read_ahead,
        transfers: a.transfers,
        dir_cache_time: a.dir_cache_time,
        fast_fingerprint: a.vfs_fast_fingerprint,
        test_free_space,
    }))
}

/// rclone's name for a remote, which places its files in the cache.
pub fn cache_remote(storage: &Storage) -> Result<String, String> {
    Ok(match storage {
        Storage::Memory => ":memory".to_string(),
        Storage::Local(root) => {
            let abs = std::path::absolute(root).map_err(|e| e.to_string())?;
            format!("local{}", abs.display())
        }
        Storage::Upstream(u) => format!("{}/{}", u.label, u.path),
        Storage::AuthProxy(_) => "auth-proxy".to_string(),
    })
}

/// What PATH names: a local directory, or a remote (see [`crate::cli::remote`]).
fn storage(
    path: &str,
    config: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<(Storage, Vec<String>), String> {
    use crate::cli::remote::{config_path, parse_spec, resolve, ConfigFile};
    let Some(spec) = parse_spec(path).map_err(|e| format!("PATH: {e}"))? else {
        return Ok((Storage::Local(PathBuf::from(path)), Vec::new()));
    };
    let mut missing = None;
    let file = match config_path(config, env) {
        Some(p) => match std::fs::read_to_string(&p) {
            Ok(text) => Some(ConfigFile::parse(&text)),
            // As rclone: a config file that is not there means no remotes (connection
            // strings and variables still name them); one that cannot be read is an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing = Some(format!(
                    "config file {:?} not found - using defaults",
                    p.display().to_string()
                ));
                None
            }
            Err(e) => return Err(format!("--config {}: {e}", p.display())),
        },
        None => None,
    };
    let remote = resolve(&spec, file.as_ref(), env).map_err(|e| format!("PATH: {e}"))?;
    let mut remote = remote;
    let upstream = match remote.kind.as_str() {
        "s3" => Some(s3_upstream(&mut remote, env)?),
        _ => None,
    };
    let notes = missing
        .into_iter()
        .filter(|_| config.is_some())
        .chain(remote.options.keys().map(|option| {
            format!(
                "{}: option {option:?} is not supported by s3serve for type {} and is ignored",
                remote.label, remote.kind
            )
        }))
        .collect();
    match remote.kind.as_str() {
        "local" => Ok((
            Storage::Local(PathBuf::from(match remote.path.as_str() {
                "" => ".",
                p => p,
            })),
            notes,
        )),
        "memory" => Ok((Storage::Memory, notes)),
        "s3" => Ok((
            Storage::Upstream(Box::new(upstream.expect("built above"))),
            notes,
        )),
        kind => Err(format!(
            "PATH: remote {}: type {kind:?} is not supported; s3serve serves local and memory \
             remotes",
            remote.label
        )),
    }
}

/// The options of an `s3` remote, taken out of `remote` as they are used (what is left is
/// reported as ignored).
fn s3_upstream(
    remote: &mut crate::cli::remote::Remote,
    env: &HashMap<String, String>,
) -> Result<UpstreamConfig, String> {
    let label = remote.label.clone();
    let mut take = |name: &str| remote.options.remove(name).filter(|v| !v.is_empty());
    let flag = |v: Option<String>, default: bool| -> Result<bool, String> {
        match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(format!(
                "PATH: remote {label}: {other:?} is not true or false"
            )),
        }
    };
    let provider = take("provider").unwrap_or_default();
    let region = take("region").unwrap_or_else(|| "us-east-1".into());
    let env_auth = flag(take("env_auth"), false)?;
    let path_style = flag(take("force_path_style"), true)?;
    // rclone accepts these and so do we; they change nothing here (no bucket is checked
    // or created before an upload).
    take("no_check_bucket");
    let size = |name: &str, v: Option<String>, default: u64| -> Result<u64, String> {
        match v {
            None => Ok(default),
            Some(v) => crate::cli::parse_size(&v)
                .map_err(|e| format!("PATH: remote {label}: {name}: {e}"))?
                .ok_or_else(|| format!("PATH: remote {label}: {name} cannot be off")),
        }
    };
    let acl = take("acl");
    let writes = crate::backend::upstream::Writes {
        bucket_acl: take("bucket_acl").or_else(|| acl.clone()),
        acl,
        location_constraint: take("location_constraint"),
        // Unlike rclone, a PUT stays one PUT unless the remote sets a cutoff: the client's
        // shape, and the ETag it was told, are the upstream's too.
        upload_cutoff: size("upload_cutoff", take("upload_cutoff"), u64::MAX)?,
        chunk_size: size("chunk_size", take("chunk_size"), 5 << 20)?.max(5 << 20),
        upload_concurrency: match take("upload_concurrency") {
            None => 4,
            Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("PATH: remote {label}: upload_concurrency {v:?} is not a count")
            })?,
        },
    };
    let mut keys = match (take("access_key_id"), take("secret_access_key")) {
        (Some(a), Some(s)) => Some((a, s)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(format!(
                "PATH: remote {label}: access_key_id is set but secret_access_key is not"
            ))
        }
        (None, Some(_)) => {
            return Err(format!(
                "PATH: remote {label}: secret_access_key is set but access_key_id is not"
            ))
        }
    };
    let mut session_token = take("session_token");
    if env_auth && keys.is_none() {
        let var = |n: &str| env.get(n).filter(|v| !v.is_empty()).cloned();
        let id = var("AWS_ACCESS_KEY_ID").or_else(|| var("AWS_ACCESS_KEY"));
        let secret = var("AWS_SECRET_ACCESS_KEY").or_else(|| var("AWS_SECRET_KEY"));
        keys = id.zip(secret);
        session_token = session_token.or_else(|| var("AWS_SESSION_TOKEN"));
        if keys.is_none() {
            return Err(format!(
                "PATH: remote {label}: env_auth is set but AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY are not"
            ));
        }
    }
    let endpoint = match take("endpoint") {
        Some(e) => e,
        None if provider.is_empty() || provider.eq_ignore_ascii_case("AWS") => {
            format!("https://s3.{region}.amazonaws.com")
        }
        None => {
            return Err(format!(
                "PATH: remote {label}: provider {provider:?} needs an endpoint"
            ))
        }
    };
    crate::backend::upstream::client::Endpoint::parse(&endpoint, path_style)
        .map_err(|e| format!("PATH: remote {label}: {e}"))?;
    Ok(UpstreamConfig {
        label,
        endpoint,
        path_style,
        region,
        keys,
        session_token,
        path: remote.path.clone(),
        tuning: UpstreamTuning::default(),
        writes,
    })
}

/// `--auth-proxy PROGRAM`. The cache period and the program's time limit are fixed (5
/// minutes, as rclone's; 30 s); tests shorten them with `S3SERVE_TEST_AUTH_PROXY_CACHE` and
/// `S3SERVE_TEST_AUTH_PROXY_TIMEOUT`.
fn auth_proxy(program: &str, a: &Args, env: &HashMap<String, String>) -> Result<Storage, String> {
    use crate::s3::auth::proxy::{CACHE_TIME, TIMEOUT};
    let seam = |name: &str, default: Duration| match env.get(name) {
        Some(v) => crate::cli::parse_duration(v).map_err(|e| format!("{name}: {e}")),
        None => Ok(default),
    };
    Ok(Storage::AuthProxy(Box::new(AuthProxyConfig {
        program: program.to_string(),
        cache_time: seam("S3SERVE_TEST_AUTH_PROXY_CACHE", CACHE_TIME)?,
        timeout: seam("S3SERVE_TEST_AUTH_PROXY_TIMEOUT", TIMEOUT)?,
        tuning: UpstreamTuning::from_args(a),
        aws_env: env
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })))
}

/// Workers when `--workers` is not given: requests block on disk, so more than the cores.
pub const DEFAULT_WORKERS: usize = 16;
/// Queued requests per worker before the server sheds load.
pub const QUEUE_PER_WORKER: usize = 8;

impl Config {
    pub fn from_args(a: &Args) -> Result<Config, String> {
        Config::from_args_env(a, &std::env::vars().collect())
    }

    /// As [`Config::from_args`], with the environment that names remotes given.
    pub fn from_args_env(a: &Args, env: &HashMap<String, String>) -> Result<Config, String> {
        let (mut storage, mut storage_notes) = match (&a.auth_proxy, a.path.as_deref()) {
            (Some(program), None) => (auth_proxy(program, a, env)?, Vec::new()),
            (Some(_), Some(path)) => {
                return Err(format!(
                    "PATH: {path:?} given with --auth-proxy, which takes none: each user's \
                     backend is the one the program names"
                ))
            }
            (None, Some(path)) => storage(path, a.config.as_deref(), env)?,
            (None, None) => {
                return Err("PATH: missing; usage: s3serve [FLAGS] PATH (see --help)".into())
            }
        };
        if let Storage::Upstream(u) = &mut storage {
            u.tuning = UpstreamTuning::from_args(a);
        }
        if matches!(storage, Storage::AuthProxy(_)) && !a.auth_keys.is_empty() {
            storage_notes.push("--auth-key is ignored: --auth-proxy is set".into());
        }
        let tls = tls_files(a)?;
        let mut addrs = Vec::new();
        let mut plain_addrs = Vec::new();
        let mut unix_sockets = Vec::new();
        for spec in &a.addrs {
            match unix_socket_path(spec) {
                Some(path) => unix_sockets.push(path),
                None => {
                    if spec.starts_with("tls://") && tls.is_none() {
                        return Err(format!(
                            "--addr {spec:?}: a TLS listener needs --cert and --key"
                        ));
                    }
                    let addr = parse_addr(spec)?;
                    if spec.starts_with("http://") {
                        plain_addrs.push(addr);
                    }
                    addrs.push(addr);
                }
            }
        }
        let etag = EtagAlg::parse(&a.etag_hash)
            .ok_or_else(|| format!("--etag-hash: unknown hash {:?}", a.etag_hash))?;
        if a.poll_interval.is_some_and(|d| !d.is_zero()) {
            // As rclone says for remotes that cannot notify changes (local, s3).
            storage_notes.push("poll-interval is not supported by this remote".into());
        }
        if matches!(storage, Storage::Upstream(_)) && etag != EtagAlg::Md5 {
            storage_notes.push(
                "--etag-hash is ignored: an S3 upstream's ETags are its own and are served as \
                 they are"
                    .into(),
            );
        }
        let workers = a.workers.unwrap_or(DEFAULT_WORKERS);
        let cache = cache_options(a, &storage, env)?;
        let filter = crate::vfs::filter::Filter::new(&a.filter)?.map(std::sync::Arc::new);
        if a.delete_excluded {
            storage_notes.push("--delete-excluded has no effect when serving".into());
        }
        Ok(Config {
            filter,
            cache,
            vfs_refresh: a.vfs_refresh,
            storage,
            storage_notes,
            addrs,
            unix_sockets,
            auth_keys: a.auth_keys.clone(),
            read_only: a.read_only,
            cleanup: !a.no_cleanup,
            etag,
            baseurl: a.baseurl.trim_matches('/').to_string(),
            vhost_domain: vhost_domain(a)?,
            response_headers: a
                .response_headers
                .iter()
                .map(|h| parse_response_header(h))
                .collect::<Result<_, _>>()?,
            allow_origins: a
                .allow_origin
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            file_perms: a.file_perms,
            dir_perms: a.dir_perms,
            umask: a.umask,
            no_modtime: a.no_modtime,
            log_level: log_level(a)?,
            log_file: a.log_file.clone(),
            workers,
            multipart_expiry: (!a.multipart_expiry.is_zero()).then_some(a.multipart_expiry),
            dir_cache_time: a.dir_cache_time,
            multipart_max_uploads: a.multipart_max_uploads,
            queue: workers * QUEUE_PER_WORKER,
            tls,
            plain_addrs,
            max_header_bytes: a.max_header_bytes,
            read_timeout: a.server_read_timeout,
            write_timeout: a.server_write_timeout,
            idle_timeout: a.idle_timeout,
            max_connections: a.max_connections,
        })
    }

    /// A config for tests and embedding: memory storage on an ephemeral loopback port.
    pub fn for_tests(storage: Storage) -> Config {
        Config {
            storage,
            storage_notes: Vec::new(),
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            unix_sockets: Vec::new(),
            auth_keys: Vec::new(),
            read_only: false,
            cleanup: true,
            etag: EtagAlg::Md5,
            baseurl: String::new(),
            allow_origins: Vec::new(),
            vhost_domain: None,
            response_headers: Vec::new(),
            file_perms: 0o666,
            dir_perms: 0o777,
            umask: 0o022,
            no_modtime: false,
            log_level: log::LevelFilter::Warn,
            log_file: None,
            workers: 4,
            multipart_expiry: Some(std::time::Duration::from_secs(86_400)),
            dir_cache_time: std::time::Duration::from_secs(300),
            cache: None,
            vfs_refresh: false,
            multipart_max_uploads: 1000,
            queue: 32,
            tls: None,
            plain_addrs: Vec::new(),
            max_header_bytes: 4096,
            read_timeout: Duration::from_secs(3600),
            write_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(120),
            max_connections: 0,
            filter: None,
        }
    }
}

/// `--cert` and `--key` go together; `--client-ca` needs them.
fn tls_files(a: &Args) -> Result<Option<TlsFiles>, String> {
    match (&a.cert, &a.key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: a.client_ca.clone(),
            tls13_only: a.min_tls_version.as_deref() == Some("tls1.3"),
            older_than_supported: matches!(a.min_tls_version.as_deref(), Some("tls1.0" | "tls1.1")),
        })),
        (Some(_), None) => Err("--cert: needs --key".into()),
        (None, Some(_)) => Err("--key: needs --cert".into()),
        (None, None) if a.client_ca.is_some() => Err("--client-ca: needs --cert and --key".into()),
        (None, None) => Ok(None),
    }
}

/// `Name: value` for `--response-header`; framing headers tiny_http controls are refused.
fn parse_response_header(h: &str) -> Result<(String, String), String> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| format!("--response-header {h:?}: expected \"Name: value\""))?;
    let name = name.trim();
    let framing = [
        "connection",
        "transfer-encoding",
        "content-length",
        "trailer",
        "upgrade",
    ];
    if name.is_empty()
        || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        || framing.contains(&name.to_ascii_lowercase().as_str())
    {
        return Err(format!("--response-header {h:?}: {name:?} cannot be set"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// `unix:///path/to.sock` or a bare absolute path names a unix socket.
fn unix_socket_path(spec: &str) -> Option<PathBuf> {
    match spec.strip_prefix("unix://") {
        Some(p) => Some(PathBuf::from(p)),
        None => spec.starts_with('/').then(|| PathBuf::from(spec)),
    }
}

/// `host:port`, `:port` (all interfaces, as rclone), `[::1]:port`; port 0 picks a free port.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("tls://"))
        .unwrap_or(s);
    let s = s.trim_end_matches('/');
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("--addr {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {s:?}: resolves to no address"))
}

/// Virtual-hosted style needs both `--force-path-style=false` (rclone's switch) and the
/// base domain to strip from `Host` (`--vhost-domain`, ours: rclone has none and guesses).
fn vhost_domain(a: &Args) -> Result<Option<String>, String> {
    let domain = a.vhost_domain.trim().trim_matches('.').to_ascii_lowercase();
    match (a.force_path_style, domain.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Ok(Some(domain)),
        (false, true) => Err("--force-path-style=false: needs --vhost-domain DOMAIN (the host name buckets are subdomains of)".into()),
        (true, false) => Err("--vhost-domain: needs --force-path-style=false".into()),
    }
}

fn log_level(a: &Args) -> Result<log::LevelFilter, String> {
    use log::LevelFilter::*;
    if let Some(l) = &a.log_level {
        return match l.as_str() {
            "DEBUG" => Ok(Debug),
            "INFO" => Ok(Info),
            "NOTICE" => Ok(Warn),
            "ERROR" => Ok(Error),
            other => Err(format!("--log-level: unknown level {other:?}")),
        };
    }
    Ok(match (a.quiet, a.verbose) {
        (true, _) => Error,
        (false, 0) => Warn,
        (false, 1) => Info,
        (false, _) => Debug,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        crate::cli::parse_args(extra.iter().map(|s| s.to_string())).unwrap()
    }

    #[test]
    fn cache_options_follow_the_flags_and_poll_interval_is_noted() {
        let env = HashMap::new();
        let c = Config::from_args_env(&args(&["/srv/data"]), &env).unwrap();
        assert!(c.cache.is_none());
        let c = Config::from_args_env(
            &args(&[
                "--vfs-cache-mode=full",
                "--cache-dir=/c",
                "--vfs-cache-max-size=1G",
                "--poll-interval=10s",
                "/srv/data",
            ]),
            &env,
        )
        .unwrap();
        let o = c.cache.unwrap();
        assert_eq!(o.mode, crate::vfs::cache::Mode::Full);
        assert_eq!(o.dir, PathBuf::from("/c"));
        assert_eq!(o.remote, "local/srv/data");
        assert_eq!(o.max_size, Some(1 << 30));
        assert!(c
            .storage_notes
            .iter()
            .any(|n| n.contains("poll-interval is not supported")));
    }

    #[test]
    fn derives_config() {
        let c = Config::from_args(&args(&[
            "--addr",
            ":0",
            "--addr",
            "127.0.0.1:9000",
            "--baseurl",
            "/s3/",
            "-vv",
            "data",
        ]))
        .unwrap();
        assert_eq!(c.storage, Storage::Local("data".into()));
        assert_eq!(c.addrs[0], "0.0.0.0:0".parse().unwrap());
        assert_eq!(c.addrs[1].port(), 9000);
        let u = Config::from_args(&args(&[
            "--addr",
            "unix:///run/s3.sock",
            "--addr",
            "/tmp/b.sock",
            "--addr",
            "http://127.0.0.1:1",
            "d",
        ]))
        .unwrap();
        assert_eq!(
            u.unix_sockets,
            vec![PathBuf::from("/run/s3.sock"), PathBuf::from("/tmp/b.sock")]
        );
        assert_eq!(u.addrs.len(), 1);
        assert!(Config::from_args(&args(&["--addr", "tls://:443", "d"]))
            .unwrap_err()
            .contains("needs --cert and --key"));
        let t = Config::from_args(&args(&[
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--addr",
            "tls://127.0.0.1:1",
            "--addr",
            "http://127.0.0.1:2",
            "--min-tls-version",
            "tls1.3",
            "d",
        ]))
        .unwrap();
        let files = t.tls.unwrap();
        assert!(files.tls13_only && !files.older_than_supported);
        // Only a TLS version the user asked for is worth a warning, not rclone's default.
        let tls = |extra: &[&str]| {
            let mut all = vec!["--cert", "c.pem", "--key", "k.pem", "d"];
            all.extend_from_slice(extra);
            Config::from_args(&args(&all)).unwrap().tls.unwrap()
        };
        assert!(!tls(&[]).older_than_supported && !tls(&[]).tls13_only);
        assert!(tls(&["--min-tls-version", "tls1.1"]).older_than_supported);
        assert!(!tls(&["--min-tls-version", "tls1.2"]).older_than_supported);
        assert_eq!(t.plain_addrs, vec![t.addrs[1]]);
        assert!(Config::from_args(&args(&["--cert", "c.pem", "d"]))
            .unwrap_err()
            .starts_with("--cert"));
        assert!(Config::from_args(&args(&["--client-ca", "ca.pem", "d"]))
            .unwrap_err()
            .starts_with("--client-ca"));
        assert_eq!(c.baseurl, "s3");
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(c.etag, EtagAlg::Md5);
        assert!(c.cleanup);
    }

    #[test]
    fn flag_errors_name_the_flag() {
        assert!(Config::from_args(&args(&[]))
            .unwrap_err()
            .starts_with("PATH"));
        assert!(Config::from_args(&args(&["--addr", "nope:x", "d"]))
            .unwrap_err()
            .starts_with("--addr"));
        let no_config = HashMap::from([("RCLONE_CONFIG".to_string(), String::new())]);
        assert!(Config::from_args_env(&args(&["remote:bucket"]), &no_config)
            .unwrap_err()
            .contains("remote"));
        assert_eq!(
            Config::from_args(&args(&[":memory:"])).unwrap().storage,
            Storage::Memory
        );
        assert_eq!(
            Config::from_args(&args(&["-q", "d"])).unwrap().log_level,
            log::LevelFilter::Error
        );
        assert_eq!(
            Config::from_args(&args(&["--log-level", "INFO", "d"]))
                .unwrap()
                .log_level,
            log::LevelFilter::Info
        );
        assert!(
            !Config::from_args(&args(&["--no-cleanup", "d"]))
                .unwrap()
                .cleanup
        );
    }

    #[test]
    fn path_names_remotes_as_rclone_does() {
        let dir = std::env::temp_dir().join(format!("s3serve-remotes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("rclone.conf");
        std::fs::write(
            &conf,
            "[disk]\ntype = local\ncopy_links = true\n\n[cloud]\ntype = drive\n",
        )
        .unwrap();
        let conf_flag = format!("--config={}", conf.display());
        let env = HashMap::from([("HOME".to_string(), dir.display().to_string())]);
        let storage = |path: &str| {
            Config::from_args_env(&args(&[&conf_flag, path]), &env)
                .map(|c| (c.storage, c.storage_notes))
        };
        let (s, notes) = storage("disk:/srv/data").unwrap();
        assert_eq!(s, Storage::Local("/srv/data".into()));
        assert!(notes[0].contains("copy_links"), "{notes:?}");
        assert_eq!(
            storage(":local:rel").unwrap().0,
            Storage::Local("rel".into())
        );
        assert_eq!(
            storage("./has:colon").unwrap().0,
            Storage::Local("./has:colon".into())
        );
        assert_eq!(storage(":memory:").unwrap().0, Storage::Memory);
        let e = storage("missing:").unwrap_err();
        assert!(e.starts_with("PATH") && e.contains("\"missing\""), "{e}");
        let e = storage("cloud:").unwrap_err();
        assert!(e.contains("cloud") && e.contains("\"drive\""), "{e}");
        // A remote set in the environment alone; with no config file at the default place.
        let env = HashMap::from([
            ("HOME".to_string(), dir.join("nohome").display().to_string()),
            (
                "RCLONE_CONFIG_ENVDISK_TYPE".to_string(),
                "local".to_string(),
            ),
        ]);
        let c = Config::from_args_env(&args(&["envdisk:/x"]), &env).unwrap();
        assert_eq!(c.storage, Storage::Local("/x".into()));
        // A --config that is not there names no remotes, as in rclone; connection strings
        // still work without it.
        let e = Config::from_args_env(&args(&["--config=/nonexistent/r.conf", "disk:"]), &env)
            .unwrap_err();
        assert!(e.contains("disk"), "{e}");
        let c = Config::from_args_env(&args(&["--config=/nonexistent/r.conf", ":local:/y"]), &env)
            .unwrap();
        assert_eq!(c.storage, Storage::Local("/y".into()));
        assert!(
            c.storage_notes[0].contains("not found"),
            "{:?}",
            c.storage_notes
        );
        // One that cannot be read is an error naming it.
        let e = Config::from_args_env(&args(&["--config=/", "disk:"]), &env).unwrap_err();
        assert!(e.starts_with("--config"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn s3_remotes_take_their_options() {
        let upstream = |path: &str, env: &[(&str, &str)]| {
            let env: HashMap<String, String> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::from_args_env(&args(&[path]), &env).map(|c| match c.storage {
                Storage::Upstream(u) => (*u, c.storage_notes),
                other => panic!("{other:?}"),
            })
        };
        let (u, notes) = upstream(
            ":s3,provider=Minio,endpoint='http://h:9000',access_key_id=A,secret_access_key=S,\
             acl=private,bucket_acl=public-read,location_constraint=eu-west-1,\
             upload_cutoff=10Mi,chunk_size=8Mi,upload_concurrency=2,force_path_style=false,\
             storage_class=GLACIER:b/p",
            &[],
        )
        .unwrap();
        assert_eq!(
            (u.endpoint.as_str(), u.path.as_str()),
            ("http://h:9000", "b/p")
        );
        assert_eq!(u.keys, Some(("A".into(), "S".into())));
        assert!(!u.path_style);
        assert_eq!(u.writes.acl.as_deref(), Some("private"));
        assert_eq!(u.writes.bucket_acl.as_deref(), Some("public-read"));
        assert_eq!(u.writes.location_constraint.as_deref(), Some("eu-west-1"));
        assert_eq!(
            (u.writes.upload_cutoff, u.writes.chunk_size),
            (10 << 20, 8 << 20)
        );
        assert_eq!(u.writes.upload_concurrency, 2);
        assert!(
            notes.iter().any(|n| n.contains("storage_class")),
            "{notes:?}"
        );
        // No cutoff unless one is set; the object ACL serves buckets too when bucket_acl is
        // unset.
        let (u, _) = upstream(":s3,provider=Other,endpoint='http://h',acl=private:", &[]).unwrap();
        assert_eq!(u.writes.bucket_acl.as_deref(), Some("private"));
        assert_eq!(
            (u.writes.upload_cutoff, u.writes.chunk_size),
            (u64::MAX, 5 << 20)
        );
        assert!(u.path_style && u.keys.is_none());
        // RCLONE_S3_<OPT> fills in what the string leaves out; env_auth reads AWS_*.
        let (u, _) = upstream(
            ":s3,env_auth=true:",
            &[
                ("RCLONE_S3_REGION", "eu-central-1"),
                ("AWS_ACCESS_KEY_ID", "EK"),
                ("AWS_SECRET_ACCESS_KEY", "ES"),
            ],
        )
        .unwrap();
        assert_eq!(u.region, "eu-central-1");
        assert_eq!(u.endpoint, "https://s3.eu-central-1.amazonaws.com");
        assert_eq!(u.keys, Some(("EK".into(), "ES".into())));
        // Errors name the remote and the option.
        let e = upstream(":s3,provider=Minio:", &[]).unwrap_err();
        assert!(e.contains(":s3") && e.contains("endpoint"), "{e}");
        let e = upstream(":s3,endpoint=http,access_key_id=A:", &[]).unwrap_err();
        assert!(e.contains("secret_access_key"), "{e}");
        let e = upstream(":s3,endpoint='http://h',upload_cutoff=lots:", &[]).unwrap_err();
        assert!(e.contains("upload_cutoff"), "{e}");
    }
}
