#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| socks5d_core::fuzzing::socks5_greeting(data));
