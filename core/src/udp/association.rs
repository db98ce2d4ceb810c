//! [`Association`]: one UDP ASSOCIATE association's datagram relay, sans-IO.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::{DropReason, Header, UdpEvent, UdpLimits, UdpStats};
use crate::socks5::TargetAddr;

/// The largest UDP payload, in bytes, in an IPv4 datagram (65 535 minus the IPv4 and UDP
/// headers).
const MAX_UDP_V4: usize = 65_507;
/// The largest UDP payload, in bytes, in an IPv6 datagram without jumbograms (65 535 minus
/// the UDP header).
const MAX_UDP_V6: usize = 65_527;

/// An address as the association compares them: canonical IP (never IPv4-mapped) and port.
type Key = (IpAddr, u16);

fn key(a: SocketAddr) -> Key {
    (a.ip().to_canonical(), a.port())
}

/// Returns `a` with an IPv4-mapped IPv6 address turned into IPv4 (scope id and flow info of
/// other IPv6 addresses are kept, for the driver's `send_to`).
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

/// The destinations sent to, least recently used first out, in O(log n) per operation.
#[derive(Debug, Default)]
struct Destinations {
    /// Each destination's latest use.
    last_use: BTreeMap<Key, u64>,
    /// The inverse of `last_use`: destinations by use, oldest first.
    by_use: BTreeMap<u64, Key>,
    uses: u64,
}

impl Destinations {
    fn len(&self) -> usize {
        debug_assert_eq!(self.last_use.len(), self.by_use.len());
        self.last_use.len()
    }

    /// Marks `k` as just used; returns false (and changes nothing) if it is unknown.
    fn refresh(&mut self, k: &Key) -> bool {
        let Some(used) = self.last_use.get_mut(k) else {
            return false;
        };
        self.by_use.remove(used);
        self.uses += 1;
        *used = self.uses;
        self.by_use.insert(self.uses, *k);
        true
    }

    /// Adds `k` (or marks it as just used), forgetting the least recently used destination
    /// if more than `max` would be remembered.
    fn insert(&mut self, k: Key, max: usize) {
        if self.refresh(&k) {
            return;
        }
        while self.len() >= max {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                return; // max is zero: remember nothing
            };
            self.last_use.remove(&oldest);
        }
        self.uses += 1;
        self.last_use.insert(k, self.uses);
        self.by_use.insert(self.uses, k);
    }
}

/// A cached or pending domain name.
#[derive(Debug)]
enum Name {
    /// [`UdpEvent::Resolve`] emitted; datagrams wait for the answer.
    Pending {
        /// When the resolution counts as failed.
        deadline: Instant,
        /// DST.PORT and DATA of each waiting datagram, in arrival order.
        queue: VecDeque<(u16, Bytes)>,
    },
    /// Resolved to `addr` (its port is replaced by each datagram's).
    Resolved { addr: SocketAddr, expires: Instant },
    /// Did not resolve; datagrams to it are dropped until `expires`.
    Failed { expires: Instant },
}

impl Name {
    fn deadline(&self) -> Instant {
        match self {
            Self::Pending { deadline, .. } => *deadline,
            Self::Resolved { expires, .. } | Self::Failed { expires } => *expires,
        }
    }
}

/// One UDP ASSOCIATE association: which datagrams to relay where. It owns no socket, resolves
/// no name and reads no clock; see the [module docs](super) for the run loop, how a driver
/// uses its sockets, and every rule it applies.
///
/// # Methods by kind
///
/// - create: [`new`](Self::new), when the UDP ASSOCIATE request is answered with success;
/// - inputs: [`handle_datagram`](Self::handle_datagram) (a datagram arrived, from the client
///   or anyone else), [`handle_resolved`](Self::handle_resolved) (the answer to a
///   [`UdpEvent::Resolve`]), [`handle_timeout`](Self::handle_timeout) (time passed);
/// - outputs: [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout);
/// - getters: [`client`](Self::client), [`stats`](Self::stats).
///
/// # Drain contract
///
/// After every `handle_*` call, drain [`poll_event`](Self::poll_event) until `None`, then
/// read [`poll_timeout`](Self::poll_timeout), before the next `handle_*` call. There is no
/// `Closed`: the association ends when the driver drops it, with its control connection.
#[derive(Debug)]
pub struct Association {
    /// The control connection's peer IP, canonical.
    client_ip: IpAddr,
    /// The client's port: the request's DST.PORT, or learned from its first datagram.
    client_port: Option<u16>,
    /// The client's source address as last reported by the driver.
    client_seen: Option<SocketAddr>,
    limits: UdpLimits,
    /// Destinations sent to.
    destinations: Destinations,
    names: BTreeMap<Bytes, Name>,
    /// The earliest deadline of `names`.
    next_deadline: Option<Instant>,
    events: VecDeque<UdpEvent>,
    stats: UdpStats,
}

impl Association {
    /// Creates the association for a UDP ASSOCIATE request.
    ///
    /// `control_peer` is the client's address on the TCP control connection: its IP is the
    /// only one datagrams are accepted from. `requested` is the request's DST: the client's
    /// expected source, of which only the port is used (zero: learned from the client's first
    /// well-formed datagram).
    pub fn new(
        _now: Instant,
        control_peer: SocketAddr,
        requested: &TargetAddr,
        limits: UdpLimits,
    ) -> Self {
        let port = requested.port();
        Self {
            client_ip: control_peer.ip().to_canonical(),
            client_port: (port != 0).then_some(port),
            client_seen: None,
            limits,
            destinations: Destinations::default(),
            names: BTreeMap::new(),
            next_deadline: None,
            events: VecDeque::new(),
            stats: UdpStats::default(),
        }
    }

    /// Handles a datagram that arrived on one of the driver's sockets from `from`: relays it
    /// if it comes from the client or is a reply from a destination, drops it otherwise.
    /// Fires expired deadlines first (as [`handle_timeout`](Self::handle_timeout) does), then
    /// queues at most one event for this datagram.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        self.handle_timeout(now);
        self.stats.received.add(datagram.len());
        let (ip, port) = key(from);
        let from_client_ip = ip == self.client_ip;
        if from_client_ip && self.client_port == Some(port) {
            self.on_client(now, from, &datagram);
        } else if self.destinations.refresh(&(ip, port)) {
            self.on_reply(from, datagram);
        } else if from_client_ip && self.client_port.is_none() {
            // No destination exists before the client's port is known: nothing has been sent.
            self.on_client(now, from, &datagram);
        } else {
            self.count_drop(DropReason::Foreign, from);
        }
        // A zero `resolve_timeout` expires the resolution just started: the next deadline
        // must stay in the future.
        self.handle_timeout(now);
    }

    /// Reports the answer to [`UdpEvent::Resolve`] for `host`: the addresses in the
    /// resolver's order of preference (the first is used), or the error. An empty list
    /// counts as a failure. Ignored unless `host` is being resolved (a late answer after the
    /// [`UdpLimits::resolve_timeout`], or a duplicate, changes nothing).
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        host: &Bytes,
        result: Result<Vec<SocketAddr>, io::ErrorKind>,
    ) {
        self.handle_timeout(now);
        let Some(name) = self.names.get_mut(host) else {
            return;
        };
        let Name::Pending { queue, .. } = name else {
            return;
        };
        let queue = std::mem::take(queue);
        match result.ok().and_then(|addrs| addrs.first().copied()) {
            Some(addr) => {
                let addr = canonical(addr);
                *name = Name::Resolved {
                    addr,
                    expires: now + self.limits.name_ttl,
                };
                self.release(queue, Ok(addr));
            }
            None => {
                *name = Name::Failed {
                    expires: now + self.limits.negative_ttl,
                };
                self.release(queue, Err(DropReason::ResolveFailed));
            }
        }
        self.expire(now);
    }

    /// Fires expired deadlines: resolutions that took too long fail (their datagrams are
    /// dropped), cached names and failures expire. Spurious or early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_deadline.is_some_and(|t| t <= now) {
            self.expire(now);
        }
    }

    /// Returns the next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<UdpEvent> {
        self.events.pop_front()
    }

    /// Returns the next deadline (a resolution's timeout or a cached name's expiry), `None`
    /// while no name is cached. It is always later than the `now` of the last `handle_*`
    /// call.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// Returns the client's source address as the driver last reported it, once a datagram
    /// from the client was accepted.
    pub fn client(&self) -> Option<SocketAddr> {
        self.client_seen
    }

    /// Returns the counters and current sizes.
    pub fn stats(&self) -> UdpStats {
        UdpStats {
            destinations: self.destinations.len(),
            names: self.names.len(),
            ..self.stats
        }
    }

    /// Handles a datagram from the client's address (or from its IP while its port is still
    /// to be learned).
    fn on_client(&mut self, now: Instant, from: SocketAddr, datagram: &Bytes) {
        let Ok((header, payload)) = Header::decode(datagram) else {
            self.count_drop(DropReason::Malformed, from);
            return;
        };
        // Learned from the first well-formed datagram, fixed from then on.
        self.client_port = Some(from.port());
        self.client_seen = Some(from);
        // RFC 1928 §7: "An implementation that does not support fragmentation MUST drop any
        // datagram whose FRAG field is other than X'00'."
        if header.frag != 0 {
            self.count_drop(DropReason::Fragmented, from);
            return;
        }
        match header.addr {
            TargetAddr::Ip(to) => self.relay(canonical(to), payload),
            TargetAddr::Domain(host, port) => self.relay_to_name(now, host, port, payload),
        }
    }

    /// Relays `payload` to `to` (canonical), or drops it if `to` is no valid destination.
    fn relay(&mut self, to: SocketAddr, payload: Bytes) {
        if to.port() == 0 || to.ip().is_unspecified() {
            self.drop_from_client(DropReason::BadDestination);
            return;
        }
        self.destinations
            .insert(key(to), self.limits.max_destinations);
        self.stats.to_remote.add(payload.len());
        self.events.push_back(UdpEvent::ToRemote { to, payload });
    }

    /// Handles a client datagram to a domain name.
    fn relay_to_name(&mut self, now: Instant, host: Bytes, port: u16, payload: Bytes) {
        if port == 0 || std::str::from_utf8(&host).is_err() {
            self.drop_from_client(DropReason::BadDestination);
            return;
        }
        match self.names.get(&host) {
            Some(Name::Resolved { addr, .. }) => {
                let mut to = *addr;
                to.set_port(port);
                self.relay(to, payload);
            }
            Some(Name::Failed { .. }) => self.drop_from_client(DropReason::ResolveFailed),
            Some(Name::Pending { .. }) => {
                if !self.has_room(&payload) {
                    self.drop_from_client(DropReason::QueueFull);
                    return;
                }
                self.enqueue(&host, port, payload);
            }
            None => {
                if !self.has_room(&payload) || !self.make_room_for_name() {
                    self.drop_from_client(DropReason::QueueFull);
                    return;
                }
                let deadline = now + self.limits.resolve_timeout;
                self.names.insert(
                    host.clone(),
                    Name::Pending {
                        deadline,
                        queue: VecDeque::new(),
                    },
                );
                self.next_deadline = Some(self.next_deadline.map_or(deadline, |t| t.min(deadline)));
                self.enqueue(&host, port, payload);
                self.events.push_back(UdpEvent::Resolve { host, port });
            }
        }
    }

    /// Returns whether one more datagram with `payload` fits in the resolution queue.
    fn has_room(&self, payload: &Bytes) -> bool {
        self.stats.queued < self.limits.max_queued
            && self.stats.queued_bytes + payload.len() <= self.limits.max_queued_bytes
    }

    /// Makes room for one more name, evicting the cached name or failure that expires first;
    /// returns false if every slot waits for a resolution.
    fn make_room_for_name(&mut self) -> bool {
        if self.names.len() < self.limits.max_names {
            return true;
        }
        let victim = self
            .names
            .iter()
            .filter(|(_, n)| !matches!(n, Name::Pending { .. }))
            .min_by_key(|(_, n)| n.deadline())
            .map(|(host, _)| host.clone());
        match victim {
            Some(host) => {
                self.names.remove(&host);
                self.next_deadline = self.names.values().map(Name::deadline).min();
                true
            }
            None => false,
        }
    }

    /// Queues a datagram for `host`, which is pending.
    fn enqueue(&mut self, host: &Bytes, port: u16, payload: Bytes) {
        if let Some(Name::Pending { queue, .. }) = self.names.get_mut(host) {
            self.stats.queued += 1;
            self.stats.queued_bytes += payload.len();
            queue.push_back((port, payload));
        }
    }

    /// Relays (or drops) datagrams that waited for a resolution.
    fn release(&mut self, queue: VecDeque<(u16, Bytes)>, to: Result<SocketAddr, DropReason>) {
        for (port, payload) in queue {
            self.stats.queued -= 1;
            self.stats.queued_bytes -= payload.len();
            match to {
                Ok(mut addr) => {
                    addr.set_port(port);
                    self.relay(addr, payload);
                }
                Err(reason) => self.drop_from_client(reason),
            }
        }
    }

    /// Fails resolutions past their deadline, forgets names past their expiry, and
    /// recomputes the next deadline.
    fn expire(&mut self, now: Instant) {
        let timed_out: Vec<Bytes> = self
            .names
            .iter()
            .filter(|(_, n)| matches!(n, Name::Pending { deadline, .. } if *deadline <= now))
            .map(|(host, _)| host.clone())
            .collect();
        for host in timed_out {
            let failed = Name::Failed {
                expires: now + self.limits.negative_ttl,
            };
            if let Some(Name::Pending { queue, .. }) = self.names.insert(host, failed) {
                self.release(queue, Err(DropReason::ResolveFailed));
            }
        }
        self.names.retain(|_, n| n.deadline() > now);
        self.next_deadline = self.names.values().map(Name::deadline).min();
    }

    /// Sends a destination's reply to the client.
    fn on_reply(&mut self, from: SocketAddr, payload: Bytes) {
        let Some(client) = self.client_seen else {
            // Unreachable: a destination exists only once a client datagram was accepted.
            self.count_drop(DropReason::Foreign, from);
            return;
        };
        // The wire has no flow info or scope id; the header carries what the client can use.
        let source = match canonical(from) {
            SocketAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
            v4 => v4,
        };
        let header = Header::new(TargetAddr::Ip(source));
        let max = if canonical(client).is_ipv4() {
            MAX_UDP_V4
        } else {
            MAX_UDP_V6
        };
        let len = header.encoded_len() + payload.len();
        if len > max {
            self.count_drop(DropReason::TooLarge, from);
            return;
        }
        let mut datagram = BytesMut::with_capacity(len);
        header.encode(&mut datagram);
        datagram.extend_from_slice(&payload);
        self.stats.to_client.add(payload.len());
        self.events.push_back(UdpEvent::ToClient {
            to: client,
            datagram: datagram.freeze(),
        });
    }

    /// Counts a drop of a client datagram.
    fn drop_from_client(&mut self, reason: DropReason) {
        // A client datagram was accepted, so the client's address is known.
        let from = self
            .client_seen
            .unwrap_or_else(|| SocketAddr::new(self.client_ip, 0));
        self.count_drop(reason, from);
    }

    /// Counts a drop and reports it.
    fn count_drop(&mut self, reason: DropReason, from: SocketAddr) {
        self.stats.dropped[reason as usize] += 1;
        self.events.push_back(UdpEvent::Dropped { reason, from });
    }
}
