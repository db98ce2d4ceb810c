//! Access rules, Dante-style: client rules (source address → allow/deny) and destination rules
//! (user, destination, ports, command → allow/deny). The first matching rule wins.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::socks5::{Command, ReplyCode, TargetAddr};

/// An address block: an IPv4 or IPv6 network address and a prefix length.
///
/// Written `ADDR/PREFIX` or `ADDR` alone (one host: /32 or /128). Host bits must be zero
/// (`10.0.0.1/8` is refused: it is usually a typo for a host). An IPv4-mapped IPv6 block
/// (`::ffff:10.0.0.0/104`) is the IPv4 block it maps (`10.0.0.0/8`), and [`Cidr::contains`]
/// takes an IPv4-mapped IPv6 address as its IPv4 address, so that a dual-stack socket's
/// `::ffff:a.b.c.d` matches the IPv4 rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a [`Cidr`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("not an IP address")]
    BadAddress,
    /// The prefix is not a number from 0 to 32 (IPv4) or 128 (IPv6).
    #[error("prefix length must be 0 to {max}")]
    BadPrefix {
        /// 32 or 128.
        max: u8,
    },
    /// The address has bits set past the prefix.
    #[error("bits set past the prefix length (network address expected, e.g. {network})")]
    HostBits {
        /// The network address the block would have.
        network: IpAddr,
    },
}

/// Returns the address as IPv4 when it is an IPv4-mapped IPv6 address, else unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn mask_v4(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let m = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    Ipv4Addr::from(u32::from(a) & m)
}

fn mask_v6(a: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let m = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    Ipv6Addr::from(u128::from(a) & m)
}

impl Cidr {
    /// Makes a block; an IPv4-mapped IPv6 block with a prefix of at least 96 becomes IPv4.
    ///
    /// # Errors
    ///
    /// [`CidrError::BadPrefix`] past 32 or 128, [`CidrError::HostBits`] when `addr` has bits
    /// set past the prefix.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if (96..=128).contains(&prefix) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let network = match addr {
            IpAddr::V4(a) if prefix <= 32 => IpAddr::V4(mask_v4(a, prefix)),
            IpAddr::V4(_) => return Err(CidrError::BadPrefix { max: 32 }),
            IpAddr::V6(a) if prefix <= 128 => IpAddr::V6(mask_v6(a, prefix)),
            IpAddr::V6(_) => return Err(CidrError::BadPrefix { max: 128 }),
        };
        if network != addr {
            return Err(CidrError::HostBits { network });
        }
        Ok(Self { addr, prefix })
    }

    /// Returns the block of one host (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        match canonical_ip(addr) {
            a @ IpAddr::V4(_) => Self {
                addr: a,
                prefix: 32,
            },
            a @ IpAddr::V6(_) => Self {
                addr: a,
                prefix: 128,
            },
        }
    }

    /// Returns the network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Returns the prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Tells whether `ip` is in the block (an IPv4-mapped IPv6 `ip` counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical_ip(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_v4(a, self.prefix) == n,
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_v6(a, self.prefix) == n,
            _ => false,
        }
    }

    /// Tells whether every address of `other` is in this block.
    pub fn covers(&self, other: &Self) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| CidrError::BadAddress)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            // Digits only: `u8::from_str` would take "+8".
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| CidrError::BadPrefix { max })?
            }
            Some(_) => return Err(CidrError::BadPrefix { max }),
        };
        Self::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a rule does with what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Serve it.
    Allow,
    /// Refuse it (a SOCKS request gets `0x02`, connection not allowed by ruleset).
    Deny,
}

/// A client rule: connections from `from` are allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRule {
    /// The client addresses it applies to.
    pub from: Cidr,
    /// What to do with them.
    pub action: Action,
}

/// The destination part of a [`DestRule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestMatch {
    /// Every destination.
    Any,
    /// Destination addresses in a block: the address the client sent, or each address a
    /// name resolved to.
    Cidr(Cidr),
    /// Destination names (as the client sent them) equal to this suffix or ending in
    /// `.suffix`, ASCII case-insensitively; a trailing dot on the name is ignored. Stored
    /// lower-case without leading or trailing dots (see [`DestMatch::domain`]).
    DomainSuffix(Bytes),
}

impl DestMatch {
    /// Makes a [`DestMatch::DomainSuffix`]: `example.com`, `.example.com` and `example.com.`
    /// all mean "example.com and every name under it". `None` for an empty suffix or one
    /// with bytes a DNS name has no business holding (space, control bytes, `/`).
    pub fn domain(suffix: &str) -> Option<Self> {
        let s = suffix.trim_start_matches('.').trim_end_matches('.');
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
            && !s.contains("..");
        ok.then(|| Self::DomainSuffix(Bytes::from(s.to_ascii_lowercase())))
    }

    fn matches_name(suffix: &[u8], name: &[u8]) -> bool {
        let name = name.strip_suffix(b".").unwrap_or(name);
        if name.len() < suffix.len() {
            return false;
        }
        let (head, tail) = name.split_at(name.len() - suffix.len());
        tail.eq_ignore_ascii_case(suffix) && (head.is_empty() || head.ends_with(b"."))
    }
}

/// A destination rule. Every given part must match for the rule to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestRule {
    /// The user it applies to; `None`: every user and anonymous clients.
    pub user: Option<Bytes>,
    /// The destinations it applies to.
    pub dest: DestMatch,
    /// The destination ports it applies to (`0..=65535`: all).
    pub ports: RangeInclusive<u16>,
    /// The command it applies to; `None`: all three.
    pub command: Option<Command>,
    /// What to do.
    pub action: Action,
}

impl DestRule {
    /// Tells whether user, port and command match (everything but the destination).
    fn applies(&self, user: Option<&[u8]>, port: u16, command: Command) -> bool {
        self.user.as_deref().is_none_or(|u| Some(u) == user)
            && self.ports.contains(&port)
            && self.command.is_none_or(|c| c == command)
    }

    fn is_all_ports(&self) -> bool {
        *self.ports.start() == 0 && *self.ports.end() == u16::MAX
    }
}

/// Which rule decided a [`Verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// The client rule with this index (0-based, in the order given).
    ClientRule(usize),
    /// The destination rule with this index (0-based, in the order given).
    DestRule(usize),
    /// The built-in deny of a protected block ([`PROTECTED`]), which this index names.
    Protected(usize),
    /// No rule matched: allowed.
    Default,
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientRule(i) => write!(f, "client rule {}", i + 1),
            Self::DestRule(i) => write!(f, "rule {}", i + 1),
            Self::Protected(i) => write!(f, "built-in deny of {}", PROTECTED[*i].0),
            Self::Default => f.write_str("default allow"),
        }
    }
}

/// The outcome of a rule check, with the rule that decided it (for the access log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Allow or deny.
    pub action: Action,
    /// Which rule said so.
    pub by: DecidedBy,
}

impl Verdict {
    const DEFAULT: Self = Self {
        action: Action::Allow,
        by: DecidedBy::Default,
    };

    /// Tells whether the verdict allows.
    pub fn is_allowed(&self) -> bool {
        self.action == Action::Allow
    }

    /// Returns the reply a denied SOCKS request gets (`0x02`, connection not allowed by
    /// ruleset), `None` when allowed.
    pub fn reply_code(&self) -> Option<ReplyCode> {
        (self.action == Action::Deny).then_some(ReplyCode::NotAllowed)
    }
}

/// Destination blocks denied unless a rule allows them explicitly: cloud metadata services
/// and link-local addresses. (`fd00:ec2::254` is the IPv6 metadata service of AWS,
/// `100.100.100.200` the metadata service of Alibaba Cloud; the others' is 169.254.169.254.)
pub const PROTECTED: [(&str, Cidr); 4] = [
    (
        "169.254.0.0/16",
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)),
            prefix: 16,
        },
    ),
    (
        "fe80::/10",
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
            prefix: 10,
        },
    ),
    (
        "fd00:ec2::254/128",
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
            prefix: 128,
        },
    ),
    (
        "100.100.100.200/32",
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
            prefix: 32,
        },
    ),
];

/// Returns the index in [`PROTECTED`] of the block holding `ip`, if any.
fn protected(ip: IpAddr) -> Option<usize> {
    PROTECTED.iter().position(|(_, c)| c.contains(ip))
}

/// A rule set: client rules and destination rules, each checked in order, the first match
/// winning.
///
/// # Semantics
///
/// - **Client rules** ([`Rules::check_client`]): the first rule whose block holds the client
///   address decides; none: allowed.
/// - **Destination rules** ([`Rules::check_dest`]): the first rule whose user, ports,
///   command and destination all match decides; none: allowed, except for the
///   [`PROTECTED`] blocks (cloud metadata, link-local), which are denied.
/// - **Protected blocks need an explicit allow.** For a destination address in a protected
///   block, an allow rule matches only if its destination is a [`DestMatch::Cidr`] lying
///   inside that protected block (`allow 169.254.169.254/32`); `allow any`, an allow of
///   `0.0.0.0/0` and domain allows skip it. Deny rules match it as usual. So a catch-all
///   allow, or a name the operator allowed whose DNS record now points at 169.254.169.254,
///   never opens the metadata service.
///
/// # How a driver checks a request
///
/// 1. On accept: [`Rules::check_client`] with the peer address. Denied: close at once.
/// 2. A request for a **name** (`TargetAddr::Domain`): `check_dest(user, &target, None,
///    command)` before resolving. This decides on the rules that can be decided on a name
///    alone: it denies only when every address the name could resolve to would be denied
///    (a matching deny rule with no address-allow rule before it), so a denied name is never
///    even looked up. Denied: reply `0x02`.
/// 3. Then **each resolved address**, before dialling it: `check_dest(user, &target,
///    Some(addr), command)`, which sees both the name and the address. Denied addresses are
///    not dialled (an attempt refused as `0x02`); when none is left the reply is `0x02`. This
///    is what keeps a name from sneaking past an address rule: `deny 10.0.0.0/8` refuses
///    `intranet.example` when it resolves to 10.1.2.3.
/// 4. A request for an **address**: one check, `check_dest(user, &target, None, command)`
///    (the address is the one sent; `resolved` is ignored).
/// 5. **BIND**: the request's address (the expected peer) is checked as in 2-4; **UDP
///    ASSOCIATE**: the request itself with [`Rules::check_command`] (its address is the
///    client's, not a destination), then each datagram's destination as in 2-4 with
///    [`Command::UdpAssociate`]; a denied datagram is dropped (UDP has no reply).
///
/// A denied request is logged with the verdict's [`DecidedBy`] in the access-log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    client: Vec<ClientRule>,
    dest: Vec<DestRule>,
}

impl Rules {
    /// Makes a rule set. No rules: every client and every destination but the
    /// [`PROTECTED`] blocks allowed.
    pub fn new(client: Vec<ClientRule>, dest: Vec<DestRule>) -> Self {
        Self { client, dest }
    }

    /// Returns the client rules.
    pub fn client_rules(&self) -> &[ClientRule] {
        &self.client
    }

    /// Returns the destination rules.
    pub fn dest_rules(&self) -> &[DestRule] {
        &self.dest
    }

    /// Checks a client address (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn check_client(&self, ip: IpAddr) -> Verdict {
        self.client
            .iter()
            .position(|r| r.from.contains(ip))
            .map_or(Verdict::DEFAULT, |i| Verdict {
                action: self.client[i].action,
                by: DecidedBy::ClientRule(i),
            })
    }

    /// Checks a destination; see [`Rules`] for how a driver calls it.
    ///
    /// `target` is the destination as the client sent it. For an address, that address is
    /// checked and `resolved` ignored. For a name, `resolved: None` is the check before
    /// resolving (denies only what every address would be denied), `Some(addr)` the check of
    /// one resolved address with the name known too.
    pub fn check_dest(
        &self,
        user: Option<&[u8]>,
        target: &TargetAddr,
        resolved: Option<IpAddr>,
        command: Command,
    ) -> Verdict {
        let port = target.port();
        match target {
            TargetAddr::Ip(a) => self.check_known(user, None, a.ip(), port, command),
            TargetAddr::Domain(name, _) => match resolved {
                Some(ip) => self.check_known(user, Some(name), ip, port, command),
                None => self.check_name(user, name, port, command),
            },
        }
    }

    /// Checks a command whatever its destination (UDP ASSOCIATE requests): denied when every
    /// destination would be denied for this user and command, that is when a deny rule with
    /// destination `any` and every port comes before any rule that could allow.
    pub fn check_command(&self, user: Option<&[u8]>, command: Command) -> Verdict {
        for (i, r) in self.dest.iter().enumerate() {
            if !(r.user.as_deref().is_none_or(|u| Some(u) == user)
                && r.command.is_none_or(|c| c == command))
            {
                continue;
            }
            let unconditional = r.dest == DestMatch::Any && r.is_all_ports();
            match r.action {
                // Some destination is allowed (at least by this rule).
                Action::Allow => break,
                Action::Deny if unconditional => {
                    return Verdict {
                        action: Action::Deny,
                        by: DecidedBy::DestRule(i),
                    }
                }
                Action::Deny => {}
            }
        }
        Verdict::DEFAULT
    }

    /// The check with the address known (and the name, if one was sent).
    fn check_known(
        &self,
        user: Option<&[u8]>,
        name: Option<&[u8]>,
        ip: IpAddr,
        port: u16,
        command: Command,
    ) -> Verdict {
        let ip = canonical_ip(ip);
        let prot = protected(ip);
        for (i, r) in self.dest.iter().enumerate() {
            if !r.applies(user, port, command) {
                continue;
            }
            let hit = match &r.dest {
                DestMatch::Any => true,
                DestMatch::Cidr(c) => c.contains(ip),
                DestMatch::DomainSuffix(s) => name.is_some_and(|n| DestMatch::matches_name(s, n)),
            };
            if !hit {
                continue;
            }
            if let (Action::Allow, Some(p)) = (r.action, prot) {
                // Only an address rule inside the protected block opens it.
                let explicit = matches!(&r.dest, DestMatch::Cidr(c) if PROTECTED[p].1.covers(c));
                if !explicit {
                    continue;
                }
            }
            return Verdict {
                action: r.action,
                by: DecidedBy::DestRule(i),
            };
        }
        match prot {
            Some(p) => Verdict {
                action: Action::Deny,
                by: DecidedBy::Protected(p),
            },
            None => Verdict::DEFAULT,
        }
    }

    /// The check before resolving: deny only what every address would be denied.
    fn check_name(&self, user: Option<&[u8]>, name: &[u8], port: u16, command: Command) -> Verdict {
        for (i, r) in self.dest.iter().enumerate() {
            if !r.applies(user, port, command) {
                continue;
            }
            match (&r.dest, r.action) {
                // An address rule that could allow some address: the name must be resolved.
                (DestMatch::Cidr(_), Action::Allow) => break,
                // An address deny: only some addresses; look further.
                (DestMatch::Cidr(_), Action::Deny) => {}
                (DestMatch::Any, action) => {
                    return Verdict {
                        action,
                        by: DecidedBy::DestRule(i),
                    }
                }
                (DestMatch::DomainSuffix(s), action) => {
                    if DestMatch::matches_name(s, name) {
                        return Verdict {
                            action,
                            by: DecidedBy::DestRule(i),
                        };
                    }
                }
            }
        }
        Verdict::DEFAULT
    }
}

/// A rule set shared by every connection task and replaced whole on reload.
///
/// Each check [`load`](Self::load)s the current set (an `Arc` clone under a read lock held
/// for nanoseconds) and uses that one for the whole request, so a reload in between never
/// mixes two rule sets in one decision; requests already allowed are not checked again.
#[derive(Debug, Default)]
pub struct SharedRules(RwLock<Arc<Rules>>);

impl SharedRules {
    /// Wraps a rule set.
    pub fn new(rules: Rules) -> Self {
        Self(RwLock::new(Arc::new(rules)))
    }

    /// Returns the current rule set.
    pub fn load(&self) -> Arc<Rules> {
        Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Replaces the rule set (atomically: a check sees the old set or the new one).
    pub fn store(&self, rules: Rules) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rules);
    }
}
