//! What the README promises and no other test holds it to: TCP probes
//! leave no TIME_WAIT, fail-static after SIGTERM and a crash, `detach`,
//! `inspect flows --limit`, `drain` in its waiting mode and without a
//! deadline, a backend named by its bare name, maintenance and failback
//! over the control socket, weights from the configuration to the data
//! path.

use std::time::{Duration, Instant};

use failover_tests::{
    agent_lab::{
        AgentLab, BACKEND_PORT, Failback, HEALTH_PORT, Health, Layout, Options, PRIMARY, Probe,
    },
    status::{backend, new_flows_to},
};

fn tcp_probe() -> Options {
    Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_secs(5)),
    }
}

fn all_on(lab: &AgentLab, name: &str, n: usize) {
    let samples = lab.sample(n, Duration::from_millis(10));
    assert_eq!(
        samples.answered_by(name),
        n,
        "{}\n{}",
        samples.summary(),
        lab.diag()
    );
}

/// Sockets of the lb's namespace in TIME_WAIT (state 06 in /proc/net/tcp).
fn time_wait(lab: &AgentLab) -> usize {
    lab.lb.run(|| {
        std::fs::read_to_string("/proc/thread-self/net/tcp")
            .unwrap()
            .lines()
            .skip(1)
            .filter(|l| l.split_whitespace().nth(3) == Some("06"))
            .count()
    })
}

#[test]
fn tcp_probes_leave_no_time_wait_sockets() {
    let lab = AgentLab::start(tcp_probe());
    // 100 ms probes of two backends: about 30 probes by now.
    std::thread::sleep(Duration::from_millis(1500));
    let probes: u64 = ["primary", "standby"]
        .iter()
        .map(|b| backend(&lab.status(), "web", b).probe.ok_total)
        .sum();
    assert!(probes >= 10, "{probes} probes");
    assert_eq!(time_wait(&lab), 0, "probes closed with FIN, not a reset");
}

#[test]
fn forwarding_goes_on_after_sigterm_and_after_a_crash() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.stop_agent();
    all_on(&lab, "primary", 20);
    lab.start_agent();
    lab.crash_agent(libc::SIGABRT);
    all_on(&lab, "primary", 20);
}

#[test]
fn detach_removes_links_and_maps_and_forwarding_stops() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.stop_agent();
    let pins = lab.pin_dir().to_str().unwrap().to_owned();
    let dry = lab.failover(&["detach", "--pin-dir", &pins, "--dry-run"]);
    assert!(dry.contains("dry run") && dry.contains("lbc"), "{dry}");
    all_on(&lab, "primary", 5);
    let out = lab.failover(&["detach", "--pin-dir", &pins]);
    assert!(out.contains("detached"), "{out}");
    assert!(!lab.pin_dir().exists(), "pins left behind");
    let links = std::process::Command::new("ip")
        .args(["-n", lab.lb.name(), "-d", "link", "show", "lbc"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("xdp"));
    let samples = lab.sample(3, Duration::from_millis(10));
    assert_eq!(
        samples.failures(),
        3,
        "the VIP still answers: {}",
        samples.summary()
    );
}

#[test]
fn inspect_flows_honours_its_limit() {
    let lab = AgentLab::start(tcp_probe());
    all_on(&lab, "primary", 10);
    let flows = lab.inspect(&["flows", "--limit", "3"]);
    assert_eq!(flows.as_array().map(Vec::len), Some(3), "{flows:#}");
    let all = lab.inspect(&["flows", "--limit", "1000"]);
    assert!(all.as_array().unwrap().len() >= 10, "{all:#}");
}

#[test]
fn drain_waits_for_the_flows_and_without_a_deadline_stays_drained() {
    let lab = AgentLab::start(tcp_probe());
    // No long flow: the waiting drain sees none and returns.
    let started = Instant::now();
    let out = lab.ctl(&["drain", "web/primary"]);
    assert!(started.elapsed() < Duration::from_secs(15), "{out}");
    assert!(
        out.contains("0 active flows") || out.contains("no active flows"),
        "{out}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let status = lab.status();
    let primary = backend(&status, "web", "primary");
    assert_eq!(
        (primary.state.as_str(), primary.admin.as_deref()),
        ("draining", Some("drained")),
        "{status:#?}"
    );
    all_on(&lab, "standby", 10);
}

#[test]
fn maintenance_and_failback_over_the_control_socket_with_a_bare_backend_name() {
    let lab = AgentLab::start(Options {
        probe: Probe::Tcp { port: HEALTH_PORT },
        failback: Failback::Manual,
    });
    // A bare name, unique across services.
    lab.ctl(&["maintenance", "primary", "on"]);
    all_on(&lab, "standby", 10);
    let (ok, out) = lab.ctl_output(&["maintenance", "nosuch", "on"]);
    assert!(!ok && out.contains("no backend"), "{out}");
    lab.ctl(&["maintenance", "primary", "off"]);
    all_on(&lab, "primary", 10);

    // Manual failback over the socket (not the pid file).
    lab.health[PRIMARY].set(Health::Down);
    let samples = lab.sample_until("standby", Duration::from_secs(3));
    assert!(samples.reached().is_some(), "{}", samples.summary());
    lab.health[PRIMARY].set(Health::Up);
    lab.wait_log("waiting for an operator failback", Duration::from_secs(3));
    all_on(&lab, "standby", 10);
    lab.ctl(&["failback", "web"]);
    let samples = lab.sample_until("primary", Duration::from_secs(2));
    assert!(samples.reached().is_some(), "{}", samples.summary());
    assert_eq!(new_flows_to(&lab.status(), "web"), ["primary"]);
}

#[test]
fn weights_from_the_configuration_shape_the_spread() {
    let layout = Layout::tiers(&[("a", 0), ("b", 0)]).weight("a", 3);
    let lab = AgentLab::start_layout(tcp_probe(), layout, |_, config| config);
    let samples = lab.sample(400, Duration::from_millis(2));
    let a = samples.answered_by("a");
    let b = samples.answered_by("b");
    assert_eq!(a + b, 400, "{}", samples.summary());
    // 3:1 → 300:100, within ±10 points.
    assert!((260..=340).contains(&a), "a took {a} of 400, b {b}");
}
