//! The admin connection driver, for TCP (byte stream) and SCTP (messages) alike. No protocol
//! decisions are made here: the session answers, the state checks and applies, the guard
//! types of `socks5d-core` decide admission and login back-off; this file moves bytes, time,
//! close requests and results between them.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::task::Poll;

use bytes::BytesMut;
use socks5d_core::admin::{self, AdminSession, Framing};
use socks5d_core::guard::{Slot, ThrottleKey, Ticket};
use socks5d_core::state::{CloseCause, ConnKind, Connection};

use super::{closed, Shared};
use crate::io::{self as sio, LINGER};
use crate::runtime::{race, Raced, Runtime};

/// Largest read at once (an SCTP message larger than this arrives in parts).
const READ_MAX: usize = 64 * 1024;

/// Why an admin connection must stop: the state asked, or (before authentication) the
/// admission pool gave its place to a newer connection.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Close(CloseCause),
    Evicted,
}

/// Waits for the close request of `conn` or, while `ticket` is held, its eviction.
fn stop<'a>(conn: &'a Connection, ticket: Option<&'a Ticket>) -> impl Future<Output = Stop> + 'a {
    poll_fn(move |cx| {
        if let Poll::Ready(c) = conn.poll_closed(cx) {
            return Poll::Ready(Stop::Close(c));
        }
        match ticket {
            Some(t) if t.poll_evicted(cx).is_ready() => Poll::Ready(Stop::Evicted),
            _ => Poll::Pending,
        }
    })
}

/// Serves one admin connection to the end. `framing` is [`Framing::Message`] for SCTP.
///
/// Until it authenticates, the connection holds a place in the server's admission pool
/// (`Shared::admin_pool`; the oldest is closed when a new one needs the place); then it takes
/// a permit of the authenticated limit, or is closed if every permit is taken. Its login
/// reply is delayed by the login throttle after failures from the same address.
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
    let ticket = admit(shared, peer);
    serve_admitted(shared, io, peer, framing, ticket).await
}

/// Takes `peer`'s place in the admission pool, closing the oldest unauthenticated connection
/// of the busiest source if the pool is full. The accept loop calls it as it accepts, so that
/// "oldest" follows the order of arrival whatever order the connections' tasks first run in.
pub(super) fn admit<R: Runtime>(shared: &Shared<R>, peer: SocketAddr) -> Ticket {
    let (ticket, evicted) = shared.admin_pool.admit_from(shared.rt.now(), peer.ip());
    if let Some(e) = evicted {
        tracing::debug!(
            id = e.id,
            "admin admission pool full: closing the oldest unauthenticated connection"
        );
    }
    ticket
}

/// [`serve_admin_connection`] of a connection already admitted with `ticket`.
pub(super) async fn serve_admitted<R: Runtime>(
    shared: &Shared<R>,
    io: R::Socket,
    peer: SocketAddr,
    framing: Framing,
    ticket: Ticket,
) -> io::Result<()> {
    let rt = &shared.rt;
    let start = rt.now();
    let mut ticket = Some(ticket);
    // The authenticated limit's permit, held while the session lives.
    let mut _permit = None;
    let conn = shared.state.open(ConnKind::Admin, start);
    let auth_timeout = shared.state.settings().auth_timeout();
    let auth_deadline = start + auth_timeout;
    let mut s = AdminSession::new(start, shared.options.dialect, framing, auth_timeout);
    let mut rbuf = BytesMut::new();
    let mut events = VecDeque::new();
    loop {
        // The login verdict is taken before its reply is written: the throttle fixes when the
        // reply may go out (it does not depend on the verdict), and a success needs a permit.
        events.extend(std::iter::from_fn(|| s.poll_event()));
        let login = events.iter().find_map(|e| match e {
            admin::Event::Authenticated { .. } => Some(true),
            admin::Event::AuthFailed { .. } => Some(false),
            _ => None,
        });
        if let Some(ok) = login {
            let key = ThrottleKey::Admin(peer.ip());
            let at = match shared
                .admin_throttle
                .begin_attempt(rt.now(), key, auth_deadline)
            {
                Slot::Refused(_) => {
                    tracing::debug!(%peer, "admin login refused by the back-off: closing");
                    return Ok(());
                }
                Slot::Now => None,
                Slot::At(t) => Some(t),
            };
            if ok {
                let _ = shared.admin_throttle.record_success(key);
                match shared.admin_sessions.try_acquire_arc() {
                    Some(p) => _permit = Some(p),
                    None => {
                        tracing::warn!(%peer, limit = shared.options.max_admin_connections, "administrator logged in, but every admin session slot is taken: closing");
                        return Ok(());
                    }
                }
                ticket = None;
            } else {
                let user = events.iter().find_map(|e| match e {
                    admin::Event::AuthFailed { user } => Some(String::from_utf8_lossy(user)),
                    _ => None,
                });
                let note = shared.admin_throttle.record_failure(rt.now(), key);
                if note.log {
                    tracing::warn!(%peer, user = user.as_deref().unwrap_or(""), failures = note.failures, suppressed = note.suppressed, "admin login failed");
                }
            }
            if let Some(t) = at {
                let pending = std::future::pending::<()>();
                if let Raced::Close(_) =
                    race(rt, stop(&conn, ticket.as_ref()), Some(t), pending).await
                {
                    return Ok(());
                }
            }
        }
        while let Some(b) = s.poll_transmit() {
            let send = async {
                match framing {
                    Framing::Stream => sio::write_all(&io, &b).await,
                    Framing::Message => sio::send_msg(&io, &b).await,
                }
            };
            // A peer that does not read must not hold the session: every write races the
            // close request and the deadline; a blocked write cannot be saved, so it is cut.
            match race(rt, stop(&conn, ticket.as_ref()), s.poll_timeout(), send).await {
                Raced::Io(r) => r?,
                Raced::Close(why) => {
                    tracing::debug!(%peer, ?why, "closing admin connection (blocked on write)");
                    return Ok(());
                }
                Raced::Deadline => return Ok(()),
            }
            conn.touch(rt.now());
        }
        events.extend(std::iter::from_fn(|| s.poll_event()));
        let mut answered = false;
        while let Some(ev) = events.pop_front() {
            match ev {
                admin::Event::Authenticated { user } => {
                    tracing::info!(%peer, user = %String::from_utf8_lossy(&user), "administrator authenticated");
                }
                admin::Event::Verify {
                    user,
                    phc,
                    password,
                } => {
                    let verify = shared.verify(user, phc, password);
                    match race(rt, stop(&conn, ticket.as_ref()), s.poll_timeout(), verify).await {
                        Raced::Io(ok) => s.handle_verified(rt.now(), ok, &conn),
                        Raced::Close(_) => return Ok(()),
                        Raced::Deadline => s.handle_timeout(rt.now()),
                    }
                    answered = true;
                }
                admin::Event::Apply(m) => {
                    let outcome = shared.modify(conn.user().cloned(), m).await;
                    s.handle_apply_result(rt.now(), outcome, &conn);
                    answered = true;
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
        if answered {
            // The modification's status (and what it held back) is ready to be written.
            continue;
        }
        if !s.wants_input() {
            s.handle_continue(rt.now(), &conn);
            continue;
        }
        let recv = async {
            rbuf.clear();
            match framing {
                Framing::Stream => sio::read_buf(&io, &mut rbuf, READ_MAX)
                    .await
                    .map(|n| (n, false)),
                Framing::Message => sio::recv_msg(&io, &mut rbuf, READ_MAX)
                    .await
                    .map(|r| (r.len, r.end_of_message)),
            }
        };
        match race(rt, stop(&conn, ticket.as_ref()), s.poll_timeout(), recv).await {
            Raced::Close(Stop::Close(cause)) => s.handle_close_request(rt.now(), cause),
            Raced::Close(Stop::Evicted) => {
                tracing::debug!(%peer, "evicted from the admission pool before logging in");
                return Ok(());
            }
            Raced::Deadline => s.handle_timeout(rt.now()),
            Raced::Io(r) => {
                let (n, end_of_message) = r?;
                let now = rt.now();
                match (n, framing) {
                    (0, _) => s.handle_eof(now),
                    (_, Framing::Stream) => s.handle_input(now, &rbuf, &conn),
                    (_, Framing::Message) => s.handle_message(now, &rbuf, end_of_message, &conn),
                }
            }
        }
    }
}
