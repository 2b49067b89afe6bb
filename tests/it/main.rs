//! Integration tests: each starts s3serve in-process on 127.0.0.1:0 over a temporary
//! directory and drives it with a real S3 client crate (rusty-s3 signing, ureq sending) and
//! with raw HTTP for the edge cases a client library would refuse to send.

mod fault;
mod harness;

mod auth;
mod binary;
mod buckets;
mod cache;
mod chunked;
mod cors;
mod faults;
mod list;
mod multipart;
mod objects;
mod safety;
mod upstream;
