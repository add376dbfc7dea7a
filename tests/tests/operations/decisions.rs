//! What status says about decisions, to compare before and after a CLI
//! verb.

use failover_tests::status::{StatusAnswer, backend, service};
use serde_json::Value;

/// What status says about decisions, without the counters that move on
/// their own (probe counts and latencies, packets, flows, uptime).
pub fn decisions(status: &StatusAnswer) -> Value {
    let services: Vec<Value> = status.services.iter().map(service_decisions).collect();
    Value::Array(services)
}

/// One service's decisions (see [`decisions`]).
pub fn service_decisions(s: &failover_tests::status::ServiceStatus) -> Value {
    let backends: Vec<Value> = s
        .backends
        .iter()
        .map(|b| {
            serde_json::json!({
                "name": b.name, "address": b.address, "port": b.port,
                "tier": b.tier, "healthy": b.healthy, "state": b.state,
                "admin": b.admin,
            })
        })
        .collect();
    serde_json::json!({
        "name": s.name, "vip": s.vip, "port": s.port,
        "protocol": s.protocol, "new_flows_to": s.new_flows_to,
        "backends": backends,
    })
}

pub fn decisions_of(status: &StatusAnswer, service_name: &str) -> Value {
    service_decisions(service(status, service_name))
}

/// web with no operation under way: new flows to the primary, primary and
/// standby both up with no admin state.
#[track_caller]
pub fn assert_plain_primary_standby(status: &StatusAnswer) {
    assert_eq!(service(status, "web").new_flows_to, ["primary"]);
    for name in ["primary", "standby"] {
        let b = backend(status, "web", name);
        assert_eq!(b.state, "up", "{status:#?}");
        assert!(b.admin.is_none(), "{status:#?}");
    }
}
