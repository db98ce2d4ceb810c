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
use socks5d_core::socks5::{
    Command, Greeting, Method, MethodSelection, Reply, ReplyCode, Request, TargetAddr,
};
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
