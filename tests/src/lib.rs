//! Shared test helpers.
//!
//! - [`hostile`]: the hostile-load scenarios, run against the real `socks5d` binary.
//! - [`harness`]: an in-process server on a background thread, on any transport runtime.
//! - [`netns`]: a network namespace of a test's own (veth pair, 198.18.0.0/15), child processes.
//! - [`peers`]: blocking clients (SOCKS5, admin) and the local servers they talk to.
//! - [`script`]: every admin request with the answer the spec requires, for end-to-end runs.
//! - [`strategies`]: proptest strategies (`arb_*`) for the conformance tests.

pub mod harness;
pub mod hostile;
pub mod netns;
pub mod peers;
pub mod probe_peers;
pub mod script;
pub mod strategies;
