//! No false ejection: the web service (two backends, active-passive,
//! checks every 2 s, passive detection as sensitive as the in-band
//! section's) under a new connection every 5 ms for the run's length,
//! beside every kind of [`Noise`]. Nothing of web's may be ejected or
//! switched. The refused service on the same hosts is the control: its
//! backends must be ejected, or the evidence never reached the agent.

use std::time::{Duration, Instant};

use failover::lab::{load::Plan, topology};

use super::{
    CHECKS, PACE, REQUEST_TIMEOUT, SYN_TIMEOUT,
    journal::{self, SWITCHES},
    noise::{Noise, NoiseCounts, REFUSED_BACKEND_PORT, REFUSED_PORT},
};
use crate::{
    agent_lab::{
        AgentLab, BACKEND_PORT, Failback, Layout, Options, PRIMARY, Probe, STANDBY, VIP, web,
    },
    bench::killable::KillableServer,
    config::{BackendToml, PassiveToml, ProbeToml, ServiceToml},
    load::Load,
};

/// Connections a backend serves at once: the load, the aborting clients
/// and the idle connections waiting for the server's reset.
const WORKERS: usize = 48;

pub(super) struct BenignRun {
    pub(super) length: Duration,
    /// Web's backends reported down, and web's switches (each a false one).
    pub(super) web_downs: Vec<String>,
    pub(super) web_switches: Vec<String>,
    /// The control: the refused service's backends reported down.
    pub(super) refused_downs: usize,
    pub(super) new_connections: usize,
    pub(super) failed: usize,
    pub(super) noise: NoiseCounts,
}

fn passive() -> PassiveToml {
    PassiveToml {
        unanswered: Some(3),
        syn_timeout: Some(SYN_TIMEOUT),
        ..PassiveToml::default()
    }
}

pub(super) fn run(length: Duration) -> BenignRun {
    let layout = Layout::primary_standby().probe_timing(CHECKS, CHECKS / 2);
    let options = Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_millis(200)),
    };
    let mut lab = AgentLab::start_layout(options, layout, |dir, config| {
        let probe = ProbeToml::tcp()
            .port(BACKEND_PORT)
            .interval(CHECKS)
            .timeout(CHECKS / 2)
            .rise(2)
            .fall(3);
        let refused_on = |name: &str, i: usize| {
            BackendToml::new(name, topology::backend_addr(i)).port(REFUSED_BACKEND_PORT)
        };
        let mut refused = ServiceToml::tcp("refused", VIP, REFUSED_PORT)
            .probe(probe)
            .backend(refused_on("primary", PRIMARY))
            .backend(refused_on("standby", STANDBY));
        refused.passive = Some(passive());
        config
            .journal(dir.join("events.jsonl"))
            .with_service("web", |mut web| {
                web.passive = Some(passive());
                web
            })
            .service(refused)
    });
    // Servers that live through the run, swapped in while no client sends.
    for server in &mut lab.servers {
        drop(server.take());
    }
    let _servers: Vec<KillableServer> = [(PRIMARY, "primary"), (STANDBY, "standby")]
        .into_iter()
        .map(|(i, name)| KillableServer::start(&lab.backends[i], name, BACKEND_PORT, None, WORKERS))
        .collect();
    let journal_path = lab.dir().join("events.jsonl");
    let from = journal::offset(&journal_path);

    let started = Instant::now();
    let load = Load::start(
        &lab.client,
        Plan {
            lifetime: length + Duration::from_secs(30),
            ..Plan::new_flows(web(), PACE, REQUEST_TIMEOUT)
        },
    )
    .expect("start the client load");
    let noise = Noise::start(&lab.client, &lab.backends[STANDBY], length);
    std::thread::sleep(length.saturating_sub(started.elapsed()));
    let noise = noise.finish();
    let recorded = load.finish();
    // The last evidence is judged within a window; give it one.
    std::thread::sleep(Duration::from_secs(2));

    let events = journal::events(&journal_path, from, None);
    let web_downs = journal::lines(&journal::of(&events, "web", &["backend_down"]));
    let web_switches = journal::lines(&journal::of(&events, "web", SWITCHES));
    let refused_downs = journal::of(&events, "refused", &["backend_down"]).len();
    BenignRun {
        length,
        web_downs,
        web_switches,
        refused_downs,
        new_connections: recorded.new_flows.len(),
        failed: recorded
            .new_flows
            .iter()
            .filter(|s| s.result.is_err())
            .count(),
        noise,
    }
}
