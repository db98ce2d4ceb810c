//! Reference-model test of the admin protocol (Firezone's reference state machine approach):
//! random sequences of admin requests run against a plain model written from PROTOCOL.md
//! (a list of users and the settings, nothing shared with `state.rs`) and against an
//! authenticated `AdminSession` on a shared `State`, driven as the one driver does (every
//! `Event::Apply` applied, some of them failed as a broken store would); every response must
//! be the model's, in both dialects and both framings, and the settings and users must agree
//! at the end. Cases: `PROPTEST_CASES`
//! (default 256).

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use socks5d_core::admin::msg::{
    AdminRequest, AdminResponse, ListedUser, Modify, ModifyCmd, Query, ValueCmd,
};
use socks5d_core::admin::{AdminSession, Dialect, Event, Framing};
use socks5d_core::state::{Config, ConnKind, Mutation, Outcome, Privilege, State};
use socks5d_tests::strategies::*;

/// The reference model: what PROTOCOL.md says the server holds.
#[derive(Debug, Clone)]
struct Model {
    dialect: Dialect,
    /// The administrator the session authenticated as.
    me: &'static [u8],
    /// In the order they were added (List Users lists them in that order).
    users: Vec<(Vec<u8>, Vec<u8>, bool)>,
    buffer_size: u32,
    selector_timeout: u8,
    connection_timeout: u8,
    sniffing: bool,
    cleanup: bool,
}

/// The users both sides start with: (name, password, administrator).
const INITIAL: [(&str, &str, bool); 2] = [("admin", "secret", true), ("bob", "hunter2", false)];

impl Model {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            me: b"admin",
            users: INITIAL
                .iter()
                .map(|(n, p, a)| (n.as_bytes().to_vec(), p.as_bytes().to_vec(), *a))
                .collect(),
            buffer_size: 16384,
            selector_timeout: 5,
            connection_timeout: 120,
            sniffing: true,
            cleanup: true,
        }
    }

    /// "usernames: printable ASCII without `:`", 1 to 255 bytes.
    fn valid_name(n: &[u8]) -> bool {
        !n.is_empty() && n.len() <= 255 && n.iter().all(|&b| (0x20..0x7f).contains(&b) && b != b':')
    }

    fn bad_parameter(&self) -> u8 {
        match self.dialect {
            Dialect::Draft => 0x02,
            Dialect::Final => 0xFE,
        }
    }

    fn find(&self, name: &[u8]) -> Option<usize> {
        self.users.iter().position(|(n, _, _)| n == name)
    }

    fn status(cmd: ModifyCmd, status: u8) -> AdminResponse {
        AdminResponse::Status { cmd, status }
    }

    fn toggle(&self, action: u8, flag: &mut bool) -> u8 {
        match action {
            0 | 1 => {
                *flag = action == 1;
                0
            }
            // "toggles: ACTION > 1": draft 0xFF, final 0xFE.
            _ => match self.dialect {
                Dialect::Draft => 0xFF,
                Dialect::Final => 0xFE,
            },
        }
    }

    /// Whether `req` is a modification the server hands to its driver to apply (every one
    /// whose PRIVILEGE and ACTION bytes are in range: the others are answered at once).
    fn goes_to_driver(req: &AdminRequest) -> bool {
        match req {
            AdminRequest::Query(_) => false,
            AdminRequest::Modify(Modify::AddUser { privilege, .. }) => *privilege <= 1,
            AdminRequest::Modify(Modify::SetSniffing(a) | Modify::SetCleanup(a)) => *a <= 1,
            AdminRequest::Modify(
                Modify::RemoveUser { .. }
                | Modify::SetBufferSize(_)
                | Modify::SetSelectorTimeout(_)
                | Modify::SetConnectionTimeout(_),
            ) => true,
        }
    }

    /// The response to `req` when the driver could not make it durable: General Server
    /// Error, nothing changes.
    fn failed(req: &AdminRequest) -> AdminResponse {
        let AdminRequest::Modify(m) = req else {
            unreachable!("only modifications go to the driver")
        };
        Self::status(m.cmd(), 0xFF)
    }

    /// The response PROTOCOL.md prescribes, applying the request to the model.
    fn respond(&mut self, req: &AdminRequest) -> AdminResponse {
        let value = |cmd: ValueCmd, value: u64| AdminResponse::Value { cmd, value };
        match req {
            AdminRequest::Query(q) => match q {
                Query::ListUsers => AdminResponse::Users(
                    self.users
                        .iter()
                        .map(|(n, _, admin)| ListedUser {
                            name: Bytes::copy_from_slice(n),
                            privilege: (self.dialect == Dialect::Final).then_some(if *admin {
                                Privilege::Admin
                            } else {
                                Privilege::User
                            }),
                        })
                        .collect(),
                ),
                // No SOCKS connection in this test: the counters stay zero.
                Query::HistoricConnections => value(ValueCmd::HistoricConnections, 0),
                Query::CurrentConnections => value(ValueCmd::CurrentConnections, 0),
                Query::MaxConcurrentConnections => value(ValueCmd::MaxConcurrentConnections, 0),
                Query::BytesSent => value(ValueCmd::BytesSent, 0),
                Query::BytesReceived => value(ValueCmd::BytesReceived, 0),
                Query::UsersConnected => value(ValueCmd::UsersConnected, 0),
                Query::UserCount => value(ValueCmd::UserCount, self.users.len() as u64),
                Query::BufferSize => value(ValueCmd::BufferSize, u64::from(self.buffer_size)),
                Query::SelectorTimeout => {
                    value(ValueCmd::SelectorTimeout, u64::from(self.selector_timeout))
                }
                Query::ConnectionTimeout(d) => value(
                    ValueCmd::ConnectionTimeout(*d),
                    u64::from(self.connection_timeout),
                ),
                // "for a name that is no user: count 0" (both dialects); "for an empty name
                // (ULEN 0)": final `00 FE FE`, draft count 0. No SOCKS connection here, so
                // every user's count is 0 too.
                Query::UserConnections { cmd, name } => {
                    if name.is_empty() && self.dialect == Dialect::Final {
                        AdminResponse::QueryError { status: 0xFE }
                    } else {
                        value(ValueCmd::UserConnections(*cmd), 0)
                    }
                }
            },
            AdminRequest::Modify(m) => match m {
                Modify::AddUser {
                    name,
                    password,
                    privilege,
                } => {
                    let cmd = ModifyCmd::AddUser;
                    if *privilege > 1
                        || !Self::valid_name(name)
                        || password.is_empty()
                        || password.len() > 255
                    {
                        return Self::status(cmd, self.bad_parameter());
                    }
                    if self.find(name).is_some() {
                        return Self::status(cmd, 0x01);
                    }
                    if self.users.len() >= 255 {
                        let s = match self.dialect {
                            Dialect::Draft => 0xFF,
                            Dialect::Final => 0x02,
                        };
                        return Self::status(cmd, s);
                    }
                    self.users
                        .push((name.to_vec(), password.to_vec(), *privilege == 1));
                    Self::status(cmd, 0)
                }
                Modify::RemoveUser { name } => {
                    let cmd = ModifyCmd::RemoveUser;
                    // "not yourself, not the last administrator: bad parameter".
                    if !Self::valid_name(name) || &name[..] == self.me {
                        return Self::status(cmd, self.bad_parameter());
                    }
                    let Some(i) = self.find(name) else {
                        return Self::status(cmd, 0x01);
                    };
                    let admins = self.users.iter().filter(|u| u.2).count();
                    if self.users[i].2 && admins == 1 {
                        return Self::status(cmd, self.bad_parameter());
                    }
                    self.users.remove(i);
                    Self::status(cmd, 0)
                }
                Modify::SetSniffing(a) => {
                    let mut f = self.sniffing;
                    let s = self.toggle(*a, &mut f);
                    self.sniffing = f;
                    Self::status(ModifyCmd::SetSniffing, s)
                }
                Modify::SetCleanup(a) => {
                    let mut f = self.cleanup;
                    let s = self.toggle(*a, &mut f);
                    self.cleanup = f;
                    Self::status(ModifyCmd::SetCleanup, s)
                }
                Modify::SetBufferSize(n) => {
                    let ok = (50..=1_048_576).contains(n);
                    if ok {
                        self.buffer_size = *n;
                    }
                    Self::status(ModifyCmd::SetBufferSize, u8::from(!ok))
                }
                Modify::SetSelectorTimeout(t) => {
                    if *t > 0 {
                        self.selector_timeout = *t;
                    }
                    Self::status(ModifyCmd::SetSelectorTimeout, u8::from(*t == 0))
                }
                Modify::SetConnectionTimeout(t) => {
                    if *t > 0 {
                        self.connection_timeout = *t;
                    }
                    Self::status(ModifyCmd::SetConnectionTimeout, u8::from(*t == 0))
                }
            },
        }
    }
}

/// Runs `requests` through an authenticated session (pipelined in `reads` reads, each an SCTP
/// message with `Framing::Message`) and the model, comparing every response, the `Apply` and
/// `Applied` events, and the final state. The driver answers every `fail_every`-th Apply
/// (counting from 1; never if 0) with `Outcome::Failed`, as a failing store would.
#[allow(clippy::disallowed_methods)] // one epoch per run; the session only sees it as input
fn check(
    dialect: Dialect,
    framing: Framing,
    requests: &[AdminRequest],
    reads: usize,
    fail_every: usize,
) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let state = Arc::new(State::new(t0, &Config::default()));
    for (n, p, admin) in INITIAL {
        let m = Mutation::AddUser {
            name: Bytes::from_static(n.as_bytes()),
            password: p.into(),
            privilege: if admin {
                Privilege::Admin
            } else {
                Privilege::User
            },
        };
        state.apply(None, &m);
    }
    let conn = state.open(ConnKind::Admin, t0);
    let timeout = state.settings().auth_timeout();
    let mut s = AdminSession::new(t0, dialect, framing, timeout);
    let mut wire = BytesMut::from(&b"\x01\x05admin\x06secret"[..]);
    for r in requests {
        r.encode(&mut wire);
    }
    let mut out = BytesMut::new();
    let mut events = Vec::new();
    let mut applies = 0;
    let step = wire.len().div_ceil(reads.max(1));
    for chunk in wire.chunks(step) {
        s.handle_message(t0, chunk, true, &conn);
        // The driver loop: drain, answer each Apply, continue while no input is wanted.
        loop {
            while let Some(b) = s.poll_transmit() {
                out.extend_from_slice(&b);
            }
            let mut answered = false;
            while let Some(e) = s.poll_event() {
                if let Event::Apply(m) = &e {
                    applies += 1;
                    let outcome = if fail_every != 0 && applies % fail_every == 0 {
                        Outcome::Failed
                    } else {
                        state.apply(Some(b"admin"), m)
                    };
                    events.push(e);
                    s.handle_apply_result(t0, outcome, &conn);
                    answered = true;
                    break;
                }
                events.push(e);
            }
            if answered {
                continue;
            }
            if s.wants_input() || s.is_closed() {
                break;
            }
            s.handle_continue(t0, &conn);
        }
    }
    prop_assert_eq!(&out[..2], b"\x01\x00", "authentication");
    let _ = out.split_to(2);
    let mut model = Model::new(dialect);
    let (mut applied, mut to_driver) = (0, 0);
    for (i, req) in requests.iter().enumerate() {
        let want = if Model::goes_to_driver(req) {
            to_driver += 1;
            if fail_every != 0 && to_driver % fail_every == 0 {
                Model::failed(req)
            } else {
                model.respond(req)
            }
        } else {
            model.respond(req)
        };
        let got = AdminResponse::decode(&mut out, dialect, req);
        prop_assert_eq!(
            got,
            Ok(Some(want.clone())),
            "request {} {:?} in {:?}",
            i,
            req,
            dialect
        );
        if matches!(want, AdminResponse::Status { status: 0, .. }) {
            applied += 1;
        }
    }
    prop_assert!(out.is_empty(), "responses to nothing: {:02x?}", &out[..]);
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    prop_assert_eq!(count(|e| matches!(e, Event::Apply(_))), to_driver);
    prop_assert_eq!(count(|e| matches!(e, Event::Applied(_))), applied);
    prop_assert!(!s.is_closed());
    // The state ends where the model does.
    let settings = state.settings().snapshot();
    prop_assert_eq!(
        (
            settings.buffer_size,
            settings.selector_timeout,
            settings.connection_timeout,
            settings.sniffing,
            settings.cleanup
        ),
        (
            model.buffer_size,
            model.selector_timeout,
            model.connection_timeout,
            model.sniffing,
            model.cleanup
        )
    );
    let users: Vec<(Vec<u8>, bool)> = state
        .users()
        .into_iter()
        .map(|u| (u.name.to_vec(), u.privilege == Privilege::Admin))
        .collect();
    let model_users: Vec<(Vec<u8>, bool)> = model
        .users
        .iter()
        .map(|(n, _, a)| (n.clone(), *a))
        .collect();
    prop_assert_eq!(users, model_users);
    // Passwords: every model user can log in as the model says, with the model's password.
    for (n, p, admin) in &model.users {
        let c = state.open(ConnKind::Admin, t0);
        let required = if *admin {
            Privilege::Admin
        } else {
            Privilege::User
        };
        prop_assert!(c.authenticate(n, p, required), "{:?} cannot log in", n);
    }
    Ok(())
}

proptest! {
    #[test]
    fn admin_session_agrees_with_model(
        dialect in arb_dialect(),
        framing in prop_oneof![Just(Framing::Stream), Just(Framing::Message)],
        requests in vec(arb_admin_request(), 0..48),
        reads in 1usize..6,
        fail_every in prop_oneof![3 => Just(0usize), 1 => 1usize..5],
    ) {
        check(dialect, framing, &requests, reads, fail_every)?;
    }
}

#[test]
fn user_table_fills_at_255() {
    // Sequences from the strategy rarely reach 255 users; this one does, in both dialects.
    for dialect in [Dialect::Draft, Dialect::Final] {
        let mut requests: Vec<AdminRequest> = (0..260)
            .map(|i| {
                AdminRequest::Modify(Modify::AddUser {
                    name: Bytes::from(format!("user{i}")),
                    password: Bytes::from_static(b"pw"),
                    privilege: (i % 7 == 0) as u8,
                })
            })
            .collect();
        requests.push(AdminRequest::Query(Query::UserCount));
        requests.push(AdminRequest::Modify(Modify::RemoveUser {
            name: Bytes::from_static(b"user0"),
        }));
        requests.push(AdminRequest::Query(Query::ListUsers));
        check(dialect, Framing::Stream, &requests, 3, 0).unwrap();
    }
}

#[test]
fn last_admin_and_self_cannot_be_removed() {
    let rm = |n: &'static str| {
        AdminRequest::Modify(Modify::RemoveUser {
            name: Bytes::from_static(n.as_bytes()),
        })
    };
    let add_admin = AdminRequest::Modify(Modify::AddUser {
        name: Bytes::from_static(b"root"),
        password: Bytes::from_static(b"toor"),
        privilege: 1,
    });
    for dialect in [Dialect::Draft, Dialect::Final] {
        let requests = [
            rm("admin"),
            add_admin.clone(),
            rm("root"),
            rm("bob"),
            rm("bob"),
        ];
        check(dialect, Framing::Stream, &requests, 1, 0).unwrap();
        check(dialect, Framing::Message, &requests, 5, 2).unwrap();
    }
}
