//! proptest strategies (`arb_*`) for the messages of every protocol, shared by the
//! conformance tests (`tests/tests/{roundtrip,chunking,model}.rs`).
//!
//! Value strategies generate only encodable values (fields of at most 255 bytes, IPv6
//! addresses without flow info or scope id, which the wire cannot carry). `*_wire`
//! strategies generate byte strings that look like a message of that kind, with every field
//! free, so that decoders see both valid and invalid input near the real format.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use socks5d_core::admin::msg::{
    AdminRequest, AdminResponse, ListedUser, Modify, ModifyCmd, Query, RequestType, ValueCmd,
};
use socks5d_core::admin::Dialect;
use socks5d_core::socks5::{
    Command, Greeting, Method, MethodSelection, Reply, ReplyCode, Request, TargetAddr,
};
use socks5d_core::state::Privilege;
use socks5d_core::{UserPassReply, UserPassRequest};

/// Bytes of length `min..=max`.
pub fn arb_bytes(min: usize, max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), min..=max).prop_map(Bytes::from)
}

/// An address the SOCKS5 wire can carry.
pub fn arb_socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

/// `ATYP DST.ADDR DST.PORT`: an IP address or a name of 1 to 255 bytes.
pub fn arb_target_addr() -> impl Strategy<Value = TargetAddr> {
    prop_oneof![
        arb_socket_addr().prop_map(TargetAddr::Ip),
        (arb_bytes(1, 255), any::<u16>()).prop_map(|(n, p)| TargetAddr::Domain(n, p)),
    ]
}

/// Any assigned reply code.
pub fn arb_reply_code() -> impl Strategy<Value = ReplyCode> {
    (0u8..=8).prop_map(|b| ReplyCode::from_u8(b).expect("assigned"))
}

/// Any assigned SOCKS5 command.
pub fn arb_command() -> impl Strategy<Value = Command> {
    (1u8..=3).prop_map(|b| Command::from_u8(b).expect("assigned"))
}

/// A SOCKS5 greeting with 0 to 255 methods.
pub fn arb_greeting() -> impl Strategy<Value = Greeting> {
    arb_bytes(0, 255).prop_map(|methods| Greeting { methods })
}

/// A SOCKS5 method selection.
pub fn arb_method_selection() -> impl Strategy<Value = MethodSelection> {
    any::<u8>().prop_map(|b| MethodSelection { method: Method(b) })
}

/// An RFC 1929 request (empty fields included: they decode).
pub fn arb_userpass_request() -> impl Strategy<Value = UserPassRequest> {
    (arb_bytes(0, 255), arb_bytes(0, 255))
        .prop_map(|(user, password)| UserPassRequest { user, password })
}

/// An RFC 1929 reply.
pub fn arb_userpass_reply() -> impl Strategy<Value = UserPassReply> {
    any::<u8>().prop_map(|status| UserPassReply { status })
}

/// A SOCKS5 request.
pub fn arb_request() -> impl Strategy<Value = Request> {
    (arb_command(), arb_target_addr()).prop_map(|(command, target)| Request { command, target })
}

/// A SOCKS5 reply.
pub fn arb_reply() -> impl Strategy<Value = Reply> {
    (arb_reply_code(), arb_target_addr()).prop_map(|(code, bound)| Reply { code, bound })
}

/// Bytes shaped like `ATYP ADDR PORT` with a free ATYP (mostly the assigned ones) and a name
/// length that may disagree with the bytes that follow.
pub fn arb_addr_wire() -> impl Strategy<Value = Vec<u8>> {
    let atyp = prop_oneof![
        4 => prop_oneof![Just(1u8), Just(3u8), Just(4u8)],
        1 => any::<u8>(),
    ];
    (atyp, any::<u8>(), vec(any::<u8>(), 0..300)).prop_map(|(atyp, len, rest)| {
        let mut b = vec![atyp];
        if atyp == 3 {
            b.push(len);
        }
        b.extend_from_slice(&rest);
        b
    })
}

/// Bytes shaped like a SOCKS5 request or reply: VER (mostly 5), a free CMD/REP byte, RSV
/// (mostly 0), then an address.
pub fn arb_request_wire() -> impl Strategy<Value = Vec<u8>> {
    let ver = prop_oneof![4 => Just(5u8), 1 => any::<u8>()];
    let rsv = prop_oneof![4 => Just(0u8), 1 => any::<u8>()];
    let cmd = prop_oneof![4 => 0u8..=9, 1 => any::<u8>()];
    (ver, cmd, rsv, arb_addr_wire()).prop_map(|(v, c, r, addr)| {
        let mut b = vec![v, c, r];
        b.extend_from_slice(&addr);
        b
    })
}

/// Bytes shaped like `VER LEN BYTES [LEN BYTES]`: a greeting or an RFC 1929 request.
pub fn arb_lv_wire(ver: u8) -> impl Strategy<Value = Vec<u8>> {
    let ver = prop_oneof![4 => Just(ver), 1 => any::<u8>()];
    (ver, vec(any::<u8>(), 0..600)).prop_map(|(v, rest)| {
        let mut b = vec![v];
        b.extend_from_slice(&rest);
        b
    })
}

// ---------------------------------------------------------------------------------------------
// Admin protocol
// ---------------------------------------------------------------------------------------------

/// Either dialect.
pub fn arb_dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![Just(Dialect::Draft), Just(Dialect::Final)]
}

/// A username, mostly from a small pool (so that sequences collide on names), sometimes
/// invalid (empty, with `:`, with a control byte) or long.
pub fn arb_admin_name() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        6 => prop_oneof![
            Just("admin"), Just("bob"), Just("eve"), Just("mallory"), Just("root"), Just("Bob"),
        ]
        .prop_map(|s: &'static str| Bytes::from_static(s.as_bytes())),
        1 => prop_oneof![Just(""), Just("a:b"), Just("tab\there"), Just("caf\u{e9}")]
            .prop_map(|s: &'static str| Bytes::from_static(s.as_bytes())),
        1 => arb_bytes(0, 255),
        1 => "[ -~]{255}".prop_map(Bytes::from),
    ]
}

/// A password, sometimes empty.
pub fn arb_admin_password() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => prop_oneof![Just("pw"), Just("secret"), Just("hunter2")].prop_map(|s: &'static str| Bytes::from_static(s.as_bytes())),
        1 => arb_bytes(0, 255),
    ]
}

/// A query (both CMD numberings of the renumbered ones).
pub fn arb_query() -> impl Strategy<Value = Query> {
    prop_oneof![
        Just(Query::ListUsers),
        Just(Query::HistoricConnections),
        Just(Query::CurrentConnections),
        Just(Query::MaxConcurrentConnections),
        Just(Query::BytesSent),
        Just(Query::BytesReceived),
        Just(Query::UsersConnected),
        Just(Query::UserCount),
        Just(Query::BufferSize),
        Just(Query::SelectorTimeout),
        arb_dialect().prop_map(Query::ConnectionTimeout),
        (arb_dialect(), arb_admin_name())
            .prop_map(|(cmd, name)| Query::UserConnections { cmd, name }),
    ]
}

/// A modification with values around every boundary.
pub fn arb_modify() -> impl Strategy<Value = Modify> {
    let action = prop_oneof![4 => 0u8..=1, 1 => any::<u8>()];
    let buffer = prop_oneof![
        Just(0u32),
        Just(49),
        Just(50),
        Just(16384),
        Just(1_048_576),
        Just(1_048_577),
        any::<u32>(),
    ];
    let seconds = prop_oneof![Just(0u8), Just(1), Just(255), any::<u8>()];
    prop_oneof![
        3 => (arb_admin_name(), arb_admin_password(), prop_oneof![4 => 0u8..=1, 1 => any::<u8>()])
            .prop_map(|(name, password, privilege)| Modify::AddUser { name, password, privilege }),
        2 => arb_admin_name().prop_map(|name| Modify::RemoveUser { name }),
        1 => action.clone().prop_map(Modify::SetSniffing),
        1 => action.prop_map(Modify::SetCleanup),
        1 => buffer.prop_map(Modify::SetBufferSize),
        1 => seconds.clone().prop_map(Modify::SetSelectorTimeout),
        1 => seconds.prop_map(Modify::SetConnectionTimeout),
    ]
}

/// Any admin request.
pub fn arb_admin_request() -> impl Strategy<Value = AdminRequest> {
    prop_oneof![
        arb_query().prop_map(AdminRequest::Query),
        arb_modify().prop_map(AdminRequest::Modify),
    ]
}

fn arb_value_cmd() -> impl Strategy<Value = ValueCmd> {
    prop_oneof![
        Just(ValueCmd::HistoricConnections),
        Just(ValueCmd::CurrentConnections),
        Just(ValueCmd::MaxConcurrentConnections),
        Just(ValueCmd::BytesSent),
        Just(ValueCmd::BytesReceived),
        Just(ValueCmd::UsersConnected),
        Just(ValueCmd::UserCount),
        Just(ValueCmd::BufferSize),
        Just(ValueCmd::SelectorTimeout),
        arb_dialect().prop_map(ValueCmd::ConnectionTimeout),
        arb_dialect().prop_map(ValueCmd::UserConnections),
    ]
}

fn arb_modify_cmd() -> impl Strategy<Value = ModifyCmd> {
    prop_oneof![
        Just(ModifyCmd::AddUser),
        Just(ModifyCmd::RemoveUser),
        Just(ModifyCmd::SetSniffing),
        Just(ModifyCmd::SetCleanup),
        Just(ModifyCmd::SetBufferSize),
        Just(ModifyCmd::SetSelectorTimeout),
        Just(ModifyCmd::SetConnectionTimeout),
    ]
}

/// Any admin response (values of any size: encoding saturates them).
pub fn arb_admin_response() -> impl Strategy<Value = AdminResponse> {
    let user = (
        arb_bytes(0, 255),
        proptest::option::of(prop_oneof![Just(Privilege::User), Just(Privilege::Admin)]),
    )
        .prop_map(|(name, privilege)| ListedUser { name, privilege });
    prop_oneof![
        vec(user, 0..8).prop_map(AdminResponse::Users),
        (arb_value_cmd(), prop_oneof![0u64..300, any::<u64>()])
            .prop_map(|(cmd, value)| AdminResponse::Value { cmd, value }),
        (arb_modify_cmd(), any::<u8>())
            .prop_map(|(cmd, status)| AdminResponse::Status { cmd, status }),
        Just(AdminResponse::InvalidType),
        prop_oneof![Just(RequestType::Query), Just(RequestType::Modify)]
            .prop_map(|ty| AdminResponse::InvalidCommand { ty }),
        any::<u8>().prop_map(|status| AdminResponse::QueryError { status }),
    ]
}

/// Bytes shaped like an admin request: TYPE (mostly 0 or 1), CMD (mostly assigned), then
/// free bytes.
pub fn arb_admin_request_wire() -> impl Strategy<Value = Vec<u8>> {
    let ty = prop_oneof![4 => 0u8..=1, 1 => any::<u8>()];
    let cmd = prop_oneof![4 => 0u8..=0x12, 1 => any::<u8>()];
    (ty, cmd, vec(any::<u8>(), 0..600)).prop_map(|(t, c, rest)| {
        let mut b = vec![t, c];
        b.extend_from_slice(&rest);
        b
    })
}
