//! Blocking peers for the integration tests: SOCKS5 and admin clients built on the core's
//! messages, and the local servers the proxy connects to. Blocking std sockets keep them
//! independent of the runtime under test.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use socks5d_core::admin::msg::{AdminRequest, AdminResponse};
use socks5d_core::admin::Dialect;
use socks5d_core::socks5::{
    Command, Greeting, Method, MethodSelection, Reply, Request, TargetAddr,
};
use socks5d_core::{UserPassReply, UserPassRequest};

/// Read/write timeout of every client socket: long enough never to matter, short enough that
/// a broken server fails the test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `addr` with [`IO_TIMEOUT`] set.
///
/// # Errors
///
/// The connect's error.
pub fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}

fn spawn_acceptor(l: TcpListener, serve: fn(TcpStream)) -> SocketAddr {
    let addr = l.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

/// Starts a destination on 127.0.0.1 that sends 64 KiB chunks as fast as it can to every
/// client until the connection fails (or a write blocks for 60 s). Returns its address.
///
/// # Panics
///
/// If it cannot bind.
pub fn firehose() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind firehose");
    spawn_acceptor(l, |mut s| {
        let _ = s.set_write_timeout(Some(Duration::from_secs(60)));
        let chunk = vec![0x5au8; 64 * 1024];
        while s.write_all(&chunk).is_ok() {}
    })
}

/// What the echo server sends after its client's end of stream, before closing: proves the
/// reverse direction still flows after a half-close.
pub const ECHO_TRAILER: &[u8] = b"<eof seen>";

/// Starts an echo server on `ip` (port chosen by the kernel): echoes every chunk, and at end
/// of stream sends [`ECHO_TRAILER`] and closes.
///
/// # Panics
///
/// If it cannot bind.
pub fn echo_server(ip: IpAddr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).expect("bind echo server");
    spawn_acceptor(l, |mut s| {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    let _ = s.write_all(ECHO_TRAILER);
                    let _ = s.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    })
}

/// The body the HTTP server answers with.
pub const HTTP_BODY: &str = "hello from the test server\n";

/// Starts a tiny HTTP/1.1 server on 127.0.0.1: answers every request with 200 and
/// [`HTTP_BODY`], then closes.
///
/// # Panics
///
/// If it cannot bind.
pub fn http_server() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind http server");
    spawn_acceptor(l, |mut s| {
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HTTP_BODY}",
            HTTP_BODY.len()
        );
        let _ = s.write_all(resp.as_bytes());
        let _ = s.shutdown(Shutdown::Write);
    })
}

/// Starts an HTTP/1.1 server on 127.0.0.1 that keeps the connection open: answers every
/// request (headers only, no body) with 200 and [`HTTP_BODY`] until the client closes.
///
/// # Panics
///
/// If it cannot bind.
pub fn http_keepalive_server() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind http server");
    spawn_acceptor(l, |mut s| {
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            while let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                req.drain(..end + 4);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{HTTP_BODY}",
                    HTTP_BODY.len()
                );
                if s.write_all(resp.as_bytes()).is_err() {
                    return;
                }
            }
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// Returns a loopback address where nothing listens (a port that was just freed).
///
/// # Panics
///
/// If it cannot bind.
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

/// Returns the IPv6 loopback if this machine has it.
pub fn ipv6_loopback() -> Option<IpAddr> {
    TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
        .ok()
        .map(|_| IpAddr::V6(Ipv6Addr::LOCALHOST))
}

/// Encodes a greeting offering username/password only (RFC 1928 §3).
pub fn greeting() -> Vec<u8> {
    let mut b = BytesMut::new();
    Greeting::new(&[Method::USER_PASS]).encode(&mut b);
    b.to_vec()
}

/// Encodes an RFC 1929 request.
pub fn userpass(user: &str, password: &str) -> Vec<u8> {
    let mut b = BytesMut::new();
    UserPassRequest {
        user: Bytes::copy_from_slice(user.as_bytes()),
        password: Bytes::copy_from_slice(password.as_bytes()),
    }
    .encode(&mut b);
    b.to_vec()
}

/// Encodes a CONNECT request to `target` (RFC 1928 §4).
pub fn connect_request(target: &TargetAddr) -> Vec<u8> {
    let mut b = BytesMut::new();
    Request {
        command: Command::Connect,
        target: target.clone(),
    }
    .encode(&mut b);
    b.to_vec()
}

/// Reads exactly `n` bytes.
///
/// # Errors
///
/// The read's error, `UnexpectedEof` if the peer closed first.
pub fn read_n(s: &mut TcpStream, n: usize) -> io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v)?;
    Ok(v)
}

/// Reads the method selection; returns the method.
///
/// # Errors
///
/// I/O errors; `InvalidData` if VER is not 5.
pub fn read_method(s: &mut TcpStream) -> io::Result<u8> {
    let mut b = BytesMut::from(&read_n(s, MethodSelection::LEN)?[..]);
    match MethodSelection::decode(&mut b) {
        Ok(Some(m)) => Ok(m.method.0),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{other:?}"),
        )),
    }
}

/// Reads an RFC 1929 reply; returns STATUS.
///
/// # Errors
///
/// I/O errors; `InvalidData` if it does not decode.
pub fn read_userpass_reply(s: &mut TcpStream) -> io::Result<u8> {
    let mut b = BytesMut::from(&read_n(s, UserPassReply::LEN)?[..]);
    match UserPassReply::decode(&mut b) {
        Ok(Some(r)) => Ok(r.status),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{other:?}"),
        )),
    }
}

/// Reads a SOCKS5 reply (RFC 1928 §6); returns REP and BND.
///
/// # Errors
///
/// I/O errors; `InvalidData` on a malformed reply or a BND that is not an IP address.
pub fn read_reply(s: &mut TcpStream) -> io::Result<(u8, SocketAddr)> {
    let mut b = BytesMut::new();
    let mut byte = [0u8; 1];
    loop {
        match Reply::check(&b) {
            Ok(Some(_)) => break,
            Ok(None) => {
                s.read_exact(&mut byte)?;
                b.extend_from_slice(&byte);
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
    match Reply::decode(&mut b) {
        Ok(Some(Reply {
            code,
            bound: TargetAddr::Ip(a),
        })) => Ok((code as u8, a)),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{other:?}"),
        )),
    }
}

/// Runs greeting, authentication and CONNECT step by step. Returns the stream (relaying if
/// REP is 0), REP and BND.
///
/// # Errors
///
/// I/O errors, or `PermissionDenied` if the method or the authentication was refused.
pub fn socks_connect(
    proxy: SocketAddr,
    user: &str,
    password: &str,
    target: &TargetAddr,
) -> io::Result<(TcpStream, u8, SocketAddr)> {
    let mut s = tcp(proxy)?;
    s.write_all(&greeting())?;
    let m = read_method(&mut s)?;
    if m != 0x02 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("method {m:#04x}"),
        ));
    }
    s.write_all(&userpass(user, password))?;
    let st = read_userpass_reply(&mut s)?;
    if st != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("auth status {st:#04x}"),
        ));
    }
    s.write_all(&connect_request(target))?;
    let (rep, bnd) = read_reply(&mut s)?;
    Ok((s, rep, bnd))
}

/// Reads until end of stream.
///
/// # Errors
///
/// The read's error.
pub fn read_to_end(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    s.read_to_end(&mut v)?;
    Ok(v)
}

/// Returns whether the peer closed `s` (end of stream or reset) within [`IO_TIMEOUT`], after
/// discarding whatever it still sent.
pub fn is_closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A blocking administration client over any byte stream, built on the core's admin codec.
#[derive(Debug)]
pub struct AdminClient<S> {
    io: S,
    dialect: Dialect,
    buf: BytesMut,
}

impl<S: Read + Write> AdminClient<S> {
    /// Wraps a connected stream.
    pub fn new(io: S, dialect: Dialect) -> Self {
        Self {
            io,
            dialect,
            buf: BytesMut::new(),
        }
    }

    /// Authenticates; returns STATUS.
    ///
    /// # Errors
    ///
    /// I/O errors; `InvalidData` if the reply does not decode.
    pub fn auth(&mut self, user: &str, password: &str) -> io::Result<u8> {
        self.io.write_all(&userpass(user, password))?;
        loop {
            match UserPassReply::decode(&mut self.buf) {
                Ok(Some(r)) => return Ok(r.status),
                Ok(None) => self.fill()?,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }

    /// Sends `requests` in one write (pipelined).
    ///
    /// # Errors
    ///
    /// The write's error.
    pub fn send(&mut self, requests: &[AdminRequest]) -> io::Result<()> {
        let mut b = BytesMut::new();
        for r in requests {
            r.encode(&mut b);
        }
        self.io.write_all(&b)
    }

    /// Reads the response to `request`.
    ///
    /// # Errors
    ///
    /// I/O errors; `InvalidData` if the response does not decode.
    pub fn recv(&mut self, request: &AdminRequest) -> io::Result<AdminResponse> {
        loop {
            match AdminResponse::decode(&mut self.buf, self.dialect, request) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => self.fill()?,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }

    /// Sends one request and reads its response.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send) and [`recv`](Self::recv).
    pub fn call(&mut self, request: &AdminRequest) -> io::Result<AdminResponse> {
        self.send(std::slice::from_ref(request))?;
        self.recv(request)
    }

    /// Returns the stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut tmp = [0u8; 4096];
        let n = self.io.read(&mut tmp)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }
}
