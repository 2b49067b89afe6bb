//! A small `log` backend: one line per record with a UTC timestamp, to stderr or to
//! `--log-file`. SIGHUP reopens the file so log rotation works.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

struct Logger {
    level: log::LevelFilter,
    path: Option<PathBuf>,
    file: Mutex<Option<File>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

fn open(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Installs the logger once per process; later calls are ignored.
pub fn init(level: log::LevelFilter, path: Option<PathBuf>) -> std::io::Result<()> {
    let file = match &path {
        Some(p) => Some(open(p)?),
        None => None,
    };
    if LOGGER
        .set(Logger {
            level,
            path,
            file: Mutex::new(file),
        })
        .is_ok()
    {
        if let Some(l) = LOGGER.get() {
            let _ = log::set_logger(l);
            log::set_max_level(level);
        }
    }
    Ok(())
}

/// Reopens `--log-file` (after rotation).
pub fn reopen() {
    let Some(l) = LOGGER.get() else { return };
    let Some(path) = &l.path else { return };
    match open(path) {
        Ok(f) => *l.file.lock().unwrap_or_else(|p| p.into_inner()) = Some(f),
        Err(e) => eprintln!("s3serve: reopening {}: {e}", path.display()),
    }
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format!(
            "{} {:<5} {}\n",
            crate::util::iso8601(SystemTime::now()),
            r.level(),
            r.args()
        );
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match file.as_mut() {
            Some(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}
