//! Command-line recognition: turns argv into a typed [`Args`] and nothing more.
//!
//! This is the first of the two CLI steps (`main -> cli -> config`): it knows every flag's
//! name, whether it takes a value and that value's type, and it keeps rclone's spellings and
//! defaults so that `s3serve` can stand in for `rclone serve s3`. It reads no files and checks
//! no combinations of flags; `Config::from_args` does that. Every error names the flag it is
//! about, and flags that rclone has but s3serve does not build yet are refused as such rather
//! than as typos. The value parsers for rclone's `Duration`, `SizeSuffix` and `FileMode` types
//! are public so that later steps can read the same syntax from other places.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::vfs::filter::FilterOptions;
use lexopt::{Arg, Parser};

mod env;
pub mod remote;
mod values;
pub use values::{parse_duration, parse_file_mode, parse_size};

/// rclone's default listen address.
const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Flags of `rclone serve s3` (its own and its filter group) that s3serve does not build yet.
/// Kept apart from the parse arms so that a user gets "not supported yet", not "unknown flag".
#[rustfmt::skip]
const NOT_YET_SUPPORTED: &[&str] = &[
    "disable-multipart-streaming", "gid", "htpasswd", "link-perms",
    "metadata-max-objects", "multipart-streaming-buffer-limit",
    "multipart-streaming-buffer-total", "no-checksum", "no-seek", "pass",
    "realm", "salt", "uid",
    "user", "user-from-header", "vfs-block-norm-dupes",
    "vfs-case-insensitive", "vfs-disk-space-total-size",
    "vfs-handle-caching", "vfs-links", "vfs-metadata-extension",
    "vfs-read-wait", "vfs-used-is-size",
    "vfs-write-wait",
];

/// The `-h`/`--help` text, laid out like rclone's.
pub const HELP: &str = "\
s3serve serves a local directory over the Amazon S3 protocol.

It stands in for `rclone serve s3`: the flags below keep rclone's names,
meanings and defaults. Other flags of rclone serve s3 are refused as not
supported yet.

Usage:
  s3serve [FLAGS] PATH
  s3serve [FLAGS] --auth-proxy PROGRAM

PATH is a local directory, :memory:, or a remote as rclone names one: name:path
from the config file, or a connection string (:local:/srv/data).

Every flag can also be set as RCLONE_<FLAG> in the environment (upper case,
`-` as `_`); the command line wins. Repeatable flags take a CSV list there:
RCLONE_AUTH_KEY='\"id1,secret1\",\"id2,secret2\"'.

Flags:
      --addr stringArray      IPaddress:Port or :Port to bind server to (default 127.0.0.1:8080)
      --allow-origin string   Origin which cross-domain request (CORS) can be executed from (comma-separated list, or *)
      --auth-key stringArray  Set key pair for v4 authorization: access_key_id,secret_access_key
      --auth-proxy string     A program to use to create the backend from the auth (then no PATH)
      --baseurl string        Prefix for URLs - leave blank for root
      --cert string           TLS PEM key (concatenation of certificate and CA certificate)
      --cache-dir string      Directory rclone will use for caching (default \"$HOME/.cache/rclone\")
      --client-ca string      Client certificate authority to verify clients with
      --config string         Config file naming remotes (default \"$HOME/.config/rclone/rclone.conf\")
      --dir-cache-time Duration  Time to cache directory entries for (default 5m0s)
      --dir-perms FileMode    Directory permissions (default 777)
      --etag-hash string      Which hash to use for the ETag: MD5, SHA1, SHA256, auto, or blank for off (default \"MD5\")
      --force-path-style      If true use path style access if false use virtual hosted style (default true)
      --file-perms FileMode   File permissions (default 666)
  -h, --help                  Print this help and exit
      --idle-timeout Duration Close connections idle, or stalled mid-request, for this long (default 2m0s)
      --key string            TLS PEM Private key
      --log-file string       Log everything to this file (default standard error)
      --low-level-retries int Number of low level retries to do to an S3 upstream (default 10)
      --contimeout Duration   Connect timeout to an S3 upstream (default 1m0s)
      --timeout Duration      IO idle timeout to an S3 upstream (default 5m0s)
      --log-level string      Log level DEBUG|INFO|NOTICE|ERROR (default \"NOTICE\")
      --max-connections int   Maximum number of open client connections, 0 for automatic (default 0)
      --max-header-bytes int  Maximum size of request header, plus 4 KiB as in rclone (default 4096)
      --min-tls-version string  Minimum TLS version that is acceptable (default \"tls1.0\", which means TLS 1.2)
      --multipart-expiry Duration     Abort incomplete multipart uploads idle for longer than this, 0 to keep forever (default 1d)
      --multipart-max-uploads int     Maximum number of multipart uploads in progress at once, 0 for unlimited (default 1000)
      --no-cleanup            Not to cleanup empty folder after object is deleted
      --no-modtime            Don't read/write the modification time (can speed things up)
  -q, --quiet                 Print as little stuff as possible
      --read-only             Only allow read-only access
      --server-read-timeout Duration   Timeout for server reading data (default 1h0m0s)
      --server-write-timeout Duration  Timeout for server writing data (default 1h0m0s)
      --response-header stringArray  Set HTTP header for all responses, overriding existing values (\"Name: value\")
      --umask FileMode        Override the permission bits set by the filesystem (default 022)
  -v, --verbose count         Print lots more stuff (repeat for more)
  -V, --version               Print the version number and exit
      --transfers int         Number of file transfers to run in parallel (default 4)
      --vfs-cache-max-age Duration  Max time since last access of objects in the cache (default 1h0m0s)
      --vfs-cache-max-size SizeSuffix  Max total size of objects in the cache (default off)
      --vfs-cache-min-free-space SizeSuffix  Target minimum free space on the disk containing the cache (default off)
      --vfs-cache-mode CacheMode  Cache mode off|minimal|writes|full (default off)
      --vfs-cache-poll-interval Duration  Interval to poll the cache for stale objects (default 1m0s)
      --vfs-fast-fingerprint  Use fast (less accurate) fingerprints for change detection
      --vfs-read-ahead SizeSuffix  Extra read ahead over --buffer-size when using cache-mode full
      --poll-interval Duration  Time to wait between polling for changes (not supported by local or s3 remotes)
      --vfs-refresh           Refreshes the directory cache recursively in the background on start
      --vfs-write-back Duration  Time to writeback files after last use when using cache (default 5s)
      --vfs-read-chunk-size SizeSuffix  Read from an S3 upstream in chunks of this size (default 128Mi)
      --vfs-read-chunk-streams int  The number of parallel streams to read at once (default 0)
      --vfs-read-chunk-size-limit SizeSuffix  Double the chunk size after each chunk up to this (default off)
      --vhost-domain string   Base domain of virtual-hosted-style requests (bucket.DOMAIN), with --force-path-style=false
      --workers int           Number of threads serving requests (default automatic)

Filter flags (rclone's; paths are matched from the served root, so the bucket is
the first segment; an excluded object is not listed, read, written or deleted):
      --delete-excluded                     Accepted for rclone's sake; has no effect when serving
      --exclude stringArray                 Exclude files matching pattern
      --exclude-from stringArray            Read file exclude patterns from file (use - to read from stdin)
      --exclude-if-present stringArray      Exclude directories if filename is present
      --files-from stringArray              Read list of source-file names from file (use - to read from stdin)
      --files-from-raw stringArray          Read list of source-file names from file without any processing of lines (use - to read from stdin)
      --files-from0 stringArray             Read list of source-file names from file using NUL as separator (use - to read from stdin)
  -f, --filter stringArray                  Add a file filtering rule
      --filter-from stringArray             Read file filtering patterns from a file (use - to read from stdin)
      --hash-filter string                  Partition filenames by hash k/n or randomly @/n
      --ignore-case                         Ignore case in filters (case insensitive)
      --include stringArray                 Include files matching pattern
      --include-from stringArray            Read file include patterns from file (use - to read from stdin)
      --max-age Duration                    Only serve files younger than this in s or suffix ms|s|m|h|d|w|M|y (default off)
      --max-depth int                       If set limits the recursion depth to this; the bucket is depth 1 (default -1)
      --max-size SizeSuffix                 Only serve files smaller than this in KiB or suffix B|K|M|G|T|P (default off)
      --metadata-exclude stringArray        Exclude metadatas matching pattern
      --metadata-exclude-from stringArray   Read metadata exclude patterns from file (use - to read from stdin)
      --metadata-filter stringArray         Add a metadata filtering rule
      --metadata-filter-from stringArray    Read metadata filtering patterns from a file (use - to read from stdin)
      --metadata-include stringArray        Include metadatas matching pattern
      --metadata-include-from stringArray   Read metadata include patterns from file (use - to read from stdin)
      --min-age Duration                    Only serve files older than this in s or suffix ms|s|m|h|d|w|M|y (default off)
      --min-size SizeSuffix                 Only serve files bigger than this in KiB or suffix B|K|M|G|T|P (default off)
";

/// Every recognised flag, type-checked but not yet interpreted.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub addrs: Vec<String>,
    pub auth_keys: Vec<(String, String)>,
    /// `--auth-proxy`: the program (with its arguments) that maps access keys to backends.
    pub auth_proxy: Option<String>,
    pub read_only: bool,
    pub no_cleanup: bool,
    /// `MD5`, `SHA1`, `SHA256`, or empty for no ETag.
    pub etag_hash: String,
    /// Without leading or trailing `/`; empty serves from the root.
    pub baseurl: String,
    /// `--force-path-style` (default true); false enables virtual-hosted style.
    pub force_path_style: bool,
    /// `--vhost-domain` (ours): the domain buckets are subdomains of.
    pub vhost_domain: String,
    /// `--response-header "Name: value"`, repeatable: set on every response.
    pub response_headers: Vec<String>,
    /// `--allow-origin`: origins allowed cross-site (comma-separated, or `*`); empty = no CORS.
    pub allow_origin: String,
    pub file_perms: u32,
    pub dir_perms: u32,
    pub umask: u32,
    pub no_modtime: bool,
    pub verbose: u8,
    pub quiet: bool,
    /// `DEBUG`, `INFO`, `NOTICE` or `ERROR`.
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
    /// `--config`: the rclone config file that names remotes (`""`: none).
    pub config: Option<PathBuf>,
    pub workers: Option<usize>,
    pub multipart_expiry: Duration,
    pub multipart_max_uploads: usize,
    /// `--low-level-retries`: retries of an upstream request that can be sent again.
    pub low_level_retries: u32,
    /// `--contimeout` and `--timeout`: connecting to, and waiting on, an upstream.
    pub contimeout: Duration,
    pub timeout: Duration,
    /// `--vfs-read-chunk-size` and `--vfs-read-chunk-size-limit` (`None`: off).
    pub vfs_read_chunk_size: u64,
    pub vfs_read_chunk_size_limit: Option<u64>,
    pub dir_cache_time: Duration,
    /// The file cache's flags (see `crate::vfs::cache`).
    pub cache_dir: Option<PathBuf>,
    pub vfs_cache_mode: crate::vfs::cache::Mode,
    pub vfs_write_back: Duration,
    pub vfs_cache_max_age: Duration,
    pub vfs_cache_max_size: Option<u64>,
    pub vfs_cache_min_free_space: Option<u64>,
    pub vfs_cache_poll_interval: Duration,
    pub vfs_read_ahead: u64,
    pub transfers: usize,
    pub vfs_fast_fingerprint: bool,
    pub vfs_refresh: bool,
    pub vfs_read_chunk_streams: usize,
    /// `--poll-interval`: accepted; no backend s3serve serves can notify changes.
    pub poll_interval: Option<Duration>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    /// `tls1.0` … `tls1.3`.
    /// `--min-tls-version`, when given: `tls1.0` … `tls1.3`. Unset means rclone's default
    /// (`tls1.0`), which rustls serves as TLS 1.2 without comment.
    pub min_tls_version: Option<String>,
    pub max_header_bytes: usize,
    pub server_read_timeout: Duration,
    pub server_write_timeout: Duration,
    /// `--idle-timeout` (ours).
    pub idle_timeout: Duration,
    /// `--max-connections` (ours); 0 sizes the cap from the descriptor limit.
    pub max_connections: usize,
    pub path: Option<String>,
    /// `RCLONE_*` variables that set a flag, by name (never by value: they hold secrets).
    pub env_used: Vec<String>,
    /// `RCLONE_*` variables for flags s3serve does not have, ignored as rclone ignores those
    /// meant for other commands; start-up logs them.
    pub env_ignored: Vec<String>,
    /// The filter flags.
    pub filter: FilterOptions,
    /// `--delete-excluded`: accepted, and without effect on a server.
    pub delete_excluded: bool,
    pub help: bool,
    pub version: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            addrs: vec![DEFAULT_ADDR.to_owned()],
            auth_keys: Vec::new(),
            auth_proxy: None,
            read_only: false,
            no_cleanup: false,
            etag_hash: "MD5".to_owned(),
            baseurl: String::new(),
            allow_origin: String::new(),
            response_headers: Vec::new(),
            force_path_style: true,
            vhost_domain: String::new(),
            file_perms: 0o666,
            dir_perms: 0o777,
            umask: 0o022,
            no_modtime: false,
            verbose: 0,
            quiet: false,
            log_level: None,
            log_file: None,
            config: None,
            workers: None,
            multipart_expiry: Duration::from_secs(86_400),
            dir_cache_time: Duration::from_secs(300),
            cache_dir: None,
            vfs_cache_mode: crate::vfs::cache::Mode::Off,
            vfs_write_back: Duration::from_secs(5),
            vfs_cache_max_age: Duration::from_secs(3600),
            vfs_cache_max_size: None,
            vfs_cache_min_free_space: None,
            vfs_cache_poll_interval: Duration::from_secs(60),
            vfs_read_ahead: 0,
            transfers: 4,
            vfs_fast_fingerprint: false,
            vfs_refresh: false,
            vfs_read_chunk_streams: 0,
            poll_interval: None,
            multipart_max_uploads: 1000,
            low_level_retries: 10,
            contimeout: Duration::from_secs(60),
            timeout: Duration::from_secs(300),
            vfs_read_chunk_size: 128 << 20,
            vfs_read_chunk_size_limit: None,
            cert: None,
            key: None,
            client_ca: None,
            min_tls_version: None,
            max_header_bytes: 4096,
            server_read_timeout: Duration::from_secs(3600),
            server_write_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(120),
            max_connections: 0,
            path: None,
            env_used: Vec::new(),
            env_ignored: Vec::new(),
            filter: FilterOptions::default(),
            delete_excluded: false,
            help: false,
            version: false,
        }
    }
}

/// A command-line error; the message names the flag, e.g. `--umask: invalid file mode "9"`.
#[derive(Debug, Clone, PartialEq)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

fn flag_error(flag: &str, message: impl std::fmt::Display) -> CliError {
    CliError(format!("{flag}: {message}"))
}

/// Parses the arguments after argv[0], with no environment. `--addr` defaults to
/// 127.0.0.1:8080 only when none is given.
pub fn parse_args<I>(args: I) -> Result<Args, CliError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    parse_args_env(args, std::iter::empty::<(OsString, OsString)>())
}

/// Parses the arguments after argv[0] over the `RCLONE_*` variables of `env`, with rclone's
/// precedence: a variable sets its flag's starting value, so the command line wins; for a
/// repeatable flag the variable is a CSV list and the command line adds to it.
pub fn parse_args_env<I, E>(args: I, env: E) -> Result<Args, CliError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
    E: IntoIterator<Item = (OsString, OsString)>,
{
    let mut parsed = Args {
        addrs: Vec::new(),
        ..Args::default()
    };
    env::apply(&mut parsed, env)?;
    let mut parser = Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(from_lexopt)? {
        match arg {
            Arg::Value(value) => parsed.set_path(value)?,
            Arg::Short(c) => parsed.apply_short(c, &mut parser)?,
            Arg::Long(name) => {
                let flag = format!("--{name}");
                if !parsed.apply_long(&flag, &mut parser)? {
                    return Err(unrecognised(&flag));
                }
            }
        }
    }
    if parsed.addrs.is_empty() {
        parsed.addrs.push(DEFAULT_ADDR.to_owned());
    }
    Ok(parsed)
}

impl Args {
    fn apply_short(&mut self, c: char, p: &mut Parser) -> Result<(), CliError> {
        match c {
            'v' => self.verbose = self.verbose.saturating_add(1),
            'q' => self.quiet = true,
            'h' => self.help = true,
            'V' => self.version = true,
            'f' => self.filter.rules.filter.push(text(p, "-f")?),
            _ => return Err(flag_error(&format!("-{c}"), "unknown flag")),
        }
        Ok(())
    }

    /// Applies one long flag, taking its value from `p`; `Ok(false)` when s3serve has no such
    /// flag.
    fn apply_long(&mut self, flag: &str, p: &mut Parser) -> Result<bool, CliError> {
        match flag {
            "--addr" => self.addrs.push(typed(p, flag, |s| Ok(s.to_owned()))?),
            "--auth-key" => self.auth_keys.push(typed(p, flag, parse_auth_key)?),
            "--auth-proxy" => {
                let program = typed(p, flag, |s| Ok(s.trim().to_owned()))?;
                self.auth_proxy = (!program.is_empty()).then_some(program);
            }
            "--read-only" => self.read_only = switch(p, flag)?,
            "--no-cleanup" => self.no_cleanup = switch(p, flag)?,
            "--etag-hash" => self.etag_hash = typed(p, flag, parse_etag_hash)?,
            "--baseurl" => self.baseurl = typed(p, flag, |s| Ok(s.trim_matches('/').to_owned()))?,
            "--force-path-style" => self.force_path_style = switch(p, flag)?,
            "--vhost-domain" => self.vhost_domain = typed(p, flag, |s| Ok(s.trim().to_owned()))?,
            "--response-header" => {
                self.response_headers
                    .push(typed(p, flag, |s| Ok(s.to_owned()))?)
            }
            "--allow-origin" => self.allow_origin = typed(p, flag, |s| Ok(s.trim().to_owned()))?,
            "--file-perms" => self.file_perms = typed(p, flag, parse_file_mode)?,
            "--dir-perms" => self.dir_perms = typed(p, flag, parse_file_mode)?,
            "--umask" => self.umask = typed(p, flag, parse_file_mode)?,
            "--no-modtime" => self.no_modtime = switch(p, flag)?,
            "--verbose" => self.verbose = self.verbose.saturating_add(1),
            "--quiet" => self.quiet = switch(p, flag)?,
            "--log-level" => self.log_level = Some(typed(p, flag, parse_log_level)?),
            "--log-file" => self.log_file = Some(PathBuf::from(raw_value(p, flag)?)),
            "--config" => self.config = Some(PathBuf::from(raw_value(p, flag)?)),
            "--workers" => self.workers = Some(typed(p, flag, parse_workers)?),
            "--multipart-expiry" => self.multipart_expiry = typed(p, flag, parse_duration)?,
            "--dir-cache-time" => self.dir_cache_time = typed(p, flag, parse_duration)?,
            "--cache-dir" => self.cache_dir = Some(PathBuf::from(raw_value(p, flag)?)),
            "--vfs-cache-mode" => {
                self.vfs_cache_mode = typed(p, flag, |s| {
                    crate::vfs::cache::Mode::parse(s)
                        .ok_or_else(|| format!("expected off, minimal, writes or full, got {s:?}"))
                })?
            }
            "--vfs-write-back" => self.vfs_write_back = typed(p, flag, parse_duration)?,
            "--vfs-cache-max-age" => self.vfs_cache_max_age = typed(p, flag, parse_duration)?,
            "--vfs-cache-max-size" => self.vfs_cache_max_size = typed(p, flag, parse_size)?,
            "--vfs-cache-min-free-space" => {
                self.vfs_cache_min_free_space = typed(p, flag, parse_size)?
            }
            "--vfs-cache-poll-interval" => {
                self.vfs_cache_poll_interval = typed(p, flag, parse_duration)?
            }
            "--vfs-read-ahead" => self.vfs_read_ahead = typed(p, flag, parse_size)?.unwrap_or(0),
            "--transfers" => self.transfers = typed(p, flag, parse_count)?.max(1),
            "--vfs-fast-fingerprint" => self.vfs_fast_fingerprint = switch(p, flag)?,
            "--vfs-refresh" => self.vfs_refresh = switch(p, flag)?,
            "--vfs-read-chunk-streams" => {
                self.vfs_read_chunk_streams = typed(p, flag, parse_count)?
            }
            "--poll-interval" => self.poll_interval = Some(typed(p, flag, parse_duration)?),
            "--contimeout" => self.contimeout = typed(p, flag, parse_duration)?,
            "--timeout" => self.timeout = typed(p, flag, parse_duration)?,
            "--low-level-retries" => {
                self.low_level_retries = typed(p, flag, |s| {
                    s.parse::<u32>()
                        .map_err(|_| format!("expected a number, got {s:?}"))
                })?
            }
            "--vfs-read-chunk-size" => {
                self.vfs_read_chunk_size = typed(p, flag, parse_size)?.unwrap_or(0)
            }
            "--vfs-read-chunk-size-limit" => {
                self.vfs_read_chunk_size_limit = typed(p, flag, parse_size)?
            }
            "--multipart-max-uploads" => {
                self.multipart_max_uploads = typed(p, flag, |s| {
                    s.parse::<usize>()
                        .map_err(|_| format!("expected a number, got {s:?}"))
                })?
            }
            "--cert" => self.cert = Some(PathBuf::from(raw_value(p, flag)?)),
            "--key" => self.key = Some(PathBuf::from(raw_value(p, flag)?)),
            "--client-ca" => self.client_ca = Some(PathBuf::from(raw_value(p, flag)?)),
            "--min-tls-version" => self.min_tls_version = Some(typed(p, flag, parse_tls_version)?),
            "--max-header-bytes" => self.max_header_bytes = typed(p, flag, parse_count)?,
            "--server-read-timeout" => self.server_read_timeout = typed(p, flag, parse_duration)?,
            "--server-write-timeout" => self.server_write_timeout = typed(p, flag, parse_duration)?,
            "--idle-timeout" => self.idle_timeout = typed(p, flag, parse_duration)?,
            "--max-connections" => self.max_connections = typed(p, flag, parse_count)?,
            "--help" => self.help = true,
            "--delete-excluded" => self.delete_excluded = switch(p, flag)?,
            "--ignore-case" => self.filter.ignore_case = switch(p, flag)?,
            "--hash-filter" => self.filter.hash_filter = text(p, flag)?,
            "--min-age" => self.filter.min_age = typed(p, flag, parse_duration_off)?,
            "--max-age" => self.filter.max_age = typed(p, flag, parse_duration_off)?,
            "--min-size" => self.filter.min_size = typed(p, flag, parse_size)?,
            "--max-size" => self.filter.max_size = typed(p, flag, parse_size)?,
            "--max-depth" => self.filter.max_depth = typed(p, flag, parse_depth)?,
            _ if filter_list(&mut self.filter, flag).is_some() => {
                let value = text(p, flag)?;
                filter_list(&mut self.filter, flag)
                    .expect("matched above")
                    .push(value);
            }
            "--version" => self.version = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn set_path(&mut self, value: OsString) -> Result<(), CliError> {
        let value = value
            .into_string()
            .map_err(|v| CliError(format!("PATH: {v:?} is not valid UTF-8")))?;
        if self.path.is_some() {
            return Err(CliError(format!(
                "PATH: unexpected second path {value:?} (s3serve serves one directory)"
            )));
        }
        self.path = Some(value);
        Ok(())
    }
}

/// The list a repeatable filter flag adds to.
fn filter_list<'a>(f: &'a mut FilterOptions, flag: &str) -> Option<&'a mut Vec<String>> {
    let (rules, name) = match flag.strip_prefix("--metadata-") {
        Some(name) => (&mut f.metadata, name),
        None => (&mut f.rules, flag.strip_prefix("--")?),
    };
    Some(match name {
        "filter" => &mut rules.filter,
        "filter-from" => &mut rules.filter_from,
        "include" => &mut rules.include,
        "include-from" => &mut rules.include_from,
        "exclude" => &mut rules.exclude,
        "exclude-from" => &mut rules.exclude_from,
        _ if flag.starts_with("--metadata-") => return None,
        "exclude-if-present" => &mut f.exclude_if_present,
        "files-from" => &mut f.files_from,
        "files-from-raw" => &mut f.files_from_raw,
        "files-from0" => &mut f.files_from0,
        _ => return None,
    })
}

/// A Duration flag where `off` (the default) is None.
fn parse_duration_off(s: &str) -> Result<Option<Duration>, String> {
    parse_duration(s).map(|d| (d != Duration::MAX).then_some(d))
}

/// `--max-depth`: a negative number is no limit.
fn parse_depth(s: &str) -> Result<Option<usize>, String> {
    let n: i64 = s.parse().map_err(|_| format!("invalid number {s:?}"))?;
    Ok(usize::try_from(n).ok())
}

/// A string flag's value.
fn text(p: &mut Parser, flag: &str) -> Result<String, CliError> {
    typed(p, flag, |s| Ok(s.to_owned()))
}

fn unrecognised(flag: &str) -> CliError {
    let name = flag.trim_start_matches('-');
    if NOT_YET_SUPPORTED.contains(&name) {
        flag_error(flag, "not supported yet by s3serve")
    } else {
        flag_error(flag, "unknown flag")
    }
}

fn from_lexopt(error: lexopt::Error) -> CliError {
    match error {
        lexopt::Error::MissingValue {
            option: Some(option),
        } => flag_error(&option, "missing value"),
        lexopt::Error::UnexpectedValue { option, .. } => flag_error(&option, "takes no value"),
        other => CliError(other.to_string()),
    }
}

fn raw_value(p: &mut Parser, flag: &str) -> Result<OsString, CliError> {
    p.value().map_err(|_| flag_error(flag, "missing value"))
}

/// Takes the flag's value and converts it, prefixing any error with the flag name.
fn typed<T>(
    p: &mut Parser,
    flag: &str,
    convert: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, CliError> {
    let value = raw_value(p, flag)?
        .into_string()
        .map_err(|_| flag_error(flag, "value is not valid UTF-8"))?;
    convert(&value).map_err(|message| flag_error(flag, message))
}

/// A boolean flag, optionally with `=true` or `=false` as rclone's flag library allows.
fn switch(p: &mut Parser, flag: &str) -> Result<bool, CliError> {
    let Some(value) = p.optional_value() else {
        return Ok(true);
    };
    match value.to_str() {
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        _ => Err(flag_error(
            flag,
            format!("expected true or false, got {value:?}"),
        )),
    }
}

fn parse_auth_key(s: &str) -> Result<(String, String), String> {
    // The message never repeats the value: it holds a secret.
    match s.split_once(',') {
        Some((id, secret)) if !id.is_empty() && !secret.is_empty() && !secret.contains(',') => {
            Ok((id.to_owned(), secret.to_owned()))
        }
        _ => Err("expected ACCESS_KEY_ID,SECRET_ACCESS_KEY".to_owned()),
    }
}

fn parse_count(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .map_err(|_| format!("expected a number, got {s:?}"))
}

fn parse_tls_version(s: &str) -> Result<String, String> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "tls1.0" | "tls1.1" | "tls1.2" | "tls1.3" => Ok(lower),
        _ => Err(format!(
            "expected tls1.0, tls1.1, tls1.2 or tls1.3, got {s:?}"
        )),
    }
}

fn parse_etag_hash(s: &str) -> Result<String, String> {
    let upper = s.to_ascii_uppercase();
    match upper.as_str() {
        "" | "MD5" | "SHA1" | "SHA256" => Ok(upper),
        // rclone's auto takes the backend's first hash, which for a local directory is MD5.
        "AUTO" => Ok("MD5".to_owned()),
        _ => Err(format!(
            "unsupported hash {s:?} (use MD5, SHA1, SHA256, or blank for no ETag)"
        )),
    }
}

fn parse_log_level(s: &str) -> Result<String, String> {
    let upper = s.to_ascii_uppercase();
    match upper.as_str() {
        "DEBUG" | "INFO" | "NOTICE" | "ERROR" => Ok(upper),
        _ => Err(format!(
            "unknown log level {s:?} (use DEBUG, INFO, NOTICE or ERROR)"
        )),
    }
}

fn parse_workers(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("expected a number of threads >= 1, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, CliError> {
        parse_args(args.iter().copied())
    }

    fn error(args: &[&str]) -> String {
        parse(args).unwrap_err().0
    }

    #[test]
    fn defaults() {
        let args = parse(&["/srv"]).unwrap();
        let expected = Args {
            path: Some("/srv".to_owned()),
            ..Args::default()
        };
        assert_eq!(args, expected);
        assert_eq!(args.addrs, vec!["127.0.0.1:8080"]);
        assert_eq!(args.etag_hash, "MD5");
        assert_eq!(
            (args.file_perms, args.dir_perms, args.umask),
            (0o666, 0o777, 0o022)
        );
        assert_eq!(parse(&[]).unwrap().path, None);
    }

    #[test]
    fn addr_repeats_and_replaces_default() {
        let args = parse(&["--addr", ":9000", "--addr=[::1]:9001"]).unwrap();
        assert_eq!(args.addrs, vec![":9000", "[::1]:9001"]);
        assert_eq!(error(&["--addr"]), "--addr: missing value");
    }

    #[test]
    fn auth_key_pairs() {
        let args = parse(&["--auth-key", "AK,SK", "--auth-key=ak2,sk2"]).unwrap();
        let pairs = [("AK", "SK"), ("ak2", "sk2")].map(|(a, s)| (a.to_owned(), s.to_owned()));
        assert_eq!(args.auth_keys, pairs);
        for bad in ["AKSK", ",SK", "AK,", "A,B,C"] {
            // The message must not echo the value, which holds a secret.
            let expected = "--auth-key: expected ACCESS_KEY_ID,SECRET_ACCESS_KEY";
            assert_eq!(error(&["--auth-key", bad]), expected);
        }
    }

    #[test]
    fn switches() {
        let args = parse(&["--read-only", "--no-cleanup", "--no-modtime"]).unwrap();
        assert!(args.read_only && args.no_cleanup && args.no_modtime);
        assert!(!parse(&["--read-only=false"]).unwrap().read_only);
        assert!(parse(&["--read-only=true"]).unwrap().read_only);
        assert!(error(&["--read-only=maybe"]).starts_with("--read-only: "));
        assert_eq!(error(&["--help=x"]), "--help: takes no value");
    }

    #[test]
    fn etag_hash_values() {
        assert_eq!(
            parse(&["--etag-hash", "sha256"]).unwrap().etag_hash,
            "SHA256"
        );
        assert_eq!(parse(&["--etag-hash=Sha1"]).unwrap().etag_hash, "SHA1");
        assert_eq!(parse(&["--etag-hash="]).unwrap().etag_hash, "");
        assert_eq!(parse(&["--etag-hash", "auto"]).unwrap().etag_hash, "MD5");
        assert!(error(&["--etag-hash", "crc32"]).starts_with("--etag-hash: "));
    }

    #[test]
    fn baseurl_is_trimmed() {
        assert_eq!(parse(&["--baseurl", "/s3/"]).unwrap().baseurl, "s3");
        assert_eq!(parse(&["--baseurl=a/b"]).unwrap().baseurl, "a/b");
        assert_eq!(parse(&["--baseurl", "/"]).unwrap().baseurl, "");
    }

    #[test]
    fn perms_flags() {
        let args = parse(&[
            "--file-perms",
            "0644",
            "--dir-perms=0o755",
            "--umask",
            "002",
        ]);
        let args = args.unwrap();
        assert_eq!(
            (args.file_perms, args.dir_perms, args.umask),
            (0o644, 0o755, 0o002)
        );
        assert_eq!(error(&["--umask", "9"]), "--umask: invalid file mode \"9\"");
    }

    #[test]
    fn verbosity_and_logging() {
        assert_eq!(parse(&["-vv"]).unwrap().verbose, 2);
        assert_eq!(parse(&["-v", "-v", "--verbose"]).unwrap().verbose, 3);
        assert!(parse(&["-q"]).unwrap().quiet && parse(&["--quiet"]).unwrap().quiet);
        let args = parse(&["--log-level", "debug", "--log-file=/tmp/s3.log"]).unwrap();
        assert_eq!(args.log_level.as_deref(), Some("DEBUG"));
        assert_eq!(args.log_file, Some(PathBuf::from("/tmp/s3.log")));
        assert!(error(&["--log-level", "loud"]).starts_with("--log-level: "));
    }

    #[test]
    fn multipart_flags() {
        let d = parse(&[]).unwrap();
        assert_eq!(
            (d.multipart_expiry, d.multipart_max_uploads),
            (Duration::from_secs(86_400), 1000)
        );
        assert_eq!(parse(&[]).unwrap().dir_cache_time, Duration::from_secs(300));
        let a = parse(&["--dir-cache-time", "0"]).unwrap();
        assert!(a.dir_cache_time.is_zero());
        let a = parse(&["--multipart-expiry", "1h", "--multipart-max-uploads=0"]).unwrap();
        assert_eq!(
            (a.multipart_expiry, a.multipart_max_uploads),
            (Duration::from_secs(3600), 0)
        );
        assert!(error(&["--multipart-expiry", "soon"]).starts_with("--multipart-expiry: "));
        assert!(error(&["--multipart-max-uploads", "-1"]).starts_with("--multipart-max-uploads: "));
    }

    #[test]
    fn workers() {
        assert_eq!(parse(&["--workers", "8"]).unwrap().workers, Some(8));
        assert!(error(&["--workers", "0"]).starts_with("--workers: "));
        assert!(error(&["--workers=many"]).starts_with("--workers: "));
    }

    #[test]
    fn cache_flags_keep_rclones_defaults() {
        use crate::vfs::cache::Mode;
        let d = parse(&[]).unwrap();
        assert_eq!(d.vfs_cache_mode, Mode::Off);
        assert_eq!(d.vfs_write_back, Duration::from_secs(5));
        assert_eq!(d.vfs_cache_max_age, Duration::from_secs(3600));
        assert_eq!(d.vfs_cache_poll_interval, Duration::from_secs(60));
        assert_eq!((d.transfers, d.vfs_cache_max_size), (4, None));
        let a = parse(&[
            "--vfs-cache-mode=writes",
            "--vfs-write-back",
            "1h",
            "--vfs-cache-max-size",
            "10M",
            "--transfers=2",
            "--cache-dir=/c",
        ])
        .unwrap();
        assert_eq!(a.vfs_cache_mode, Mode::Writes);
        assert_eq!(a.vfs_write_back, Duration::from_secs(3600));
        assert_eq!(a.vfs_cache_max_size, Some(10 << 20));
        assert_eq!(a.transfers, 2);
        assert_eq!(a.cache_dir.as_deref(), Some(std::path::Path::new("/c")));
    }

    #[test]
    fn help_and_version() {
        assert!(parse(&["-h"]).unwrap().help && parse(&["--help"]).unwrap().help);
        assert!(parse(&["-V"]).unwrap().version && parse(&["--version"]).unwrap().version);
    }

    #[test]
    fn help_lists_recognised_flags() {
        let flags = HELP
            .lines()
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")));
        for flag in flags {
            if let Err(CliError(message)) = parse(&[flag, "1"]) {
                assert!(!message.ends_with("unknown flag"), "{message}");
                assert!(!message.contains("not supported"), "{message}");
            }
        }
    }

    #[test]
    fn unknown_and_unsupported_flags() {
        assert_eq!(error(&["--bogus"]), "--bogus: unknown flag");
        assert_eq!(error(&["-x"]), "-x: unknown flag");
        assert_eq!(
            error(&["--htpasswd", "h"]),
            "--htpasswd: not supported yet by s3serve"
        );
        assert!(error(&["--min-tls-version", "ssl3"]).starts_with("--min-tls-version: expected"));
        assert!(error(&["--max-header-bytes", "-1"]).starts_with("--max-header-bytes: expected"));
        assert_eq!(
            error(&["--vfs-read-wait=1s"]),
            "--vfs-read-wait: not supported yet by s3serve"
        );
        assert!(error(&["--vfs-cache-mode=most"]).starts_with("--vfs-cache-mode: expected"));
        for name in NOT_YET_SUPPORTED {
            let message = error(&[&format!("--{name}"), "x"]);
            assert_eq!(message, format!("--{name}: not supported yet by s3serve"));
        }
    }

    #[test]
    fn filter_flags() {
        let a = parse(&[
            "-f",
            "+ *.txt",
            "--filter=- *",
            "--include",
            "i",
            "--exclude-from",
            "e",
            "--metadata-include",
            "m",
            "--files-from0",
            "z",
            "--exclude-if-present",
            ".x",
            "--min-size",
            "1",
            "--max-age",
            "2d",
            "--max-depth",
            "-1",
            "--ignore-case",
            "--hash-filter",
            "1/2",
            "d",
        ])
        .unwrap();
        let f = &a.filter;
        assert_eq!(f.rules.filter, ["+ *.txt", "- *"]);
        assert_eq!(
            (&f.rules.include[..], &f.rules.exclude_from[..]),
            (&["i".to_string()][..], &["e".to_string()][..])
        );
        assert_eq!(f.metadata.include, ["m"]);
        assert_eq!(
            (&f.files_from0[..], &f.exclude_if_present[..]),
            (&["z".to_string()][..], &[".x".to_string()][..])
        );
        assert_eq!(
            (f.min_size, f.max_age),
            (Some(1024), Some(Duration::from_secs(2 * 86_400)))
        );
        assert_eq!(
            (f.max_depth, f.ignore_case, f.hash_filter.as_str()),
            (None, true, "1/2")
        );
        assert_eq!(
            parse(&["--max-depth", "2", "d"]).unwrap().filter.max_depth,
            Some(2)
        );
        assert_eq!(
            parse(&["--min-age", "off", "d"]).unwrap().filter.min_age,
            None
        );
        assert!(error(&["--metadata-files-from", "x"]).contains("unknown flag"));
    }

    #[test]
    fn positionals() {
        assert_eq!(
            parse(&["--read-only", "dir"]).unwrap().path.as_deref(),
            Some("dir")
        );
        assert_eq!(
            parse(&["--", "-dir"]).unwrap().path.as_deref(),
            Some("-dir")
        );
        assert!(error(&["a", "b"]).starts_with("PATH: "));
    }
}
