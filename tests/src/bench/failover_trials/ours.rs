//! Ours: the agent's lab, its configuration and its trials.

use std::time::{Duration, Instant};

use failover::lab::topology;

use super::{
    FAILBACK_BOUND, OURS, STABLE_BACKEND_PORT, STABLE_PORT, Switchover, TrialSet, UDP_PORT,
    in_band::{Fault, SYN_TIMEOUT},
    journal::read_journal,
    servers::{serve, serve_stable},
    switchover::planned_switchovers,
    traffic::{traffic, wait_answer, wait_udp},
    trial_loop::{FailoverLab, Outcome, trials},
};
use crate::{
    agent_lab::{
        AgentLab, BACKEND_PORT, BACKEND_UDP_PORT, Failback, Layout, Options, PRIMARY, Probe,
        STANDBY, VIP,
    },
    bench::killable::KillableServer,
    config::{BackendToml, ConfigToml, PassiveToml, ProbeToml, ServiceToml},
    netns::NetNs,
};

struct Ours {
    lab: AgentLab,
    primary: Option<KillableServer>,
    _standby: [KillableServer; 2],
    fault: Fault,
}

impl FailoverLab for Ours {
    fn primary(&mut self) -> (&NetNs, &mut Option<KillableServer>) {
        (&self.lab.backends[PRIMARY], &mut self.primary)
    }

    fn fault(&self) -> Fault {
        self.fault
    }
}

/// The lab's configuration with the journal and the two other services:
/// dns (UDP, on both hosts' UDP port) and stable (the standby only).
fn extra_services(dir: &std::path::Path, config: ConfigToml, interval: Duration) -> ConfigToml {
    let probe = ProbeToml::tcp()
        .interval(interval)
        .timeout(interval / 2)
        .rise(2)
        .fall(3);
    let backend = |name: &str, i: usize, port: u16, tier: u8| {
        BackendToml::new(name, topology::backend_addr(i))
            .port(port)
            .tier(tier)
    };
    config
        .journal(dir.join("events.jsonl"))
        .service(
            ServiceToml::udp("dns", VIP, UDP_PORT)
                .failback_auto(Duration::from_millis(200))
                .probe(probe.clone().port(BACKEND_PORT))
                .backend(backend("primary", PRIMARY, BACKEND_UDP_PORT, 0))
                .backend(backend("standby", STANDBY, BACKEND_UDP_PORT, 1)),
        )
        .service(
            ServiceToml::tcp("stable", VIP, STABLE_PORT)
                .probe(probe)
                .backend(backend("standby", STANDBY, STABLE_BACKEND_PORT, 0)),
        )
}

/// Ours at probe `interval`: `count` trials, then planned switchovers if
/// asked. `in_band`: the in-band detection runs (passive detection on,
/// the primary failing that way), else the primary is killed.
pub(super) fn ours(
    interval: Duration,
    count: usize,
    with_switchover: bool,
    in_band: Option<Fault>,
) -> (TrialSet, Vec<Switchover>) {
    let layout = Layout::primary_standby().probe_timing(interval, interval / 2);
    let options = Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_millis(200)),
    };
    let mut lab = AgentLab::start_layout(options, layout, |dir, config| {
        let config = extra_services(dir, config, interval);
        match in_band {
            None => config,
            Some(_) => config.with_service("web", |mut web| {
                web.passive = Some(PassiveToml {
                    unanswered: Some(3),
                    syn_timeout: Some(SYN_TIMEOUT),
                    ..PassiveToml::default()
                });
                web
            }),
        }
    });
    // Our own servers replace the lab's: they can be killed at an instant.
    for server in &mut lab.servers {
        drop(server.take());
    }
    let primary = serve(&lab.backends[PRIMARY], "primary");
    let standby = [
        serve(&lab.backends[STANDBY], "standby"),
        serve_stable(&lab.backends[STANDBY]),
    ];
    let mut ours = Ours {
        lab,
        primary: Some(primary),
        _standby: standby,
        fault: in_band.unwrap_or(Fault::Kill),
    };
    let udp = in_band.is_none();
    let traffic = traffic(&ours.lab.client, udp);
    // Replacing the servers made the agent fail over once already; the
    // journal is read from when the primary serves again.
    let journal = ours.lab.dir().join("events.jsonl");
    let since = Instant::now();
    wait_answer(&traffic, "primary", since, FAILBACK_BOUND);
    if udp {
        wait_udp(&traffic, "primary", since, FAILBACK_BOUND);
    }
    let journal_offset = std::fs::metadata(&journal).map_or(0, |m| m.len() as usize);
    let Outcome {
        trials,
        long_errors_between,
        mut failures,
    } = trials(&mut ours, &traffic, count, udp);
    let switchovers = if with_switchover && failures.is_empty() {
        let socket = ours.lab.socket();
        let socket = socket.to_str().expect("utf-8 socket path").to_owned();
        planned_switchovers(OURS, &traffic, &mut failures, |to| {
            let output =
                ours.lab
                    .failover_output(&["--socket", &socket, "switchover", "web", "--to", to]);
            if output.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        })
    } else {
        Vec::new()
    };
    drop(traffic);
    let journal = read_journal(&journal, journal_offset);
    (
        TrialSet {
            peer: OURS,
            interval,
            trials,
            decision_to_flip_us: journal.decision_to_flip_us,
            detection_ms: journal.detection_ms,
            journal_failovers: Some(journal.failovers),
            long_errors_between,
            standby_false_downs: Some(journal.standby_down),
            failures,
        },
        switchovers,
    )
}
