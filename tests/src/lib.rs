//! Shared test helpers.
//!
//! - [`hostile`]: the hostile-load scenarios, run against the real `socks5d` binary.
//! - [`harness`]: an in-process server on a background thread, on any transport runtime.
//! - [`netns`]: a network namespace of a test's own (veth pair, 198.18.0.0/15), child processes.
//! - [`peers`]: blocking clients (SOCKS5, admin) and the local servers they talk to.
//! - [`pg`]: a private PostgreSQL cluster for a test (the fleet's tests).
//! - [`script`]: every admin request with the answer the spec requires, for end-to-end runs.
//! - [`strategies`]: proptest strategies (`arb_*`) for the conformance tests.
//! - [`fresh_state_dir`]: a state directory of its own for each `socks5d` a test starts;
//!   [`free_port`]: a loopback port for it.

pub mod harness;
pub mod hostile;
pub mod netns;
pub mod peers;
pub mod pg;
pub mod probe_peers;
pub mod script;
pub mod strategies;

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then
/// released): for a server under test to listen on.
///
/// # Panics
///
/// If no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Returns a fresh, empty state directory for one `socks5d` process (its store is locked per
/// directory, so servers started by parallel tests must not share one). Give it to the binary
/// as `STATE_DIRECTORY`.
pub fn fresh_state_dir() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("socks5d-test-state-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::create_dir_all(&d);
    d
}
