//! UDP relay: datagrams per second and MiB/s of `payload`-byte datagrams echoed by the UDP
//! echo destination, first direct, then through the proxy's UDP ASSOCIATE relay.
//!
//! Each of `flows` flows has its own socket (and, proxied, its own association with its own
//! control connection) and keeps `window` datagrams in flight: every echo that comes back lets
//! one more go. UDP may drop datagrams (a full socket buffer, a relay that gives up): when no
//! echo arrives for `loss_timeout`, the datagrams in flight are counted as lost, a new epoch
//! starts and a fresh window is sent. Echoes of an earlier epoch that arrive after that are
//! counted as late, not as received. Every payload carries its epoch and sequence number, so a
//! corrupted, duplicated or misaddressed datagram is counted as bad, never as received.
//!
//! Proxied datagrams carry the RFC 1928 §7 header ([`socks5d_core::udp::Header`]) to the
//! relay with the echo destination as DST, and the reply's header must name the destination
//! as its source.
//!
//! The rates count echoed datagrams, so each counted datagram crossed the relay twice (once
//! each way); MiB/s counts each payload once.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use socks5d_core::socks5::TargetAddr;
use socks5d_core::udp::Header;
use tokio::net::{TcpStream, UdpSocket};

use crate::{procfs, socks, Server};

/// Settings of one UDP run.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) flows: usize,
    /// DATA bytes per datagram (at least [`SEQ_LEN`]).
    pub(crate) payload: usize,
    /// Datagrams in flight per flow.
    pub(crate) window: usize,
    pub(crate) duration: Duration,
    pub(crate) loss_timeout: Duration,
}

/// One arm (direct or proxied) of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Arm {
    pub(crate) sent: u64,
    /// Sends refused with `ENOBUFS`.
    pub(crate) unsent: u64,
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) late: u64,
    pub(crate) bad: u64,
    pub(crate) seconds: f64,
    pub(crate) datagrams_per_sec: f64,
    pub(crate) mib_per_sec: f64,
}

/// Result of one UDP run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) flows: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) window: usize,
    pub(crate) direct: Arm,
    pub(crate) proxied: Option<Arm>,
    /// Proxied datagrams/s / direct datagrams/s.
    pub(crate) ratio: Option<f64>,
    /// Server CPU (whole process tree) per proxied datagram echoed.
    pub(crate) server_cpu_us_per_datagram: Option<f64>,
    pub(crate) server_user_share: Option<f64>,
    pub(crate) error: Option<String>,
}

/// Bytes of the epoch and sequence number at the front of each payload.
pub(crate) const SEQ_LEN: usize = 12;

/// How a flow frames its datagrams.
#[derive(Clone)]
enum Framing {
    /// Payload only, to the destination itself.
    Direct,
    /// The SOCKS5 UDP header naming the destination, then the payload.
    Socks { dst: SocketAddr },
}

impl Framing {
    fn encode(&self, payload: &[u8], out: &mut BytesMut) {
        out.clear();
        if let Self::Socks { dst } = self {
            Header::new(TargetAddr::Ip(*dst)).encode(out);
        }
        out.put_slice(payload);
    }

    /// The payload of a datagram received from the relay (or the destination); `None` if it
    /// is not a well-formed echo.
    fn decode(&self, datagram: Bytes) -> Option<Bytes> {
        match self {
            Self::Direct => Some(datagram),
            Self::Socks { dst } => {
                let (h, data) = Header::decode(&datagram).ok()?;
                (h.frag == 0 && h.addr == TargetAddr::Ip(*dst)).then_some(data)
            }
        }
    }
}

fn payload(epoch: u32, seq: u64, len: usize) -> Vec<u8> {
    let mut p = vec![b'u'; len];
    p[..4].copy_from_slice(&epoch.to_be_bytes());
    p[4..12].copy_from_slice(&seq.to_be_bytes());
    p
}

/// One flow on a connected socket. Runs until `deadline`; returns its counts (seconds left
/// zero).
async fn flow(sock: UdpSocket, framing: Framing, p: Params, deadline: Instant) -> io::Result<Arm> {
    let mut a = Arm::default();
    let mut epoch = 0u32;
    let mut seq = 0u64;
    // Sequence numbers in flight, oldest first: echoes come back in order unless dropped.
    let mut in_flight: VecDeque<u64> = VecDeque::with_capacity(p.window);
    let mut out = BytesMut::with_capacity(Header::MAX_LEN + p.payload);
    let mut buf = vec![0u8; 65_536];
    'run: loop {
        // (Re)fill the window.
        while in_flight.len() < p.window && Instant::now() < deadline {
            framing.encode(&payload(epoch, seq, p.payload), &mut out);
            match sock.send(&out).await {
                Ok(_) => {
                    a.sent += 1;
                    in_flight.push_back(seq);
                    seq += 1;
                }
                // The kernel had no buffer for it: not sent; try again after the next echo or
                // the next timeout.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    a.unsent += 1;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if in_flight.is_empty() {
            if Instant::now() >= deadline {
                break;
            }
            // Nothing could be sent (ENOBUFS): give the kernel a moment.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let wait = p
            .loss_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let n = match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => {
                if Instant::now() >= deadline {
                    // Whatever is still in flight at the end is neither counted nor lost.
                    break 'run;
                }
                a.lost += in_flight.len() as u64;
                in_flight.clear();
                epoch += 1;
                continue;
            }
        };
        let Some(data) = framing.decode(Bytes::copy_from_slice(&buf[..n])) else {
            a.bad += 1;
            continue;
        };
        if data.len() != p.payload || data[SEQ_LEN..].iter().any(|b| *b != b'u') {
            a.bad += 1;
            continue;
        }
        let e = u32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
        let s = u64::from_be_bytes(data[4..12].try_into().expect("8 bytes"));
        if e != epoch {
            a.late += 1;
            continue;
        }
        // Datagrams before `s` in the window were dropped (loopback keeps the order).
        match in_flight.iter().position(|x| *x == s) {
            Some(i) => {
                a.lost += i as u64;
                in_flight.drain(..=i);
                a.received += 1;
            }
            // Sent before but no longer in flight: reordered or duplicated (already counted
            // as lost, if it was).
            None if s < seq => a.late += 1,
            None => a.bad += 1, // a sequence number never sent
        }
        if Instant::now() >= deadline && in_flight.is_empty() {
            break;
        }
    }
    Ok(a)
}

async fn arm(sockets: Vec<(UdpSocket, Framing)>, p: &Params) -> io::Result<(Arm, Duration)> {
    let t0 = Instant::now();
    let deadline = t0 + p.duration;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|(s, f)| tokio::spawn(flow(s, f, p.clone(), deadline)))
        .collect();
    let mut total = Arm::default();
    for t in tasks {
        let a = t.await.map_err(io::Error::other)??;
        total.sent += a.sent;
        total.unsent += a.unsent;
        total.received += a.received;
        total.lost += a.lost;
        total.late += a.late;
        total.bad += a.bad;
    }
    let d = t0.elapsed();
    total.seconds = d.as_secs_f64();
    total.datagrams_per_sec = total.received as f64 / total.seconds;
    total.mib_per_sec =
        (total.received * p.payload as u64) as f64 / total.seconds / (1024.0 * 1024.0);
    Ok((total, d))
}

async fn socket() -> io::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0").await?;
    let std = s.into_std()?;
    let r = socket2::SockRef::from(&std);
    let _ = r.set_recv_buffer_size(1 << 20);
    let _ = r.set_send_buffer_size(1 << 20);
    UdpSocket::from_std(std)
}

/// Opens one association per flow. Returns the sockets (connected to their relays) and the
/// control connections, which must outlive the run.
async fn associate(
    server: &Server,
    echo: SocketAddr,
    flows: usize,
) -> io::Result<(Vec<(UdpSocket, Framing)>, Vec<TcpStream>)> {
    let mut socks_ = Vec::with_capacity(flows);
    let mut controls = Vec::with_capacity(flows);
    for _ in 0..flows {
        let s = socket().await?;
        let (ctl, relay) =
            socks::udp_associate(server.proxy, server.creds.as_ref(), s.local_addr()?).await?;
        crate::check_loopback(relay, "the UDP relay").map_err(io::Error::other)?;
        s.connect(relay).await?;
        socks_.push((s, Framing::Socks { dst: echo }));
        controls.push(ctl);
    }
    Ok((socks_, controls))
}

/// Direct first, then proxied.
pub(crate) async fn run(server: &Server, echo: SocketAddr, p: &Params) -> io::Result<Report> {
    let mut direct = Vec::with_capacity(p.flows);
    for _ in 0..p.flows {
        let s = socket().await?;
        s.connect(echo).await?;
        direct.push((s, Framing::Direct));
    }
    let (direct, _) = arm(direct, p).await?;
    let mut report = Report {
        flows: p.flows,
        payload_bytes: p.payload,
        window: p.window,
        direct,
        proxied: None,
        ratio: None,
        server_cpu_us_per_datagram: None,
        server_user_share: None,
        error: None,
    };
    let setup = tokio::time::timeout(Duration::from_secs(10), associate(server, echo, p.flows));
    let (sockets, controls) = match setup.await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            report.error = Some(format!("UDP ASSOCIATE: {e}"));
            return Ok(report);
        }
        Err(_) => {
            report.error = Some("UDP ASSOCIATE timed out".into());
            return Ok(report);
        }
    };
    let cpu0 = server.pid.and_then(|pid| procfs::cpu_ticks(pid).ok());
    let r = arm(sockets, p).await;
    let cpu1 = server.pid.and_then(|pid| procfs::cpu_ticks(pid).ok());
    drop(controls);
    match r {
        Ok((a, _)) => {
            if a.received == 0 {
                report.error = Some(format!(
                    "no datagram came back through the relay ({} sent)",
                    a.sent
                ));
            }
            report.ratio = (report.direct.datagrams_per_sec > 0.0)
                .then(|| a.datagrams_per_sec / report.direct.datagrams_per_sec);
            if let (Some(c0), Some(c1)) = (cpu0, cpu1) {
                let cpu = c1.since(c0);
                report.server_user_share = cpu.user_share();
                report.server_cpu_us_per_datagram =
                    (a.received > 0).then(|| cpu.seconds() * 1e6 / a.received as f64);
            }
            report.proxied = Some(a);
        }
        Err(e) => report.error = Some(format!("proxied: {e}")),
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socks_framing_round_trip_and_rejections() {
        let dst: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let f = Framing::Socks { dst };
        let mut out = BytesMut::new();
        f.encode(b"hello", &mut out);
        assert_eq!(&out[..10], &[0, 0, 0, 1, 127, 0, 0, 1, 0x0f, 0xa0]);
        assert_eq!(
            f.decode(out.clone().freeze()).as_deref(),
            Some(&b"hello"[..])
        );
        // From another source: not an echo of ours.
        let other = Framing::Socks {
            dst: "127.0.0.1:4001".parse().unwrap(),
        };
        assert_eq!(other.decode(out.clone().freeze()), None);
        // A fragment, a truncated header.
        let mut frag = out.clone();
        frag[2] = 1;
        assert_eq!(f.decode(frag.freeze()), None);
        assert_eq!(f.decode(out.freeze().slice(..6)), None);
    }

    /// Direct to the echo destination: every datagram comes back, none lost or bad.
    #[tokio::test]
    async fn direct_flow_counts_echoes() {
        let echo = crate::targets::spawn_udp_echo().await.unwrap();
        let s = socket().await.unwrap();
        s.connect(echo).await.unwrap();
        let p = Params {
            flows: 1,
            payload: 1200,
            window: 8,
            duration: Duration::from_millis(300),
            loss_timeout: Duration::from_secs(2),
        };
        let a = flow(s, Framing::Direct, p.clone(), Instant::now() + p.duration)
            .await
            .unwrap();
        assert!(a.received > 0, "{a:?}");
        assert_eq!(a.bad, 0, "{a:?}");
        assert_eq!(a.lost + a.late, 0, "{a:?}");
        assert!(a.received <= a.sent && a.sent - a.received <= 8, "{a:?}");
    }

    /// A peer that answers with garbage: nothing counts as received.
    #[tokio::test]
    async fn garbage_is_not_received() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let peer_addr = peer.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 2048];
            while let Ok((n, from)) = peer.recv_from(&mut b).await {
                b[n - 1] ^= 0xff; // corrupt the last payload byte
                let _ = peer.send_to(&b[..n], from).await;
            }
        });
        let s = socket().await.unwrap();
        s.connect(peer_addr).await.unwrap();
        let p = Params {
            flows: 1,
            payload: 100,
            window: 4,
            duration: Duration::from_millis(300),
            loss_timeout: Duration::from_millis(50),
        };
        let a = flow(s, Framing::Direct, p.clone(), Instant::now() + p.duration)
            .await
            .unwrap();
        assert_eq!(a.received, 0, "{a:?}");
        assert!(a.bad > 0 && a.lost > 0, "{a:?}");
    }
}
