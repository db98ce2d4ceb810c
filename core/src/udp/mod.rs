//! The datagram side of SOCKS5 UDP ASSOCIATE (RFC 1928 §7): the UDP request [`Header`] and
//! [`Association`], a sans-IO state machine for one association.
//!
//! The TCP side (the UDP ASSOCIATE request and its reply) belongs to the SOCKS5 handshake;
//! the association is tied to that control connection: the driver creates an `Association`
//! when it answers the request, and drops it when the control connection ends ("A UDP
//! association terminates when the TCP connection that the UDP ASSOCIATE request arrived on
//! terminates", RFC 1928 §6). Idle expiry is not here either: the clean-up routine closes idle
//! associations through their control connection.
//!
//! # The run loop
//!
//! The driver owns the sockets and the resolver. After each `handle_*` call it drains
//! [`Association::poll_event`] until `None`, acting on every [`UdpEvent`] in order, then reads
//! [`Association::poll_timeout`] and sleeps no later than that deadline before calling
//! [`Association::handle_timeout`]:
//!
//! - [`UdpEvent::ToRemote`]: send `payload` to `to` (the header is already stripped);
//! - [`UdpEvent::ToClient`]: send `datagram` (header and payload) to the client at `to`;
//! - [`UdpEvent::Resolve`]: resolve `host` without blocking the association's other
//!   traffic, and report with [`Association::handle_resolved`];
//! - [`UdpEvent::Dropped`]: nothing to do (it is counted in [`Association::stats`]); a debug
//!   log line at most.
//!
//! Every `handle_*` call first fires the deadlines that passed (as `handle_timeout` does),
//! which drops the datagrams of resolutions that timed out; then `handle_datagram` queues at
//! most one event for its datagram, and `handle_resolved` one per datagram that waited for the
//! name. Datagrams waiting for names are at most [`UdpLimits::max_queued`], so the event queue
//! stays within `max_queued + 1` entries for a driver that drains it after every call.
//!
//! # Sockets and address families
//!
//! Every datagram the driver receives, on whichever of its sockets, goes to
//! [`Association::handle_datagram`] with its source address: the association tells clients
//! from destinations by address alone. Addresses are compared in canonical form (an
//! IPv4-mapped IPv6 address `::ffff:a.b.c.d` is the IPv4 address `a.b.c.d`; flow info and
//! scope id are ignored), so a dual-stack socket that reports IPv4 peers in mapped form works
//! unchanged.
//!
//! The client may use one family and a destination the other. `ToRemote::to` is canonical
//! (never IPv4-mapped), so the driver picks the socket by `to.is_ipv4()`: either one socket
//! per family (a second, ephemeral socket of the other family, opened when first needed), or
//! one dual-stack IPv6 socket, in which case it writes an IPv4 `to` as its mapped IPv6 form.
//! A driver that cannot send to a family (no such socket, or the host has no route) drops the
//! datagram; the association cannot learn about it, as UDP gives no delivery report anyway.
//! `ToClient::to` is the client's source address exactly as the driver reported it for the
//! client's latest datagram, so it can be sent on the socket the client uses.
//!
//! # Decisions where RFC 1928 is silent
//!
//! - **Who the client is.** "It MUST drop any datagrams arriving from any source IP address
//!   other than the one recorded for the particular association" (§7). The recorded IP is the
//!   control connection's peer IP. The request's DST fields name the client's expected
//!   *source* (never a destination): their port, if not zero, is the only client port
//!   accepted; port zero means "learn it": the first datagram from the client's IP whose
//!   header is well formed fixes the port for the rest of the association (a malformed one
//!   does not, so garbage cannot claim the association). The request's DST.ADDR is ignored,
//!   zero or not, and so is a domain name there: a client behind NAT names its private
//!   address, and the control connection's IP is the one the relay sees.
//! - **Replies.** A datagram from an address the association has sent to (a destination,
//!   same IP and port) is a reply: it is sent to the client with a header carrying the
//!   destination's IP address and port (for a destination the client named by domain name,
//!   its resolved IP, not the name). Datagrams from anywhere else, including the client's IP
//!   with another port, are dropped ([`DropReason::Foreign`]), whether or not a reply
//!   from a host never sent to would be useful; whether Dante does the same by default was
//!   not verified. The client's own address is never a destination: a datagram from it is
//!   always a request. The set of destinations is bounded
//!   ([`UdpLimits::max_destinations`]); when it is full the least recently used one is
//!   forgotten, and its late replies are dropped.
//! - **Fragments.** "An implementation that does not support fragmentation MUST drop any
//!   datagram whose FRAG field is other than X'00'" (§7): this one does not, and drops them
//!   ([`DropReason::Fragmented`]). Fragmentation is optional, and no common client uses it.
//! - **Malformed headers** (RSV not zero, unknown ATYP, empty name, a datagram shorter than
//!   its header) are dropped silently (§7: the relay "will drop datagrams it cannot or will
//!   not relay", without notification). An empty DATA is relayed: a zero-length UDP datagram
//!   is valid.
//! - **Bad destinations**: port zero, an unspecified IP (`0.0.0.0`, `::`, which the kernel
//!   would take as this host), and a domain name that is not UTF-8 are dropped
//!   ([`DropReason::BadDestination`]); so is a name that resolves to an unspecified IP. Any
//!   other address is relayed; access rules, if any, are the caller's.
//! - **Domain names** are resolved by the driver ([`UdpEvent::Resolve`], one per name until it
//!   answers), cached per association for [`UdpLimits::name_ttl`] (the driver's resolver
//!   gives no TTL), and failures for [`UdpLimits::negative_ttl`] (so a name that does not
//!   resolve does not cause one lookup per datagram). At most [`UdpLimits::max_names`] names
//!   are kept; a new name takes the place of the cached one that expires first, and is
//!   dropped ([`DropReason::QueueFull`]) if every slot waits for a resolution. Datagrams
//!   waiting for a name are queued, in order, within [`UdpLimits::max_queued`] datagrams and
//!   [`UdpLimits::max_queued_bytes`] bytes of DATA for the whole association; beyond that
//!   they are dropped ([`DropReason::QueueFull`]). A resolution not answered within
//!   [`UdpLimits::resolve_timeout`] counts as failed. A failed resolution drops its queue
//!   ([`DropReason::ResolveFailed`]), and so do datagrams for the name while the failure is
//!   cached.
//! - **Which resolved address**: the first one, in the resolver's order, for every datagram to
//!   that name while it is cached (one address, so that replies come from where the client
//!   expects them). `getaddrinfo` already orders addresses for the host's connectivity
//!   (RFC 6724), which matters more than the client's family: the relay, not the client,
//!   sends to it. A driver that can only send one family filters the list before passing it.
//!   The ports of the resolved addresses are ignored (each datagram has its own DST.PORT).
//! - **Replies too large for the client**: a reply whose DATA and header do not fit in one UDP
//!   datagram to the client's family (65 507 bytes over IPv4, 65 527 over IPv6) is dropped
//!   ([`DropReason::TooLarge`]).
//! - **Counters**: [`UdpStats`] counts datagrams and DATA bytes (headers not included), each
//!   when its event is queued; what the driver then fails to send is its own business.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

mod association;
mod header;
#[cfg(test)]
mod tests;

pub use association::Association;
pub use header::{Header, HeaderError};

use std::net::SocketAddr;

/// Bounds on one [`Association`]'s memory and on its name resolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpLimits {
    /// Most destinations remembered for accepting replies (default 256); least recently used
    /// first out.
    pub max_destinations: usize,
    /// Most domain names cached or being resolved at once (default 64).
    pub max_names: usize,
    /// How long a resolved name is used before it is resolved again (default 60 s).
    pub name_ttl: Duration,
    /// How long a failed resolution is remembered (default 5 s).
    pub negative_ttl: Duration,
    /// How long a resolution may take before it counts as failed (default 10 s).
    pub resolve_timeout: Duration,
    /// Most datagrams waiting for resolutions, all names together (default 32).
    pub max_queued: usize,
    /// Most DATA bytes waiting for resolutions, all names together (default 64 KiB).
    pub max_queued_bytes: usize,
}

impl Default for UdpLimits {
    fn default() -> Self {
        Self {
            max_destinations: 256,
            max_names: 64,
            name_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            resolve_timeout: Duration::from_secs(10),
            max_queued: 32,
            max_queued_bytes: 64 * 1024,
        }
    }
}

/// What an [`Association`] asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UdpEvent {
    /// Send `payload` to the destination `to` (the client's header is stripped). `to` is never
    /// an IPv4-mapped IPv6 address; see the module docs on address families.
    ToRemote {
        /// The destination.
        to: SocketAddr,
        /// DATA of the client's datagram (a zero-copy slice of it).
        payload: Bytes,
    },
    /// Send `datagram` (a [`Header`] naming the destination, then the reply's DATA) to the
    /// client at `to`.
    ToClient {
        /// The client's address, as the driver reported it for its latest datagram.
        to: SocketAddr,
        /// The datagram to send.
        datagram: Bytes,
    },
    /// Resolve `host` (always valid UTF-8, 1 to 255 bytes) and report with
    /// [`Association::handle_resolved`], without blocking the association meanwhile. `port`
    /// is the port of the first datagram waiting for it, for resolvers that want one; the
    /// association ignores the ports of the answer.
    Resolve {
        /// The domain name, as the client sent it.
        host: Bytes,
        /// The port of the first datagram waiting for it.
        port: u16,
    },
    /// A datagram was dropped (and counted); for debug logs only.
    Dropped {
        /// Why.
        reason: DropReason,
        /// Where the datagram came from.
        from: SocketAddr,
    },
}

/// Why an [`Association`] dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// From neither the client nor a destination the association sent to.
    Foreign = 0,
    /// From the client, with a header that does not decode.
    Malformed = 1,
    /// From the client, with FRAG not zero (fragmentation is not supported).
    Fragmented = 2,
    /// From the client, to port zero, an unspecified IP or a name that is not UTF-8 (or
    /// resolved to an unspecified IP).
    BadDestination = 3,
    /// From the client, to a name, with no room to wait for its resolution.
    QueueFull = 4,
    /// From the client, to a name that did not resolve (or timed out, or failed recently).
    ResolveFailed = 5,
    /// From a destination, too large to fit in a datagram to the client with its header.
    TooLarge = 6,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 7;
    /// Every reason, in the order of their values.
    pub const ALL: [Self; Self::COUNT] = [
        Self::Foreign,
        Self::Malformed,
        Self::Fragmented,
        Self::BadDestination,
        Self::QueueFull,
        Self::ResolveFailed,
        Self::TooLarge,
    ];

    /// Returns a short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Foreign => "foreign source",
            Self::Malformed => "malformed header",
            Self::Fragmented => "fragment",
            Self::BadDestination => "bad destination",
            Self::QueueFull => "resolution queue full",
            Self::ResolveFailed => "name did not resolve",
            Self::TooLarge => "reply too large",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Datagrams and DATA bytes going one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams.
    pub datagrams: u64,
    /// DATA bytes (headers not counted).
    pub bytes: u64,
}

impl Traffic {
    fn add(&mut self, bytes: usize) {
        self.datagrams += 1;
        self.bytes += bytes as u64;
    }
}

/// An [`Association`]'s counters and current sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpStats {
    /// Every datagram handed to [`Association::handle_datagram`] (bytes: whole datagrams).
    pub received: Traffic,
    /// Client datagrams relayed to destinations ([`UdpEvent::ToRemote`]).
    pub to_remote: Traffic,
    /// Replies relayed to the client ([`UdpEvent::ToClient`]; bytes: DATA only).
    pub to_client: Traffic,
    /// Datagrams waiting for a resolution now.
    pub queued: usize,
    /// DATA bytes waiting for a resolution now.
    pub queued_bytes: usize,
    /// Destinations remembered now.
    pub destinations: usize,
    /// Names cached or being resolved now.
    pub names: usize,
    dropped: [u64; DropReason::COUNT],
}

impl UdpStats {
    /// Returns how many datagrams were dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Returns how many datagrams were dropped, all reasons together.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}
