//! `socks5ctl watch`: a live view of the server, like `top`.
//!
//! Every refresh is one round trip on one administration connection that stays open: the
//! ten counter and setting queries, List Users, and Get User Total Current Connections for
//! each user of the previous refresh, pipelined (one write over TCP, back-to-back messages
//! over SCTP). A user that is new in a list gets its count in a second, small pipeline at
//! once, so every screen is complete. Rates are the differences between two refreshes over
//! the time between them, measured here.
//!
//! On a terminal the view takes the alternate screen until `q` or Ctrl-C; otherwise (stdout
//! not a terminal) it prints one line per refresh, one JSON object per line with `--json`,
//! until `--count` refreshes, the end of stdout, or a signal.
//!
//! Over TCP the first refresh runs on a connection of its own whose sending side is shut down
//! after the requests ([`Client::exchange_last`]), so that a `--admin-dialect` mismatch (a
//! response width that differs) is proven by the server's close at once rather than by
//! `--timeout`; Get Number of Users Connected, in every refresh, differs in width between the
//! dialects both ways. Over SCTP message boundaries prove it on any connection.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, queue, style, terminal};
use serde_json::{json, Map, Value};
use socks5d_core::admin::msg::{AdminRequest, AdminResponse, Query, ValueCmd};
use socks5d_core::admin::Dialect;
use socks5d_core::state::Privilege;

use crate::cli::{Cli, WatchArgs};
use crate::client::{Client, Transport};
use crate::output::{self, shown};
use crate::Failure;

/// The queries that take no argument, in the order of the screen.
fn counters(dialect: Dialect) -> [Query; 10] {
    [
        Query::CurrentConnections,
        Query::MaxConcurrentConnections,
        Query::HistoricConnections,
        Query::BytesSent,
        Query::BytesReceived,
        Query::UsersConnected,
        Query::UserCount,
        Query::BufferSize,
        Query::SelectorTimeout,
        Query::ConnectionTimeout(dialect),
    ]
}

/// One user of a refresh.
#[derive(Debug, Clone)]
struct UserRow {
    name: Bytes,
    /// Only the final dialect lists it.
    privilege: Option<Privilege>,
    /// Open SOCKS connections; `None` if the server refused the query (the user was removed
    /// between List Users and the count).
    connections: Option<u64>,
}

/// What one refresh learnt.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    time: SystemTime,
    /// The answers to [`counters`], in that order.
    values: Vec<(ValueCmd, u64)>,
    users: Vec<UserRow>,
}

impl Sample {
    fn get(&self, cmd: ValueCmd) -> u64 {
        self.values
            .iter()
            .find(|(c, _)| *c == cmd)
            .map_or(0, |(_, v)| *v)
    }
}

/// Per-second rates between two samples.
#[derive(Debug, Clone, Copy)]
struct Rates {
    connections: f64,
    sent: f64,
    received: f64,
}

impl Rates {
    fn between(old: &Sample, new: &Sample) -> Option<Self> {
        let dt = new.at.duration_since(old.at).as_secs_f64();
        if dt <= 0.0 {
            return None;
        }
        let per_s = |cmd| new.get(cmd).saturating_sub(old.get(cmd)) as f64 / dt;
        Some(Self {
            connections: per_s(ValueCmd::HistoricConnections),
            sent: per_s(ValueCmd::BytesSent),
            received: per_s(ValueCmd::BytesReceived),
        })
    }
}

/// The connection and what the next refresh asks.
struct Session {
    client: Client,
    dialect: Dialect,
    /// The users of the last refresh: the next one asks for their counts.
    known: Vec<Bytes>,
}

impl Session {
    /// Runs one refresh.
    fn refresh(&mut self) -> Result<Sample, Failure> {
        let requests = round(self.dialect, &self.known);
        let responses = self.client.exchange(&requests)?;
        let mut sample = parse(self.dialect, &self.known, &responses)?;
        self.complete(&mut sample)?;
        Ok(sample)
    }

    /// Asks for the counts of users new in `sample`'s list, and remembers the list.
    fn complete(&mut self, sample: &mut Sample) -> Result<(), Failure> {
        let missing: Vec<Bytes> = sample
            .users
            .iter()
            .filter(|u| !self.known.contains(&u.name))
            .map(|u| u.name.clone())
            .collect();
        if !missing.is_empty() {
            let requests: Vec<AdminRequest> = missing
                .iter()
                .map(|n| user_query(self.dialect, n))
                .collect();
            let responses = self.client.exchange(&requests)?;
            let counts = user_counts(&missing, &responses)?;
            for u in &mut sample.users {
                if let Some(c) = counts.get(&u.name) {
                    u.connections = *c;
                }
            }
        }
        self.known = sample.users.iter().map(|u| u.name.clone()).collect();
        Ok(())
    }
}

fn user_query(dialect: Dialect, name: &Bytes) -> AdminRequest {
    AdminRequest::Query(Query::UserConnections {
        cmd: dialect,
        name: name.clone(),
    })
}

/// The requests of one refresh: the counters, List Users, then one count per known user.
fn round(dialect: Dialect, known: &[Bytes]) -> Vec<AdminRequest> {
    counters(dialect)
        .into_iter()
        .chain([Query::ListUsers])
        .map(AdminRequest::Query)
        .chain(known.iter().map(|n| user_query(dialect, n)))
        .collect()
}

/// The counts in `responses`, one per name in `names`: `None` where the server refused.
fn user_counts(
    names: &[Bytes],
    responses: &[AdminResponse],
) -> Result<HashMap<Bytes, Option<u64>>, Failure> {
    let mut counts = HashMap::with_capacity(names.len());
    for (name, r) in names.iter().zip(responses) {
        let count = match r {
            AdminResponse::Value {
                cmd: ValueCmd::UserConnections(_),
                value,
            } => Some(*value),
            AdminResponse::QueryError { .. } => None,
            other => {
                return Err(output::not_answered(
                    other,
                    &format!("cannot count the connections of {}", shown(name)),
                ))
            }
        };
        counts.insert(name.clone(), count);
    }
    Ok(counts)
}

/// Reads the responses of [`round`]`(dialect, known)`.
fn parse(
    dialect: Dialect,
    known: &[Bytes],
    responses: &[AdminResponse],
) -> Result<Sample, Failure> {
    let (at, time) = (Instant::now(), SystemTime::now());
    let n = counters(dialect).len();
    let mut values = Vec::with_capacity(n);
    for r in &responses[..n] {
        values.push(output::number(r, "query failed")?);
    }
    let AdminResponse::Users(list) = &responses[n] else {
        return Err(output::not_answered(&responses[n], "cannot list the users"));
    };
    let counts = user_counts(known, &responses[n + 1..])?;
    let users = list
        .iter()
        .map(|u| UserRow {
            name: u.name.clone(),
            privilege: u.privilege,
            connections: counts.get(&u.name).copied().flatten(),
        })
        .collect();
    Ok(Sample {
        at,
        time,
        values,
        users,
    })
}

/// Runs `socks5ctl watch`.
pub(crate) fn run(cli: &Cli, args: &WatchArgs) -> Result<(), Failure> {
    let dialect = Dialect::from(cli.admin_dialect);
    let (user, password) = crate::credentials(cli.user.as_deref())?;
    let connect = || -> Result<Client, Failure> {
        let mut c = Client::connect(
            &cli.address,
            cli.port,
            cli.admin_transport,
            dialect,
            cli.timeout,
        )?;
        c.authenticate(user.as_bytes(), password.as_bytes())?;
        Ok(c)
    };
    let client = connect()?;
    let title = format!(
        "socks5d {} over {}, {} dialect, every {} s",
        client.peer(),
        client.transport().name(),
        match dialect {
            Dialect::Draft => "draft",
            Dialect::Final => "final",
        },
        args.interval.as_secs_f64()
    );
    let (mut session, first) = if client.transport() == Transport::Tcp {
        // The first refresh on a connection of its own, half-closed: see the module docs.
        let responses = client.exchange_last(&round(dialect, &[]))?;
        let mut sample = parse(dialect, &[], &responses)?;
        let mut session = Session {
            client: connect()?,
            dialect,
            known: Vec::new(),
        };
        session.complete(&mut sample)?;
        (session, sample)
    } else {
        let mut session = Session {
            client,
            dialect,
            known: Vec::new(),
        };
        let sample = session.refresh()?;
        (session, sample)
    };
    let view = View {
        title,
        dialect,
        json: cli.json,
    };
    if io::stdout().is_terminal() {
        screen(&view, &mut session, first, args)
    } else {
        lines(&view, &mut session, first, args)
    }
}

/// How samples are shown.
struct View {
    title: String,
    dialect: Dialect,
    json: bool,
}

/// Line mode: one line per refresh on stdout.
fn lines(
    view: &View,
    session: &mut Session,
    first: Sample,
    args: &WatchArgs,
) -> Result<(), Failure> {
    let mut prev: Option<Sample> = None;
    let mut sample = first;
    let mut next = sample.at;
    let mut shown = 0u64;
    loop {
        let rates = prev.as_ref().and_then(|p| Rates::between(p, &sample));
        let line = if view.json {
            json_line(view.dialect, &sample, rates).to_string()
        } else {
            text_line(&sample, rates)
        };
        let mut out = io::stdout().lock();
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => {}
            // The reader is gone (`| head`): done.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(Failure::Connection(format!("cannot write stdout: {e}"))),
        }
        drop(out);
        shown += 1;
        if args.count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
        next = next_tick(next, args.interval);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        prev = Some(sample);
        sample = session.refresh()?;
    }
}

/// The deadline of the next refresh: one interval after the last, or after now if that was
/// missed (a slow server does not make refreshes pile up).
fn next_tick(last: Instant, interval: Duration) -> Instant {
    let now = Instant::now();
    let next = last + interval;
    if next < now {
        now + interval
    } else {
        next
    }
}

/// Escapes a user name for the space-separated line: as [`shown`], and also ` ` and `=`.
fn token(name: &[u8]) -> String {
    shown(name).replace(' ', "\\x20").replace('=', "\\x3d")
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `TIME key=value ...`, rates as `KEY/s=`, then `open:` and `USER=COUNT` for each user.
fn text_line(s: &Sample, rates: Option<Rates>) -> String {
    let mut line = timestamp(s.time);
    let rate = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    for &(cmd, value) in &s.values {
        let (key, _, _) = output::field(cmd, value);
        line.push_str(&format!(" {key}={value}"));
        match cmd {
            ValueCmd::HistoricConnections => {
                line.push_str(&format!(
                    " connections/s={}",
                    rate(rates.map(|r| r.connections))
                ));
            }
            ValueCmd::BytesSent => {
                line.push_str(&format!(" bytes_sent/s={}", rate(rates.map(|r| r.sent))));
            }
            ValueCmd::BytesReceived => {
                line.push_str(&format!(
                    " bytes_received/s={}",
                    rate(rates.map(|r| r.received))
                ));
            }
            _ => {}
        }
    }
    line.push_str(" open:");
    for u in &s.users {
        let count = u.connections.map_or("-".to_owned(), |c| c.to_string());
        line.push_str(&format!(" {}={count}", token(&u.name)));
    }
    line
}

/// One JSON object: the keys of `stats`, `time`, `rates` (null on the first line) and
/// `users` (`name`, `connections`, and `privilege` in the final dialect).
fn json_line(dialect: Dialect, s: &Sample, rates: Option<Rates>) -> Value {
    let mut obj = Map::new();
    obj.insert("time".into(), Value::String(timestamp(s.time)));
    for &(cmd, value) in &s.values {
        let (key, _, _) = output::field(cmd, value);
        obj.insert(key.into(), Value::from(value));
    }
    obj.insert(
        "rates".into(),
        rates.map_or(Value::Null, |r| {
            json!({
                "connections_per_s": r.connections,
                "bytes_sent_per_s": r.sent,
                "bytes_received_per_s": r.received,
            })
        }),
    );
    let users: Vec<Value> = s
        .users
        .iter()
        .map(|u| {
            let mut o = Map::new();
            o.insert(
                "name".into(),
                Value::String(String::from_utf8_lossy(&u.name).into_owned()),
            );
            o.insert(
                "connections".into(),
                u.connections.map_or(Value::Null, Value::from),
            );
            if dialect == Dialect::Final {
                let p = match u.privilege {
                    Some(Privilege::Admin) => "admin",
                    _ => "user",
                };
                o.insert("privilege".into(), Value::String(p.into()));
            }
            Value::Object(o)
        })
        .collect();
    obj.insert("users".into(), Value::Array(users));
    Value::Object(obj)
}

fn rate_bytes(v: f64) -> String {
    const UNITS: [&str; 4] = ["KiB/s", "MiB/s", "GiB/s", "TiB/s"];
    if v < 1024.0 {
        return format!("{v:.0} bytes/s");
    }
    let (mut v, mut unit) = (v / 1024.0, 0);
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The screen for `s`: a header, one row per counter or setting (with its rate), then the
/// users. Lines carry no colour and no escape sequence: names go through [`shown`].
fn screen_lines(view: &View, s: &Sample, rates: Option<Rates>) -> Vec<String> {
    let mut out = vec![
        format!("{}    q quits", view.title),
        timestamp(s.time),
        String::new(),
    ];
    let rows: Vec<(&str, String, String)> = s
        .values
        .iter()
        .map(|&(cmd, value)| {
            let (_, label, text) = output::field(cmd, value);
            let rate = match (cmd, rates) {
                (ValueCmd::HistoricConnections, Some(r)) => {
                    format!("{:.1} connections/s", r.connections)
                }
                (ValueCmd::BytesSent, Some(r)) => rate_bytes(r.sent),
                (ValueCmd::BytesReceived, Some(r)) => rate_bytes(r.received),
                (
                    ValueCmd::HistoricConnections | ValueCmd::BytesSent | ValueCmd::BytesReceived,
                    None,
                ) => "-".into(),
                _ => String::new(),
            };
            (label, text, rate)
        })
        .collect();
    let w1 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    for (label, text, rate) in rows {
        out.push(
            format!("{label:<w1$}  {text:<w2$}  {rate}")
                .trim_end()
                .to_owned(),
        );
    }
    out.push(String::new());
    let names: Vec<String> = s.users.iter().map(|u| shown(&u.name)).collect();
    let wn = names.iter().map(String::len).max().unwrap_or(0).max(4);
    let count = |u: &UserRow| u.connections.map_or("-".to_owned(), |c| c.to_string());
    if view.dialect == Dialect::Final {
        out.push(format!("{:<wn$}  {:<13}  CONNECTIONS", "USER", "PRIVILEGE"));
        for (u, name) in s.users.iter().zip(&names) {
            let p = match u.privilege {
                Some(Privilege::Admin) => "administrator",
                _ => "user",
            };
            out.push(format!("{name:<wn$}  {p:<13}  {}", count(u)));
        }
    } else {
        out.push(format!("{:<wn$}  CONNECTIONS", "USER"));
        for (u, name) in s.users.iter().zip(&names) {
            out.push(format!("{name:<wn$}  {}", count(u)));
        }
    }
    out
}

/// Restores the terminal when dropped, on every path out of [`screen`].
struct Terminal;

impl Terminal {
    fn enter() -> io::Result<Self> {
        terminal::enable_raw_mode()?;
        let guard = Self;
        crossterm::execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }

    /// Draws `lines` from the top left, cut to the terminal's size.
    fn draw(&self, lines: &[String]) -> io::Result<()> {
        let (cols, rows) = terminal::size().unwrap_or((80, 24));
        let (cols, rows) = (usize::from(cols), usize::from(rows));
        let mut out = io::stdout().lock();
        queue!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        let shown = if lines.len() > rows {
            rows.saturating_sub(1)
        } else {
            lines.len()
        };
        for (i, line) in lines.iter().take(shown).enumerate() {
            let cut: String = line.chars().take(cols).collect();
            queue!(out, cursor::MoveTo(0, i as u16), style::Print(cut))?;
        }
        if shown < lines.len() {
            let more = format!(
                "... {} more lines (enlarge the window)",
                lines.len() - shown
            );
            let cut: String = more.chars().take(cols).collect();
            queue!(out, cursor::MoveTo(0, shown as u16), style::Print(cut))?;
        }
        out.flush()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = crossterm::execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

fn term_err(e: &io::Error) -> Failure {
    Failure::Connection(format!("cannot drive the terminal: {e}"))
}

/// Whether `key` asks to quit: `q`, or Ctrl-C (raw mode delivers it as a key).
fn quits(key: &KeyEvent) -> bool {
    key.kind != KeyEventKind::Release
        && match key.code {
            KeyCode::Char('q' | 'Q') => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

/// Terminal mode: the view on the alternate screen until `q`, Ctrl-C or `--count`.
fn screen(
    view: &View,
    session: &mut Session,
    first: Sample,
    args: &WatchArgs,
) -> Result<(), Failure> {
    let term = Terminal::enter().map_err(|e| term_err(&e))?;
    let mut prev: Option<Sample> = None;
    let mut sample = first;
    let mut next = sample.at;
    let mut shown = 0u64;
    loop {
        let lines = screen_lines(
            view,
            &sample,
            prev.as_ref().and_then(|p| Rates::between(p, &sample)),
        );
        term.draw(&lines).map_err(|e| term_err(&e))?;
        shown += 1;
        if args.count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
        next = next_tick(next, args.interval);
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                break;
            }
            if !event::poll(wait).map_err(|e| term_err(&e))? {
                break;
            }
            match event::read().map_err(|e| term_err(&e))? {
                Event::Key(k) if quits(&k) => return Ok(()),
                Event::Resize(..) => term.draw(&lines).map_err(|e| term_err(&e))?,
                _ => {}
            }
        }
        prev = Some(sample);
        sample = session.refresh()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, historic: u64, sent: u64, received: u64) -> Sample {
        Sample {
            at,
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(86_400),
            values: vec![
                (ValueCmd::CurrentConnections, 2),
                (ValueCmd::HistoricConnections, historic),
                (ValueCmd::BytesSent, sent),
                (ValueCmd::BytesReceived, received),
            ],
            users: vec![
                UserRow {
                    name: Bytes::from_static(b"bob"),
                    privilege: Some(Privilege::User),
                    connections: Some(2),
                },
                UserRow {
                    name: Bytes::from_static(b"a b=c"),
                    privilege: Some(Privilege::Admin),
                    connections: None,
                },
            ],
        }
    }

    #[test]
    fn rates_are_differences_over_time() {
        let t = Instant::now();
        let a = sample(t, 10, 1000, 0);
        let b = sample(t + Duration::from_secs(2), 14, 5096, 0);
        let r = Rates::between(&a, &b).unwrap();
        assert_eq!((r.connections, r.sent, r.received), (2.0, 2048.0, 0.0));
        assert!(Rates::between(&a, &a).is_none());
        // A counter that went down (a new server behind the address) gives 0, not a wrap.
        let r = Rates::between(&b, &sample(t + Duration::from_secs(3), 1, 0, 0)).unwrap();
        assert_eq!(r.connections, 0.0);
    }

    #[test]
    fn the_line_escapes_names() {
        let t = Instant::now();
        let line = text_line(&sample(t, 1, 2, 3), None);
        assert_eq!(
            line,
            "1970-01-02T00:00:00Z current_connections=2 historic_connections=1 connections/s=- \
             bytes_sent=2 bytes_sent/s=- bytes_received=3 bytes_received/s=- open: bob=2 \
             a\\x20b\\x3dc=-"
        );
    }

    #[test]
    fn one_json_object_per_line() {
        let t = Instant::now();
        let a = sample(t, 1, 0, 0);
        let b = sample(t + Duration::from_secs(1), 3, 100, 0);
        let j = json_line(Dialect::Final, &b, Rates::between(&a, &b));
        assert_eq!(j["historic_connections"], 3);
        assert_eq!(j["rates"]["connections_per_s"], 2.0);
        assert_eq!(j["rates"]["bytes_sent_per_s"], 100.0);
        assert_eq!(
            j["users"],
            json!([
                { "name": "bob", "connections": 2, "privilege": "user" },
                { "name": "a b=c", "connections": null, "privilege": "admin" },
            ])
        );
        assert_eq!(json_line(Dialect::Draft, &a, None)["rates"], Value::Null);
        assert!(!j.to_string().contains('\n'));
    }

    #[test]
    fn the_screen_has_rates_and_users() {
        let t = Instant::now();
        let view = View {
            title: "socks5d test".into(),
            dialect: Dialect::Final,
            json: false,
        };
        let a = sample(t, 1, 0, 0);
        let b = sample(t + Duration::from_secs(1), 3, 3 << 20, 0);
        let lines = screen_lines(&view, &b, Rates::between(&a, &b));
        let text = lines.join("\n");
        assert!(text.contains("Historic connections  3"), "{text}");
        assert!(text.contains("2.0 connections/s"), "{text}");
        assert!(text.contains("3.0 MiB/s"), "{text}");
        assert!(text.contains("0 bytes/s"), "{text}");
        assert!(text.contains("USER   PRIVILEGE      CONNECTIONS"), "{text}");
        assert!(text.contains("bob    user           2"), "{text}");
        assert!(text.contains("a b=c  administrator  -"), "{text}");
    }

    #[test]
    fn a_round_asks_for_the_known_users() {
        let r = round(Dialect::Draft, &[Bytes::from_static(b"bob")]);
        assert_eq!(r.len(), 12);
        assert_eq!(r[10], AdminRequest::Query(Query::ListUsers));
        assert_eq!(
            r[11],
            AdminRequest::Query(Query::UserConnections {
                cmd: Dialect::Draft,
                name: Bytes::from_static(b"bob")
            })
        );
    }
}
