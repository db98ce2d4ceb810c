//! The fleet over PostgreSQL (`--user-store`), against the real binary: three socks5d
//! processes and a private PostgreSQL cluster (socks5d_tests::pg) per test.
//!
//! - a user added on A authenticates on B and C within 1 s; removing it on C cuts a live
//!   relay on A within 1 s; a setting changed on B reads back on A;
//! - PostgreSQL stopped and started: nobody crashes, changes are answered FF while it is down,
//!   an instance started meanwhile serves its last-known users, a change made while one
//!   instance was cut off reaches it when it returns;
//! - two admins adding one name at once on two instances: one 00, one 01;
//! - 50 admin clients adding and removing 200 names at random on 3 instances: afterwards
//!   every instance lists exactly the users PostgreSQL holds.
//!
//! Instances `a`, `b` and `c` run on tokio, smol and async-std.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socks5d_core::admin::msg::{AdminRequest, AdminResponse, Modify, Query};
use socks5d_core::admin::Dialect;
use socks5d_core::socks5::TargetAddr;
use socks5d_tests::peers::{echo_server, socks_connect, AdminClient};
use socks5d_tests::pg::Pg;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One test at a time: the 1 s bounds measure the fleet, not the argon2 hashing of the
/// concurrency test running beside it on two cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

use socks5d_tests::free_port;

/// Instance `a` runs on tokio, `b` on smol, `c` on async-std: the fleet's client runs on a
/// tokio thread of its own under each.
fn runtime_of(name: &str) -> &'static str {
    match name {
        "b" => "smol",
        "c" => "async-std",
        _ => "tokio",
    }
}

/// One socks5d of the fleet (`b` re-reads the database every second, the others every 60 s).
struct Inst {
    child: Child,
    name: String,
    socks: SocketAddr,
    admin: u16,
    dir: PathBuf,
    url: String,
    /// Its stderr; kept when the test fails.
    log: PathBuf,
}

impl Drop for Inst {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

impl Inst {
    /// Starts socks5d `name` on `url` with its own state directory.
    fn start(url: &str, name: &str) -> Self {
        let dir = socks5d_tests::fresh_state_dir();
        let _ = std::fs::remove_dir_all(&dir);
        Self::start_in(url, name, dir)
    }

    fn start_in(url: &str, name: &str, dir: PathBuf) -> Self {
        let (socks, admin) = (free_port(), free_port());
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log_path = std::env::temp_dir().join(format!(
            "socks5d-fleet-{}-{n}-{name}.log",
            std::process::id()
        ));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_socks5d"))
            .arg("--state-dir")
            .arg(&dir)
            .args(["--user-store", url])
            .args(["-a", "admin:adminpw", "--max-admin-connections", "40"])
            .args(["-p", &socks.to_string(), "-P", &admin.to_string()])
            .args(["--admin-transport", "tcp", "--log-level", "info"])
            .args(["--runtime", runtime_of(name)])
            .args(["--user-store-resync", if name == "b" { "1" } else { "60" }])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", admin)).is_err() {
            assert!(Instant::now() < until, "socks5d {name} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            name: name.into(),
            socks: SocketAddr::new(LOOPBACK, socks),
            admin,
            dir,
            url: url.into(),
            log: log_path,
        }
    }

    fn admin(&self) -> AdminClient<TcpStream> {
        let s = TcpStream::connect(("127.0.0.1", self.admin)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = AdminClient::new(s, Dialect::Draft);
        assert_eq!(
            c.auth("admin", "adminpw").unwrap(),
            0,
            "{} admin login",
            self.name
        );
        c
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "socks5d {} exited",
            self.name
        );
    }

    /// Stops it (SIGTERM) and returns its state directory and URL, to start it again.
    fn stop(mut self) -> (PathBuf, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let _ = self.child.wait();
        (self.dir.clone(), self.url.clone())
    }
}

fn add_req(name: &str, password: &str) -> AdminRequest {
    AdminRequest::Modify(Modify::AddUser {
        name: Bytes::copy_from_slice(name.as_bytes()),
        password: Bytes::copy_from_slice(password.as_bytes()),
        privilege: 0,
    })
}

fn rm_req(name: &str) -> AdminRequest {
    AdminRequest::Modify(Modify::RemoveUser {
        name: Bytes::copy_from_slice(name.as_bytes()),
    })
}

/// The STATUS of a modification.
fn status(c: &mut AdminClient<TcpStream>, req: &AdminRequest) -> u8 {
    match c.call(req).unwrap() {
        AdminResponse::Status { status, .. } => status,
        other => panic!("not a status: {other:?}"),
    }
}

fn listed(c: &mut AdminClient<TcpStream>) -> BTreeSet<String> {
    match c.call(&AdminRequest::Query(Query::ListUsers)).unwrap() {
        AdminResponse::Users(u) => u
            .into_iter()
            .map(|u| String::from_utf8(u.name.to_vec()).unwrap())
            .collect(),
        other => panic!("not a user list: {other:?}"),
    }
}

fn value(c: &mut AdminClient<TcpStream>, q: Query) -> u64 {
    match c.call(&AdminRequest::Query(q)).unwrap() {
        AdminResponse::Value { value, .. } => value,
        other => panic!("not a value: {other:?}"),
    }
}

/// Polls `inst`'s user list until `name` is (or is not) in it; returns how long it took. An
/// admin session closed meanwhile is opened again: an instance's first sync closes the
/// sessions of a user whose hash differs in PostgreSQL (here `admin`, hashed with another
/// salt by each instance).
fn wait_listed(inst: &Inst, name: &str, present: bool, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut session: Option<AdminClient<TcpStream>> = None;
    loop {
        let c = session.get_or_insert_with(|| inst.admin());
        match c.call(&AdminRequest::Query(Query::ListUsers)) {
            Ok(AdminResponse::Users(u)) => {
                if u.iter().any(|u| u.name == name.as_bytes()) == present {
                    return t0.elapsed();
                }
            }
            Ok(other) => panic!("not a user list: {other:?}"),
            Err(_) => session = None,
        }
        assert!(
            t0.elapsed() < limit,
            "{name} {} on {} after {limit:?}",
            if present {
                "not listed"
            } else {
                "still listed"
            },
            inst.name
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Adds `name` on `inst`, retrying while the answer is FF (the fleet is not connected yet).
fn add_when_connected(inst: &Inst, name: &str, password: &str, limit: Duration) {
    let t0 = Instant::now();
    let mut c = inst.admin();
    loop {
        match status(&mut c, &add_req(name, password)) {
            0x00 => return,
            0xFF if t0.elapsed() < limit => std::thread::sleep(Duration::from_millis(50)),
            s => panic!("adding {name} on {}: status {s:#04x}", inst.name),
        }
    }
}

fn authenticates(inst: &Inst, user: &str, password: &str) -> bool {
    let echo = echo_server(LOOPBACK);
    socks_connect(inst.socks, user, password, &TargetAddr::Ip(echo)).is_ok()
}

/// The users PostgreSQL holds.
fn pg_users(pg: &Pg) -> BTreeSet<String> {
    pg.sql("SELECT convert_from(name, 'UTF8') FROM socks5d_users WHERE NOT deleted")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn changes_on_one_instance_reach_the_others_within_a_second() {
    let _serial = serial();
    let pg = Pg::start();
    let url = pg.url("postgres", "socks5d");
    let a = Inst::start(&url, "a");
    let b = Inst::start(&url, "b");
    let c = Inst::start(&url, "c");
    // Everyone connected: a probe added on A is listed on B and C.
    add_when_connected(&a, "probe", "probepw", Duration::from_secs(20));
    for i in [&b, &c] {
        wait_listed(i, "probe", true, Duration::from_secs(20));
    }

    // Added on A: listed and authenticating on B and C within 1 s.
    let t0 = Instant::now();
    assert_eq!(status(&mut a.admin(), &add_req("alice", "alicepw")), 0x00);
    let acked = t0.elapsed();
    for i in [&b, &c] {
        let d = wait_listed(i, "alice", true, Duration::from_secs(1));
        println!(
            "alice added on A (answered in {acked:?}): listed on {} {d:?} after the answer",
            i.name
        );
        assert!(authenticates(i, "alice", "alicepw"), "alice on {}", i.name);
        assert!(
            !authenticates(i, "alice", "wrong"),
            "wrong password on {}",
            i.name
        );
    }

    // A live relay of alice on A is cut within 1 s of her removal on C.
    let echo = echo_server(LOOPBACK);
    let (mut relay, rep, _) =
        socks_connect(a.socks, "alice", "alicepw", &TargetAddr::Ip(echo)).unwrap();
    assert_eq!(rep, 0);
    use std::io::{Read, Write};
    relay.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    relay.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    relay
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut admin_c = c.admin();
    let t0 = Instant::now();
    assert_eq!(status(&mut admin_c, &rm_req("alice")), 0x00);
    let answered = t0.elapsed();
    let closed = matches!(relay.read(&mut buf), Ok(0) | Err(_));
    let cut = t0.elapsed().saturating_sub(answered);
    println!(
        "alice removed on C (answered in {answered:?}): relay on A cut {cut:?} after the answer"
    );
    assert!(
        closed && cut < Duration::from_secs(1),
        "relay cut {cut:?} after the answer"
    );
    wait_listed(&b, "alice", false, Duration::from_secs(1));
    assert!(!authenticates(&b, "alice", "alicepw"));

    // A setting changed on B reads back on A (and C).
    let mut readers = [(&a, a.admin()), (&c, c.admin())];
    assert_eq!(
        status(
            &mut b.admin(),
            &AdminRequest::Modify(Modify::SetBufferSize(12_345))
        ),
        0x00
    );
    let t0 = Instant::now();
    for (i, adm) in &mut readers {
        while value(adm, Query::BufferSize) != 12_345 {
            assert!(
                t0.elapsed() < Duration::from_secs(1),
                "buffer size on {}",
                i.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    println!(
        "buffer size set on B: read back on A and C {:?} after",
        t0.elapsed()
    );
    assert_eq!(pg_users(&pg), ["admin", "probe"].map(String::from).into());
}

#[test]
fn postgres_down_restarted_and_one_instance_cut_off() {
    let _serial = serial();
    let pg = Pg::start();
    // Three roles, so that one instance alone can be kept out.
    pg.sql("CREATE ROLE fleet_a LOGIN SUPERUSER; CREATE ROLE fleet_b LOGIN SUPERUSER; CREATE ROLE fleet_c LOGIN SUPERUSER");
    let mut a = Inst::start(&pg.url("fleet_a", "a"), "a");
    let mut b = Inst::start(&pg.url("fleet_b", "b"), "b");
    let c = Inst::start(&pg.url("fleet_c", "c"), "c");
    add_when_connected(&a, "u1", "u1pw", Duration::from_secs(20));
    wait_listed(&c, "u1", true, Duration::from_secs(20));
    wait_listed(&b, "u1", true, Duration::from_secs(20));

    // C stops; PostgreSQL goes down.
    let (c_dir, c_url) = c.stop();
    pg.stop();
    // Modifications are not durable: FF, and nothing changes.
    let mut adm = a.admin();
    assert_eq!(
        status(&mut adm, &add_req("u2", "u2pw")),
        0xFF,
        "add while down"
    );
    assert_eq!(status(&mut adm, &rm_req("u1")), 0xFF, "remove while down");
    assert!(listed(&mut adm).contains("u1"));
    drop(adm);
    // Everyone still serves the last-known users, C too, started while the database is down.
    let c = Inst::start_in(&c_url, "c", c_dir);
    for i in [&a, &b, &c] {
        assert!(
            authenticates(i, "u1", "u1pw"),
            "u1 on {} while down",
            i.name
        );
        assert!(!listed(&mut i.admin()).contains("u2"));
    }
    a.assert_alive();
    b.assert_alive();

    // PostgreSQL returns: everyone reconnects (back-off at most 5 s) and changes flow again.
    pg.start_again();
    add_when_connected(&b, "u3", "u3pw", Duration::from_secs(20));
    for i in [&a, &c] {
        wait_listed(i, "u3", true, Duration::from_secs(8));
    }

    // C is cut off (its role may not log in, its sessions are ended): what changes meanwhile
    // reaches it only when it returns, by the full re-sync of a reconnection.
    pg.sql("ALTER ROLE fleet_c NOLOGIN; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'fleet_c'");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&mut a.admin(), &add_req("u4", "u4pw")), 0x00);
    assert_eq!(status(&mut a.admin(), &rm_req("u1")), 0x00);
    // Changed on the database side while C is away: a setting, by SQL as an operator would.
    pg.sql("BEGIN; UPDATE socks5d_meta SET version = version + 1; \
            INSERT INTO socks5d_settings (name, value, version) SELECT 'selector_timeout', 9, version FROM socks5d_meta \
            ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version; COMMIT");
    wait_listed(&b, "u4", true, Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(500));
    let mut adm = c.admin();
    let on_c = listed(&mut adm);
    assert!(
        !on_c.contains("u4") && on_c.contains("u1"),
        "C is cut off: {on_c:?}"
    );
    pg.sql("ALTER ROLE fleet_c LOGIN");
    let t0 = Instant::now();
    wait_listed(&c, "u4", true, Duration::from_secs(8));
    wait_listed(&c, "u1", false, Duration::from_secs(1));
    while value(&mut adm, Query::SelectorTimeout) != 9 {
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "selector timeout on C"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("C caught up {:?} after it could log in again", t0.elapsed());
    assert!(authenticates(&c, "u4", "u4pw"));
    // The setting made by SQL (no notification): B has it from its periodic re-read (every
    // second), A not yet (every 60 s), until the notification of the next change.
    let t0 = Instant::now();
    let mut adm_b = b.admin();
    while value(&mut adm_b, Query::SelectorTimeout) != 9 {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "B's periodic re-read"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_ne!(
        value(&mut a.admin(), Query::SelectorTimeout),
        9,
        "A re-reads every 60 s"
    );
    assert_eq!(status(&mut adm_b, &add_req("u5", "u5pw")), 0x00);
    wait_listed(&a, "u5", true, Duration::from_secs(1));
    assert_eq!(value(&mut a.admin(), Query::SelectorTimeout), 9);
    a.assert_alive();
    b.assert_alive();
    let expect: BTreeSet<String> = ["admin", "u3", "u4", "u5"].map(String::from).into();
    assert_eq!(pg_users(&pg), expect);
    for i in [&a, &b, &c] {
        assert_eq!(listed(&mut i.admin()), expect, "{}", i.name);
    }
}

#[test]
fn one_name_added_on_two_instances_at_once_one_wins() {
    let _serial = serial();
    let pg = Pg::start();
    let url = pg.url("postgres", "socks5d");
    let a = Inst::start(&url, "a");
    let b = Inst::start(&url, "b");
    add_when_connected(&a, "probe", "probepw", Duration::from_secs(20));
    wait_listed(&b, "probe", true, Duration::from_secs(20));
    add_when_connected(&b, "probe2", "probepw", Duration::from_secs(20));
    let (mut ca, mut cb) = (a.admin(), b.admin());
    for round in 0..10 {
        let name = format!("race{round}");
        let gate = Arc::new(Barrier::new(2));
        let (ga, gb) = (gate.clone(), gate);
        let (na, nb) = (name.clone(), name.clone());
        let (sa, sb) = std::thread::scope(|s| {
            let ha = s.spawn(|| {
                ga.wait();
                status(&mut ca, &add_req(&na, "pw-a"))
            });
            let hb = s.spawn(|| {
                gb.wait();
                status(&mut cb, &add_req(&nb, "pw-b"))
            });
            (ha.join().unwrap(), hb.join().unwrap())
        });
        let mut got = [sa, sb];
        got.sort_unstable();
        assert_eq!(got, [0x00, 0x01], "round {round}: A {sa:#04x}, B {sb:#04x}");
        // The winner's password works on both.
        let pw = if sa == 0 { "pw-a" } else { "pw-b" };
        wait_listed(&a, &name, true, Duration::from_secs(1));
        wait_listed(&b, &name, true, Duration::from_secs(1));
        if round == 0 {
            assert!(authenticates(&a, &name, pw) && authenticates(&b, &name, pw));
        }
    }
}

#[test]
fn fifty_admins_on_three_instances_converge_on_what_postgres_holds() {
    let _serial = serial();
    let pg = Pg::start();
    let url = pg.url("postgres", "socks5d");
    let insts = [
        Inst::start(&url, "a"),
        Inst::start(&url, "b"),
        Inst::start(&url, "c"),
    ];
    add_when_connected(&insts[0], "probe", "probepw", Duration::from_secs(20));
    for i in &insts[1..] {
        wait_listed(i, "probe", true, Duration::from_secs(20));
    }
    let t0 = Instant::now();
    // Added, name taken, removed, no such user.
    let mut totals = [0u32; 4];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..50u64)
            .map(|k| {
                let inst = &insts[(k % 3) as usize];
                s.spawn(move || {
                    let mut c = inst.admin();
                    let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (k + 1).wrapping_mul(0x2545_f491);
                    let mut counts = [0u32; 4];
                    for _ in 0..6 {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let name = format!("n{}", seed % 200);
                        let adding = (seed >> 40) & 1 == 0;
                        let req = if adding {
                            add_req(&name, "pw")
                        } else {
                            rm_req(&name)
                        };
                        let kind = if adding { 0 } else { 2 };
                        match status(&mut c, &req) {
                            0x00 => counts[kind] += 1,
                            0x01 => counts[kind + 1] += 1,
                            other => panic!("{req:?} on {}: {other:#04x}", inst.name),
                        }
                    }
                    counts
                })
            })
            .collect();
        for h in handles {
            for (t, n) in totals.iter_mut().zip(h.join().unwrap()) {
                *t += n;
            }
        }
    });
    println!(
        "300 changes by 50 admins in {:?}: {} added, {} name taken, {} removed, {} no such user",
        t0.elapsed(),
        totals[0],
        totals[1],
        totals[2],
        totals[3]
    );
    assert_eq!(totals.iter().sum::<u32>(), 300);
    let expect = pg_users(&pg);
    assert!(expect.contains("admin") && expect.contains("probe"));
    let t0 = Instant::now();
    for i in &insts {
        let mut c = i.admin();
        loop {
            let got = listed(&mut c);
            if got == expect {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "{} lists {} users, PostgreSQL holds {}: only on {0}: {:?}, only in PostgreSQL: {:?}",
                i.name,
                got.len(),
                expect.len(),
                got.difference(&expect).collect::<Vec<_>>(),
                expect.difference(&got).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    println!(
        "every instance lists the {} users PostgreSQL holds",
        expect.len()
    );
}
