//! TLS with rustls: the server configuration from `--cert`, `--key`, `--client-ca` and
//! `--min-tls-version`, the TLS side of a relayed connection, and the log of failed
//! handshakes (a refused client certificate is otherwise invisible to both sides' users).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::Level;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, CertificateError, RootCertStore, ServerConfig, ServerConnection};

use super::relay::Side;
use crate::config::TlsFiles;

/// Plaintext and records rustls may buffer per connection before it pushes back.
const TLS_BUFFER: usize = 512 * 1024;

/// Failed handshakes logged per window; a scanner or a misconfigured client in a loop must
/// not flood the log.
const FAILURES_PER_WINDOW: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// What the TLS listeners share: the rustls configuration and the failed-handshake log.
pub struct TlsServer {
    config: Arc<ServerConfig>,
    failures: Mutex<FailureWindow>,
}

struct FailureWindow {
    started: Instant,
    logged: u32,
    dropped: u64,
}

impl FailureWindow {
    fn new(now: Instant) -> FailureWindow {
        FailureWindow {
            started: now,
            logged: 0,
            dropped: 0,
        }
    }

    /// Whether a failure at `now` may be logged, and how many went unlogged in the window
    /// that `now` ends (to be reported first).
    fn admit(&mut self, now: Instant) -> (bool, u64) {
        let mut ended = 0;
        if now.duration_since(self.started) >= FAILURE_WINDOW {
            ended = self.dropped;
            *self = FailureWindow::new(now);
        }
        if self.logged >= FAILURES_PER_WINDOW {
            self.dropped += 1;
            return (false, ended);
        }
        self.logged += 1;
        (true, ended)
    }
}

impl TlsServer {
    /// Reads the files and builds the configuration; errors name the file or flag at fault.
    pub fn new(files: &TlsFiles) -> Result<Arc<TlsServer>, String> {
        Ok(Arc::new(TlsServer {
            config: server_config(files)?,
            failures: Mutex::new(FailureWindow::new(Instant::now())),
        }))
    }

    /// Logs a failed handshake with its peer and reason, within the rate limit.
    fn failed(&self, peer: &TcpStream, error: &rustls::Error) {
        let (log_it, unlogged) = self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(Instant::now());
        if unlogged > 0 {
            log::warn!("{unlogged} more failed TLS handshakes in the last minute were not logged");
        }
        if !log_it {
            return;
        }
        let peer = peer
            .peer_addr()
            .map_or_else(|_| "a client".to_string(), |a| a.to_string());
        let (level, reason) = describe(error);
        log::log!(level, "TLS handshake with {peer} failed: {reason}");
    }
}

/// Why a handshake failed, in the user's terms, and how loud to say it: a refused client
/// certificate is a configuration problem to show by default; other failures (scanners,
/// plain HTTP on a TLS port, clients that distrust our certificate) show with `-v`.
fn describe(error: &rustls::Error) -> (Level, String) {
    use rustls::Error as E;
    match error {
        E::NoCertificatesPresented => (
            Level::Warn,
            "the client sent no certificate, and --client-ca requires one".into(),
        ),
        E::InvalidCertificate(why) => (
            Level::Warn,
            format!("its client certificate was refused: {}", certificate(why)),
        ),
        E::AlertReceived(alert) => {
            let hint = match alert {
                AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::CertificateUnknown => {
                    " (the client does not trust the server certificate)"
                }
                _ => "",
            };
            (
                Level::Info,
                format!("the client sent alert {alert:?}{hint}"),
            )
        }
        E::InvalidMessage(_) => (
            Level::Info,
            format!("{error} (not TLS: plain HTTP to a TLS port?)"),
        ),
        other => (Level::Info, other.to_string()),
    }
}

fn certificate(why: &CertificateError) -> String {
    match why {
        CertificateError::UnknownIssuer => {
            "it is not signed by a certificate in --client-ca".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet".into()
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "it is not for client authentication (extendedKeyUsage lacks clientAuth)".into()
        }
        // webpki's error type is not public; its name is the only handle on it.
        CertificateError::Other(other)
            if format!("{other:?}").contains("UnsupportedCertVersion") =>
        {
            "it is an X.509 v1 certificate, and only v3 certificates are accepted; the README \
             shows how to make one"
                .into()
        }
        other => other.to_string(),
    }
}

/// Builds the rustls configuration; every error names the file or flag at fault.
fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&files.cert, "--cert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "--key {}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
            files.key.display()
        )
    })?;
    let versions: &[&rustls::SupportedProtocolVersion] = if files.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12, &rustls::version::TLS13]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("--min-tls-version: {e}"))?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(path, "--client-ca")? {
                roots
                    .add(c)
                    .map_err(|e| format!("--client-ca {}: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--client-ca {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "--cert {} / --key {}: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

/// A TLS connection: records on a non-blocking socket, plaintext to and from the relay.
pub struct Tls {
    conn: ServerConnection,
    sock: TcpStream,
    eof: bool,
    server: Arc<TlsServer>,
}

impl Tls {
    pub fn new(server: Arc<TlsServer>, sock: TcpStream) -> io::Result<Tls> {
        let mut conn = ServerConnection::new(server.config.clone()).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(TLS_BUFFER));
        Ok(Tls {
            conn,
            sock,
            eof: false,
            server,
        })
    }

    /// Sends the alert for a failed handshake, as far as the socket takes it.
    fn send_alert(&mut self) {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.sock).is_err() {
                break;
            }
        }
    }
}

impl Side for Tls {
    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the TCP stream without close_notify: end of stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.eof {
                return Ok(0);
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => self.eof = true,
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        if self.conn.is_handshaking() {
                            self.server.failed(&self.sock, &e);
                        }
                        self.send_alert();
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    // Handshake answers go out at once.
                    let _ = self.flush();
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        Ok(())
    }

    fn buffered(&self) -> bool {
        self.conn.wants_write()
    }

    fn needs_read(&self) -> bool {
        self.conn.is_handshaking() && !self.eof
    }

    fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
        let _ = rustix::net::shutdown(self.sock.as_fd(), rustix::net::Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_handshakes_are_logged_at_most_ten_a_minute() {
        let start = Instant::now();
        let mut w = FailureWindow::new(start);
        let admitted = (0..25).filter(|_| w.admit(start).0).count();
        assert_eq!(admitted, 10);
        // The next window logs again, after reporting the 15 left out.
        let later = start + FAILURE_WINDOW;
        assert_eq!(w.admit(later), (true, 15));
        assert_eq!(w.admit(later), (true, 0));
        // A quiet window reports nothing.
        assert_eq!(w.admit(later + FAILURE_WINDOW * 3), (true, 0));
    }

    #[test]
    fn refused_client_certificates_are_named_and_loud() {
        let (level, why) = describe(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(level, Level::Warn);
        assert!(why.contains("--client-ca"), "{why}");
        let (level, why) = describe(&rustls::Error::NoCertificatesPresented);
        assert_eq!(level, Level::Warn);
        assert!(why.contains("no certificate"), "{why}");
        let alert = rustls::Error::AlertReceived(AlertDescription::UnknownCA);
        let (level, why) = describe(&alert);
        assert_eq!(level, Level::Info);
        assert!(
            why.contains("does not trust the server certificate"),
            "{why}"
        );
    }
}
