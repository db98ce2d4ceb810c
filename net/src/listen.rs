//! Binding the listeners, as non-blocking std sockets a runtime can adopt.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

use crate::options::AdminTransport;
use crate::sctp;

/// Listen backlog of every listener.
pub const BACKLOG: i32 = 1024;

/// Binds a non-blocking TCP listener on `addr` with `SO_REUSEADDR` (so a restarted server
/// can bind while old connections sit in `TIME_WAIT`).
///
/// # Errors
///
/// Any error of `socket`, `bind` or `listen`.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// A bound admin listener: SCTP (one-to-one) or TCP.
#[derive(Debug)]
pub enum AdminListener {
    /// SCTP: the admin session uses `Framing::Message`.
    Sctp(Socket),
    /// TCP: the admin session uses `Framing::Stream`.
    Tcp(TcpListener),
}

impl AdminListener {
    /// Returns the bound address.
    ///
    /// # Errors
    ///
    /// The error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Sctp(s) => s
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("SCTP listener address is not an IP address")),
            Self::Tcp(l) => l.local_addr(),
        }
    }

    /// Returns the transport actually in use (never [`AdminTransport::Auto`]).
    pub fn transport(&self) -> AdminTransport {
        match self {
            Self::Sctp(_) => AdminTransport::Sctp,
            Self::Tcp(_) => AdminTransport::Tcp,
        }
    }
}

/// Binds the admin listener on `addr` with `transport`. With [`AdminTransport::Auto`], when
/// the kernel has no SCTP, logs a warning and binds TCP on the same address and port.
///
/// # Errors
///
/// With [`AdminTransport::Sctp`] and no SCTP in the kernel: an error that says so. Otherwise
/// any error of binding.
pub fn bind_admin(addr: SocketAddr, transport: AdminTransport) -> io::Result<AdminListener> {
    match transport {
        AdminTransport::Tcp => bind_tcp(addr).map(AdminListener::Tcp),
        AdminTransport::Sctp => match sctp::listen(addr, BACKLOG) {
            Ok(s) => Ok(AdminListener::Sctp(s)),
            Err(e) if sctp::is_unsupported(&e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "admin transport sctp: this kernel has no SCTP ({e}); load the sctp \
                     module or use --admin-transport tcp"
                ),
            )),
            Err(e) => Err(e),
        },
        AdminTransport::Auto => match sctp::listen(addr, BACKLOG) {
            Ok(s) => Ok(AdminListener::Sctp(s)),
            Err(e) if sctp::is_unsupported(&e) => {
                tracing::warn!(
                    %addr,
                    error = %e,
                    "this kernel has no SCTP: serving the admin protocol over TCP on the same \
                     address and port instead (use --admin-transport to choose explicitly)"
                );
                bind_tcp(addr).map(AdminListener::Tcp)
            }
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_to_tcp_or_uses_sctp() {
        let l = bind_admin("127.0.0.1:0".parse().unwrap(), AdminTransport::Auto).unwrap();
        let unsupported = sctp::socket("127.0.0.1:0".parse().unwrap())
            .err()
            .is_some_and(|e| sctp::is_unsupported(&e));
        let expected = if unsupported {
            AdminTransport::Tcp
        } else {
            AdminTransport::Sctp
        };
        assert_eq!(l.transport(), expected);
        assert_ne!(l.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn forced_sctp_fails_clearly_without_sctp() {
        let addr = "127.0.0.1:0".parse().unwrap();
        match bind_admin(addr, AdminTransport::Sctp) {
            Ok(l) => assert_eq!(l.transport(), AdminTransport::Sctp),
            Err(e) => assert!(e.to_string().contains("no SCTP"), "{e}"),
        }
    }
}
