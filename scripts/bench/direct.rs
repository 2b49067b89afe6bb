//! The benchmark's baseline: the same S3 handler behind tiny_http serving TCP directly (with
//! TCP_NODELAY and workers calling `recv` themselves), with none of the relay's protections.
//! Never a way to run s3serve; it exists to measure what the protected front costs.
//!
//! direct ADDR PATH [WORKERS]

use std::net::TcpListener;
use std::sync::Arc;

use s3serve::config::{Config, Storage};
use s3serve::s3::{self, Peer};
use s3serve::server::build_app;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect("ADDR");
    let root = args.next().expect("PATH");
    let workers: usize = args.next().map_or(16, |w| w.parse().expect("WORKERS"));
    let mut config = Config::for_tests(Storage::Local(root.into()));
    config.workers = workers;
    let app = Arc::new(build_app(&config).expect("opening the directory"));
    let listener = TcpListener::bind(&addr).expect("binding");
    rustix::net::sockopt::set_tcp_nodelay(&listener, true).expect("TCP_NODELAY");
    let server = Arc::new(tiny_http::Server::from_listener(listener, None).expect("tiny_http"));
    eprintln!("direct: listening on {addr}");
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (server, app) = (server.clone(), app.clone());
            std::thread::spawn(move || {
                let peer = Peer::new("direct", 0, 0, false);
                while let Ok(rq) = server.recv() {
                    s3::handle(&app, rq, &peer);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}
