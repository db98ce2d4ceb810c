//! The CONNECT policy: which addresses are tried, in what order, when, for how long, and which
//! reply code a failure becomes. Happy Eyeballs version 2 (RFC 8305), sans-IO: the transport
//! dials one address when told to ([`Event::Dial`]), drops it when told to
//! ([`Event::CancelDial`]) and reports each outcome; the session's race state here decides the rest with
//! timers in the session's [`TimerTable`].
//!
//! - **Order** ([`happy_eyeballs_order`], RFC 8305 §4): the resolver's order within each family
//!   (getaddrinfo already sorts by RFC 6724), duplicates removed, families interleaved starting
//!   with IPv6 ("First Address Family Count" 1), at most [`MAX_ADDRESSES`].
//! - **Stagger** (§5): the next attempt starts [`CONNECTION_ATTEMPT_DELAY`] after the previous
//!   one started, without waiting for it, or at once when an attempt fails; at most
//!   [`Timer::ATTEMPT_SLOTS`] attempts are in flight (a further start waits for one to end).
//! - **Per-attempt deadline** (issue 18): an attempt started at `t` may run for
//!   `(handshake deadline - t) / (addresses not started yet, itself included)`: a black-holed
//!   first address takes a share, never the whole handshake; the last address gets all that
//!   remains. An attempt past its deadline is cancelled and counts as a `0x06` failure.
//! - **First success wins**; every other attempt in flight gets `CancelDial`.
//! - **All failed**: the reply carries the most informative failure ([`informativeness`]:
//!   the one that got furthest towards the destination; the earliest of equals). The
//!   handshake deadline itself (the session's timer) always gives `0x06`.
//! - RFC 8305's "Resolution Delay" (§3) does not apply: the transport resolves both families
//!   in one query and reports one list.
//!
//! [`Event::Dial`]: super::Event::Dial
//! [`Event::CancelDial`]: super::Event::CancelDial

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::addr::ReplyCode;
use super::Event;
use crate::timer::{Timer, TimerTable};

/// One outgoing connection attempt of a CONNECT, named in [`Event::Dial`],
/// [`Event::CancelDial`] and
/// [`Socks5Handshake::handle_dial_result`](super::Socks5Handshake::handle_dial_result).
/// Numbered from 0 in the order the attempts start (which is the order of the addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Attempt(pub u32);

/// RFC 8305 §5 "Connection Attempt Delay", the recommended value: 250 ms.
pub const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// The most addresses of one name that are tried (16); the rest are ignored. With the 250 ms
/// stagger a 10 s handshake cannot start more than 40 anyway, and real names have a few.
pub const MAX_ADDRESSES: usize = 16;

/// Returns `addrs` in the order they are to be tried: duplicates removed, IPv6 and IPv4
/// interleaved starting with IPv6, each family in the given order, at most
/// [`MAX_ADDRESSES`] (RFC 8305 §4).
pub fn happy_eyeballs_order(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len().min(MAX_ADDRESSES * 2));
    for a in addrs {
        if !unique.contains(a) {
            unique.push(*a);
        }
    }
    let mut v6 = unique.iter().filter(|a| a.is_ipv6()).copied();
    let mut v4 = unique.iter().filter(|a| a.is_ipv4()).copied();
    let mut out = Vec::with_capacity(unique.len().min(MAX_ADDRESSES));
    while out.len() < MAX_ADDRESSES {
        let (a, b) = (v6.next(), v4.next());
        if a.is_none() && b.is_none() {
            break;
        }
        out.extend(a);
        if out.len() < MAX_ADDRESSES {
            out.extend(b);
        }
    }
    out
}

/// Ranks a failure by how far the attempt got towards the destination, for choosing the
/// reply when every attempt failed (higher wins): refused (`0x05`, the host answered) >
/// host unreachable (`0x04`, a router near it answered) > TTL expired (`0x06`, sent and
/// nothing came back) > network unreachable (`0x03`, no route from here: typically a family
/// this server has no connectivity for) > not allowed (`0x02`, stopped by a local rule) >
/// general failure (`0x01`) > anything else.
pub fn informativeness(code: ReplyCode) -> u8 {
    match code {
        ReplyCode::ConnectionRefused => 6,
        ReplyCode::HostUnreachable => 5,
        ReplyCode::TtlExpired => 4,
        ReplyCode::NetworkUnreachable => 3,
        ReplyCode::NotAllowed => 2,
        ReplyCode::GeneralFailure => 1,
        _ => 0,
    }
}

/// Where a CONNECT stands after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Attempts are in flight or about to start.
    Pending,
    /// `attempt` connected from `local`; every other attempt has been cancelled.
    Won { attempt: Attempt, local: SocketAddr },
    /// Every address failed; the reply code to send.
    Failed(ReplyCode),
}

/// The connection attempts of one CONNECT: the state of the Happy Eyeballs race.
#[derive(Debug)]
pub(crate) struct Dialer {
    /// In order of trial ([`happy_eyeballs_order`]); attempt `n` dials `addrs[n]`.
    addrs: Vec<SocketAddr>,
    /// The next attempt to start (= attempts started so far).
    next: u32,
    /// The attempts in flight; slot `i`'s deadline is [`Timer::Attempt`]`(i)`.
    slots: [Option<Attempt>; Timer::ATTEMPT_SLOTS],
    /// The most informative failure so far.
    best: Option<ReplyCode>,
    /// The handshake deadline, which the attempts share.
    deadline: Instant,
    /// Between starts.
    delay: Duration,
}

impl Dialer {
    /// Starts the race over `addrs` (already ordered, not empty, at most [`MAX_ADDRESSES`]):
    /// the first attempt starts now.
    pub(crate) fn start(
        now: Instant,
        addrs: Vec<SocketAddr>,
        deadline: Instant,
        delay: Duration,
        timers: &mut TimerTable,
        events: &mut VecDeque<Event>,
    ) -> Self {
        debug_assert!(!addrs.is_empty() && addrs.len() <= MAX_ADDRESSES);
        let mut d = Self {
            addrs,
            next: 0,
            slots: [None; Timer::ATTEMPT_SLOTS],
            best: None,
            deadline,
            delay,
        };
        d.start_next(now, timers, events);
        d
    }

    /// Takes the outcome of `attempt`. An attempt that is not in flight (cancelled, already
    /// reported, never started) is ignored.
    pub(crate) fn on_result(
        &mut self,
        now: Instant,
        attempt: Attempt,
        result: Result<SocketAddr, io::ErrorKind>,
        timers: &mut TimerTable,
        events: &mut VecDeque<Event>,
    ) -> Progress {
        let Some(slot) = self.slots.iter().position(|s| *s == Some(attempt)) else {
            return Progress::Pending;
        };
        self.end(slot, timers);
        match result {
            Ok(local) => {
                self.cancel_all(timers, events);
                Progress::Won { attempt, local }
            }
            Err(kind) => {
                self.failed(ReplyCode::from_io_error(kind));
                self.start_next(now, timers, events);
                self.progress()
            }
        }
    }

    /// Fires the attempts' deadlines and the stagger timer due at `now`.
    pub(crate) fn on_timeout(
        &mut self,
        now: Instant,
        timers: &mut TimerTable,
        events: &mut VecDeque<Event>,
    ) -> Progress {
        for slot in 0..Timer::ATTEMPT_SLOTS {
            if timers.is_expired(attempt_timer(slot), now) {
                if let Some(attempt) = self.slots[slot] {
                    events.push_back(Event::CancelDial { attempt });
                }
                self.end(slot, timers);
                self.failed(ReplyCode::TtlExpired);
                // A failure lets the next attempt start at once.
                self.start_next(now, timers, events);
            }
        }
        if timers.is_expired(Timer::NextAttempt, now) {
            timers.stop(Timer::NextAttempt);
            self.start_next(now, timers, events);
        }
        self.progress()
    }

    /// Cancels every attempt in flight (in attempt order) and stops the timers.
    pub(crate) fn cancel_all(&mut self, timers: &mut TimerTable, events: &mut VecDeque<Event>) {
        let mut in_flight: [Option<Attempt>; Timer::ATTEMPT_SLOTS] = self.slots;
        in_flight.sort_unstable_by_key(|a| a.map_or(u32::MAX, |a| a.0));
        for attempt in in_flight.into_iter().flatten() {
            events.push_back(Event::CancelDial { attempt });
        }
        for slot in 0..Timer::ATTEMPT_SLOTS {
            self.end(slot, timers);
        }
        timers.stop(Timer::NextAttempt);
        self.next = self.addrs.len() as u32;
    }

    /// Starts the next attempt if an address is left and a slot is free, and arms the
    /// stagger for the one after.
    fn start_next(&mut self, now: Instant, timers: &mut TimerTable, events: &mut VecDeque<Event>) {
        let total = self.addrs.len() as u32;
        if self.next < total {
            if let Some(slot) = self.slots.iter().position(Option::is_none) {
                let attempt = Attempt(self.next);
                let left = total - self.next;
                let share = self.deadline.saturating_duration_since(now) / left;
                self.slots[slot] = Some(attempt);
                timers.set(attempt_timer(slot), now + share);
                events.push_back(Event::Dial {
                    attempt,
                    addr: self.addrs[self.next as usize],
                });
                self.next += 1;
            }
        }
        let room = self.slots.iter().any(Option::is_none);
        if self.next < total && room {
            timers.set(Timer::NextAttempt, now + self.delay);
        } else {
            // Nothing left to start, or every slot busy: the next start waits for a failure.
            timers.stop(Timer::NextAttempt);
        }
    }

    fn end(&mut self, slot: usize, timers: &mut TimerTable) {
        self.slots[slot] = None;
        timers.stop(attempt_timer(slot));
    }

    fn failed(&mut self, code: ReplyCode) {
        if self
            .best
            .is_none_or(|b| informativeness(code) > informativeness(b))
        {
            self.best = Some(code);
        }
    }

    fn progress(&self) -> Progress {
        let idle = self.slots.iter().all(Option::is_none);
        if idle && self.next as usize >= self.addrs.len() {
            Progress::Failed(self.best.unwrap_or(ReplyCode::GeneralFailure))
        } else {
            Progress::Pending
        }
    }
}

fn attempt_timer(slot: usize) -> Timer {
    // `slot < Timer::ATTEMPT_SLOTS`, which fits a u8.
    Timer::Attempt(slot as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn order_interleaves_families_ipv6_first() {
        let got = happy_eyeballs_order(&[
            a("10.0.0.1:80"),
            a("10.0.0.2:80"),
            a("10.0.0.3:80"),
            a("[2001:db8::1]:80"),
            a("10.0.0.1:80"),
            a("[2001:db8::2]:80"),
        ]);
        assert_eq!(
            got,
            [
                a("[2001:db8::1]:80"),
                a("10.0.0.1:80"),
                a("[2001:db8::2]:80"),
                a("10.0.0.2:80"),
                a("10.0.0.3:80"),
            ]
        );
        assert_eq!(happy_eyeballs_order(&[]), []);
        assert_eq!(happy_eyeballs_order(&[a("10.0.0.9:1")]), [a("10.0.0.9:1")]);
    }

    #[test]
    fn order_keeps_at_most_max_addresses_of_both_families() {
        let many: Vec<SocketAddr> = (0..40u16)
            .map(|i| {
                if i % 5 == 0 {
                    SocketAddr::new(
                        std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i).into(),
                        1,
                    )
                } else {
                    SocketAddr::new(std::net::Ipv4Addr::new(10, 0, 0, i as u8).into(), 1)
                }
            })
            .collect();
        let got = happy_eyeballs_order(&many);
        assert_eq!(got.len(), MAX_ADDRESSES);
        assert_eq!(got.iter().filter(|a| a.is_ipv6()).count(), 8);
        assert!(got[0].is_ipv6() && got[1].is_ipv4());
    }

    #[test]
    fn informativeness_is_a_strict_order() {
        let order = [
            ReplyCode::ConnectionRefused,
            ReplyCode::HostUnreachable,
            ReplyCode::TtlExpired,
            ReplyCode::NetworkUnreachable,
            ReplyCode::NotAllowed,
            ReplyCode::GeneralFailure,
        ];
        for w in order.windows(2) {
            assert!(informativeness(w[0]) > informativeness(w[1]), "{w:?}");
        }
    }
}
