//! The upstream-S3 backend: an S3 store served as ours ([`Upstream`]), through the signed
//! S3 calls it makes ([`client`]) over HTTP with our own TLS ([`http`]).

pub mod client;
pub mod http;
pub mod multipart;
mod store;
mod streams;
mod uploads;

pub use store::{Chunks, Upstream, Writes};
