//! The real agent (`failover run --config FILE`) as a child process on the
//! edge host of a namespace lab (see `failover_tests::agent_lab`): an
//! active-passive TCP service, VIP 203.0.113.10:80 → primary (tier 0) and
//! standby (tier 1) on :8080, probed every 100 ms with a 50 ms timeout,
//! fall 3, rise 2. Clients ask "which backend answers" with short TCP
//! connections through the VIP.
//!
//! Each test builds its own lab (unique namespaces, pin directory, pid file
//! and log), so they run in parallel; failure messages carry the agent's log.

use std::time::{Duration, Instant};

use failover_tests::agent_lab::{
    AgentLab, BACKEND_PORT, FAILOVER_BOUND, Failback, HEALTH_PORT, HOSTS, Health, Options, PRIMARY,
    Probe, SLOW_ANSWER, load_with_long, new_flows,
};

/// How long a sampling loop waiting for a switch runs at most.
const SAMPLE_BOUND: Duration = Duration::from_secs(6);

fn tcp_probe(port: u16) -> Options {
    Options {
        probe: Probe::Tcp { port },
        failback: Failback::Auto(Duration::from_secs(5)),
    }
}

/// Injects a fault at `t0` (already done by the caller), samples new flows
/// until the standby answers, and checks the switch: within
/// [`FAILOVER_BOUND`], logged once by the agent, and stable afterwards.
fn expect_failover(lab: &AgentLab, what: &str, t0: Instant) -> Duration {
    // Short timeouts: a connection sent to a blackholed primary just before
    // the switch must not hide the switch for long.
    let samples = lab.sample_until_since("standby", SAMPLE_BOUND, t0, Duration::from_millis(100));
    let gap = samples.reached().unwrap_or_else(|| {
        panic!(
            "{what}: new flows never reached the standby: {}\n{}",
            samples.summary(),
            lab.diag()
        )
    });
    eprintln!(
        "{what}: first new flow on the standby {} ms after the fault ({} failed or on the primary before); samples {}",
        gap.as_millis(),
        samples.0.len() - 1,
        samples.summary()
    );
    assert!(
        gap < FAILOVER_BOUND,
        "{what}: failover took {gap:?}: {}\n{}",
        samples.summary(),
        lab.diag()
    );
    // The agent logged one switch, primary → standby, with its own gap.
    lab.wait_log("new flows switched", Duration::from_secs(2));
    let switches = lab.log_lines("new flows switched");
    assert_eq!(switches.len(), 1, "{what}: {switches:#?}\n{}", lab.diag());
    assert!(
        switches[0].contains("from=primary") && switches[0].contains("to=standby"),
        "{what}: {}",
        switches[0]
    );
    eprintln!("{what}: agent: {}", switches[0].trim());
    // And it stays there: every new flow goes to the standby.
    let after = lab.sample(20, Duration::from_millis(10));
    assert_eq!(
        after.answered_by("standby"),
        20,
        "{what}: new flows after the failover: {}\n{}",
        after.summary(),
        lab.diag()
    );
    gap
}

#[test]
fn primary_process_killed_fails_over_to_the_standby() {
    let mut lab = AgentLab::start(tcp_probe(BACKEND_PORT));
    let t0 = Instant::now();
    // The primary's service (and probe target) goes away: connections are refused.
    drop(lab.servers[PRIMARY].take());
    expect_failover(&lab, "primary killed", t0);
}

#[test]
fn primary_link_down_fails_over_to_the_standby() {
    let lab = AgentLab::start(tcp_probe(BACKEND_PORT));
    let t0 = Instant::now();
    // The primary's end of its link goes down: the lb's side loses carrier.
    lab.backends[PRIMARY].ip(&["link", "set", "eth0", "down"]);
    expect_failover(&lab, "primary link down", t0);
}

#[test]
fn primary_blackholed_fails_over_to_the_standby() {
    let lab = AgentLab::start(tcp_probe(BACKEND_PORT));
    let t0 = Instant::now();
    // Everything the primary sends to the lb and the clients vanishes
    // silently: probes and client connections time out.
    let primary = &lab.backends[PRIMARY];
    primary.ip(&["route", "add", "blackhole", "198.51.100.1/32"]);
    primary.ip(&["route", "replace", "blackhole", "192.0.2.0/24"]);
    expect_failover(&lab, "primary blackholed", t0);
}

#[test]
fn primary_answering_slower_than_the_probe_timeout_fails_over() {
    let lab = AgentLab::start(Options {
        probe: Probe::Http { port: HEALTH_PORT },
        failback: Failback::Auto(Duration::from_secs(5)),
    });
    // The health endpoint answers, but after 200 ms (timeout 50 ms); the
    // service itself still answers at once.
    assert!(SLOW_ANSWER > Duration::from_millis(50) * 2);
    let t0 = Instant::now();
    lab.health[PRIMARY].set(Health::Slow);
    expect_failover(&lab, "primary slow", t0);
    let unhealthy = lab.log_lines("backend unhealthy");
    assert!(
        unhealthy.iter().any(|l| l.contains("timed out")),
        "the probes should have timed out: {unhealthy:#?}"
    );
}

#[test]
fn flapping_primary_does_not_flap_traffic() {
    let lab = AgentLab::start(Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Auto(Duration::from_secs(1)),
    });
    let sampler = new_flows(
        &lab.client,
        Duration::from_millis(20),
        Duration::from_millis(500),
    );
    let health = &lab.health[PRIMARY];
    let started = Instant::now();
    // A: down and up for 150 ms each, shorter than fall × interval: the
    // primary should never even be declared unhealthy.
    for _ in 0..8 {
        health.set(Health::Down);
        std::thread::sleep(Duration::from_millis(150));
        health.set(Health::Up);
        std::thread::sleep(Duration::from_millis(150));
    }
    let phase_a_flips = lab.log_lines("backend unhealthy").len();
    // B: down 450 ms (enough to fail), up 350 ms (enough to rise, far less
    // than the 1 s failback delay): health flips, traffic must not follow.
    for _ in 0..4 {
        health.set(Health::Down);
        std::thread::sleep(Duration::from_millis(450));
        health.set(Health::Up);
        std::thread::sleep(Duration::from_millis(350));
    }
    let flapping_ended = Instant::now();
    // The primary now stays up: after rise and the failback delay, new
    // flows go back to it.
    let back = lab.sample_until("primary", SAMPLE_BOUND);
    let recorded = sampler.finish();

    let during: Vec<&String> = recorded
        .new_flows
        .iter()
        .filter(|s| s.started <= flapping_ended)
        .filter_map(|s| s.result.as_ref().ok())
        .collect();
    let during_switches = during.windows(2).filter(|w| w[0] != w[1]).count();
    let failures: Vec<&failover_tests::load::Failed> = recorded
        .new_flows
        .iter()
        .filter_map(|s| s.result.as_ref().err())
        .collect();
    let unhealthy = lab.log_lines("backend unhealthy");
    let switched = lab.log_lines("new flows switched");
    let on_standby = during.iter().filter(|n| **n == "standby").count();
    eprintln!(
        "flapping {:?}: {} new flows sampled ({} on the standby), {during_switches} switches of their destination; \
         primary declared unhealthy {} times ({phase_a_flips} in phase A); agent switched new flows {} times; \
         back on the primary {:?} after the flapping",
        flapping_ended - started,
        during.len(),
        on_standby,
        unhealthy.len(),
        switched.len(),
        back.reached(),
    );
    assert_eq!(
        phase_a_flips,
        0,
        "down periods shorter than fall × interval declared the primary unhealthy\n{}",
        lab.diag()
    );
    assert!(
        failures.is_empty(),
        "the service itself never failed, yet: {failures:?}\n{}",
        lab.diag()
    );
    assert!(
        during.len() > 100,
        "too few samples ({})\n{}",
        during.len(),
        lab.diag()
    );
    assert!(
        unhealthy.len() >= 2,
        "phase B should have flipped the primary's health repeatedly\n{}",
        lab.diag()
    );
    assert!(
        during_switches <= 1,
        "new flows switched {during_switches} times while the primary flapped\n{}",
        lab.diag()
    );
    assert!(
        back.reached().is_some(),
        "new flows did not return to the primary once it was stable: {}\n{}",
        back.summary(),
        lab.diag()
    );
    assert!(
        switched.len() <= 2,
        "the agent switched new flows {} times: {switched:#?}\n{}",
        switched.len(),
        lab.diag()
    );
}

#[test]
fn auto_failback_waits_for_the_delay_and_keeps_standby_connections() {
    let delay = Duration::from_secs(1);
    let lab = AgentLab::start(Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Auto(delay),
    });
    let t0 = Instant::now();
    lab.health[PRIMARY].set(Health::Down);
    expect_failover(&lab, "primary health down", t0);

    // A connection opened on the standby before the failback. (Flows that
    // were closing on the primary during the failover may have been
    // re-picked; count from here.)
    let repicks = lab.counter("event_repick");
    let mut long = lab.connect();
    let first = failover_tests::agent_lab::ask(&mut long).expect("ask on the long connection");
    assert_eq!(first, "standby");

    let up = Instant::now();
    lab.health[PRIMARY].set(Health::Up);
    let samples = lab.sample_until_since("primary", SAMPLE_BOUND, up, Duration::from_millis(500));
    let back = samples
        .reached()
        .unwrap_or_else(|| panic!("no failback: {}\n{}", samples.summary(), lab.diag()));
    eprintln!(
        "auto failback: primary healthy again at 0 ms, first new flow on it at {} ms (delay {delay:?}); samples {}",
        back.as_millis(),
        samples.summary()
    );
    assert_eq!(samples.failures(), 0, "{}", samples.summary());
    // Before the delay had passed every new flow stayed on the standby
    // (the hold starts only once the primary rose, after `up`).
    assert!(
        back >= delay,
        "failed back after {back:?}, before the {delay:?} delay: {}\n{}",
        samples.summary(),
        lab.diag()
    );
    assert!(
        samples.answered_by("standby") >= 20,
        "too few samples while held: {}",
        samples.summary()
    );
    assert!(
        back < delay + Duration::from_secs(2),
        "failback took {back:?}: {}\n{}",
        samples.summary(),
        lab.diag()
    );
    let switched = lab.log_lines("new flows switched");
    assert!(
        switched.len() == 2 && switched[1].contains("failback delay elapsed"),
        "{switched:#?}"
    );

    // New flows: primary. The standby's established connection: still on it.
    let after = lab.sample(20, Duration::from_millis(10));
    assert_eq!(after.answered_by("primary"), 20, "{}", after.summary());
    for i in 0..5 {
        let answer = failover_tests::agent_lab::ask(&mut long).unwrap_or_else(|e| {
            panic!(
                "long connection after failback, ask {i}: {e}\n{}",
                lab.diag()
            )
        });
        assert_eq!(answer, "standby", "the long connection moved");
    }
    assert_eq!(
        lab.counter("event_repick"),
        repicks,
        "a flow was re-picked\n{}",
        lab.diag()
    );
}

#[test]
fn manual_failback_waits_for_the_operator() {
    let lab = AgentLab::start(Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Manual,
    });
    let t0 = Instant::now();
    lab.health[PRIMARY].set(Health::Down);
    expect_failover(&lab, "primary health down (manual)", t0);

    lab.health[PRIMARY].set(Health::Up);
    lab.wait_log("waiting for an operator failback", Duration::from_secs(3));
    // Healthy, but held: several seconds of new flows all stay on the standby.
    let held = lab.sample(100, Duration::from_millis(25));
    assert_eq!(
        held.answered_by("standby"),
        100,
        "new flows left the standby without an operator failback: {}\n{}",
        held.summary(),
        lab.diag()
    );
    assert!(held.0.last().unwrap().0 >= Duration::from_secs(2));

    let pid_file = lab.pid_file().to_str().unwrap().to_owned();
    let asked = Instant::now();
    let out = lab.failover(&["failback", "--pid-file", &pid_file]);
    assert!(
        out.contains(&lab.agent_pid().to_string()),
        "failback signalled another process: {out}"
    );
    let samples =
        lab.sample_until_since("primary", SAMPLE_BOUND, asked, Duration::from_millis(500));
    let back = samples.reached().unwrap_or_else(|| {
        panic!(
            "no failback after `failover failback`: {}\n{}",
            samples.summary(),
            lab.diag()
        )
    });
    eprintln!(
        "manual failback: new flows on the primary {} ms after `failover failback`",
        back.as_millis()
    );
    assert!(back < Duration::from_secs(2), "{}", samples.summary());
    let switched = lab.log_lines("new flows switched");
    assert!(
        switched.len() == 2 && switched[1].contains("operator failback"),
        "{switched:#?}"
    );
    let after = lab.sample(20, Duration::from_millis(10));
    assert_eq!(after.answered_by("primary"), 20, "{}", after.summary());
}

/// Backend ids and states from `failover inspect backends --json`.
fn backend_table(lab: &AgentLab) -> Vec<(u64, String, String)> {
    let backends = lab.inspect(&["backends"]);
    let mut rows: Vec<(u64, String, String)> = backends
        .as_array()
        .expect("backends array")
        .iter()
        .map(|b| {
            (
                b["id"].as_u64().expect("id"),
                b["address"].as_str().expect("address").to_owned(),
                b["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The conntrack entries (direction, service id, backend id) of the flow
/// from `src`, from `failover inspect flows --json`.
fn long_flow(lab: &AgentLab, src: &str) -> Vec<(String, u64, u64)> {
    let flows = lab.inspect(&["flows", "--filter", src]);
    let mut rows: Vec<(String, u64, u64)> = flows
        .as_array()
        .expect("flows array")
        .iter()
        .map(|f| {
            (
                f["direction"].as_str().expect("direction").to_owned(),
                f["service"].as_u64().expect("service"),
                f["backend"].as_u64().expect("backend"),
            )
        })
        .collect();
    rows.sort();
    let primary_addr = HOSTS[PRIMARY].addr.to_string();
    let primary_id = backend_table(lab)
        .iter()
        .find(|b| b.1 == primary_addr)
        .expect("the primary in inspect backends")
        .0;
    assert_eq!(
        rows.iter().map(|r| (r.0.as_str(), r.2)).collect::<Vec<_>>(),
        [("forward", primary_id), ("reply", primary_id)],
        "conntrack of {src}"
    );
    rows
}

#[test]
fn agent_sigkill_and_restart_keep_forwarding_and_flows() {
    let mut lab = AgentLab::start(tcp_probe(BACKEND_PORT));
    let pin_dir = lab.pin_dir().to_owned();
    let table = backend_table(&lab);
    let expected: Vec<String> = HOSTS.iter().map(|h| h.addr.to_string()).collect();
    assert_eq!(
        table.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        expected,
        "{table:?}"
    );
    assert!(table.iter().all(|r| r.2 == "up"), "{table:?}");

    let mut long = lab.connect();
    let first = failover_tests::agent_lab::ask(&mut long).expect("ask on the long connection");
    assert_eq!(first, "primary");
    let long_src = format!("192.0.2.2:{}", long.local_addr().unwrap().port());
    let long_entries = long_flow(&lab, &long_src);
    let repicks = lab.counter("event_repick");
    // A new flow every 10 ms; the long connection asked every 50 ms.
    let sampler = load_with_long(
        &lab.client,
        Duration::from_millis(10),
        Duration::from_secs(1),
        vec![long],
        Duration::from_millis(50),
    );
    std::thread::sleep(Duration::from_millis(500));

    let killed_pid = lab.agent_pid();
    let killed = Instant::now();
    lab.kill_agent();
    // Dead agent: the pinned link keeps the program attached (it goes on
    // forwarding new flows itself), the pinned maps keep their state, and
    // inspect reads them.
    let new_flows_at_kill = lab.counter("fwd_new_flow");
    std::thread::sleep(Duration::from_millis(1000));
    let new_flows_dead = lab.counter("fwd_new_flow") - new_flows_at_kill;
    assert!(
        new_flows_dead >= 20,
        "the data path forwarded only {new_flows_dead} new flows while the agent was dead\n{}",
        lab.diag()
    );
    assert!(
        pin_dir.join("link_lbc").exists(),
        "link pin gone after SIGKILL"
    );
    let dead_table = backend_table(&lab);
    assert_eq!(
        dead_table, table,
        "backends changed while the agent was dead"
    );
    let dead_services = lab.inspect(&["services"]);
    assert_eq!(
        dead_services.as_array().map(Vec::len),
        Some(1),
        "{dead_services}"
    );

    let restarted = Instant::now();
    lab.start_agent();
    assert_ne!(lab.agent_pid(), killed_pid);
    let log = lab.agent_log();
    assert!(
        log.contains("adopted pinned maps") && log.contains("XDP link adopted"),
        "the restarted agent did not adopt the pins\n{}",
        lab.diag()
    );
    std::thread::sleep(Duration::from_millis(1000));
    let recorded = sampler.finish();

    let dead_window = |at: &Instant| *at >= killed && *at < restarted;
    let failures: Vec<_> = recorded
        .new_flows
        .iter()
        .filter(|s| s.result.is_err())
        .map(|s| (s.started.saturating_duration_since(killed), &s.result))
        .collect();
    let while_dead = recorded
        .new_flows
        .iter()
        .filter(|s| dead_window(&s.started))
        .count();
    let elsewhere: Vec<_> = recorded
        .new_flows
        .iter()
        .filter(|s| matches!(&s.result, Ok(name) if name != "primary"))
        .collect();
    let long = &recorded.long[0];
    eprintln!(
        "sigkill/restart: {} new flows ({while_dead} while the agent was dead for {:?}), {} failed; \
         {} answers on the long connection",
        recorded.new_flows.len(),
        restarted - killed,
        failures.len(),
        long.len()
    );
    assert!(
        failures.is_empty(),
        "requests failed (time since the SIGKILL): {failures:?}\n{}",
        lab.diag()
    );
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    assert!(
        while_dead >= 20,
        "only {while_dead} requests while the agent was dead"
    );
    assert!(long.len() >= 10);
    for sample in long {
        assert_eq!(
            sample.result.as_deref(),
            Ok("primary"),
            "long connection at {:?} after the SIGKILL\n{}",
            sample.started.saturating_duration_since(killed),
            lab.diag()
        );
    }
    assert_eq!(
        backend_table(&lab),
        table,
        "the restarted agent changed backend ids or states"
    );
    assert_eq!(
        long_flow(&lab, &long_src),
        long_entries,
        "the long connection's conntrack entries changed"
    );
    assert_eq!(
        lab.counter("event_repick"),
        repicks,
        "flows were re-picked across the restart\n{}",
        lab.diag()
    );
}
