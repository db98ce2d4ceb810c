//! Options shared by every transport.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use socks5d_core::admin::Dialect;
use socks5d_core::guard::ThrottlePolicy;

/// Which transport the admin listener uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminTransport {
    /// SCTP; if the kernel has no SCTP (`EPROTONOSUPPORT`), warn and use TCP on the same
    /// address and port.
    #[default]
    Auto,
    /// SCTP only: fail if the kernel has no SCTP.
    Sctp,
    /// TCP only.
    Tcp,
}

impl AdminTransport {
    /// Returns the name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Sctp => "sctp",
            Self::Tcp => "tcp",
        }
    }
}

impl fmt::Display for AdminTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not `auto`, `sctp` or `tcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseAdminTransportError;

impl fmt::Display for ParseAdminTransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected one of: auto, sctp, tcp")
    }
}

impl std::error::Error for ParseAdminTransportError {}

impl FromStr for AdminTransport {
    type Err = ParseAdminTransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "sctp" => Ok(Self::Sctp),
            "tcp" => Ok(Self::Tcp),
            _ => Err(ParseAdminTransportError),
        }
    }
}

/// How a transport serves its listeners. The settings an administrator can change at run time
/// (buffer size, timeouts, sniffing, clean-up) live in `socks5d_core::state::State`, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Admin protocol dialect.
    pub dialect: Dialect,
    /// Admin listener transport (used by [`crate::bind_admin`]).
    pub admin_transport: AdminTransport,
    /// At most this many SOCKS client connections at once; further clients wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// At most this many authenticated admin sessions at once.
    pub max_admin_connections: usize,
    /// At most this many admin connections that have not authenticated yet; when full, the
    /// oldest of them is closed to make room (so sockets held open by someone who cannot log
    /// in never lock an administrator out).
    pub max_unauthenticated_admin: usize,
    /// A relay one of whose directions has ended, with no byte moved for this long, is
    /// closed, whether the clean-up routine is on or not (no CLOSE-WAIT pile-up), by the
    /// [`housekeeping`](crate::server::housekeeping) within one of its ticks.
    pub half_close_timeout: Duration,
    /// Whether BIND (RFC 1928 §4) is served; `0x07` otherwise.
    pub allow_bind: bool,
    /// Whether UDP ASSOCIATE (RFC 1928 §7) is served; `0x07` otherwise.
    pub allow_udp: bool,
    /// The address the UDP ASSOCIATE reply advertises (behind NAT or a load balancer); by
    /// default the control connection's local address, where the relay socket is bound.
    pub udp_advertise: Option<std::net::IpAddr>,
    /// On shutdown, how long to wait for open connections to finish closing.
    pub shutdown_grace: Duration,
    /// The back-off after failed logins (admin: per address; SOCKS5: per address and user
    /// name): 1 s doubling to 60 s by default.
    pub login_backoff: ThrottlePolicy,
    /// How long a resolved name is kept (`socks5d_core::resolve`; failures for at most 5 s);
    /// zero: every domain request asks the resolver.
    pub dns_cache_ttl: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            dialect: Dialect::Draft,
            admin_transport: AdminTransport::Auto,
            max_connections: 10_000,
            max_admin_connections: 16,
            max_unauthenticated_admin: 64,
            half_close_timeout: Duration::from_secs(60),
            allow_bind: true,
            allow_udp: true,
            udp_advertise: None,
            login_backoff: ThrottlePolicy::default(),
            shutdown_grace: Duration::from_secs(2),
            dns_cache_ttl: socks5d_core::resolve::DEFAULT_TTL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_transport_parses() {
        assert_eq!("auto".parse(), Ok(AdminTransport::Auto));
        assert_eq!("SCTP".parse(), Ok(AdminTransport::Sctp));
        assert_eq!("tcp".parse(), Ok(AdminTransport::Tcp));
        assert_eq!(
            "udp".parse::<AdminTransport>(),
            Err(ParseAdminTransportError)
        );
        for t in [
            AdminTransport::Auto,
            AdminTransport::Sctp,
            AdminTransport::Tcp,
        ] {
            assert_eq!(t.to_string().parse(), Ok(t));
        }
    }
}
