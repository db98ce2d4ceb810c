//! Session scripts for users stored hashed: `Event::Verify` and `handle_verified`.

use super::*;

use crate::state::Mutation as M;

const PHC: &[u8] = b"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
const AUTH_CAROL: &[u8] = b"\x01\x05carol\x05right";
const AUTH_CAROL_WRONG: &[u8] = b"\x01\x05carol\x05wrong";

/// A server with `bob`/`hunter2` (clear) and `carol` (hashed with [`PHC`]).
fn hashed() -> Server {
    let s = Server::new(false);
    let m = M::AddHashedUser {
        name: Bytes::from_static(b"carol"),
        phc: Bytes::from_static(PHC),
        privilege: Privilege::User,
    };
    assert_eq!(s.state.apply(None, &m), crate::state::Outcome::Applied);
    s
}

/// The same state, a new connection and session.
fn again(s: &Server) -> Server {
    Server::with_state(s.state.clone(), s.t0, HandshakeLimits::default())
}

fn ev_verify(password: &'static str) -> Event {
    Event::Verify {
        user: Bytes::from_static(b"carol"),
        password: Secret::from(password),
        phc: Bytes::from_static(PHC),
    }
}

impl Server {
    fn verified(&mut self, ms: u64, ok: bool) -> &mut Self {
        let now = self.at(ms);
        let conn = &self.conn;
        self.hs.handle_verified(now, ok, conn);
        self.drain();
        self
    }

    fn login(&mut self) -> Option<(Bytes, bool)> {
        self.hs.poll_login()
    }
}

fn carol(ok: bool) -> Option<(Bytes, bool)> {
    Some((Bytes::from_static(b"carol"), ok))
}

#[test]
fn clear_users_never_verify() {
    let mut s = hashed();
    s.feed(0, &cat(&[GREET_UP, AUTH_BOB]))
        .expect(b"\x05\x02\x01\x00", &[]);
    assert_eq!(s.login(), Some((Bytes::from_static(b"bob"), true)));
    assert!(s.all.iter().all(|e| !matches!(e, Event::Verify { .. })));
}

#[test]
fn cold_login_verifies_and_the_pipelined_request_waits() {
    let mut s = hashed();
    let wire = cat(&[GREET_UP, AUTH_CAROL, &connect(V4_TARGET), b"early"]);
    s.feed(0, &wire).expect(b"\x05\x02", &[ev_verify("right")]);
    assert_eq!(s.login(), None, "no verdict before handle_verified");
    assert_eq!(s.conn.user(), None);
    assert_eq!(
        &s.input[..],
        &cat(&[&connect(V4_TARGET), b"early"])[..],
        "the request waits in the input"
    );
    assert!(!s.hs.is_done());
    assert_eq!(s.hs.poll_timeout(), Some(s.t0 + HANDSHAKE_TIMEOUT));
    // More input meanwhile is not consumed either.
    s.feed(1, b"more").expect(b"", &[]);
    assert!(s.input.ends_with(b"earlymore"));
    s.verified(2, true).expect(b"\x01\x00", &[]);
    assert_eq!(s.login(), carol(true));
    assert_eq!(s.login(), None, "reported once");
    assert_eq!(s.conn.user().map(|u| &u[..]), Some(&b"carol"[..]));
    assert_eq!(s.state.counters().users_connected, 1);
    // The driver hands the kept bytes in again.
    s.feed(3, b"").expect(b"", &[ev_dial(0, ip(&v4()))]);
    s.dialed(4, 0, Ok(local())).expect(
        REPLY_OK_LOCAL,
        &[
            ev_replied(v4(), ReplyCode::Succeeded),
            ev_established(Some(0), b"earlymore"),
        ],
    );
    // Warm now: the next connection is accepted at once.
    let mut t = again(&s);
    t.feed(0, &cat(&[GREET_UP, AUTH_CAROL, &connect(V4_TARGET)]))
        .expect(b"\x05\x02\x01\x00", &[ev_dial(0, ip(&v4()))]);
    assert_eq!(t.login(), carol(true));
    assert_eq!(s.state.user_connections(b"carol"), Some(2));
}

#[test]
fn wrong_password_fails_after_verification_and_leaves_the_cache_cold() {
    let mut s = hashed();
    s.feed(0, &cat(&[GREET_UP, AUTH_CAROL_WRONG, &connect(V4_TARGET)]))
        .expect(b"\x05\x02", &[ev_verify("wrong")]);
    s.verified(1, false).expect(
        b"\x01\x01",
        &[ev_closed(CloseReason::Peer(ProtocolError::AuthFailed))],
    );
    assert_eq!(s.login(), carol(false));
    assert_eq!(s.conn.user(), None);
    // Still cold for the right password.
    let mut t = again(&s);
    t.feed(0, &cat(&[GREET_UP, AUTH_CAROL]))
        .expect(b"\x05\x02", &[ev_verify("right")]);
    // A verifier that said yes to the wrong password cannot be overruled by the core, but a
    // driver saying no is final even for the right one.
    t.verified(1, false).expect(
        b"\x01\x01",
        &[ev_closed(CloseReason::Peer(ProtocolError::AuthFailed))],
    );
    let mut u = again(&s);
    u.feed(0, &cat(&[GREET_UP, AUTH_CAROL]))
        .expect(b"\x05\x02", &[ev_verify("right")]);
}

#[test]
fn removal_during_verification_fails_the_login() {
    let mut s = hashed();
    s.feed(0, &cat(&[GREET_UP, AUTH_CAROL]))
        .expect(b"\x05\x02", &[ev_verify("right")]);
    let rm = M::RemoveUser {
        name: Bytes::from_static(b"carol"),
    };
    assert_eq!(s.state.apply(None, &rm), crate::state::Outcome::Applied);
    s.verified(1, true).expect(
        b"\x01\x01",
        &[ev_closed(CloseReason::Peer(ProtocolError::AuthFailed))],
    );
    assert_eq!(s.login(), carol(false));
    assert_eq!(s.conn.user(), None);
}

#[test]
fn deadline_during_verification_closes_and_the_late_verdict_is_ignored() {
    let mut s = hashed();
    s.feed(0, &cat(&[GREET_UP, AUTH_CAROL, &connect(V4_TARGET)]))
        .expect(b"\x05\x02", &[ev_verify("right")]);
    s.run_until(10_000)
        .expect(b"", &[ev_closed(CloseReason::HandshakeTimeout)]);
    s.verified(10_001, true).expect(b"", &[]);
    assert_eq!(s.login(), None, "no verdict for a closed session");
    assert_eq!(s.conn.user(), None);
    // A verdict reported at the deadline, before handle_timeout: late as well.
    let mut t = again(&s);
    t.feed(0, &cat(&[GREET_UP, AUTH_CAROL]))
        .expect(b"\x05\x02", &[ev_verify("right")]);
    t.verified(10_000, true)
        .expect(b"", &[ev_closed(CloseReason::HandshakeTimeout)]);
    assert_eq!(t.conn.user(), None);
    assert_eq!(t.login(), None);
}

#[test]
fn close_request_or_eof_during_verification_closes() {
    let mut s = hashed();
    s.feed(0, &cat(&[GREET_UP, AUTH_CAROL]))
        .close_request(1, CloseCause::Shutdown)
        .verified(2, true)
        .expect(
            b"\x05\x02",
            &[ev_verify("right"), ev_closed(CloseReason::Done)],
        );
    assert_eq!(s.conn.user(), None);
    let mut t = again(&s);
    t.feed(0, &cat(&[GREET_UP, AUTH_CAROL]))
        .eof(1)
        .verified(2, true)
        .expect(
            b"\x05\x02",
            &[ev_verify("right"), ev_closed(CloseReason::PeerEof)],
        );
    assert_eq!(t.conn.user(), None);
}

#[test]
fn verdict_without_a_pending_verify_is_ignored() {
    let mut s = hashed();
    s.verified(0, true).expect(b"", &[]);
    s.feed(1, &cat(&[GREET_UP, AUTH_BOB]))
        .expect(b"\x05\x02\x01\x00", &[]);
    s.verified(2, false).expect(b"", &[]);
    assert_eq!(s.conn.user().map(|u| &u[..]), Some(&b"bob"[..]));
}

#[test]
fn verify_event_debug_shows_no_password_or_hash() {
    let shown = format!("{:?} {:#?}", ev_verify("right"), ev_verify("right"));
    assert!(
        !shown.contains("right") && !shown.contains("argon2"),
        "{shown}"
    );
    assert!(shown.contains("carol"), "{shown}");
    let mut s = hashed();
    s.feed(0, &cat(&[GREET_UP, AUTH_CAROL]))
        .expect(b"\x05\x02", &[ev_verify("right")]);
    let shown = format!("{:?}", s.hs);
    assert!(
        !shown.contains("right") && !shown.contains("argon2"),
        "{shown}"
    );
}
