//! Session scripts for BIND and UDP ASSOCIATE (control side) and for close requests.

use super::*;

use crate::state::Mutation as M;

const LISTEN: &str = "10.0.0.1:40001";
/// BND of the first BIND reply: 10.0.0.1:40001.
const REPLY_LISTEN: &[u8] = b"\x05\x00\x00\x01\x0a\x00\x00\x01\x9c\x41";
/// BIND DST 192.0.2.20:21 (an FTP server).
const BIND_FTP: &[u8] = b"\x05\x02\x00\x01\xc0\x00\x02\x14\x00\x15";
/// UDP ASSOCIATE DST 0.0.0.0:0 (the client does not know its source yet).
const UDP_ZEROS: &[u8] = b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00";

fn ftp() -> TargetAddr {
    TargetAddr::Ip("192.0.2.20:21".parse().unwrap())
}

fn reply_ok(bound: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    Reply {
        code: ReplyCode::Succeeded,
        bound: TargetAddr::Ip(bound.parse().unwrap()),
    }
    .encode(&mut b);
    b.to_vec()
}

/// A session past authentication that sent `request` (plus `early`) at t = 0.
fn requested(request: &[u8], early: &[u8]) -> Server {
    let mut s = Server::all_commands();
    s.feed(0, &cat(&[GREET_UP, AUTH_BOB, request, early]));
    assert_eq!(&s.out[..4], b"\x05\x02\x01\x00");
    s.out.drain(..4);
    s
}

#[test]
fn bind_two_replies_then_established() {
    let mut s = requested(BIND_FTP, b"PORT");
    s.expect(b"", &[Event::Listen]);
    s.feed(5, b" 1").expect(b"", &[]);
    s.listening(10, Ok(LISTEN.parse().unwrap()))
        .expect(REPLY_LISTEN, &[]);
    // The accept deadline is the connection timeout (30 s here), from the first reply.
    assert_eq!(s.hs.poll_timeout(), Some(s.at(30_010)));
    assert!(!s.hs.is_done());
    s.feed(20, b"!").expect(b"", &[]);
    // The FTP server's data connection comes from its port 20: ports are not compared.
    s.accepted(1000, "192.0.2.20:20").expect(
        &reply_ok("192.0.2.20:20"),
        &[
            ev_replied(ftp(), ReplyCode::Succeeded),
            ev_established(None, b"PORT 1!"),
        ],
    );
    assert!(s.hs.is_established());
    assert_eq!(s.hs.poll_timeout(), None);
    s.accepted(1001, "192.0.2.20:20").expect(b"", &[]);
}

#[test]
fn bind_accepts_anyone_when_dst_is_all_zeros_and_maps_v4_in_v6() {
    let zeros4 = b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00";
    let zeros6 = cat(&[b"\x05\x02\x00\x04", &[0; 16], b"\x00\x00"]);
    for (req, peer) in [
        (&zeros4[..], "198.51.100.7:5000"),
        (&zeros6[..], "[2001:db8::5]:5000"),
        (BIND_FTP, "[::ffff:192.0.2.20]:20"),
    ] {
        let mut s = requested(req, b"");
        s.listening(1, Ok(LISTEN.parse().unwrap()));
        s.accepted(2, peer);
        assert!(s.hs.is_established(), "{peer}");
        assert_eq!(s.out, cat(&[REPLY_LISTEN, &reply_ok(peer)]));
    }
}

#[test]
fn bind_from_a_stranger_gets_02_and_closes() {
    let mut s = requested(BIND_FTP, b"");
    s.listening(1, Ok(LISTEN.parse().unwrap()))
        .expect(REPLY_LISTEN, &[Event::Listen]);
    s.accepted(2, "192.0.2.21:20").expect(
        &failure(2),
        &[
            ev_replied(ftp(), ReplyCode::NotAllowed),
            ev_closed(CloseReason::RequestFailed(2)),
        ],
    );
}

#[test]
fn bind_accept_deadline_is_the_setting_read_at_the_request() {
    let mut s = requested(BIND_FTP, b"");
    // Changing the setting after the request does not move this BIND's deadline.
    let m = M::SetConnectionTimeout(200);
    assert_eq!(s.state.apply(None, &m), crate::state::Outcome::Applied);
    s.listening(100, Ok(LISTEN.parse().unwrap()))
        .expect(REPLY_LISTEN, &[Event::Listen]);
    s.run_until(30_099).expect(b"", &[]);
    s.run_until(30_100).expect(
        &failure(6),
        &[
            ev_replied(ftp(), ReplyCode::TtlExpired),
            ev_closed(CloseReason::RequestFailed(6)),
        ],
    );
    s.accepted(30_101, "192.0.2.20:20").expect(b"", &[]);
}

#[test]
fn bind_failures() {
    // The listener could not be made.
    let mut s = requested(BIND_FTP, b"");
    s.listening(1, Err(io::ErrorKind::AddrInUse)).expect(
        &failure(1),
        &[
            Event::Listen,
            ev_replied(ftp(), ReplyCode::GeneralFailure),
            ev_closed(CloseReason::RequestFailed(1)),
        ],
    );
    // The handshake deadline runs until the first reply.
    let mut s = requested(BIND_FTP, b"");
    s.run_until(10_000).expect(
        &failure(6),
        &[
            Event::Listen,
            ev_replied(ftp(), ReplyCode::TtlExpired),
            ev_closed(CloseReason::HandshakeTimeout),
        ],
    );
    // A domain name DST.
    let mut s = requested(
        &connect(NAME_TARGET)
            .iter()
            .enumerate()
            .map(|(i, b)| if i == 1 { 2 } else { *b })
            .collect::<Vec<u8>>(),
        b"",
    );
    s.expect(
        &failure(8),
        &[
            ev_replied(name(), ReplyCode::AddressTypeNotSupported),
            ev_closed(CloseReason::RequestFailed(8)),
        ],
    );
    // An accept reported before listening is ignored.
    let mut s = requested(BIND_FTP, b"");
    s.accepted(1, "192.0.2.20:20").expect(b"", &[Event::Listen]);
    // Early data past the limit while waiting for the peer: second reply 01.
    let mut s = requested(BIND_FTP, b"");
    s.listening(1, Ok(LISTEN.parse().unwrap()));
    s.feed(2, &vec![0; MAX_EARLY_DATA + 1]).expect(
        &cat(&[REPLY_LISTEN, &failure(1)]),
        &[
            Event::Listen,
            ev_replied(ftp(), ReplyCode::GeneralFailure),
            ev_closed(CloseReason::Peer(ProtocolError::InputLimit)),
        ],
    );
}

#[test]
fn udp_associate_reply_then_association_until_eof() {
    let zeros = TargetAddr::Ip("0.0.0.0:0".parse().unwrap());
    let mut s = requested(UDP_ZEROS, b"ignored");
    s.expect(b"", &[Event::BindUdp]);
    assert!(s.input.is_empty(), "control bytes are discarded");
    s.udp_bound(3, Ok("10.0.0.1:5353".parse().unwrap())).expect(
        &reply_ok("10.0.0.1:5353"),
        &[
            ev_replied(zeros.clone(), ReplyCode::Succeeded),
            Event::Associated { client: zeros },
        ],
    );
    assert!(s.hs.is_associated() && s.hs.is_done() && !s.hs.is_established());
    assert_eq!(
        s.hs.poll_timeout(),
        None,
        "the association has no handshake timer"
    );
    s.feed(60_000, b"keepalive junk").expect(b"", &[]);
    assert!(s.input.is_empty());
    s.timeout(120_000).expect(b"", &[]);
    s.eof(200_000)
        .expect(b"", &[ev_closed(CloseReason::PeerEof)]);
    assert!(s.hs.is_closed() && !s.hs.is_associated());
    s.eof(200_001).feed(200_002, b"x").expect(b"", &[]);
}

#[test]
fn udp_associate_client_is_the_request_dst() {
    let dst = TargetAddr::Ip("[2001:db8::9]:7000".parse().unwrap());
    let mut req = BytesMut::new();
    Request {
        command: Command::UdpAssociate,
        target: dst.clone(),
    }
    .encode(&mut req);
    let mut s = requested(&req, b"");
    s.udp_bound(1, Ok("[2001:db8::1]:40000".parse().unwrap()));
    assert_eq!(s.events.last(), Some(&Event::Associated { client: dst }));
}

#[test]
fn udp_associate_failures() {
    let zeros = TargetAddr::Ip("0.0.0.0:0".parse().unwrap());
    let mut s = requested(UDP_ZEROS, b"");
    s.udp_bound(1, Err(io::ErrorKind::PermissionDenied)).expect(
        &failure(2),
        &[
            Event::BindUdp,
            ev_replied(zeros.clone(), ReplyCode::NotAllowed),
            ev_closed(CloseReason::RequestFailed(2)),
        ],
    );
    let mut s = requested(UDP_ZEROS, b"");
    s.run_until(10_000).expect(
        &failure(6),
        &[
            Event::BindUdp,
            ev_replied(zeros, ReplyCode::TtlExpired),
            ev_closed(CloseReason::HandshakeTimeout),
        ],
    );
    s.udp_bound(10_001, Ok(local())).expect(b"", &[]);
}

#[test]
fn enable_flags_are_per_command() {
    for (allow_bind, allow_udp) in [(true, false), (false, true)] {
        let limits = HandshakeLimits {
            allow_bind,
            allow_udp,
            ..HandshakeLimits::default()
        };
        for (req, allowed, ev) in [
            (BIND_FTP, allow_bind, Event::Listen),
            (UDP_ZEROS, allow_udp, Event::BindUdp),
        ] {
            let mut s = Server::with_limits(false, limits);
            s.feed(0, &cat(&[GREET_UP, AUTH_BOB, req]));
            if allowed {
                assert_eq!(s.events, [ev]);
            } else {
                assert_eq!(s.out[4..], failure(7)[..]);
                assert_eq!(
                    s.events.last(),
                    Some(&ev_closed(CloseReason::RequestFailed(7)))
                );
            }
        }
    }
}

/// Puts a session in each phase; returns it and the events its close must cancel.
fn in_phase(phase: usize) -> (Server, Vec<Event>) {
    let mut s = Server::all_commands();
    let pre = |s: &mut Server, req: &[u8]| {
        s.feed(0, &cat(&[GREET_UP, AUTH_BOB, req]));
    };
    let mut cancels = vec![];
    match phase {
        0 => {}
        1 => {
            s.feed(0, GREET_UP);
        }
        2 => {
            s.feed(0, &cat(&[GREET_UP, AUTH_BOB]));
        }
        3 => pre(&mut s, &connect(NAME_TARGET)),
        4 => {
            pre(&mut s, &connect(NAME_TARGET));
            s.resolved(1, Ok(vec![name_addr(), "192.0.2.11:80".parse().unwrap()]));
            s.run_until(251);
            assert_eq!(s.in_flight.len(), 2);
            cancels = vec![ev_cancel(0), ev_cancel(1)];
        }
        5 => pre(&mut s, BIND_FTP),
        6 => {
            pre(&mut s, BIND_FTP);
            s.listening(1, Ok(LISTEN.parse().unwrap()));
        }
        7 => pre(&mut s, UDP_ZEROS),
        8 => {
            pre(&mut s, &connect(V4_TARGET));
            s.dialed(1, 0, Ok(local()));
            assert!(s.hs.is_established());
        }
        9 => {
            pre(&mut s, BIND_FTP);
            s.listening(1, Ok(LISTEN.parse().unwrap()));
            s.accepted(2, "192.0.2.20:20");
            assert!(s.hs.is_established());
        }
        10 => {
            pre(&mut s, UDP_ZEROS);
            s.udp_bound(1, Ok(local()));
            assert!(s.hs.is_associated());
        }
        _ => unreachable!(),
    }
    s.out.clear();
    s.events.clear();
    (s, cancels)
}

#[test]
fn close_request_in_every_phase() {
    let causes = [
        (CloseCause::UserRemoved, CloseReason::UserRemoved),
        (CloseCause::Idle, CloseReason::IdleTimeout),
        (CloseCause::Shutdown, CloseReason::Done),
    ];
    for phase in 0..=10 {
        for (cause, reason) in &causes {
            let (mut s, cancels) = in_phase(phase);
            let mut want = cancels;
            want.push(ev_closed(reason.clone()));
            s.close_request(50_000, *cause).expect(b"", &want);
            assert!(s.hs.is_closed(), "phase {phase}");
            assert_eq!(s.hs.poll_timeout(), None);
            // Once closed: nothing more, whatever comes.
            s.close_request(50_001, *cause)
                .eof(50_002)
                .timeout(60_000)
                .feed(60_001, b"x")
                .expect(b"", &[]);
        }
    }
}

#[test]
fn eof_closes_an_association_but_not_a_relay() {
    let (mut s, _) = in_phase(8);
    s.eof(3).expect(b"", &[]);
    assert!(s.hs.is_established());
    let (mut s, _) = in_phase(9);
    s.eof(3).expect(b"", &[]);
    assert!(s.hs.is_established());
    let (mut s, _) = in_phase(6);
    s.eof(3).expect(b"", &[ev_closed(CloseReason::PeerEof)]);
    let (mut s, _) = in_phase(10);
    s.eof(3).expect(b"", &[ev_closed(CloseReason::PeerEof)]);
}
