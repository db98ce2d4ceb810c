//! Round trips for every message type: `decode(encode(m)) == m` consuming exactly the
//! encoding, and bytes that decode re-encode to exactly themselves (every message of these
//! protocols has one encoding). Cases: `PROPTEST_CASES` (default 256).

use bytes::BytesMut;
use proptest::prelude::*;
use socks5d_core::admin::msg::{
    AdminRequest, AdminResponse, Args, Command, ListedUser, Modify, ModifyCmd, Query, RequestType,
    ValueCmd,
};
use socks5d_core::admin::Dialect;
use socks5d_core::socks5::{Greeting, MethodSelection, Reply, Request};
use socks5d_core::state::Privilege;
use socks5d_core::{UserPassReply, UserPassRequest};
use socks5d_tests::strategies::*;

/// `decode(encode(m))` gives `m` back and consumes exactly the encoding (a trailing byte
/// stays), and the encoding is no longer than `max`.
macro_rules! value_round_trip {
    ($ty:ty, $m:expr, $max:expr) => {{
        let m: $ty = $m;
        let mut b = BytesMut::new();
        m.encode(&mut b);
        prop_assert!(b.len() <= $max);
        b.extend_from_slice(b"\x00");
        prop_assert_eq!(<$ty>::decode(&mut b), Ok(Some(m)));
        prop_assert_eq!(&b[..], b"\x00");
    }};
}

/// Bytes that decode re-encode to the bytes consumed; anything else leaves them untouched.
macro_rules! bytes_round_trip {
    ($ty:ty, $bytes:expr) => {{
        let bytes: Vec<u8> = $bytes;
        let mut b = BytesMut::from(&bytes[..]);
        match <$ty>::decode(&mut b) {
            Ok(Some(m)) => {
                let n = bytes.len() - b.len();
                let mut out = BytesMut::new();
                m.encode(&mut out);
                prop_assert_eq!(&out[..], &bytes[..n]);
                prop_assert_eq!(&b[..], &bytes[n..]);
            }
            Ok(None) | Err(_) => prop_assert_eq!(&b[..], &bytes[..]),
        }
    }};
}

proptest! {
    #[test]
    fn greeting(m in arb_greeting()) {
        value_round_trip!(Greeting, m, Greeting::MAX_LEN);
    }

    #[test]
    fn greeting_bytes(b in arb_lv_wire(5)) {
        bytes_round_trip!(Greeting, b);
    }

    #[test]
    fn method_selection(m in arb_method_selection()) {
        value_round_trip!(MethodSelection, m, MethodSelection::LEN);
    }

    #[test]
    fn method_selection_bytes(b in arb_lv_wire(5)) {
        bytes_round_trip!(MethodSelection, b);
    }

    #[test]
    fn userpass_request(m in arb_userpass_request()) {
        value_round_trip!(UserPassRequest, m, UserPassRequest::MAX_LEN);
    }

    #[test]
    fn userpass_request_bytes(b in arb_lv_wire(1)) {
        bytes_round_trip!(UserPassRequest, b);
    }

    #[test]
    fn userpass_reply(m in arb_userpass_reply()) {
        value_round_trip!(UserPassReply, m, UserPassReply::LEN);
    }

    #[test]
    fn userpass_reply_bytes(b in arb_lv_wire(1)) {
        bytes_round_trip!(UserPassReply, b);
    }

    #[test]
    fn request(m in arb_request()) {
        value_round_trip!(Request, m, Request::MAX_LEN);
    }

    #[test]
    fn request_bytes(b in arb_request_wire()) {
        bytes_round_trip!(Request, b);
    }

    #[test]
    fn reply(m in arb_reply()) {
        value_round_trip!(Reply, m, Reply::MAX_LEN);
    }

    #[test]
    fn reply_bytes(b in arb_request_wire()) {
        bytes_round_trip!(Reply, b);
    }
}

// ---------------------------------------------------------------------------------------------
// Admin protocol, both dialects
// ---------------------------------------------------------------------------------------------

/// A request `resp` can answer.
fn answered(resp: &AdminResponse) -> AdminRequest {
    match resp {
        AdminResponse::Users(_) => AdminRequest::Query(Query::ListUsers),
        AdminResponse::Value { cmd, .. } => {
            // Every query without arguments, found by its CMD byte; the per-user one by name.
            let cmd_byte = cmd.cmd();
            let mut b = BytesMut::from(&[0u8, cmd_byte][..]);
            if let ValueCmd::UserConnections(_) = cmd {
                b.extend_from_slice(b"\x01u");
            }
            AdminRequest::decode(&mut b).unwrap().unwrap()
        }
        AdminResponse::Status { cmd, .. } => {
            let mut b = BytesMut::from(&[1u8, cmd.cmd()][..]);
            b.extend_from_slice(match cmd {
                ModifyCmd::AddUser => b"\x01u\x01p\x00",
                ModifyCmd::RemoveUser => b"\x01u",
                ModifyCmd::SetBufferSize => b"\x00\x00\x00\x32",
                ModifyCmd::SetSniffing
                | ModifyCmd::SetCleanup
                | ModifyCmd::SetSelectorTimeout
                | ModifyCmd::SetConnectionTimeout => b"\x01",
            });
            AdminRequest::decode(&mut b).unwrap().unwrap()
        }
        AdminResponse::InvalidCommand {
            ty: RequestType::Modify,
        } => AdminRequest::Modify(Modify::SetCleanup(1)),
        AdminResponse::InvalidType
        | AdminResponse::InvalidCommand {
            ty: RequestType::Query,
        }
        | AdminResponse::QueryError { .. } => AdminRequest::Query(Query::BufferSize),
    }
}

/// What `resp` looks like after a trip over the wire in `dialect`.
fn on_wire(resp: &AdminResponse, dialect: Dialect) -> AdminResponse {
    match resp {
        AdminResponse::Value { cmd, value } => {
            // Written from the PROTOCOL.md widths, not with `ValueCmd::max_value`.
            let bits = 8 * cmd.width(dialect) as u32;
            let max = u64::MAX >> (64 - bits);
            AdminResponse::Value {
                cmd: *cmd,
                value: (*value).min(max),
            }
        }
        AdminResponse::Users(us) => AdminResponse::Users(
            us.iter()
                .map(|u| ListedUser {
                    name: u.name.clone(),
                    privilege: (dialect == Dialect::Final)
                        .then(|| u.privilege.unwrap_or(Privilege::User)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

proptest! {
    #[test]
    fn admin_request(m in arb_admin_request()) {
        value_round_trip!(AdminRequest, m, AdminRequest::MAX_LEN);
    }

    #[test]
    fn admin_request_bytes(b in arb_admin_request_wire()) {
        bytes_round_trip!(AdminRequest, b);
    }

    #[test]
    fn admin_response(m in arb_admin_response(), dialect in arb_dialect()) {
        let req = answered(&m);
        let mut b = BytesMut::new();
        m.encode(dialect, &mut b);
        prop_assert!(b.len() <= AdminResponse::MAX_LEN);
        b.extend_from_slice(b"\x00");
        prop_assert_eq!(AdminResponse::decode(&mut b, dialect, &req), Ok(Some(on_wire(&m, dialect))));
        prop_assert_eq!(&b[..], b"\x00");
    }

    #[test]
    fn admin_response_bytes(
        req in arb_admin_request(),
        dialect in arb_dialect(),
        head in prop_oneof![Just(vec![]), Just(vec![0u8]), Just(vec![1u8]), Just(vec![0xffu8])],
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        // A response shaped like the one `req` gets (its TYPE and CMD), then free bytes.
        let mut bytes = head;
        if bytes.is_empty() {
            let mut enc = BytesMut::new();
            req.encode(&mut enc);
            bytes.extend_from_slice(&enc[..2]);
        }
        bytes.extend_from_slice(&rest);
        let mut b = BytesMut::from(&bytes[..]);
        match AdminResponse::decode(&mut b, dialect, &req) {
            Ok(Some(m)) => {
                let n = bytes.len() - b.len();
                let mut out = BytesMut::new();
                m.encode(dialect, &mut out);
                prop_assert_eq!(&out[..], &bytes[..n]);
            }
            Ok(None) | Err(_) => prop_assert_eq!(&b[..], &bytes[..]),
        }
    }
}

/// Every entry of the command table frames, decodes to a request using exactly that
/// (TYPE, CMD) pair, and re-encodes to the same bytes.
#[test]
fn admin_every_command_of_the_table() {
    for &c in Command::ALL {
        let mut wire = vec![c.request_type() as u8, c.cmd()];
        wire.extend_from_slice(match c.args() {
            Args::None => &b""[..],
            Args::Name => b"\x03bob",
            Args::AddUser => b"\x03bob\x02pw\x01",
            Args::Byte => b"\x01",
            Args::U32 => b"\x00\x00\x40\x00",
        });
        let mut b = BytesMut::from(&wire[..]);
        let req = AdminRequest::decode(&mut b).unwrap().unwrap();
        assert!(b.is_empty(), "{c:?}");
        assert_eq!(req.command(), c);
        let mut out = BytesMut::new();
        req.encode(&mut out);
        assert_eq!(&out[..], &wire[..], "{c:?}");
    }
}

#[test]
fn admin_golden_both_dialects() {
    // Fixed cases of the properties above (PROTOCOL.md's table): the same value is one byte
    // in one dialect and two or eight in the other.
    let req = AdminRequest::Query(Query::UsersConnected);
    let m = AdminResponse::Value {
        cmd: ValueCmd::UsersConnected,
        value: 300,
    };
    let mut d = BytesMut::new();
    m.encode(Dialect::Draft, &mut d);
    assert_eq!(&d[..], b"\x00\x06\x00\x00\x00\x00\x00\x00\x01\x2c");
    let mut f = BytesMut::new();
    m.encode(Dialect::Final, &mut f);
    assert_eq!(&f[..], b"\x00\x06\xff");
    assert_eq!(
        AdminResponse::decode(&mut f, Dialect::Final, &req),
        Ok(Some(AdminResponse::Value {
            cmd: ValueCmd::UsersConnected,
            value: 255
        }))
    );
    let add = Modify::AddUser {
        name: "eve".into(),
        password: "pw".into(),
        privilege: 1,
    };
    let mut b = BytesMut::new();
    AdminRequest::Modify(add).encode(&mut b);
    assert_eq!(&b[..], b"\x01\x00\x03eve\x02pw\x01");
}
