//! What a new operator meets first: the CLI finds the agent the way the
//! configuration says, honours the flags it lists, exits quietly in a pipe,
//! and metrics tell planned switches from failures.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use failover::lab::agent::AgentProcess;
use failover_tests::{
    agent_lab::{AgentLab, BACKEND_PORT, Failback, Options, PRIMARY, Probe},
    config::XdpMode,
    metrics::{metric, scrape},
};

fn tcp_probe() -> Options {
    Options {
        probe: Probe::Tcp { port: BACKEND_PORT },
        failback: Failback::Auto(Duration::from_secs(5)),
    }
}

#[test]
fn run_honours_socket_and_the_verbs_find_the_agent_through_the_config() {
    let mut lab = AgentLab::start(tcp_probe());
    let config = lab.config_path().to_str().unwrap().to_owned();
    // Verbs take the socket from the configuration (no --socket).
    let status = lab.failover(&["--config", &config, "status", "--json"]);
    assert!(status.contains("\"web\""), "{status}");
    let pins = lab.failover(&["--config", &config, "inspect", "services", "--json"]);
    assert!(
        pins.contains("203.0.113.10"),
        "inspect found the pins: {pins}"
    );

    // `run --socket` overrides the configuration's socket.
    lab.kill_agent();
    // SIGKILL leaves the configured socket behind; clear it to see whether
    // the next agent binds it.
    std::fs::remove_file(lab.socket()).unwrap();
    let other = lab.dir().join("other.sock");
    let log = lab.dir().join("other.log");
    let mut agent = AgentProcess::start_with(
        &lab.lb,
        &failover_tests::failover_bin(),
        lab.config_path(),
        &lab.dir().join("other.pid"),
        &log,
        &["--socket", other.to_str().unwrap()],
    )
    .expect("start the agent with --socket");
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("agent running")
    {
        assert!(
            agent.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(started.elapsed() < Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(other.exists(), "the agent does not listen on --socket");
    let status = lab.failover(&["--socket", other.to_str().unwrap(), "status", "--json"]);
    assert!(status.contains("\"web\""), "{status}");
    // And a reload keeps it (the file's socket did not change, the flag wins).
    let reload = lab.failover(&["--socket", other.to_str().unwrap(), "reload"]);
    assert!(!reload.contains("error"), "{reload}");
    assert!(
        !lab.socket().exists(),
        "the configured socket was bound although --socket said otherwise"
    );
    drop(agent);
}

/// Runs `failover args`, reads one line of its output and closes the pipe:
/// it must exit quietly (no panic, no error about the pipe).
fn quiet_in_a_pipe(args: &[&str]) {
    let mut child = Command::new(failover_tests::failover_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run failover");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    let _ = stdout.read(&mut first);
    drop(stdout);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "failover {args:?} in a closed pipe: {status}\n{stderr}"
    );
}

#[test]
fn commands_exit_quietly_when_the_pipe_closes() {
    let lab = AgentLab::start(tcp_probe());
    let socket = lab.socket().to_str().unwrap().to_owned();
    let config = lab.config_path().to_str().unwrap().to_owned();
    let pins = lab.pin_dir().to_str().unwrap().to_owned();
    // Enough output that the writer meets the closed pipe.
    for _ in 0..3 {
        quiet_in_a_pipe(&["--socket", &socket, "status"]);
        quiet_in_a_pipe(&["check", "--config", &config]);
        quiet_in_a_pipe(&["counters"]);
        quiet_in_a_pipe(&["inspect", "--pin-dir", &pins, "counters"]);
    }
}

const METRICS_PORT: u16 = 9393;

#[test]
fn metrics_count_planned_switches_apart_from_failures() {
    let mut lab = AgentLab::start_with(tcp_probe(), |_, config| {
        config.metrics(format!("127.0.0.1:{METRICS_PORT}"))
    });
    lab.wait_log("metrics endpoint ready", Duration::from_secs(5));
    lab.ctl(&["switchover", "web", "--to", "standby"]);
    lab.ctl(&["switchover", "web", "--release"]);
    let planned = |text: &str, reason: &str| {
        metric(
            text,
            "failover_switches_total",
            &[("service", "web"), ("kind", "planned"), ("reason", reason)],
        )
    };
    let text = scrape(&lab, METRICS_PORT);
    assert_eq!(planned(&text, "switchover"), Some(1.0), "{text}");
    assert_eq!(planned(&text, "switchover released"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "failover_failovers_total", &[]), Some(0.0));

    drop(lab.servers[PRIMARY].take());
    lab.wait_log("backend failed", Duration::from_secs(3));
    let text = scrape(&lab, METRICS_PORT);
    assert_eq!(
        metric(
            &text,
            "failover_switches_total",
            &[
                ("service", "web"),
                ("kind", "unplanned"),
                ("reason", "backend failed")
            ],
        ),
        Some(1.0),
        "{text}"
    );
}

#[test]
fn an_agent_started_with_ip_netns_exec_refuses_pins_that_would_die_with_it() {
    let mut lab = AgentLab::start(tcp_probe());
    lab.kill_agent();
    // What the README's users typed: the agent under `ip netns exec`, whose
    // private mount namespace has no bpffs.
    let output = Command::new("ip")
        .args(["netns", "exec", lab.lb.name()])
        .arg(failover_tests::failover_bin())
        .args(["run", "--config"])
        .arg(lab.config_path())
        .arg("--pid-file")
        .arg(lab.dir().join("netns-exec.pid"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run ip netns exec");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && said.contains("nsenter --net=") && said.contains("fail-static"),
        "the agent must refuse and name the remedy: {}\n{said}",
        output.status
    );
    // Nothing was attached by it: the lab's own pinned links still forward.
    lab.start_agent();
    assert_eq!(
        failover_tests::status::new_flows_to(&lab.status(), "web"),
        ["primary"]
    );
}

/// Veth links as `ip link add` leaves them (no XDP program on the peers,
/// GRO off: redirected frames are dropped by the kernel there): the agent
/// sees the drops, names the remedy, and sends those interfaces' packets
/// through the stack, so connections get through.
#[test]
fn redirects_the_kernel_drops_are_seen_and_routed_around() {
    use failover_tests::agent_lab::Layout;
    let layout = Layout::primary_standby().plain_veth(false);
    let lab = AgentLab::start_layout(tcp_probe(), layout, |_, config| {
        config.metrics(format!("127.0.0.1:{METRICS_PORT}"))
    });
    // The first packets into each veth are dropped; TCP retransmits.
    let samples = lab.sample_until("primary", Duration::from_secs(10));
    let reached = samples.reached().unwrap_or_else(|| {
        panic!(
            "no traffic through the VIP: {}\n{}",
            samples.summary(),
            lab.diag()
        )
    });
    eprintln!(
        "plain veth: first answer after {reached:?}: {}",
        samples.summary()
    );
    let errors = lab.log_lines("the kernel drops the frames the data path redirects");
    assert!(
        errors
            .iter()
            .any(|l| l.contains("interface=lbp") && l.contains("gro on")),
        "the drops on lbp must be logged with the remedy: {errors:#?}\n{}",
        lab.diag()
    );
    let status = lab.status();
    assert!(
        status
            .egress
            .interfaces
            .iter()
            .any(|e| e.interface == "lbp" && e.via_stack),
        "{status:#?}"
    );
    let text = scrape(&lab, METRICS_PORT);
    assert_eq!(
        metric(&text, "failover_egress_via_stack", &[("interface", "lbp")]),
        Some(1.0),
        "{text}"
    );
    assert!(lab.counter("pass_via_stack") > 0);
    // The refused redirects are not counted as forwarded: they moved to
    // drop_redirect_failed, and outcomes still add up to verdicts.
    assert!(lab.counter("drop_redirect_failed") > 0);
    let counters = lab.inspect(&["counters"]);
    let total = |kind: &str| -> u64 {
        counters
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == kind)
            .map(|c| c["packets"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total("outcome"), total("verdict"), "{counters:#}");
    // Steady state: every new connection works.
    let after = lab.sample(20, Duration::from_millis(20));
    assert_eq!(after.answered_by("primary"), 20, "{}", after.summary());
}

/// Checksum errors counted by the kernel of a backend's namespace.
fn csum_errors(lab: &AgentLab, backend: usize) -> u64 {
    let snmp = lab.backends[backend].run(|| std::fs::read_to_string("/proc/net/snmp").unwrap());
    let lines: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    let (names, values) = (lines[0], lines[1]);
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InCsumErrors")
        .and_then(|(_, value)| value.parse().ok())
        .expect("Tcp InCsumErrors")
}

/// Clients and backends that send with transmit checksum offload on (local
/// sockets over veth leave checksums partial): native redirects lose the
/// state that would complete them, so the data path completes them.
#[test]
fn partial_checksums_of_local_senders_are_completed() {
    use failover_tests::agent_lab::Layout;
    let lab = AgentLab::start_layout(
        tcp_probe(),
        Layout::primary_standby().offload_on(),
        |_, config| config,
    );
    let samples = lab.sample(30, Duration::from_millis(10));
    assert_eq!(samples.answered_by("primary"), 30, "{}", samples.summary());
    assert!(
        lab.counter("event_partial_checksum") > 0,
        "no partial checksum was seen"
    );
    assert_eq!(
        lab.counter("pass_via_stack"),
        0,
        "redirects worked: no fallback"
    );
    assert_eq!(
        csum_errors(&lab, PRIMARY),
        0,
        "the backend found bad checksums"
    );
}

/// What the README tells a new operator, on veth links exactly as `ip link
/// add ... type veth` leaves them (no XDP program and no GRO on the peers,
/// transmit checksum offload on), with the README's `mode = "auto"`:
/// traffic gets through the VIP, and the agent says what to change to get
/// native speed.
#[test]
fn a_newcomer_on_plain_veth_gets_traffic_and_the_remedy() {
    use failover_tests::agent_lab::Layout;
    let layout = Layout::primary_standby()
        .plain_veth(true)
        .mode(XdpMode::Auto);
    let lab = AgentLab::start_layout_unchecked(tcp_probe(), layout, |_, config| config);
    let samples = lab.sample_until("primary", Duration::from_secs(10));
    assert!(
        samples.reached().is_some(),
        "a newcomer's first connections must get through: {}\n{}",
        samples.summary(),
        lab.diag()
    );
    let after = lab.sample(20, Duration::from_millis(20));
    assert_eq!(after.answered_by("primary"), 20, "{}", after.summary());
    let remedies = lab.log_lines("gro on");
    assert!(
        !remedies.is_empty(),
        "the remedy must be logged\n{}",
        lab.diag()
    );
    assert_eq!(csum_errors(&lab, PRIMARY), 0);
}

/// Hundreds of idle local connections to the metrics endpoint (a broken
/// client, a port scanner) do not make a scrape wait past Prometheus'
/// 10 s timeout.
#[test]
fn idle_connections_do_not_hold_up_a_scrape() {
    let lab = AgentLab::start_with(tcp_probe(), |_, config| {
        config.metrics(format!("127.0.0.1:{METRICS_PORT}"))
    });
    lab.wait_log("metrics endpoint ready", Duration::from_secs(5));
    let idle: Vec<std::net::TcpStream> = lab.lb.run(|| {
        (0..200)
            .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", METRICS_PORT)).ok())
            .collect()
    });
    assert_eq!(idle.len(), 200);
    let started = Instant::now();
    let text = scrape(&lab, METRICS_PORT);
    let took = started.elapsed();
    assert!(text.contains("failover_backend_healthy"));
    assert!(
        took < Duration::from_secs(3),
        "a scrape behind 200 idle connections took {took:?}"
    );
    drop(idle);
}

#[test]
fn a_metrics_endpoint_beyond_loopback_is_pointed_out() {
    let lab = AgentLab::start(tcp_probe());
    let path = lab.dir().join("exposed.toml");
    lab.config().clone().metrics("0.0.0.0:9399").write(&path);
    let said = lab.failover(&["check", "--config", path.to_str().unwrap()]);
    assert!(
        said.contains("warning: metrics.listen = \"0.0.0.0:9399\""),
        "{said}"
    );
}

/// skb (generic) mode on veth links as `ip link add` leaves them: traffic
/// through the VIP, and a failover, with nothing to set up on the peers.
#[test]
fn skb_mode_on_plain_veth_forwards_and_fails_over() {
    use failover_tests::agent_lab::{FAILOVER_BOUND, Layout};
    let layout = Layout::primary_standby()
        .plain_veth(true)
        .mode(XdpMode::Skb);
    let mut lab = AgentLab::start_layout(tcp_probe(), layout, |_, config| config);
    assert!(
        lab.log_lines("mode=Skb").len() >= 3,
        "every interface in skb mode\n{}",
        lab.diag()
    );
    let samples = lab.sample(20, Duration::from_millis(10));
    assert_eq!(samples.answered_by("primary"), 20, "{}", samples.summary());
    let t0 = Instant::now();
    drop(lab.servers[PRIMARY].take());
    let samples = lab.sample_until_since(
        "standby",
        Duration::from_secs(6),
        t0,
        Duration::from_millis(100),
    );
    let gap = samples.reached().unwrap_or_else(|| {
        panic!(
            "no failover in skb mode: {}\n{}",
            samples.summary(),
            lab.diag()
        )
    });
    assert!(gap < FAILOVER_BOUND, "{gap:?}");
    assert_eq!(csum_errors(&lab, 1), 0);
}
