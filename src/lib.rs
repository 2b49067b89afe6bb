//! s3serve: a small, fast S3 server for a directory. The data path runs
//! `server` (listeners, worker pool) → `s3` (routing, auth, HTTP framing) → `ops` (one
//! function per S3 operation) → `vfs` (ETags, locks, cleanup) → `backend` (local, memory).

pub mod backend;
pub mod cli;
pub mod config;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod json;
pub mod logger;
pub mod ops;
pub mod s3;
pub mod server;
pub mod sigv4;
pub mod temps;
pub mod util;
pub mod vfs;
pub mod xml;
