//! The admin connection driver, for TCP (byte stream) and SCTP (messages) alike. No protocol
//! decisions are made here.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use socks5d_core::admin::{self, AdminSession, Framing};
use socks5d_core::state::ConnKind;

use super::{closed, Shared};
use crate::io::{self as sio, LINGER};
use crate::runtime::{race, Raced, Runtime};

/// Largest read at once (an SCTP message larger than this arrives in parts).
const READ_MAX: usize = 64 * 1024;

/// Serves one admin connection to the end. `framing` is [`Framing::Message`] for SCTP.
///
/// # Errors
///
/// I/O errors; protocol failures are not errors (the core answers them).
pub async fn serve_admin_connection<R: Runtime>(
    shared: &Shared<R>,
    io: R::Socket,
    peer: SocketAddr,
    framing: Framing,
) -> io::Result<()> {
    let rt = &shared.rt;
    let conn = shared.state.open(ConnKind::Admin, rt.now());
    let mut s = AdminSession::new(rt.now(), shared.options.dialect, framing);
    let mut rbuf = BytesMut::new();
    let mut eof = false;
    // Back-pressure (see the core's admin docs): complete requests left in `rbuf` are served
    // after draining, before reading more.
    let mut retry = false;
    loop {
        while let Some(b) = s.poll_transmit() {
            let send = async {
                match framing {
                    Framing::Stream => sio::write_all(&io, &b).await,
                    Framing::Message => sio::send_msg(&io, &b).await,
                }
            };
            // A peer that does not read must not hold the session: every write races the
            // close request and the deadline.
            match race(rt, closed(&conn), s.poll_timeout(), send).await {
                Raced::Io(r) => r?,
                Raced::Close(cause) => {
                    tracing::debug!(%peer, ?cause, "closing admin connection (blocked on write)");
                    return Ok(());
                }
                Raced::Deadline => return Ok(()),
            }
            conn.touch(rt.now());
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
                    sio::close_gracefully(rt, &io, rt.now() + LINGER, closed(&conn)).await;
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
            s.handle_input(rt.now(), &mut rbuf, &conn);
            retry = !rbuf.is_empty() && rbuf.len() < before;
            continue;
        }
        let recv = async {
            match framing {
                Framing::Stream => sio::read_buf(&io, &mut rbuf, READ_MAX)
                    .await
                    .map(|n| (n, false)),
                Framing::Message => sio::recv_msg(&io, &mut rbuf, READ_MAX)
                    .await
                    .map(|r| (r.len, r.end_of_message)),
            }
        };
        match race(rt, closed(&conn), s.poll_timeout(), recv).await {
            Raced::Close(cause) => {
                tracing::debug!(%peer, ?cause, "closing admin connection");
                sio::close_gracefully(rt, &io, rt.now() + LINGER, closed(&conn)).await;
                return Ok(());
            }
            Raced::Deadline => s.handle_timeout(rt.now()),
            Raced::Io(r) => {
                let (n, end_of_message) = r?;
                if n == 0 {
                    eof = true;
                    s.handle_eof(rt.now());
                } else {
                    conn.touch(rt.now());
                    s.handle_input(rt.now(), &mut rbuf, &conn);
                    if end_of_message {
                        s.handle_end_of_message(rt.now(), &mut rbuf);
                    }
                    retry = !rbuf.is_empty();
                }
            }
        }
    }
}
