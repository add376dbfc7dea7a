//! Unplanned failover under load, ours against HAProxy, and planned
//! switchover.
//!
//! Each lab has a client, an edge host and two backends (primary, standby)
//! in namespaces. The client keeps opening a new TCP connection to the VIP
//! every few milliseconds, sends a UDP datagram every few milliseconds (ours
//! only: HAProxy 2.6 does not proxy UDP), and asks on long-lived connections
//! to a second service whose only backend is the standby (flows on a healthy
//! backend, which a failover elsewhere must not disturb). A trial kills the
//! primary at an exact instant ([`KillableServer::kill`]: connections
//! refused from then on, as after a crash) and measures the gap to the first
//! answer from the standby, the requests that failed, and errors on the
//! long connections; then it restores the primary and waits for failback.
//!
//! Both peers probe with TCP connects at the same interval with fall 3 and
//! rise 2. Ours fails back after a 200 ms hold-down; HAProxy has none.
//! HAProxy runs with `retries 2` and `option redispatch`, a usual setting.
//!
//! The parts: `traffic` (the client's load and waits on it), `servers`
//! (the backends' killable servers), `trial_loop` (kill, measure,
//! restore), `switchover` (planned switchovers), `ours` (the agent's lab)
//! with its `journal`, `haproxy` (HAProxy's lab), `report`.

mod haproxy;
pub mod in_band;
mod journal;
mod ours;
mod report;
mod servers;
mod switchover;
mod traffic;
mod trial_loop;

use std::time::Duration;

use self::{haproxy::haproxy, ours::ours, report::render};
use crate::bench::Section;

/// The second service: its only backend is the standby, on a port of its
/// own (two services sending to one backend address and port would be
/// mixed up at the backend whenever a client used one source port for both;
/// `failover check` warns of that).
const STABLE_PORT: u16 = 81;
const STABLE_BACKEND_PORT: u16 = 8090;
const UDP_PORT: u16 = 53;
/// The peers' names in the report.
const OURS: &str = "failover (XDP)";
const HAPROXY: &str = "HAProxy 2.6 (tcp, backup)";
/// Pace of new connections and datagrams.
const PACE: Duration = Duration::from_millis(5);
/// Each new connection's connect + request + answer deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(100);
const LONG_CONNECTIONS: usize = 4;
/// Bounds of the waits inside a trial.
const FAILOVER_BOUND: Duration = Duration::from_secs(5);
const FAILBACK_BOUND: Duration = Duration::from_secs(15);
/// Every traffic thread stops after this, whatever happens.
const TRAFFIC_LIFETIME: Duration = Duration::from_secs(400);

/// What one trial measured.
#[derive(Clone, Debug, Default)]
struct Trial {
    tcp_gap: Option<Duration>,
    udp_gap: Option<Duration>,
    failed: usize,
    long_errors: usize,
    long_asks: usize,
    /// What the first long-connection error was, with its time from the kill.
    long_error: Option<String>,
    failback_failed: usize,
}

/// The trials of one peer at one probe interval.
struct TrialSet {
    peer: &'static str,
    interval: Duration,
    trials: Vec<Trial>,
    /// Ours: the agent's own decisive probe result → map flip, µs.
    decision_to_flip_us: Vec<f64>,
    /// Ours: first failed probe → map flip, ms.
    detection_ms: Vec<f64>,
    /// Ours: failovers of the service in the agent's journal (one per trial
    /// unless a probe falsely failed).
    journal_failovers: Option<usize>,
    /// Long-connection errors between the trials' windows.
    long_errors_between: Vec<String>,
    /// Ours: times the (healthy) standby was reported down.
    standby_false_downs: Option<usize>,
    failures: Vec<String>,
}

struct Switchover {
    peer: &'static str,
    direction: &'static str,
    failed: usize,
    requests: usize,
    took: Duration,
}

pub fn run(quick: bool) -> Section {
    let count = if quick { 3 } else { 20 };
    let intervals = [Duration::from_millis(10), Duration::from_millis(100)];
    let mut sets = Vec::new();
    let mut switchovers = Vec::new();
    for interval in intervals {
        let (set, planned) = ours(interval, count, interval == intervals[1], None);
        sets.push(set);
        switchovers.extend(planned);
    }
    for interval in intervals {
        let (set, planned) = haproxy(interval, count, interval == intervals[1], None);
        sets.push(set);
        switchovers.extend(planned);
    }
    render(&sets, &switchovers, count)
}
