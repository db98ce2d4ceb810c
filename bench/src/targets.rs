//! The load generator's own loopback destinations.
//!
//! - echo: the first byte N (1..=255) is a count; the server writes back the next N bytes it
//!   reads, then closes. The destination closes first so that the TIME_WAIT state lands on
//!   the destination's listening port, not on an ephemeral port of the proxy: a proxy that
//!   binds its outgoing sockets before connecting (Dante with `external:`) would otherwise run
//!   out of ephemeral ports after a few thousand short connections.
//! - bulk: the client sends a mode byte and a u64 length (network order). `U`: the client then
//!   uploads that many bytes; once it has them all the server answers with the u64 count it
//!   received. `D`: the server sends that many bytes and closes. No half-close is needed (some
//!   proxies close both directions on the first EOF).
//! - rr (request/response): any number of exchanges on one connection. Each request starts
//!   with two u32 in network order, the request's whole length (at least 8, at most
//!   [`RR_MAX`]) and the length of the response wanted (at most [`RR_MAX`]); the server reads
//!   the rest of the request, then writes the response. At EOF it closes.
//! - udp echo: every datagram is sent back to where it came from, unchanged.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Size of the buffers used to move bulk data.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Largest request or response of the rr destination.
pub(crate) const RR_MAX: u32 = 64 << 20;

async fn bind() -> io::Result<TcpListener> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    sock.bind("127.0.0.1:0".parse().expect("literal address"))?;
    sock.listen(4096)
}

/// Starts an echo server on 127.0.0.1; returns its address.
pub(crate) async fn spawn_echo() -> io::Result<SocketAddr> {
    let l = bind().await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(echo(s));
        }
    });
    Ok(addr)
}

async fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut count = [0u8; 1];
    if s.read_exact(&mut count).await.is_err() {
        return;
    }
    let mut left = usize::from(count[0]);
    let mut buf = [0u8; 256];
    while left > 0 {
        match s.read(&mut buf[..left]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                left -= n;
            }
        }
    }
    let _ = s.shutdown().await;
}

/// Starts the bulk sink/source on 127.0.0.1; returns its address.
pub(crate) async fn spawn_bulk() -> io::Result<SocketAddr> {
    let l = bind().await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = bulk(s).await;
            });
        }
    });
    Ok(addr)
}

async fn bulk(mut s: TcpStream) -> io::Result<()> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await?;
    let len = u64::from_be_bytes(head[1..].try_into().expect("8 bytes"));
    let mut buf = vec![0u8; CHUNK];
    match head[0] {
        b'U' => {
            let mut got = 0u64;
            while got < len {
                let want = (len - got).min(CHUNK as u64) as usize;
                let n = s.read(&mut buf[..want]).await?;
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            s.write_all(&got.to_be_bytes()).await?;
            s.shutdown().await?;
        }
        b'D' => {
            let mut left = len;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                s.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            s.shutdown().await?;
        }
        _ => {}
    }
    Ok(())
}

/// Starts the request/response server on 127.0.0.1; returns its address.
pub(crate) async fn spawn_rr() -> io::Result<SocketAddr> {
    let l = bind().await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = rr(s).await;
            });
        }
    });
    Ok(addr)
}

async fn rr(mut s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let mut head = [0u8; 8];
        match s.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let req = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
        let resp = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
        if !(8..=RR_MAX).contains(&req) || resp > RR_MAX {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad rr header"));
        }
        let mut left = (req - 8) as usize;
        while left > 0 {
            let n = left.min(CHUNK);
            s.read_exact(&mut buf[..n]).await?;
            left -= n;
        }
        let mut left = resp as usize;
        while left > 0 {
            let n = left.min(CHUNK);
            s.write_all(&buf[..n]).await?;
            left -= n;
        }
    }
    s.shutdown().await
}

/// Starts the UDP echo server on 127.0.0.1; returns its address.
pub(crate) async fn spawn_udp_echo() -> io::Result<SocketAddr> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    // Room for every flow's window of datagrams (best effort: capped by net.core.rmem_max).
    let sock = {
        let std = sock.into_std()?;
        let s2 = socket2::SockRef::from(&std);
        let _ = s2.set_recv_buffer_size(4 << 20);
        let _ = s2.set_send_buffer_size(4 << 20);
        tokio::net::UdpSocket::from_std(std)?
    };
    let addr = sock.local_addr()?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            let _ = sock.send_to(&buf[..n], from).await;
        }
    });
    Ok(addr)
}

/// The destinations run in a child process (`socks5d-loadgen serve-targets`), so that the
/// load generator's file-descriptor limit covers only its own client sockets: N idle proxied
/// connections then need N descriptors here and N in the child instead of 2N in one process.
pub(crate) struct Child {
    _child: tokio::process::Child,
    pub(crate) echo: SocketAddr,
    pub(crate) bulk: SocketAddr,
    pub(crate) rr: SocketAddr,
    pub(crate) udp: SocketAddr,
}

/// Starts the child; it exits when its standard input closes (when this process exits) or
/// when the returned handle is dropped.
pub(crate) async fn spawn_child(threads: usize) -> io::Result<Child> {
    use tokio::io::AsyncBufReadExt;
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("serve-targets")
        .arg("--threads")
        .arg(threads.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(out).lines();
    let addr = |want: &str, line: Option<String>| -> io::Result<SocketAddr> {
        line.as_deref()
            .and_then(|l| l.strip_prefix(want))
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("serve-targets did not report {want}")))
    };
    let echo = addr("echo ", lines.next_line().await?)?;
    let bulk = addr("bulk ", lines.next_line().await?)?;
    let rr = addr("rr ", lines.next_line().await?)?;
    let udp = addr("udp ", lines.next_line().await?)?;
    Ok(Child {
        _child: child,
        echo,
        bulk,
        rr,
        udp,
    })
}

/// Body of `serve-targets`: serves until standard input reaches EOF.
pub(crate) async fn serve_until_stdin_closes() -> io::Result<()> {
    // Best effort: the hard limit may not be raisable (no CAP_SYS_RESOURCE).
    let _ = crate::procfs::raise_nofile(1 << 20);
    let echo = spawn_echo().await?;
    let bulk = spawn_bulk().await?;
    let rr = spawn_rr().await?;
    let udp = spawn_udp_echo().await?;
    println!("echo {echo}");
    println!("bulk {bulk}");
    println!("rr {rr}");
    println!("udp {udp}");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
    Ok(())
}
