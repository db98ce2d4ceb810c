//! The SOCKS5 connection driver: handshake, connect, relay. No protocol decisions are made
//! here.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use socks5d_core::logfmt;
use socks5d_core::socks5::{self, ReplyCode, Socks5Handshake, TargetAddr};
use socks5d_core::state::ConnKind;

use super::{closed, Shared};
use crate::connect::connect_each;
use crate::io::{self as sio, LINGER};
use crate::runtime::{race, Raced, Runtime, Socket};
use crate::{relay, unix_time, Tap};

/// Largest read from the client during the handshake.
const HANDSHAKE_READ: usize = 4096;

type Connecting<S> = Pin<Box<dyn Future<Output = Result<(S, SocketAddr), ReplyCode>> + Send>>;

/// What the handshake loop waited for.
enum Step<S> {
    Read(io::Result<usize>),
    Connected(Result<(S, SocketAddr), ReplyCode>),
}

/// Serves one SOCKS5 client connection to the end: handshake, connect, relay.
///
/// # Errors
///
/// I/O errors on either socket; protocol failures are not errors (the core answers them).
pub async fn serve_socks_connection<R: Runtime>(
    shared: &Shared<R>,
    client: R::Socket,
    peer: SocketAddr,
) -> io::Result<()> {
    let rt = &shared.rt;
    let conn = shared.state.open(ConnKind::Proxy, rt.now());
    let mut hs = Socks5Handshake::new(rt.now());
    let mut rbuf = BytesMut::new();
    let mut connecting: Option<Connecting<R::Socket>> = None;
    let mut dest: Option<R::Socket> = None;
    let mut target: Option<TargetAddr> = None;
    let mut client_eof = false;
    let mut replied = false;
    let leftover: Bytes = 'handshake: loop {
        while let Some(b) = hs.poll_transmit() {
            match race(
                rt,
                closed(&conn),
                hs.poll_timeout(),
                sio::write_all(&client, &b),
            )
            .await
            {
                Raced::Io(r) => r?,
                // A client that does not read a reply of a few bytes: nothing to save.
                Raced::Close(_) | Raced::Deadline => return Ok(()),
            }
            conn.record_sent(rt.now(), b.len());
            replied = true;
        }
        let mut established = None;
        while let Some(ev) = hs.poll_event() {
            match ev {
                socks5::Event::Connect { target: t } => {
                    tracing::debug!(%peer, target = %t, port = t.port(), "connecting");
                    let per_attempt = shared.options.connect_timeout;
                    connecting = Some(Box::pin(connect(rt.clone(), t.clone(), per_attempt)));
                    target = Some(t);
                }
                socks5::Event::Replied { target, code } => {
                    let user = conn.user().map(|u| &u[..]);
                    shared
                        .log
                        .access(&logfmt::access_line(unix_time(), user, peer, &target, code));
                }
                socks5::Event::Established { leftover } => established = Some(leftover),
                socks5::Event::Closed { reason } => {
                    tracing::debug!(%peer, ?reason, "SOCKS handshake closed");
                    if replied {
                        sio::close_gracefully(rt, &client, rt.now() + LINGER, closed(&conn)).await;
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        if let Some(leftover) = established {
            break 'handshake leftover;
        }
        let deadline = hs.poll_timeout();
        if client_eof && connecting.is_none() && deadline.is_none() {
            // Nothing left that could move the handshake on.
            return Ok(());
        }
        let step = async {
            match connecting.as_mut() {
                // While the dial is pending the client is not read: what it sends waits in
                // the kernel (the core keeps what was already read).
                Some(c) => Step::Connected(c.as_mut().await),
                None if client_eof => std::future::pending().await,
                None => Step::Read(sio::read_buf(&client, &mut rbuf, HANDSHAKE_READ).await),
            }
        };
        match race(rt, closed(&conn), deadline, step).await {
            Raced::Close(cause) => {
                tracing::debug!(%peer, ?cause, "closing during the SOCKS handshake");
                return Ok(());
            }
            Raced::Deadline => hs.handle_timeout(rt.now()),
            Raced::Io(Step::Read(r)) => match r? {
                0 => {
                    client_eof = true;
                    hs.handle_eof(rt.now());
                }
                n => {
                    conn.record_received(rt.now(), n);
                    hs.handle_input(rt.now(), &mut rbuf, &conn);
                }
            },
            Raced::Io(Step::Connected(res)) => {
                connecting = None;
                let res = res.map(|(stream, local)| {
                    dest = Some(stream);
                    local
                });
                hs.handle_connect_result(rt.now(), res);
            }
        }
    };
    let (Some(dest), Some(target)) = (dest, target) else {
        // The core reported success without a connection made: a core bug, not peer input.
        tracing::error!(%peer, "SOCKS handshake established without a destination");
        return Ok(());
    };
    let tap = Tap::new(rt.now(), &conn, target, shared.log.clone());
    // Client bytes read with the handshake belong to the destination: what the core gave
    // back, then anything it left unconsumed in the buffer.
    for chunk in [&leftover[..], &rbuf[..]] {
        if chunk.is_empty() {
            continue;
        }
        tap.client_leftover(chunk);
        match race(rt, closed(&conn), None, sio::write_all(&dest, chunk)).await {
            Raced::Io(r) => r?,
            _ => return Ok(()),
        }
        tap.wrote(rt.now(), chunk.len());
    }
    if client_eof {
        let _ = dest.get().shutdown(std::net::Shutdown::Write);
    }
    let buf_size = shared.state.settings().buffer_size() as usize;
    let now = || rt.now();
    let mut relay = pin!(relay::relay(&client, &dest, &tap, buf_size, &now));
    let half_close = shared.options.half_close_timeout;
    loop {
        // Woken once per `half_close` of quiet to look for a half-closed relay gone silent.
        let check = tap.last_active() + half_close;
        match race(rt, closed(&conn), Some(check), relay.as_mut()).await {
            Raced::Io(r) => return r,
            Raced::Close(cause) => {
                tracing::debug!(%peer, ?cause, "closing relayed connection");
                return Ok(());
            }
            Raced::Deadline => {
                if tap.is_half_closed() && rt.now() >= tap.last_active() + half_close {
                    tracing::debug!(%peer, "closing a half-closed relay gone silent");
                    return Ok(());
                }
            }
        }
    }
}

/// Resolves `target` (without blocking the runtime) and tries each address in turn, each
/// attempt limited to `per_attempt` (the policy is `socks5d_net::connect`). Returns the
/// stream and its local address, or the reply code of the last failure.
async fn connect<R: Runtime>(
    rt: R,
    target: TargetAddr,
    per_attempt: Duration,
) -> Result<(R::Socket, SocketAddr), ReplyCode> {
    let resolver = rt.clone();
    connect_each(
        &target,
        move |host, port| async move { resolver.resolve(host, port).await },
        |addr| {
            let rt = rt.clone();
            async move {
                let until = rt.now() + per_attempt;
                let pending = std::future::pending::<()>();
                match race(&rt, pending, Some(until), sio::connect_tcp(&rt, addr)).await {
                    Raced::Io(r) => r,
                    _ => Err(io::ErrorKind::TimedOut.into()),
                }
            }
        },
    )
    .await
}
