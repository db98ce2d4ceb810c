//! The per-connection loops: bytes, time and close signals in; everything the core sessions
//! ask for out. No protocol decisions are made here.

use std::future::{pending, poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socks5d_core::admin::{self, AdminSession, Framing};
use socks5d_core::logfmt;
use socks5d_core::socks5::{self, ReplyCode, Socks5Handshake, TargetAddr};
use socks5d_core::state::{CloseCause, ConnKind, Connection};
use socks5d_net::connect::connect_each;
use socks5d_net::{unix_time, Tap};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sctp::SctpStream;
use crate::{now, relay, Shared};

/// Largest read from an SCTP socket at once (a message larger than this arrives in parts).
const SCTP_READ: usize = 64 * 1024;

/// Sleeps until `deadline`, forever if there is none.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => pending().await,
    }
}

/// Awaits `f` if there is one, forever otherwise.
async fn maybe<F: Future + Unpin>(f: Option<&mut F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => pending().await,
    }
}

/// Waits until the shared state asks `conn` to close.
fn closed(conn: &Connection) -> impl Future<Output = CloseCause> + '_ {
    poll_fn(|cx| conn.poll_closed(cx))
}

type Connecting = Pin<Box<dyn Future<Output = Result<(TcpStream, SocketAddr), ReplyCode>> + Send>>;

/// Serves one SOCKS5 client connection to the end: handshake, connect, relay.
///
/// # Errors
///
/// I/O errors on either socket; protocol failures are not errors (the core answers them).
pub async fn serve_socks_connection<S>(
    client: S,
    peer: SocketAddr,
    shared: &Shared,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn = shared.state.open(ConnKind::Proxy, now());
    let mut client = client;
    let mut hs = Socks5Handshake::new(now());
    let mut rbuf = BytesMut::with_capacity(1024);
    let mut connecting: Option<Connecting> = None;
    let mut dest: Option<TcpStream> = None;
    let mut target: Option<TargetAddr> = None;
    let mut client_eof = false;
    let leftover: Bytes = 'handshake: loop {
        while let Some(b) = hs.poll_transmit() {
            client.write_all(&b).await?;
            conn.record_sent(now(), b.len());
        }
        let mut established = None;
        while let Some(ev) = hs.poll_event() {
            match ev {
                socks5::Event::Connect { target: t } => {
                    tracing::debug!(%peer, target = %t, port = t.port(), "connecting");
                    connecting = Some(Box::pin(connect(t.clone(), shared.options.connect_timeout)));
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
                    let _ = client.shutdown().await;
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
        tokio::select! {
            r = client.read_buf(&mut rbuf), if connecting.is_none() && !client_eof => {
                let n = r?;
                if n == 0 {
                    client_eof = true;
                    hs.handle_eof(now());
                } else {
                    conn.record_received(now(), n);
                    hs.handle_input(now(), &mut rbuf, &conn);
                }
            }
            res = maybe(connecting.as_mut()) => {
                connecting = None;
                let res = res.map(|(stream, local)| {
                    dest = Some(stream);
                    local
                });
                hs.handle_connect_result(now(), res);
            }
            () = sleep_until_opt(deadline) => hs.handle_timeout(now()),
            cause = closed(&conn) => {
                tracing::debug!(%peer, ?cause, "closing during the SOCKS handshake");
                return Ok(());
            }
        }
    };
    let (Some(mut dest), Some(target)) = (dest, target) else {
        // The core reported success without a connection made: a core bug, not peer input.
        tracing::error!(%peer, "SOCKS handshake established without a destination");
        return Ok(());
    };
    let tap = Tap::new(&conn, target, shared.log.clone());
    // Client bytes read with the handshake belong to the destination: what the core gave
    // back, then anything it left unconsumed in the buffer.
    for chunk in [&leftover[..], &rbuf[..]] {
        if !chunk.is_empty() {
            tap.client_leftover(chunk);
            dest.write_all(chunk).await?;
            tap.wrote(now(), chunk.len());
        }
    }
    if client_eof {
        let _ = dest.shutdown().await;
    }
    let buf_size = shared.state.settings().buffer_size() as usize;
    tokio::select! {
        r = relay::relay(&mut client, &mut dest, &tap, buf_size) => r,
        cause = closed(&conn) => {
            tracing::debug!(%peer, ?cause, "closing relayed connection");
            Ok(())
        }
    }
}

/// Resolves `target` (without blocking the runtime) and tries each address in turn, each
/// attempt limited to `per_attempt` (the policy is `socks5d_net::connect`). Returns the
/// stream and its local address, or the reply code of the last failure.
async fn connect(
    target: TargetAddr,
    per_attempt: Duration,
) -> Result<(TcpStream, SocketAddr), ReplyCode> {
    let resolve = |host: String, port| async move {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    };
    connect_each(&target, resolve, |addr| async move {
        let stream = tokio::time::timeout(per_attempt, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        let local = stream.local_addr()?;
        let _ = stream.set_nodelay(true);
        Ok((stream, local))
    })
    .await
}

/// An admin connection's socket: a byte stream (TCP) or SCTP with message boundaries.
#[derive(Debug)]
pub enum AdminIo<S> {
    /// A byte stream: [`Framing::Stream`].
    Stream(S),
    /// SCTP: [`Framing::Message`].
    Sctp(SctpStream),
}

impl<S: AsyncRead + AsyncWrite + Unpin> AdminIo<S> {
    fn framing(&self) -> Framing {
        match self {
            Self::Stream(_) => Framing::Stream,
            Self::Sctp(_) => Framing::Message,
        }
    }

    /// Reads into `buf`; returns the count (0 at end of stream) and whether it ends a
    /// message. Cancel-safe.
    async fn recv(&mut self, buf: &mut BytesMut) -> io::Result<(usize, bool)> {
        match self {
            Self::Stream(s) => Ok((s.read_buf(buf).await?, false)),
            Self::Sctp(s) => {
                let r = s.recv_msg(buf, SCTP_READ).await?;
                Ok((r.len, r.end_of_message))
            }
        }
    }

    async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Stream(s) => s.write_all(data).await,
            Self::Sctp(s) => s.send_msg(data).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Stream(s) => s.shutdown().await,
            Self::Sctp(s) => s.shutdown_write(),
        }
    }
}

/// Serves one admin connection to the end.
///
/// # Errors
///
/// I/O errors; protocol failures are not errors (the core answers them).
pub async fn serve_admin_connection<S>(
    mut io: AdminIo<S>,
    peer: SocketAddr,
    shared: &Shared,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let conn = shared.state.open(ConnKind::Admin, now());
    let mut s = AdminSession::new(now(), shared.options.dialect, io.framing());
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut eof = false;
    // Back-pressure (see the core's admin docs): complete requests left in `rbuf` are served
    // after draining, before reading more.
    let mut retry = false;
    loop {
        while let Some(b) = s.poll_transmit() {
            io.send(&b).await?;
            conn.touch(now());
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                admin::Event::Authenticated { user } => {
                    tracing::info!(%peer, user = %String::from_utf8_lossy(&user), "administrator authenticated");
                }
                admin::Event::Applied(m) => {
                    let actor = conn.user().map(|u| String::from_utf8_lossy(u).into_owned());
                    // `Mutation`'s Debug never shows a password.
                    tracing::info!(%peer, actor = actor.as_deref().unwrap_or("-"), mutation = ?m, "admin change applied");
                }
                admin::Event::Closed { reason } => {
                    tracing::debug!(%peer, ?reason, "admin session closed");
                    let _ = io.shutdown().await;
                    return Ok(());
                }
                _ => {}
            }
        }
        if eof {
            // The session had its chance to answer the end of stream.
            return Ok(());
        }
        if retry {
            let before = rbuf.len();
            s.handle_input(now(), &mut rbuf, &conn);
            retry = !rbuf.is_empty() && rbuf.len() < before;
            continue;
        }
        let deadline = s.poll_timeout();
        tokio::select! {
            r = io.recv(&mut rbuf) => {
                let (n, end_of_message) = r?;
                if n == 0 {
                    eof = true;
                    s.handle_eof(now());
                } else {
                    conn.touch(now());
                    s.handle_input(now(), &mut rbuf, &conn);
                    if end_of_message {
                        s.handle_end_of_message(now(), &mut rbuf);
                    }
                    retry = !rbuf.is_empty();
                }
            }
            () = sleep_until_opt(deadline) => s.handle_timeout(now()),
            cause = closed(&conn) => {
                tracing::debug!(%peer, ?cause, "closing admin connection");
                let _ = io.shutdown().await;
                return Ok(());
            }
        }
    }
}
