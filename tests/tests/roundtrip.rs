//! Round trips for every message type: `decode(encode(m)) == m` consuming exactly the
//! encoding, and bytes that decode re-encode to exactly themselves (every message of these
//! protocols has one encoding). Cases: `PROPTEST_CASES` (default 256).

use bytes::BytesMut;
use proptest::prelude::*;
use socks5d_core::socks5::{Greeting, MethodSelection, Reply, Request};
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
