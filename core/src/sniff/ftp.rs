//! FTP `USER`/`PASS` (RFC 959 §4.1.1), recorded when the server answers `PASS` with 230 (or
//! 202, "superfluous").
//!
//! Replies are matched with commands in order after the 220 greeting; preliminary 1xx
//! replies do not answer a command; multi-line replies (`ddd-` ... `ddd `) count once. A
//! successful login or `AUTH TLS` (234) ends the watch.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{split_word, Dir, Found, Machine, Protocol, Want};
use super::{MAX_LOGIN_BYTES, MAX_PENDING, MAX_PENDING_BYTES};

#[derive(Debug, Default)]
pub(super) struct Ftp {
    greeted: bool,
    /// Inside a multi-line reply with this code.
    multi: Option<[u8; 3]>,
    cmds: VecDeque<Cmd>,
    cmd_bytes: usize,
    /// The user name the server asked a password for (331).
    user: Option<Bytes>,
    done: bool,
}

#[derive(Debug)]
enum Cmd {
    User(Bytes),
    Pass(Bytes),
    AuthTls,
    Other,
}

impl Ftp {
    fn command(&mut self, line: &[u8], truncated: bool) {
        let (word, arg) = split_word(line);
        let arg = arg.filter(|a| !a.is_empty() && !truncated);
        let cmd = match arg {
            Some(a) if word.eq_ignore_ascii_case(b"USER") => Cmd::User(Bytes::copy_from_slice(a)),
            Some(a) if word.eq_ignore_ascii_case(b"PASS") => Cmd::Pass(Bytes::copy_from_slice(a)),
            _ if word.eq_ignore_ascii_case(b"AUTH") => Cmd::AuthTls,
            _ => Cmd::Other,
        };
        let size = match &cmd {
            Cmd::User(b) | Cmd::Pass(b) => b.len(),
            _ => 0,
        };
        if self.cmds.len() >= MAX_PENDING || self.cmd_bytes + size > MAX_PENDING_BYTES {
            self.done = true;
            return;
        }
        self.cmd_bytes += size;
        self.cmds.push_back(cmd);
    }

    fn reply_line(&mut self, line: &[u8], found: &mut Found) {
        let code: Option<[u8; 3]> = line
            .get(..3)
            .filter(|c| c.iter().all(u8::is_ascii_digit))
            .map(|c| [c[0], c[1], c[2]]);
        if let Some(m) = self.multi {
            // Lines inside a multi-line reply are free text; only `ddd ` ends it.
            if code == Some(m) && matches!(line.get(3), None | Some(b' ')) {
                self.multi = None;
                self.reply(m, found);
            }
            return;
        }
        let Some(code) = code else {
            self.done = true;
            return;
        };
        match line.get(3) {
            Some(b'-') => self.multi = Some(code),
            None | Some(b' ') => self.reply(code, found),
            Some(_) => self.done = true,
        }
    }

    fn reply(&mut self, code: [u8; 3], found: &mut Found) {
        if code[0] == b'1' {
            return;
        }
        if !self.greeted {
            self.greeted = true;
            self.done = code[0] != b'2';
            return;
        }
        let Some(cmd) = self.cmds.pop_front() else {
            self.done = true;
            return;
        };
        match cmd {
            Cmd::User(u) => {
                self.cmd_bytes -= u.len();
                match &code {
                    b"331" | b"332" => self.user = Some(u),
                    // Logged in without a password.
                    b"230" => self.done = true,
                    _ => self.user = None,
                }
            }
            Cmd::Pass(p) => {
                self.cmd_bytes -= p.len();
                match (&code, self.user.take()) {
                    (b"230" | b"202", Some(u)) => {
                        found.push(Protocol::Ftp, u, p);
                        self.done = true;
                    }
                    (b"230" | b"202", None) => self.done = true,
                    _ => {}
                }
            }
            Cmd::AuthTls => self.done = code == *b"234",
            Cmd::Other => {}
        }
    }
}

impl Machine for Ftp {
    fn want(&self, dir: Dir) -> Want {
        match dir {
            Dir::Server if self.greeted && self.multi.is_none() && self.cmds.is_empty() => {
                Want::Stall
            }
            _ => Want::Line,
        }
    }

    fn line(&mut self, dir: Dir, line: &[u8], truncated: bool, found: &mut Found) {
        match dir {
            Dir::Client => self.command(line, truncated),
            Dir::Server => self.reply_line(line, found),
        }
    }

    fn skipped(&mut self, _dir: Dir, _n: u64) {}

    fn is_done(&self) -> bool {
        self.done
    }

    fn limit(&self) -> u64 {
        MAX_LOGIN_BYTES
    }
}
