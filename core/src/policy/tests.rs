use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::socks5::{Command, ReplyCode, TargetAddr};

fn t0() -> Instant {
    crate::epoch::epoch()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn nz(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

// ---------------------------------------------------------------------------------------
// Cidr

#[test]
fn cidr_parse_golden() {
    for (s, shown) in [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3", "10.1.2.3/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::/0", "::/0"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::1", "::1/128"),
        ("fe80::/10", "fe80::/10"),
        // IPv4-mapped blocks are IPv4 blocks.
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:192.0.2.1", "192.0.2.1/32"),
        ("::ffff:0.0.0.0/96", "0.0.0.0/0"),
    ] {
        assert_eq!(cidr(s).to_string(), shown, "{s}");
    }
    for (s, err) in [
        (
            "10.0.0.1/8",
            CidrError::HostBits {
                network: ip("10.0.0.0"),
            },
        ),
        ("10.0.0.0/33", CidrError::BadPrefix { max: 32 }),
        ("::/129", CidrError::BadPrefix { max: 128 }),
        ("10.0.0.0/", CidrError::BadPrefix { max: 32 }),
        ("10.0.0.0/+8", CidrError::BadPrefix { max: 32 }),
        ("10.0.0.0/0008", CidrError::BadPrefix { max: 32 }),
        ("10.0.0.0/8/8", CidrError::BadPrefix { max: 32 }),
        ("10.0.0/8", CidrError::BadAddress),
        ("example.com", CidrError::BadAddress),
        ("", CidrError::BadAddress),
        (
            "fe80::1/10",
            CidrError::HostBits {
                network: ip("fe80::"),
            },
        ),
    ] {
        assert_eq!(s.parse::<Cidr>(), Err(err), "{s}");
    }
}

#[test]
fn cidr_contains() {
    let c = cidr("10.0.0.0/8");
    assert!(c.contains(ip("10.255.255.255")));
    assert!(
        c.contains(ip("::ffff:10.1.2.3")),
        "v4-mapped counts as IPv4"
    );
    assert!(!c.contains(ip("11.0.0.0")));
    assert!(!c.contains(ip("::a00:1")), "IPv4-compatible is not mapped");
    assert!(cidr("0.0.0.0/0").contains(ip("255.255.255.255")));
    assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
    assert!(cidr("::/0").contains(ip("::1")));
    assert!(!cidr("::/0").contains(ip("1.2.3.4")));
    assert!(
        !cidr("::/0").contains(ip("::ffff:1.2.3.4")),
        "mapped is IPv4"
    );
    assert!(cidr("fe80::/10").contains(ip("febf::1")));
    assert!(!cidr("fe80::/10").contains(ip("fec0::1")));
    assert!(cidr("192.0.2.1").contains(ip("192.0.2.1")));
    assert!(!cidr("192.0.2.1").contains(ip("192.0.2.2")));
    assert!(cidr("169.254.0.0/16").covers(&cidr("169.254.169.254")));
    assert!(!cidr("169.254.169.254").covers(&cidr("169.254.0.0/16")));
    assert!(!cidr("169.254.0.0/16").covers(&cidr("0.0.0.0/0")));
}

/// Display then parse gives the block back, for pseudo-random blocks of both families.
#[test]
fn cidr_display_parse_round_trip() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let r = next();
        let c = if r & 1 == 0 {
            let p = (r >> 8) as u8 % 33;
            let a = Ipv4Addr::from((next() >> 32) as u32);
            let net = Cidr::new(IpAddr::V4(a), 32).unwrap();
            // Mask through the prefix by containment: the network of `a`/p.
            let masked = u32::from(a) & if p == 0 { 0 } else { u32::MAX << (32 - p) };
            let c = Cidr::new(IpAddr::V4(masked.into()), p).unwrap();
            assert!(c.contains(net.addr()));
            c
        } else {
            let p = (r >> 8) as u8 % 129;
            let a = (u128::from(next()) << 64) | u128::from(next());
            let masked = a & if p == 0 { 0 } else { u128::MAX << (128 - p) };
            let Ok(c) = Cidr::new(IpAddr::V6(Ipv6Addr::from(masked)), p) else {
                panic!("{masked:x}/{p}")
            };
            c
        };
        let s = c.to_string();
        assert_eq!(s.parse::<Cidr>(), Ok(c), "{s}");
        // And with a bit set past the prefix it is refused.
        if c.prefix() < if c.addr().is_ipv4() { 32 } else { 128 } {
            let bumped = match c.addr() {
                IpAddr::V4(a) => IpAddr::V4((u32::from(a) | 1).into()),
                IpAddr::V6(a) => IpAddr::V6((u128::from(a) | 1).into()),
            };
            assert!(Cidr::new(bumped, c.prefix()).is_err());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rules

fn rule(
    user: Option<&str>,
    dest: DestMatch,
    ports: std::ops::RangeInclusive<u16>,
    action: Action,
) -> DestRule {
    DestRule {
        user: user.map(|u| Bytes::copy_from_slice(u.as_bytes())),
        dest,
        ports,
        command: None,
        action,
    }
}

fn to_ip(s: &str, port: u16) -> TargetAddr {
    TargetAddr::Ip(SocketAddr::new(ip(s), port))
}

fn to_name(s: &str, port: u16) -> TargetAddr {
    TargetAddr::Domain(Bytes::copy_from_slice(s.as_bytes()), port)
}

use Action::{Allow, Deny};

#[test]
fn client_rules_first_match_wins() {
    let r = Rules::new(
        vec![
            ClientRule {
                from: cidr("10.0.0.5"),
                action: Allow,
            },
            ClientRule {
                from: cidr("10.0.0.0/8"),
                action: Deny,
            },
            ClientRule {
                from: cidr("::/0"),
                action: Deny,
            },
        ],
        vec![],
    );
    let v = |s| r.check_client(ip(s));
    assert_eq!(
        v("10.0.0.5"),
        Verdict {
            action: Allow,
            by: DecidedBy::ClientRule(0)
        }
    );
    assert_eq!(v("::ffff:10.0.0.5").by, DecidedBy::ClientRule(0));
    assert_eq!(
        v("10.9.9.9"),
        Verdict {
            action: Deny,
            by: DecidedBy::ClientRule(1)
        }
    );
    assert_eq!(v("::ffff:10.9.9.9").by, DecidedBy::ClientRule(1));
    assert_eq!(v("2001:db8::1").by, DecidedBy::ClientRule(2));
    assert_eq!(
        v("192.0.2.1"),
        Verdict {
            action: Allow,
            by: DecidedBy::Default
        }
    );
    assert_eq!(
        Rules::default().check_client(ip("10.0.0.1")).by,
        DecidedBy::Default
    );
}

#[test]
fn dest_rules_golden() {
    let mut smtp = rule(None, DestMatch::Any, 25..=25, Deny);
    smtp.command = Some(Command::Connect);
    let mut no_bind = rule(None, DestMatch::Any, 0..=65535, Deny);
    no_bind.command = Some(Command::Bind);
    let r = Rules::new(
        vec![],
        vec![
            /* 0 */
            rule(
                Some("alice"),
                DestMatch::Cidr(cidr("192.0.2.0/24")),
                0..=65535,
                Allow,
            ),
            /* 1 */ rule(None, DestMatch::Cidr(cidr("192.0.2.0/24")), 0..=65535, Deny),
            /* 2 */ smtp,
            /* 3 */ no_bind,
            /* 4 */
            rule(
                None,
                DestMatch::domain("Example.COM").unwrap(),
                1000..=2000,
                Deny,
            ),
            /* 5 */ rule(Some("bob"), DestMatch::Any, 0..=65535, Deny),
        ],
    );
    let c = Command::Connect;
    let check = |u: Option<&str>, t: &TargetAddr, res: Option<&str>, cmd| {
        let v = r.check_dest(u.map(str::as_bytes), t, res.map(ip), cmd);
        (v.action, v.by)
    };
    use DecidedBy::{Default as D, DestRule as R};
    type Case = (
        Option<&'static str>,
        TargetAddr,
        Option<&'static str>,
        Command,
        (Action, DecidedBy),
    );
    #[rustfmt::skip]
    let cases: &[Case] = &[
        (Some("alice"), to_ip("192.0.2.9", 80), None, c, (Allow, R(0))),
        (Some("carol"), to_ip("192.0.2.9", 80), None, c, (Deny, R(1))),
        (None, to_ip("192.0.2.9", 80), None, c, (Deny, R(1))),
        (Some("alice"), to_ip("198.51.100.1", 25), None, c, (Deny, R(2))),
        (Some("alice"), to_ip("198.51.100.1", 25), None, Command::Bind, (Deny, R(3))),
        (Some("alice"), to_ip("198.51.100.1", 26), None, Command::UdpAssociate, (Allow, D)),
        // The name rule: before resolving, and after.
        (Some("carol"), to_name("www.example.com", 1500), None, c, (Deny, R(4))),
        (Some("carol"), to_name("WWW.EXAMPLE.COM", 2000), None, c, (Deny, R(4))),
        (Some("carol"), to_name("example.com", 1000), None, c, (Deny, R(4))),
        // For alice, rule 0 could allow the address the name resolves to: resolve it.
        (Some("alice"), to_name("www.example.com", 1500), None, c, (Allow, D)),
        (Some("alice"), to_name("www.example.com.", 1500), Some("198.51.100.1"), c, (Deny, R(4))),
        (Some("alice"), to_name("www.example.com", 1500), Some("192.0.2.1"), c, (Allow, R(0))),
        (Some("alice"), to_name("www.example.com", 2001), None, c, (Allow, D)),
        (Some("alice"), to_name("badexample.com", 1500), None, c, (Allow, D)),
        (Some("alice"), to_name("example.com.evil", 1500), None, c, (Allow, D)),
        // A name rule never matches an address sent as an address.
        (Some("alice"), to_ip("198.51.100.1", 1500), None, c, (Allow, D)),
        (Some("bob"), to_ip("198.51.100.1", 80), None, c, (Deny, R(5))),
        (Some("bob"), to_name("a.example", 80), None, c, (Deny, R(5))),
        (None, to_ip("198.51.100.1", 80), None, c, (Allow, D)),
        // `resolved` is ignored for an address.
        (None, to_ip("198.51.100.1", 80), Some("192.0.2.1"), c, (Allow, D)),
    ];
    for (i, (u, t, res, cmd, want)) in cases.iter().enumerate() {
        assert_eq!(
            check(*u, t, *res, *cmd),
            *want,
            "case {i}: {u:?} {t} {res:?} {cmd:?}"
        );
    }
}

/// A name cannot sneak past an address rule: checked on the name it passes, checked on each
/// address it resolved to it is refused.
#[test]
fn name_cannot_sneak_past_an_address_rule() {
    let r = Rules::new(
        vec![],
        vec![
            rule(None, DestMatch::Cidr(cidr("10.0.0.0/8")), 0..=65535, Deny),
            rule(
                None,
                DestMatch::domain(".example").unwrap(),
                0..=65535,
                Allow,
            ),
        ],
    );
    let t = to_name("intranet.example", 443);
    let c = Command::Connect;
    assert!(r.check_dest(None, &t, None, c).is_allowed(), "resolve it");
    let v = r.check_dest(None, &t, Some(ip("10.1.2.3")), c);
    assert_eq!(
        v,
        Verdict {
            action: Deny,
            by: DecidedBy::DestRule(0)
        }
    );
    assert_eq!(v.reply_code(), Some(ReplyCode::NotAllowed));
    let v = r.check_dest(None, &t, Some(ip("::ffff:10.1.2.3")), c);
    assert_eq!(
        v.by,
        DecidedBy::DestRule(0),
        "mapped address is the IPv4 one"
    );
    let v = r.check_dest(None, &t, Some(ip("192.0.2.1")), c);
    assert_eq!(
        v,
        Verdict {
            action: Allow,
            by: DecidedBy::DestRule(1)
        }
    );
    assert_eq!(v.reply_code(), None);
}

/// Before resolving, a name is denied only when every address would be.
#[test]
fn name_check_denies_only_what_every_address_would() {
    let c = Command::Connect;
    let t = to_name("x.evil", 80);
    // An address allow before the name deny: the answer depends on the address.
    let r = Rules::new(
        vec![],
        vec![
            rule(
                None,
                DestMatch::Cidr(cidr("192.0.2.0/24")),
                0..=65535,
                Allow,
            ),
            rule(None, DestMatch::domain("evil").unwrap(), 0..=65535, Deny),
        ],
    );
    assert!(r.check_dest(None, &t, None, c).is_allowed());
    assert!(r
        .check_dest(None, &t, Some(ip("192.0.2.7")), c)
        .is_allowed());
    assert_eq!(
        r.check_dest(None, &t, Some(ip("198.51.100.7")), c).by,
        DecidedBy::DestRule(1)
    );
    // An address deny before it: denied whatever the address.
    let r = Rules::new(
        vec![],
        vec![
            rule(None, DestMatch::Cidr(cidr("192.0.2.0/24")), 0..=65535, Deny),
            rule(None, DestMatch::domain("evil").unwrap(), 0..=65535, Deny),
        ],
    );
    assert_eq!(r.check_dest(None, &t, None, c).by, DecidedBy::DestRule(1));
    // `deny any` at the end: names are refused before any lookup.
    let r = Rules::new(
        vec![],
        vec![
            rule(None, DestMatch::domain("good").unwrap(), 0..=65535, Allow),
            rule(None, DestMatch::Any, 0..=65535, Deny),
        ],
    );
    assert!(r
        .check_dest(None, &to_name("a.good", 1), None, c)
        .is_allowed());
    assert_eq!(r.check_dest(None, &t, None, c).by, DecidedBy::DestRule(1));
}

#[test]
fn protected_blocks_need_an_explicit_allow() {
    let c = Command::Connect;
    let meta = to_ip("169.254.169.254", 80);
    let d = Rules::default();
    for t in [
        meta.clone(),
        to_ip("::ffff:169.254.169.254", 80),
        to_ip("fe80::1", 80),
        to_ip("fd00:ec2::254", 80),
        to_ip("100.100.100.200", 80),
    ] {
        let v = d.check_dest(None, &t, None, c);
        assert!(matches!(v.by, DecidedBy::Protected(_)), "{t}");
        assert_eq!(v.reply_code(), Some(ReplyCode::NotAllowed));
    }
    assert_eq!(
        d.check_dest(None, &meta, None, c).by.to_string(),
        "built-in deny of 169.254.0.0/16"
    );
    assert!(d
        .check_dest(None, &to_ip("100.100.100.201", 80), None, c)
        .is_allowed());
    assert!(d
        .check_dest(None, &to_ip("fec0::1", 80), None, c)
        .is_allowed());
    // A name resolving there is refused on its address.
    let name = to_name("metadata.google.internal", 80);
    assert!(d.check_dest(None, &name, None, c).is_allowed());
    let v = d.check_dest(None, &name, Some(ip("169.254.169.254")), c);
    assert!(matches!(v.by, DecidedBy::Protected(0)));

    // Catch-all allows, broad blocks and names do not open it ...
    let r = Rules::new(
        vec![],
        vec![
            rule(
                None,
                DestMatch::domain("google.internal").unwrap(),
                0..=65535,
                Allow,
            ),
            rule(None, DestMatch::Cidr(cidr("0.0.0.0/0")), 0..=65535, Allow),
            rule(None, DestMatch::Cidr(cidr("169.0.0.0/8")), 0..=65535, Allow),
            rule(None, DestMatch::Any, 0..=65535, Allow),
        ],
    );
    assert!(matches!(
        r.check_dest(None, &meta, None, c).by,
        DecidedBy::Protected(0)
    ));
    assert!(matches!(
        r.check_dest(None, &name, Some(ip("169.254.169.254")), c).by,
        DecidedBy::Protected(0)
    ));
    assert_eq!(
        r.check_dest(None, &to_ip("192.0.2.1", 1), None, c).by,
        DecidedBy::DestRule(1)
    );
    // ... an explicit address allow does, for its user and ports only.
    let r = Rules::new(
        vec![],
        vec![rule(
            Some("ops"),
            DestMatch::Cidr(cidr("169.254.169.254")),
            80..=80,
            Allow,
        )],
    );
    assert_eq!(
        r.check_dest(Some(b"ops"), &meta, None, c),
        Verdict {
            action: Allow,
            by: DecidedBy::DestRule(0)
        }
    );
    assert!(!r.check_dest(Some(b"dev"), &meta, None, c).is_allowed());
    assert!(!r
        .check_dest(Some(b"ops"), &to_ip("169.254.169.254", 81), None, c)
        .is_allowed());
    assert!(!r
        .check_dest(Some(b"ops"), &to_ip("169.254.169.253", 80), None, c)
        .is_allowed());
    // A deny matches a protected address as any other.
    let r = Rules::new(vec![], vec![rule(None, DestMatch::Any, 0..=65535, Deny)]);
    assert_eq!(
        r.check_dest(None, &meta, None, c).by,
        DecidedBy::DestRule(0)
    );
}

#[test]
fn check_command_for_udp_associate() {
    let udp = Command::UdpAssociate;
    let mut deny_udp = rule(None, DestMatch::Any, 0..=65535, Deny);
    deny_udp.command = Some(udp);
    let r = Rules::new(
        vec![],
        vec![
            rule(
                Some("alice"),
                DestMatch::Cidr(cidr("192.0.2.0/24")),
                53..=53,
                Allow,
            ),
            rule(None, DestMatch::Any, 53..=53, Deny),
            deny_udp,
        ],
    );
    assert!(
        r.check_command(Some(b"alice"), udp).is_allowed(),
        "alice may reach 192.0.2.0/24:53"
    );
    assert_eq!(
        r.check_command(Some(b"bob"), udp).by,
        DecidedBy::DestRule(2)
    );
    assert_eq!(r.check_command(None, udp).by, DecidedBy::DestRule(2));
    assert!(r.check_command(None, Command::Connect).is_allowed());
    // Each datagram is then checked on its destination.
    let v = r.check_dest(Some(b"alice"), &to_ip("192.0.2.1", 53), None, udp);
    assert!(v.is_allowed());
    let v = r.check_dest(Some(b"alice"), &to_ip("192.0.2.1", 54), None, udp);
    assert_eq!(v.by, DecidedBy::DestRule(2));
}

#[test]
fn domain_suffixes() {
    assert_eq!(
        DestMatch::domain(".Example.com."),
        DestMatch::domain("example.com")
    );
    for bad in ["", ".", "..", "a..b", "a b", "a/b", "tab\t"] {
        assert_eq!(DestMatch::domain(bad), None, "{bad:?}");
    }
    let r = Rules::new(
        vec![],
        vec![rule(
            None,
            DestMatch::domain("b.c").unwrap(),
            0..=65535,
            Deny,
        )],
    );
    for (name, denied) in [
        ("b.c", true),
        ("B.C.", true),
        ("a.b.c", true),
        ("x.y.b.c", true),
        ("ab.c", false),
        ("b.c.d", false),
        ("c", false),
        // Not UTF-8: compared as bytes.
        ("\u{e9}.b.c", true),
    ] {
        let v = r.check_dest(None, &to_name(name, 1), None, Command::Connect);
        assert_eq!(!v.is_allowed(), denied, "{name}");
    }
}

#[test]
fn shared_rules_swap_whole() {
    let s = SharedRules::default();
    let before = s.load();
    s.store(Rules::new(
        vec![ClientRule {
            from: cidr("0.0.0.0/0"),
            action: Deny,
        }],
        vec![],
    ));
    assert!(
        before.check_client(ip("1.2.3.4")).is_allowed(),
        "a loaded set is kept"
    );
    assert!(!s.load().check_client(ip("1.2.3.4")).is_allowed());
}

// ---------------------------------------------------------------------------------------
// Limits

#[test]
fn user_connection_limit() {
    let mut cfg = LimitsConfig {
        user_max_connections: nz(2),
        ..Default::default()
    };
    cfg.users.insert(
        Bytes::from_static(b"vip"),
        UserLimits {
            max_connections: Some(None),
            ..Default::default()
        },
    );
    cfg.users.insert(
        Bytes::from_static(b"one"),
        UserLimits {
            max_connections: Some(nz(1)),
            ..Default::default()
        },
    );
    let l = Limits::new(cfg);
    let a = l.try_acquire_user(b"alice").unwrap();
    let b = l.try_acquire_user(b"alice").unwrap();
    let hit = l.try_acquire_user(b"alice").unwrap_err();
    assert_eq!(hit, Hit::UserConnections { max: 2 });
    assert_eq!(hit.reply_code(), ReplyCode::NotAllowed);
    assert_eq!(hit.to_string(), "user at its limit of 2 connections");
    assert!(l.try_acquire_user(b"bob").is_ok(), "per user");
    assert_eq!(l.user_connections(b"alice"), 2);
    drop(a);
    let c = l.try_acquire_user(b"alice").unwrap();
    assert_eq!(c.user(), &Bytes::from_static(b"alice"));
    drop((b, c));
    assert_eq!(l.user_connections(b"alice"), 0);
    let vip: Vec<_> = (0..10)
        .map(|_| l.try_acquire_user(b"vip").unwrap())
        .collect();
    assert_eq!(l.user_connections(b"vip"), 10);
    let _one = l.try_acquire_user(b"one").unwrap();
    assert_eq!(
        l.try_acquire_user(b"one").unwrap_err(),
        Hit::UserConnections { max: 1 }
    );
    // Lowered live: the ten are kept, new ones refused until under.
    l.set_config(
        t0(),
        LimitsConfig {
            user_max_connections: nz(3),
            ..Default::default()
        },
    );
    assert_eq!(l.user_connections(b"vip"), 10);
    assert_eq!(
        l.try_acquire_user(b"vip").unwrap_err(),
        Hit::UserConnections { max: 3 }
    );
    drop(vip);
    assert!(l.try_acquire_user(b"vip").is_ok());
}

#[test]
fn user_limit_holds_under_threads() {
    let l = Limits::new(LimitsConfig {
        user_max_connections: nz(5),
        ..Default::default()
    });
    let barrier = Arc::new(Barrier::new(8));
    let peak = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (l, barrier, peak) = (l.clone(), Arc::clone(&barrier), Arc::clone(&peak));
            std::thread::spawn(move || {
                barrier.wait();
                let mut ok = 0;
                for _ in 0..2000 {
                    if let Ok(g) = l.try_acquire_user(b"u") {
                        ok += 1;
                        peak.fetch_max(
                            l.user_connections(b"u"),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        drop(g);
                    }
                }
                ok
            })
        })
        .collect();
    let ok: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(ok > 0);
    assert!(peak.load(std::sync::atomic::Ordering::Relaxed) <= 5);
    assert_eq!(l.user_connections(b"u"), 0);
}

#[test]
fn ip_connection_limit_and_rate() {
    let l = Limits::new(LimitsConfig {
        ip_max_connections: nz(3),
        ip_connections_per_second: nz(4),
        ..Default::default()
    });
    let now = t0();
    let a = ip("192.0.2.1");
    let g1 = l.try_acquire_ip(now, a).unwrap();
    let g2 = l.try_acquire_ip(now, ip("::ffff:192.0.2.1")).unwrap();
    let g3 = l.try_acquire_ip(now, a).unwrap();
    assert_eq!(l.ip_connections(a), 3, "mapped counts as IPv4");
    assert_eq!(
        l.try_acquire_ip(now, a).unwrap_err(),
        Hit::IpConnections { max: 3 }
    );
    drop((g1, g2, g3));
    // Three taken of a burst of four: one more now, then one every 250 ms.
    let g = l.try_acquire_ip(now, a).unwrap();
    drop(g);
    let hit = l.try_acquire_ip(now, a).unwrap_err();
    assert_eq!(hit, Hit::IpRate { per_second: 4 });
    assert_eq!(
        hit.to_string(),
        "client address at its limit of 4 new connections per second"
    );
    assert!(
        l.try_acquire_ip(now, ip("192.0.2.2")).is_ok(),
        "per address"
    );
    assert!(l
        .try_acquire_ip(now + Duration::from_millis(249), a)
        .is_err());
    assert!(l
        .try_acquire_ip(now + Duration::from_millis(250), a)
        .is_ok());
    assert!(l
        .try_acquire_ip(now + Duration::from_millis(251), a)
        .is_err());
    // Over a long run: four a second, refusals not counted.
    let mut ok = 0;
    for ms in (1000..11_000).step_by(10) {
        if l.try_acquire_ip(now + Duration::from_millis(ms), a).is_ok() {
            ok += 1;
        }
    }
    assert!((40..=44).contains(&ok), "{ok}");
    assert_eq!(l.ip_connections(a), 0);
}

#[test]
fn ip_table_is_swept() {
    let l = Limits::new(LimitsConfig {
        ip_connections_per_second: nz(10),
        ..Default::default()
    });
    let now = t0();
    for i in 0..5000u32 {
        drop(
            l.try_acquire_ip(now, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
                .unwrap(),
        );
    }
    assert!(l.tracked_ips() <= 5000);
    // Two seconds on, those are idle: the table is swept when it has doubled, so it stays
    // within twice what is live.
    let later = now + Duration::from_secs(2);
    let _held = l.try_acquire_ip(later, ip("192.0.2.1")).unwrap();
    for i in 0..4000u32 {
        drop(
            l.try_acquire_ip(later, IpAddr::V4(Ipv4Addr::from(0x0c00_0000 + i)))
                .unwrap(),
        );
    }
    assert!(l.tracked_ips() <= 4001, "{}", l.tracked_ips());
    assert_eq!(
        l.ip_connections(ip("192.0.2.1")),
        1,
        "a connected address is kept"
    );
    // Without a rate, an address is forgotten with its last connection.
    let l = Limits::default();
    drop(l.try_acquire_ip(now, ip("192.0.2.1")).unwrap());
    assert_eq!(l.tracked_ips(), 0);
}

#[test]
fn handshakes_in_progress() {
    let l = Limits::new(LimitsConfig {
        max_handshakes: nz(2),
        ..Default::default()
    });
    let a = l.try_acquire_handshake().unwrap();
    let _b = l.try_acquire_handshake().unwrap();
    assert_eq!(
        l.try_acquire_handshake().unwrap_err(),
        Hit::Handshakes { max: 2 }
    );
    assert_eq!(l.handshakes(), 2);
    drop(a);
    let _c = l.try_acquire_handshake().unwrap();
    l.set_config(t0(), LimitsConfig::default());
    let more: Vec<_> = (0..100)
        .map(|_| l.try_acquire_handshake().unwrap())
        .collect();
    assert_eq!(l.handshakes(), 102);
    drop(more);
    assert_eq!(l.handshakes(), 2);
}

// ---------------------------------------------------------------------------------------
// Bucket

const MIB: u64 = 1024 * 1024;

/// `n` greedy connections on one bucket, each always wanting 64 KiB: each asks, sends its
/// grant at `wait_until` (instantly), then asks again.
struct Greedy {
    handles: Vec<BucketHandle>,
    ready: Vec<Instant>,
}

impl Greedy {
    fn new(bucket: &Arc<Bucket>, n: usize, start: Instant) -> Self {
        Self {
            handles: (0..n).map(|_| bucket.attach()).collect(),
            ready: vec![start; n],
        }
    }

    /// Runs until `end`; returns the bytes each sent in the run.
    fn run_until(&mut self, end: Instant) -> Vec<u64> {
        let mut sent = vec![0u64; self.handles.len()];
        loop {
            let (i, &t) = self
                .ready
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| **t)
                .unwrap();
            if t > end {
                return sent;
            }
            let g = self.handles[i].take(t, 64 * 1024);
            assert!(g.bytes >= 1 && g.bytes <= 64 * 1024);
            let at = g.wait_until.unwrap_or(t);
            assert!(at >= t);
            if at <= end {
                sent[i] += g.bytes;
            }
            // A grant sent at once still takes a microsecond to write.
            self.ready[i] = if at == t {
                t + Duration::from_micros(1)
            } else {
                at
            };
        }
    }
}

fn simulate(bucket: &Arc<Bucket>, n: usize, start: Instant, secs: u64) -> Vec<u64> {
    Greedy::new(bucket, n, start).run_until(start + Duration::from_secs(secs))
}

#[test]
fn one_mib_per_second_holds_with_1_4_16_connections() {
    for n in [1, 4, 16] {
        let b = Bucket::new(Rate::per_second(MIB));
        let sent = simulate(&b, n, t0(), 5);
        let total: u64 = sent.iter().sum();
        eprintln!(
            "{n} connections: {total} bytes in 5 s (ideal {}), per connection {sent:?}",
            5 * MIB
        );
        let ideal = 5 * MIB;
        assert!(
            total.abs_diff(ideal) * 10 <= ideal,
            "{n} connections: {total} bytes in 5 s, want {ideal} ±10 %"
        );
        // Never more than the burst plus the rate.
        assert!(total <= ideal + default_burst(MIB), "{n}: {total}");
        // Fair: each within 10 % of an equal share.
        let share = total / n as u64;
        for (i, s) in sent.iter().enumerate() {
            assert!(
                s.abs_diff(share) * 10 <= share,
                "{n} connections: #{i} sent {s}, share {share}"
            );
        }
        assert_eq!(b.attached(), 0, "handles detached");
    }
}

#[test]
fn unlimited_bucket_grants_everything() {
    let b = Bucket::new(None);
    let h = b.attach();
    assert_eq!(
        h.take(t0(), 1 << 40),
        Granted {
            bytes: 1 << 40,
            wait_until: None
        }
    );
    assert_eq!(
        h.take(t0(), 0),
        Granted {
            bytes: 0,
            wait_until: None
        }
    );
}

#[test]
fn burst_after_idle_is_bounded() {
    let b = Bucket::new(Some(Rate {
        bytes_per_second: 1000,
        burst: 1000,
    }));
    let h = b.attach();
    let now = t0();
    assert_eq!(
        h.take(now, 1000),
        Granted {
            bytes: 1000,
            wait_until: None
        }
    );
    // Empty: the next 500 bytes may go in half a second.
    assert_eq!(
        h.take(now, 500),
        Granted {
            bytes: 500,
            wait_until: Some(now + Duration::from_millis(500))
        }
    );
    // An hour idle refills to the burst, not to an hour's worth.
    let later = now + Duration::from_secs(3600);
    assert_eq!(h.take(later, 1000).wait_until, None);
    assert_eq!(
        h.take(later, 1).wait_until,
        Some(later + Duration::from_millis(1))
    );
    // A grant is at most the burst.
    assert_eq!(h.take(later, 10_000).bytes, 1000);
}

#[test]
fn rate_changes_apply_to_live_connections() {
    let b = Bucket::new(Rate::per_second(MIB));
    let mut sim = Greedy::new(&b, 4, t0());
    let t = t0() + Duration::from_secs(5);
    let first = sim.run_until(t).iter().sum::<u64>();
    b.set_rate(t, Rate::per_second(MIB / 4));
    let after = sim
        .run_until(t + Duration::from_secs(5))
        .iter()
        .sum::<u64>();
    assert!(first.abs_diff(5 * MIB) * 10 <= 5 * MIB, "{first}");
    assert!(after.abs_diff(5 * MIB / 4) * 10 <= 5 * MIB / 4, "{after}");
    // And faster again: the reservations made at the slow rate are re-timed.
    let t = t + Duration::from_secs(5);
    b.set_rate(t, Rate::per_second(2 * MIB));
    let fast = sim
        .run_until(t + Duration::from_secs(5))
        .iter()
        .sum::<u64>();
    assert!(fast.abs_diff(10 * MIB) * 10 <= 10 * MIB, "{fast}");
    let t = t + Duration::from_secs(5);
    b.set_rate(t, None);
    assert_eq!(b.attach().take(t, 1 << 30).bytes, 1 << 30);
}

#[test]
fn user_bandwidth_is_shared_and_reconfigured() {
    let cfg = LimitsConfig {
        user_download: NonZeroU64::new(MIB),
        ..Default::default()
    };
    let l = Limits::new(cfg);
    let a = l.try_acquire_user(b"alice").unwrap();
    let b = l.try_acquire_user(b"alice").unwrap();
    assert!(
        Arc::ptr_eq(a.download().bucket(), b.download().bucket()),
        "one bucket per user"
    );
    assert_eq!(a.download().bucket().attached(), 2);
    assert_eq!(a.upload().bucket().rate(), None);
    assert_eq!(a.download().bucket().rate(), Rate::per_second(MIB));
    let mut cfg = LimitsConfig {
        user_download: NonZeroU64::new(2 * MIB),
        ..Default::default()
    };
    cfg.users.insert(
        Bytes::from_static(b"alice"),
        UserLimits {
            upload: Some(NonZeroU64::new(1000)),
            ..Default::default()
        },
    );
    l.set_config(t0(), cfg);
    assert_eq!(
        a.download().bucket().rate(),
        Rate::per_second(2 * MIB),
        "live"
    );
    assert_eq!(b.upload().bucket().rate(), Rate::per_second(1000));
    let bob = l.try_acquire_user(b"bob").unwrap();
    assert!(!Arc::ptr_eq(bob.download().bucket(), a.download().bucket()));
    assert_eq!(bob.upload().bucket().rate(), None);
}

// ---------------------------------------------------------------------------------------
// Egress

#[test]
fn egress_family_picks_the_source() {
    let both = Egress::from_addrs(&[ip("192.0.2.1"), ip("2001:db8::1")]).unwrap();
    assert_eq!(
        both.source_for(ip("198.51.100.1")),
        Ok(Some("192.0.2.1:0".parse().unwrap()))
    );
    assert_eq!(
        both.source_for(ip("::ffff:198.51.100.1")),
        Ok(Some("192.0.2.1:0".parse().unwrap()))
    );
    assert_eq!(
        both.source_for(ip("2001:db8::9")),
        Ok(Some("[2001:db8::1]:0".parse().unwrap()))
    );
    let v4 = Egress::from_addrs(&[ip("192.0.2.1")]).unwrap();
    assert_eq!(
        v4.source_for(ip("2001:db8::9")),
        Err(ReplyCode::NetworkUnreachable)
    );
    let mut resolved: Vec<SocketAddr> = vec![
        "[2001:db8::9]:80".parse().unwrap(),
        "198.51.100.1:80".parse().unwrap(),
    ];
    v4.retain_reachable(&mut resolved);
    assert_eq!(
        resolved,
        vec!["198.51.100.1:80".parse::<SocketAddr>().unwrap()]
    );
    let none = Egress::default();
    assert!(none.is_default());
    assert_eq!(none.source_for(ip("2001:db8::9")), Ok(None));
    assert!(matches!(
        Egress::from_addrs(&[ip("192.0.2.1"), ip("::ffff:192.0.2.2")]),
        Err(EgressError::TwoOfAFamily { family: "IPv4", .. })
    ));
    assert_eq!(
        Egress::from_addrs(&[ip("0.0.0.0")]),
        Err(EgressError::NotUnicast(ip("0.0.0.0")))
    );
    assert_eq!(
        Egress::from_addrs(&[ip("ff02::1")]),
        Err(EgressError::NotUnicast(ip("ff02::1")))
    );

    let mut table = EgressTable {
        default: both,
        ..Default::default()
    };
    table.users.insert(Bytes::from_static(b"alice"), v4);
    assert_eq!(table.for_user(Some(b"alice")), &v4);
    assert_eq!(table.for_user(Some(b"bob")), &both);
    assert_eq!(table.for_user(None), &both);
}
