//! The hostile-load suite (issue 17, scenarios 1-6) against the real `socks5d` binary, on
//! loopback. The scenarios live in `socks5d_tests::hostile`; each test here runs one, prints
//! its report (`cargo test -p socks5d --test hostile -- --nocapture` shows them) and asserts
//! on correctness only: closed, answered, served, intact, counted. Speed is measured and
//! printed, never asserted, except the idle flood's CPU bound (the issue's "backs off
//! instead of spinning").
//!
//! The tests run one at a time (they measure the server's CPU and descriptors, and the
//! machine may have two cores).
//!
//! Scenario 7, the soak, is `#[ignore]`d (ten minutes by default): run it on demand against
//! the release binary with
//! `cargo test --release -p socks5d --test hostile soak -- --ignored --nocapture`, and
//! `SOCKS5D_SOAK_SECS=20` in front for a short check that it works.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use socks5d_tests::hostile::{
    blackhole, garbage, half_close, idle_flood, server, slowloris, soak, transfers,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_socks5d"))
}

/// Raises this process's descriptor limit (the attacks need thousands) and returns the hard
/// limit, which the server inherits.
fn nofile() -> u64 {
    server::raise_nofile().expect("RLIMIT_NOFILE")
}

/// Prints a scaling note, if any.
fn note(n: Option<String>) {
    if let Some(n) = n {
        println!("note: {n}");
    }
}

/// Prints the report, then fails listing every property that does not hold.
fn check(report: &dyn std::fmt::Display, properties: &[(bool, String)]) {
    println!("{report}");
    let failed: Vec<&str> = properties
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, what)| what.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "\n{}\n\nreport:\n{report}",
        failed
            .iter()
            .map(|f| format!("- {f}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn slowloris_clients_are_closed_by_the_deadline_while_others_are_served() {
    let _serial = serial();
    let (p, n) = slowloris::Params::scaled(nofile());
    note(n);
    let r = slowloris::run(bin(), &p).expect("slowloris run");
    check(
        &r,
        &[
            (r.server_alive, "the server is still running".into()),
            (
                r.socks.opened == p.socks && r.admin.opened == p.admin,
                format!("all {} + {} slow clients connected", p.socks, p.admin),
            ),
            (
                r.socks.still_open == 0,
                format!(
                    "every SOCKS slow client is closed by the handshake deadline (+ {:?}): {} were not",
                    p.slack, r.socks.still_open
                ),
            ),
            (
                r.admin.still_open == 0,
                format!(
                    "every admin slow client is closed by the handshake deadline (+ {:?}): {} were not",
                    p.slack, r.admin.still_open
                ),
            ),
            (
                r.good_client.failed == 0 && r.good_client.ok() > 0,
                "a good SOCKS client completes every handshake during the attack".into(),
            ),
            (
                r.administrator.failed == 0 && r.administrator.ok() > 0,
                "an administrator's query is answered during the attack".into(),
            ),
        ],
    );
}

#[test]
fn idle_flood_backs_off_instead_of_spinning_and_serves_once_descriptors_free_up() {
    let _serial = serial();
    let (p, n) = idle_flood::Params::scaled(nofile());
    note(n);
    let r = idle_flood::run(bin(), &p).expect("idle flood run");
    check(
        &r,
        &[
            (r.server_alive, "the server is still running".into()),
            (
                r.server_fds as u64 + 32 >= p.nofile,
                format!(
                    "the flood saturates the server's descriptors ({} of {})",
                    r.server_fds, p.nofile
                ),
            ),
            (
                r.saturated_cpu_percent < 20.0,
                format!(
                    "the server uses under 20 % of a core while saturated ({:.1} %)",
                    r.saturated_cpu_percent
                ),
            ),
            (
                r.recovered_after.is_some(),
                format!(
                    "a good client is served within {:?} of the flood closing",
                    p.recover_within
                ),
            ),
        ],
    );
}

#[test]
fn black_hole_destinations_get_a_failure_reply_by_the_deadline_while_others_are_served() {
    let _serial = serial();
    let (p, n) = blackhole::Params::scaled(nofile());
    note(n);
    let r = blackhole::run(bin(), &p).expect("black hole run");
    let answered: usize = r.replies.values().sum();
    let failures: usize = r
        .replies
        .iter()
        .filter(|(c, _)| matches!(c, 0x04 | 0x06))
        .map(|(_, n)| n)
        .sum();
    check(
        &r,
        &[
            (r.server_alive, "the server is still running".into()),
            (
                r.black_hole_confirmed,
                "the test's listener drops SYNs (a direct connect hangs)".into(),
            ),
            (
                answered == p.connects && r.unanswered == 0 && r.errors == 0,
                format!(
                    "every CONNECT is answered by the deadline (+ {:?}): {answered} of {}",
                    p.slack, p.connects
                ),
            ),
            (
                failures == answered,
                "every answer is 06 (TTL expired) or 04 (host unreachable)".into(),
            ),
            (
                r.good_client.failed == 0 && r.good_client.ok() > 0,
                "a good client is served meanwhile".into(),
            ),
        ],
    );
}

fn half_close_properties(r: &half_close::Report, p: &half_close::Params) -> Vec<(bool, String)> {
    vec![
        (r.server_alive, "the server is still running".into()),
        (
            r.relays == p.relays,
            format!("all {} relays are set up and half-closed", p.relays),
        ),
        (
            r.cleared_after.is_some() && r.remaining_sockets <= r.baseline_sockets,
            format!(
                "no half-closed relay remains after the limit + a clean-up period + {:?}: {} sockets ({} in CLOSE-WAIT) remain, {} at baseline",
                p.slack, r.remaining_sockets, r.remaining_close_wait, r.baseline_sockets
            ),
        ),
    ]
}

#[test]
fn half_closed_relays_are_closed_by_the_connection_timeout() {
    let _serial = serial();
    let (p, n) = half_close::Params::new(half_close::Limit::Cleanup(3)).scaled(nofile());
    note(n);
    let r = half_close::run(bin(), &p).expect("half-close run");
    check(&r, &half_close_properties(&r, &p));
}

#[test]
fn half_closed_relays_are_closed_by_a_half_close_limit_without_cleanup() {
    let _serial = serial();
    let (p, n) = half_close::Params::new(half_close::Limit::HalfClose(3)).scaled(nofile());
    note(n);
    let r = half_close::run(bin(), &p).expect("half-close run");
    let mut props = vec![(
        r.flag_refused.is_none(),
        format!(
            "the server has a half-close limit ({} SECONDS; proposed default 60) that closes half-closed relays when clean-up is off (-D)",
            half_close::HALF_CLOSE_FLAG
        ),
    )];
    props.extend(half_close_properties(&r, &p));
    check(&r, &props);
}

#[test]
fn every_byte_is_relayed_and_counted_through_the_copy_and_splice_paths() {
    let _serial = serial();
    let (p, n) = transfers::Params::scaled(nofile());
    note(n);
    let r = transfers::run(bin(), &p).expect("transfers run");
    let mut props = Vec::new();
    let (on, off) = (&r.servers[0], &r.servers[1]);
    props.push((
        on.credential_lines > 0 && on.credential_lines <= on.http,
        format!(
            "{}: the sniffer saw HTTP-looking transfers (copy path): {} credentials logged, at most {}",
            on.name, on.credential_lines, on.http
        ),
    ));
    props.push((
        off.credential_lines == 0,
        format!("{}: nothing is sniffed", off.name),
    ));
    for s in &r.servers {
        props.push((
            s.server_alive,
            format!("{}: the server is still running", s.name),
        ));
        props.push((
            s.intact == s.transfers,
            format!(
                "{}: every transfer arrives intact both ways ({} intact, {} corrupted, {} failed)",
                s.name,
                s.intact,
                s.corrupted.len(),
                s.failed
            ),
        ));
        props.push((
            s.reported == Some(s.expected),
            format!(
                "{}: the admin counters equal the sum of the transfers: expected {:?}, reported {:?}",
                s.name, s.expected, s.reported
            ),
        ));
    }
    check(&r, &props);
}

#[test]
fn garbage_on_both_ports_is_refused_briefly_and_the_server_carries_on() {
    let _serial = serial();
    nofile();
    let p = garbage::Params::default();
    let r = garbage::run(bin(), &p).expect("garbage run");
    let long_answers: usize = r
        .answers
        .iter()
        .filter(|(n, _)| **n > 4)
        .map(|(_, c)| c)
        .sum();
    check(
        &r,
        &[
            (
                r.server_alive,
                "the server is still running (no crash)".into(),
            ),
            (
                r.connections.0 + r.connections.1 == p.connections && r.connect_failed == 0,
                format!("all {} garbage connections were made", p.connections),
            ),
            (
                r.not_closed == 0,
                "the server closes every garbage connection".into(),
            ),
            (
                long_answers == 0,
                format!("a short refusal (4 bytes) at most: {long_answers} answered more"),
            ),
            (
                r.long_log_lines == 0,
                format!(
                    "no log line longer than {} B (longest: {} B)",
                    garbage::MAX_LOG_LINE,
                    r.longest_log_line
                ),
            ),
            (
                r.foreign_access_lines == 0,
                "no garbage gets past authentication".into(),
            ),
            (
                r.good_client.failed == 0 && r.good_client.ok() > 0,
                "a good client is served meanwhile".into(),
            ),
            (
                r.administrator.failed == 0 && r.administrator.ok() > 0,
                "an administrator is answered meanwhile".into(),
            ),
            (r.served_after, "a good client is served afterwards".into()),
        ],
    );
}

#[test]
#[ignore = "the soak runs for minutes (SOCKS5D_SOAK_SECS, default 600): run it on demand"]
fn soak_gives_back_descriptors_and_memory_after_minutes_of_mixed_load() {
    let _serial = serial();
    nofile();
    let p = soak::Params::from_env();
    println!(
        "soak: {:?} of load after a {:?} warm-up; the baseline is taken after the warm-up settles",
        p.duration, p.warmup
    );
    let r = soak::run(bin(), &p).expect("soak run");
    let failed = r
        .warmup_ops
        .failed
        .load(std::sync::atomic::Ordering::Relaxed)
        + r.ops.failed.load(std::sync::atomic::Ordering::Relaxed);
    let kinds_done = [
        &r.ops.handshakes,
        &r.ops.refused,
        &r.ops.relays,
        &r.ops.pipelines,
        &r.ops.users_added,
        &r.ops.users_removed,
    ]
    .iter()
    .all(|c| c.load(std::sync::atomic::Ordering::Relaxed) > 0);
    check(
        &r,
        &[
            (r.server_alive, "the server is still running".into()),
            (
                failed == 0,
                format!("every operation goes as the protocol requires: {failed} did not"),
            ),
            (
                kinds_done,
                "every kind of operation of the mix was done at least once".into(),
            ),
            (
                r.fds_back(),
                format!(
                    "descriptors back to the baseline: {} after, {} at baseline",
                    r.after.fds, r.baseline.fds
                ),
            ),
            (
                r.rss_ratio() <= 1.10,
                format!(
                    "RSS within 10 % of the baseline: {} KiB after, {} KiB at baseline",
                    r.after.rss_kib, r.baseline.rss_kib
                ),
            ),
            (
                r.current_after == Some(0),
                format!(
                    "no SOCKS connection left open (admin says {:?})",
                    r.current_after
                ),
            ),
        ],
    );
}
