//! Operator policy, as sans-IO decisions the driver asks for: access rules, connection
//! limits, bandwidth, and the egress address.
//!
//! | type | what |
//! |---|---|
//! | [`Rules`] | client rules and destination rules, first match wins (Dante-style); see its docs for the order of checks around name resolution |
//! | [`Limits`] | concurrent connections per user and per client address, new connections per second per address, handshakes in progress; RAII guards |
//! | [`Bucket`] | a token bucket per user and direction, fair between the user's connections |
//! | [`Egress`] | the local address (per family) outgoing connections use, and which families a name may resolve to |
//!
//! Every type here is shared by the connection tasks (`Arc`), takes `&self`, holds a
//! [`std::sync::Mutex`] or [`std::sync::RwLock`] for a short critical section at most, never
//! reads a clock (time is an input, `now: Instant`) and never does I/O. A reload builds new
//! values first and swaps them in whole ([`SharedRules::store`], [`Limits::set_config`]):
//! a check sees the old policy or the new one, never a mix, and live sessions are kept.

mod bucket;
mod limits;
mod rules;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

pub use bucket::{default_burst, Bucket, BucketHandle, Granted, Rate, MIN_QUANTUM};
pub use limits::{HandshakeGuard, Hit, IpGuard, Limits, LimitsConfig, UserGuard, UserLimits};
pub use rules::{
    canonical_ip, Action, Cidr, CidrError, ClientRule, DecidedBy, DestMatch, DestRule, Rules,
    SharedRules, Verdict, PROTECTED,
};

use crate::socks5::ReplyCode;

/// Locks a mutex, carrying on if a thread panicked while holding it (every critical section
/// here leaves the data consistent).
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The local addresses outgoing connections are bound to: at most one IPv4 and one IPv6
/// address; the family of the destination picks. `Egress::default()` binds nothing (the
/// kernel chooses) and reaches both families.
///
/// With only one family's address, destinations of the other family are unreachable
/// ([`Egress::source_for`] answers `0x03`, network unreachable) and a name is resolved to
/// that family only (the driver keeps the addresses [`Egress::reaches`] accepts, e.g. with
/// [`Egress::retain_reachable`], before handing them to the handshake). An IPv4-mapped IPv6
/// destination counts as IPv4 (the driver dials [`canonical_ip`] of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Egress {
    /// The source of IPv4 connections.
    pub v4: Option<Ipv4Addr>,
    /// The source of IPv6 connections.
    pub v6: Option<Ipv6Addr>,
}

/// Why a list of egress addresses was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Two addresses of one family.
    #[error("two {family} egress addresses ({first} and {second}): give at most one per family")]
    TwoOfAFamily {
        /// "IPv4" or "IPv6".
        family: &'static str,
        /// The first one.
        first: IpAddr,
        /// The second one.
        second: IpAddr,
    },
    /// An unspecified, multicast or broadcast address, which no connection can come from.
    #[error("{0} cannot be the source of a connection")]
    NotUnicast(IpAddr),
}

impl Egress {
    /// Makes the egress of a list of at most one address per family (an IPv4-mapped IPv6
    /// address counts as IPv4).
    ///
    /// # Errors
    ///
    /// [`EgressError`] for two of a family or an address no connection can come from.
    pub fn from_addrs(addrs: &[IpAddr]) -> Result<Self, EgressError> {
        let mut e = Self::default();
        for &a in addrs {
            match canonical_ip(a) {
                IpAddr::V4(v4) => {
                    if v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
                        return Err(EgressError::NotUnicast(a));
                    }
                    if let Some(first) = e.v4 {
                        return Err(EgressError::TwoOfAFamily {
                            family: "IPv4",
                            first: first.into(),
                            second: a,
                        });
                    }
                    e.v4 = Some(v4);
                }
                IpAddr::V6(v6) => {
                    if v6.is_unspecified() || v6.is_multicast() {
                        return Err(EgressError::NotUnicast(a));
                    }
                    if let Some(first) = e.v6 {
                        return Err(EgressError::TwoOfAFamily {
                            family: "IPv6",
                            first: first.into(),
                            second: a,
                        });
                    }
                    e.v6 = Some(v6);
                }
            }
        }
        Ok(e)
    }

    /// Tells whether anything is bound.
    pub fn is_default(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    /// Tells whether a destination of this family can be reached.
    pub fn reaches(&self, dest: IpAddr) -> bool {
        self.source_for(dest).is_ok()
    }

    /// Returns the local address to bind before connecting to `dest` (`None`: let the
    /// kernel choose; port 0 either way).
    ///
    /// # Errors
    ///
    /// [`ReplyCode::NetworkUnreachable`] when only the other family has an egress address.
    pub fn source_for(&self, dest: IpAddr) -> Result<Option<SocketAddr>, ReplyCode> {
        if self.is_default() {
            return Ok(None);
        }
        let src = match canonical_ip(dest) {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        };
        src.map(|ip| Some(SocketAddr::new(ip, 0)))
            .ok_or(ReplyCode::NetworkUnreachable)
    }

    /// Keeps the resolved addresses this egress reaches (resolver order kept).
    pub fn retain_reachable(&self, addrs: &mut Vec<SocketAddr>) {
        addrs.retain(|a| self.reaches(a.ip()));
    }
}

/// The egress of every user: a server-wide one and per-user replacements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressTable {
    /// The server-wide egress (`--outgoing-addr`).
    pub default: Egress,
    /// Per-user egress, replacing the server-wide one whole (both families) for that user.
    pub users: HashMap<Bytes, Egress>,
}

impl EgressTable {
    /// Returns the egress of `user` (anonymous: the server-wide one).
    pub fn for_user(&self, user: Option<&[u8]>) -> &Egress {
        user.and_then(|u| self.users.get(u))
            .unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests;
