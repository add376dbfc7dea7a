//! The agent at scale: 1,000 services × 4 backends on the edge host of a
//! namespace lab whose four backend hosts accept and close.
//!
//! Two layouts, both the way NAT mode wants them (each service sends to its
//! own backend port, so replies are never ambiguous):
//!
//! - own ports: every service probes its backends' traffic ports: 4,000
//!   distinct probes (40,000 a second at 100 ms);
//! - shared health port: the traffic ports differ but every service probes
//!   the hosts' one health port, so the agent runs one probe per host and
//!   hands each result to every service (4 probes per interval).
//!
//! Measured per run (its own agent): the time from start to "agent running"
//! (maps, Maglev tables and programs for every service), then over a fixed
//! window the agent's CPU (user and system, from /proc/<pid>/stat), its
//! resident memory, and the backends it reported unhealthy (all are
//! healthy: every report is a false failure). The machine's busy CPU in the
//! window is reported too: the kernel's TCP work for the probes, on both
//! ends, is part of what they cost.
//!
//! Services use `table_size = 1021`: 2,000 tables of the default 16,411
//! slots would not fit the Maglev map, and four backends need no more.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use failover::lab::{
    agent::AgentProcess,
    topology::{self, BackendLink, Topology},
};

use super::{
    Row, Section, Spread,
    acceptor::PortRangeAcceptor,
    cpu::{machine_busy_seconds, process_cpu_seconds, rss_kib},
};
use crate::{
    config::{BackendToml, ConfigToml, ProbeToml, ServiceToml, XdpMode},
    pins::PinDir,
};

const SERVICES: usize = 1_000;
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const BACKENDS: usize = 4;
/// The hosts' health port (shared-health-port layout).
const HEALTH_PORT: u16 = 8080;
/// Service `s` listens on VIP port FIRST_PORT + s, its backends on
/// FIRST_BACKEND_PORT + s.
const FIRST_PORT: u16 = 10_000;
const FIRST_BACKEND_PORT: u16 = 20_000;
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
const START_BOUND: Duration = Duration::from_secs(120);

pub fn run(quick: bool) -> Section {
    let (warmup, window, samples) = if quick {
        (Duration::from_secs(2), Duration::from_secs(3), 3)
    } else {
        (Duration::from_secs(3), Duration::from_secs(10), 10)
    };
    let names: Vec<String> = (0..BACKENDS).map(|i| format!("lbb{i}")).collect();
    let links: Vec<BackendLink<'_>> = names
        .iter()
        .map(|name| BackendLink {
            role: "cpbackend",
            lb_if: name,
        })
        .collect();
    let lab = Topology::build("cpclient", "cplb", &links);
    for name in &names {
        // The probes are generated on the lb.
        lab.lb.disable_tx_checksum(name);
    }
    for ns in lab.namespaces() {
        ns.sysctl("net/ipv4/tcp_tw_reuse", "1");
        ns.sysctl("net/ipv4/ip_local_port_range", "1024 65000");
    }
    let _backends: Vec<[PortRangeAcceptor; 2]> = lab
        .backends
        .iter()
        .map(|ns| {
            [
                PortRangeAcceptor::start(ns, HEALTH_PORT..HEALTH_PORT + 1),
                PortRangeAcceptor::start(
                    ns,
                    FIRST_BACKEND_PORT..FIRST_BACKEND_PORT + SERVICES as u16,
                ),
            ]
        })
        .collect();

    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for (layout, interval) in [
        (Probes::OwnPorts, PROBE_INTERVAL),
        (Probes::OwnPorts, Duration::from_secs(1)),
        (Probes::SharedHealthPort, PROBE_INTERVAL),
    ] {
        match measure(&lab, layout, interval, warmup, window, samples) {
            Ok(run) => runs.push(run),
            Err(problem) => failures.push(problem),
        }
    }
    render(&runs, warmup, failures)
}

/// What the services probe.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probes {
    OwnPorts,
    SharedHealthPort,
}

impl Probes {
    fn describe(self) -> &'static str {
        match self {
            Self::OwnPorts => "own ports",
            Self::SharedHealthPort => "shared health port",
        }
    }
}

/// One agent run at one probe interval.
struct Run {
    layout: Probes,
    /// Probe tasks the agent runs (from its "agent running" line).
    probe_tasks: usize,
    interval: Duration,
    startup: Duration,
    seconds: f64,
    user_cores: f64,
    system_cores: f64,
    machine_cores: f64,
    rss_mib: Vec<f64>,
    unhealthy: usize,
    example: Option<String>,
}

impl Run {
    fn probes_per_s(&self) -> f64 {
        (SERVICES * BACKENDS) as f64 / self.interval.as_secs_f64()
    }
}

fn measure(
    lab: &Topology,
    layout: Probes,
    interval: Duration,
    warmup: Duration,
    window: Duration,
    samples: usize,
) -> Result<Run, String> {
    let pins = PinDir::new();
    let dir = std::env::temp_dir().join(format!(
        "fo-bench-cp-{}-{}",
        std::process::id(),
        interval.as_millis()
    ));
    std::fs::create_dir_all(&dir).expect("agent dir");
    let config = dir.join("failover.toml");
    std::fs::write(&config, config_text(&pins, &dir, layout, interval)).expect("write the config");
    let log = dir.join("agent.log");
    let started = Instant::now();
    let mut agent = AgentProcess::start(
        &lab.lb,
        &crate::failover_bin(),
        &config,
        &dir.join("agent.pid"),
        &log,
    )
    .expect("start the agent");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    while !read_log().contains("agent running") {
        if let Ok(Some(status)) = agent.try_wait() {
            return Err(format!(
                "the agent exited at start ({status}):\n{}",
                tail(&read_log())
            ));
        }
        if started.elapsed() > START_BOUND {
            return Err(format!(
                "the agent did not start in {START_BOUND:?}:\n{}",
                tail(&read_log())
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let startup = started.elapsed();
    let probe_tasks = probe_tasks(&read_log());
    std::thread::sleep(warmup);

    let pid = agent.pid();
    let unhealthy_before = read_log().matches("backend unhealthy").count();
    let cpu_before = process_cpu_seconds(pid);
    let machine_before = machine_busy_seconds();
    let window_started = Instant::now();
    let mut rss_mib = Vec::new();
    for _ in 0..samples {
        std::thread::sleep(window / samples as u32);
        rss_mib.push(rss_kib(pid) as f64 / 1024.0);
    }
    let seconds = window_started.elapsed().as_secs_f64();
    let cpu_after = process_cpu_seconds(pid);
    let machine_cores = (machine_busy_seconds() - machine_before) / seconds;
    let log_text = read_log();
    let unhealthy = log_text.matches("backend unhealthy").count() - unhealthy_before;
    let example = log_text
        .lines()
        .filter(|l| l.contains("backend unhealthy"))
        .nth(unhealthy_before)
        .map(str::to_owned);
    let exited = agent.try_wait().ok().flatten();
    drop(agent);
    let _ = failover::dataplane::remove_pins(pins.path());
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(status) = exited {
        return Err(format!("the agent exited during the window: {status}"));
    }
    Ok(Run {
        layout,
        probe_tasks,
        interval,
        startup,
        seconds,
        user_cores: (cpu_after.0 - cpu_before.0) / seconds,
        system_cores: (cpu_after.1 - cpu_before.1) / seconds,
        machine_cores,
        rss_mib,
        unhealthy,
        example,
    })
}

fn render(runs: &[Run], warmup: Duration, failures: Vec<String>) -> Section {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = format!(
        "{SERVICES} services × {BACKENDS} backends (active-active, Maglev 1021 slots each), \
         TCP-connect probes (closed with a reset), timeout 50 ms, fall 3. Own ports: each service \
         probes its backends' traffic ports (one probe task per service and backend). Shared \
         health port: every service probes the hosts' port {HEALTH_PORT}, so the agent runs one \
         probe task per host and delivers each result to every service (results/s counts those \
         deliveries). Each row is its own agent, measured over a \
         window after a {} s warm-up. Agent CPU is split into user time (the agent's own work) \
         and system time, which includes the kernel's TCP work for the probes on both ends \
         (veth delivers to the backend in the sender's context). The backends are on the same \
         {cores}-core machine.\n\n\
         | probes | probe tasks | interval | probe results/s | start → running s | agent user cores (µs per result) | agent system cores (µs per result) | machine busy cores | RSS MiB median (min–max) | unhealthy reports (all backends healthy) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        warmup.as_secs()
    );
    let mut summary = Vec::new();
    let mut json = Vec::new();
    for run in runs {
        let rss = Spread::of(&run.rss_mib);
        let per_probe = |cores: f64| cores * 1e6 / run.probes_per_s();
        md += &format!(
            "| {} | {} | {} ms | {:.0} | {:.2} | {:.2} ({:.1}) | {:.2} ({:.1}) | {:.2} of {cores} | {:.1} ({:.1}–{:.1}) | {} |\n",
            run.layout.describe(),
            run.probe_tasks,
            run.interval.as_millis(),
            run.probes_per_s(),
            run.startup.as_secs_f64(),
            run.user_cores,
            per_probe(run.user_cores),
            run.system_cores,
            per_probe(run.system_cores),
            run.machine_cores,
            rss.median,
            rss.min,
            rss.max,
            run.unhealthy,
        );
        summary.push(Row {
            measure: format!(
                "Agent, {SERVICES} services × {BACKENDS} backends, {}, {} ms: CPU (user + system), RSS, false unhealthy reports",
                run.layout.describe(),
                run.interval.as_millis()
            ),
            ours: format!(
                "{:.2} + {:.2} cores, {:.0} MiB, {}",
                run.user_cores, run.system_cores, rss.median, run.unhealthy
            ),
            reference: format!(
                "{} probe tasks, {:.0} results/s; machine {:.2} of {cores} cores busy",
                run.probe_tasks,
                run.probes_per_s(),
                run.machine_cores
            ),
            ratio: "–".into(),
        });
        json.push(serde_json::json!({
            "layout": run.layout.describe(), "probe_tasks": run.probe_tasks,
            "probe_interval_ms": run.interval.as_millis() as u64, "results_per_s": run.probes_per_s(),
            "startup_s": run.startup.as_secs_f64(), "window_s": run.seconds,
            "agent_user_cores": run.user_cores, "agent_system_cores": run.system_cores,
            "machine_busy_cores": run.machine_cores, "rss_mib": run.rss_mib,
            "unhealthy_reports": run.unhealthy,
        }));
    }
    for run in runs {
        if let Some(line) = &run.example {
            md += &format!(
                "\nFirst unhealthy report, {} at {} ms:\n\n```text\n{line}\n```\n",
                run.layout.describe(),
                run.interval.as_millis()
            );
        }
    }
    if let Some(run) = runs.first() {
        summary.push(Row {
            measure: format!("Agent start with {SERVICES} services × {BACKENDS} backends"),
            ours: format!("{:.2} s", run.startup.as_secs_f64()),
            reference: "–".into(),
            ratio: "–".into(),
        });
    }
    Section {
        title: "Control plane at scale",
        markdown: md,
        json: serde_json::json!({"services": SERVICES, "backends_per_service": BACKENDS, "runs": json}),
        summary,
        failures,
    }
}

/// Every service on `lbc`'s VIP at its own port, Maglev tables of 1021
/// slots, its four backends on its own backend port; TCP probes every
/// `interval` on the backends' traffic ports or on the hosts' health port.
fn config_text(pins: &PinDir, dir: &std::path::Path, layout: Probes, interval: Duration) -> String {
    let mut probe = ProbeToml::tcp()
        .interval(interval)
        .timeout(Duration::from_millis(50))
        .rise(2)
        .fall(3);
    if let Probes::SharedHealthPort = layout {
        probe = probe.port(HEALTH_PORT);
    }
    let mut config = ConfigToml::new()
        .pin_dir(pins.path())
        .control_socket(dir.join("control.sock"))
        .interface("lbc", XdpMode::Native);
    for s in 0..SERVICES {
        let mut service = ServiceToml::tcp(format!("svc{s}"), VIP, FIRST_PORT + s as u16)
            .table_size(1021)
            .probe(probe.clone());
        for b in 0..BACKENDS {
            service = service.backend(
                BackendToml::new(format!("b{b}"), topology::backend_addr(b))
                    .port(FIRST_BACKEND_PORT + s as u16),
            );
        }
        config = config.service(service);
    }
    config.render()
}

/// `probes=N` from the agent's "agent running" line.
fn probe_tasks(log: &str) -> usize {
    log.lines()
        .find(|l| l.contains("agent running"))
        .and_then(|l| l.split("probes=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
