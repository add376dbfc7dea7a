//! `failover inspect`: reads the pinned maps directly, so it works with the
//! agent dead. Human tables by default, `--json` for scripts.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use failover_common::{
    names,
    stats::{VERDICT_NAMES, reason},
};
use serde_json::{Value, json};

use crate::{
    dataplane::{
        flow_maps::{Flows, Reverse},
        maps::{Backends, Counters, MaglevTables, PinDir, Services},
    },
    model::{BackendState, Proto},
};

mod explain;
mod flows;

#[derive(Subcommand)]
pub enum What {
    /// Services, their active tier and selection.
    Services,
    /// Backends with state, tier and traffic.
    Backends,
    /// Verdict and reason counters.
    Counters,
    /// Flow-table entries: state, backend, idle time and lifetime left.
    ///
    /// Example: failover inspect flows --filter 192.0.2.7
    Flows {
        /// Only entries whose addresses or ports contain this text.
        #[arg(long)]
        filter: Option<String>,
        /// Most entries shown.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only flows pinned off the table: seen here, on a backend the
        /// table no longer names for them (what `[sync]` shares).
        #[arg(long)]
        pinned: bool,
    },
    /// Which service, backend and path a packet would take, and why.
    ///
    /// Example: failover inspect explain tcp 192.0.2.7:40000 203.0.113.10:80
    /// (IPv6: tcp [2001:db8::7]:40000 [2001:db8::10]:80)
    Explain {
        /// tcp or udp
        proto: String,
        /// source address:port ([address]:port for IPv6)
        src: std::net::SocketAddr,
        /// destination address:port ([address]:port for IPv6)
        dst: std::net::SocketAddr,
    },
}

/// The address a key holds (an unknown family's shown as IPv4's first word).
fn addr(words: [u32; 4], family: u8) -> IpAddr {
    crate::model::addr_of_key(&words, family)
        .unwrap_or_else(|| Ipv4Addr::from(words[0].to_ne_bytes()).into())
}

/// `address:port` (bracketed for IPv6) of a key's address and a port in
/// network order.
fn endpoint_of_key(words: [u32; 4], family: u8, port_be: u16) -> String {
    crate::model::endpoint_text(addr(words, family), u16::from_be(port_be))
}

fn state_name(raw: u32) -> String {
    BackendState::from_raw(raw).map_or_else(|| format!("unknown({raw})"), |s| s.to_string())
}

struct Pinned {
    services: Services,
    tables: MaglevTables,
    backends: Backends,
    flows: Flows,
    reverse: Reverse,
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
        flows: Flows::open(&mut source)?,
        reverse: Reverse::open(&mut source)?,
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
        What::Flows {
            filter,
            limit,
            pinned: only_pinned,
        } => {
            let keep = if only_pinned {
                let keys = crate::flow_sync::pinned_now(pin_dir)
                    .context("finding the flows pinned off the table")?
                    .into_iter()
                    .map(|flow| flow.key)
                    .collect();
                Some(keys)
            } else {
                None
            };
            flows::flows(&pinned, filter.as_deref(), limit, keep.as_ref())
        }
        What::Explain { proto, src, dst } => explain::explain(&pinned, &proto, src, dst)?,
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
            "vip": addr(key.addr, key.family).to_string(),
            "port": u16::from_be(key.port_be),
            "proto": Proto::from_number(key.proto).map_or("?".into(), |p| p.to_string()),
            "active_tier": service.active_tier,
            "selection": selection,
            "table_size": service.table_size,
            "table_generation": service.table_generation,
            "reset_dead_flows": service.flags & failover_common::SERVICE_F_RESET_DEAD_FLOWS != 0,
            "redispatch": service.flags & failover_common::SERVICE_F_REDISPATCH != 0,
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
            "address": addr(backend.addr, backend.family).to_string(),
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
