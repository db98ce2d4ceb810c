//! Session scripts for the CONNECT policy (RFC 8305 Happy Eyeballs, issue 18): order, stagger,
//! per-attempt deadlines, the choice of failure, late results.

use super::*;

use io::ErrorKind as K;

const V6A: &str = "[2001:db8::a]:80";
const V6B: &str = "[2001:db8::b]:80";
const V4A: &str = "192.0.2.1:80";
const V4B: &str = "192.0.2.2:80";
const V4C: &str = "192.0.2.3:80";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A session that sent CONNECT example.com:80 at t = 0 and was told `addrs`.
fn resolved_to(limits: HandshakeLimits, addrs: &[&str]) -> Server {
    let mut s = Server::with_limits(false, limits);
    s.feed(
        0,
        &cat(&[GREET_UP, AUTH_BOB, &connect(NAME_TARGET), b"early"]),
    )
    .expect(b"\x05\x02\x01\x00", &[ev_resolve(b"example.com", 80)]);
    s.resolved(0, Ok(addrs.iter().map(|a| sa(a)).collect()));
    s
}

fn reply_ok(bound: SocketAddr) -> Vec<u8> {
    let mut b = BytesMut::new();
    Reply {
        code: ReplyCode::Succeeded,
        bound: TargetAddr::Ip(bound),
    }
    .encode(&mut b);
    b.to_vec()
}

#[test]
fn two_families_interleave_ipv6_first_with_the_250ms_stagger() {
    let mut s = resolved_to(HandshakeLimits::default(), &[V4A, V4B, V6A, V6B]);
    s.expect(b"", &[ev_dial(0, sa(V6A))]);
    assert_eq!(
        s.hs.poll_timeout(),
        Some(s.at(250)),
        "the stagger comes first"
    );
    s.timeout(249).expect(b"", &[]);
    s.timeout(250).expect(b"", &[ev_dial(1, sa(V4A))]);
    s.run_until(749).expect(b"", &[ev_dial(2, sa(V6B))]);
    s.run_until(750).expect(b"", &[ev_dial(3, sa(V4B))]);
    // Nothing left to start: the next deadline is attempt 0's share, 10 s / 4.
    assert_eq!(s.hs.poll_timeout(), Some(s.at(2500)));
    // Attempt 1 wins; the others are cancelled before the reply, in attempt order.
    s.dialed(800, 1, Ok(local())).expect(
        REPLY_OK_LOCAL,
        &[
            ev_cancel(0),
            ev_cancel(2),
            ev_cancel(3),
            ev_replied(name(), ReplyCode::Succeeded),
            ev_established(Some(1), b"early"),
        ],
    );
    assert_eq!(s.hs.poll_timeout(), None);
}

#[test]
fn a_single_family_keeps_the_resolver_order() {
    let mut s = resolved_to(HandshakeLimits::default(), &[V4B, V4A, V4B, V4C]);
    s.run_until(600).expect(
        b"",
        &[
            ev_dial(0, sa(V4B)),
            ev_dial(1, sa(V4A)),
            ev_dial(2, sa(V4C)),
        ],
    );
}

#[test]
fn first_fails_fast_and_the_next_starts_at_once() {
    let mut s = resolved_to(HandshakeLimits::default(), &[V6A, V4A]);
    s.expect(b"", &[ev_dial(0, sa(V6A))]);
    s.dialed(30, 0, Err(K::NetworkUnreachable))
        .expect(b"", &[ev_dial(1, sa(V4A))]);
    // The last address may use all that is left: no stagger, no earlier deadline.
    assert_eq!(s.hs.poll_timeout(), Some(s.at(10_000)));
    let bound = "192.0.2.99:40000".parse().unwrap();
    s.dialed(60, 1, Ok(bound)).expect(
        &reply_ok(bound),
        &[
            ev_replied(name(), ReplyCode::Succeeded),
            ev_established(Some(1), b"early"),
        ],
    );
}

#[test]
fn a_black_holed_first_address_takes_only_its_share() {
    let mut s = resolved_to(HandshakeLimits::default(), &[V4A, V4B]);
    s.run_until(250)
        .expect(b"", &[ev_dial(0, sa(V4A)), ev_dial(1, sa(V4B))]);
    // Attempt 0 had 10 s / 2; attempt 1, started at 250 ms, has the rest.
    assert_eq!(s.hs.poll_timeout(), Some(s.at(5000)));
    s.run_until(5000).expect(b"", &[ev_cancel(0)]);
    assert_eq!(s.hs.poll_timeout(), Some(s.at(10_000)));
    // Its result, if the transport still delivers one, is ignored.
    s.dialed(5001, 0, Ok(local())).expect(b"", &[]);
    s.dialed(6000, 1, Ok(local())).expect(
        REPLY_OK_LOCAL,
        &[
            ev_replied(name(), ReplyCode::Succeeded),
            ev_established(Some(1), b"early"),
        ],
    );
}

#[test]
fn shares_of_what_remains_and_at_most_four_in_flight() {
    let limits = HandshakeLimits {
        handshake_timeout: Duration::from_secs(12),
        ..HandshakeLimits::default()
    };
    let six = [
        "192.0.2.1:80",
        "192.0.2.2:80",
        "192.0.2.3:80",
        "192.0.2.4:80",
        "192.0.2.5:80",
        "192.0.2.6:80",
    ];
    let mut s = resolved_to(limits, &six);
    s.run_until(750).expect(
        b"",
        &[
            ev_dial(0, sa(six[0])),
            ev_dial(1, sa(six[1])),
            ev_dial(2, sa(six[2])),
            ev_dial(3, sa(six[3])),
        ],
    );
    // Four in flight: no stagger; the next start waits for attempt 0's deadline,
    // 12 s / 6 = 2 s, and happens at once then.
    assert_eq!(s.hs.poll_timeout(), Some(s.at(2000)));
    s.run_until(1999).expect(b"", &[]);
    s.run_until(2000)
        .expect(b"", &[ev_cancel(0), ev_dial(4, sa(six[4]))]);
    // Attempt 1 (started at 250 ms, 5 addresses not started then): 250 + 11 750 / 5.
    assert_eq!(s.hs.poll_timeout(), Some(s.at(2600)));
    s.run_until(2600)
        .expect(b"", &[ev_cancel(1), ev_dial(5, sa(six[5]))]);
    // Attempt 2: 500 + 11 500 / 4 = 3375; attempt 3: 750 + 11 250 / 3 = 4500;
    // attempt 4: 2000 + 10 000 / 2 = 7000; attempt 5 (the last): all that is left.
    s.run_until(3375).expect(b"", &[ev_cancel(2)]);
    s.run_until(4500).expect(b"", &[ev_cancel(3)]);
    s.run_until(7000).expect(b"", &[ev_cancel(4)]);
    assert_eq!(s.hs.poll_timeout(), Some(s.at(12_000)));
    s.run_until(12_000).expect(
        &failure(6),
        &[
            ev_cancel(5),
            ev_replied(name(), ReplyCode::TtlExpired),
            ev_closed(CloseReason::HandshakeTimeout),
        ],
    );
}

#[test]
fn all_fail_with_the_most_informative_code() {
    // (failures in attempt order, expected reply)
    let cases: [(&[K], u8); 6] = [
        (&[K::NetworkUnreachable, K::ConnectionRefused], 5),
        (&[K::ConnectionRefused, K::NetworkUnreachable], 5),
        (&[K::NetworkUnreachable, K::TimedOut], 6),
        (&[K::HostUnreachable, K::TimedOut, K::PermissionDenied], 4),
        (&[K::Other, K::PermissionDenied], 2),
        (&[K::Other, K::AddrNotAvailable], 1),
    ];
    for (kinds, rep) in cases {
        let addrs = [V6A, V4A, V6B];
        let mut s = resolved_to(HandshakeLimits::default(), &addrs[..kinds.len()]);
        for (i, kind) in kinds.iter().enumerate() {
            let ms = 10 * i as u64 + 10;
            s.dialed(ms, i as u32, Err(*kind));
        }
        let code = ReplyCode::from_u8(rep).unwrap();
        assert_eq!(
            s.all
                .iter()
                .filter(|e| matches!(e, Event::Dial { .. }))
                .count(),
            kinds.len()
        );
        assert_eq!(s.out, failure(rep), "{kinds:?}");
        assert_eq!(
            s.events[s.events.len() - 2..],
            [
                ev_replied(name(), code),
                ev_closed(CloseReason::RequestFailed(rep)),
            ],
            "{kinds:?}"
        );
    }
}

#[test]
fn an_attempt_past_its_share_fails_as_ttl_expired() {
    let mut s = resolved_to(HandshakeLimits::default(), &[V4A, V4B]);
    s.run_until(250)
        .expect(b"", &[ev_dial(0, sa(V4A)), ev_dial(1, sa(V4B))]);
    s.dialed(300, 1, Err(K::NetworkUnreachable))
        .expect(b"", &[]);
    // Attempt 0 times out at its share: 06 beats the other's network unreachable.
    s.run_until(5000).expect(
        &failure(6),
        &[
            ev_cancel(0),
            ev_replied(name(), ReplyCode::TtlExpired),
            ev_closed(CloseReason::RequestFailed(6)),
        ],
    );
}

#[test]
fn resolve_failure_empty_answer_and_non_utf8_are_04() {
    for r in [
        Err(K::NotFound),
        Err(K::Other),
        Err(K::TimedOut),
        Ok(vec![]),
    ] {
        let mut s = Server::new(false);
        s.feed(0, &cat(&[GREET_UP, AUTH_BOB, &connect(NAME_TARGET)]))
            .expect(b"\x05\x02\x01\x00", &[ev_resolve(b"example.com", 80)]);
        s.resolved(5, r.clone()).expect(
            &failure(4),
            &[
                ev_replied(name(), ReplyCode::HostUnreachable),
                ev_closed(CloseReason::RequestFailed(4)),
            ],
        );
        assert_eq!(
            ReplyCode::from_resolve_error(K::NotFound),
            ReplyCode::HostUnreachable
        );
    }
    // Not UTF-8: refused without asking the resolver.
    let target = TargetAddr::Domain(Bytes::from_static(b"\xff\xfe.test"), 80);
    let mut req = BytesMut::new();
    Request {
        command: Command::Connect,
        target: target.clone(),
    }
    .encode(&mut req);
    let mut s = Server::new(false);
    s.feed(0, &cat(&[GREET_UP, AUTH_BOB, &req])).expect(
        &cat(&[b"\x05\x02\x01\x00", &failure(4)]),
        &[
            ev_replied(target, ReplyCode::HostUnreachable),
            ev_closed(CloseReason::RequestFailed(4)),
        ],
    );
}

#[test]
fn ip_literal_names_are_dialled_without_resolving() {
    for (lit, addr) in [
        (&b"192.0.2.7"[..], "192.0.2.7:443"),
        (b"2001:db8::7", "[2001:db8::7]:443"),
    ] {
        let target = TargetAddr::Domain(Bytes::copy_from_slice(lit), 443);
        let mut req = BytesMut::new();
        Request {
            command: Command::Connect,
            target,
        }
        .encode(&mut req);
        let mut s = Server::new(false);
        s.feed(0, &cat(&[GREET_UP, AUTH_BOB, &req]))
            .expect(b"\x05\x02\x01\x00", &[ev_dial(0, sa(addr))]);
    }
}

#[test]
fn resolved_ports_are_replaced_by_the_requested_one() {
    let mut s = resolved_to(
        HandshakeLimits::default(),
        &["192.0.2.1:0", "192.0.2.1:9999"],
    );
    // Both become 192.0.2.1:80, which is tried once.
    s.expect(b"", &[ev_dial(0, sa(V4A))]);
    assert_eq!(s.hs.poll_timeout(), Some(s.at(10_000)));
}

#[test]
fn late_and_unknown_results_are_ignored() {
    let mut s = resolved_to(HandshakeLimits::default(), &[V6A, V4A]);
    s.run_until(250)
        .expect(b"", &[ev_dial(0, sa(V6A)), ev_dial(1, sa(V4A))]);
    // Never started.
    s.hs.handle_dial_result(s.at(260), Attempt(7), Ok(local()));
    s.drain();
    s.expect(b"", &[]);
    // A second Resolve answer, a Listen/UDP answer, an accepted peer: not asked for.
    s.resolved(261, Ok(vec![sa(V4B)]))
        .listening(262, Ok(local()))
        .udp_bound(263, Ok(local()))
        .accepted(264, V4A)
        .expect(b"", &[]);
    s.dialed(300, 0, Ok(local())).expect(
        REPLY_OK_LOCAL,
        &[
            ev_cancel(1),
            ev_replied(name(), ReplyCode::Succeeded),
            ev_established(Some(0), b"early"),
        ],
    );
    // The loser's and the winner's late results.
    s.dialed(301, 1, Ok(local()))
        .dialed(302, 0, Err(K::ConnectionReset))
        .expect(b"", &[]);
    assert!(s.hs.is_established());
}

#[test]
fn a_result_at_the_deadline_not_yet_fired_is_late() {
    let mut s = resolved_to(HandshakeLimits::default(), &[V4A, V4B]);
    s.run_until(250)
        .expect(b"", &[ev_dial(0, sa(V4A)), ev_dial(1, sa(V4B))]);
    // The transport reports attempt 0's success at its deadline, before handle_timeout.
    s.dialed(5000, 0, Ok(local())).expect(b"", &[ev_cancel(0)]);
    // And at the handshake deadline, attempt 1's success comes too late as well.
    s.dialed(10_000, 1, Ok(local())).expect(
        &failure(6),
        &[
            ev_cancel(1),
            ev_replied(name(), ReplyCode::TtlExpired),
            ev_closed(CloseReason::HandshakeTimeout),
        ],
    );
}

#[test]
fn handshake_deadline_gives_06_after_other_failures() {
    let mut s = resolved_to(HandshakeLimits::default(), &[V4A, V4B]);
    s.expect(b"", &[ev_dial(0, sa(V4A))]);
    s.dialed(10, 0, Err(K::ConnectionRefused))
        .expect(b"", &[ev_dial(1, sa(V4B))]);
    s.run_until(9999).expect(b"", &[]);
    s.run_until(10_000).expect(
        &failure(6),
        &[
            ev_cancel(1),
            ev_replied(name(), ReplyCode::TtlExpired),
            ev_closed(CloseReason::HandshakeTimeout),
        ],
    );
}

#[test]
fn a_custom_attempt_delay() {
    let limits = HandshakeLimits {
        attempt_delay: Duration::from_millis(100),
        ..HandshakeLimits::default()
    };
    let mut s = resolved_to(limits, &[V4A, V4B, V4C]);
    s.run_until(200).expect(
        b"",
        &[
            ev_dial(0, sa(V4A)),
            ev_dial(1, sa(V4B)),
            ev_dial(2, sa(V4C)),
        ],
    );
}

#[test]
fn poll_timeout_always_moves_on() {
    // Step through a whole race by deadlines only (every attempt black-holed): each
    // handle_timeout moves the deadline forward, and the session ends at the handshake
    // deadline after a bounded number of wake-ups.
    let addrs: Vec<String> = (1..=16).map(|i| format!("192.0.2.{i}:80")).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let mut s = resolved_to(HandshakeLimits::default(), &refs);
    let mut wakeups = 0;
    while let Some(t) = s.hs.poll_timeout() {
        s.hs.handle_timeout(t);
        s.drain();
        assert!(s.hs.poll_timeout().is_none_or(|n| n > t));
        wakeups += 1;
        assert!(wakeups < 100);
    }
    assert!(s.hs.is_closed());
    let dials = s
        .all
        .iter()
        .filter(|e| matches!(e, Event::Dial { .. }))
        .count();
    assert_eq!(dials, 16, "every address was tried");
}
