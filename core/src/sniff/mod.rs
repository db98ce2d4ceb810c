//! Credential sniffers ("password spoofing") over both directions of a relayed stream.
//!
//! A [`Sniffer`] is fed every byte the client sends ([`Sniffer::on_client`]) and every byte the
//! destination sends back ([`Sniffer::on_server`]). It only reads those slices: the relayed data
//! is never changed, delayed or copied, except for the few bytes of an unfinished line.
//!
//! # How it works
//!
//! 1. **Detection.** Until a protocol is known, each direction's first bytes are kept (at most
//!    [`MAX_UNDETECTED`] bytes per direction) and its first line is classified: a client request
//!    line ending in ` HTTP/1.x` means HTTP; a server greeting `+OK` means POP3, `220` FTP (but
//!    not SMTP), `* OK` IMAP. The destination port is only a hint (it rules out SMTP on the mail
//!    submission ports). A control byte before the first line ends (a TLS ClientHello starts
//!    `16 03`), an unknown server greeting, or [`MAX_UNDETECTED`] bytes without a verdict make
//!    the sniffer give up.
//! 2. **Per-protocol machines** (`http`, `pop3`, `ftp`, `imap`) consume lines and skip bodies by
//!    length. Server replies are matched with client commands in order; a reply that arrives
//!    before the command it answers (the transport fed the directions out of order) is held back
//!    (at most [`MAX_STASH`] bytes) until the command is seen, so the credentials found do not
//!    depend on how the streams were split or interleaved.
//! 3. **Credentials** are queued only when the server accepts them (HTTP 2xx, POP3 `+OK`, FTP
//!    `230`, IMAP tagged `OK`).
//!
//! Memory per connection is bounded: one line buffer per direction (at most [`MAX_LINE`] + 1 or
//! [`MAX_STASH`] bytes), a few pending commands, and at most [`MAX_QUEUED`] credentials not yet
//! polled. Once [`Sniffer::is_done`] is true every further call returns at once.

use std::collections::VecDeque;

use bytes::Bytes;

mod base64;
mod ftp;
mod http;
mod imap;
mod pop3;
#[cfg(test)]
mod tests;

/// Longest line (without its line ending) a machine looks at, in bytes. Longer lines are seen
/// truncated to this length and flagged as truncated (their content is never captured).
pub const MAX_LINE: usize = 1024;
/// Most bytes kept per direction before the protocol is known.
pub const MAX_UNDETECTED: usize = 2048;
/// Most bytes of server data held back while waiting for the client command they answer.
pub const MAX_STASH: usize = 2048;
/// Most credentials kept until [`Sniffer::poll_credential`] takes them; later ones are dropped.
pub const MAX_QUEUED: usize = 8;
/// Most client commands (or HTTP requests) waiting for their reply.
pub const MAX_PENDING: usize = 16;
/// Most bytes of captured usernames and passwords waiting for their reply.
pub const MAX_PENDING_BYTES: usize = 2048;
/// For the line protocols (POP3, FTP, IMAP): bytes per direction after which the sniffer gives
/// up if no login succeeded (a login normally takes a few hundred).
pub const MAX_LOGIN_BYTES: u64 = 4096;

/// The protocol a credential was seen in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP Basic authentication.
    Http,
    /// POP3 USER/PASS.
    Pop3,
    /// FTP USER/PASS.
    Ftp,
    /// IMAP LOGIN.
    Imap,
}

impl Protocol {
    /// Returns the name used in the credentials log (`HTTP`, `POP3`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Pop3 => "POP3",
            Self::Ftp => "FTP",
            Self::Imap => "IMAP",
        }
    }
}

/// A credential seen in clear text and accepted by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Where it was seen.
    pub protocol: Protocol,
    /// The captured username.
    pub user: Bytes,
    /// The captured password.
    pub password: Bytes,
}

/// Watches one relayed connection, both directions, with bounded memory.
///
/// Feed it with [`on_client`](Self::on_client) and [`on_server`](Self::on_server), then drain
/// [`poll_credential`](Self::poll_credential). When [`is_done`](Self::is_done) turns true the
/// transport may stop feeding it (after draining the credentials still queued).
#[derive(Debug)]
pub struct Sniffer {
    port: u16,
    proto: Proto,
    client: Side,
    server: Side,
    found: Found,
}

#[derive(Debug)]
enum Proto {
    Undetected,
    Http(http::Http),
    Pop3(pop3::Pop3),
    Ftp(ftp::Ftp),
    Imap(imap::Imap),
    Done,
}

impl Sniffer {
    /// Creates a sniffer for a connection to destination port `port` (a hint only).
    pub fn new(port: u16) -> Self {
        Self {
            port,
            proto: Proto::Undetected,
            client: Side::default(),
            server: Side::default(),
            found: Found::default(),
        }
    }

    /// Inspects bytes the client sent to the destination.
    pub fn on_client(&mut self, data: &[u8]) {
        self.feed(Dir::Client, data);
    }

    /// Inspects bytes the destination sent to the client.
    pub fn on_server(&mut self, data: &[u8]) {
        self.feed(Dir::Server, data);
    }

    /// Returns the next credential found.
    #[must_use]
    pub fn poll_credential(&mut self) -> Option<Credential> {
        self.found.q.pop_front()
    }

    /// Returns whether the sniffer has given up on this connection (the transport may stop
    /// feeding it, e.g. to switch to a zero-copy relay). Credentials found before may still be
    /// waiting in [`poll_credential`](Self::poll_credential).
    pub fn is_done(&self) -> bool {
        matches!(self.proto, Proto::Done)
    }

    fn feed(&mut self, dir: Dir, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        match self.proto {
            Proto::Done => {}
            Proto::Undetected => self.feed_undetected(dir, data),
            _ => self.pump_settled(dir, data),
        }
    }

    /// Pumps `data` and settles. While the other direction is held back waiting for this one,
    /// `data` goes one line at a time, so that held-back replies are matched as each command
    /// is seen, as they would be had `data` arrived in smaller pieces (else a large write of
    /// pipelined commands could pass the pending-command bound first).
    fn pump_settled(&mut self, dir: Dir, mut data: &[u8]) {
        loop {
            let other_stalled = match dir {
                Dir::Client => self.server.stalled,
                Dir::Server => self.client.stalled,
            };
            let cut = match find_lf(data) {
                Some(pos) if other_stalled => pos + 1,
                _ => data.len(),
            };
            self.pump(dir, &data[..cut]);
            self.settle();
            data = &data[cut..];
            if data.is_empty() || self.proto.machine().is_none() {
                return;
            }
        }
    }

    /// Pumps `data` through the machine for `dir`; gives up if the side overflows.
    fn pump(&mut self, dir: Dir, data: &[u8]) {
        let Self {
            proto,
            client,
            server,
            found,
            ..
        } = self;
        let Some(m) = proto.machine() else { return };
        let side = match dir {
            Dir::Client => client,
            Dir::Server => server,
        };
        let ok = side.pump(m, dir, data, found);
        if !ok || m.is_done() {
            self.give_up();
        }
    }

    /// Resumes a direction held back while waiting for the other one, until neither moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for dir in [Dir::Server, Dir::Client] {
                let Some(m) = self.proto.machine() else {
                    return;
                };
                let side = match dir {
                    Dir::Client => &self.client,
                    Dir::Server => &self.server,
                };
                if side.stalled && !matches!(m.want(dir), Want::Stall) {
                    self.pump(dir, &[]);
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn give_up(&mut self) {
        self.proto = Proto::Done;
        // Release the line buffers: nothing will be parsed any more.
        self.client = Side::default();
        self.server = Side::default();
    }

    fn feed_undetected(&mut self, dir: Dir, data: &[u8]) {
        let side = match dir {
            Dir::Client => &mut self.client,
            Dir::Server => &mut self.server,
        };
        let room = MAX_UNDETECTED - side.buf.len();
        let taken = data.len().min(room);
        let before = side.buf.len();
        side.buf.extend_from_slice(&data[..taken]);
        let verdict = classify(dir, &side.buf, before, self.port);
        match verdict {
            Class::NeedMore | Class::Wait if taken < data.len() => self.give_up(),
            Class::NeedMore | Class::Wait => {}
            Class::GiveUp => self.give_up(),
            Class::Is(p) => {
                self.proto = match p {
                    Protocol::Http => Proto::Http(http::Http::default()),
                    Protocol::Pop3 => Proto::Pop3(pop3::Pop3::default()),
                    Protocol::Ftp => Proto::Ftp(ftp::Ftp::default()),
                    Protocol::Imap => Proto::Imap(imap::Imap::default()),
                };
                // Replay what both directions sent so far, client first (IMAP matches replies
                // by tag and needs the command first), then the rest of this chunk.
                for d in [Dir::Client, Dir::Server] {
                    let side = match d {
                        Dir::Client => &mut self.client,
                        Dir::Server => &mut self.server,
                    };
                    let kept = std::mem::take(&mut side.buf);
                    self.pump_settled(d, &kept);
                }
                if taken < data.len() {
                    self.feed(dir, &data[taken..]);
                }
            }
        }
    }

    /// Returns the bytes held in line buffers (for the memory-bound tests).
    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.client.buf.capacity() + self.server.buf.capacity()
    }
}

impl Proto {
    fn machine(&mut self) -> Option<&mut dyn Machine> {
        match self {
            Self::Http(m) => Some(m),
            Self::Pop3(m) => Some(m),
            Self::Ftp(m) => Some(m),
            Self::Imap(m) => Some(m),
            Self::Undetected | Self::Done => None,
        }
    }
}

/// A verdict on the first bytes of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The first line is not complete yet and nothing rules it out.
    NeedMore,
    /// Text that does not name a protocol (e.g. a POP3 client's `USER` before the greeting):
    /// keep it and let the other direction decide.
    Wait,
    /// The protocol is known.
    Is(Protocol),
    /// Binary, TLS, or a server speaking a protocol we do not sniff.
    GiveUp,
}

/// Classifies the first line of `buf`; bytes before `scanned` were already checked.
fn classify(dir: Dir, buf: &[u8], scanned: usize, port: u16) -> Class {
    let line_end = find_lf(buf);
    let first = &buf[..line_end.unwrap_or(buf.len())];
    // Only bytes of the first line matter; those before `scanned` were looked at already.
    if scanned <= first.len() && first[scanned..].iter().any(|&b| is_binary(b)) {
        return Class::GiveUp;
    }
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    match dir {
        Dir::Client => match line_end {
            None => Class::NeedMore,
            Some(_) if is_http_request_line(first) => Class::Is(Protocol::Http),
            // The HTTP/2 connection preface: binary frames follow.
            Some(_) if first == b"PRI * HTTP/2.0" => Class::GiveUp,
            Some(_) => Class::Wait,
        },
        Dir::Server => {
            const GREETINGS: [&[u8]; 5] = [b"+OK", b"220", b"* OK", b"* PREAUTH", b"HTTP/1."];
            let plausible = GREETINGS.iter().any(|g| {
                let n = g.len().min(first.len());
                first[..n].eq_ignore_ascii_case(&g[..n])
            });
            if !plausible {
                return Class::GiveUp;
            }
            if line_end.is_none() {
                return Class::NeedMore;
            }
            if starts_with_ci(first, b"+OK") {
                Class::Is(Protocol::Pop3)
            } else if first.starts_with(b"220") && matches!(first.get(3), None | Some(b' ' | b'-'))
            {
                // SMTP greets with 220 too, and has no USER/PASS.
                const SMTP_PORTS: [u16; 4] = [25, 465, 587, 2525];
                if SMTP_PORTS.contains(&port) || contains_ci(first, b"SMTP") {
                    Class::GiveUp
                } else {
                    Class::Is(Protocol::Ftp)
                }
            } else if starts_with_ci(first, b"* OK") {
                Class::Is(Protocol::Imap)
            } else if starts_with_ci(first, b"HTTP/1.") {
                // A response seen before its request (directions fed out of order).
                Class::Is(Protocol::Http)
            } else {
                // `* PREAUTH`: already logged in, no credentials will pass.
                Class::GiveUp
            }
        }
    }
}

/// Returns whether `b` cannot appear in the text protocols we sniff (before the first line
/// ends). TLS records start with 0x14..=0x17, SSH and most binary protocols with other
/// control bytes.
fn is_binary(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\r') || b == 0x7f
}

/// `METHOD SP target SP HTTP/1.x`, METHOD an upper-case token.
fn is_http_request_line(line: &[u8]) -> bool {
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let method = &line[..sp];
    !method.is_empty()
        && method.len() <= 16
        && method.iter().all(|b| b.is_ascii_uppercase() || *b == b'-')
        && line.len() >= 9
        && line[line.len() - 9..].starts_with(b" HTTP/1.")
        && line[line.len() - 1].is_ascii_digit()
}

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// Client to destination.
    Client,
    /// Destination to client.
    Server,
}

/// What a machine wants next from one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A complete line.
    Line,
    /// To pass over this many bytes unseen (a body or literal); never 0.
    Skip(u64),
    /// Nothing yet: the other direction must move first.
    Stall,
}

/// One protocol's parser for both directions.
trait Machine: std::fmt::Debug {
    fn want(&self, dir: Dir) -> Want;
    /// Takes one line without its line ending. `truncated`: the line was longer than
    /// [`MAX_LINE`] and this is its start.
    fn line(&mut self, dir: Dir, line: &[u8], truncated: bool, found: &mut Found);
    /// Reports that `n` bytes of a [`Want::Skip`] went by.
    fn skipped(&mut self, dir: Dir, n: u64);
    fn is_done(&self) -> bool;
    /// Bytes per direction after which to give up.
    fn limit(&self) -> u64 {
        u64::MAX
    }
}

/// The credentials found and not yet polled.
#[derive(Debug, Default)]
struct Found {
    q: VecDeque<Credential>,
}

impl Found {
    fn push(&mut self, protocol: Protocol, user: Bytes, password: Bytes) {
        if self.q.len() < MAX_QUEUED {
            self.q.push_back(Credential {
                protocol,
                user,
                password,
            });
        }
    }
}

/// The buffered state of one direction.
#[derive(Debug, Default)]
struct Side {
    /// Before detection: the first bytes. After: the start of an unfinished line, or (when
    /// `stalled`) raw bytes not processed yet.
    buf: Vec<u8>,
    /// The unfinished line in `buf` lost bytes past [`MAX_LINE`] + 1.
    dropped: bool,
    /// `buf` holds raw bytes waiting for the machine to stop stalling.
    stalled: bool,
    /// Bytes this direction handed to the machine (lines, line endings, skipped bytes).
    consumed: u64,
}

impl Side {
    /// Runs `input` through `m`. Returns false when a bound was hit and the sniffer must give
    /// up.
    fn pump(&mut self, m: &mut dyn Machine, dir: Dir, mut input: &[u8], found: &mut Found) -> bool {
        if self.stalled {
            if m.want(dir) == Want::Stall {
                return self.stash(input);
            }
            self.stalled = false;
            let held = std::mem::take(&mut self.buf);
            if !self.pump(m, dir, &held, found) {
                return false;
            }
            if self.stalled {
                return self.stash(input);
            }
        }
        let limit = m.limit();
        loop {
            if input.is_empty() || m.is_done() {
                return true;
            }
            match m.want(dir) {
                Want::Stall => {
                    debug_assert!(self.buf.is_empty(), "stall requested mid-line");
                    self.stalled = true;
                    return self.stash(input);
                }
                Want::Skip(0) => {
                    // A machine bug; stop rather than spin.
                    debug_assert!(false, "Want::Skip(0)");
                    return false;
                }
                Want::Skip(n) => {
                    let k = usize::try_from(n).map_or(input.len(), |n| n.min(input.len()));
                    self.consumed += k as u64;
                    if self.consumed > limit {
                        return false;
                    }
                    m.skipped(dir, k as u64);
                    input = &input[k..];
                }
                Want::Line => {
                    let Some(pos) = find_lf(input) else {
                        self.consumed += input.len() as u64;
                        self.push_partial(input);
                        return self.consumed <= limit;
                    };
                    self.consumed += pos as u64 + 1;
                    if self.consumed > limit {
                        return false;
                    }
                    if self.buf.is_empty() && !self.dropped {
                        deliver(m, dir, &input[..pos], false, found);
                    } else {
                        self.push_partial(&input[..pos]);
                        let line = std::mem::take(&mut self.buf);
                        deliver(m, dir, &line, self.dropped, found);
                        self.buf = line;
                        self.buf.clear();
                        self.dropped = false;
                    }
                    input = &input[pos + 1..];
                }
            }
        }
    }

    /// Appends to the unfinished line, keeping at most [`MAX_LINE`] + 1 bytes (the + 1 tells a
    /// line of exactly [`MAX_LINE`] bytes and its CR from a longer one).
    fn push_partial(&mut self, part: &[u8]) {
        let room = (MAX_LINE + 1).saturating_sub(self.buf.len());
        if part.len() > room {
            self.buf.extend_from_slice(&part[..room]);
            self.dropped = true;
        } else {
            self.buf.extend_from_slice(part);
        }
    }

    /// Holds raw bytes while stalled; false when that would pass [`MAX_STASH`].
    fn stash(&mut self, input: &[u8]) -> bool {
        if self.buf.len() + input.len() > MAX_STASH {
            return false;
        }
        self.buf.extend_from_slice(input);
        true
    }
}

/// Hands a complete line (without LF) to the machine, without its CR, cut to [`MAX_LINE`].
fn deliver(m: &mut dyn Machine, dir: Dir, raw: &[u8], dropped: bool, found: &mut Found) {
    let line = if dropped {
        raw
    } else {
        raw.strip_suffix(b"\r").unwrap_or(raw)
    };
    if dropped || line.len() > MAX_LINE {
        m.line(dir, &line[..MAX_LINE.min(line.len())], true, found);
    } else {
        m.line(dir, line, false, found);
    }
}

/// Returns the position of the first `\n`, eight bytes at a time.
fn find_lf(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = LO * b'\n' as u64;
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ LF;
        if (w.wrapping_sub(LO) & !w & HI) != 0 {
            // The first flagged byte is exact for the lowest match (little-endian order).
            return c.iter().position(|&b| b == b'\n').map(|p| at + p);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| at + p)
}

/// ASCII case-insensitive `starts_with`.
fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// ASCII case-insensitive substring test.
fn contains_ci(s: &[u8], needle: &[u8]) -> bool {
    s.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Splits a command line into its first word and the rest after one space (`None` if there is
/// no space).
fn split_word(line: &[u8]) -> (&[u8], Option<&[u8]>) {
    match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    }
}
