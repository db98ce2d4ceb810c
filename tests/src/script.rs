//! One administration session that sends every request of the protocol (12 queries, both CMD
//! aliases of the two that have them, the per-user count for a name that is no user and for
//! the empty name, 7 modifications with every status a fresh server can give) with the answer
//! the server must give, for the end-to-end tests over TCP and SCTP.
//!
//! The expected answers are written out by hand from the draft and PROTOCOL.md, not computed
//! with the codec's own status table, so the tests check the server against the spec.

use bytes::Bytes;
use socks5d_core::admin::msg::{
    AdminRequest, AdminResponse, ListedUser, Modify, ModifyCmd, Query, ValueCmd,
};
use socks5d_core::admin::Dialect;
use socks5d_core::state::Privilege;

fn q(query: Query) -> AdminRequest {
    AdminRequest::Query(query)
}

fn m(modify: Modify) -> AdminRequest {
    AdminRequest::Modify(modify)
}

fn value(cmd: ValueCmd, value: u64) -> AdminResponse {
    AdminResponse::Value { cmd, value }
}

fn status(cmd: ModifyCmd, status: u8) -> AdminResponse {
    AdminResponse::Status { cmd, status }
}

fn name(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Every request and its expected response, in order, for a fresh server with the harness's
/// default users (`admin` administrator, `alice` proxy user), default settings and no SOCKS
/// traffic yet, speaking `dialect`.
pub fn every_command(dialect: Dialect) -> Vec<(AdminRequest, AdminResponse)> {
    use Dialect::{Draft, Final};
    let final_ = dialect == Final;
    let listed = |n: &'static str, p: Privilege| ListedUser {
        name: name(n),
        privilege: final_.then_some(p),
    };
    // Draft: bad parameter 0x02, ACTION > 1 0xFF. Final: 0xFE for both (PROTOCOL.md table).
    let (bad_param, bad_action) = if final_ { (0xFE, 0xFE) } else { (0x02, 0xFF) };
    let add = |n: &'static str, privilege: u8| {
        m(Modify::AddUser {
            name: name(n),
            password: name("pw"),
            privilege,
        })
    };
    let user_conns =
        |cmd: Dialect, n: &'static str| q(Query::UserConnections { cmd, name: name(n) });
    vec![
        // Queries on a fresh server.
        (
            q(Query::ListUsers),
            AdminResponse::Users(vec![
                listed("admin", Privilege::Admin),
                listed("alice", Privilege::User),
            ]),
        ),
        (
            q(Query::HistoricConnections),
            value(ValueCmd::HistoricConnections, 0),
        ),
        (
            q(Query::CurrentConnections),
            value(ValueCmd::CurrentConnections, 0),
        ),
        (
            q(Query::MaxConcurrentConnections),
            value(ValueCmd::MaxConcurrentConnections, 0),
        ),
        (q(Query::BytesSent), value(ValueCmd::BytesSent, 0)),
        (q(Query::BytesReceived), value(ValueCmd::BytesReceived, 0)),
        (q(Query::UsersConnected), value(ValueCmd::UsersConnected, 0)),
        (q(Query::UserCount), value(ValueCmd::UserCount, 2)),
        (q(Query::BufferSize), value(ValueCmd::BufferSize, 16384)),
        (
            q(Query::SelectorTimeout),
            value(ValueCmd::SelectorTimeout, 5),
        ),
        // Both CMD aliases in either dialect (0x10 / 0x0A, 0x11 / 0x0B); the answer echoes it.
        (
            q(Query::ConnectionTimeout(Draft)),
            value(ValueCmd::ConnectionTimeout(Draft), 120),
        ),
        (
            q(Query::ConnectionTimeout(Final)),
            value(ValueCmd::ConnectionTimeout(Final), 120),
        ),
        (
            user_conns(Draft, "alice"),
            value(ValueCmd::UserConnections(Draft), 0),
        ),
        (
            user_conns(Final, "alice"),
            value(ValueCmd::UserConnections(Final), 0),
        ),
        // PROTOCOL.md: "for a name that is no user: count 0" in both dialects; "for an empty
        // name (ULEN 0)": draft count 0, final query error `00 FE FE`.
        (
            user_conns(Draft, "nobody"),
            value(ValueCmd::UserConnections(Draft), 0),
        ),
        (
            user_conns(Final, "nobody"),
            value(ValueCmd::UserConnections(Final), 0),
        ),
        (
            user_conns(dialect, ""),
            if final_ {
                AdminResponse::QueryError { status: 0xFE }
            } else {
                value(ValueCmd::UserConnections(Draft), 0)
            },
        ),
        // Modifications, every status a fresh server can give.
        (add("carol", 0), status(ModifyCmd::AddUser, 0x00)),
        (add("carol", 0), status(ModifyCmd::AddUser, 0x01)),
        (add("bad:name", 0), status(ModifyCmd::AddUser, bad_param)),
        (add("dave", 7), status(ModifyCmd::AddUser, bad_param)),
        (q(Query::UserCount), value(ValueCmd::UserCount, 3)),
        (
            m(Modify::RemoveUser {
                name: name("carol"),
            }),
            status(ModifyCmd::RemoveUser, 0x00),
        ),
        (
            m(Modify::RemoveUser {
                name: name("carol"),
            }),
            status(ModifyCmd::RemoveUser, 0x01),
        ),
        (
            m(Modify::RemoveUser {
                name: name("admin"),
            }),
            status(ModifyCmd::RemoveUser, bad_param),
        ),
        (
            m(Modify::SetSniffing(0)),
            status(ModifyCmd::SetSniffing, 0x00),
        ),
        (
            m(Modify::SetSniffing(2)),
            status(ModifyCmd::SetSniffing, bad_action),
        ),
        (
            m(Modify::SetCleanup(1)),
            status(ModifyCmd::SetCleanup, 0x00),
        ),
        (
            m(Modify::SetCleanup(9)),
            status(ModifyCmd::SetCleanup, bad_action),
        ),
        (
            m(Modify::SetBufferSize(4096)),
            status(ModifyCmd::SetBufferSize, 0x00),
        ),
        (
            m(Modify::SetBufferSize(0)),
            status(ModifyCmd::SetBufferSize, 0x01),
        ),
        (
            m(Modify::SetSelectorTimeout(7)),
            status(ModifyCmd::SetSelectorTimeout, 0x00),
        ),
        (
            m(Modify::SetSelectorTimeout(0)),
            status(ModifyCmd::SetSelectorTimeout, 0x01),
        ),
        (
            m(Modify::SetConnectionTimeout(33)),
            status(ModifyCmd::SetConnectionTimeout, 0x00),
        ),
        (
            m(Modify::SetConnectionTimeout(0)),
            status(ModifyCmd::SetConnectionTimeout, 0x01),
        ),
        // The changes are visible to the next requests.
        (q(Query::UserCount), value(ValueCmd::UserCount, 2)),
        (q(Query::BufferSize), value(ValueCmd::BufferSize, 4096)),
        (
            q(Query::SelectorTimeout),
            value(ValueCmd::SelectorTimeout, 7),
        ),
        (
            q(Query::ConnectionTimeout(dialect)),
            value(ValueCmd::ConnectionTimeout(dialect), 33),
        ),
    ]
}
