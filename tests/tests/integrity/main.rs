//! State integrity at the meeting points of features: planned operations,
//! restarts and failures in sequence leave every backend that was not
//! explicitly taken out able to take over, and the agent's view, the maps
//! and the traffic agree (namespace lab with the real agent, see
//! `failover_tests::agent_lab`).
//!
//! What the tests check of new flows in `flows`; the tests by meeting
//! point: `planned` (switchover and drill), `restarts` (operator and
//! policy state across restarts), `reload` (refused reloads), `map_writes`
//! (failed map writes), `interfaces` (interfaces, locks and failed
//! starts), `status_timing` (status never delays a decision), `upgrade`
//! (the flow table of an earlier layout or another size).

mod flows;
mod interfaces;
mod map_writes;
mod planned;
mod reload;
mod restarts;
mod status_timing;
mod upgrade;

use std::time::Duration;

use failover_tests::agent_lab::{BACKEND_PORT, Failback, Options, Probe};

pub fn tcp_probe() -> Options {
    Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_secs(5)),
    }
}
