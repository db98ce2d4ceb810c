//! A minimal SOCKS5 client (RFC 1928 CONNECT, RFC 1929 username/password) in raw bytes, one
//! step per round trip (no pipelining, so every server is measured on the same exchange).

use std::io;
use std::net::SocketAddr;

use socks5d_core::socks5::TargetAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Username and password for RFC 1929.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) user: Vec<u8>,
    pub(crate) pass: Vec<u8>,
}

impl std::str::FromStr for Credentials {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (u, p) = s.split_once(':').ok_or("expected USER:PASS")?;
        if u.is_empty() || u.len() > 255 || p.is_empty() || p.len() > 255 {
            return Err("USER and PASS must be 1..=255 bytes".into());
        }
        Ok(Self {
            user: u.as_bytes().to_vec(),
            pass: p.as_bytes().to_vec(),
        })
    }
}

fn proto(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Connects to `proxy`, authenticates and asks for a CONNECT to `target`. Returns the stream,
/// ready to relay.
pub(crate) async fn connect(
    proxy: SocketAddr,
    creds: Option<&Credentials>,
    target: SocketAddr,
) -> io::Result<TcpStream> {
    connect_to(proxy, creds, &TargetAddr::Ip(target)).await
}

/// [`connect`] to an address or a name.
pub(crate) async fn connect_to(
    proxy: SocketAddr,
    creds: Option<&Credentials>,
    target: &TargetAddr,
) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    authenticate(&mut s, creds).await?;
    request(&mut s, CMD_CONNECT, target).await?;
    Ok(s)
}

/// CMD of CONNECT.
const CMD_CONNECT: u8 = 0x01;
/// CMD of UDP ASSOCIATE.
const CMD_UDP_ASSOCIATE: u8 = 0x03;

/// Opens a UDP association: connects to `proxy`, authenticates and sends UDP ASSOCIATE with
/// `client` (the address the client will send its datagrams from) as DST. Returns the
/// control connection, which must stay open for as long as the association is used, and the
/// relay's address. An unspecified BND.ADDR (some servers answer `0.0.0.0`) is read as the
/// proxy's own address, as clients commonly do.
pub(crate) async fn udp_associate(
    proxy: SocketAddr,
    creds: Option<&Credentials>,
    client: SocketAddr,
) -> io::Result<(TcpStream, SocketAddr)> {
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    authenticate(&mut s, creds).await?;
    let mut relay = request(&mut s, CMD_UDP_ASSOCIATE, &TargetAddr::Ip(client)).await?;
    if relay.ip().is_unspecified() {
        relay.set_ip(proxy.ip());
    }
    Ok((s, relay))
}

/// Method negotiation, then RFC 1929 if `creds` is given.
async fn authenticate(s: &mut TcpStream, creds: Option<&Credentials>) -> io::Result<()> {
    if login(s, creds).await? {
        Ok(())
    } else {
        Err(proto("authentication failed"))
    }
}

/// Method negotiation, then RFC 1929 if `creds` is given: whether the server accepted.
pub(crate) async fn login(s: &mut TcpStream, creds: Option<&Credentials>) -> io::Result<bool> {
    let method = if creds.is_some() { 0x02 } else { 0x00 };
    s.write_all(&[0x05, 0x01, method]).await?;
    let mut sel = [0u8; 2];
    s.read_exact(&mut sel).await?;
    if sel != [0x05, method] {
        return Err(proto("method not accepted"));
    }
    let Some(c) = creds else {
        return Ok(true);
    };
    let mut req = Vec::with_capacity(3 + c.user.len() + c.pass.len());
    req.push(0x01);
    req.push(c.user.len() as u8);
    req.extend_from_slice(&c.user);
    req.push(c.pass.len() as u8);
    req.extend_from_slice(&c.pass);
    s.write_all(&req).await?;
    let mut rep = [0u8; 2];
    s.read_exact(&mut rep).await?;
    // RFC 1929 says VER 0x01; some servers answer 0x05. Only the status matters here.
    Ok(rep[1] == 0x00)
}

/// Sends a request and reads its reply; returns BND (a domain name in BND reads as
/// `0.0.0.0` with BND.PORT).
async fn request(s: &mut TcpStream, cmd: u8, target: &TargetAddr) -> io::Result<SocketAddr> {
    if let TargetAddr::Domain(name, _) = target {
        if !(1..=255).contains(&name.len()) {
            return Err(proto("a target name is 1 to 255 bytes"));
        }
    }
    let mut req = Vec::with_capacity(22);
    req.extend_from_slice(&[0x05, cmd, 0x00]);
    target.encode(&mut req);
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 0x05 || head[1] != 0x00 {
        return Err(proto(&format!(
            "{} refused (reply {:#04x})",
            if cmd == CMD_CONNECT {
                "CONNECT"
            } else {
                "UDP ASSOCIATE"
            },
            head[1]
        )));
    }
    let mut rest = [0u8; 258];
    let bound = match head[3] {
        0x01 => {
            s.read_exact(&mut rest[..6]).await?;
            let ip: [u8; 4] = rest[..4].try_into().expect("4 bytes");
            SocketAddr::from((ip, u16::from_be_bytes([rest[4], rest[5]])))
        }
        0x04 => {
            s.read_exact(&mut rest[..18]).await?;
            let ip: [u8; 16] = rest[..16].try_into().expect("16 bytes");
            SocketAddr::from((ip, u16::from_be_bytes([rest[16], rest[17]])))
        }
        0x03 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await?;
            let n = usize::from(l[0]) + 2;
            s.read_exact(&mut rest[..n]).await?;
            SocketAddr::from(([0, 0, 0, 0], u16::from_be_bytes([rest[n - 2], rest[n - 1]])))
        }
        _ => return Err(proto("bad address type in reply")),
    };
    Ok(bound)
}
