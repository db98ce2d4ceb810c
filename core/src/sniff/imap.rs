//! IMAP `tag LOGIN user password` (RFC 9051 §6.2.3), recorded on the tagged `OK` answering it.
//!
//! User and password may be atoms or quoted strings. Literals (`{n}`) are followed (skipped by
//! length) in both directions so the framing holds, but a LOGIN that sends its arguments as
//! literals is not captured. Replies are matched by tag, so the client's command must be fed
//! before the server's answer (a transport that inspects before forwarding does this). A
//! successful LOGIN, AUTHENTICATE or STARTTLS, or a `* PREAUTH` greeting, ends the watch.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{split_word, starts_with_ci, Dir, Found, Machine, Protocol, Want};
use super::{MAX_LOGIN_BYTES, MAX_PENDING, MAX_PENDING_BYTES};

#[derive(Debug, Default)]
pub(super) struct Imap {
    greeted: bool,
    pending: VecDeque<Tagged>,
    pending_bytes: usize,
    /// Literal bytes still to pass by, per direction.
    client_skip: u64,
    server_skip: u64,
    /// The next client line continues a command that had a literal.
    client_cont: bool,
    done: bool,
}

#[derive(Debug)]
struct Tagged {
    tag: Bytes,
    /// `Some` for LOGIN; `None` for commands that end the watch on `OK`.
    login: Option<(Bytes, Bytes)>,
}

impl Tagged {
    fn size(&self) -> usize {
        self.tag.len() + self.login.as_ref().map_or(0, |(u, p)| u.len() + p.len())
    }
}

impl Imap {
    fn command(&mut self, line: &[u8], truncated: bool) {
        let literal = literal_at_end(line);
        if truncated {
            // Cannot see whether the line ends with a literal: framing lost.
            self.done = true;
            return;
        }
        let cont = std::mem::replace(&mut self.client_cont, literal.is_some());
        if let Some(n) = literal {
            self.client_skip = n;
        }
        if cont || literal.is_some() {
            return;
        }
        let (tag, rest) = split_word(line);
        let Some(rest) = rest else { return };
        let (cmd, args) = split_word(rest);
        let tagged = if cmd.eq_ignore_ascii_case(b"LOGIN") {
            let Some((user, pass)) = args.and_then(login_args) else {
                return;
            };
            Tagged {
                tag: Bytes::copy_from_slice(tag),
                login: Some((user, pass)),
            }
        } else if cmd.eq_ignore_ascii_case(b"STARTTLS") || cmd.eq_ignore_ascii_case(b"AUTHENTICATE")
        {
            Tagged {
                tag: Bytes::copy_from_slice(tag),
                login: None,
            }
        } else {
            return;
        };
        if self.pending.len() >= MAX_PENDING
            || self.pending_bytes + tagged.size() > MAX_PENDING_BYTES
        {
            self.done = true;
            return;
        }
        self.pending_bytes += tagged.size();
        self.pending.push_back(tagged);
    }

    fn response(&mut self, line: &[u8], truncated: bool, found: &mut Found) {
        if truncated {
            self.done = true;
            return;
        }
        if let Some(n) = literal_at_end(line) {
            self.server_skip = n;
        }
        if !self.greeted {
            self.greeted = true;
            self.done = !starts_with_ci(line, b"* OK");
            return;
        }
        let (tag, Some(rest)) = split_word(line) else {
            return;
        };
        if tag == b"*" || tag == b"+" {
            return;
        }
        let Some(i) = self.pending.iter().position(|t| t.tag == tag) else {
            return;
        };
        let Some(t) = self.pending.remove(i) else {
            return;
        };
        self.pending_bytes -= t.size();
        let (status, _) = split_word(rest);
        if status.eq_ignore_ascii_case(b"OK") {
            if let Some((user, pass)) = t.login {
                found.push(Protocol::Imap, user, pass);
            }
            self.done = true;
        }
    }
}

impl Machine for Imap {
    fn want(&self, dir: Dir) -> Want {
        let skip = match dir {
            Dir::Client => self.client_skip,
            Dir::Server => self.server_skip,
        };
        if skip > 0 {
            Want::Skip(skip)
        } else {
            Want::Line
        }
    }

    fn line(&mut self, dir: Dir, line: &[u8], truncated: bool, found: &mut Found) {
        match dir {
            Dir::Client => self.command(line, truncated),
            Dir::Server => self.response(line, truncated, found),
        }
    }

    fn skipped(&mut self, dir: Dir, n: u64) {
        match dir {
            Dir::Client => self.client_skip -= n,
            Dir::Server => self.server_skip -= n,
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn limit(&self) -> u64 {
        MAX_LOGIN_BYTES
    }
}

/// Returns `n` if the line ends with a literal marker `{n}` or `{n+}`.
fn literal_at_end(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |a, &b| a * 10 + u64::from(b - b'0')),
    )
}

/// `userid SP password`, each an atom or a quoted string, and nothing after.
fn login_args(args: &[u8]) -> Option<(Bytes, Bytes)> {
    let (user, rest) = astring(args)?;
    let rest = rest.strip_prefix(b" ")?;
    let (pass, rest) = astring(rest)?;
    rest.is_empty().then_some((user, pass))
}

/// Parses an atom (ASTRING-CHAR+) or a quoted string at the start of `s`.
fn astring(s: &[u8]) -> Option<(Bytes, &[u8])> {
    if let Some(body) = s.strip_prefix(b"\"") {
        let mut out = Vec::new();
        let mut i = 0;
        while i < body.len() {
            match body[i] {
                b'"' => return Some((Bytes::from(out), &body[i + 1..])),
                b'\\' => {
                    let &c = body.get(i + 1)?;
                    if c != b'"' && c != b'\\' {
                        return None;
                    }
                    out.push(c);
                    i += 2;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        return None;
    }
    let end = s
        .iter()
        .position(|&b| b <= b' ' || b == 0x7f || b"(){%*\"\\".contains(&b))
        .unwrap_or(s.len());
    (end > 0).then(|| (Bytes::copy_from_slice(&s[..end]), &s[end..]))
}
