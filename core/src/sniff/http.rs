//! HTTP/1.x Basic authentication: `Authorization: Basic base64(user:pass)` in a request,
//! recorded when the response to that request has a 2xx status.
//!
//! Requests and responses are framed as RFC 9112 §6 says (Content-Length, chunked, no body for
//! HEAD, 1xx, 204 and 304 responses), so keep-alive and pipelined exchanges are followed and
//! the n-th final response is matched with the n-th request. Bodies are skipped by length,
//! never scanned. Anything that makes the framing unknowable ends the watch: a response
//! delimited by the connection closing, `CONNECT`, `101 Switching Protocols`, a transfer
//! coding other than chunked, a malformed start line or header.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{base64, starts_with_ci, Dir, Found, Machine, Protocol, Want, MAX_PENDING};
use super::{MAX_LINE, MAX_PENDING_BYTES};

/// Most header lines in one request or response.
const MAX_HEADERS: u32 = 200;

#[derive(Debug, Default)]
pub(super) struct Http {
    req: Framer,
    res: Framer,
    /// The request being read: is it HEAD, and the first Basic credential in it.
    cur_head: bool,
    cur_cred: Option<(Bytes, Bytes)>,
    /// Requests whose headers are complete, waiting for their final response.
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    /// The response being read answers a HEAD request.
    res_head: bool,
    /// The status code of the response being read.
    res_status: u16,
    /// The last credential recorded: a browser repeats it on every request of a keep-alive
    /// connection, and one log line per connection and credential is enough.
    last: Option<(Bytes, Bytes)>,
    done: bool,
}

#[derive(Debug)]
struct Pending {
    head: bool,
    cred: Option<(Bytes, Bytes)>,
}

/// Where one direction is inside a message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a request line or status line.
    #[default]
    Start,
    Headers,
    /// Content-Length body, bytes left.
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
}

/// Message framing of one direction.
#[derive(Debug, Default)]
struct Framer {
    state: State,
    len: Option<u64>,
    chunked: bool,
    /// A Transfer-Encoding we cannot follow.
    other_coding: bool,
    headers: u32,
}

impl Framer {
    fn want(&self) -> Want {
        match self.state {
            State::Body(n) | State::ChunkData(n) => Want::Skip(n),
            _ => Want::Line,
        }
    }

    fn skipped(&mut self, n: u64) {
        match &mut self.state {
            State::Body(left) => {
                *left -= n;
                if *left == 0 {
                    self.state = State::Start;
                }
            }
            State::ChunkData(left) => {
                *left -= n;
                if *left == 0 {
                    self.state = State::ChunkEnd;
                }
            }
            _ => {}
        }
    }

    /// Starts the headers of a new message.
    fn begin(&mut self) {
        *self = Self {
            state: State::Headers,
            ..Self::default()
        };
    }

    /// Handles a line in a chunked body. Returns false if the framing is broken.
    fn body_line(&mut self, line: &[u8], truncated: bool) -> bool {
        match self.state {
            State::ChunkSize => match parse_chunk_size(line) {
                Some(0) => self.state = State::Trailers,
                Some(n) if !truncated => self.state = State::ChunkData(n),
                _ => return false,
            },
            State::ChunkEnd => {
                if !line.is_empty() {
                    return false;
                }
                self.state = State::ChunkSize;
            }
            State::Trailers if line.is_empty() => self.state = State::Start,
            _ => {}
        }
        true
    }

    /// Takes a header line that is not the empty end line. Returns the header name and value
    /// (without surrounding white space), or `None` if the framing is broken.
    fn header<'a>(&mut self, line: &'a [u8], truncated: bool) -> Option<(&'a [u8], &'a [u8])> {
        self.headers += 1;
        if self.headers > MAX_HEADERS {
            return None;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // obs-fold continuation (RFC 9112 §5.2): part of the previous value, ignored.
            return Some((&[], &[]));
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|&b| b <= b' ' || b == 0x7f) {
            return None;
        }
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            if truncated {
                return None;
            }
            let n = parse_decimal(value)?;
            if self.len.is_some_and(|old| old != n) {
                return None;
            }
            self.len = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Only the last coding decides whether the body is chunked.
            let last = value.rsplit(|&b| b == b',').next().map_or(&[][..], trim);
            if last.eq_ignore_ascii_case(b"chunked") {
                self.chunked = true;
                self.other_coding = false;
            } else {
                self.chunked = false;
                self.other_coding = true;
            }
        }
        Some((name, value))
    }

    /// Ends the headers and sets up the body. Returns false if the body's end cannot be known.
    fn end_headers(&mut self, no_body: bool) -> bool {
        if no_body {
            self.state = State::Start;
            return true;
        }
        if self.other_coding {
            return false;
        }
        self.state = if self.chunked {
            State::ChunkSize
        } else {
            match self.len {
                Some(0) | None => State::Start,
                Some(n) => State::Body(n),
            }
        };
        true
    }
}

impl Http {
    fn request_line(&mut self, line: &[u8], truncated: bool) {
        if line.is_empty() {
            // RFC 9112 §2.2: ignore empty lines before a request line.
            return;
        }
        let method = line.split(|&b| b == b' ').next().unwrap_or_default();
        let version_ok =
            !truncated && line.len() >= 9 && line[line.len() - 9..].starts_with(b" HTTP/1.");
        if !version_ok || method == b"CONNECT" || method.is_empty() {
            // An HTTP/2 preface, garbage, or a tunnel whose content we cannot frame.
            self.done = true;
            return;
        }
        self.cur_head = method == b"HEAD";
        self.cur_cred = None;
        self.req.begin();
    }

    fn request_header(&mut self, line: &[u8], truncated: bool) {
        if line.is_empty() {
            self.end_request();
            return;
        }
        let Some((name, value)) = self.req.header(line, truncated) else {
            self.done = true;
            return;
        };
        if !truncated && self.cur_cred.is_none() && name.eq_ignore_ascii_case(b"authorization") {
            self.cur_cred = basic_credential(value);
        }
    }

    fn end_request(&mut self) {
        let cred = self.cur_cred.take();
        let size = cred.as_ref().map_or(0, |(u, p)| u.len() + p.len());
        if self.pending.len() >= MAX_PENDING || self.pending_bytes + size > MAX_PENDING_BYTES {
            self.done = true;
            return;
        }
        self.pending_bytes += size;
        self.pending.push_back(Pending {
            head: self.cur_head,
            cred,
        });
        if !self.req.end_headers(false) {
            self.done = true;
        }
    }

    fn status_line(&mut self, line: &[u8], found: &mut Found) {
        if line.is_empty() {
            // Some servers send a stray CRLF after a body; tolerate it as before a request.
            return;
        }
        // HTTP-version SP 3DIGIT SP reason (the reason may be missing).
        let status = line
            .get(9..12)
            .filter(|_| starts_with_ci(line, b"HTTP/1.") && line[8] == b' ')
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|d| d.iter().fold(0u16, |a, &b| a * 10 + u16::from(b - b'0')));
        let Some(status) = status else {
            self.done = true;
            return;
        };
        if status == 101 {
            // Switching protocols: what follows is no longer HTTP/1.
            self.done = true;
            return;
        }
        self.res.begin();
        self.res_head = false;
        self.res_status = status;
        if status < 200 {
            // Interim response: the final one for the same request comes later.
            return;
        }
        let Some(req) = self.pending.pop_front() else {
            // A response without a request (Want::Stall prevents this).
            self.done = true;
            return;
        };
        self.res_head = req.head;
        if let Some(cred) = req.cred {
            self.pending_bytes -= cred.0.len() + cred.1.len();
            if (200..300).contains(&status) && self.last.as_ref() != Some(&cred) {
                found.push(Protocol::Http, cred.0.clone(), cred.1.clone());
                self.last = Some(cred);
            }
        }
        self.res_status = status;
    }
}

impl Machine for Http {
    fn want(&self, dir: Dir) -> Want {
        match dir {
            Dir::Client => self.req.want(),
            Dir::Server => {
                if self.res.state == State::Start && self.pending.is_empty() {
                    Want::Stall
                } else {
                    self.res.want()
                }
            }
        }
    }

    fn line(&mut self, dir: Dir, line: &[u8], truncated: bool, found: &mut Found) {
        match dir {
            Dir::Client => match self.req.state {
                State::Start => self.request_line(line, truncated),
                State::Headers => self.request_header(line, truncated),
                _ => {
                    if !self.req.body_line(line, truncated) {
                        self.done = true;
                    }
                }
            },
            Dir::Server => match self.res.state {
                State::Start => self.status_line(line, found),
                State::Headers => {
                    if line.is_empty() {
                        let s = self.res_status;
                        let no_body = self.res_head || s < 200 || s == 204 || s == 304;
                        let framed = self.res.end_headers(no_body);
                        // Without Content-Length or chunked the body runs to the end of the
                        // connection: nothing more can be sniffed.
                        if !framed || (!no_body && !self.res.chunked && self.res.len.is_none()) {
                            self.done = true;
                        }
                    } else if self.res.header(line, truncated).is_none() {
                        self.done = true;
                    }
                }
                _ => {
                    if !self.res.body_line(line, truncated) {
                        self.done = true;
                    }
                }
            },
        }
    }

    fn skipped(&mut self, dir: Dir, n: u64) {
        match dir {
            Dir::Client => self.req.skipped(n),
            Dir::Server => self.res.skipped(n),
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

/// Decodes `Basic <token68>` into user and password (split at the first colon, RFC 7617 §2).
fn basic_credential(value: &[u8]) -> Option<(Bytes, Bytes)> {
    let sp = value.iter().position(|&b| b == b' ')?;
    if !value[..sp].eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let token = trim(&value[sp..]);
    if token.is_empty() || token.len() > MAX_LINE {
        return None;
    }
    let plain = base64::decode(token)?;
    let colon = plain.iter().position(|&b| b == b':')?;
    let plain = Bytes::from(plain);
    Some((plain.slice(..colon), plain.slice(colon + 1..)))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |a, &b| a * 10 + u64::from(b - b'0')))
}

/// `chunk-size [ chunk-ext ]`: hex digits, then optional white space and `;` extensions.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let digits = &line[..end];
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let rest = trim(&line[end..]);
    if !(rest.is_empty() || rest[0] == b';') {
        return None;
    }
    digits.iter().try_fold(0u64, |a, &b| {
        let d = char::from(b).to_digit(16)?;
        Some(a * 16 + u64::from(d))
    })
}
