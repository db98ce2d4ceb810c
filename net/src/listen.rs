//! Binding the listeners, as non-blocking sockets a runtime can adopt.

use std::io;
use std::net::SocketAddr;

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
pub fn bind_tcp(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s)
}

/// Returns the address `s` is bound to.
///
/// # Errors
///
/// The error of `getsockname`, or an address that is not IP.
pub fn local_addr(s: &Socket) -> io::Result<SocketAddr> {
    s.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("socket address is not an IP address"))
}

/// Binds the admin listener on `addr` with `transport`, and returns it with the transport in
/// use (never [`AdminTransport::Auto`]). With [`AdminTransport::Auto`], when the kernel has no
/// SCTP, logs a warning and binds TCP on the same address and port.
///
/// # Errors
///
/// With [`AdminTransport::Sctp`] and no SCTP in the kernel: an error that says so. Otherwise
/// any error of binding.
pub fn bind_admin(
    addr: SocketAddr,
    transport: AdminTransport,
) -> io::Result<(Socket, AdminTransport)> {
    let tcp = |addr| bind_tcp(addr).map(|s| (s, AdminTransport::Tcp));
    match transport {
        AdminTransport::Tcp => tcp(addr),
        AdminTransport::Sctp => match sctp::listen(addr, BACKLOG) {
            Ok(s) => Ok((s, AdminTransport::Sctp)),
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
            Ok(s) => Ok((s, AdminTransport::Sctp)),
            Err(e) if sctp::is_unsupported(&e) => {
                tracing::warn!(
                    %addr,
                    error = %e,
                    "this kernel has no SCTP: serving the admin protocol over TCP on the same \
                     address and port instead (use --admin-transport to choose explicitly)"
                );
                tcp(addr)
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
        let (l, transport) =
            bind_admin("127.0.0.1:0".parse().unwrap(), AdminTransport::Auto).unwrap();
        let unsupported = sctp::socket("127.0.0.1:0".parse().unwrap())
            .err()
            .is_some_and(|e| sctp::is_unsupported(&e));
        let expected = if unsupported {
            AdminTransport::Tcp
        } else {
            AdminTransport::Sctp
        };
        assert_eq!(transport, expected);
        assert_ne!(local_addr(&l).unwrap().port(), 0);
    }

    #[test]
    fn forced_sctp_fails_clearly_without_sctp() {
        let addr = "127.0.0.1:0".parse().unwrap();
        match bind_admin(addr, AdminTransport::Sctp) {
            Ok((_, t)) => assert_eq!(t, AdminTransport::Sctp),
            Err(e) => assert!(e.to_string().contains("no SCTP"), "{e}"),
        }
    }
}
