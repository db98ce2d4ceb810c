//! The SOCKS5 connection driver: it does what the handshake asks — resolve, dial (Happy
//! Eyeballs attempts, as the core schedules them), listen and accept (BIND), bind a UDP socket
//! (UDP ASSOCIATE) — reports each result back, and relays once the core says so. No
//! protocol decisions are made here: which address to dial next, when to give up and which
//! reply code a failure gets all come out of `socks5d-core`.

use std::future::{poll_fn, Future};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::{pin, Pin};
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Type};
use socks5d_core::guard::{Slot, ThrottleKey};
use socks5d_core::logfmt;
use socks5d_core::policy::{Egress, Hit, IpGuard, UserGuard, Verdict};
use socks5d_core::proxy_protocol::{ProxyHeader, MAX_LEN as PROXY_MAX_LEN, V2_SIGNATURE};
use socks5d_core::socks5::{self, Attempt, Command, HandshakeLimits, ReplyCode, Socks5Handshake};
use socks5d_core::state::{ConnKind, Connection};

use super::{closed, udp, Shared};
use crate::io::{self as sio, LINGER};
use crate::metrics::LimitKind;
use crate::policy::{check_dest, filter_resolved};
use crate::runtime::{race, race_close, Raced, Runtime, Socket};
use crate::{listen, relay, unix_time, Tap};

/// Largest read from the client during the handshake.
const HANDSHAKE_READ: usize = 4096;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A connect in flight: the socket and its local address.
type Dialing<'a, S> = Boxed<'a, io::Result<(S, SocketAddr)>>;

/// What the handshake loop waited for (besides the close request and the deadline).
enum Step<S> {
    Read(io::Result<usize>),
    Resolved(io::Result<Vec<SocketAddr>>),
    Dialed(Attempt, io::Result<(S, SocketAddr)>),
    Accepted(io::Result<(socket2::Socket, SocketAddr)>),
    Verified(bool),
}

/// The sockets and pending operations the handshake asked for.
struct Pending<'a, R: Runtime> {
    resolving: Option<Boxed<'a, io::Result<Vec<SocketAddr>>>>,
    dials: Vec<(Attempt, Dialing<'a, R::Socket>)>,
    /// Attempts that connected and wait for the core's verdict (win or cancel).
    connected: Vec<(Attempt, R::Socket)>,
    /// BIND: the listener, until a connection is accepted.
    listener: Option<R::Socket>,
    /// BIND: the accepted connection.
    accepted: Option<R::Socket>,
    /// UDP ASSOCIATE: the relay socket.
    udp: Option<UdpSocket>,
    /// A password being verified against its stored hash.
    verifying: Option<Boxed<'a, bool>>,
}

impl<R: Runtime> Pending<'_, R> {
    /// Whether a request is being carried out (then the client is not read: what it sends
    /// waits in the kernel, the core keeps what was already read).
    fn busy(&self) -> bool {
        self.resolving.is_some() || !self.dials.is_empty() || self.verifying.is_some()
    }
}

/// Serves one SOCKS5 client connection to the end: handshake, then relay (CONNECT, BIND).
///
/// The handshake's state (the core's session, the read buffer, the pending operations) lives
/// in a box of its own that is freed when the relay starts, so that an idle relayed
/// connection holds only the relay's state (issue 16: memory per idle connection).
///
/// # Errors
///
/// I/O errors on the client socket; protocol failures are not errors (the core answers them).
pub async fn serve_socks_connection<R: Runtime>(
    shared: &Shared<R>,
    client: R::Socket,
    peer: SocketAddr,
) -> io::Result<()> {
    let established = Box::pin(handshake(shared, &client, peer)).await?;
    let Some(established) = established else {
        return Ok(());
    };
    relay_established(shared, &client, established).await
}

/// What a successful CONNECT or BIND handshake hands to the relay.
struct Established<S> {
    /// The client's address (the one a trusted PROXY header named).
    peer: SocketAddr,
    conn: Connection,
    dest: S,
    target: socks5::TargetAddr,
    /// Client bytes read with the handshake that belong to the destination: what the core
    /// gave back, then anything it left unconsumed in the read buffer (a copy: the buffer
    /// itself is freed with the handshake).
    leftover: Bytes,
    /// The client already sent its end of stream.
    client_eof: bool,
    /// The user's limits (connections, bandwidth) held for the connection's life.
    user_guard: Option<UserGuard>,
    /// The client address's share of the per-address limit, held likewise.
    _ip_guard: Option<IpGuard>,
}

/// The handshake: everything up to the relay. `None` when the connection ended here
/// (refused, failed, closed, or a UDP association that ran to its end).
async fn handshake<R: Runtime>(
    shared: &Shared<R>,
    client: &R::Socket,
    peer: SocketAddr,
) -> io::Result<Option<Box<Established<R::Socket>>>> {
    let rt = &shared.rt;
    let policy = &shared.policy;
    let mut rbuf = BytesMut::new();
    // A trusted load balancer's PROXY header names the real client: rules, limits and logs
    // see that one. Required from those senders, believed from no one else.
    let trusted = policy.proxy_trusted(peer.ip());
    let peer = if trusted {
        match read_proxy_header(shared, client, peer, &mut rbuf).await? {
            Some(real) => real,
            None => return Ok(None),
        }
    } else {
        peer
    };
    if let Some(v) = policy.check_client(peer.ip()) {
        if !v.is_allowed() {
            if let Some(m) = &shared.metrics {
                m.rule_denied();
            }
            if log_now() {
                tracing::info!(%peer, by = %v.by, "client refused by an access rule: closed");
            }
            return Ok(None);
        }
    }
    let ip_guard = if policy.ip_limits() {
        match policy.limits().try_acquire_ip(rt.now(), peer.ip()) {
            Ok(g) => Some(g),
            Err(hit) => {
                refused_on_accept(shared, peer, hit);
                return Ok(None);
            }
        }
    } else {
        None
    };
    let mut handshake_guard = if policy.handshake_limit() {
        match policy.limits().try_acquire_handshake() {
            Ok(g) => Some(g),
            Err(hit) => {
                refused_on_accept(shared, peer, hit);
                return Ok(None);
            }
        }
    } else {
        None
    };
    let conn = shared.state.open(ConnKind::Proxy, rt.now());
    let limits = HandshakeLimits {
        allow_bind: shared.options.allow_bind,
        allow_udp: shared.options.allow_udp,
        ..HandshakeLimits::default()
    };
    let accepted = rt.now();
    let mut hs = Socks5Handshake::new(accepted, limits);
    // The command being carried out, for the metrics (known once it asks for I/O).
    let mut command: Option<socks5::Command> = None;
    // The request's policy: checked at its first event; what it decided for the dials.
    let mut checked = false;
    let mut user_guard: Option<UserGuard> = None;
    let mut request_rules = None;
    let mut egress: Option<(Egress, Option<String>)> = None;
    if !rbuf.is_empty() {
        // The greeting came with the PROXY header.
        conn.record_received(rt.now(), rbuf.len());
        hs.handle_input(rt.now(), &mut rbuf, &conn);
    }
    // An untrusted sender's PROXY header is refused (the SOCKS5 parser does) and logged.
    let mut first_read = !trusted;
    let mut p: Pending<'_, R> = Pending {
        resolving: None,
        dials: Vec::new(),
        connected: Vec::new(),
        listener: None,
        accepted: None,
        udp: None,
        verifying: None,
    };
    let mut client_eof = false;
    let mut replied = false;
    let mut target = None;
    let handshake_deadline = rt.now() + HandshakeLimits::default().handshake_timeout;
    let (leftover, dest): (Bytes, R::Socket) = 'handshake: loop {
        // A checked login: the back-off decides when its reply (pending output) may go.
        if let Some((user, ok)) = hs.poll_login() {
            let key = ThrottleKey::Socks(peer.ip(), &user);
            let at = match shared
                .socks_throttle
                .begin_attempt(rt.now(), key, handshake_deadline)
            {
                Slot::Refused(_) => {
                    tracing::debug!(%peer, "SOCKS login refused by the back-off: closing");
                    return Ok(None);
                }
                Slot::Now => None,
                Slot::At(t) => Some(t),
            };
            if ok {
                let _ = shared.socks_throttle.record_success(key);
            } else {
                let note = shared.socks_throttle.record_failure(rt.now(), key);
                if note.log {
                    tracing::info!(%peer, user = %String::from_utf8_lossy(&user), failures = note.failures, suppressed = note.suppressed, "SOCKS login failed");
                }
            }
            if let Some(t) = at {
                let pending = std::future::pending::<()>();
                if let Raced::Close(_) = race(rt, closed(&conn), Some(t), pending).await {
                    return Ok(None);
                }
            }
        }
        while let Some(b) = hs.poll_transmit() {
            match race(
                rt,
                closed(&conn),
                hs.poll_timeout(),
                sio::write_all(client, &b),
            )
            .await
            {
                Raced::Io(r) => r?,
                // A client that does not read a reply of a few bytes: nothing to save.
                Raced::Close(_) | Raced::Deadline => return Ok(None),
            }
            conn.record_sent(rt.now(), b.len());
            replied = true;
        }
        let mut established = None;
        let mut associated = None;
        // Set when an event was answered at once (a `handle_*` call): its output goes first.
        let mut answered = false;
        while let Some(ev) = hs.poll_event() {
            let asks_io = matches!(
                ev,
                socks5::Event::Resolve { .. }
                    | socks5::Event::Dial { .. }
                    | socks5::Event::Listen
                    | socks5::Event::BindUdp
            );
            if asks_io && !checked {
                checked = true;
                command = hs.pending_request().map(|(c, _)| c);
                request_rules = policy.dest_rules();
                egress = policy.egress_for(conn.user().map(|u| &u[..]));
                match check_request(
                    shared,
                    &hs,
                    &conn,
                    peer,
                    request_rules.as_deref(),
                    egress.as_ref(),
                ) {
                    Ok(g) => user_guard = g,
                    Err(code) => {
                        hs.refuse_pending(rt.now(), code);
                        continue;
                    }
                }
            }
            match ev {
                socks5::Event::Verify {
                    user,
                    phc,
                    password,
                } => {
                    p.verifying = Some(Box::pin(shared.verify(user, phc, password)));
                }
                socks5::Event::Resolve { host, port } => {
                    // The core asks only for UTF-8 names.
                    let host = String::from_utf8_lossy(&host).into_owned();
                    p.resolving = Some(shared.resolve(host, port));
                }
                socks5::Event::Dial { attempt, addr } => {
                    command = Some(socks5::Command::Connect);
                    tracing::debug!(%peer, %addr, ?attempt, "dialling");
                    let dial: Dialing<'_, R::Socket> = match &egress {
                        None => Box::pin(sio::connect_tcp(rt, addr)),
                        Some((e, dev)) => match e.source_for(addr.ip()) {
                            Ok(src) => {
                                let dev = dev.clone();
                                Box::pin(async move {
                                    sio::connect_tcp_from(rt, addr, src, dev.as_deref()).await
                                })
                            }
                            Err(_) => Box::pin(async {
                                Err(io::Error::from(io::ErrorKind::NetworkUnreachable))
                            }),
                        },
                    };
                    p.dials.push((attempt, dial));
                }
                socks5::Event::CancelDial { attempt } => {
                    p.dials.retain(|(a, _)| *a != attempt);
                    p.connected.retain(|(a, _)| *a != attempt);
                }
                socks5::Event::Listen => {
                    command = Some(socks5::Command::Bind);
                    let r = bind_listener(rt, client).map(|(l, addr)| {
                        p.listener = Some(l);
                        addr
                    });
                    hs.handle_listening(rt.now(), r.map_err(|e| e.kind()));
                    answered = true;
                }
                socks5::Event::BindUdp => {
                    command = Some(socks5::Command::UdpAssociate);
                    let r = bind_udp(client).map(|(u, mut addr)| {
                        p.udp = Some(u);
                        if let Some(ip) = shared.options.udp_advertise {
                            addr.set_ip(ip);
                        }
                        addr
                    });
                    hs.handle_udp_bound(rt.now(), r.map_err(|e| e.kind()));
                    answered = true;
                }
                socks5::Event::Replied { target: t, code } => {
                    if let Some(m) = &shared.metrics {
                        m.replied(command, code);
                        if target.is_none() {
                            m.handshake_latency(rt.now().saturating_duration_since(accepted));
                        }
                    }
                    let user = conn.user().map(|u| &u[..]);
                    shared
                        .log
                        .access(&logfmt::access_line(unix_time(), user, peer, &t, code));
                    target = Some(t);
                }
                socks5::Event::Associated { client: expected } => {
                    if let Some(m) = &shared.metrics {
                        m.connection_opened(socks5::Command::UdpAssociate);
                    }
                    associated = Some(expected);
                }
                socks5::Event::Established { attempt, leftover } => {
                    if let Some(m) = &shared.metrics {
                        m.connection_opened(if attempt.is_some() {
                            socks5::Command::Connect
                        } else {
                            socks5::Command::Bind
                        });
                    }
                    let dest = match attempt {
                        Some(a) => p
                            .connected
                            .iter()
                            .position(|(x, _)| *x == a)
                            .map(|i| p.connected.swap_remove(i).1),
                        None => p.accepted.take(),
                    };
                    established = Some((leftover, dest));
                }
                socks5::Event::Closed { reason } => {
                    tracing::debug!(%peer, ?reason, "SOCKS session closed");
                    // A reply produced while the events were handled (a refusal by the
                    // policy) goes out first.
                    while let Some(b) = hs.poll_transmit() {
                        match race(rt, closed(&conn), None, sio::write_all(client, &b)).await {
                            Raced::Io(Ok(())) => {}
                            _ => return Ok(None),
                        }
                        conn.record_sent(rt.now(), b.len());
                        replied = true;
                    }
                    if replied {
                        sio::close_gracefully(rt, client, rt.now() + LINGER, closed(&conn)).await;
                    }
                    return Ok(None);
                }
                _ => {}
            }
        }
        if let Some(expected) = associated {
            let Some(relay) = p.udp.take() else {
                tracing::error!(%peer, "UDP association without a relay socket");
                return Ok(None);
            };
            drop(p);
            drop(handshake_guard.take());
            // The success reply was produced with this event: it goes out first.
            while let Some(b) = hs.poll_transmit() {
                match race(rt, closed(&conn), None, sio::write_all(client, &b)).await {
                    Raced::Io(r) => r?,
                    _ => return Ok(None),
                }
                conn.record_sent(rt.now(), b.len());
            }
            return udp::associate(shared, &mut hs, &conn, client, peer, relay, expected)
                .await
                .map(|()| None);
        }
        if let Some((leftover, dest)) = established {
            let Some(dest) = dest else {
                // The core named a socket the driver never had: a core bug, not peer input.
                tracing::error!(%peer, "SOCKS handshake established without a destination");
                return Ok(None);
            };
            break 'handshake (leftover, dest);
        }
        if answered {
            continue;
        }
        let deadline = hs.poll_timeout();
        let idle = p.busy() || client_eof;
        let waited = {
            let mut read = pin!(async {
                if idle {
                    std::future::pending().await
                } else {
                    sio::read_buf(client, &mut rbuf, HANDSHAKE_READ).await
                }
            });
            let listener = p.listener.as_ref();
            let mut accept = pin!(async {
                match listener {
                    Some(l) => sio::accept(l).await,
                    None => std::future::pending().await,
                }
            });
            let (resolving, dials) = (&mut p.resolving, &mut p.dials);
            let verifying = &mut p.verifying;
            let step = poll_fn(|cx| {
                if let Some(v) = verifying.as_mut() {
                    if let Poll::Ready(ok) = v.as_mut().poll(cx) {
                        *verifying = None;
                        return Poll::Ready(Step::Verified(ok));
                    }
                }
                if let Some(r) = resolving.as_mut() {
                    if let Poll::Ready(x) = r.as_mut().poll(cx) {
                        *resolving = None;
                        return Poll::Ready(Step::Resolved(x));
                    }
                }
                for i in 0..dials.len() {
                    if let Poll::Ready(x) = dials[i].1.as_mut().poll(cx) {
                        let (a, _) = dials.swap_remove(i);
                        return Poll::Ready(Step::Dialed(a, x));
                    }
                }
                if let Poll::Ready(x) = accept.as_mut().poll(cx) {
                    return Poll::Ready(Step::Accepted(x));
                }
                read.as_mut().poll(cx).map(Step::Read)
            });
            race(rt, closed(&conn), deadline, step).await
        };
        let now = match waited {
            Raced::Close(cause) => {
                hs.handle_close_request(rt.now(), cause);
                continue;
            }
            Raced::Deadline => {
                hs.handle_timeout(rt.now());
                continue;
            }
            Raced::Io(step) => (rt.now(), step),
        };
        match now {
            (now, Step::Read(r)) => match r? {
                0 => {
                    client_eof = true;
                    hs.handle_eof(now);
                }
                n => {
                    conn.record_received(now, n);
                    if std::mem::take(&mut first_read) && looks_like_proxy(&rbuf) {
                        tracing::info!(%peer, "PROXY protocol header from an address not in proxy_protocol.trusted: refused");
                    }
                    hs.handle_input(now, &mut rbuf, &conn);
                }
            },
            (now, Step::Resolved(Ok(mut addrs))) => {
                let denied = hs.pending_request().and_then(|(_, target)| {
                    let user = conn.user().map(|u| &u[..]);
                    let e = egress.as_ref().map(|(e, _)| e);
                    filter_resolved(request_rules.as_deref(), e, user, target, &mut addrs)
                });
                match denied {
                    Some(v) => {
                        denied_by_rule(shared, &conn, peer, &hs, v);
                        hs.refuse_pending(now, ReplyCode::NotAllowed);
                    }
                    None => hs.handle_resolved(now, Ok(addrs)),
                }
            }
            (now, Step::Resolved(Err(e))) => hs.handle_resolved(now, Err(e.kind())),
            (now, Step::Verified(ok)) => {
                hs.handle_verified(now, ok, &conn);
                // A request pipelined after the login waited in the buffer.
                hs.handle_input(now, &mut rbuf, &conn);
            }
            (now, Step::Dialed(a, r)) => {
                let r = r.map(|(sock, local)| {
                    p.connected.push((a, sock));
                    local
                });
                hs.handle_dial_result(now, a, r.map_err(|e| e.kind()));
            }
            (now, Step::Accepted(Ok((sock, from)))) => {
                p.listener = None;
                let _ = sock.set_tcp_nodelay(true);
                match rt.register(sock) {
                    Ok(s) => {
                        p.accepted = Some(s);
                        hs.handle_accepted(now, from);
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "cannot register"),
                }
            }
            (_, Step::Accepted(Err(e))) => {
                tracing::debug!(%peer, error = %e, "BIND accept failed");
            }
        }
    };
    drop(p);
    drop(handshake_guard);
    let Some(target) = target else {
        tracing::error!(%peer, "SOCKS handshake established without a reply");
        return Ok(None);
    };
    let leftover = if rbuf.is_empty() {
        leftover
    } else {
        let mut all = BytesMut::with_capacity(leftover.len() + rbuf.len());
        all.extend_from_slice(&leftover);
        all.extend_from_slice(&rbuf);
        all.freeze()
    };
    Ok(Some(Box::new(Established {
        peer,
        conn,
        dest,
        target,
        leftover,
        client_eof,
        user_guard,
        _ip_guard: ip_guard,
    })))
}

/// Relays an established CONNECT or BIND to its end.
async fn relay_established<R: Runtime>(
    shared: &Shared<R>,
    client: &R::Socket,
    mut e: Box<Established<R::Socket>>,
) -> io::Result<()> {
    // Boxed, and its fields used in place: an async fn's argument is stored twice in its
    // future (the argument and its binding), and moved-out fields would be stored again.
    let rt = &shared.rt;
    let (peer, conn, dest) = (e.peer, &e.conn, &e.dest);
    let target = std::mem::replace(&mut e.target, socks5::TargetAddr::Ip(peer));
    let tap = Tap::new(conn, target, shared.log.clone()).with_metrics(shared.metrics.clone());
    let leftover = std::mem::take(&mut e.leftover);
    if !leftover.is_empty() {
        tap.client_leftover(&leftover);
        let Ok(written) = race_close(closed(conn), sio::write_all(dest, &leftover)).await else {
            return Ok(());
        };
        written?;
        tap.wrote_to(rt.now(), leftover.len(), false);
    }
    drop(leftover);
    if e.client_eof {
        let _ = dest.get().shutdown(std::net::Shutdown::Write);
    }
    let buf_size = shared.state.settings().buffer_size() as usize;
    let now = || rt.now();
    let sleep = |t: std::time::Instant| -> Boxed<'static, ()> { Box::pin(rt.sleep_until(t)) };
    let throttle = e.user_guard.as_ref().map(|g| relay::Throttle {
        upload: g.upload(),
        download: g.download(),
        sleep: &sleep,
        metrics: shared.metrics.as_deref(),
    });
    // Pinned here and lent: an async fn's argument would be stored twice in its future.
    let relay = pin!(relay::relay_throttled(
        client,
        dest,
        &tap,
        buf_size,
        &now,
        throttle.as_ref()
    ));
    // A half-closed relay gone silent is closed by the housekeeping (`sweep_half_closed`),
    // through the same close request: no timer per connection.
    match race_close(closed(conn), relay).await {
        Ok(r) => r,
        Err(cause) => {
            tracing::debug!(%peer, ?cause, "closing relayed connection");
            Ok(())
        }
    }
}

/// The control connection's local address: where BIND listens and the UDP relay binds.
fn local_of<S: Socket>(client: &S) -> io::Result<SocketAddr> {
    listen::local_addr(client.get())
}

/// BIND: listens on a fresh port of the control connection's local address.
fn bind_listener<R: Runtime>(rt: &R, client: &R::Socket) -> io::Result<(R::Socket, SocketAddr)> {
    let mut at = local_of(client)?;
    at.set_port(0);
    let s = socket2::Socket::new(Domain::for_address(at), Type::STREAM.nonblocking(), None)?;
    s.bind(&at.into())?;
    s.listen(1)?;
    let addr = listen::local_addr(&s)?;
    Ok((rt.register(s)?, addr))
}

/// UDP ASSOCIATE: binds a UDP socket on the control connection's local address.
fn bind_udp<S: Socket>(client: &S) -> io::Result<(UdpSocket, SocketAddr)> {
    let mut at = local_of(client)?;
    at.set_port(0);
    let u = UdpSocket::bind(at)?;
    u.set_nonblocking(true)?;
    let addr = u.local_addr()?;
    Ok((u, addr))
}

/// Checks the pending request against the policy: the access rules (the destination as sent;
/// UDP ASSOCIATE by its command), the egress family of an address, the user's connection
/// limit. Returns the user's guard (with a user limit configured), or the refusal's code.
fn check_request<R: Runtime>(
    shared: &Shared<R>,
    hs: &Socks5Handshake,
    conn: &Connection,
    peer: SocketAddr,
    rules: Option<&socks5d_core::policy::Rules>,
    egress: Option<&(Egress, Option<String>)>,
) -> Result<Option<UserGuard>, ReplyCode> {
    let Some((command, target)) = hs.pending_request() else {
        return Ok(None);
    };
    let user = conn.user().map(|u| &u[..]);
    // A name that is an address literal is dialled as that address: checked as one.
    let literal = match target {
        socks5::TargetAddr::Ip(a) => Some(a.ip()),
        socks5::TargetAddr::Domain(name, _) => std::str::from_utf8(name)
            .ok()
            .and_then(|n| n.parse::<std::net::IpAddr>().ok()),
    };
    let verdict = match (command, rules) {
        (Command::UdpAssociate, Some(r)) => r.check_command(user, command),
        (Command::UdpAssociate, None) => allowed(),
        _ => check_dest(rules, user, target, literal, command),
    };
    if !verdict.is_allowed() {
        denied_by_rule(shared, conn, peer, hs, verdict);
        return Err(ReplyCode::NotAllowed);
    }
    if let (Command::Connect, Some((e, _)), Some(ip)) = (command, egress, literal) {
        e.source_for(ip)?;
    }
    let Some(user) = user.filter(|_| shared.policy.user_limits()) else {
        return Ok(None);
    };
    match shared.policy.limits().try_acquire_user(user) {
        Ok(g) => Ok(Some(g)),
        Err(hit) => {
            if let Some(m) = &shared.metrics {
                m.limit_hit(LimitKind::UserConnections);
            }
            tracing::info!(%peer, user = %String::from_utf8_lossy(user), %hit, "request refused by a limit: 0x02");
            Err(hit.reply_code())
        }
    }
}

fn allowed() -> Verdict {
    Verdict {
        action: socks5d_core::policy::Action::Allow,
        by: socks5d_core::policy::DecidedBy::Default,
    }
}

/// Logs and counts a request an access rule denied (its access-log line follows with the
/// reply).
fn denied_by_rule<R: Runtime>(
    shared: &Shared<R>,
    conn: &Connection,
    peer: SocketAddr,
    hs: &Socks5Handshake,
    v: Verdict,
) {
    if let Some(m) = &shared.metrics {
        m.rule_denied();
    }
    let user = conn.user().map(|u| String::from_utf8_lossy(u).into_owned());
    let target = hs.pending_request().map(|(_, t)| t.to_string());
    tracing::info!(%peer, user = user.as_deref().unwrap_or("-"), target = target.as_deref().unwrap_or("-"), by = %v.by, "request denied by an access rule: 0x02");
}

/// Logs (at most once a second) and counts a connection a limit refused on accept.
fn refused_on_accept<R: Runtime>(shared: &Shared<R>, peer: SocketAddr, hit: Hit) {
    if let Some(m) = &shared.metrics {
        m.limit_hit(match hit {
            Hit::IpConnections { .. } => LimitKind::ClientConnections,
            Hit::IpRate { .. } => LimitKind::ClientRate,
            Hit::Handshakes { .. } => LimitKind::Handshakes,
            Hit::UserConnections { .. } => LimitKind::UserConnections,
        });
    }
    if log_now() {
        tracing::info!(%peer, %hit, "connection refused by a limit: closed");
    }
}

/// Tells whether a refusal on accept may be logged now: at most one line a second, so a
/// flood of refused connections does not become a flood of log lines.
fn log_now() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(u64::MAX);
    let now = unix_time().as_secs();
    LAST.swap(now, Ordering::Relaxed) != now
}

/// Tells whether the first bytes of a connection are a PROXY protocol header.
fn looks_like_proxy(b: &[u8]) -> bool {
    b.starts_with(b"PROXY ") || (b.len() >= 6 && V2_SIGNATURE.starts_with(&b[..6]))
}

/// Reads the PROXY protocol header a trusted sender must send first (within the handshake
/// timeout); the bytes after it stay in `rbuf`. Returns the real client (the connection's
/// own peer for a `LOCAL` or `UNKNOWN` header), or `None` when the connection is to be
/// closed (no valid header: logged).
async fn read_proxy_header<R: Runtime>(
    shared: &Shared<R>,
    client: &R::Socket,
    peer: SocketAddr,
    rbuf: &mut BytesMut,
) -> io::Result<Option<SocketAddr>> {
    let rt = &shared.rt;
    let deadline = rt.now() + HandshakeLimits::default().handshake_timeout;
    loop {
        match ProxyHeader::decode(rbuf) {
            Ok(Some(h)) => {
                let real = h.source().unwrap_or(peer);
                tracing::debug!(%peer, client = %real, "PROXY protocol header");
                return Ok(Some(real));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::info!(%peer, error = %e, "no valid PROXY protocol header from a trusted sender: closed");
                return Ok(None);
            }
        }
        let read = sio::read_buf(client, rbuf, PROXY_MAX_LEN);
        match race(rt, std::future::pending::<()>(), Some(deadline), read).await {
            Raced::Io(Ok(0)) => return Ok(None),
            Raced::Io(Ok(_)) => {}
            Raced::Io(Err(e)) => return Err(e),
            Raced::Deadline | Raced::Close(()) => {
                tracing::info!(%peer, "no PROXY protocol header from a trusted sender in time: closed");
                return Ok(None);
            }
        }
    }
}
