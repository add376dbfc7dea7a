//! A flapping primary: its server is killed and restarted every 2 s for
//! the run's length, under a new connection every 5 ms. The web service
//! checks every 200 ms (fall 3, rise 2), fails back after 200 ms, runs
//! passive detection and SYN redispatch, and damps flaps with the default
//! `[services.damping]` (half-life 10 s, suppress 2000, reuse 1000, 1000
//! per failure). Counted from the agent's journal: how often new flows
//! changed hands while the primary flapped, and whether it took them back
//! once it stopped flapping; from the client: the connections that failed.

use std::time::{Duration, Instant};

use failover::lab::load::Plan;

use super::{
    PACE, REQUEST_TIMEOUT, SYN_TIMEOUT,
    journal::{self, SWITCHES},
};
use crate::{
    agent_lab::{AgentLab, BACKEND_PORT, Failback, Layout, Options, PRIMARY, Probe, STANDBY, web},
    bench::killable::KillableServer,
    config::{DampingToml, PassiveToml},
    load::Load,
};

/// How long the primary stays up, and down, in each flap.
pub(super) const FLAP: Duration = Duration::from_secs(2);
const CHECKS: Duration = Duration::from_millis(200);
const WORKERS: usize = 16;
/// How long the primary may take to be reused once it stops flapping.
const REUSE_BOUND: Duration = Duration::from_secs(90);

pub(super) struct FlappingRun {
    pub(super) length: Duration,
    pub(super) flaps: usize,
    /// Changes of who takes new flows while the primary flapped.
    pub(super) switches: Vec<String>,
    pub(super) suppressions: usize,
    pub(super) new_connections: usize,
    pub(super) failed: usize,
    /// From the last restart to the primary answering new connections again.
    pub(super) back_after: Option<Duration>,
}

pub(super) fn run(length: Duration) -> FlappingRun {
    let layout = Layout::primary_standby().probe_timing(CHECKS, CHECKS / 2);
    let options = Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_millis(200)),
    };
    let mut lab = AgentLab::start_layout(options, layout, |dir, config| {
        config
            .journal(dir.join("events.jsonl"))
            .with_service("web", |mut web| {
                web.passive = Some(PassiveToml {
                    unanswered: Some(3),
                    syn_timeout: Some(SYN_TIMEOUT),
                    ..PassiveToml::default()
                });
                web.damping = Some(DampingToml::default());
                web
            })
    });
    for server in &mut lab.servers {
        drop(server.take());
    }
    let serve = |i: usize, name: &str| {
        KillableServer::start(&lab.backends[i], name, BACKEND_PORT, None, WORKERS)
    };
    let _standby = serve(STANDBY, "standby");
    let mut primary = Some(serve(PRIMARY, "primary"));
    let journal_path = lab.dir().join("events.jsonl");
    let load = Load::start(
        &lab.client,
        Plan {
            lifetime: length + REUSE_BOUND + Duration::from_secs(30),
            ..Plan::new_flows(web(), PACE, REQUEST_TIMEOUT)
        },
    )
    .expect("start the client load");
    // Swapping the servers may have failed the primary over; start once it
    // takes new flows again.
    let settled = Instant::now();
    while !answered_by_primary_since(&load, settled) && settled.elapsed() < REUSE_BOUND {
        std::thread::sleep(Duration::from_millis(100));
    }
    let from = journal::offset(&journal_path);
    let started = Instant::now();
    let mut flaps = 0;
    while started.elapsed() + 2 * FLAP <= length {
        std::thread::sleep(FLAP);
        if let Some(server) = primary.take() {
            server.kill();
        }
        std::thread::sleep(FLAP);
        primary = Some(serve(PRIMARY, "primary"));
        flaps += 1;
    }
    let ended = Instant::now();
    let to = journal::offset(&journal_path);
    let mut back_after = None;
    // Coarse: each look copies the whole recording.
    while back_after.is_none() && ended.elapsed() < REUSE_BOUND {
        std::thread::sleep(Duration::from_millis(500));
        if answered_by_primary_since(&load, ended) {
            back_after = Some(ended.elapsed());
        }
    }
    let recorded = load.finish();
    let events = journal::events(&journal_path, from, Some(to));
    let window: Vec<_> = recorded
        .new_flows
        .iter()
        .filter(|s| s.started >= started && s.started < ended)
        .collect();
    FlappingRun {
        length: ended - started,
        flaps,
        switches: journal::lines(&journal::of(&events, "web", SWITCHES)),
        suppressions: journal::of(&events, "web", &["backend_suppressed"]).len(),
        new_connections: window.len(),
        failed: window.iter().filter(|s| s.result.is_err()).count(),
        back_after,
    }
}

fn answered_by_primary_since(load: &Load, since: Instant) -> bool {
    load.snapshot()
        .new_flows
        .iter()
        .any(|s| s.started > since && s.result.as_deref() == Ok("primary"))
}
