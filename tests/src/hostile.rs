//! The hostile-load suite (issue 17): the real `socks5d` binary under attack, on loopback.
//!
//! Each scenario starts its own server process ([`server::ServerProcess`]), attacks it, keeps a
//! well-behaved client (and, where it matters, an administrator) probing it meanwhile, and
//! returns a report of what it measured: the load held, the good client's latency, the
//! server's CPU and memory, and what was lost. The reports carry the facts; the callers
//! (`app/tests/hostile.rs`) assert on correctness, never on absolute speed.
//!
//! | module | attack |
//! |---|---|
//! | [`slowloris`] | many clients dribble a valid handshake, one byte every 2 s, on both ports |
//! | [`idle_flood`] | more silent connections than the server has descriptors |
//! | [`blackhole`] | CONNECTs to a destination whose accept queue is full (SYNs dropped) |
//! | [`half_close`] | relays where one side sends FIN and then goes silent (CLOSE-WAIT) |
//! | [`transfers`] | concurrent transfers of random sizes with half-closes both ways; SHA-256 and the admin byte counters must match |
//! | [`garbage`] | seeded random bytes on both ports |
//! | [`soak`] | minutes of mixed well-behaved load (on demand, `#[ignore]`): descriptors and RSS must come back |
//!
//! Every run is bounded in connections and in time, talks only to 127.0.0.1, and stops by
//! itself. Random choices come from a seed, so a failing run can be repeated.
//!
//! The library lives here rather than in the bench's load generator because the scenarios
//! are correctness tests of the binary that `cargo test` must run in CI: the bench crate is
//! binary-only and not a default workspace member, and `CARGO_BIN_EXE_socks5d` is only
//! known to the `socks5d` package's own integration tests, which call these functions.

pub mod blackhole;
pub mod client;
pub mod garbage;
pub mod half_close;
pub mod idle_flood;
pub mod server;
pub mod slowloris;
pub mod soak;
pub mod stats;
pub mod transfers;

/// The proxy user every scenario's server knows (`-u alice:secret`).
pub const USER: &str = "alice";
/// [`USER`]'s password.
pub const PASS: &str = "secret";
/// The administrator every scenario's server knows (`-a root:rootpw`).
pub const ADMIN_USER: &str = "root";
/// [`ADMIN_USER`]'s password.
pub const ADMIN_PASS: &str = "rootpw";

/// The server's SOCKS and admin handshake deadline (PROTOCOL.md, "Values and limits").
pub const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Builds the runtime the scenarios run their clients on: two worker threads, so that a
/// probing client is not starved by the attack's tasks.
///
/// # Panics
///
/// If the runtime cannot be built.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
