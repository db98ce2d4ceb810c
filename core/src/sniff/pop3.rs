//! POP3 `USER`/`PASS` (RFC 1939 §7), recorded when the server answers `PASS` with `+OK`.
//!
//! Replies are matched with commands in order, after the greeting. Multi-line replies (CAPA,
//! AUTH without a mechanism, LIST/UIDL without an argument, RETR, TOP) are followed to their
//! terminating `.` line. A successful login, STLS, APOP or a SASL `AUTH` exchange ends the
//! watch: no clear-text `USER`/`PASS` can follow.

use std::collections::VecDeque;

use bytes::Bytes;

use super::{split_word, starts_with_ci, Dir, Found, Machine, Protocol, Want};
use super::{MAX_LOGIN_BYTES, MAX_PENDING, MAX_PENDING_BYTES};

#[derive(Debug, Default)]
pub(super) struct Pop3 {
    greeted: bool,
    /// Inside a multi-line reply.
    multiline: bool,
    cmds: VecDeque<Cmd>,
    cmd_bytes: usize,
    /// The user name the server accepted with `+OK`.
    user: Option<Bytes>,
    done: bool,
}

#[derive(Debug)]
enum Cmd {
    User(Bytes),
    Pass(Bytes),
    /// Answered by a multi-line reply when `+OK`.
    Multi,
    /// After `+OK` the session is no longer clear text or no longer logging in.
    Final,
    Other,
}

impl Pop3 {
    fn command(&mut self, line: &[u8], truncated: bool) {
        let (word, arg) = split_word(line);
        let arg = arg.filter(|a| !a.is_empty());
        let cmd = if word.eq_ignore_ascii_case(b"USER") {
            match arg {
                Some(a) if !truncated => Cmd::User(Bytes::copy_from_slice(a)),
                _ => Cmd::Other,
            }
        } else if word.eq_ignore_ascii_case(b"PASS") {
            // RFC 1939: the password may contain spaces; the rest of the line is the password.
            match arg {
                Some(a) if !truncated => Cmd::Pass(Bytes::copy_from_slice(a)),
                _ => Cmd::Other,
            }
        } else if word.eq_ignore_ascii_case(b"AUTH") {
            if arg.is_some() {
                // A SASL exchange: its client lines are not commands.
                self.done = true;
                return;
            }
            Cmd::Multi
        } else if word.eq_ignore_ascii_case(b"CAPA")
            || word.eq_ignore_ascii_case(b"RETR")
            || word.eq_ignore_ascii_case(b"TOP")
            || ((word.eq_ignore_ascii_case(b"LIST") || word.eq_ignore_ascii_case(b"UIDL"))
                && arg.is_none())
        {
            Cmd::Multi
        } else if word.eq_ignore_ascii_case(b"STLS") || word.eq_ignore_ascii_case(b"APOP") {
            Cmd::Final
        } else {
            Cmd::Other
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

    fn reply(&mut self, line: &[u8], found: &mut Found) {
        if self.multiline {
            if line == b"." {
                self.multiline = false;
            }
            return;
        }
        let ok = starts_with_ci(line, b"+OK");
        if !ok && !starts_with_ci(line, b"-ERR") {
            // Out of step with the server (or not POP3 after all).
            self.done = true;
            return;
        }
        if !self.greeted {
            self.greeted = true;
            self.done = !ok;
            return;
        }
        let Some(cmd) = self.cmds.pop_front() else {
            self.done = true;
            return;
        };
        match cmd {
            Cmd::User(u) => {
                self.cmd_bytes -= u.len();
                self.user = ok.then_some(u);
            }
            Cmd::Pass(p) => {
                self.cmd_bytes -= p.len();
                match (ok, self.user.take()) {
                    (true, Some(u)) => {
                        found.push(Protocol::Pop3, u, p);
                        self.done = true;
                    }
                    // Logged in without a USER we saw accepted: nothing to record.
                    (true, None) => self.done = true,
                    // RFC 1939: after a failed PASS the client starts again with USER.
                    (false, _) => {}
                }
            }
            Cmd::Multi => self.multiline = ok,
            Cmd::Final => self.done = ok,
            Cmd::Other => {}
        }
    }
}

impl Machine for Pop3 {
    fn want(&self, dir: Dir) -> Want {
        match dir {
            Dir::Server if self.greeted && !self.multiline && self.cmds.is_empty() => Want::Stall,
            _ => Want::Line,
        }
    }

    fn line(&mut self, dir: Dir, line: &[u8], truncated: bool, found: &mut Found) {
        match dir {
            Dir::Client => self.command(line, truncated),
            Dir::Server => self.reply(line, found),
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
