//! The operator's policy as the drivers use it: access rules, limits, the egress address and
//! the PROXY protocol's trusted senders (`socks5d_core::policy` makes every decision; this
//! holds them where every connection task reaches them, and swaps them on reload).
//!
//! # Cost when nothing is configured
//!
//! [`ServerPolicy`] keeps one bit per part that is configured (client rules, destination
//! rules, address limits, the handshake limit, user limits, egress, PROXY senders) in an
//! atomic word. A driver reads the word once per step and skips the parts that are off, so a
//! server with no policy takes no lock and makes no allocation for it per connection. The
//! built-in deny of the metadata and link-local blocks (`socks5d_core::policy::PROTECTED`) is always checked,
//! against an empty rule set on the stack.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use socks5d_core::policy::{
    Cidr, Egress, EgressTable, Limits, LimitsConfig, Rules, SharedRules, Verdict,
};
use socks5d_core::socks5::{Command, TargetAddr};

/// Everything a reload replaces: what the configuration file says about policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Client and destination rules.
    pub rules: Rules,
    /// Connection and bandwidth limits.
    pub limits: LimitsConfig,
    /// Egress addresses, server-wide and per user.
    pub egress: EgressTable,
    /// The device outgoing connections are bound to (`SO_BINDTODEVICE`).
    pub outgoing_interface: Option<String>,
    /// Senders whose PROXY protocol header is believed, and required.
    pub proxy_trusted: Vec<Cidr>,
}

/// Which parts of the policy are configured (bits of [`ServerPolicy::flags`]).
mod bit {
    pub(super) const CLIENT_RULES: u32 = 1;
    pub(super) const DEST_RULES: u32 = 1 << 1;
    pub(super) const IP_LIMITS: u32 = 1 << 2;
    pub(super) const HANDSHAKES: u32 = 1 << 3;
    pub(super) const USER_LIMITS: u32 = 1 << 4;
    pub(super) const EGRESS: u32 = 1 << 5;
    pub(super) const PROXY: u32 = 1 << 6;
}

/// The egress part, swapped whole.
#[derive(Debug, Default)]
struct EgressPart {
    table: EgressTable,
    interface: Option<String>,
}

/// The policy in force, shared by every connection task ([`crate::Shared::policy`]) and
/// replaced whole by [`ServerPolicy::apply`] (a SIGHUP reload): a check sees the old policy
/// or the new one; live sessions are kept, and the limits' new values apply to them at once
/// (a lower connection limit refuses new connections only; a new rate applies to the next
/// grant of every live relay of a user that had limits when it connected).
#[derive(Debug, Default)]
pub struct ServerPolicy {
    rules: SharedRules,
    limits: Limits,
    egress: RwLock<Arc<EgressPart>>,
    proxy: RwLock<Arc<Vec<Cidr>>>,
    flags: AtomicU32,
}

fn read<T>(l: &RwLock<Arc<T>>) -> Arc<T> {
    Arc::clone(&l.read().unwrap_or_else(std::sync::PoisonError::into_inner))
}

fn write<T>(l: &RwLock<Arc<T>>, v: T) {
    *l.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(v);
}

impl ServerPolicy {
    /// Makes the policy.
    pub fn new(config: PolicyConfig) -> Self {
        let p = Self::default();
        p.apply(Instant::now(), config);
        p
    }

    /// Replaces the policy at `now` (see [`ServerPolicy`]).
    pub fn apply(&self, now: Instant, c: PolicyConfig) {
        let l = &c.limits;
        let mut flags = 0;
        if !c.rules.client_rules().is_empty() {
            flags |= bit::CLIENT_RULES;
        }
        if !c.rules.dest_rules().is_empty() {
            flags |= bit::DEST_RULES;
        }
        if l.ip_max_connections.is_some() || l.ip_connections_per_second.is_some() {
            flags |= bit::IP_LIMITS;
        }
        if l.max_handshakes.is_some() {
            flags |= bit::HANDSHAKES;
        }
        let user_limits = l.user_max_connections.is_some()
            || l.user_upload.is_some()
            || l.user_download.is_some()
            || l.users.values().any(|u| {
                matches!(u.max_connections, Some(Some(_)))
                    || matches!(u.upload, Some(Some(_)))
                    || matches!(u.download, Some(Some(_)))
            });
        if user_limits {
            flags |= bit::USER_LIMITS;
        }
        if !c.egress.default.is_default()
            || !c.egress.users.is_empty()
            || c.outgoing_interface.is_some()
        {
            flags |= bit::EGRESS;
        }
        if !c.proxy_trusted.is_empty() {
            flags |= bit::PROXY;
        }
        self.rules.store(c.rules);
        self.limits.set_config(now, c.limits);
        write(
            &self.egress,
            EgressPart {
                table: c.egress,
                interface: c.outgoing_interface,
            },
        );
        write(&self.proxy, c.proxy_trusted);
        self.flags.store(flags, Ordering::Release);
    }

    fn on(&self, b: u32) -> bool {
        self.flags.load(Ordering::Acquire) & b != 0
    }

    /// Returns the limits (their guards count connections in and out).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Tells whether any address or handshake limit is configured.
    pub fn limits_on_accept(&self) -> bool {
        self.on(bit::IP_LIMITS | bit::HANDSHAKES)
    }

    /// Tells whether an address limit is configured.
    pub fn ip_limits(&self) -> bool {
        self.on(bit::IP_LIMITS)
    }

    /// Tells whether the handshake limit is configured.
    pub fn handshake_limit(&self) -> bool {
        self.on(bit::HANDSHAKES)
    }

    /// Tells whether a per-user limit (connections or bandwidth) is configured.
    pub fn user_limits(&self) -> bool {
        self.on(bit::USER_LIMITS)
    }

    /// Checks a client address against the client rules; `None` when there are none.
    pub fn check_client(&self, ip: IpAddr) -> Option<Verdict> {
        self.on(bit::CLIENT_RULES)
            .then(|| self.rules.load().check_client(ip))
    }

    /// Returns the rule set to check destinations with: the configured one, or `None` for
    /// the empty set (check with [`check_dest`] and `None`).
    pub fn dest_rules(&self) -> Option<Arc<Rules>> {
        self.on(bit::DEST_RULES).then(|| self.rules.load())
    }

    /// Tells whether `peer` must (and alone may) send a PROXY protocol header.
    pub fn proxy_trusted(&self, peer: IpAddr) -> bool {
        self.on(bit::PROXY) && read(&self.proxy).iter().any(|c| c.contains(peer))
    }

    /// Returns the egress of `user` and the outgoing interface; `None` when neither is
    /// configured (bind nothing).
    pub fn egress_for(&self, user: Option<&[u8]>) -> Option<(Egress, Option<String>)> {
        if !self.on(bit::EGRESS) {
            return None;
        }
        let e = read(&self.egress);
        Some((*e.table.for_user(user), e.interface.clone()))
    }
}

/// Checks a destination with `rules`, or with the empty rule set (which denies only the
/// protected blocks) when `None`; see `socks5d_core::policy::Rules` for the calls.
pub fn check_dest(
    rules: Option<&Rules>,
    user: Option<&[u8]>,
    target: &TargetAddr,
    resolved: Option<IpAddr>,
    command: Command,
) -> Verdict {
    // The empty set is two empty vectors: no allocation.
    let empty = Rules::default();
    rules
        .unwrap_or(&empty)
        .check_dest(user, target, resolved, command)
}

/// Keeps, in order, the resolved addresses `egress` reaches; then those `rules` allow.
/// Returns the verdict that denied the last address when every reachable one was denied.
pub fn filter_resolved(
    rules: Option<&Rules>,
    egress: Option<&Egress>,
    user: Option<&[u8]>,
    target: &TargetAddr,
    addrs: &mut Vec<SocketAddr>,
) -> Option<Verdict> {
    if let Some(e) = egress {
        e.retain_reachable(addrs);
    }
    let mut denied = None;
    addrs.retain(|a| {
        let v = check_dest(rules, user, target, Some(a.ip()), Command::Connect);
        if !v.is_allowed() {
            denied = Some(v);
        }
        v.is_allowed()
    });
    if addrs.is_empty() {
        denied
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socks5d_core::policy::{Action, ClientRule, DecidedBy, DestMatch, DestRule};
    use std::num::NonZeroU32;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nothing_configured_is_nothing_checked_but_the_protected_blocks() {
        let p = ServerPolicy::default();
        assert!(p.check_client("192.0.2.1".parse().unwrap()).is_none());
        assert!(p.dest_rules().is_none());
        assert!(!p.limits_on_accept() && !p.user_limits());
        assert!(p.egress_for(Some(b"alice")).is_none());
        assert!(!p.proxy_trusted("127.0.0.1".parse().unwrap()));
        let meta = TargetAddr::Ip(sa("169.254.169.254:80"));
        let v = check_dest(None, None, &meta, None, Command::Connect);
        assert_eq!(v.by, DecidedBy::Protected(0));
        let ok = TargetAddr::Ip(sa("192.0.2.1:80"));
        assert!(check_dest(None, None, &ok, None, Command::Connect).is_allowed());
    }

    #[test]
    fn apply_turns_parts_on_and_off() {
        let p = ServerPolicy::default();
        let rules = Rules::new(
            vec![ClientRule {
                from: "10.0.0.0/8".parse().unwrap(),
                action: Action::Deny,
            }],
            vec![DestRule {
                user: None,
                dest: DestMatch::Cidr("192.0.2.0/24".parse().unwrap()),
                ports: 0..=65535,
                command: None,
                action: Action::Deny,
            }],
        );
        p.apply(
            Instant::now(),
            PolicyConfig {
                rules,
                limits: LimitsConfig {
                    ip_max_connections: NonZeroU32::new(1),
                    user_max_connections: NonZeroU32::new(1),
                    ..LimitsConfig::default()
                },
                egress: EgressTable {
                    default: Egress::from_addrs(&["127.0.0.2".parse().unwrap()]).unwrap(),
                    ..EgressTable::default()
                },
                outgoing_interface: None,
                proxy_trusted: vec!["127.0.0.0/8".parse().unwrap()],
            },
        );
        assert!(!p
            .check_client("10.1.1.1".parse().unwrap())
            .unwrap()
            .is_allowed());
        assert!(p.ip_limits() && !p.handshake_limit() && p.user_limits());
        assert!(p.proxy_trusted("127.0.0.9".parse().unwrap()));
        assert!(!p.proxy_trusted("192.0.2.9".parse().unwrap()));
        let (e, dev) = p.egress_for(None).unwrap();
        assert_eq!((e.v4, dev), (Some([127, 0, 0, 2].into()), None));
        // A name resolving to a denied and an IPv6 address: IPv6 is unreachable from an
        // IPv4-only egress, the other is denied, so the request is denied.
        let rules = p.dest_rules().unwrap();
        let name = TargetAddr::Domain("example.test".into(), 80);
        let mut addrs = vec![sa("[2001:db8::1]:80"), sa("192.0.2.7:80")];
        let v = filter_resolved(Some(&rules), Some(&e), None, &name, &mut addrs);
        assert_eq!(v.map(|v| v.by), Some(DecidedBy::DestRule(0)));
        let mut addrs = vec![sa("192.0.2.7:80"), sa("198.51.100.7:80")];
        assert!(filter_resolved(Some(&rules), Some(&e), None, &name, &mut addrs).is_none());
        assert_eq!(addrs, vec![sa("198.51.100.7:80")]);
        // Only the other family: nothing left, and no rule to blame (0x04, not 0x02).
        let mut addrs = vec![sa("[2001:db8::1]:80")];
        assert!(filter_resolved(Some(&rules), Some(&e), None, &name, &mut addrs).is_none());
        assert!(addrs.is_empty());
        // Everything off again.
        p.apply(Instant::now(), PolicyConfig::default());
        assert!(p.check_client("10.1.1.1".parse().unwrap()).is_none());
        assert!(p.dest_rules().is_none() && !p.ip_limits() && !p.user_limits());
        assert!(p.egress_for(None).is_none());
    }
}
