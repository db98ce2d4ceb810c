#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| socks5d_testkit::proxy_protocol::proxy_protocol(data));
