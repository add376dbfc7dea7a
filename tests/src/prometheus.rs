//! A real Prometheus (Debian `prometheus`) for the tests of `dist/`'s alert
//! rules and dashboard: started inside a lab namespace with the rules,
//! scraping the given targets every second as job `failover`, asked through
//! its HTTP API; stopped by its pid and its directory removed in `Drop`.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use failover::lab::child::Child;
use serde_json::Value;

use crate::netns::{NetNs, NsFd};

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);
/// How long a running Prometheus may take to answer its API.
const API_PATIENCE: Duration = Duration::from_secs(10);

/// A file of the repository's `dist/`.
pub fn dist(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(path)
}

pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// Where it listens (held open: the guard is not borrowed).
    ns: NsFd,
    port: u16,
}

impl Prometheus {
    /// Prometheus in `ns`, listening on its loopback at `port`, scraping
    /// `targets` (host:port, as seen from `ns`).
    pub fn start(ns: &NetNs, port: u16, targets: &[String]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "fo-prometheus-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create Prometheus's directory");
        write_config(&dir, targets);
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("create the log");
        let mut command = Command::new("prometheus");
        command
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = Child::spawn(&mut command, Some(ns), Duration::from_secs(5))
            .expect("start prometheus (cargo xtask setup installs it)");
        Self {
            child,
            dir,
            ns: ns.open().expect("open the namespace"),
            port,
        }
    }

    /// Scrapes `targets` from now on: the configuration rewritten and
    /// reloaded (SIGHUP, to the pid we started).
    pub fn set_targets(&self, targets: &[String]) {
        write_config(&self.dir, targets);
        assert!(
            self.child.signal(libc::SIGHUP),
            "Prometheus is gone: {}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` of the HTTP API: its `data`, or why there is none (no
    /// answer, or an answer other than success).
    fn api(&self, path: &str) -> Result<Value, String> {
        let port = self.port;
        let ns = &self.ns;
        let text = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    ns.enter()
                        .and_then(|()| crate::metrics::http_get(port, path))
                })
                .join()
                .expect("the API thread")
        })
        .map_err(|e| format!("GET {path}: {e}"))?;
        let (_, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("GET {path}: no body in {text:?}"))?;
        let answer: Value =
            serde_json::from_str(body).map_err(|e| format!("GET {path}: {e}: {body:?}"))?;
        if answer["status"] != "success" {
            return Err(format!("GET {path}: {answer}"));
        }
        Ok(answer["data"].clone())
    }

    /// [`Self::api`], asked again for a few seconds if it fails (Prometheus
    /// busy); a test never takes "no answer" for "nothing".
    fn api_answered(&self, path: &str) -> Value {
        let started = Instant::now();
        loop {
            match self.api(path) {
                Ok(data) => return data,
                Err(e) if started.elapsed() > API_PATIENCE => {
                    panic!("Prometheus does not answer: {e}\n{}", self.log())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The series an instant query returns.
    pub fn query(&self, expr: &str) -> Vec<Value> {
        series(&self.api_answered(&query_path(expr)))
    }

    /// The firing alerts: (name, labels).
    pub fn firing(&self) -> Vec<(String, Value)> {
        let data = self.api_answered("/api/v1/alerts");
        let alerts = data["alerts"]
            .as_array()
            .unwrap_or_else(|| panic!("no alerts in {data}"));
        alerts
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }

    /// Whether alert `name` (with `label`, if given) is firing.
    pub fn is_firing(&self, name: &str, label: Option<(&str, &str)>) -> bool {
        self.firing()
            .iter()
            .any(|(n, labels)| n == name && label.is_none_or(|(k, v)| labels[k] == v))
    }

    /// Waits (bounded) until alert `name` (with `label`, if given) is
    /// firing or not; how long it took. On failure the message carries
    /// Prometheus's log and `diag`.
    pub fn wait_alert(
        &self,
        name: &str,
        label: Option<(&str, &str)>,
        fire: bool,
        bound: Duration,
        diag: impl Fn() -> String,
    ) -> Duration {
        let started = Instant::now();
        loop {
            if self.is_firing(name, label) == fire {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < bound,
                "{name} {label:?} never {} within {bound:?}; firing: {:?}\n{}\n{}",
                if fire { "fired" } else { "resolved" },
                self.firing(),
                self.log(),
                diag()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits (bounded) until `expr` returns a series; Prometheus may still
    /// be starting meanwhile.
    pub fn wait_series(&self, expr: &str, bound: Duration) {
        let started = Instant::now();
        loop {
            let answer = self.api(&query_path(expr));
            if answer.as_ref().is_ok_and(|data| !series(data).is_empty()) {
                return;
            }
            assert!(
                started.elapsed() < bound,
                "no series for {expr} within {bound:?}: {answer:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.child.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_config(dir: &std::path::Path, targets: &[String]) {
    let targets = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: failover\n    static_configs:\n      - targets: [{targets}]\n",
        dist("prometheus/failover-alerts.yml").display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write the configuration");
}

fn query_path(expr: &str) -> String {
    format!("/api/v1/query?query={}", encode(expr))
}

/// The series of a query's `data`.
fn series(data: &Value) -> Vec<Value> {
    data["result"].as_array().cloned().unwrap_or_default()
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

/// Every query of the dashboard's panels (the `$instance` variable as
/// "all"), with its panel's title.
pub fn dashboard_queries() -> Vec<(String, String)> {
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
