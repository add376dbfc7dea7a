//! The agent's view: status, `inspect` tables and `explain` of the web
//! service.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use failover::lab::topology::CLIENT_ADDR;
use failover_tests::{
    agent_lab::{AgentLab, FAILOVER_BOUND, SERVICE_PORT, VIP},
    status::{self, BackendStatus, ServiceStatus, StatusAnswer},
};
use serde_json::Value;

// The policy tests watch one service, "web".
pub fn web(status: &StatusAnswer) -> &ServiceStatus {
    status::service(status, "web")
}

pub fn backend<'a>(status: &'a StatusAnswer, name: &str) -> &'a BackendStatus {
    status::backend(status, "web", name)
}

pub fn state(status: &StatusAnswer, name: &str) -> String {
    backend(status, name).state.clone()
}

pub fn healthy(status: &StatusAnswer, name: &str) -> bool {
    backend(status, name).healthy
}

pub fn new_flows_to(status: &StatusAnswer) -> Vec<String> {
    status::new_flows_to(status, "web")
}

/// Backend name → data-path id (`inspect backends`, matched by address).
pub fn ids(lab: &AgentLab) -> BTreeMap<String, u64> {
    let rows = lab.inspect(&["backends"]);
    lab.layout()
        .backends
        .iter()
        .map(|b| {
            let addr = b.addr.to_string();
            let id = rows
                .as_array()
                .expect("backends array")
                .iter()
                .find(|row| row["address"] == addr.as_str())
                .and_then(|row| row["id"].as_u64())
                .unwrap_or_else(|| panic!("{} ({addr}) not in inspect backends: {rows}", b.name));
            (b.name.clone(), id)
        })
        .collect()
}

/// Polls the agent's status until `done` holds (bounded by
/// [`FAILOVER_BOUND`]); returns it and the time since `since`.
pub fn wait_status(
    lab: &AgentLab,
    what: &str,
    since: Instant,
    done: impl Fn(&StatusAnswer) -> bool,
) -> (StatusAnswer, Duration) {
    let started = Instant::now();
    loop {
        let status = lab.status();
        if done(&status) {
            return (status, since.elapsed());
        }
        assert!(
            started.elapsed() < FAILOVER_BOUND,
            "{what}: not within {FAILOVER_BOUND:?}; last status {:#}\n{}",
            decisions(&status),
            lab.diag()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Who takes new flows and each backend's health and state, for messages.
pub fn decisions(status: &StatusAnswer) -> Value {
    let backends: Vec<Value> = web(status)
        .backends
        .iter()
        .map(|b| {
            serde_json::json!({"name": b.name, "tier": b.tier, "healthy": b.healthy,
                "state": b.state, "admin": b.admin})
        })
        .collect();
    serde_json::json!({"new_flows_to": web(status).new_flows_to, "backends": backends})
}

/// The backend id of the forward conntrack entry of the client's flow from
/// `port`, if there is one.
pub fn tracked_backend(lab: &AgentLab, port: u16) -> Option<u64> {
    let src = format!("{CLIENT_ADDR}:{port}");
    lab.inspect(&["flows", "--filter", &src])
        .as_array()
        .expect("flows array")
        .iter()
        .find(|f| f["src"] == src.as_str())
        .map(|f| f["backend"].as_u64().expect("backend id"))
}

/// `failover inspect explain` for a TCP flow from the client's `port`:
/// (path, backend id).
pub fn explain(lab: &AgentLab, port: u16) -> (String, Option<u64>) {
    let src = format!("{CLIENT_ADDR}:{port}");
    let dst = format!("{VIP}:{SERVICE_PORT}");
    let answer = lab.inspect(&["explain", "tcp", &src, &dst]);
    (
        answer["path"].as_str().expect("path").to_owned(),
        answer["backend"].as_u64(),
    )
}

/// The web service's row of `failover inspect services`.
pub fn service_row(lab: &AgentLab) -> Value {
    let rows = lab.inspect(&["services"]);
    let rows = rows.as_array().expect("services array");
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

pub fn selection(row: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = row["selection"]
        .as_array()
        .expect("selection")
        .iter()
        .map(|v| v.as_u64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids
}
