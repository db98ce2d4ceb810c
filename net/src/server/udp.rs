//! The UDP ASSOCIATE driver: after the handshake's `Associated`, it relays datagrams between
//! the client and its destinations as `socks5d_core::udp::Association` says, until the TCP
//! control connection ends (either side), the user is removed or the clean-up routine finds
//! the association idle. No protocol decisions are made here.

use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::pin::{pin, Pin};
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use socks5d_core::socks5::{self, Socks5Handshake, TargetAddr};
use socks5d_core::state::Connection;
use socks5d_core::udp::{Association, UdpEvent, UdpLimits};

use super::{closed, Shared};
use crate::io::{self as sio, read_with, write_with};
use crate::policy::check_dest;
use crate::runtime::{race, Raced, Runtime, Socket};

/// Largest datagram read (a UDP payload is at most 65 507 bytes over IPv4, 65 527 over IPv6).
const DATAGRAM_MAX: usize = 65_536;

type Resolving<'a> = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>>;

/// What the association loop waited for.
enum Step {
    Control(io::Result<usize>),
    /// Length, source, and whether it came on the secondary socket.
    Datagram(io::Result<(usize, SocketAddr, bool)>),
    Resolved(Bytes, io::Result<Vec<SocketAddr>>),
}

/// Runs one association: `relay` is the socket the reply advertised, `client` the request's
/// DST (the client's expected source). Returns when the handshake session closes.
///
/// # Errors
///
/// I/O errors on the control connection.
pub(super) async fn associate<R: Runtime>(
    shared: &Shared<R>,
    hs: &mut Socks5Handshake,
    conn: &Connection,
    control: &R::Socket,
    peer: SocketAddr,
    relay: UdpSocket,
    client: TargetAddr,
) -> io::Result<()> {
    let rt = &shared.rt;
    let primary_v4 = relay.local_addr()?.is_ipv4();
    let primary = rt.register(socket2::Socket::from(relay))?;
    // The other family's socket, opened when a destination of that family is first named.
    let mut secondary: Option<R::Socket> = None;
    let mut assoc = Association::new(rt.now(), peer, &client, UdpLimits::default());
    let mut control_buf = BytesMut::new();
    let mut control_eof = false;
    let mut resolving: Vec<(Bytes, Resolving<'_>)> = Vec::new();
    let mut buf = vec![0u8; DATAGRAM_MAX];
    let mut buf2 = vec![0u8; DATAGRAM_MAX];
    loop {
        while let Some(ev) = hs.poll_event() {
            if let socks5::Event::Closed { reason } = ev {
                tracing::debug!(%peer, ?reason, "UDP association ended");
                return Ok(());
            }
        }
        while let Some(ev) = assoc.poll_event() {
            match ev {
                UdpEvent::ToRemote { to, payload } => {
                    // Each datagram's destination is checked as a request would be (the
                    // rules in force now; a denied datagram is dropped: UDP has no reply).
                    let rules = shared.policy.dest_rules();
                    let user = conn.user().map(|u| &u[..]);
                    let v = check_dest(
                        rules.as_deref(),
                        user,
                        &TargetAddr::Ip(to),
                        None,
                        socks5::Command::UdpAssociate,
                    );
                    if !v.is_allowed() {
                        if let Some(m) = &shared.metrics {
                            m.rule_denied();
                        }
                        tracing::debug!(%peer, %to, by = %v.by, "UDP datagram denied by an access rule: dropped");
                        continue;
                    }
                    let sock = if to.is_ipv4() == primary_v4 {
                        Some(&primary)
                    } else {
                        if secondary.is_none() {
                            secondary = other_family(rt, to).ok();
                        }
                        secondary.as_ref()
                    };
                    if let Some(s) = sock {
                        send_to(s, &payload, to, conn, rt.now()).await;
                    }
                }
                UdpEvent::ToClient { to, datagram } => {
                    send_to(&primary, &datagram, to, conn, rt.now()).await;
                }
                UdpEvent::Resolve { host, port } => {
                    let rules = shared.policy.dest_rules();
                    let user = conn.user().map(|u| &u[..]);
                    let named = TargetAddr::Domain(host.clone(), port);
                    let v = check_dest(
                        rules.as_deref(),
                        user,
                        &named,
                        None,
                        socks5::Command::UdpAssociate,
                    );
                    if !v.is_allowed() {
                        if let Some(m) = &shared.metrics {
                            m.rule_denied();
                        }
                        tracing::debug!(%peer, %named, by = %v.by, "UDP destination denied by an access rule: not resolved");
                        assoc.handle_resolved(
                            rt.now(),
                            &host,
                            Err(io::ErrorKind::PermissionDenied),
                        );
                        continue;
                    }
                    let name = String::from_utf8_lossy(&host).into_owned();
                    resolving.push((host, shared.resolve(name, port)));
                }
                UdpEvent::Dropped { reason, from } => {
                    tracing::trace!(%peer, %from, %reason, "UDP datagram dropped");
                }
                _ => {}
            }
        }
        let waited = {
            let eof = control_eof;
            let mut control_read = pin!(async {
                if eof {
                    std::future::pending().await
                } else {
                    sio::read_buf(control, &mut control_buf, 512).await
                }
            });
            // Each future lives across polls: some runtimes forget a waker whose future is
            // dropped.
            let mut first = pin!(recv_from(&primary, &mut buf));
            let sec = secondary.as_ref();
            let mut second = pin!(async {
                match sec {
                    Some(s) => recv_from(s, &mut buf2).await.map(|(n, a)| (n, a, true)),
                    None => std::future::pending().await,
                }
            });
            let resolving = &mut resolving;
            let step = poll_fn(|cx| {
                for i in 0..resolving.len() {
                    if let Poll::Ready(r) = resolving[i].1.as_mut().poll(cx) {
                        let (host, _) = resolving.swap_remove(i);
                        return Poll::Ready(Step::Resolved(host, r));
                    }
                }
                if let Poll::Ready(r) = first.as_mut().poll(cx) {
                    return Poll::Ready(Step::Datagram(r.map(|(n, a)| (n, a, false))));
                }
                if let Poll::Ready(r) = second.as_mut().poll(cx) {
                    return Poll::Ready(Step::Datagram(r));
                }
                control_read.as_mut().poll(cx).map(Step::Control)
            });
            race(rt, closed(conn), assoc.poll_timeout(), step).await
        };
        let now = rt.now();
        match waited {
            Raced::Close(cause) => hs.handle_close_request(now, cause),
            Raced::Deadline => assoc.handle_timeout(now),
            Raced::Io(Step::Control(r)) => match r? {
                0 => {
                    control_eof = true;
                    hs.handle_eof(now);
                }
                n => {
                    conn.record_received(now, n);
                    hs.handle_input(now, &mut control_buf, conn);
                }
            },
            Raced::Io(Step::Datagram(Ok((n, from, on_secondary)))) => {
                conn.record_received(now, n);
                let data = if on_secondary { &buf2[..n] } else { &buf[..n] };
                assoc.handle_datagram(now, from, Bytes::copy_from_slice(data));
            }
            Raced::Io(Step::Datagram(Err(e))) => {
                // ICMP errors surface here (e.g. a destination port unreachable): not fatal.
                tracing::trace!(%peer, error = %e, "UDP receive error");
            }
            Raced::Io(Step::Resolved(host, r)) => {
                assoc.handle_resolved(now, &host, r.map_err(|e| e.kind()));
            }
        }
    }
}

/// Receives one datagram.
async fn recv_from<S: Socket>(s: &S, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    read_with(s, |sock| {
        let (n, _, from) = rustix::net::recvfrom(sock, &mut *buf, rustix::net::RecvFlags::empty())?;
        let from = from
            .and_then(|a| SocketAddr::try_from(a).ok())
            .ok_or_else(|| io::Error::other("datagram from a non-IP address"))?;
        Ok((n, from))
    })
    .await
}

/// Sends one datagram (a UDP socket is writable but for moments of a full send buffer).
async fn send_to<S: Socket>(
    s: &S,
    data: &[u8],
    to: SocketAddr,
    conn: &Connection,
    now: std::time::Instant,
) {
    let to = socket2::SockAddr::from(to);
    match write_with(s, |sock| sock.send_to(data, &to)).await {
        Ok(n) => conn.record_sent(now, n),
        Err(e) => tracing::trace!(error = %e, "UDP datagram not sent"),
    }
}

/// Opens a UDP socket of `to`'s family on an ephemeral port.
fn other_family<R: Runtime>(rt: &R, to: SocketAddr) -> io::Result<R::Socket> {
    let any: IpAddr = if to.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let u = UdpSocket::bind(SocketAddr::new(any, 0))?;
    u.set_nonblocking(true)?;
    rt.register(socket2::Socket::from(u))
}
