//! The `s3serve` binary: parse flags, start the server, wait for a signal.
//! SIGINT and SIGTERM drain in-flight requests and exit 0; SIGHUP reopens the log file.

use std::process::ExitCode;

use s3serve::config::{Config, Storage};
use s3serve::{cli, logger, server};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    tune_malloc();
    let args = match cli::parse_args_env(std::env::args_os().skip(1), std::env::vars_os()) {
        Ok(a) => a,
        Err(e) => return fail(&e.to_string()),
    };
    if args.help {
        print!("{}", cli::HELP);
        return ExitCode::SUCCESS;
    }
    if args.version {
        println!("s3serve {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if let Err(e) = logger::init(config.log_level, config.log_file.clone()) {
        return fail(&format!("--log-file: {e}"));
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(config.umask));
    // Signals are blocked into the iterator before any thread starts.
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => return fail(&format!("installing signal handlers: {e}")),
    };
    let running = match server::start(&config) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    announce_environment(&args);
    announce(&config, &running.listening);
    for sig in signals.forever() {
        match sig {
            SIGHUP => logger::reopen(),
            _ => break,
        }
    }
    log::warn!("shutting down: finishing requests in flight");
    running.shutdown();
    ExitCode::SUCCESS
}

/// Names (never values: they hold secrets) of the `RCLONE_*` variables used and ignored.
fn announce_environment(args: &cli::Args) {
    if !args.env_used.is_empty() {
        log::info!("flags from the environment: {}", args.env_used.join(", "));
    }
    if !args.env_ignored.is_empty() {
        log::warn!(
            "ignoring environment variables for flags s3serve does not have: {}",
            args.env_ignored.join(", ")
        );
    }
}

fn announce(config: &Config, listening: &[String]) {
    for note in &config.storage_notes {
        log::warn!("{note}");
    }
    match &config.storage {
        Storage::Local(p) => log::warn!(
            "serving {}",
            std::fs::canonicalize(p).unwrap_or(p.clone()).display()
        ),
        Storage::Memory => log::warn!("serving an in-memory store (contents are lost on exit)"),
        Storage::Upstream(u) => log::warn!("serving {}:{} at {}", u.label, u.path, u.endpoint),
        Storage::AuthProxy(p) => log::warn!(
            "serving, for each access key, the backend that {:?} names (answers kept for {}s)",
            p.program,
            p.cache_time.as_secs_f64()
        ),
    }
    let proxied = matches!(config.storage, Storage::AuthProxy(_));
    if config.auth_keys.is_empty() && !proxied {
        log::warn!(
            "no --auth-key (or RCLONE_AUTH_KEY) given: access is anonymous, anyone who can connect can read and write"
        );
    }
    for l in listening {
        log::warn!("listening on {l}");
    }
    if !config.unix_sockets.is_empty() && !config.auth_keys.is_empty() && !proxied {
        log::warn!("requests on unix sockets are not authenticated: the socket file's permissions decide who may connect");
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("s3serve: {msg}");
    ExitCode::from(2)
}

/// glibc's malloc raises its mmap threshold each time a large block is freed; after that the
/// relays' 256 KiB buffers (one pair per connection, each on its own thread) come from the
/// per-thread arenas, which keep them once the connection ends. Idle RSS then grew with
/// every burst of connections (scripts/harden/soak.py: 10.7 MiB to 14.8 MiB in a minute).
/// A fixed threshold keeps blocks of 128 KiB and more in mmap, given back when freed; no
/// small request allocates one.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    /// From glibc's malloc.h.
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only sets an allocator parameter; it is called before any other thread
    // exists, and glibc takes its own lock around the change.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
