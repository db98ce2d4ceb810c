use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::msg::*;
use super::*;
use crate::error::{CloseReason, DecodeError, ProtocolError};
use crate::state::{
    CloseCause, Config, ConnKind, Connection, Mutation, Outcome, Privilege, Secret, State,
    HANDSHAKE_TIMEOUT, MAX_USERS,
};

use Dialect::{Draft, Final};

fn t0() -> Instant {
    crate::epoch::epoch()
}

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

// ---------------------------------------------------------------------------------------------
// Requests: golden bytes of draft §4.1 and §5.1 (and the aliases of the PROTOCOL.md table).

fn golden_requests() -> Vec<(&'static [u8], AdminRequest)> {
    use AdminRequest::{Modify as M, Query as Q};
    vec![
        (b"\x00\x00", Q(Query::ListUsers)),
        (b"\x00\x01", Q(Query::HistoricConnections)),
        (b"\x00\x02", Q(Query::CurrentConnections)),
        (b"\x00\x03", Q(Query::MaxConcurrentConnections)),
        (b"\x00\x04", Q(Query::BytesSent)),
        (b"\x00\x05", Q(Query::BytesReceived)),
        (b"\x00\x06", Q(Query::UsersConnected)),
        (b"\x00\x07", Q(Query::UserCount)),
        (b"\x00\x08", Q(Query::BufferSize)),
        (b"\x00\x09", Q(Query::SelectorTimeout)),
        (b"\x00\x10", Q(Query::ConnectionTimeout(Draft))),
        (b"\x00\x0a", Q(Query::ConnectionTimeout(Final))),
        (
            b"\x00\x11\x03bob",
            Q(Query::UserConnections {
                cmd: Draft,
                name: b(b"bob"),
            }),
        ),
        (
            b"\x00\x0b\x03bob",
            Q(Query::UserConnections {
                cmd: Final,
                name: b(b"bob"),
            }),
        ),
        (
            b"\x01\x00\x04carl\x02pw\x01",
            M(Modify::AddUser {
                name: b(b"carl"),
                password: b(b"pw"),
                privilege: 1,
            }),
        ),
        (
            b"\x01\x01\x03bob",
            M(Modify::RemoveUser { name: b(b"bob") }),
        ),
        (b"\x01\x02\x00", M(Modify::SetSniffing(0))),
        (b"\x01\x02\x01", M(Modify::SetSniffing(1))),
        (b"\x01\x03\x01", M(Modify::SetCleanup(1))),
        (b"\x01\x04\x00\x01\x00\x00", M(Modify::SetBufferSize(65536))),
        (b"\x01\x05\x07", M(Modify::SetSelectorTimeout(7))),
        (b"\x01\x06\xff", M(Modify::SetConnectionTimeout(255))),
        // Raw values out of range still decode: the session answers them.
        (
            b"\x01\x00\x00\x00\x09",
            M(Modify::AddUser {
                name: Bytes::new(),
                password: Bytes::new(),
                privilege: 9,
            }),
        ),
        (b"\x01\x02\x07", M(Modify::SetSniffing(7))),
    ]
}

#[test]
fn request_golden_decode_and_encode() {
    for (wire, msg) in golden_requests() {
        assert_eq!(
            AdminRequest::check(wire),
            Ok(Some(wire.len())),
            "{wire:02x?}"
        );
        let mut src = BytesMut::from(wire);
        src.extend_from_slice(b"\x00\x07"); // a following request must stay in place
        assert_eq!(
            AdminRequest::decode(&mut src),
            Ok(Some(msg.clone())),
            "{wire:02x?}"
        );
        assert_eq!(&src[..], b"\x00\x07");
        let mut out = BytesMut::new();
        msg.encode(&mut out);
        assert_eq!(&out[..], wire);
    }
}

#[test]
fn request_every_strict_prefix_is_partial() {
    for (wire, _) in golden_requests() {
        for i in 0..wire.len() {
            let mut src = BytesMut::from(&wire[..i]);
            assert_eq!(
                AdminRequest::decode(&mut src),
                Ok(None),
                "{wire:02x?} at {i}"
            );
            assert_eq!(&src[..], &wire[..i], "partial input must be left untouched");
        }
    }
}

#[test]
fn longest_request_is_max_len() {
    let name = [b'a'; 255];
    let req = AdminRequest::Modify(Modify::AddUser {
        name: b(&name),
        password: b(&name),
        privilege: 0,
    });
    let mut out = BytesMut::new();
    req.encode(&mut out);
    assert_eq!(out.len(), AdminRequest::MAX_LEN);
    assert_eq!(AdminRequest::decode(&mut out), Ok(Some(req)));
}

#[test]
fn request_unknown_type_and_command() {
    use DecodeError::{UnknownCommand, UnknownType};
    let cases: &[(&[u8], DecodeError)] = &[
        (b"\x02", UnknownType(2)),
        (b"\xff\xff", UnknownType(0xff)),
        (b"\x00\x0c", UnknownCommand { ty: 0, cmd: 0x0c }),
        (b"\x00\x12", UnknownCommand { ty: 0, cmd: 0x12 }),
        (b"\x00\xfe", UnknownCommand { ty: 0, cmd: 0xfe }),
        (b"\x01\x07", UnknownCommand { ty: 1, cmd: 7 }),
        (b"\x01\xff\x00", UnknownCommand { ty: 1, cmd: 0xff }),
    ];
    for (wire, err) in cases {
        let mut src = BytesMut::from(*wire);
        assert_eq!(AdminRequest::decode(&mut src), Err(*err));
        assert_eq!(&src[..], *wire, "an error leaves the input in place");
    }
}

// ---------------------------------------------------------------------------------------------
// Responses: draft §4.2 and §5.2, final §3 and §5.2.13, and every row of the dialect table.

fn q(query: Query) -> AdminRequest {
    AdminRequest::Query(query)
}

fn value(cmd: ValueCmd, value: u64) -> AdminResponse {
    AdminResponse::Value { cmd, value }
}

fn user_conns(cmd: Dialect) -> AdminRequest {
    q(Query::UserConnections {
        cmd,
        name: b(b"bob"),
    })
}

/// (dialect, request answered, wire, decoded)
fn golden_responses() -> Vec<(Dialect, AdminRequest, &'static [u8], AdminResponse)> {
    use ValueCmd as V;
    let users = |privs: bool| {
        AdminResponse::Users(vec![
            ListedUser {
                name: b(b"admin"),
                privilege: privs.then_some(Privilege::Admin),
            },
            ListedUser {
                name: b(b"bob"),
                privilege: privs.then_some(Privilege::User),
            },
        ])
    };
    let status = |cmd, status| AdminResponse::Status { cmd, status };
    let m = |modify| AdminRequest::Modify(modify);
    vec![
        // 5.2.1 List Users: draft without PRIVILEGE, final with it.
        (
            Draft,
            q(Query::ListUsers),
            b"\x00\x00\x02\x05admin\x03bob",
            users(false),
        ),
        (
            Final,
            q(Query::ListUsers),
            b"\x00\x00\x02\x05admin\x01\x03bob\x00",
            users(true),
        ),
        (
            Draft,
            q(Query::ListUsers),
            b"\x00\x00\x00",
            AdminResponse::Users(vec![]),
        ),
        // 5.2.2, 5.2.4, 5.2.5: 8 bytes in both.
        (
            Draft,
            q(Query::HistoricConnections),
            b"\x00\x01\x00\x00\x00\x00\x00\x00\x01\x02",
            value(V::HistoricConnections, 258),
        ),
        (
            Final,
            q(Query::HistoricConnections),
            b"\x00\x01\x00\x00\x00\x00\x00\x00\x01\x02",
            value(V::HistoricConnections, 258),
        ),
        (
            Draft,
            q(Query::BytesSent),
            b"\x00\x04\x01\x02\x03\x04\x05\x06\x07\x08",
            value(V::BytesSent, 0x0102_0304_0506_0708),
        ),
        (
            Final,
            q(Query::BytesReceived),
            b"\x00\x05\xff\xff\xff\xff\xff\xff\xff\xff",
            value(V::BytesReceived, u64::MAX),
        ),
        // Get Current Connections (0x02): 2 bytes in both.
        (
            Draft,
            q(Query::CurrentConnections),
            b"\x00\x02\x01\x00",
            value(V::CurrentConnections, 256),
        ),
        (
            Final,
            q(Query::CurrentConnections),
            b"\x00\x02\x00\x05",
            value(V::CurrentConnections, 5),
        ),
        // Get Max. Concurrent Connections (0x03): 2 bytes in both.
        (
            Draft,
            q(Query::MaxConcurrentConnections),
            b"\x00\x03\x00\x09",
            value(V::MaxConcurrentConnections, 9),
        ),
        (
            Final,
            q(Query::MaxConcurrentConnections),
            b"\x00\x03\x12\x34",
            value(V::MaxConcurrentConnections, 0x1234),
        ),
        // Get Number of Users Connected (0x06): draft 8 bytes, final 1 byte.
        (
            Draft,
            q(Query::UsersConnected),
            b"\x00\x06\x00\x00\x00\x00\x00\x00\x01\x2c",
            value(V::UsersConnected, 300),
        ),
        (
            Final,
            q(Query::UsersConnected),
            b"\x00\x06\x03",
            value(V::UsersConnected, 3),
        ),
        // 5.2.7 Get Total User Count: 1 byte.
        (
            Draft,
            q(Query::UserCount),
            b"\x00\x07\x02",
            value(V::UserCount, 2),
        ),
        (
            Final,
            q(Query::UserCount),
            b"\x00\x07\xff",
            value(V::UserCount, 255),
        ),
        // 5.2.8 Get I/O Buffer Sizes: 4 bytes.
        (
            Draft,
            q(Query::BufferSize),
            b"\x00\x08\x00\x00\x40\x00",
            value(V::BufferSize, 16384),
        ),
        (
            Final,
            q(Query::BufferSize),
            b"\x00\x08\x00\x10\x00\x00",
            value(V::BufferSize, 1_048_576),
        ),
        // 5.2.9 Get Selector Timeout: 1 byte.
        (
            Draft,
            q(Query::SelectorTimeout),
            b"\x00\x09\x05",
            value(V::SelectorTimeout, 5),
        ),
        // Get Connection Timeout: CMD echoed, 1 byte, in both dialects.
        (
            Draft,
            q(Query::ConnectionTimeout(Draft)),
            b"\x00\x10\x78",
            value(V::ConnectionTimeout(Draft), 120),
        ),
        (
            Draft,
            q(Query::ConnectionTimeout(Final)),
            b"\x00\x0a\x78",
            value(V::ConnectionTimeout(Final), 120),
        ),
        (
            Final,
            q(Query::ConnectionTimeout(Final)),
            b"\x00\x0a\x78",
            value(V::ConnectionTimeout(Final), 120),
        ),
        (
            Final,
            q(Query::ConnectionTimeout(Draft)),
            b"\x00\x10\x78",
            value(V::ConnectionTimeout(Draft), 120),
        ),
        // Get User Total Current Connections: draft 1 byte, final 2 bytes; CMD echoed.
        (
            Draft,
            user_conns(Draft),
            b"\x00\x11\x02",
            value(V::UserConnections(Draft), 2),
        ),
        (
            Draft,
            user_conns(Final),
            b"\x00\x0b\x02",
            value(V::UserConnections(Final), 2),
        ),
        (
            Final,
            user_conns(Final),
            b"\x00\x0b\x01\x00",
            value(V::UserConnections(Final), 256),
        ),
        (
            Final,
            user_conns(Draft),
            b"\x00\x11\x00\x02",
            value(V::UserConnections(Draft), 2),
        ),
        // 4.2 Modification responses: TYPE CMD STATUS.
        (
            Draft,
            m(Modify::RemoveUser { name: b(b"x") }),
            b"\x01\x01\x01",
            status(ModifyCmd::RemoveUser, 1),
        ),
        (
            Final,
            m(Modify::SetBufferSize(1)),
            b"\x01\x04\x01",
            status(ModifyCmd::SetBufferSize, 1),
        ),
        (
            Draft,
            m(Modify::SetConnectionTimeout(3)),
            b"\x01\x06\x00",
            status(ModifyCmd::SetConnectionTimeout, 0),
        ),
        // Errors (final §3, §5.2.13), accepted in both dialects.
        (
            Draft,
            q(Query::ListUsers),
            b"\xff\xff",
            AdminResponse::InvalidType,
        ),
        (
            Final,
            q(Query::UserCount),
            b"\x00\xff",
            AdminResponse::InvalidCommand {
                ty: RequestType::Query,
            },
        ),
        (
            Draft,
            m(Modify::SetCleanup(1)),
            b"\x01\xff",
            AdminResponse::InvalidCommand {
                ty: RequestType::Modify,
            },
        ),
        (
            Final,
            user_conns(Final),
            b"\x00\xfe\xfe",
            AdminResponse::QueryError { status: 0xfe },
        ),
        (
            Draft,
            user_conns(Draft),
            b"\x00\xfe\xff",
            AdminResponse::QueryError { status: 0xff },
        ),
    ]
}

#[test]
fn response_golden_decode_and_encode() {
    for (dialect, req, wire, msg) in golden_responses() {
        let ctx = format!("{dialect:?} {req:?} {wire:02x?}");
        assert_eq!(
            AdminResponse::check(wire, dialect, &req),
            Ok(Some(wire.len())),
            "{ctx}"
        );
        let mut src = BytesMut::from(wire);
        src.put_u8(0x42);
        assert_eq!(
            AdminResponse::decode(&mut src, dialect, &req),
            Ok(Some(msg.clone())),
            "{ctx}"
        );
        assert_eq!(&src[..], b"\x42", "{ctx}");
        let mut out = BytesMut::new();
        msg.encode(dialect, &mut out);
        assert_eq!(&out[..], wire, "{ctx}");
    }
}

#[test]
fn response_every_strict_prefix_is_partial() {
    for (dialect, req, wire, _) in golden_responses() {
        for i in 0..wire.len() {
            let mut src = BytesMut::from(&wire[..i]);
            assert_eq!(
                AdminResponse::decode(&mut src, dialect, &req),
                Ok(None),
                "{dialect:?} {wire:02x?} at {i}"
            );
            assert_eq!(src.len(), i);
        }
    }
}

#[test]
fn response_values_saturate_to_their_width() {
    use ValueCmd as V;
    let cases: &[(Dialect, ValueCmd, u64, &[u8])] = &[
        (Draft, V::CurrentConnections, 70_000, b"\x00\x02\xff\xff"),
        (
            Final,
            V::MaxConcurrentConnections,
            1 << 40,
            b"\x00\x03\xff\xff",
        ),
        (Final, V::UsersConnected, 300, b"\x00\x06\xff"),
        (Draft, V::UserConnections(Draft), 256, b"\x00\x11\xff"),
        (
            Final,
            V::UserConnections(Final),
            70_000,
            b"\x00\x0b\xff\xff",
        ),
        (Draft, V::UserCount, 256, b"\x00\x07\xff"),
        (Draft, V::BufferSize, 1 << 33, b"\x00\x08\xff\xff\xff\xff"),
        (Draft, V::ConnectionTimeout(Draft), 1000, b"\x00\x10\xff"),
    ];
    for &(dialect, cmd, v, wire) in cases {
        let mut out = BytesMut::new();
        value(cmd, v).encode(dialect, &mut out);
        assert_eq!(&out[..], wire, "{dialect:?} {cmd:?} {v}");
    }
}

#[test]
fn response_mismatches_are_errors() {
    let req = q(Query::UserCount);
    let bad: &[(Dialect, &[u8], DecodeError)] = &[
        (Draft, b"\x01\x07\x00", DecodeError::UnknownType(1)),
        (
            Draft,
            b"\x00\x08\x00",
            DecodeError::UnknownCommand { ty: 0, cmd: 8 },
        ),
        (
            Draft,
            b"\xff\x00",
            DecodeError::UnknownCommand { ty: 0xff, cmd: 0 },
        ),
    ];
    for &(dialect, wire, err) in bad {
        assert_eq!(
            AdminResponse::decode(&mut BytesMut::from(wire), dialect, &req),
            Err(err)
        );
    }
    assert_eq!(
        AdminResponse::decode(
            &mut BytesMut::from(&b"\x00\x00\x01\x01a\x07"[..]),
            Final,
            &q(Query::ListUsers)
        ),
        Err(DecodeError::InvalidValue(7)),
        "PRIVILEGE out of range"
    );
}

#[test]
fn status_table_of_both_dialects() {
    use ModifyCmd as C;
    use Outcome as O;
    // (cmd, outcome, draft, final)
    let rows = [
        (C::AddUser, O::Applied, 0x00, 0x00),
        (C::AddUser, O::NameTaken, 0x01, 0x01),
        (C::AddUser, O::InvalidParameter, 0x02, 0xfe),
        (C::AddUser, O::TooManyUsers, 0xff, 0x02),
        (C::RemoveUser, O::Applied, 0x00, 0x00),
        (C::RemoveUser, O::NoSuchUser, 0x01, 0x01),
        (C::RemoveUser, O::InvalidParameter, 0x02, 0xfe),
        (C::SetSniffing, O::InvalidParameter, 0xff, 0xfe),
        (C::SetCleanup, O::InvalidParameter, 0xff, 0xfe),
        (C::SetBufferSize, O::InvalidParameter, 0x01, 0x01),
        (C::SetSelectorTimeout, O::InvalidParameter, 0x01, 0x01),
        (C::SetConnectionTimeout, O::InvalidParameter, 0x01, 0x01),
        (C::SetConnectionTimeout, O::NameTaken, 0xff, 0xff),
        // Outcome::Failed (the driver could not make the change durable): 0xFF everywhere.
        (C::AddUser, O::Failed, 0xff, 0xff),
        (C::RemoveUser, O::Failed, 0xff, 0xff),
        (C::SetSniffing, O::Failed, 0xff, 0xff),
        (C::SetBufferSize, O::Failed, 0xff, 0xff),
        (C::SetConnectionTimeout, O::Failed, 0xff, 0xff),
    ];
    for (cmd, outcome, draft, fin) in rows {
        assert_eq!(cmd.status(Draft, outcome), draft, "{cmd:?} {outcome:?}");
        assert_eq!(cmd.status(Final, outcome), fin, "{cmd:?} {outcome:?}");
    }
}

#[test]
fn modify_status_outcome_round_trip() {
    use crate::state::Outcome as O;
    let cmds = [
        ModifyCmd::AddUser,
        ModifyCmd::RemoveUser,
        ModifyCmd::SetSniffing,
        ModifyCmd::SetCleanup,
        ModifyCmd::SetBufferSize,
        ModifyCmd::SetSelectorTimeout,
        ModifyCmd::SetConnectionTimeout,
    ];
    let outcomes = [
        O::Applied,
        O::NameTaken,
        O::NoSuchUser,
        O::TooManyUsers,
        O::InvalidParameter,
        O::Failed,
    ];
    for dialect in [Draft, Final] {
        for cmd in cmds {
            assert_eq!(cmd.command().request_type(), RequestType::Modify);
            for outcome in outcomes {
                let possible = match outcome {
                    O::Applied | O::InvalidParameter | O::Failed => true,
                    O::NameTaken | O::TooManyUsers => cmd == ModifyCmd::AddUser,
                    O::NoSuchUser => cmd == ModifyCmd::RemoveUser,
                };
                let status = cmd.status(dialect, outcome);
                let back = cmd.outcome(dialect, status);
                if !possible {
                    // Outcomes a command cannot have are sent as General Server Error.
                    assert_eq!(status, 0xFF, "{cmd:?} {outcome:?} {dialect:?}");
                    continue;
                }
                // The draft's 0xFF is both "255 users already" and General Server Error.
                let ambiguous = status == 0xFF
                    && dialect == Draft
                    && matches!(
                        cmd,
                        ModifyCmd::AddUser | ModifyCmd::SetSniffing | ModifyCmd::SetCleanup
                    );
                if !ambiguous {
                    assert_eq!(back, Some(outcome), "{cmd:?} {outcome:?} {dialect:?}");
                }
            }
            assert_eq!(cmd.outcome(dialect, 0x77), None);
        }
    }
    assert_eq!(ModifyCmd::AddUser.outcome(Final, 0xFF), Some(O::Failed));
    assert_eq!(
        ModifyCmd::AddUser.outcome(Draft, 0xFF),
        Some(O::TooManyUsers)
    );
    assert_eq!(ModifyCmd::AddUser.outcome(Draft, 0xFE), None);
    assert_eq!(
        ModifyCmd::SetBufferSize.outcome(Draft, 0xFF),
        Some(O::Failed)
    );
}

#[test]
fn modify_debug_hides_the_password() {
    let m = Modify::AddUser {
        name: b(b"u"),
        password: b(b"topsecret"),
        privilege: 0,
    };
    let shown = format!("{m:?} {:?}", AdminRequest::Modify(m.clone()));
    assert!(!shown.contains("topsecret"), "{shown}");
    assert!(shown.contains("\"u\""), "{shown}");
    let mutation = m.to_mutation().unwrap();
    assert!(!format!("{mutation:?}").contains("topsecret"));
}

// ---------------------------------------------------------------------------------------------
// Sessions.

struct Fx {
    t0: Instant,
    state: Arc<State>,
    conn: Connection,
    s: AdminSession,
    /// Outcome reported for the next Apply instead of applying it (a failing store).
    fail_next: bool,
    /// A Verify was polled and not answered (`Fx::verified`).
    verifying: bool,
}

fn add(state: &State, name: &str, pass: &str, privilege: Privilege) {
    let m = Mutation::AddUser {
        name: b(name.as_bytes()),
        password: Secret::new(b(pass.as_bytes())),
        privilege,
    };
    assert_eq!(state.apply(None, &m), Outcome::Applied);
}

fn fx_with(dialect: Dialect, framing: Framing, config: &Config) -> Fx {
    let t0 = t0();
    let state = Arc::new(State::new(t0, config));
    add(&state, "admin", "pw", Privilege::Admin);
    add(&state, "bob", "hunter2", Privilege::User);
    let conn = state.open(ConnKind::Admin, t0);
    let s = AdminSession::new(t0, dialect, framing, state.settings().auth_timeout());
    Fx {
        t0,
        state,
        conn,
        s,
        fail_next: false,
        verifying: false,
    }
}

fn fx(dialect: Dialect, framing: Framing) -> Fx {
    fx_with(dialect, framing, &Config::default())
}

const AUTH: &[u8] = b"\x01\x05admin\x02pw";

impl Fx {
    fn input(&mut self, bytes: &[u8]) {
        self.s.handle_input(self.t0, bytes, &self.conn);
    }

    fn message(&mut self, bytes: &[u8], end: bool) {
        self.s.handle_message(self.t0, bytes, end, &self.conn);
    }

    /// Answers an Apply as a driver would: applies it as the session's user (or fails it).
    fn apply(&mut self, m: &Mutation) {
        let outcome = if std::mem::take(&mut self.fail_next) {
            Outcome::Failed
        } else {
            self.state.apply(self.conn.user().map(|u| &u[..]), m)
        };
        self.s.handle_apply_result(self.t0, outcome, &self.conn);
    }

    /// Drains like the driver loop: every transmit item, then every event (answering each
    /// Apply at once), then `handle_continue` while the session wants no input. Fails on a
    /// spin (no progress while not wanting input).
    fn drain(&mut self) -> (Vec<Bytes>, Vec<Event>) {
        let mut tx = Vec::new();
        let mut ev = Vec::new();
        loop {
            let before = (tx.len(), ev.len());
            while let Some(b) = self.s.poll_transmit() {
                assert!(!b.is_empty());
                tx.push(b);
            }
            let mut answered = false;
            while let Some(e) = self.s.poll_event() {
                if let Event::Apply(m) = &e {
                    let m = m.clone();
                    ev.push(e);
                    self.apply(&m);
                    answered = true;
                    break;
                }
                if matches!(e, Event::Verify { .. }) {
                    assert!(!self.verifying, "one Verify at a time");
                    self.verifying = true;
                }
                ev.push(e);
            }
            if answered {
                continue;
            }
            if self.s.wants_input() || self.s.is_closed() || self.verifying {
                return (tx, ev);
            }
            let progressed = (tx.len(), ev.len()) != before;
            self.s.handle_continue(self.t0, &self.conn);
            let more = self.s.poll_transmit();
            assert!(
                progressed || more.is_some() || self.s.wants_input() || self.s.is_closed(),
                "spin: no progress and no input wanted"
            );
            tx.extend(more);
        }
    }

    /// Polls without answering Applies.
    fn poll_raw(&mut self) -> (Vec<Bytes>, Vec<Event>) {
        let tx = std::iter::from_fn(|| self.s.poll_transmit()).collect();
        let ev = std::iter::from_fn(|| self.s.poll_event()).collect();
        (tx, ev)
    }

    fn drain_bytes(&mut self) -> Vec<u8> {
        self.drain().0.concat()
    }

    fn authed(dialect: Dialect, framing: Framing) -> Self {
        let mut f = fx(dialect, framing);
        f.input(AUTH);
        let (tx, ev) = f.drain();
        assert_eq!(tx.concat(), b"\x01\x00");
        assert_eq!(ev, vec![Event::Authenticated { user: b(b"admin") }]);
        f
    }

    /// Sends one request and returns the one response.
    fn ask(&mut self, req: &[u8]) -> Vec<u8> {
        self.input(req);
        let out = self.drain_bytes();
        assert!(self.s.wants_input(), "the request was served completely");
        out
    }
}

fn closed(reason: CloseReason) -> Event {
    Event::Closed { reason }
}

fn apply_applied(m: Mutation) -> [Event; 2] {
    [Event::Apply(m.clone()), Event::Applied(m)]
}

#[test]
fn auth_success_then_pipelined_requests_are_served() {
    for framing in [Framing::Stream, Framing::Message] {
        let mut f = fx(Draft, framing);
        let mut wire = AUTH.to_vec();
        wire.extend_from_slice(b"\x00\x07\x00\x09\x01\x05\x02\x00\x09");
        f.input(&wire);
        let (tx, ev) = f.drain();
        assert_eq!(
            tx.concat(),
            b"\x01\x00\x00\x07\x02\x00\x09\x05\x01\x05\x00\x00\x09\x02"
        );
        if framing == Framing::Message {
            assert_eq!(tx.len(), 5, "one response per poll_transmit");
        }
        let mut want = vec![Event::Authenticated { user: b(b"admin") }];
        want.extend(apply_applied(Mutation::SetSelectorTimeout(2)));
        assert_eq!(ev, want);
        assert_eq!(f.state.settings().selector_timeout(), 2);
        assert_eq!(f.s.poll_timeout(), None, "no deadline once authenticated");
        assert!(!f.s.is_closed() && f.s.wants_input());
    }
}

#[test]
fn every_auth_failure_gets_the_same_answer() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"\x01\x05admin\x02px", b"admin"),          // wrong password
        (b"\x01\x03eve\x02pw", b"eve"),              // unknown user
        (b"\x01\x03bob\x07hunter2", b"bob"),         // not an administrator
        (b"\x01\x00\x02pw", b""),                    // ULEN 0
        (b"\x01\x05admin\x00", b"admin"),            // PLEN 0
        (b"\x01\x05admin\x03pwx\x00\x07", b"admin"), // wrong password, then a request
    ];
    for (wire, user) in cases {
        let mut f = fx(Final, Framing::Stream);
        f.input(wire);
        let (tx, ev) = f.drain();
        assert_eq!(tx.concat(), b"\x01\x01", "{wire:02x?}");
        assert_eq!(
            ev,
            vec![
                Event::AuthFailed { user: b(user) },
                closed(CloseReason::Peer(ProtocolError::AuthFailed))
            ]
        );
        assert!(!format!("{ev:?}").contains("px"), "no password in events");
        assert!(f.s.is_closed() && !f.s.wants_input());
        assert_eq!(f.s.poll_timeout(), None);
        assert!(f.conn.user().is_none());
        f.input(b"\x00\x07");
        assert_eq!(
            f.drain(),
            (vec![], vec![]),
            "bytes after a failed auth are ignored"
        );
    }
}

#[test]
fn auth_bad_version() {
    for framing in [Framing::Stream, Framing::Message] {
        let mut f = fx(Draft, framing);
        f.input(b"\x05\x01\x00");
        let (tx, ev) = f.drain();
        assert_eq!(tx.concat(), b"\x01\x02");
        assert_eq!(
            ev,
            vec![closed(CloseReason::Peer(ProtocolError::Decode(
                DecodeError::UnsupportedVersion(5)
            )))]
        );
    }
}

#[test]
fn auth_one_byte_per_sctp_message() {
    let mut f = fx(Final, Framing::Message);
    let mut wire = AUTH.to_vec();
    wire.extend_from_slice(b"\x00\x07");
    for byte in wire.chunks(1) {
        f.message(byte, true);
    }
    let (tx, ev) = f.drain();
    assert_eq!(tx, vec![b(b"\x01\x00"), b(b"\x00\x07\x02")]);
    assert_eq!(ev, vec![Event::Authenticated { user: b(b"admin") }]);
}

#[test]
fn handshake_timeout() {
    let mut f = fx(Draft, Framing::Stream);
    let deadline = f.t0 + HANDSHAKE_TIMEOUT;
    assert_eq!(f.s.poll_timeout(), Some(deadline));
    f.input(&AUTH[..4]);
    assert_eq!(f.drain(), (vec![], vec![]), "partial auth waits");
    f.s.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(f.drain(), (vec![], vec![]));
    assert_eq!(f.s.poll_timeout(), Some(deadline));
    f.s.handle_timeout(deadline);
    assert_eq!(
        f.drain(),
        (vec![], vec![closed(CloseReason::HandshakeTimeout)])
    );
    assert_eq!(f.s.poll_timeout(), None, "the deadline must not stay due");
    // Auth handed in after the deadline is not served.
    let mut g = fx(Draft, Framing::Stream);
    g.s.handle_input(g.t0 + HANDSHAKE_TIMEOUT, AUTH, &g.conn);
    assert_eq!(
        g.drain(),
        (vec![], vec![closed(CloseReason::HandshakeTimeout)])
    );
    assert!(g.conn.user().is_none());
}

#[test]
fn auth_deadline_follows_a_short_connection_timeout() {
    // `--connection-timeout 2`: a client dribbling a byte every 0.5 s is closed at 2 s.
    let config = Config {
        connection_timeout: 2,
        ..Config::default()
    };
    let mut f = fx_with(Draft, Framing::Stream, &config);
    let deadline = f.t0 + Duration::from_secs(2);
    assert_eq!(f.s.poll_timeout(), Some(deadline));
    for (i, byte) in AUTH.chunks(1).enumerate().take(4) {
        let now = f.t0 + Duration::from_millis(500 * i as u64);
        f.s.handle_input(now, byte, &f.conn);
        assert_eq!(f.poll_raw(), (vec![], vec![]));
        assert_eq!(
            f.s.poll_timeout(),
            Some(deadline),
            "input does not extend it"
        );
    }
    f.s.handle_input(deadline, &AUTH[4..], &f.conn);
    assert_eq!(
        f.drain(),
        (vec![], vec![closed(CloseReason::HandshakeTimeout)])
    );
}

#[test]
fn queries_read_the_state() {
    for dialect in [Draft, Final] {
        let mut f = Fx::authed(dialect, Framing::Stream);
        let p1 = f.state.open(ConnKind::Proxy, f.t0);
        let p2 = f.state.open(ConnKind::Proxy, f.t0);
        assert!(p1.authenticate(b"bob", b"hunter2", Privilege::User));
        assert!(p2.authenticate(b"bob", b"hunter2", Privilege::User));
        p1.record_sent(f.t0, 1000);
        p2.record_received(f.t0, 7);
        drop(p2);
        let w = |draft: &'static [u8], final_: &'static [u8]| match dialect {
            Draft => draft,
            Final => final_,
        };
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"\x00\x00",
                w(
                    b"\x00\x00\x02\x05admin\x03bob",
                    b"\x00\x00\x02\x05admin\x01\x03bob\x00",
                ),
            ),
            (b"\x00\x01", b"\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02"),
            (b"\x00\x02", b"\x00\x02\x00\x01"),
            (b"\x00\x03", b"\x00\x03\x00\x02"),
            (b"\x00\x04", b"\x00\x04\x00\x00\x00\x00\x00\x00\x03\xe8"),
            (b"\x00\x05", b"\x00\x05\x00\x00\x00\x00\x00\x00\x00\x07"),
            (
                b"\x00\x06",
                w(b"\x00\x06\x00\x00\x00\x00\x00\x00\x00\x01", b"\x00\x06\x01"),
            ),
            (b"\x00\x07", b"\x00\x07\x02"),
            (b"\x00\x08", b"\x00\x08\x00\x00\x40\x00"),
            (b"\x00\x09", b"\x00\x09\x05"),
            (b"\x00\x10", b"\x00\x10\x78"),
            (b"\x00\x0a", b"\x00\x0a\x78"),
            (b"\x00\x11\x03bob", w(b"\x00\x11\x01", b"\x00\x11\x00\x01")),
            (b"\x00\x0b\x03bob", w(b"\x00\x0b\x01", b"\x00\x0b\x00\x01")),
            // Administration connections are not the user's proxy connections.
            (
                b"\x00\x11\x05admin",
                w(b"\x00\x11\x00", b"\x00\x11\x00\x00"),
            ),
        ];
        for (req, resp) in cases {
            assert_eq!(f.ask(req), *resp, "{dialect:?} {req:02x?}");
        }
        assert_eq!(f.drain().1, vec![], "queries change nothing");
    }
}

#[test]
fn user_connections_of_no_user_is_zero_in_both_widths() {
    // PROTOCOL.md: "for a name that is no user: count 0", both dialects, both CMD aliases.
    let cases: &[(Dialect, &[u8], &[u8])] = &[
        (Draft, b"\x00\x11\x03eve", b"\x00\x11\x00"),
        (Draft, b"\x00\x0b\x03eve", b"\x00\x0b\x00"),
        (Final, b"\x00\x0b\x03eve", b"\x00\x0b\x00\x00"),
        (Final, b"\x00\x11\x03eve", b"\x00\x11\x00\x00"),
        // Not even a valid username: still no user.
        (Draft, b"\x00\x11\x03a:b", b"\x00\x11\x00"),
        (Final, b"\x00\x0b\x03a:b", b"\x00\x0b\x00\x00"),
    ];
    for (dialect, req, resp) in cases {
        let mut f = Fx::authed(*dialect, Framing::Stream);
        assert_eq!(f.ask(req), *resp, "{dialect:?} {req:02x?}");
    }
}

#[test]
fn user_connections_of_the_empty_name() {
    // ULEN 0: final `00 FE FE`, draft count 0 (PROTOCOL.md).
    let cases: &[(Dialect, &[u8], &[u8])] = &[
        (Draft, b"\x00\x11\x00", b"\x00\x11\x00"),
        (Draft, b"\x00\x0b\x00", b"\x00\x0b\x00"),
        (Final, b"\x00\x0b\x00", b"\x00\xfe\xfe"),
        (Final, b"\x00\x11\x00", b"\x00\xfe\xfe"),
    ];
    for (dialect, req, resp) in cases {
        let mut f = Fx::authed(*dialect, Framing::Stream);
        assert_eq!(f.ask(req), *resp, "{dialect:?} {req:02x?}");
        assert!(!f.s.is_closed());
    }
}

/// Every status code of every modification that this server can produce, through the session.
#[test]
fn every_modification_status_is_reachable() {
    for dialect in [Draft, Final] {
        let bad = if dialect == Draft { 0x02 } else { 0xfe };
        let toggle_bad = if dialect == Draft { 0xff } else { 0xfe };
        let mut f = Fx::authed(dialect, Framing::Stream);
        // (request, status, goes out as an Apply)
        let cases: &[(&[u8], u8, bool)] = &[
            (b"\x01\x00\x04carl\x02pw\x00", 0x00, true),
            (b"\x01\x00\x04carl\x02pw\x00", 0x01, true),
            (b"\x01\x00\x03a:b\x02pw\x00", bad, true),
            (b"\x01\x00\x00\x02pw\x00", bad, true),
            (b"\x01\x00\x04dave\x00\x00", bad, true),
            (b"\x01\x00\x04dave\x02pw\x02", bad, false), // PRIVILEGE 2
            (b"\x01\x01\x04carl", 0x00, true),
            (b"\x01\x01\x04carl", 0x01, true),
            (b"\x01\x01\x05admin", bad, true), // yourself (and the last administrator)
            (b"\x01\x01\x00", bad, true),
            (b"\x01\x02\x00", 0x00, true),
            (b"\x01\x02\x01", 0x00, true),
            (b"\x01\x02\x02", toggle_bad, false),
            (b"\x01\x03\x00", 0x00, true),
            (b"\x01\x03\xff", toggle_bad, false),
            (b"\x01\x04\x00\x00\x00\x32", 0x00, true), // 50
            (b"\x01\x04\x00\x00\x00\x31", 0x01, true),
            (b"\x01\x04\x00\x00\x00\x00", 0x01, true),
            (b"\x01\x04\x00\x10\x00\x01", 0x01, true), // 1 MiB + 1
            (b"\x01\x05\x01", 0x00, true),
            (b"\x01\x05\x00", 0x01, true),
            (b"\x01\x06\xff", 0x00, true),
            (b"\x01\x06\x00", 0x01, true),
        ];
        for &(req, status, apply) in cases {
            f.input(req);
            let (tx, ev) = f.drain();
            assert_eq!(
                tx.concat(),
                [req[0], req[1], status],
                "{dialect:?} {req:02x?}"
            );
            let applies = ev.iter().filter(|e| matches!(e, Event::Apply(_))).count();
            let applied = ev.iter().filter(|e| matches!(e, Event::Applied(_))).count();
            assert_eq!(
                applies,
                usize::from(apply),
                "{dialect:?} {req:02x?}: {ev:?}"
            );
            assert_eq!(applied, usize::from(status == 0), "{dialect:?} {req:02x?}");
            assert_eq!(ev.len(), applies + applied);
        }
        let s = f.state.settings().snapshot();
        assert_eq!(
            (
                s.sniffing,
                s.cleanup,
                s.buffer_size,
                s.selector_timeout,
                s.connection_timeout
            ),
            (true, false, 50, 1, 255)
        );
        // "Not the last administrator": through a session the actor is an administrator,
        // so removing the last one is removing yourself, covered above.
        assert_eq!(f.state.user_count(), 2);
    }
}

#[test]
fn add_user_when_full() {
    for (dialect, full) in [(Draft, 0xff), (Final, 0x02)] {
        let mut f = Fx::authed(dialect, Framing::Stream);
        for i in 2..MAX_USERS {
            add(&f.state, &format!("u{i}"), "pw", Privilege::User);
        }
        assert_eq!(f.ask(b"\x01\x00\x04carl\x02pw\x00"), [1, 0, full]);
    }
}

#[test]
fn apply_holds_later_requests_until_its_result() {
    for framing in [Framing::Stream, Framing::Message] {
        let mut f = Fx::authed(Final, framing);
        // Add User, then List Users and User Count behind it, in one read.
        f.input(b"\x01\x00\x04carl\x02pw\x00\x00\x00\x00\x07");
        let (tx, ev) = f.poll_raw();
        assert!(tx.is_empty(), "nothing answered before the result");
        let m = Mutation::AddUser {
            name: b(b"carl"),
            password: Secret::from("pw"),
            privilege: Privilege::User,
        };
        assert_eq!(ev, vec![Event::Apply(m.clone())]);
        assert!(!f.s.wants_input(), "no input while an Apply is pending");
        // More input meanwhile is buffered, not served.
        f.input(b"\x00\x07");
        assert_eq!(f.poll_raw(), (vec![], vec![]));
        assert_eq!(
            f.state.user_count(),
            2,
            "the session applies nothing itself"
        );
        // The driver applies it; only then are the queries answered, and they see carl.
        assert_eq!(f.state.apply(Some(b"admin"), &m), Outcome::Applied);
        f.s.handle_apply_result(f.t0, Outcome::Applied, &f.conn);
        let (tx, ev) = f.poll_raw();
        assert_eq!(
            tx.concat(),
            [
                &b"\x01\x00\x00"[..],
                b"\x00\x00\x03\x05admin\x01\x03bob\x00\x04carl\x00",
                b"\x00\x07\x03",
                b"\x00\x07\x03"
            ]
            .concat()
        );
        assert_eq!(ev, vec![Event::Applied(m)]);
        assert!(f.s.wants_input());
        // A result without a pending Apply changes nothing.
        f.s.handle_apply_result(f.t0, Outcome::Applied, &f.conn);
        assert_eq!(f.poll_raw(), (vec![], vec![]));
    }
}

#[test]
fn failed_outcome_answers_ff_and_changes_nothing() {
    for dialect in [Draft, Final] {
        let mut f = Fx::authed(dialect, Framing::Stream);
        for req in [
            &b"\x01\x00\x04carl\x02pw\x00"[..],
            b"\x01\x01\x03bob",
            b"\x01\x02\x00",
            b"\x01\x04\x00\x00\x10\x00",
            b"\x01\x06\x07",
        ] {
            f.fail_next = true;
            f.input(req);
            let (tx, ev) = f.drain();
            assert_eq!(
                tx.concat(),
                [req[0], req[1], 0xff],
                "{dialect:?} {req:02x?}"
            );
            assert!(matches!(ev.as_slice(), [Event::Apply(_)]), "{ev:?}");
        }
        assert_eq!(f.state.user_count(), 2);
        assert_eq!(f.state.settings().snapshot(), Config::default());
        assert_eq!(f.ask(b"\x00\x07"), b"\x00\x07\x02");
    }
}

#[test]
fn removing_a_user_closes_its_connections() {
    let mut f = Fx::authed(Draft, Framing::Stream);
    add(&f.state, "root", "pw", Privilege::Admin);
    let proxy = f.state.open(ConnKind::Proxy, f.t0);
    assert!(proxy.authenticate(b"bob", b"hunter2", Privilege::User));
    // A second administration session, of "root".
    let conn = f.state.open(ConnKind::Admin, f.t0);
    let mut g = Fx {
        t0: f.t0,
        state: f.state.clone(),
        s: AdminSession::new(f.t0, Draft, Framing::Stream, HANDSHAKE_TIMEOUT),
        conn,
        fail_next: false,
        verifying: false,
    };
    g.input(b"\x01\x04root\x02pw");
    assert_eq!(g.drain_bytes(), b"\x01\x00");

    f.input(b"\x01\x01\x03bob\x01\x01\x04root");
    let (tx, ev) = f.drain();
    assert_eq!(tx.concat(), b"\x01\x01\x00\x01\x01\x00");
    let mut want = apply_applied(Mutation::RemoveUser { name: b(b"bob") }).to_vec();
    want.extend(apply_applied(Mutation::RemoveUser { name: b(b"root") }));
    assert_eq!(ev, want);
    assert_eq!(proxy.close_cause(), Some(CloseCause::UserRemoved));
    assert_eq!(f.state.user_count(), 1);
    // root's pipelined requests are no longer served, even before its driver passes the
    // close request on.
    g.input(b"\x00\x07\x01\x02\x00");
    assert_eq!(g.drain(), (vec![], vec![closed(CloseReason::UserRemoved)]));
    assert!(f.state.settings().sniffing());
}

#[test]
fn close_request_drops_unserved_input() {
    for (cause, reason) in [
        (CloseCause::UserRemoved, CloseReason::UserRemoved),
        (CloseCause::Idle, CloseReason::IdleTimeout),
        (CloseCause::Shutdown, CloseReason::Done),
    ] {
        // Responses already produced are delivered; the partial request is dropped.
        let mut f = Fx::authed(Draft, Framing::Stream);
        f.input(b"\x00\x07\x00");
        f.s.handle_close_request(f.t0, cause);
        assert_eq!(f.s.poll_event(), None, "responses first");
        let (tx, ev) = f.drain();
        assert_eq!(tx.concat(), b"\x00\x07\x02");
        assert_eq!(ev, vec![closed(reason.clone())]);
        assert!(f.s.is_closed() && !f.s.wants_input());
        f.input(b"\x07");
        f.s.handle_close_request(f.t0, cause);
        assert_eq!(f.drain(), (vec![], vec![]), "closed once");

        // Before authentication.
        let mut g = fx(Final, Framing::Message);
        g.input(&AUTH[..3]);
        g.s.handle_close_request(g.t0, cause);
        assert_eq!(g.drain(), (vec![], vec![closed(reason.clone())]));
        assert_eq!(g.s.poll_timeout(), None);

        // With an Apply pending: its result is still answered, then Closed; the held
        // requests behind it are dropped.
        let mut h = Fx::authed(Final, Framing::Stream);
        h.input(b"\x01\x05\x09\x00\x07");
        let (_, ev) = h.poll_raw();
        assert_eq!(ev, vec![Event::Apply(Mutation::SetSelectorTimeout(9))]);
        h.s.handle_close_request(h.t0, cause);
        assert!(h.s.is_closed());
        assert_eq!(
            h.poll_raw(),
            (vec![], vec![]),
            "Closed waits for the result"
        );
        h.apply(&Mutation::SetSelectorTimeout(9));
        let (tx, ev) = h.poll_raw();
        assert_eq!(tx.concat(), b"\x01\x05\x00");
        assert_eq!(
            ev,
            vec![
                Event::Applied(Mutation::SetSelectorTimeout(9)),
                closed(reason)
            ]
        );
    }
}

#[test]
fn applied_events_carry_the_mutation() {
    let mut f = Fx::authed(Final, Framing::Stream);
    f.input(b"\x01\x01\x03bob\x01\x00\x01x\x01y\x01");
    let (tx, ev) = f.drain();
    assert_eq!(tx.concat(), b"\x01\x01\x00\x01\x00\x00");
    let mut want = apply_applied(Mutation::RemoveUser { name: b(b"bob") }).to_vec();
    want.extend(apply_applied(Mutation::AddUser {
        name: b(b"x"),
        password: Secret::from("y"),
        privilege: Privilege::Admin,
    }));
    assert_eq!(ev, want);
}

/// 100 requests of every kind, after the authentication, as one byte string, and the
/// number of responses expected for them.
fn pipeline() -> (Vec<u8>, usize) {
    let reqs: [&[u8]; 10] = [
        b"\x00\x07",
        b"\x00\x11\x03bob",
        b"\x01\x05\x03",
        b"\x00\x09",
        b"\x01\x00\x01z\x01z\x00",
        b"\x00\x00",
        b"\x01\x01\x01z",
        b"\x00\x01",
        b"\x01\x04\x00\x00\x10\x00",
        b"\x00\x0a",
    ];
    let mut wire = AUTH.to_vec();
    for i in 0..100 {
        wire.extend_from_slice(reqs[i % reqs.len()]);
    }
    (wire, 100)
}

#[test]
fn hundred_pipelined_requests_get_hundred_responses_in_order() {
    for dialect in [Draft, Final] {
        let (wire, n) = pipeline();
        let mut f = fx(dialect, Framing::Message);
        f.message(&wire, true);
        let (tx, _) = f.drain();
        assert_eq!(tx.len(), n + 1);
        assert_eq!(&tx[0][..], b"\x01\x00");
        // Each response answers the request at the same position.
        let mut reqs = BytesMut::from(&wire[AUTH.len()..]);
        for (i, resp) in tx[1..].iter().enumerate() {
            let req = AdminRequest::decode(&mut reqs).unwrap().unwrap();
            let mut src = BytesMut::from(&resp[..]);
            let decoded = AdminResponse::decode(&mut src, dialect, &req);
            assert!(
                matches!(decoded, Ok(Some(_))) && src.is_empty(),
                "response {i} to {req:?}: {resp:02x?}"
            );
            if let AdminRequest::Modify(_) = req {
                assert_eq!(resp[2], 0, "{req:?}");
            }
        }
        assert!(reqs.is_empty());
    }
}

/// Feeds `wire` in the given chunks (each its own SCTP message with `Framing::Message`),
/// draining after each, and returns the transcript: each response, and the events.
fn transcript(dialect: Dialect, framing: Framing, chunks: &[&[u8]]) -> (Vec<Bytes>, Vec<Event>) {
    let mut f = fx(dialect, framing);
    let mut out = Vec::new();
    let mut events = Vec::new();
    for chunk in chunks {
        f.message(chunk, true);
        let (tx, ev) = f.drain();
        out.extend(tx);
        events.extend(ev);
    }
    if framing == Framing::Stream {
        // Only the bytes count on a stream.
        out = vec![Bytes::from(out.concat())];
    }
    (out, events)
}

#[test]
fn any_split_gives_the_same_output() {
    for framing in [Framing::Stream, Framing::Message] {
        for dialect in [Draft, Final] {
            let (wire, _) = pipeline();
            let whole = transcript(dialect, framing, &[&wire]);
            for i in 0..=wire.len() {
                let (a, c) = wire.split_at(i);
                assert_eq!(
                    transcript(dialect, framing, &[a, c]),
                    whole,
                    "{framing:?} split at {i}"
                );
            }
            let bytewise: Vec<&[u8]> = wire.chunks(1).collect();
            assert_eq!(transcript(dialect, framing, &bytewise), whole);
        }
    }
    // On a stream, the same holds with an unframable request at the end.
    for dialect in [Draft, Final] {
        let (mut bad, _) = pipeline();
        bad.extend_from_slice(b"\x00\x0c\x00\x07");
        let whole = transcript(dialect, Framing::Stream, &[&bad]);
        assert!(whole.0[0].ends_with(b"\x00\xff"));
        for i in 0..=bad.len() {
            let (a, c) = bad.split_at(i);
            assert_eq!(transcript(dialect, Framing::Stream, &[a, c]), whole);
        }
    }
}

#[test]
fn request_split_over_three_sctp_messages_is_answered() {
    let mut f = Fx::authed(Final, Framing::Message);
    // Add User cut into three messages, then a query in a fourth.
    f.message(b"\x01\x00\x04ca", true);
    f.message(b"rl\x02", true);
    assert_eq!(
        f.poll_raw(),
        (vec![], vec![]),
        "a message ending inside is not an error"
    );
    f.message(b"pw\x00", true);
    f.message(b"\x00\x07", true);
    let (tx, ev) = f.drain();
    assert_eq!(tx, vec![b(b"\x01\x00\x00"), b(b"\x00\x07\x03")]);
    assert_eq!(ev.len(), 2);
    assert_eq!(f.state.user_count(), 3);
    // One recvmsg may also deliver a message in pieces (no MSG_EOR on the first).
    f.message(b"\x00", false);
    f.message(b"\x07", true);
    assert_eq!(f.drain().0, vec![b(b"\x00\x07\x03")]);
}

#[test]
fn unknown_type_and_command_on_a_stream_close_after_the_error() {
    for (bad, answer, err) in [
        (
            &b"\x07\x00"[..],
            &b"\xff\xff"[..],
            DecodeError::UnknownType(7),
        ),
        (
            b"\x00\x0c",
            b"\x00\xff",
            DecodeError::UnknownCommand { ty: 0, cmd: 0x0c },
        ),
        (
            b"\x01\x09",
            b"\x01\xff",
            DecodeError::UnknownCommand { ty: 1, cmd: 9 },
        ),
    ] {
        let mut f = Fx::authed(Final, Framing::Stream);
        let mut wire = b"\x00\x07\x01\x05\x03".to_vec();
        wire.extend_from_slice(bad);
        wire.extend_from_slice(b"\x00\x07"); // never answered
        f.input(&wire);
        // The modification waits for its result; the bad request behind it waits too.
        let (tx, ev) = f.poll_raw();
        assert_eq!(tx.concat(), b"\x00\x07\x02");
        assert_eq!(ev, vec![Event::Apply(Mutation::SetSelectorTimeout(3))]);
        f.apply(&Mutation::SetSelectorTimeout(3));
        // Closed waits for the responses even if events are polled first.
        assert_eq!(
            f.s.poll_event(),
            Some(Event::Applied(Mutation::SetSelectorTimeout(3)))
        );
        assert_eq!(
            f.s.poll_event(),
            None,
            "Closed only after the last response"
        );
        let (tx, ev) = f.drain();
        let mut expected = b"\x01\x05\x00".to_vec();
        expected.extend_from_slice(answer);
        assert_eq!(tx.concat(), expected);
        assert_eq!(
            ev,
            vec![closed(CloseReason::Peer(ProtocolError::Decode(err)))]
        );
        assert!(f.s.is_closed());
    }
}

#[test]
fn unknown_type_and_command_on_sctp_discard_the_rest_of_the_message() {
    for (bad, answer) in [
        (&b"\xff\xff\x00\x07"[..], &b"\xff\xff"[..]),
        (b"\x00\xfe\x00\x07", b"\x00\xff"),
        (b"\x01\x07\x01\x05\x03", b"\x01\xff"),
    ] {
        let mut f = Fx::authed(Draft, Framing::Message);
        // Message 1: a good request, the bad one, and bytes that must be discarded, in two
        // reads (the first without MSG_EOR).
        f.message(&[&b"\x00\x09"[..], bad].concat(), false);
        f.message(b"\x00\x07", true);
        // Message 2 is served.
        f.message(b"\x00\x07", true);
        let (tx, ev) = f.drain();
        let tx: Vec<&[u8]> = tx.iter().map(|b| &b[..]).collect();
        assert_eq!(tx, [&b"\x00\x09\x05"[..], answer, b"\x00\x07\x02"]);
        assert_eq!(ev, vec![]);
        assert_eq!(f.state.settings().selector_timeout(), 5);
        assert!(!f.s.is_closed());
    }
}

#[test]
fn unknown_command_split_from_its_type_discards_the_message_of_the_command() {
    let mut f = Fx::authed(Final, Framing::Message);
    f.message(b"\x00\x07\x00", true); // TYPE ends message 1
    f.message(b"\x0c\x00\x07", true); // the unknown CMD and a request in message 2: discarded
    f.message(b"\x00\x09", true); // message 3 is served
    let (tx, _) = f.drain();
    assert_eq!(
        tx,
        vec![b(b"\x00\x07\x02"), b(b"\x00\xff"), b(b"\x00\x09\x05")]
    );
    assert!(!f.s.is_closed());
}

#[test]
fn back_pressure_holds_back_and_resumes() {
    for framing in [Framing::Stream, Framing::Message] {
        let mut f = Fx::authed(Final, framing);
        for i in 0..200 {
            add(
                &f.state,
                &format!("user-with-a-longish-name-{i:03}"),
                "pw",
                Privilege::User,
            );
        }
        let one = f.ask(b"\x00\x00").len();
        assert!(one > 5000 && one < AdminSession::HIGH_WATER);
        let n = 40;
        f.message(&b"\x00\x00".repeat(n), true);
        assert!(!f.s.wants_input(), "held back: no more input");
        let first: Vec<Bytes> = std::iter::from_fn(|| f.s.poll_transmit()).collect();
        let first_len: usize = first.iter().map(Bytes::len).sum();
        assert!(first_len >= AdminSession::HIGH_WATER && first_len < n * one);
        let mut responses = first;
        let mut rounds = 1;
        while !f.s.wants_input() {
            f.s.handle_continue(f.t0, &f.conn);
            let more: Vec<Bytes> = std::iter::from_fn(|| f.s.poll_transmit()).collect();
            assert!(!more.is_empty(), "progress after draining");
            responses.extend(more);
            rounds += 1;
        }
        assert!(rounds > 1);
        let total: usize = responses.iter().map(Bytes::len).sum();
        assert_eq!(total, n * one);
        if framing == Framing::Message {
            assert_eq!(responses.len(), n);
        }
        assert_eq!(f.ask(b"\x00\x07"), b"\x00\x07\xca");
    }
}

#[test]
fn eof_closes_after_the_responses() {
    let mut f = Fx::authed(Draft, Framing::Stream);
    f.input(b"\x00\x07\x00");
    f.s.handle_eof(f.t0);
    assert_eq!(f.s.poll_event(), None, "responses first");
    let (tx, ev) = f.drain();
    assert_eq!(tx.concat(), b"\x00\x07\x02");
    assert_eq!(ev, vec![closed(CloseReason::PeerEof)]);
    // Before authentication.
    let mut g = fx(Draft, Framing::Stream);
    g.s.handle_eof(g.t0);
    assert_eq!(g.drain(), (vec![], vec![closed(CloseReason::PeerEof)]));
    assert_eq!(g.s.poll_timeout(), None);
    // Requests held back (behind an Apply) are still served after EOF.
    let mut h = Fx::authed(Final, Framing::Stream);
    h.input(b"\x01\x02\x00\x00\x07\x00");
    h.s.handle_eof(h.t0);
    let (tx, ev) = h.drain();
    assert_eq!(tx.concat(), b"\x01\x02\x00\x00\x07\x02");
    let mut want = apply_applied(Mutation::SetSniffing(false)).to_vec();
    want.push(closed(CloseReason::PeerEof));
    assert_eq!(ev, want);
}

#[test]
fn input_marks_the_connection_active() {
    let mut f = Fx::authed(Draft, Framing::Stream);
    let later = f.t0 + Duration::from_secs(119);
    f.s.handle_input(later, b"\x00\x07", &f.conn);
    assert_eq!(f.state.sweep(f.t0 + Duration::from_secs(120)), 0);
    assert_eq!(f.state.sweep(later + Duration::from_secs(120)), 1);
}

#[test]
fn unframable_byte_ending_its_message_discards_nothing_more() {
    // The offending byte is the last of its message: the next message is served whole.
    for (m1, answer) in [
        (&b"\x00\x07\x07"[..], &b"\xff\xff"[..]), // unknown TYPE ends the message
        (b"\x00\x07\x01\x09", b"\x01\xff"),       // unknown CMD ends the message
    ] {
        let mut f = Fx::authed(Draft, Framing::Message);
        f.message(m1, true);
        f.message(b"\x00\x09", true);
        let (tx, _) = f.drain();
        assert_eq!(
            tx,
            vec![b(b"\x00\x07\x02"), b(answer), b(b"\x00\x09\x05")],
            "{m1:02x?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Administrators stored hashed: Event::Verify and handle_verified.

const PHC: &[u8] = b"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
const AUTH_ROOT: &[u8] = b"\x01\x04root\x05right";

fn hashed_fx(framing: Framing) -> Fx {
    let f = fx(Draft, framing);
    let m = Mutation::AddHashedUser {
        name: b(b"root"),
        phc: b(PHC),
        privilege: Privilege::Admin,
    };
    assert_eq!(f.state.apply(None, &m), Outcome::Applied);
    f
}

/// A new connection and session on the same state.
fn again(f: &Fx) -> Fx {
    let conn = f.state.open(ConnKind::Admin, f.t0);
    let s = AdminSession::new(
        f.t0,
        Draft,
        Framing::Stream,
        f.state.settings().auth_timeout(),
    );
    Fx {
        t0: f.t0,
        state: f.state.clone(),
        conn,
        s,
        fail_next: false,
        verifying: false,
    }
}

fn ev_verify(user: &[u8], password: &'static str) -> Event {
    Event::Verify {
        user: b(user),
        password: Secret::from(password),
        phc: b(PHC),
    }
}

impl Fx {
    /// Reports the driver's verdict at `t0 + ms`.
    fn verified(&mut self, ms: u64, ok: bool) {
        self.verifying = false;
        let now = self.t0 + Duration::from_millis(ms);
        self.s.handle_verified(now, ok, &self.conn);
    }
}

#[test]
fn hashed_admin_is_verified_then_pipelined_requests_are_served() {
    for framing in [Framing::Stream, Framing::Message] {
        let mut f = hashed_fx(framing);
        let mut wire = AUTH_ROOT.to_vec();
        wire.extend_from_slice(b"\x00\x07\x01\x05\x02");
        f.message(&wire, true);
        assert_eq!(f.drain(), (vec![], vec![ev_verify(b"root", "right")]));
        assert!(!f.s.wants_input(), "no input while verifying");
        assert!(!f.s.is_closed());
        assert_eq!(f.s.poll_timeout(), Some(f.t0 + HANDSHAKE_TIMEOUT));
        assert!(f.conn.user().is_none());
        f.verified(5, true);
        let (tx, ev) = f.drain();
        assert_eq!(tx.concat(), b"\x01\x00\x00\x07\x03\x01\x05\x00");
        let mut want = vec![Event::Authenticated { user: b(b"root") }];
        want.extend(apply_applied(Mutation::SetSelectorTimeout(2)));
        assert_eq!(ev, want);
        assert_eq!(f.s.poll_timeout(), None);
        assert!(f.s.wants_input());
        assert_eq!(f.conn.user().map(|u| &u[..]), Some(&b"root"[..]));
        // Warm: the next session authenticates at once.
        let mut g = again(&f);
        g.input(AUTH_ROOT);
        assert_eq!(
            g.drain(),
            (
                vec![b(b"\x01\x00")],
                vec![Event::Authenticated { user: b(b"root") }]
            )
        );
    }
}

#[test]
fn hashed_admin_wrong_password_or_removed_fails_alike() {
    // Wrong password: the verifier says no.
    let mut f = hashed_fx(Framing::Stream);
    f.input(b"\x01\x04root\x05wrong\x00\x07");
    assert_eq!(f.drain(), (vec![], vec![ev_verify(b"root", "wrong")]));
    f.verified(1, false);
    let failed = (
        vec![b(b"\x01\x01")],
        vec![
            Event::AuthFailed { user: b(b"root") },
            closed(CloseReason::Peer(ProtocolError::AuthFailed)),
        ],
    );
    assert_eq!(f.drain(), failed);
    assert!(f.conn.user().is_none());
    // The cache stayed cold.
    let mut g = again(&f);
    g.input(AUTH_ROOT);
    assert_eq!(g.drain(), (vec![], vec![ev_verify(b"root", "right")]));
    // Removed (another administrator did it) while the verification ran.
    let rm = Mutation::RemoveUser { name: b(b"root") };
    assert_eq!(f.state.apply(Some(b"admin"), &rm), Outcome::Applied);
    g.verified(2, true);
    assert_eq!(g.drain(), failed);
    assert!(g.conn.user().is_none());
    // A hashed user without the privilege is verified, then refused the same way.
    let m = Mutation::AddHashedUser {
        name: b(b"root"),
        phc: b(PHC),
        privilege: Privilege::User,
    };
    assert_eq!(f.state.apply(None, &m), Outcome::Applied);
    let mut h = again(&f);
    h.input(AUTH_ROOT);
    assert_eq!(h.drain(), (vec![], vec![ev_verify(b"root", "right")]));
    h.verified(3, true);
    assert_eq!(h.drain(), failed);
}

#[test]
fn deadline_during_verification_closes_and_the_verdict_is_ignored() {
    let mut f = hashed_fx(Framing::Stream);
    f.input(AUTH_ROOT);
    assert_eq!(f.drain(), (vec![], vec![ev_verify(b"root", "right")]));
    f.s.handle_timeout(f.t0 + HANDSHAKE_TIMEOUT);
    f.verifying = false;
    assert_eq!(
        f.drain(),
        (vec![], vec![closed(CloseReason::HandshakeTimeout)])
    );
    assert_eq!(f.s.poll_timeout(), None);
    f.verified(10_001, true);
    assert_eq!(f.drain(), (vec![], vec![]));
    assert!(f.conn.user().is_none());
    // A verdict handed in at the deadline, before any handle_timeout: late too.
    let mut g = again(&f);
    g.input(AUTH_ROOT);
    assert_eq!(g.drain(), (vec![], vec![ev_verify(b"root", "right")]));
    g.verified(10_000, true);
    assert_eq!(
        g.drain(),
        (vec![], vec![closed(CloseReason::HandshakeTimeout)])
    );
    assert!(g.conn.user().is_none());
}

#[test]
fn close_request_during_verification_closes_at_once() {
    let mut f = hashed_fx(Framing::Stream);
    f.input(AUTH_ROOT);
    assert_eq!(f.drain(), (vec![], vec![ev_verify(b"root", "right")]));
    f.s.handle_close_request(f.t0, CloseCause::Shutdown);
    f.verifying = false;
    assert_eq!(f.drain(), (vec![], vec![closed(CloseReason::Done)]));
    f.verified(1, true);
    assert_eq!(f.drain(), (vec![], vec![]));
    assert!(f.conn.user().is_none());
}

#[test]
fn eof_during_verification_waits_for_the_verdict() {
    let mut f = hashed_fx(Framing::Stream);
    let mut wire = AUTH_ROOT.to_vec();
    wire.extend_from_slice(b"\x00\x07\x00");
    f.input(&wire);
    f.s.handle_eof(f.t0);
    assert_eq!(f.drain(), (vec![], vec![ev_verify(b"root", "right")]));
    assert!(!f.s.is_closed());
    f.verified(1, true);
    let (tx, ev) = f.drain();
    assert_eq!(
        tx.concat(),
        b"\x01\x00\x00\x07\x03",
        "the partial request is dropped"
    );
    assert_eq!(
        ev,
        vec![
            Event::Authenticated { user: b(b"root") },
            closed(CloseReason::PeerEof)
        ]
    );
}

#[test]
fn verify_debug_shows_no_password_or_hash() {
    let e = ev_verify(b"root", "right");
    let shown = format!("{e:?} {e:#?}");
    assert!(
        !shown.contains("right") && !shown.contains("argon2"),
        "{shown}"
    );
    assert!(shown.contains("root"), "{shown}");
    let mut f = hashed_fx(Framing::Stream);
    f.input(AUTH_ROOT);
    let _ = f.drain();
    let shown = format!("{:?}", f.s);
    assert!(
        !shown.contains("right") && !shown.contains("argon2"),
        "{shown}"
    );
}
