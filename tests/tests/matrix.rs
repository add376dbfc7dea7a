//! The state-integrity matrix: for each state a backend can be in (up,
//! failing, maintenance, operator drain with a deadline, policy drain,
//! failback hold, cold standby started, after a switchover and back, after
//! a drill) × each event (SIGKILL and restart, reload unchanged, reload
//! changing another service, refused reload, then a crash of the backend
//! taking new flows): the maps, `status`, `inspect` and `/metrics` agree
//! before and after, nothing the operator or the policy decided changes,
//! and an established flow stays on its backend. After the crash, new flows
//! reach the backend that should take over (or, where nothing may, none).
//!
//! One lab per state (the real agent in the namespace lab, see
//! `failover_tests::agent_lab`): web (primary tier 0, standby tier 1) and
//! api, a second service on the same hosts.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, TcpStream},
    time::{Duration, Instant},
};

use failover_tests::{
    agent_lab::{
        AgentLab, Failback, HEALTH_PORT, HOSTS, Health, Layout, Options, PRIMARY, Probe,
        SECOND_SERVICE_PORT, STANDBY, VIP, ask, new_flows,
    },
    config::{
        BackendToml, ConfigToml, DeadFlows, ProbeToml, ServiceToml, SetPolicies, Temperature,
    },
    metrics::{metric, scrape},
    status::{StatusAnswer, backend, new_flows_to, service},
};

const METRICS_PORT: u16 = 9392;
/// Time for probes to act after an event (rise and fall are 2 and 3 at
/// 100 ms).
const SETTLE: Duration = Duration::from_millis(700);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Up,
    Failing,
    Maintenance,
    OperatorDrain,
    PolicyDrain,
    FailbackHold,
    ColdStarted,
    SwitchedOverAndBack,
    AfterDrill,
}

impl State {
    /// Who must take new flows after the backend taking them crashes.
    fn survivor_after_crash(self) -> Option<&'static str> {
        match self {
            Self::Up | Self::SwitchedOverAndBack | Self::AfterDrill => Some("standby"),
            // A held primary is healthy: losing the standby releases it.
            Self::FailbackHold => Some("primary"),
            // The primary failed or was taken out by the operator.
            Self::Failing
            | Self::Maintenance
            | Self::OperatorDrain
            | Self::PolicyDrain
            | Self::ColdStarted => None,
        }
    }
}

/// The lab's configuration with metrics, the api service (VIP:81 → both
/// hosts' :8080, probed every 100 ms) and, for [`State::ColdStarted`], a
/// cold standby.
fn extra(state: State, config: ConfigToml) -> ConfigToml {
    let config = if state == State::ColdStarted {
        config.with_service("web", |web| {
            web.with_backend("standby", |b| b.temperature(Temperature::Cold))
        })
    } else {
        config
    };
    config.metrics(format!("127.0.0.1:{METRICS_PORT}")).service(
        ServiceToml::tcp("api", VIP, 81)
            .probe(
                ProbeToml::tcp()
                    .port(SECOND_SERVICE_PORT)
                    .interval(Duration::from_millis(100)),
            )
            .backend(BackendToml::new("a1", HOSTS[PRIMARY].addr).port(SECOND_SERVICE_PORT))
            .backend(
                BackendToml::new("a2", HOSTS[STANDBY].addr)
                    .port(SECOND_SERVICE_PORT)
                    .tier(1),
            ),
    )
}

/// Everything that must not change through an event, and must agree
/// between status, inspect and metrics.
#[derive(Debug, PartialEq)]
struct View {
    new_flows_to: Vec<String>,
    switchover: Option<String>,
    /// name → (state, admin reason without times, healthy).
    backends: BTreeMap<String, (String, Option<String>, bool)>,
}

fn admin_kind(admin: Option<&str>) -> Option<String> {
    // "failback in 4.2s" counts down; its kind does not.
    admin.map(|a| a.split(" in ").next().unwrap_or(a).to_owned())
}

/// The agent's view of web, checked against the maps and the metrics.
fn view(lab: &AgentLab) -> View {
    let status = lab.status();
    let web = service(&status, "web");
    let inspected = lab.inspect(&["backends"]);
    let metrics = scrape(lab, METRICS_PORT);
    let mut backends = BTreeMap::new();
    for b in &web.backends {
        let name = b.name.clone();
        let state = b.state.clone();
        let healthy = b.healthy;
        let in_maps = inspected
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["service"] == web.id && row["address"] == b.address.as_str())
            .unwrap_or_else(|| panic!("{name} is not in the maps: {inspected:#}"));
        assert_eq!(
            in_maps["state"], state,
            "status and the maps disagree on {name}: {status:#?}\n{inspected:#}"
        );
        let labels = [("service", "web"), ("backend", name.as_str())];
        let state_labels = [labels[0], labels[1], ("state", state.as_str())];
        assert_eq!(
            metric(&metrics, "failover_backend_state", &state_labels),
            Some(1.0),
            "metrics disagree on {name}'s state {state}:\n{metrics}"
        );
        assert_eq!(
            metric(&metrics, "failover_backend_healthy", &labels),
            Some(f64::from(u8::from(healthy))),
            "metrics disagree on {name}'s health"
        );
        backends.insert(name, (state, admin_kind(b.admin.as_deref()), healthy));
    }
    View {
        new_flows_to: new_flows_to(&status, "web"),
        switchover: web.switchover.clone(),
        backends,
    }
}

fn options(state: State) -> Options {
    Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: match state {
            State::FailbackHold => Failback::Auto(Duration::from_secs(300)),
            _ => Failback::Auto(Duration::from_millis(500)),
        },
    }
}

fn wait_until(lab: &AgentLab, what: &str, mut done: impl FnMut(&StatusAnswer) -> bool) {
    let started = Instant::now();
    loop {
        let status = lab.status();
        if done(&status) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{what}: {status:#?}\n{}",
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Brings a fresh lab into `state`.
fn enter(lab: &mut AgentLab, state: State) {
    let primary_state = |st: &StatusAnswer| backend(st, "web", "primary").state.clone();
    match state {
        State::Up => {}
        State::Failing | State::PolicyDrain => {
            lab.health[PRIMARY].set(Health::Down);
            wait_until(lab, "the primary fails", |st| primary_state(st) != "up");
        }
        State::Maintenance => {
            lab.ctl(&["maintenance", "web/primary", "on"]);
        }
        State::OperatorDrain => {
            lab.ctl(&["drain", "web/primary", "--deadline", "300s", "--no-wait"]);
        }
        State::FailbackHold => {
            lab.health[PRIMARY].set(Health::Down);
            wait_until(lab, "the primary fails", |st| primary_state(st) == "down");
            lab.health[PRIMARY].set(Health::Up);
            wait_until(lab, "the primary is held", |st| {
                backend(st, "web", "primary").healthy
            });
        }
        State::ColdStarted => {
            lab.health[PRIMARY].set(Health::Down);
            drop(lab.servers[PRIMARY].take());
            wait_until(lab, "the cold standby serves", |st| {
                new_flows_to(st, "web") == ["standby"]
            });
        }
        State::SwitchedOverAndBack => {
            lab.ctl(&["switchover", "web", "--to", "standby"]);
            lab.ctl(&["switchover", "web", "--to", "primary"]);
        }
        State::AfterDrill => {
            let load = new_flows(
                &lab.client,
                Duration::from_millis(20),
                Duration::from_millis(500),
            );
            lab.ctl(&["drill", "web", "--verify-for", "5s"]);
            load.finish();
        }
    }
    std::thread::sleep(SETTLE);
}

/// An event of the matrix: its name and what it does to the lab.
type Event<'a> = (&'static str, &'a dyn Fn(&mut AgentLab));

fn check_state(state: State) {
    let layout = if state == State::PolicyDrain {
        Layout::primary_standby().dead_flows(DeadFlows::Keep)
    } else {
        Layout::primary_standby()
    };
    let mut lab = AgentLab::start_layout(options(state), layout, |_, config| extra(state, config));
    lab.wait_log("metrics endpoint ready", Duration::from_secs(5));
    enter(&mut lab, state);
    let base = lab.config().clone();
    let before = view(&lab);
    let taker = before.new_flows_to.first().cloned();
    // An established flow on the backend taking new flows (if any).
    let mut long: Option<(TcpStream, String)> = taker.as_ref().map(|name| {
        let mut stream = lab.connect();
        let answer = ask(&mut stream).expect("ask on the long connection");
        assert_eq!(
            &answer, name,
            "{state:?}: new flows are not where status says"
        );
        (stream, answer)
    });

    let events: [Event; 4] = [
        ("SIGKILL and restart", &|lab: &mut AgentLab| {
            lab.kill_agent();
            lab.start_agent();
        }),
        ("reload unchanged", &|lab: &mut AgentLab| {
            lab.ctl(&["reload"]);
        }),
        ("reload changing another service", &|lab: &mut AgentLab| {
            let mut changed = base.clone();
            changed.service_mut("api").probe.interval = Some(Duration::from_millis(150));
            lab.write_config(&changed);
            let out = lab.ctl(&["reload"]);
            assert!(out.contains("api"), "{out}");
        }),
        ("refused reload", &|lab: &mut AgentLab| {
            let current = lab.config().clone();
            let mut broken = current.clone();
            let api = broken.service_mut("api");
            for i in 0..65u8 {
                api.backends.push(
                    BackendToml::new(format!("x{i}"), Ipv4Addr::new(198, 51, 100, 100 + i % 100))
                        .port(20_000 + u16::from(i)),
                );
            }
            lab.write_config(&broken);
            let (ok, out) = lab.ctl_output(&["reload"]);
            assert!(!ok && out.contains("at most 64"), "{out}");
            lab.write_config(&current);
        }),
    ];
    for (what, event) in events {
        event(&mut lab);
        std::thread::sleep(SETTLE);
        let after = view(&lab);
        assert_eq!(
            after,
            before,
            "{state:?}: {what} changed the state\n{}",
            lab.diag()
        );
        if let Some((stream, name)) = long.as_mut() {
            let answer = ask(stream).unwrap_or_else(|e| {
                panic!(
                    "{state:?}: {what}: the long flow broke: {e}\n{}",
                    lab.diag()
                )
            });
            assert_eq!(&answer, name, "{state:?}: {what}: the long flow moved");
        }
    }

    // The backend taking new flows crashes.
    let Some(taker) = taker else { return };
    let index = if taker == "primary" { PRIMARY } else { STANDBY };
    let crashed = Instant::now();
    lab.health[index].set(Health::Down);
    drop(lab.servers[index].take());
    match state.survivor_after_crash() {
        Some(survivor) => {
            let samples = lab.sample_until_since(
                survivor,
                Duration::from_secs(6),
                crashed,
                Duration::from_millis(100),
            );
            assert!(
                samples.reached().is_some(),
                "{state:?}: after {taker} crashed, new flows never reached {survivor}: {}\n{}",
                samples.summary(),
                lab.diag()
            );
        }
        None => wait_until(&lab, "the crashed backend is taken out", |st| {
            new_flows_to(st, "web").is_empty()
        }),
    }
    std::thread::sleep(SETTLE);
    // Whatever happened, the three views still agree.
    let _ = view(&lab);
}

#[test]
fn up() {
    check_state(State::Up);
}

#[test]
fn failing() {
    check_state(State::Failing);
}

#[test]
fn maintenance() {
    check_state(State::Maintenance);
}

#[test]
fn operator_drain_with_deadline() {
    check_state(State::OperatorDrain);
}

#[test]
fn policy_drain() {
    check_state(State::PolicyDrain);
}

#[test]
fn failback_hold() {
    check_state(State::FailbackHold);
}

#[test]
fn cold_standby_started() {
    check_state(State::ColdStarted);
}

#[test]
fn after_a_switchover_and_back() {
    check_state(State::SwitchedOverAndBack);
}

#[test]
fn after_a_drill() {
    check_state(State::AfterDrill);
}
