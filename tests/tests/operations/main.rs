//! The operations features against the real agent (`failover run`) in the
//! namespace lab of `failover_tests::agent_lab`: planned switchover under
//! continuous client load, drain with a deadline, reload (CLI and SIGHUP,
//! good and bad configurations), the Prometheus endpoint cross-checked
//! against the traffic sent, the webhook alert and the journal, and the
//! failover drill.
//!
//! The CLI verbs run in the test's own namespace and reach the agent over
//! its control socket (a path in the lab's temp dir). Everything the agent
//! listens on besides (metrics, the test's webhook receiver) is on
//! 127.0.0.1 inside the lb namespace; client traffic stays between the
//! lab's namespaces. Every loop and thread is bounded.
//!
//! What several tests share: `clients` (the client's connections and
//! samples), `decisions` (what status says about decisions); the tests by
//! concern: `switchover`, `drain`, `reload`, `metrics`, `webhook` (with
//! its HTTP `receiver`), `drill`.

mod clients;
mod decisions;
mod drain;
mod drill;
mod metrics;
mod receiver;
mod reload;
mod switchover;
mod webhook;

use std::time::Duration;

use failover_tests::agent_lab::{BACKEND_PORT, Failback, Options, Probe};

pub fn tcp_probe() -> Options {
    Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_secs(5)),
    }
}
