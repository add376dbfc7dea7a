//! The redundancy policies of a service against the real agent (`failover
//! run`) in the namespace lab of `failover_tests::agent_lab`, laid out with
//! three or four backends ([`Layout`]): active-active in one tier (what a
//! failure does to the established flows of the survivors and of the dead
//! backend, with `dead_flows` `rehash` and `keep`, and how new flows spread
//! afterwards), N+1 (a spare takes exactly the failed member's share) and
//! the quorum policies (`next_tier`, `fail_open`, `fail_closed`).
//!
//! Every backend answers TCP on :8080 with its name and runs a health
//! endpoint on :8081 that the test can turn down while the service keeps
//! answering. Probes run every 100 ms (timeout 50 ms, fall 3, rise 2).
//! "Killing" a backend stops its server: its listener goes away (probes and
//! new connections are refused) and its established connections are closed
//! by its kernel (FIN), as when the process dies.
//!
//! Each test builds its own lab, so they run in parallel; every loop is
//! bounded; traffic stays inside the lab's namespaces. The disruption
//! figures are printed (`--nocapture` shows them).
//!
//! The sample sizes here; how a test sets up its lab in `lab`, its
//! long-lived connections in `long`, new-flow spreads in `spread`, the
//! agent's view in `view`; the tests by policy: `active_active`,
//! `n_plus_one`, `quorum`, `reset`.

mod active_active;
mod lab;
mod long;
mod n_plus_one;
mod quorum;
mod reset;
mod spread;
mod view;

use std::time::Duration;

/// New flows sampled to measure a spread (each backend's share is within
/// ±15 points of its expected 50 % with a margin of over 5 standard
/// deviations).
pub const NEW_FLOWS: usize = 300;
/// New flows sampled where a ±10 point tolerance must hold (N+1): 600
/// keeps that near 5 standard deviations too.
pub const NEW_FLOWS_N_PLUS_ONE: usize = 600;
/// Long-lived connections opened before a failure.
pub const LONG: usize = 60;
/// An answer on an established connection (or its error) must come this
/// fast; a connection left hanging would take the 2 s read timeout.
pub const QUICK: Duration = Duration::from_secs(1);
