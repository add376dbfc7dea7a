//! The fleet trials: the host gone and back, under load; a host drain.

use std::{
    net::TcpStream,
    time::{Duration, Instant},
};

use failover::lab::load::{self, Load, LongLived, Plan, Recorded};

use crate::fleet_lab::{EDGES, FleetLab, SERVICE_PORT, VIP};

const PACE: Duration = Duration::from_millis(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
const ASK_EVERY: Duration = Duration::from_secs(1);
/// How long a trial leaves the host away.
const AWAY: Duration = Duration::from_secs(3);
const WITHDRAW_BOUND: Duration = Duration::from_secs(5);
const RETURN_BOUND: Duration = Duration::from_secs(30);
/// After the host is back: long enough for every long connection to ask.
const SETTLE: Duration = Duration::from_secs(3);

/// How edge host 0 goes away in a trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Away {
    /// Its agent SIGKILLed and its links down.
    Gone,
    /// Links up, nothing in or out (nftables at its neighbours): only BFD
    /// tells.
    Silent,
}

impl Away {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Gone => "gone (agent killed, links down)",
            Self::Silent => "silent (links up, nothing answers)",
        }
    }
}

pub(super) struct HostTrial {
    pub(super) away: Away,
    pub(super) withdrawn: Option<Duration>,
    pub(super) gap: Duration,
    pub(super) failed: usize,
    pub(super) long_alive: usize,
    pub(super) long_broken: usize,
    /// Of those, the connections pinned off the table before the trials.
    pub(super) pinned_alive: usize,
    pub(super) pinned_broken: usize,
    pub(super) returned: Option<Duration>,
    pub(super) reset_on_return: usize,
}

/// The long connections pinned off the table before the trials, and what
/// sharing them cost, per edge host (its `[sync]` status).
pub(super) struct Pinned {
    pub(super) views: Vec<failover::flow_sync::SyncView>,
    /// The long connections (indexes) some host listed as pinned
    /// (`failover inspect flows --pinned`).
    pub(super) connections: std::collections::BTreeSet<usize>,
    /// Entries in each host's flow table at the time.
    pub(super) entries: Vec<u64>,
}

/// One host with tens of thousands of pinned flows: what a round costs.
pub(super) struct BigRound {
    pub(super) written: u32,
    pub(super) pinned: u64,
    pub(super) walk_ms: f64,
    pub(super) period_ms: u64,
    /// From the write until the peer held a copy of every one.
    pub(super) all_copied: Option<Duration>,
}

/// Flows written on edge 0 for [`BigRound`].
const BIG_ROUND_FLOWS: u32 = 100_000;

pub(super) struct DrainRun {
    pub(super) connections: usize,
    pub(super) failed: usize,
    pub(super) safe_to_stop: Option<Duration>,
}

fn web() -> std::net::SocketAddr {
    std::net::SocketAddr::from((VIP, SERVICE_PORT))
}

pub(super) fn run(count: usize, long: usize) -> (Vec<HostTrial>, DrainRun, Pinned, BigRound) {
    let mut lab = FleetLab::start();
    // The long connections are made while backend0 is out (maintenance on
    // both hosts: backend1 takes over), then backend0 comes back (the
    // failback): about half of them stay on backend1, which the tables no
    // longer name for them: pinned, shared by `[sync]`.
    lab.maintenance("backend0", true);
    std::thread::sleep(Duration::from_millis(300));
    // A handshake lost at the start is retried: the trials measure what
    // happens to connections once they exist.
    let streams: Vec<Option<TcpStream>> = lab.client.run(|| {
        (0..long)
            .map(|_| {
                let connected = (0..3).find_map(|_| load::connect(web(), REQUEST_TIMEOUT).ok());
                Some(connected.expect("a long connection (3 attempts)"))
            })
            .collect()
    });
    lab.maintenance("backend0", false);
    let views = lab.wait_pinned_shared(Duration::from_secs(10));
    let ports: Vec<u16> = streams
        .iter()
        .map(|s| {
            s.as_ref()
                .and_then(|s| s.local_addr().ok())
                .map_or(0, |a| a.port())
        })
        .collect();
    let listed: std::collections::BTreeSet<u16> = lab
        .edges
        .iter()
        .flat_map(|edge| edge.pinned_client_ports())
        .collect();
    let pinned = Pinned {
        entries: lab.edges.iter().map(|e| e.status().flow_entries).collect(),
        views,
        connections: (0..ports.len())
            .filter(|i| listed.contains(&ports[*i]))
            .collect(),
    };
    let per_trial = (AWAY + RETURN_BOUND + SETTLE + WITHDRAW_BOUND) * 2;
    // Enough in flight that no new connection is skipped while a silent
    // host holds some for their whole timeout.
    let plan = Plan {
        in_flight: 512,
        long: Some(LongLived {
            streams,
            every: ASK_EVERY,
            reconnect: None,
        }),
        lifetime: per_trial * (count as u32 + 2) + Duration::from_secs(120),
        ..Plan::new_flows(web(), PACE, REQUEST_TIMEOUT)
    };
    let traffic = Load::start(&lab.client, plan).expect("start the client load");
    std::thread::sleep(ASK_EVERY * 2);
    let trials = [Away::Gone, Away::Silent]
        .into_iter()
        .flat_map(|away| std::iter::repeat_n(away, count))
        .map(|away| host_trial(&mut lab, &traffic, away, &pinned.connections))
        .collect();
    let drain = drain(&lab, &traffic);
    drop(traffic);
    let big = big_round(&lab);
    (trials, drain, pinned, big)
}

/// Edge 0 given [`BIG_ROUND_FLOWS`] flows on backend1 (about half pinned
/// off the table): how long its walk takes and its peer to hold them all.
fn big_round(lab: &FleetLab) -> BigRound {
    let (pinned, all_copied) = lab.big_round(BIG_ROUND_FLOWS, Duration::from_secs(60));
    let view = lab.sync_views().swap_remove(0);
    BigRound {
        written: BIG_ROUND_FLOWS,
        pinned,
        walk_ms: view.last_walk_ms,
        period_ms: view.interval_ms.max((view.last_walk_ms * 5.0) as u64),
        all_copied,
    }
}

/// Long connections (indexes) whose every ask since `since` was answered.
fn alive_since(recorded: &Recorded, since: Instant) -> Vec<usize> {
    recorded
        .long
        .iter()
        .enumerate()
        .filter(|(_, asks)| {
            asks.iter().any(|s| s.started >= since)
                && asks
                    .iter()
                    .filter(|s| s.done >= since)
                    .all(|s| s.result.is_ok())
        })
        .map(|(i, _)| i)
        .collect()
}

fn host_trial(
    lab: &mut FleetLab,
    traffic: &Load,
    away: Away,
    pinned: &std::collections::BTreeSet<usize>,
) -> HostTrial {
    let before = Instant::now() - ASK_EVERY * 2;
    let long_before = alive_since(&traffic.snapshot(), before);
    let killed = Instant::now();
    match away {
        Away::Gone => lab.host_down(0),
        Away::Silent => lab.host_silent(0),
    }
    let withdrawn = lab
        .wait_nexthops(EDGES - 1, WITHDRAW_BOUND)
        .map(|_| killed.elapsed());
    std::thread::sleep(AWAY);
    let back = Instant::now();
    match away {
        Away::Gone => lab.host_up(0),
        Away::Silent => lab.host_heard(0),
    }
    let returned = lab
        .wait_nexthops(EDGES, RETURN_BOUND)
        .map(|_| back.elapsed());
    // The backends reply over both hosts again before the next trial.
    for k in 0..crate::fleet_lab::BACKENDS {
        let _ = lab.wait_return_paths(k, EDGES, RETURN_BOUND);
    }
    std::thread::sleep(SETTLE);
    let recorded = traffic.snapshot();
    let failed_new: Vec<Instant> = recorded
        .new_flows
        .iter()
        .filter(|s| s.started >= killed && s.started < back && s.result.is_err())
        .map(|s| s.started)
        .collect();
    let gap = failed_new
        .iter()
        .max()
        .map_or(Duration::ZERO, |last| *last - killed);
    // Broken while the host was away; a failure after its return counts
    // as a reset on return.
    let broke = |i: usize| {
        recorded.long[i]
            .iter()
            .any(|s| s.done >= killed && s.started < back && s.result.is_err())
    };
    let broken = long_before.iter().filter(|&&i| broke(i)).count();
    let pinned_before: Vec<usize> = long_before
        .iter()
        .copied()
        .filter(|i| pinned.contains(i))
        .collect();
    let pinned_broken = pinned_before.iter().filter(|&&i| broke(i)).count();
    let reset_on_return = recorded
        .new_flows
        .iter()
        .filter(|s| s.started >= back && s.result.is_err())
        .count()
        + long_before
            .iter()
            .filter(|&&i| {
                recorded.long[i]
                    .iter()
                    .any(|s| s.done >= back && s.result.is_err())
            })
            .count();
    HostTrial {
        away,
        withdrawn,
        gap,
        failed: failed_new.len(),
        long_alive: long_before.len(),
        long_broken: broken,
        pinned_alive: pinned_before.len(),
        pinned_broken,
        returned,
        reset_on_return,
    }
}

fn drain(lab: &FleetLab, traffic: &Load) -> DrainRun {
    let started = Instant::now();
    let output = lab.edges[0].failover(&["host", "drain", "--timeout", "60s"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let safe_to_stop = (output.status.success() && stdout.contains("it is safe to stop"))
        .then(|| started.elapsed());
    let ended = Instant::now();
    // Requests in flight at the end finish first.
    std::thread::sleep(REQUEST_TIMEOUT + Duration::from_millis(50));
    let recorded = traffic.snapshot();
    let during: Vec<_> = recorded
        .new_flows
        .iter()
        .filter(|s| s.started >= started && s.started < ended)
        .collect();
    let asks: Vec<_> = recorded
        .long
        .iter()
        .flatten()
        .filter(|s| s.started >= started && s.started < ended)
        .collect();
    let _ = lab.edges[0].failover(&["host", "undrain"]);
    let _ = lab.wait_nexthops(EDGES, RETURN_BOUND);
    DrainRun {
        connections: during.len() + asks.len(),
        failed: during.iter().filter(|s| s.result.is_err()).count()
            + asks.iter().filter(|s| s.result.is_err()).count(),
        safe_to_stop,
    }
}
