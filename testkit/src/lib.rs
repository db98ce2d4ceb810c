//! Test support for socks5d, outside the sans-IO core: the fuzz bodies (one function per
//! target of the `fuzz/` crate, each checking invariants rather than only the absence of
//! panics) and the session scripts they read, so that `tests/` replays `fuzz/corpus/*` on a
//! stable toolchain. Uses only the public API of `socks5d-core` (with its `arbitrary`
//! feature). Not published; no stability promise.
//!
//! | module | what |
//! |---|---|
//! | [`fuzzing`] | parsers, SOCKS5 and admin sessions, the credential sniffer |
//! | [`udp`] | the UDP header and association |
//! | [`proxy_protocol`] | the PROXY protocol header |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod epoch;
pub mod fuzzing;
pub mod proxy_protocol;
pub mod udp;
