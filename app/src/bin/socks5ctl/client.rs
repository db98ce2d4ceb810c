//! The connection to the server: socket set-up (SCTP or TCP), authentication, and moving
//! requests and responses. Every byte is encoded and decoded by the core's codec.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use socks5d_core::admin::msg::{AdminRequest, AdminResponse, Modify, Query};
use socks5d_core::admin::Dialect;
use socks5d_core::{DecodeError, UserPassReply, UserPassRequest};

use crate::Failure;
use socks5d_cli::args::TransportArg;
use socks5d_net::sctp;

/// The transport actually used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// SCTP, one-to-one style: every `send` is one SCTP message.
    Sctp,
    /// TCP: a byte stream.
    Tcp,
}

impl Transport {
    pub(crate) fn name(self) -> &'static str {
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
    /// SCTP: `input` ends where an SCTP message ends (no part of a message is still unread).
    /// A response never spans two messages, so a partial response then proves a mismatch.
    at_boundary: bool,
    /// TCP: our sending side is shut down, so the server closes the connection once it has
    /// answered everything; a partial response at that end proves a mismatch.
    half_closed: bool,
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
            at_boundary: true,
            half_closed: false,
        })
    }

    /// The transport in use (with `auto`, the one that worked).
    pub(crate) fn transport(&self) -> Transport {
        self.transport
    }

    /// The server's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
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
                Ok(None) => self.more("the authentication reply", 0)?,
                Err(e) => {
                    return Err(Failure::Protocol(format!(
                        "unexpected authentication reply from {}: {e} (is this a socks5d \
                         administration port?)",
                        self.peer
                    )))
                }
            }
        };
        if !self.input.is_empty() {
            return Err(Failure::Protocol(format!(
                "the server sent {} byte(s) more than the authentication reply (is this a \
                 socks5d administration port?)",
                self.input.len()
            )));
        }
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

    /// Sends `requests` pipelined and returns their responses, in order; the connection
    /// stays open for more.
    ///
    /// Over TCP all requests go out in one write. Over SCTP each request is its own message
    /// (the draft's "different messages"; the original server reads one request per message),
    /// all sent before the first response is read.
    pub(crate) fn exchange(
        &mut self,
        requests: &[AdminRequest],
    ) -> Result<Vec<AdminResponse>, Failure> {
        self.send_requests(requests)?;
        self.receive(requests)
    }

    /// As [`exchange`](Self::exchange), for the last requests of the connection. Over TCP
    /// the sending side is shut down after the requests, so that the server closes the
    /// connection once it has answered them: responses that are shorter than this dialect's
    /// (a dialect mismatch) then end at that close and are reported at once, instead of
    /// waiting out `--timeout`. Over SCTP, where each response is its own message, the end
    /// of a message does the same for every exchange.
    pub(crate) fn exchange_last(
        mut self,
        requests: &[AdminRequest],
    ) -> Result<Vec<AdminResponse>, Failure> {
        self.send_requests(requests)?;
        if self.transport == Transport::Tcp {
            self.sock.shutdown(Shutdown::Write).map_err(|e| {
                Failure::Connection(format!("cannot shut down the sending side: {e}"))
            })?;
            self.half_closed = true;
        }
        let responses = self.receive(requests)?;
        if self.half_closed {
            // The server closes right after its last response: anything before that close is
            // more than the responses. (A server that does not close is not waited for beyond
            // --timeout: the responses are complete.)
            match self.fill("the end of the connection") {
                Ok(0) | Err(Failure::Connection(_)) => {}
                Ok(_) => {
                    return Err(Failure::Protocol(format!(
                        "the server sent {} byte(s) more than the responses ({HINT_DIALECT})",
                        self.input.len()
                    )))
                }
                Err(f) => return Err(f),
            }
        }
        Ok(responses)
    }

    fn send_requests(&mut self, requests: &[AdminRequest]) -> Result<(), Failure> {
        match self.transport {
            Transport::Tcp => {
                let mut out = BytesMut::new();
                for r in requests {
                    r.encode(&mut out);
                }
                self.send(&out)
            }
            Transport::Sctp => {
                for r in requests {
                    let mut out = BytesMut::new();
                    r.encode(&mut out);
                    self.send(&out)?;
                }
                Ok(())
            }
        }
    }

    /// Reads and decodes the responses to `requests`, in order.
    fn receive(&mut self, requests: &[AdminRequest]) -> Result<Vec<AdminResponse>, Failure> {
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
                    Ok(None) => self.more(
                        &format!("the response to {}", request_name(request)),
                        responses.len(),
                    )?,
                    Err(e) => return Err(unexpected(e, request)),
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

    /// Waits for more bytes of `what` (after `answered` responses of this exchange), unless
    /// the bytes received already prove that it will never come whole: an SCTP message that
    /// ended inside it, or the end of the connection.
    fn more(&mut self, what: &str, answered: usize) -> Result<(), Failure> {
        let partial = !self.input.is_empty();
        if partial && self.transport == Transport::Sctp && self.at_boundary {
            return Err(Failure::Protocol(format!(
                "the server's SCTP message ended inside {what}, after {} byte(s) of it \
                 ({HINT_DIALECT})",
                self.input.len()
            )));
        }
        if self.fill(what)? > 0 {
            return Ok(());
        }
        Err(if partial {
            Failure::Protocol(format!(
                "the server closed the connection inside {what}, after {} byte(s) of it \
                 ({HINT_DIALECT})",
                self.input.len()
            ))
        } else if self.half_closed && answered > 0 {
            // It answered every request it read: fewer answers than requests means the
            // answers we decoded were longer than the ones it sent.
            Failure::Protocol(format!(
                "the server closed the connection before sending {what}, after {answered} \
                 response(s) ({HINT_DIALECT})"
            ))
        } else {
            Failure::Connection(format!(
                "the server closed the connection before sending {what}"
            ))
        })
    }

    /// Reads more bytes into `input`, waiting for `what`; returns how many (0 at the end of
    /// the stream).
    fn fill(&mut self, what: &str) -> Result<usize, Failure> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let got = match self.transport {
                Transport::Tcp => self
                    .sock
                    .read(&mut buf)
                    .inspect(|&n| self.input.extend_from_slice(&buf[..n])),
                Transport::Sctp => {
                    sctp::recv_msg(&self.sock, &mut self.input, buf.len()).map(|r| {
                        self.at_boundary = r.end_of_message || r.len == 0;
                        r.len
                    })
                }
            };
            match got {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let mut msg = format!(
                        "cannot read {what} from {}: {}",
                        self.peer,
                        describe(&e, self.timeout)
                    );
                    if is_timeout(&e) && !self.input.is_empty() {
                        msg.push_str(&format!(
                            ", after {} byte(s) of it ({HINT_DIALECT})",
                            self.input.len()
                        ));
                    }
                    return Err(Failure::Connection(msg));
                }
            }
        }
    }
}

/// Names a request in messages, with its TYPE and CMD bytes.
fn request_name(r: &AdminRequest) -> String {
    let name = match r {
        AdminRequest::Query(q) => match q {
            Query::ListUsers => "List Users",
            Query::HistoricConnections => "Get Total Historic Connections",
            Query::CurrentConnections => "Get Current Connections",
            Query::MaxConcurrentConnections => "Get Max. Concurrent Connections",
            Query::BytesSent => "Get Total Sent Bytes",
            Query::BytesReceived => "Get Total Received Bytes",
            Query::UsersConnected => "Get Number of Users Connected",
            Query::UserCount => "Get Total User Count",
            Query::BufferSize => "Get I/O Buffer Sizes",
            Query::SelectorTimeout => "Get Selector Timeout",
            Query::ConnectionTimeout(_) => "Get Connection Timeout",
            Query::UserConnections { .. } => "Get User Total Current Connections",
        },
        AdminRequest::Modify(m) => match m {
            Modify::AddUser { .. } => "Add User",
            Modify::RemoveUser { .. } => "Remove User",
            Modify::SetSniffing(_) => "Enable/Disable Password Spoofing",
            Modify::SetCleanup(_) => "Enable/Disable Connection Clean-up Routine",
            Modify::SetBufferSize(_) => "Set I/O Buffer Sizes",
            Modify::SetSelectorTimeout(_) => "Set Selector Timeout",
            Modify::SetConnectionTimeout(_) => "Set Connection Timeout",
        },
    };
    format!("{name} ({:02x} {:02x})", r.request_type() as u8, r.cmd())
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
        Err(e) if choice == TransportArg::Auto && sctp::is_unsupported(&e) => {
            eprintln!("socks5ctl: this kernel has no SCTP ({e}); using TCP");
            tcp()
        }
        Err(e) => {
            let mut msg = format!("cannot open an SCTP socket: {e}");
            if sctp::is_unsupported(&e) {
                msg.push_str(" (this kernel has no SCTP: use --admin-transport tcp or auto)");
            }
            Err(Failure::Connection(msg))
        }
    }
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

fn unexpected(e: DecodeError, request: &AdminRequest) -> Failure {
    Failure::Protocol(format!(
        "unexpected response to {} from the server: {e} ({HINT_DIALECT})",
        request_name(request)
    ))
}
