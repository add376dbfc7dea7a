//! `failover inspect`: reads the pinned maps directly, so it works with the
//! agent dead. Human tables by default, `--json` for scripts.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use failover_common::{
    Backend, FAMILY_IPV4, Flow, FlowKey, MaglevKey, Service, flow_direction,
    hash::{FLOW_HASH_SEED, flow_hash},
    names,
    pick::{self, Found, PickMaps},
    stats::{VERDICT_NAMES, reason},
    usable_for_established,
};
use serde_json::{Value, json};

use crate::{
    dataplane::maps::{Backends, Conntrack, Counters, MaglevTables, PinDir, Services},
    model::{BackendState, Proto},
};

#[derive(Subcommand)]
pub enum What {
    /// Services, their active tier and selection.
    Services,
    /// Backends with state, tier and traffic.
    Backends,
    /// Verdict and reason counters.
    Counters,
    /// Connection-tracking entries.
    ///
    /// Example: failover inspect flows --filter 192.0.2.7
    Flows {
        /// Only entries whose addresses or ports contain this text.
        #[arg(long)]
        filter: Option<String>,
        /// Most entries shown.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Which service, backend and path a packet would take, and why.
    ///
    /// Example: failover inspect explain tcp 192.0.2.7:40000 203.0.113.10:80
    Explain {
        /// tcp or udp
        proto: String,
        /// source address:port
        src: std::net::SocketAddrV4,
        /// destination address:port
        dst: std::net::SocketAddrV4,
    },
}

fn addr(words: [u32; 4]) -> Ipv4Addr {
    Ipv4Addr::from(words[0].to_ne_bytes())
}

fn state_name(raw: u32) -> String {
    BackendState::from_raw(raw).map_or_else(|| format!("unknown({raw})"), |s| s.to_string())
}

struct Pinned {
    services: Services,
    tables: MaglevTables,
    backends: Backends,
    conntrack: Conntrack,
    counters: Counters,
}

fn open(pin_dir: &Path) -> anyhow::Result<Pinned> {
    // SAFETY: trivial libc call.
    if unsafe { libc::geteuid() } != 0 {
        bail!("reading pinned BPF maps needs root");
    }
    if !pin_dir.join(names::SERVICES).exists() {
        bail!(
            "nothing pinned at {} (is the agent configured with another pin_dir, or never started?)",
            pin_dir.display()
        );
    }
    let mut source = PinDir(pin_dir);
    Ok(Pinned {
        services: Services::open(&mut source)?,
        tables: MaglevTables::open(&mut source)?,
        backends: Backends::open(&mut source)?,
        conntrack: Conntrack::open(&mut source)?,
        counters: Counters::open(&mut source)?,
    })
}

pub fn run(pin_dir: &Path, json_output: bool, what: What) -> anyhow::Result<()> {
    let pinned =
        open(pin_dir).with_context(|| format!("opening maps pinned at {}", pin_dir.display()))?;
    let value = match what {
        What::Services => services(&pinned)?,
        What::Backends => backends(&pinned)?,
        What::Counters => counters(&pinned)?,
        What::Flows { filter, limit } => flows(&pinned, filter.as_deref(), limit),
        What::Explain { proto, src, dst } => explain(&pinned, &proto, src, dst)?,
    };
    if json_output {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_table(&value);
    }
    Ok(())
}

fn services(p: &Pinned) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    let mut all = p.services.all()?;
    all.sort_by_key(|(_, s)| s.id);
    for (key, service) in all {
        let traffic = p.counters.service(service.id)?;
        let selection: Vec<u32> = service.selection[..service.selection_len as usize].to_vec();
        rows.push(json!({
            "id": service.id,
            "vip": addr(key.addr).to_string(),
            "port": u16::from_be(key.port_be),
            "proto": Proto::from_number(key.proto).map_or("?".into(), |p| p.to_string()),
            "active_tier": service.active_tier,
            "selection": selection,
            "table_size": service.table_size,
            "table_generation": service.table_generation,
            "reset_dead_flows": service.flags & failover_common::SERVICE_F_RESET_DEAD_FLOWS != 0,
            "packets_to_backends": traffic.to_backend.packets,
            "packets_from_backends": traffic.from_backend.packets,
        }));
    }
    Ok(Value::Array(rows))
}

fn backends(p: &Pinned) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    for (id, backend) in p.backends.in_use()? {
        let traffic = p.counters.backend(id)?;
        rows.push(json!({
            "id": id,
            "service": backend.service_id,
            "address": addr(backend.addr).to_string(),
            "port": if backend.port_be == 0 { Value::from("service") } else { Value::from(u16::from_be(backend.port_be)) },
            "tier": backend.tier,
            "state": state_name(backend.state),
            "packets_to": traffic.to_backend.packets,
            "bytes_to": traffic.to_backend.bytes,
            "packets_from": traffic.from_backend.packets,
            "bytes_from": traffic.from_backend.bytes,
        }));
    }
    Ok(Value::Array(rows))
}

fn counters(p: &Pinned) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    for (name, counter) in VERDICT_NAMES.iter().zip(p.counters.verdicts()?) {
        rows.push(json!({"kind": "verdict", "name": name, "packets": counter.packets, "bytes": counter.bytes}));
    }
    for (index, counter) in p.counters.reasons()?.iter().enumerate() {
        let kind = if index as u32 >= reason::FIRST_EVENT {
            "event"
        } else {
            "outcome"
        };
        rows.push(json!({"kind": kind, "name": reason::NAMES[index], "packets": counter.packets, "bytes": counter.bytes}));
    }
    Ok(Value::Array(rows))
}

fn flow_row(key: &FlowKey, flow: &Flow, now: u64) -> Value {
    let idle = Duration::from_nanos(now.saturating_sub(flow.last_seen_ns));
    let direction = if flow.direction == flow_direction::FORWARD {
        "forward"
    } else {
        "reply"
    };
    json!({
        "direction": direction,
        "proto": Proto::from_number(key.proto).map_or("?".into(), |p| p.to_string()),
        "src": format!("{}:{}", addr(key.src), u16::from_be(key.src_port_be)),
        "dst": format!("{}:{}", addr(key.dst), u16::from_be(key.dst_port_be)),
        "backend": flow.backend_id,
        "service": flow.service_id,
        "idle_s": (idle.as_secs_f64() * 10.0).round() / 10.0,
    })
}

fn flows(p: &Pinned, filter: Option<&str>, limit: usize) -> Value {
    let now = crate::dataplane::now_ns();
    let rows: Vec<Value> = p
        .conntrack
        .entries()
        .iter()
        .filter(|(key, _)| key.family == FAMILY_IPV4)
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

fn explain(
    p: &Pinned,
    proto: &str,
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
) -> anyhow::Result<Value> {
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => bail!("protocol {other:?}: expected tcp or udp"),
    };
    let key = FlowKey {
        src: failover_common::ipv4_addr(src.ip().octets()),
        dst: failover_common::ipv4_addr(dst.ip().octets()),
        src_port_be: src.port().to_be(),
        dst_port_be: dst.port().to_be(),
        proto: proto.number(),
        family: FAMILY_IPV4,
        _pad: [0; 2],
    };
    let service_key = crate::model::ServiceSpec {
        vip: *dst.ip(),
        port: dst.port(),
        proto,
    }
    .key();
    // The program's order: the tracked flow first, then the service.
    let mut steps = Vec::new();
    let mut repick = false;
    if let Some(flow) = p.conntrack.get(&key)? {
        let backend = p.backends.get(flow.backend_id)?;
        let recorded = backend.generation == flow.backend_generation
            && backend.state != failover_common::backend_state::EMPTY;
        if flow.direction == flow_direction::REPLY {
            if recorded {
                steps.push(format!(
                    "reply of a tracked flow from backend {}: source rewritten to {}:{}",
                    flow.backend_id,
                    addr(flow.nat_addr),
                    u16::from_be(flow.nat_port_be)
                ));
                let ifindex = flow.reply_ingress_ifindex;
                if ifindex != 0 {
                    let name = crate::dataplane::netdev::name_of(ifindex)
                        .unwrap_or_else(|| format!("ifindex {ifindex}"));
                    steps.push(format!(
                        "only when it arrives on {name}, the backend's side; elsewhere it is dropped (drop_reply_wrong_interface)"
                    ));
                }
                return Ok(json!({"path": "reply", "backend": flow.backend_id, "steps": steps}));
            }
            steps.push(format!(
                "a reply entry of an earlier owner of backend id {}: forgotten (removed), the packet goes on untracked",
                flow.backend_id
            ));
        } else if recorded && usable_for_established(backend.state) {
            steps.push(format!(
                "tracked flow on backend {} ({}, {}): stays there",
                flow.backend_id,
                describe(&backend),
                state_name(backend.state)
            ));
            return Ok(json!({"path": "established", "backend": flow.backend_id, "steps": steps}));
        } else {
            let why = if recorded {
                state_name(backend.state).to_owned()
            } else {
                "gone (its id has another owner or none)".to_owned()
            };
            steps.push(format!(
                "tracked flow's backend {} is {why}: re-picked",
                flow.backend_id
            ));
            repick = true;
        }
    }
    let Some(service) = p.services.get(&service_key)? else {
        if repick {
            steps.push("no service at its destination any more: the entry is forgotten".into());
        }
        steps.push(format!(
            "{dst}/{proto} is not a service and no live tracked flow matches: passed to the kernel stack untouched"
        ));
        return Ok(json!({"path": "pass_no_service", "steps": steps}));
    };
    steps.insert(
        0,
        format!(
            "service id {} ({dst}/{proto}), active tier {}",
            service.id, service.active_tier
        ),
    );
    if repick
        && proto == Proto::Tcp
        && service.flags & failover_common::SERVICE_F_RESET_DEAD_FLOWS != 0
    {
        steps.push(
            "dead-flow policy reset: a TCP packet (other than a RST or a fresh SYN, which is re-picked) is answered with a RST from the VIP (tx_reset)"
                .into(),
        );
        return Ok(json!({"path": "tx_reset", "steps": steps}));
    }
    let picked = pick(p, &service, &key)?;
    match picked {
        Some((id, backend, how)) => {
            steps.push(format!(
                "hash {:#010x} → {how} → backend {id} ({})",
                flow_hash(&key, FLOW_HASH_SEED),
                describe(&backend),
            ));
            Ok(json!({"path": "new_flow", "backend": id, "steps": steps}))
        }
        None => {
            steps.push("no usable backend: dropped (drop_no_backend)".into());
            Ok(json!({"path": "drop_no_backend", "steps": steps}))
        }
    }
}

fn describe(backend: &Backend) -> String {
    let port = if backend.port_be == 0 {
        "service port".to_owned()
    } else {
        u16::from_be(backend.port_be).to_string()
    };
    format!("{}:{port}, tier {}", addr(backend.addr), backend.tier)
}

/// The pinned maps as the shared per-packet pick reads them; the first
/// read error is kept (the pick itself only knows found or not).
struct PinnedPick<'a> {
    pinned: &'a Pinned,
    error: std::cell::RefCell<Option<anyhow::Error>>,
}

impl PinnedPick<'_> {
    fn keep<T>(&self, result: Result<Option<T>, impl Into<anyhow::Error>>) -> Option<T> {
        result.unwrap_or_else(|err| {
            self.error.borrow_mut().get_or_insert(err.into());
            None
        })
    }
}

impl PickMaps for PinnedPick<'_> {
    fn backend(&self, id: u32) -> Option<Backend> {
        self.keep(self.pinned.backends.get(id).map(Some))
    }

    fn table_slot(&self, key: &MaglevKey, index: usize) -> Option<u32> {
        self.keep(self.pinned.tables.chunk_slot(key, index))
    }
}

/// The data path's pick: the same code the program runs, on the pinned
/// maps. Returns (backend id, backend, how it was found).
fn pick(
    p: &Pinned,
    service: &Service,
    key: &FlowKey,
) -> anyhow::Result<Option<(u32, Backend, String)>> {
    let maps = PinnedPick {
        pinned: p,
        error: Default::default(),
    };
    let (picked, _stale) = pick::pick(&maps, service, flow_hash(key, FLOW_HASH_SEED));
    if let Some(err) = maps.error.into_inner() {
        return Err(err.context("reading the pinned maps"));
    }
    Ok(picked.map(|p| {
        let how = match p.found {
            Found::Table { slot } => format!(
                "Maglev slot {slot} of {} (generation {})",
                service.table_size, service.table_generation
            ),
            Found::Selection { entry } => {
                format!("selection entry {entry} of {}", service.selection_len)
            }
        };
        (p.backend_id, p.backend, how)
    }))
}

/// Prints an array of flat objects as an aligned table, or an explanation.
fn print_table(value: &Value) {
    if let Some(steps) = value.get("steps").and_then(Value::as_array) {
        for step in steps {
            println!("- {}", step.as_str().unwrap_or_default());
        }
        return;
    }
    let Some(rows) = value.as_array() else { return };
    let Some(first) = rows.first().and_then(Value::as_object) else {
        println!("(none)");
        return;
    };
    let columns: Vec<&String> = first.keys().collect();
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(&r[c.as_str()]).len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(columns.iter().map(|c| c.to_string()).collect()));
    for row in rows {
        println!(
            "{}",
            line(columns.iter().map(|c| cell(&row[c.as_str()])).collect())
        );
    }
}
