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

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use failover::lab::{
    load::{Datagrams, Load, LongLived, Plan, Recorded, Sample},
    topology::{self, BackendLink, Topology},
};

use super::{Row, Section, Spread, killable::KillableServer, peers::NsProcess};
use crate::{
    agent_lab::{
        AgentLab, BACKEND_PORT, BACKEND_UDP_PORT, Failback, Layout, Options, PRIMARY, Probe,
        STANDBY, VIP, web,
    },
    config::{BackendToml, ConfigToml, ProbeToml, ServiceToml},
    netns::NetNs,
};

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
        let (set, planned) = ours(interval, count, interval == intervals[1]);
        sets.push(set);
        switchovers.extend(planned);
    }
    for interval in intervals {
        let (set, planned) = haproxy(interval, count, interval == intervals[1]);
        sets.push(set);
        switchovers.extend(planned);
    }
    render(&sets, &switchovers, count)
}

// ---- Traffic -----------------------------------------------------------------

/// The client's load: a new connection every [`PACE`] whatever became of
/// the previous ones (an open loop: a slow failure does not hold back the
/// next request), asks every 10 ms on the long connections (a broken one is
/// recorded and replaced), and, for `udp`, a datagram every [`PACE`] from
/// the next source port of a range (a new flow each, like DNS queries: one
/// long-lived UDP flow would rightly stay on the standby after failback).
fn traffic(client: &NetNs, udp: bool) -> Load {
    let plan = Plan {
        in_flight: 64,
        long: Some(LongLived {
            streams: (0..LONG_CONNECTIONS).map(|_| None).collect(),
            every: Duration::from_millis(10),
            reconnect: Some((SocketAddr::from((VIP, STABLE_PORT)), Duration::from_secs(1))),
        }),
        udp: udp.then(|| Datagrams {
            target: SocketAddr::from((VIP, UDP_PORT)),
            every: PACE,
            ports: 20_000..60_000,
        }),
        lifetime: TRAFFIC_LIFETIME,
        ..Plan::new_flows(web(), PACE, REQUEST_TIMEOUT)
    };
    Load::start(client, plan).expect("start the client load")
}

/// The first sample answered by `name` that finished after `since`.
fn first_answer(samples: &[Sample], name: &str, since: Instant) -> Option<Instant> {
    samples
        .iter()
        .find(|s| s.done > since && s.result.as_deref() == Ok(name))
        .map(|s| s.done)
}

/// Waits (bounded) until `name` answers a new connection after `since`.
fn wait_answer(traffic: &Load, name: &str, since: Instant, bound: Duration) -> Option<Instant> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(at) = first_answer(&traffic.snapshot().new_flows, name, since) {
            return Some(at);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn wait_udp(traffic: &Load, name: &str, since: Instant, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if first_answer(&traffic.snapshot().udp, name, since).is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Waits (bounded) until a full round of asks on the long connections was
/// answered.
fn wait_long_connections(traffic: &Load, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        let long = traffic.snapshot().long;
        if long.len() == LONG_CONNECTIONS
            && long
                .iter()
                .all(|asks| asks.last().is_some_and(|s| s.result.is_ok()))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn failed_between(samples: &[Sample], from: Instant, to: Instant) -> usize {
    samples
        .iter()
        .filter(|s| s.done >= from && s.started <= to && s.result.is_err())
        .count()
}

// ---- The trial loop ------------------------------------------------------------

/// What the trial loop needs from a lab: the primary's namespace and its
/// server, which it kills and brings back.
trait FailoverLab {
    fn primary(&mut self) -> (&NetNs, &mut Option<KillableServer>);

    fn kill_primary(&mut self) {
        if let Some(server) = self.primary().1.take() {
            server.kill();
        }
    }

    fn restore_primary(&mut self) {
        let (ns, server) = self.primary();
        *server = Some(serve(ns, "primary"));
    }
}

/// What the trial loop measured: the trials, the long-connection errors
/// outside their windows (with when), and problems that fail the bench.
struct Outcome {
    trials: Vec<Trial>,
    long_errors_between: Vec<String>,
    failures: Vec<String>,
}

fn trials(lab: &mut impl FailoverLab, traffic: &Load, count: usize, udp: bool) -> Outcome {
    let mut trials = Vec::new();
    let mut failures = Vec::new();
    // The long connections first have to be up (their service's backend may
    // still be coming up when the traffic starts).
    if !wait_long_connections(traffic, FAILBACK_BOUND) {
        failures.push("the long connections never got answers".into());
    }
    let begun = Instant::now();
    // (kill, end of its window, primary restored) of every trial.
    let mut windows: Vec<(Instant, Instant, Instant)> = Vec::new();
    let mut restored = Instant::now();
    for i in 0..count {
        let Some(back) = wait_answer(traffic, "primary", restored, FAILBACK_BOUND) else {
            failures.push(format!("trial {i}: the primary never took new flows again"));
            break;
        };
        if udp && !wait_udp(traffic, "primary", restored, FAILBACK_BOUND) {
            failures.push(format!("trial {i}: the primary never answered UDP again"));
            break;
        }
        let failback_failed = failed_between(&traffic.snapshot().new_flows, restored, back);
        if let Some(previous) = trials.last_mut() {
            let previous: &mut Trial = previous;
            previous.failback_failed = failback_failed;
        }
        std::thread::sleep(Duration::from_millis(150));
        let killed = Instant::now();
        lab.kill_primary();
        let tcp_gap = wait_answer(traffic, "standby", killed, FAILOVER_BOUND);
        let deadline = Instant::now() + FAILOVER_BOUND;
        let mut udp_gap = None;
        while udp && udp_gap.is_none() && Instant::now() < deadline {
            udp_gap = first_answer(&traffic.snapshot().udp, "standby", killed);
            std::thread::sleep(Duration::from_millis(2));
        }
        // Let stragglers finish so they are counted in this trial.
        std::thread::sleep(REQUEST_TIMEOUT + Duration::from_millis(20));
        let settled = Instant::now();
        let Recorded {
            new_flows: tcp,
            long,
            ..
        } = traffic.snapshot();
        let in_window: Vec<&Sample> = long
            .iter()
            .flatten()
            .filter(|s| s.done >= killed && s.started <= settled)
            .collect();
        let trial = Trial {
            tcp_gap: tcp_gap.map(|at| at - killed),
            udp_gap: udp_gap.map(|at| at - killed),
            failed: failed_between(&tcp, killed, tcp_gap.unwrap_or(settled)),
            long_errors: in_window.iter().filter(|s| s.result.is_err()).count(),
            long_asks: in_window.len(),
            long_error: in_window.iter().find_map(|s| {
                s.result.as_ref().err().map(|e| {
                    format!(
                        "{e} ({} ms after the kill)",
                        s.done.saturating_duration_since(killed).as_millis()
                    )
                })
            }),
            failback_failed: 0,
        };
        if trial.tcp_gap.is_none() {
            failures.push(format!("trial {i}: the standby never answered"));
        }
        trials.push(trial);
        lab.restore_primary();
        restored = Instant::now();
        windows.push((killed, settled, restored));
    }
    if let Some(back) = wait_answer(traffic, "primary", restored, FAILBACK_BOUND)
        && let Some(last) = trials.last_mut()
    {
        last.failback_failed = failed_between(&traffic.snapshot().new_flows, restored, back);
    }
    let long_errors_between = traffic
        .snapshot()
        .long
        .iter()
        .flatten()
        .filter(|s| s.done >= begun && s.result.is_err())
        .filter(|s| {
            !windows
                .iter()
                .any(|(killed, settled, _)| s.done >= *killed && s.started <= *settled)
        })
        .map(|s| {
            let error = s
                .result
                .as_ref()
                .err()
                .map(|e| e.detail.clone())
                .unwrap_or_default();
            match windows
                .iter()
                .rposition(|(_, _, restored)| *restored <= s.done)
            {
                Some(i) => format!(
                    "{error} ({} ms after trial {i}'s primary was restored)",
                    (s.done - windows[i].2).as_millis()
                ),
                None => format!("{error} (before the first trial)"),
            }
        })
        .collect();
    Outcome {
        trials,
        long_errors_between,
        failures,
    }
}

// ---- Ours --------------------------------------------------------------------

struct Ours {
    lab: AgentLab,
    primary: Option<KillableServer>,
    _standby: [KillableServer; 2],
}

impl FailoverLab for Ours {
    fn primary(&mut self) -> (&NetNs, &mut Option<KillableServer>) {
        (&self.lab.backends[PRIMARY], &mut self.primary)
    }
}

/// The standby's server for the second service.
fn serve_stable(ns: &NetNs) -> KillableServer {
    KillableServer::start(
        ns,
        "standby",
        STABLE_BACKEND_PORT,
        None,
        2 + LONG_CONNECTIONS,
    )
}

fn serve(ns: &NetNs, name: &str) -> KillableServer {
    KillableServer::start(
        ns,
        name,
        BACKEND_PORT,
        Some(BACKEND_UDP_PORT),
        8 + LONG_CONNECTIONS,
    )
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

fn ours(interval: Duration, count: usize, with_switchover: bool) -> (TrialSet, Vec<Switchover>) {
    let layout = Layout::primary_standby().probe_timing(interval, interval / 2);
    let options = Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_millis(200)),
    };
    let mut lab = AgentLab::start_layout(options, layout, |dir, config| {
        extra_services(dir, config, interval)
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
    };
    let traffic = traffic(&ours.lab.client, true);
    // Replacing the servers made the agent fail over once already; the
    // journal is read from when the primary serves again.
    let journal = ours.lab.dir().join("events.jsonl");
    let since = Instant::now();
    wait_answer(&traffic, "primary", since, FAILBACK_BOUND);
    wait_udp(&traffic, "primary", since, FAILBACK_BOUND);
    let journal_offset = std::fs::metadata(&journal).map_or(0, |m| m.len() as usize);
    let Outcome {
        trials,
        long_errors_between,
        mut failures,
    } = trials(&mut ours, &traffic, count, true);
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

/// The agent's own timings of the web service's failovers, from its journal.
/// What the agent's journal says about the trials.
struct Journal {
    decision_to_flip_us: Vec<f64>,
    detection_ms: Vec<f64>,
    /// Failovers of the web service.
    failovers: usize,
    /// The standby reported down: it never failed, so a false failure.
    standby_down: usize,
}

fn read_journal(path: &std::path::Path, offset: usize) -> Journal {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(offset..).unwrap_or_default());
    let mut failovers = 0;
    let mut standby_down = 0;
    let mut decision = Vec::new();
    let mut detection = Vec::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["kind"] == "backend_down" && event["backend"] == "standby" {
            standby_down += 1;
        }
        if event["kind"] != "failover" || event["service"] != "web" {
            continue;
        }
        failovers += 1;
        let details = &event["details"];
        if let Some(us) = details["decisive_result_to_map_update_us"].as_f64() {
            decision.push(us);
        }
        if let Some(ms) = details["first_failure_to_map_update_ms"].as_f64() {
            detection.push(ms);
        }
    }
    Journal {
        decision_to_flip_us: decision,
        detection_ms: detection,
        failovers,
        standby_down,
    }
}

/// A planned switchover to the standby and back under the same load:
/// `switch(to)` asks the peer to send new flows to `to`.
fn planned_switchovers(
    peer: &'static str,
    traffic: &Load,
    failures: &mut Vec<String>,
    mut switch: impl FnMut(&str) -> Result<(), String>,
) -> Vec<Switchover> {
    let mut done = Vec::new();
    for (direction, to) in [
        ("primary → standby", "standby"),
        ("standby → primary", "primary"),
    ] {
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        if let Err(err) = switch(to) {
            failures.push(format!("{peer}: switchover {direction}: {err}"));
            break;
        }
        let Some(reached) = wait_answer(traffic, to, started, FAILOVER_BOUND) else {
            failures.push(format!(
                "{peer}: switchover {direction}: {to} never took new flows"
            ));
            break;
        };
        std::thread::sleep(Duration::from_millis(300));
        let tcp = traffic.snapshot().new_flows;
        let window: Vec<&Sample> = tcp.iter().filter(|s| s.done >= started).collect();
        done.push(Switchover {
            peer,
            direction,
            failed: window.iter().filter(|s| s.result.is_err()).count(),
            requests: window.len(),
            took: reached - started,
        });
    }
    done
}

// ---- HAProxy -------------------------------------------------------------------

struct Haproxy {
    lab: Topology,
    primary: Option<KillableServer>,
}

impl FailoverLab for Haproxy {
    fn primary(&mut self) -> (&NetNs, &mut Option<KillableServer>) {
        (&self.lab.backends[PRIMARY], &mut self.primary)
    }
}

fn haproxy_config(interval: Duration, admin: &std::path::Path) -> String {
    let inter = format!("{}ms", interval.as_millis().max(1));
    let (primary, standby) = (
        topology::backend_addr(PRIMARY),
        topology::backend_addr(STANDBY),
    );
    format!(
        "global\n  maxconn 4096\n  stats socket {} mode 600 level admin\n\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 10s\n  \
         timeout server 10s\n  retries 2\n  option redispatch\n\n\
         frontend web\n  bind {VIP}:80\n  default_backend web\n\n\
         backend web\n  server primary {primary}:{BACKEND_PORT} check inter {inter} fall 3 rise 2\n  \
         server standby {standby}:{BACKEND_PORT} check inter {inter} fall 3 rise 2 backup\n\n\
         frontend stable\n  bind {VIP}:{STABLE_PORT}\n  default_backend stable\n\n\
         backend stable\n  server standby {standby}:{STABLE_BACKEND_PORT}\n",
        admin.display()
    )
}

fn haproxy(interval: Duration, count: usize, with_switchover: bool) -> (TrialSet, Vec<Switchover>) {
    let links = [
        BackendLink {
            role: "hpprimary",
            lb_if: "lbp",
        },
        BackendLink {
            role: "hpstandby",
            lb_if: "lbs",
        },
    ];
    let lab = Topology::build("hpclient", "hplb", &links);
    // HAProxy listens on the VIP itself.
    lab.lb
        .ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
    let standby = [
        serve(&lab.backends[STANDBY], "standby"),
        serve_stable(&lab.backends[STANDBY]),
    ];
    let primary = serve(&lab.backends[PRIMARY], "primary");
    let dir = std::env::temp_dir().join(format!("fo-bench-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("haproxy dir");
    let config = dir.join("haproxy.cfg");
    let admin = dir.join("admin.sock");
    std::fs::write(&config, haproxy_config(interval, &admin)).expect("haproxy config");
    let mut process = NsProcess::start(
        &lab.lb,
        "haproxy",
        &["-db", "-f", config.to_str().expect("utf-8 path")],
        &dir.join("haproxy.log"),
    );
    std::thread::sleep(Duration::from_millis(300));
    process.assert_running();
    let mut haproxy = Haproxy {
        lab,
        primary: Some(primary),
    };
    let traffic = traffic(&haproxy.lab.client, false);
    let Outcome {
        trials,
        long_errors_between,
        mut failures,
    } = trials(&mut haproxy, &traffic, count, false);
    // Planned: drain the primary (the backup takes new flows once no
    // active server may), then make it ready again.
    let switchovers = if with_switchover && failures.is_empty() {
        planned_switchovers(HAPROXY, &traffic, &mut failures, |to| {
            let state = if to == "standby" { "drain" } else { "ready" };
            haproxy_command(&admin, &format!("set server web/primary state {state}"))
        })
    } else {
        Vec::new()
    };
    drop(traffic);
    drop(process);
    drop(standby);
    let _ = std::fs::remove_dir_all(&dir);
    let set = TrialSet {
        peer: HAPROXY,
        interval,
        trials,
        decision_to_flip_us: Vec::new(),
        detection_ms: Vec::new(),
        journal_failovers: None,
        long_errors_between,
        standby_false_downs: None,
        failures,
    };
    (set, switchovers)
}

/// One command on HAProxy's admin socket; its answer must be empty (success).
fn haproxy_command(socket: &std::path::Path, command: &str) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    if answer.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{command}: {}", answer.trim()))
    }
}

// ---- Report --------------------------------------------------------------------

fn ms(samples: impl Iterator<Item = Duration>) -> Spread {
    let values: Vec<f64> = samples.map(|d| d.as_secs_f64() * 1000.0).collect();
    Spread::of(&values)
}

fn render(sets: &[TrialSet], switchovers: &[Switchover], count: usize) -> Section {
    let mut md = format!(
        "{count} trials per row. A trial kills the primary under load (a new TCP connection every \
         {} ms, each given {} ms; a UDP datagram every {} ms; {LONG_CONNECTIONS} long connections \
         to a second service on the standby, asked every 10 ms). Gap: kill → first answer from the \
         standby. Failed: new connections that failed in that window. Long errors: errors on the \
         long connections (flows on a healthy backend) during the trial. Failback failed: new \
         connections that failed while the primary came back. Both peers: TCP-connect checks, \
         fall 3, rise 2; HAProxy does not proxy UDP.\n\n\
         | peer | probe interval | TCP gap p50 / p99 ms | UDP gap p50 / p99 ms | failed per trial p50 / p99 (total) | long-connection errors | failback failed (total) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        PACE.as_millis(),
        REQUEST_TIMEOUT.as_millis(),
        PACE.as_millis()
    );
    let mut json = Vec::new();
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for set in sets {
        let tcp = ms(set.trials.iter().filter_map(|t| t.tcp_gap));
        let udp = ms(set.trials.iter().filter_map(|t| t.udp_gap));
        let failed: Vec<f64> = set.trials.iter().map(|t| t.failed as f64).collect();
        let failed_spread = Spread::of(&failed);
        let failed_total: usize = set.trials.iter().map(|t| t.failed).sum();
        let long_errors: usize = set.trials.iter().map(|t| t.long_errors).sum();
        let long_asks: usize = set.trials.iter().map(|t| t.long_asks).sum();
        let failback: usize = set.trials.iter().map(|t| t.failback_failed).sum();
        let udp_text = if udp.count == 0 {
            "–".to_owned()
        } else {
            format!("{:.1} / {:.1}", udp.median, udp.p99)
        };
        md += &format!(
            "| {} | {} ms | {:.1} / {:.1} | {udp_text} | {:.0} / {:.0} ({failed_total}) | {long_errors} of {long_asks} | {failback} |\n",
            set.peer,
            set.interval.as_millis(),
            tcp.median,
            tcp.p99,
            failed_spread.median,
            failed_spread.p99,
        );
        json.push(serde_json::json!({
            "peer": set.peer,
            "probe_interval_ms": set.interval.as_millis() as u64,
            "trials": set.trials.len(),
            "tcp_gap_ms": {"p50": tcp.median, "p99": tcp.p99, "min": tcp.min, "max": tcp.max},
            "udp_gap_ms": {"p50": udp.median, "p99": udp.p99},
            "failed_per_trial": {"p50": failed_spread.median, "p99": failed_spread.p99, "total": failed_total},
            "long_connection_errors": long_errors,
            "long_connection_asks": long_asks,
            "long_connection_errors_first": set.trials.iter().filter_map(|t| t.long_error.clone()).collect::<Vec<_>>(),
            "standby_false_downs": set.standby_false_downs,
            "long_connection_errors_between_trials": set.long_errors_between,
            "failback_failed": failback,
            "decisive_result_to_map_update_us": set.decision_to_flip_us,
            "first_failure_to_map_update_ms": set.detection_ms,
            "samples_tcp_gap_ms": set.trials.iter().map(|t| t.tcp_gap.map(|d| d.as_secs_f64() * 1000.0)).collect::<Vec<_>>(),
        }));
        failures.extend(
            set.failures
                .iter()
                .map(|f| format!("{} {} ms: {f}", set.peer, set.interval.as_millis())),
        );
        if set.peer.starts_with("failover") {
            let peer = sets
                .iter()
                .find(|s| !s.peer.starts_with("failover") && s.interval == set.interval);
            let peer_gap = peer.map(|p| ms(p.trials.iter().filter_map(|t| t.tcp_gap)));
            summary.push(Row {
                measure: format!(
                    "Unplanned failover gap, {} ms checks (fall 3), p50 / p99",
                    set.interval.as_millis()
                ),
                ours: format!("{:.1} / {:.1} ms", tcp.median, tcp.p99),
                reference: peer_gap.map_or("–".into(), |g| {
                    format!("HAProxy backup: {:.1} / {:.1} ms", g.median, g.p99)
                }),
                ratio: peer_gap.map_or("–".into(), |g| format!("{:.2}x", tcp.median / g.median)),
            });
            let peer_failed: Option<usize> = peer.map(|p| p.trials.iter().map(|t| t.failed).sum());
            summary.push(Row {
                measure: format!(
                    "Failed new connections per failover, {} ms checks, p50 (total of {count})",
                    set.interval.as_millis()
                ),
                ours: format!("{:.0} ({failed_total})", failed_spread.median),
                reference: peer.map_or("–".into(), |p| {
                    let f: Vec<f64> = p.trials.iter().map(|t| t.failed as f64).collect();
                    format!(
                        "HAProxy: {:.0} ({})",
                        Spread::of(&f).median,
                        peer_failed.unwrap_or(0)
                    )
                }),
                ratio: "–".into(),
            });
            summary.push(Row {
                measure: format!(
                    "Healthy-backend flows disturbed by failover, {} ms checks",
                    set.interval.as_millis()
                ),
                ours: format!("{long_errors} errors of {long_asks}"),
                reference: peer.map_or("–".into(), |p| {
                    format!(
                        "HAProxy: {} errors of {}",
                        p.trials.iter().map(|t| t.long_errors).sum::<usize>(),
                        p.trials.iter().map(|t| t.long_asks).sum::<usize>()
                    )
                }),
                ratio: "–".into(),
            });
        }
    }
    for set in sets {
        let errors: Vec<String> = set
            .trials
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.long_error.as_ref().map(|e| format!("trial {i}: {e}")))
            .collect();
        if !errors.is_empty() {
            md += &format!(
                "\nLong-connection errors, {} at {} ms: {}.\n",
                set.peer,
                set.interval.as_millis(),
                errors.join("; ")
            );
        }
        if !set.long_errors_between.is_empty() {
            md += &format!(
                "\nLong-connection errors between trials, {} at {} ms: {}.\n",
                set.peer,
                set.interval.as_millis(),
                set.long_errors_between.join("; ")
            );
        }
    }
    let mut agent_md = String::new();
    for set in sets.iter().filter(|s| !s.decision_to_flip_us.is_empty()) {
        let decision = Spread::of(&set.decision_to_flip_us);
        let detection = Spread::of(&set.detection_ms);
        agent_md += &format!(
            "| {} ms | {} | {} | {} | {:.0} / {:.0} | {:.1} / {:.1} |\n",
            set.interval.as_millis(),
            set.trials.len(),
            set.journal_failovers.unwrap_or(0),
            set.standby_false_downs.unwrap_or(0),
            decision.median,
            decision.p99,
            detection.median,
            detection.p99
        );
        summary.push(Row {
            measure: format!(
                "Agent: decisive probe result → map flip, {} ms checks, p50 / p99",
                set.interval.as_millis()
            ),
            ours: format!("{:.0} / {:.0} µs", decision.median, decision.p99),
            reference: "–".into(),
            ratio: "–".into(),
        });
    }
    if !agent_md.is_empty() {
        md += "\nThe agent's own timing of the same failovers (from its journal): \
               decisive probe result → maps written, and first failed probe → maps written.\n\n\
               | probe interval | trials | failovers in the journal | healthy standby reported down | decisive result → flip p50 / p99 µs | first failure → flip p50 / p99 ms |\n|---:|---:|---:|---:|---:|---:|\n";
        md += &agent_md;
    }
    if !switchovers.is_empty() {
        md += "\nPlanned switchover under the same load, 100 ms checks: ours with `failover \
               switchover web --to ...`, HAProxy by setting the primary's state to `drain` and back \
               to `ready` on its admin socket. New connections from the command until 300 ms after \
               the target answered.\n\n\
               | peer | direction | new connections | failed | command → target answers ms |\n|---|---|---:|---:|---:|\n";
        for s in switchovers {
            md += &format!(
                "| {} | {} | {} | {} | {:.1} |\n",
                s.peer,
                s.direction,
                s.requests,
                s.failed,
                s.took.as_secs_f64() * 1000.0
            );
        }
        let total = |peer: &str| {
            let of_peer = switchovers.iter().filter(|s| s.peer == peer);
            let failed: usize = of_peer.clone().map(|s| s.failed).sum();
            let requests: usize = of_peer.map(|s| s.requests).sum();
            format!("{failed} of {requests}")
        };
        summary.push(Row {
            measure: "Planned switchover and back: failed new connections (target 0)".into(),
            ours: total(OURS),
            reference: format!("HAProxy drain/ready: {}", total(HAPROXY)),
            ratio: "–".into(),
        });
    }
    Section {
        title: "Failover under load",
        markdown: md,
        json: serde_json::json!({
            "sets": json,
            "switchovers": switchovers.iter().map(|s| serde_json::json!({
                "peer": s.peer, "direction": s.direction, "requests": s.requests, "failed": s.failed,
                "took_ms": s.took.as_secs_f64() * 1000.0,
            })).collect::<Vec<_>>(),
        }),
        summary,
        failures,
    }
}
