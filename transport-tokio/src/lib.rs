//! socks5d on tokio (issue 4).
