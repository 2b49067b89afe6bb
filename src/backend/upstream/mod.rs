//! The upstream-S3 backend's foundations: HTTP to an S3 store over our own TLS ([`http`]),
//! and the signed S3 calls it makes ([`client`]).

pub mod client;
pub mod http;
