//! `inspect flows`: the flow table, one row per flow, as the client sends
//! it (`src` the client, `dst` the VIP).

use std::time::Duration;

use failover_common::{Flow, FlowKey, PROTO_TCP, flow_state};
use serde_json::{Value, json};

use super::{Pinned, endpoint_of_key};
use crate::model::Proto;

/// Seconds with one decimal.
fn seconds(nanos: u64) -> f64 {
    (Duration::from_nanos(nanos).as_secs_f64() * 10.0).round() / 10.0
}

/// The state as the data path will treat the entry at `now`.
fn state(key: &FlowKey, flow: &Flow, now: u64) -> &'static str {
    if now > flow.expires_ns {
        "expired"
    } else if key.proto != PROTO_TCP {
        "udp"
    } else if flow.state == flow_state::CLOSING {
        "closing"
    } else {
        "open"
    }
}

fn flow_row(key: &FlowKey, flow: &Flow, now: u64) -> Value {
    json!({
        "proto": Proto::from_number(key.proto).map_or("?".into(), |p| p.to_string()),
        "src": endpoint_of_key(key.src, key.family, key.src_port_be),
        "dst": endpoint_of_key(key.dst, key.family, key.dst_port_be),
        "backend": flow.backend_id,
        "service": flow.service_id,
        "state": state(key, flow, now),
        "idle_s": seconds(now.saturating_sub(flow.last_seen_ns)),
        "expires_in_s": seconds(flow.expires_ns.saturating_sub(now)),
    })
}

/// The rows of `p`'s flow table: those whose addresses contain `filter`,
/// and of the keys in `keep` if given, `limit` at most.
pub(super) fn flows(
    p: &Pinned,
    filter: Option<&str>,
    limit: usize,
    keep: Option<&std::collections::HashSet<FlowKey>>,
) -> Value {
    let now = crate::dataplane::now_ns();
    let rows: Vec<Value> = p
        .flows
        .entries()
        .iter()
        .filter(|(key, _)| keep.is_none_or(|keep| keep.contains(key)))
        .map(|(key, flow)| flow_row(key, flow, now))
        .filter(|row| {
            filter.is_none_or(|f| {
                row["src"].as_str().unwrap_or("").contains(f)
                    || row["dst"].as_str().unwrap_or("").contains(f)
            })
        })
        .take(limit)
        .collect();
    Value::Array(rows)
}
