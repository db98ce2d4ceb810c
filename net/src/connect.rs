//! The CONNECT policy, whatever the runtime: the transport supplies how to resolve a name and
//! how to make one connection attempt; which addresses are tried, in what order, and which
//! reply code a failure becomes are decided here.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use socks5d_core::socks5::{ReplyCode, TargetAddr};

/// Connects to `target`: resolves a name with `resolve` (without blocking the runtime: that
/// is the transport's job), then calls `attempt` on each address in turn until one succeeds
/// (PROTOCOL.md: a name that resolves to several addresses is tried address after address).
/// Returns the first success, or the reply code of the last failure.
///
/// # Errors
///
/// The reply code for the client: `HostUnreachable` for a name that is not UTF-8, does not
/// resolve or resolves to nothing; otherwise mapped from the last attempt's error.
pub async fn connect_each<T, R, RF, A, AF>(
    target: &TargetAddr,
    resolve: R,
    mut attempt: A,
) -> Result<T, ReplyCode>
where
    R: FnOnce(String, u16) -> RF,
    RF: Future<Output = io::Result<Vec<SocketAddr>>>,
    A: FnMut(SocketAddr) -> AF,
    AF: Future<Output = io::Result<T>>,
{
    let addrs: Vec<SocketAddr> = match target {
        TargetAddr::Ip(a) => vec![*a],
        TargetAddr::Domain(name, port) => {
            let Ok(host) = std::str::from_utf8(name) else {
                return Err(ReplyCode::HostUnreachable);
            };
            match resolve(host.to_owned(), *port).await {
                Ok(addrs) => addrs,
                Err(e) => {
                    tracing::debug!(host, error = %e, "name resolution failed");
                    return Err(ReplyCode::HostUnreachable);
                }
            }
        }
    };
    let mut last = ReplyCode::HostUnreachable;
    for addr in addrs {
        match attempt(addr).await {
            Ok(x) => return Ok(x),
            Err(err) => {
                tracing::debug!(%addr, error = %err, "connect attempt failed");
                last = ReplyCode::from_io_error(&err);
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use std::future::ready;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use bytes::Bytes;

    use super::*;

    /// Polls a future that never waits (these tests' resolvers and attempts are ready).
    fn now_or_never<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(x) => x,
            Poll::Pending => panic!("the future waited"),
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tries_each_address_until_one_connects() {
        let target = TargetAddr::Domain(Bytes::from_static(b"example.test"), 80);
        let mut tried = Vec::new();
        let r = now_or_never(connect_each(
            &target,
            |host, port| {
                assert_eq!((host.as_str(), port), ("example.test", 80));
                ready(Ok(vec![
                    addr("10.0.0.1:80"),
                    addr("10.0.0.2:80"),
                    addr("10.0.0.3:80"),
                ]))
            },
            |a| {
                tried.push(a);
                ready(if a == addr("10.0.0.2:80") {
                    Ok(a)
                } else {
                    Err(io::Error::from(io::ErrorKind::ConnectionRefused))
                })
            },
        ));
        assert_eq!(r, Ok(addr("10.0.0.2:80")));
        assert_eq!(tried, [addr("10.0.0.1:80"), addr("10.0.0.2:80")]);
    }

    #[test]
    fn reports_the_last_failure() {
        let target = TargetAddr::Ip(addr("[::1]:9"));
        let r: Result<(), _> = now_or_never(connect_each(
            &target,
            |_, _| -> std::future::Ready<io::Result<Vec<SocketAddr>>> {
                panic!("an address is not resolved")
            },
            |_| ready(Err(io::Error::from(io::ErrorKind::ConnectionRefused))),
        ));
        assert_eq!(r, Err(ReplyCode::ConnectionRefused));
    }

    #[test]
    fn unresolvable_and_non_utf8_names_are_host_unreachable() {
        for (name, resolved) in [
            (&b"nowhere.test"[..], Err(io::Error::other("no such name"))),
            (&b"empty.test"[..], Ok(vec![])),
            (&b"\xff\xfe"[..], Ok(vec![addr("127.0.0.1:1")])),
        ] {
            let target = TargetAddr::Domain(Bytes::copy_from_slice(name), 1);
            let r: Result<(), _> = now_or_never(connect_each(
                &target,
                |_, _| ready(resolved),
                |_| ready(Ok(())),
            ));
            assert_eq!(r, Err(ReplyCode::HostUnreachable), "{name:?}");
        }
    }
}
