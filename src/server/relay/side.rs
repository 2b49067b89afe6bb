//! The client end of a relayed connection, plain or TLS, as the relay drives it.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

/// The client end of a connection: plain (TCP, unix socket) or TLS. Non-blocking.
pub trait Side {
    fn fd(&self) -> BorrowedFd<'_>;
    /// Plaintext from the client; `Ok(0)` at its end; `WouldBlock` when none is ready.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Takes plaintext for the client, maybe less than offered.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// Sends what is buffered; `WouldBlock` while the socket is full.
    fn flush(&mut self) -> io::Result<()>;
    /// Output is buffered that [`Side::flush`] has not sent yet.
    fn buffered(&self) -> bool;
    /// The side must read even when no plaintext is wanted (a TLS handshake in progress).
    fn needs_read(&self) -> bool;
    /// Ends the stream towards the client, cleanly.
    fn close(&mut self);
    /// The socket, when file bodies may be sent to it with sendfile(2).
    fn raw_socket(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

/// A plain socket.
pub struct Plain<S>(pub S);

impl<S: Read + Write + AsFd> Side for Plain<S> {
    fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn buffered(&self) -> bool {
        false
    }
    fn needs_read(&self) -> bool {
        false
    }
    fn close(&mut self) {
        let _ = rustix::net::shutdown(self.0.as_fd(), rustix::net::Shutdown::Write);
    }
    fn raw_socket(&self) -> Option<BorrowedFd<'_>> {
        Some(self.0.as_fd())
    }
}
