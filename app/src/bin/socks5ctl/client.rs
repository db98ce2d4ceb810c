//! The connection to the server: socket set-up (SCTP or TCP), authentication, and moving
//! requests and responses. Every byte is encoded and decoded by the core's codec.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use socks5d_core::admin::msg::{AdminRequest, AdminResponse};
use socks5d_core::admin::Dialect;
use socks5d_core::{DecodeError, UserPassReply, UserPassRequest};

use crate::Failure;
use socks5d_cli::args::TransportArg;

/// The transport actually used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// SCTP, one-to-one style: every `send` is one SCTP message.
    Sctp,
    /// TCP: a byte stream.
    Tcp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::Sctp => "SCTP",
            Self::Tcp => "TCP",
        }
    }
}

/// An authenticated (after [`Client::authenticate`]) administration connection.
#[derive(Debug)]
pub(crate) struct Client {
    sock: Socket,
    transport: Transport,
    dialect: Dialect,
    peer: SocketAddr,
    timeout: Duration,
    /// Received bytes not decoded yet.
    input: BytesMut,
}

const HINT_DIALECT: &str = "is --admin-dialect the same as the server's?";

impl Client {
    /// Resolves `host`, opens the socket and connects, within `timeout`.
    pub(crate) fn connect(
        host: &str,
        port: u16,
        choice: TransportArg,
        dialect: Dialect,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let peer = (host, port)
            .to_socket_addrs()
            .map_err(|e| Failure::Connection(format!("cannot resolve {host:?}: {e}")))?
            .next()
            .ok_or_else(|| Failure::Connection(format!("{host:?} has no address")))?;
        let (sock, transport) = open(peer, choice)?;
        let conn_err = |e: io::Error| {
            let mut msg = format!(
                "cannot connect to {peer} over {}: {}",
                transport.name(),
                describe(&e, timeout)
            );
            if e.kind() == io::ErrorKind::ConnectionRefused {
                msg.push_str(match transport {
                    Transport::Sctp => {
                        " (is socks5d running on this address and port, over SCTP? if it \
                         serves TCP, use --admin-transport tcp)"
                    }
                    Transport::Tcp => " (is socks5d running on this address and port?)",
                });
            }
            Failure::Connection(msg)
        };
        sock.connect_timeout(&peer.into(), timeout)
            .map_err(conn_err)?;
        sock.set_read_timeout(Some(timeout))
            .and_then(|()| sock.set_write_timeout(Some(timeout)))
            .map_err(|e| Failure::Connection(format!("cannot set the socket timeouts: {e}")))?;
        if transport == Transport::Tcp {
            // Requests are small and we wait for their answers: do not let Nagle delay them.
            let _ = sock.set_tcp_nodelay(true);
        }
        Ok(Self {
            sock,
            transport,
            dialect,
            peer,
            timeout,
            input: BytesMut::with_capacity(4096),
        })
    }

    /// Logs in. Failure::Auth if the server says no.
    pub(crate) fn authenticate(&mut self, user: &[u8], password: &[u8]) -> Result<(), Failure> {
        let mut out = BytesMut::new();
        UserPassRequest {
            user: bytes::Bytes::copy_from_slice(user),
            password: bytes::Bytes::copy_from_slice(password),
        }
        .encode(&mut out);
        self.send(&out)?;
        let reply = loop {
            match UserPassReply::decode(&mut self.input) {
                Ok(Some(r)) => break r,
                Ok(None) => self.fill("the authentication reply")?,
                Err(e) => {
                    return Err(Failure::Protocol(format!(
                        "unexpected authentication reply from {}: {e} (is this a socks5d \
                         administration port?)",
                        self.peer
                    )))
                }
            }
        };
        match reply.status {
            0x00 => Ok(()),
            0x01 => Err(Failure::Auth(
                "authentication failed: wrong user name or password, or the user is not an \
                 administrator"
                    .into(),
            )),
            0x02 => Err(Failure::Protocol(
                "the server does not support this authentication version".into(),
            )),
            s => Err(Failure::Auth(format!(
                "authentication failed (status {s:#04x})"
            ))),
        }
    }

    /// Sends `requests` pipelined and returns their responses, in order.
    ///
    /// Over TCP all requests go out in one write. Over SCTP each request is its own message
    /// (the draft's "different messages"; the original server reads one request per message),
    /// all sent before the first response is read.
    pub(crate) fn exchange(
        &mut self,
        requests: &[AdminRequest],
    ) -> Result<Vec<AdminResponse>, Failure> {
        match self.transport {
            Transport::Tcp => {
                let mut out = BytesMut::new();
                for r in requests {
                    r.encode(&mut out);
                }
                self.send(&out)?;
            }
            Transport::Sctp => {
                for r in requests {
                    let mut out = BytesMut::new();
                    r.encode(&mut out);
                    self.send(&out)?;
                }
            }
        }
        let mut responses = Vec::with_capacity(requests.len());
        for request in requests {
            let response = loop {
                match AdminResponse::decode(&mut self.input, self.dialect, request) {
                    Ok(Some(r)) => break r,
                    Ok(None) if self.input.len() >= AdminResponse::MAX_LEN => {
                        return Err(Failure::Protocol(format!(
                            "the server sent more than the largest possible response ({HINT_DIALECT})"
                        )))
                    }
                    Ok(None) => self.fill("a response")?,
                    Err(e) => return Err(unexpected(e)),
                }
            };
            responses.push(response);
        }
        if !self.input.is_empty() {
            return Err(Failure::Protocol(format!(
                "the server sent {} byte(s) more than the responses ({HINT_DIALECT})",
                self.input.len()
            )));
        }
        Ok(responses)
    }

    /// Writes `bytes`: over SCTP as exactly one message.
    fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let err = |e: io::Error| {
            Failure::Connection(format!(
                "cannot send to {}: {}",
                self.peer,
                describe(&e, self.timeout)
            ))
        };
        match self.transport {
            Transport::Tcp => self.sock.write_all(bytes).map_err(err),
            Transport::Sctp => loop {
                match self.sock.send(bytes) {
                    Ok(n) if n == bytes.len() => return Ok(()),
                    Ok(n) => {
                        return Err(Failure::Connection(format!(
                            "SCTP sent {n} of {} bytes of a message",
                            bytes.len()
                        )))
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(err(e)),
                }
            },
        }
    }

    /// Reads more bytes into `input`; waiting for `what`.
    fn fill(&mut self, what: &str) -> Result<(), Failure> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    let mut msg = format!("the server closed the connection before sending {what}");
                    if !self.input.is_empty() {
                        msg.push_str(&format!(" in full ({HINT_DIALECT})"));
                    }
                    return Err(Failure::Connection(msg));
                }
                Ok(n) => {
                    self.input.extend_from_slice(&buf[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let mut msg = format!(
                        "no {what} from {}: {}",
                        self.peer,
                        describe(&e, self.timeout)
                    );
                    if is_timeout(&e) && !self.input.is_empty() {
                        msg.push_str(&format!(
                            " after {} byte(s) of it ({HINT_DIALECT})",
                            self.input.len()
                        ));
                    }
                    return Err(Failure::Connection(msg));
                }
            }
        }
    }
}

/// Opens the socket for `choice`; `auto` falls back to TCP where the kernel has no SCTP.
fn open(peer: SocketAddr, choice: TransportArg) -> Result<(Socket, Transport), Failure> {
    let domain = Domain::for_address(peer);
    let tcp = || {
        Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
            .map(|s| (s, Transport::Tcp))
            .map_err(|e| Failure::Connection(format!("cannot open a TCP socket: {e}")))
    };
    if choice == TransportArg::Tcp {
        return tcp();
    }
    match Socket::new(domain, Type::STREAM, Some(Protocol::SCTP)) {
        Ok(s) => Ok((s, Transport::Sctp)),
        Err(e) if choice == TransportArg::Auto && no_sctp(&e) => {
            eprintln!("socks5ctl: this kernel has no SCTP ({e}); using TCP");
            tcp()
        }
        Err(e) => {
            let mut msg = format!("cannot open an SCTP socket: {e}");
            if no_sctp(&e) {
                msg.push_str(" (this kernel has no SCTP: use --admin-transport tcp or auto)");
            }
            Err(Failure::Connection(msg))
        }
    }
}

fn no_sctp(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EAFNOSUPPORT)
    )
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn describe(e: &io::Error, timeout: Duration) -> String {
    if is_timeout(e) {
        format!(
            "timed out after {} s (see --timeout)",
            timeout.as_secs_f64()
        )
    } else {
        e.to_string()
    }
}

fn unexpected(e: DecodeError) -> Failure {
    Failure::Protocol(format!(
        "unexpected response from the server: {e} ({HINT_DIALECT})"
    ))
}
