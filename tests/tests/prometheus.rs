//! `dist/`'s Grafana dashboard and Prometheus alert rules against a real
//! Prometheus (started by the test in the lab's lb namespace, stopped by
//! its pid): `promtool check rules` passes, Prometheus scrapes the agent,
//! every dashboard panel's query returns series, and the alerts for an
//! agent down, a failover, a backend down, a service down, an empty
//! standby pool and the flood guard fire in their scenario and resolve
//! after.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use failover::lab::topology::PEER_IF;
use failover_tests::{
    agent_lab::{
        AgentLab, Failback, HEALTH_PORT, Health, Options, PRIMARY, Probe, SERVICE_PORT, STANDBY,
        VIP,
    },
    flood::Flood,
};
use serde_json::Value;

const METRICS_PORT: u16 = 9394;
const PROMETHEUS_PORT: u16 = 9395;

fn dist(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(path)
}

/// Prometheus in the lab's lb namespace; killed (by its pid) and its
/// directory removed in `Drop`.
struct Prometheus {
    child: Child,
    dir: PathBuf,
}

impl Prometheus {
    fn start(lab: &AgentLab) -> Self {
        let dir = std::env::temp_dir().join(format!("fo-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create Prometheus's directory");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: failover\n    static_configs:\n      - targets: ['127.0.0.1:{METRICS_PORT}']\n",
            dist("prometheus/failover-alerts.yml").display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write the configuration");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("create the log");
        let child = Command::new("ip")
            .args(["netns", "exec", lab.lb.name(), "prometheus"])
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus (cargo xtask setup installs it)");
        Self { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` of Prometheus's HTTP API (inside the lb namespace): its JSON.
fn api(lab: &AgentLab, path: &str) -> Option<Value> {
    let response = lab.lb.run(|| -> std::io::Result<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, PROMETHEUS_PORT));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    });
    let text = response.ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    // Chunked or not, the JSON is the one object in the body.
    let start = body.find('{')?;
    let end = body.rfind('}')?;
    serde_json::from_str(&body[start..=end]).ok()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The series an instant query returns.
fn query(lab: &AgentLab, expr: &str) -> Vec<Value> {
    api(lab, &format!("/api/v1/query?query={}", encode(expr)))
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// The firing alerts: (name, labels).
fn firing(lab: &AgentLab) -> Vec<(String, Value)> {
    api(lab, "/api/v1/alerts")
        .and_then(|v| v["data"]["alerts"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                a["labels"].clone(),
            )
        })
        .collect()
}

/// Waits (bounded) until alert `name` (with `label`, if given) is firing
/// or not; how long it took.
fn wait_alert(
    lab: &AgentLab,
    prometheus: &Prometheus,
    name: &str,
    label: Option<(&str, &str)>,
    fire: bool,
    bound: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let now = firing(lab);
        let is = now
            .iter()
            .any(|(n, labels)| n == name && label.is_none_or(|(k, v)| labels[k] == v));
        if is == fire {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "{name} {label:?} never {} within {bound:?}; firing: {now:?}\n{}\n{}",
            if fire { "fired" } else { "resolved" },
            prometheus.log(),
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every query of the dashboard's panels (the `$instance` variable as
/// "all"), with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dist("grafana/failover-dashboard.json"))
        .expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("").to_owned();
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"]
                .as_str()
                .expect("a query")
                .replace("$instance", ".*");
            queries.push((title.clone(), expr));
        }
    }
    queries
}

#[test]
fn the_dashboard_and_alert_rules_work_against_a_real_prometheus() {
    let rules = dist("prometheus/failover-alerts.yml");
    let checked = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("run promtool (cargo xtask setup installs prometheus)");
    assert!(
        checked.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let mut lab = AgentLab::start_with(
        Options {
            probe: Probe::Tcp { port: HEALTH_PORT },
            failback: Failback::Auto(Duration::from_millis(500)),
        },
        |_, config| {
            config
                .metrics(format!("127.0.0.1:{METRICS_PORT}"))
                .max_new_flows_per_cpu(1_000)
        },
    );
    lab.wait_log("metrics endpoint ready", Duration::from_secs(5));
    let prometheus = Prometheus::start(&lab);
    let started = Instant::now();
    while query(&lab, "up{job=\"failover\"} == 1").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus never scraped the agent\n{}",
            prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // A few scrapes, for the rates.
    std::thread::sleep(Duration::from_secs(4));
    let quiet = firing(&lab);
    assert!(
        quiet.is_empty(),
        "alerts firing on a healthy lab: {quiet:?}"
    );

    // The primary fails: a failover, a backend down. And a burst of first
    // ACKs far above the flood guard's rate.
    lab.health[PRIMARY].set(Health::Down);
    let client_if = lab.client.ifindex(PEER_IF);
    Flood::first_acks((VIP, SERVICE_PORT)).burst(&lab.client, client_if, 5_000);
    wait_alert(
        &lab,
        &prometheus,
        "FailoverFloodGuard",
        None,
        true,
        Duration::from_secs(30),
    );
    let after = wait_alert(
        &lab,
        &prometheus,
        "FailoverHappened",
        None,
        true,
        Duration::from_secs(30),
    );
    eprintln!("FailoverHappened fired {after:?} after the primary failed");
    let primary = Some(("backend", "primary"));
    wait_alert(
        &lab,
        &prometheus,
        "FailoverBackendDown",
        primary,
        true,
        Duration::from_secs(40),
    );

    // Every panel's query returns series (the fleet's need [routing] and
    // [sync], which this lab has not).
    let mut empty = Vec::new();
    for (title, expr) in dashboard_queries() {
        if title.starts_with("Fleet:") {
            continue;
        }
        if query(&lab, &expr).is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "panels without series: {empty:#?}");

    // The standby fails too: the service is down, no standby left.
    lab.health[STANDBY].set(Health::Down);
    let service = Some(("service", "web"));
    wait_alert(
        &lab,
        &prometheus,
        "FailoverServiceDown",
        service,
        true,
        Duration::from_secs(30),
    );
    wait_alert(
        &lab,
        &prometheus,
        "FailoverStandbyPoolEmpty",
        service,
        true,
        Duration::from_secs(40),
    );

    // Both back: everything resolves (the failover notice after its minute).
    lab.health[PRIMARY].set(Health::Up);
    lab.health[STANDBY].set(Health::Up);
    for (name, label) in [
        ("FailoverServiceDown", service),
        ("FailoverStandbyPoolEmpty", service),
        ("FailoverBackendDown", primary),
    ] {
        wait_alert(
            &lab,
            &prometheus,
            name,
            label,
            false,
            Duration::from_secs(30),
        );
    }
    wait_alert(
        &lab,
        &prometheus,
        "FailoverHappened",
        None,
        false,
        Duration::from_secs(120),
    );
    wait_alert(
        &lab,
        &prometheus,
        "FailoverFloodGuard",
        None,
        false,
        Duration::from_secs(60),
    );

    // The agent dies: not scraped; back: resolved.
    lab.kill_agent();
    wait_alert(
        &lab,
        &prometheus,
        "FailoverAgentDown",
        None,
        true,
        Duration::from_secs(60),
    );
    lab.start_agent();
    wait_alert(
        &lab,
        &prometheus,
        "FailoverAgentDown",
        None,
        false,
        Duration::from_secs(60),
    );
    assert!(firing(&lab).is_empty(), "{:?}", firing(&lab));
    drop(prometheus);
}
