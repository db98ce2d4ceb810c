#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| socks5d_core::proxy_protocol::fuzz::proxy_protocol(data));
