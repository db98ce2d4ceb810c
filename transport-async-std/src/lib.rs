//! socks5d on async-std (issue 5).
