//! State integrity at the meeting points of features: planned operations,
//! restarts and failures in sequence leave every backend that was not
//! explicitly taken out able to take over, and the agent's view, the maps
//! and the traffic agree (namespace lab with the real agent, see
//! `failover_tests::agent_lab`).

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use failover_tests::{
    agent_lab::{
        AgentLab, BACKEND_PORT, FAILOVER_BOUND, Failback, Layout, Options, PRIMARY, Probe,
        new_flows,
    },
    config::{BackendToml, DeadFlows, InterfaceToml, ProbeToml, ServiceToml},
    status::{backend, new_flows_to},
};

fn tcp_probe() -> Options {
    Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_secs(5)),
    }
}

/// Waits (bounded) until new flows reach `name`.
fn expect_new_flows_on(lab: &AgentLab, name: &str, since: Instant, bound: Duration) -> Duration {
    let samples = lab.sample_until_since(name, bound, since, Duration::from_millis(100));
    samples.reached().unwrap_or_else(|| {
        panic!(
            "new flows never reached {name}: {}\n{}",
            samples.summary(),
            lab.diag()
        )
    })
}

#[test]
fn a_switchover_and_back_leaves_the_standby_able_to_take_over() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.ctl(&["switchover", "web", "--to", "standby"]);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(2));
    let back = lab.ctl(&["switchover", "web", "--to", "primary"]);
    expect_new_flows_on(&lab, "primary", Instant::now(), Duration::from_secs(2));
    let status = lab.status();
    let standby = backend(&status, "web", "standby");
    assert_eq!(
        (standby.state.as_str(), standby.admin.as_deref()),
        ("up", None),
        "after switching back, the standby must be a plain standby again; switchover said:\n{back}\n{status:#?}"
    );

    // The next crash of the primary is a failover, not an outage.
    let t0 = Instant::now();
    drop(lab.servers[PRIMARY].take());
    let gap = expect_new_flows_on(&lab, "standby", t0, Duration::from_secs(6));
    assert!(gap < FAILOVER_BOUND, "took {gap:?}\n{}", lab.diag());
}

#[test]
fn the_target_of_a_switchover_failing_hands_new_flows_back() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.ctl(&["switchover", "web", "--to", "standby"]);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(2));
    // The standby (the switchover's target) crashes: the primary, which
    // the switchover only took new flows from, serves again.
    let t0 = Instant::now();
    drop(lab.servers[1].take());
    let gap = expect_new_flows_on(&lab, "primary", t0, Duration::from_secs(6));
    assert!(gap < FAILOVER_BOUND, "took {gap:?}\n{}", lab.diag());
    assert_eq!(new_flows_to(&lab.status(), "web"), ["primary"]);
}

#[test]
fn a_drill_on_an_active_active_tier_restores_every_member() {
    let layout = Layout::tiers(&[("a", 0), ("b", 0), ("c", 0), ("spare", 1)]);
    let lab = AgentLab::start_layout(tcp_probe(), layout, |_, config| config);
    let before = new_flows_to(&lab.status(), "web");
    assert_eq!(before, ["a", "b", "c"]);
    // The drill verifies the standby with real replies: keep clients coming.
    let load = new_flows(
        &lab.client,
        Duration::from_millis(20),
        Duration::from_millis(500),
    );
    let report = lab.ctl(&["drill", "web", "--verify-for", "5s"]);
    let recorded = load.finish();
    assert!(report.contains("drill passed"), "{report}\n{}", lab.diag());
    let status = lab.status();
    assert_eq!(
        new_flows_to(&status, "web"),
        before,
        "the drill must restore every member:\n{report}\n{status:#?}"
    );
    for name in ["a", "b", "c", "spare"] {
        let b = backend(&status, "web", name);
        assert_eq!(
            (b.state.as_str(), b.admin.as_deref()),
            ("up", None),
            "{name} after the drill:\n{report}\n{status:#?}"
        );
    }
    assert_eq!(
        recorded.failures(),
        0,
        "no request fails during a drill\n{}",
        lab.diag()
    );
}

// ---- Operator and policy state across restarts ---------------------------------

/// SIGKILLs the agent and starts it again on the same pins (a crash and
/// a supervisor's restart).
fn crash_and_restart(lab: &mut AgentLab) {
    lab.kill_agent();
    lab.start_agent();
}

fn state_and_admin(lab: &AgentLab, name: &str) -> (String, Option<String>) {
    let status = lab.status();
    let b = backend(&status, "web", name);
    (b.state.clone(), b.admin.clone())
}

/// Samples `n` new flows and checks that all went to `name`.
fn all_new_flows_on(lab: &AgentLab, name: &str, n: usize, what: &str) {
    let samples = lab.sample(n, Duration::from_millis(20));
    assert_eq!(
        samples.answered_by(name),
        n,
        "{what}: {}\n{}",
        samples.summary(),
        lab.diag()
    );
}

/// Long enough for the restarted agent's probes to pass `rise` and act on it.
const SETTLE: Duration = Duration::from_millis(800);

#[test]
fn maintenance_survives_a_crash_and_restart() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.ctl(&["maintenance", "web/primary", "on"]);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(2));
    crash_and_restart(&mut lab);
    // The primary answers its probes, but it is in maintenance.
    std::thread::sleep(SETTLE);
    assert_eq!(
        state_and_admin(&lab, "primary"),
        ("down".into(), Some("maintenance".into())),
        "{}",
        lab.diag()
    );
    all_new_flows_on(&lab, "standby", 20, "maintenance after a restart");
    lab.ctl(&["maintenance", "web/primary", "off"]);
    expect_new_flows_on(&lab, "primary", Instant::now(), Duration::from_secs(2));
}

#[test]
fn a_policy_drain_survives_a_restart_as_a_policy_drain() {
    // dead_flows = "keep": a failed backend is draining (its flows stay),
    // not drained by an operator; once healthy it fails back on its own.
    let layout = Layout::primary_standby().dead_flows(DeadFlows::Keep);
    let options = Options {
        probe: Probe::Tcp {
            port: failover_tests::agent_lab::HEALTH_PORT,
        },
        failback: Failback::Auto(Duration::from_millis(500)),
    };
    let mut lab = AgentLab::start_layout(options, layout, |_, config| config);
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Down);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(3));
    assert_eq!(state_and_admin(&lab, "primary"), ("draining".into(), None));
    crash_and_restart(&mut lab);
    std::thread::sleep(SETTLE);
    assert_eq!(
        state_and_admin(&lab, "primary"),
        ("draining".into(), None),
        "a policy drain came back as something else\n{}",
        lab.diag()
    );
    let recovered = Instant::now();
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Up);
    expect_new_flows_on(&lab, "primary", recovered, Duration::from_secs(5));
}

#[test]
fn a_drain_deadline_survives_a_crash_and_restart() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.ctl(&["drain", "web/primary", "--deadline", "3s", "--no-wait"]);
    let deadline = Instant::now() + Duration::from_secs(3);
    crash_and_restart(&mut lab);
    assert_eq!(
        state_and_admin(&lab, "primary"),
        ("draining".into(), Some("drained".into()))
    );
    // At the deadline the drain ends in down (remaining flows re-picked).
    let started = Instant::now();
    while state_and_admin(&lab, "primary").0 != "down" {
        assert!(
            Instant::now() < deadline + Duration::from_secs(2),
            "the drain deadline was lost in the restart: {:?} {:.1} s after the deadline\n{}",
            state_and_admin(&lab, "primary"),
            (Instant::now() - deadline).as_secs_f64(),
            lab.diag()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        Instant::now() + Duration::from_millis(200) >= deadline,
        "the drain ended before its deadline"
    );
}

#[test]
fn a_switchover_survives_a_crash_and_restart() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.ctl(&["switchover", "web", "--to", "standby"]);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(2));
    crash_and_restart(&mut lab);
    std::thread::sleep(SETTLE);
    let status = lab.status();
    assert_eq!(
        failover_tests::status::service(&status, "web")
            .switchover
            .as_deref(),
        Some("standby"),
        "{status:#?}"
    );
    assert_eq!(
        state_and_admin(&lab, "primary"),
        (
            "draining".into(),
            Some("standing by: switchover to standby".into())
        )
    );
    all_new_flows_on(&lab, "standby", 20, "switched over, after a restart");
    // And it still ends the way a switchover ends.
    lab.ctl(&["switchover", "web", "--release"]);
    expect_new_flows_on(&lab, "primary", Instant::now(), Duration::from_secs(2));
}

#[test]
fn a_failback_hold_keeps_its_deadline_across_a_restart() {
    let delay = Duration::from_secs(4);
    let mut lab = AgentLab::start(Options {
        probe: Probe::Tcp {
            port: failover_tests::agent_lab::HEALTH_PORT,
        },
        failback: Failback::Auto(delay),
    });
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Down);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(3));
    let recovered = Instant::now();
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Up);
    lab.wait_log("failback held", Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(2));
    crash_and_restart(&mut lab);
    // Rise (2 × 100 ms) was passed before the restart: the hold ends
    // `delay` after that, not `delay` after the restart.
    let back = expect_new_flows_on(&lab, "primary", recovered, Duration::from_secs(8));
    assert!(
        back >= delay && back < delay + Duration::from_millis(1200),
        "failback {back:?} after the recovery; the hold is {delay:?}\n{}",
        lab.diag()
    );
}

// ---- Refused reloads ---------------------------------------------------------------

/// Fills `FO_SERVICES` with entries no packet can match (family 99) until
/// the kernel refuses more: the next new service the agent writes fails
/// for real (E2BIG), half-way through a reload. Returns the junk keys.
fn fill_services_map(lab: &AgentLab) -> Vec<failover_common::ServiceKey> {
    use aya::maps::{HashMap, MapData};
    use failover_common::{Service, ServiceKey};
    let data = MapData::from_pin(lab.pin_dir().join("FO_SERVICES")).expect("open FO_SERVICES");
    let mut map: HashMap<MapData, ServiceKey, Service> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash map");
    let mut junk = Vec::new();
    for i in 0..failover_common::MAX_SERVICES + 1 {
        let key = ServiceKey {
            addr: [i, 0, 0, 0],
            port_be: 0,
            proto: 255,
            family: 99,
        };
        if map.insert(key, Service::new(9999), 0).is_err() {
            return junk;
        }
        junk.push(key);
    }
    panic!("FO_SERVICES took more entries than it has");
}

fn remove_junk(lab: &AgentLab, junk: &[failover_common::ServiceKey]) {
    use aya::maps::{HashMap, MapData};
    use failover_common::{Service, ServiceKey};
    let data = MapData::from_pin(lab.pin_dir().join("FO_SERVICES")).expect("open FO_SERVICES");
    let mut map: HashMap<MapData, ServiceKey, Service> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash map");
    for key in junk {
        map.remove(key).expect("remove junk");
    }
}

#[test]
fn a_reload_that_fails_half_way_restores_the_exact_state() {
    let options = Options {
        probe: Probe::Tcp {
            port: failover_tests::agent_lab::HEALTH_PORT,
        },
        failback: Failback::Auto(Duration::from_secs(5)),
    };
    let mut lab = AgentLab::start(options);
    // The primary fails: new flows on the standby.
    lab.health[PRIMARY].set(failover_tests::agent_lab::Health::Down);
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(3));
    let before = lab.inspect(&["backends"]);

    // A reload that moves web to another port (its service is removed and
    // added again) and adds a service, which the full map refuses.
    let mut changed = lab.config().clone();
    assert_eq!(changed.service_mut("web").port, 80);
    changed.service_mut("web").port = 8000;
    let changed = changed.service(
        ServiceToml::tcp("extra", Ipv4Addr::new(203, 0, 113, 30), 80)
            .probe(ProbeToml::tcp().port(BACKEND_PORT))
            .backend(BackendToml::new("x", Ipv4Addr::new(198, 51, 100, 2)).port(BACKEND_PORT)),
    );
    lab.write_config(&changed);
    let junk = fill_services_map(&lab);
    let (ok, out) = lab.ctl_output(&["reload"]);
    assert!(!ok, "the reload should have failed: {out}");
    remove_junk(&lab, &junk);

    // Exactly as before: the failed primary is down, in the maps, in
    // status and for traffic.
    assert_eq!(
        lab.inspect(&["backends"]),
        before,
        "the maps changed: {out}\n{}",
        lab.diag()
    );
    let status = lab.status();
    let primary = backend(&status, "web", "primary");
    assert_eq!(
        (primary.state.as_str(), primary.healthy),
        ("down", false),
        "{status:#?}"
    );
    assert_eq!(new_flows_to(&status, "web"), ["standby"]);
    all_new_flows_on(&lab, "standby", 20, "after the refused reload");
}

// ---- Failed map writes ---------------------------------------------------------------

/// Fills `FO_MAGLEV` with chunks of a service id no service has, until the
/// kernel refuses more. Returns their keys.
fn fill_maglev_map(lab: &AgentLab) -> Vec<failover_common::MaglevKey> {
    use aya::maps::{HashMap, MapData};
    use failover_common::{MaglevChunk, MaglevKey};
    let data = MapData::from_pin(lab.pin_dir().join("FO_MAGLEV")).expect("open FO_MAGLEV");
    let mut map: HashMap<MapData, MaglevKey, MaglevChunk> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash map");
    let mut junk = Vec::new();
    for chunk in 0..failover_common::MAGLEV_CHUNKS + 1 {
        let key = MaglevKey {
            service_id: 0xdead,
            generation: 0,
            chunk,
        };
        if map
            .insert(key, [0; failover_common::MAGLEV_CHUNK_SLOTS], 0)
            .is_err()
        {
            return junk;
        }
        junk.push(key);
    }
    panic!("FO_MAGLEV took more entries than it has");
}

fn empty_maglev_map(lab: &AgentLab, junk: &[failover_common::MaglevKey]) {
    use aya::maps::{HashMap, MapData};
    use failover_common::{MaglevChunk, MaglevKey};
    let data = MapData::from_pin(lab.pin_dir().join("FO_MAGLEV")).expect("open FO_MAGLEV");
    let mut map: HashMap<MapData, MaglevKey, MaglevChunk> =
        HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash map");
    for key in junk {
        map.remove(key).expect("remove junk");
    }
}

#[test]
fn a_failed_map_write_is_retried_until_the_maps_agree() {
    let layout = Layout::tiers(&[("a", 0), ("b", 0), ("c", 0)]);
    let options = Options {
        probe: Probe::Tcp {
            port: failover_tests::agent_lab::HEALTH_PORT,
        },
        failback: Failback::Auto(Duration::from_secs(5)),
    };
    let lab = AgentLab::start_layout(options, layout, |_, config| config);
    let junk = fill_maglev_map(&lab);
    // a fails: the new table cannot be written.
    lab.health[0].set(failover_tests::agent_lab::Health::Down);
    lab.wait_log("map update failed", Duration::from_secs(3));
    let status = lab.status();
    assert!(status.totals.map_write_failures_total >= 1, "{status:#?}");
    // The agent keeps trying; once the kernel takes the write, the maps
    // carry its decision: a is down, new flows avoid it.
    empty_maglev_map(&lab, &junk);
    let started = Instant::now();
    loop {
        let backends = lab.inspect(&["backends"]);
        let a = backends
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == failover_tests::agent_lab::HOSTS[0].addr.to_string())
            .cloned();
        if a.as_ref().is_some_and(|a| a["state"] == "down") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the maps never caught up with the agent: {a:?}\n{}",
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let samples = lab.sample(30, Duration::from_millis(10));
    assert_eq!(samples.answered_by("a"), 0, "{}", samples.summary());
    assert_eq!(samples.failures(), 0, "{}", samples.summary());
    assert_eq!(lab.status().totals.services_out_of_sync, 0);
}

// ---- Interfaces, locks and failed starts ----------------------------------------------

#[test]
fn the_agent_reattaches_to_an_interface_recreated_while_it_was_down() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.kill_agent();
    // The standby's link is deleted and created again: the pinned link of
    // the old interface is severed.
    lab.recreate_backend_link(1);
    lab.start_agent();
    lab.wait_log("XDP attached again", Duration::from_secs(2));
    // Traffic to and from the standby crosses the new interface: replies
    // are only put back to the VIP if XDP is attached there.
    drop(lab.servers[PRIMARY].take());
    let gap = expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(6));
    assert!(gap < FAILOVER_BOUND, "took {gap:?}\n{}", lab.diag());
}

/// `failover run` in the lab's lb namespace (entered with nsenter, as an
/// operator would, without hiding bpffs), to completion within `bound`.
fn run_agent_in_lb(
    lab: &AgentLab,
    config: &std::path::Path,
    pid_file: &std::path::Path,
    bound: Duration,
) -> (Option<i32>, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.lb.name()))
        .arg(failover_tests::failover_bin())
        .args(["run", "--config"])
        .arg(config)
        .arg("--pid-file")
        .arg(pid_file)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a second agent");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "still running".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_agent_on_the_same_pin_directory_is_refused_and_names_the_first() {
    let lab = AgentLab::start(tcp_probe());
    let first = lab.agent_pid();
    let (code, said) = run_agent_in_lb(
        &lab,
        lab.config_path(),
        lab.pid_file(),
        Duration::from_secs(10),
    );
    assert!(
        code.is_some_and(|c| c != 0) && said.contains(&format!("pid {first}")),
        "the second agent must refuse and name the first ({first}): exit {code:?}\n{said}"
    );
    // The first one's pid file, control socket and forwarding are intact.
    let pid_file = std::fs::read_to_string(lab.pid_file()).unwrap();
    assert_eq!(pid_file.trim(), first.to_string());
    assert_eq!(new_flows_to(&lab.status(), "web"), ["primary"]);
    all_new_flows_on(&lab, "primary", 10, "with a refused second agent");
}

#[test]
fn failback_never_signals_a_process_that_is_not_the_agent() {
    let lab = AgentLab::start(tcp_probe());
    // A stale pid file naming a process that is not an agent (this test).
    let stale = lab.dir().join("stale.pid");
    std::fs::write(&stale, format!("{}\n", std::process::id())).unwrap();
    let output = lab.failover_output(&["failback", "--pid-file", stale.to_str().unwrap()]);
    assert!(
        !output.status.success()
            && String::from_utf8_lossy(&output.stderr).contains("not a running `failover run`"),
        "{output:?}"
    );
}

#[test]
fn a_start_with_an_unknown_interface_attaches_nothing_and_leaves_nothing() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.kill_agent();
    let pins = lab.pin_dir().to_str().unwrap().to_owned();
    lab.failover(&["detach", "--pin-dir", &pins]);
    // An interface that does not exist, after one that does.
    let mut broken = lab.config().clone();
    assert_eq!(broken.interfaces[0].name, "lbc");
    broken.interfaces.insert(1, InterfaceToml::new("nosuch0"));
    let path = lab.dir().join("broken.toml");
    broken.write(&path);
    let (code, said) = run_agent_in_lb(
        &lab,
        &path,
        &lab.dir().join("broken.pid"),
        Duration::from_secs(10),
    );
    assert!(
        code.is_some_and(|c| c != 0) && said.contains("nosuch0"),
        "exit {code:?}\n{said}"
    );
    let links = std::process::Command::new("ip")
        .args(["-n", lab.lb.name(), "-d", "link", "show", "lbc"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("xdp"),
        "lbc was left with XDP attached:\n{links}"
    );
    assert!(
        !lab.pin_dir().join("FO_SERVICES").exists(),
        "the failed start left pins:\n{said}"
    );
}

// ---- Status never delays a decision --------------------------------------------------

/// Fills `FO_CONNTRACK` with entries no packet matches (family 99).
fn fill_conntrack(lab: &AgentLab) {
    use aya::maps::{HashMap, MapData};
    use failover_common::{Flow, FlowKey};
    let data = MapData::from_pin(lab.pin_dir().join("FO_CONNTRACK")).expect("open FO_CONNTRACK");
    let mut map: HashMap<MapData, FlowKey, Flow> =
        HashMap::try_from(aya::maps::Map::LruHashMap(data)).expect("lru hash map");
    for i in 0..failover_common::CONNTRACK_ENTRIES {
        let key = FlowKey {
            src: [i, 0, 0, 0],
            family: 99,
            ..FlowKey::default()
        };
        let flow = Flow {
            direction: failover_common::flow_direction::FORWARD,
            last_seen_ns: u64::MAX / 2,
            ..Flow::default()
        };
        map.insert(key, flow, 0).expect("insert a junk flow");
    }
}

/// `decisive_result_to_map_update=Some(…)` of a "new flows switched" line.
fn decisive_to_map(line: &str) -> Option<Duration> {
    let text = line.split("decisive_result_to_map_update=Some(").nth(1)?;
    let text = &text[..text.find(')')?];
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ns" => number / 1e9,
        "µs" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

#[test]
fn status_on_a_full_conntrack_table_does_not_delay_a_failover() {
    let mut lab = AgentLab::start(tcp_probe());
    fill_conntrack(&lab);
    // Operators (and `failover drain`) asking for status all the time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asker = {
        let (stop, socket) = (stop.clone(), lab.socket());
        std::thread::spawn(move || {
            let mut answers = 0;
            let started = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(30)
            {
                let ok = std::process::Command::new(failover_tests::failover_bin())
                    .arg("--socket")
                    .arg(&socket)
                    .args(["status", "--json"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                answers += usize::from(ok);
            }
            answers
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    drop(lab.servers[PRIMARY].take());
    expect_new_flows_on(&lab, "standby", Instant::now(), Duration::from_secs(6));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = asker.join().unwrap();
    assert!(answers >= 3, "status was hardly answered ({answers})");
    let switched = lab.log_lines("new flows switched");
    let took = switched
        .iter()
        .find_map(|line| decisive_to_map(line))
        .unwrap_or_else(|| panic!("no decision logged: {switched:#?}"));
    // A walk of the full table takes hundreds of milliseconds; the decision
    // must not wait for one (it takes well under a millisecond alone).
    assert!(
        took < Duration::from_millis(100),
        "decisive probe result to map update took {took:?} with status running\n{switched:#?}"
    );
    let status = lab.status();
    assert!(status.active_flows_counted_s_ago.is_some(), "{status:#?}");
}
