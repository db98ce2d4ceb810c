#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| socks5d_testkit::fuzzing::admin_request(data));
