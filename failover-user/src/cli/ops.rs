//! Verbs against the running agent, over its control socket: status, drain,
//! undrain, switchover, failback, maintenance, reload, drill.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::control::{self, BackendStatus, Request, StatusAnswer};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("async runtime")
}

/// Sends one request; an agent-side refusal becomes an error.
pub fn call(socket: &Path, request: &Request) -> anyhow::Result<Value> {
    let response = runtime()?.block_on(control::call(socket, request, CALL_TIMEOUT))?;
    if !response.ok {
        bail!("{}", response.error.unwrap_or_else(|| "refused".into()));
    }
    Ok(response.result)
}

/// The agent's status, typed.
pub fn status_answer(socket: &Path) -> anyhow::Result<StatusAnswer> {
    let value = call(socket, &Request::Status {})?;
    serde_json::from_value(value).context("the agent's status answer has an unknown shape")
}

pub(super) fn print(value: &Value, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    if let Some(changes) = value.get("changes").and_then(Value::as_array) {
        let dry = value["dry_run"].as_bool().unwrap_or(false);
        println!(
            "{}{} {}: {}",
            if dry { "dry run: would " } else { "" },
            value["operation"].as_str().unwrap_or(""),
            value["backend"].as_str().unwrap_or(""),
            if changes.is_empty() {
                "no data-path change".to_owned()
            } else {
                changes
                    .iter()
                    .map(|c| {
                        format!(
                            "{} -> {}",
                            c["backend"].as_str().unwrap_or(""),
                            c["state"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        println!(
            "new flows: {} -> {}",
            join(&value["new_flows_before"]),
            join(&value["new_flows_after"])
        );
        return;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn join(list: &Value) -> String {
    let names: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(",")
    }
}

/// `address:port` of an address as status carries it (bracketed for IPv6).
pub(super) fn with_port(address: &str, port: u16) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(ip) => crate::model::endpoint_text(ip, port),
        Err(_) => format!("{address}:{port}"),
    }
}

/// `a,b` (or `nothing`).
pub(super) fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(",")
    }
}

/// Active flows of `backend` (`service/backend` or unique name) from status.
fn active_flows(socket: &Path, backend: &str) -> anyhow::Result<u64> {
    let status = status_answer(socket)?;
    let (service, name) = backend
        .split_once('/')
        .map_or((None, backend), |(s, b)| (Some(s), b));
    status
        .services
        .iter()
        .filter(|s| service.is_none_or(|wanted| s.name == wanted))
        .find_map(|s| s.backend(name))
        .map(|b| b.active_flows)
        .with_context(|| format!("backend {backend} not in status"))
}

pub fn drain(
    socket: &Path,
    backend: &str,
    deadline: Option<Duration>,
    dry_run: bool,
    wait: bool,
    json: bool,
) -> anyhow::Result<()> {
    let value = call(
        socket,
        &Request::Drain {
            backend: backend.into(),
            deadline_s: deadline.map(|d| d.as_secs_f64()),
            dry_run,
        },
    )?;
    print(&value, json);
    if dry_run || !wait {
        return Ok(());
    }
    // Follow the flows as they end, until none is left or the deadline passes.
    let started = Instant::now();
    let limit = deadline.map_or(Duration::from_secs(600), |d| d + Duration::from_secs(2));
    loop {
        let left = active_flows(socket, backend)?;
        println!(
            "  t={:>5.1}s  {left} active flows on {backend}",
            started.elapsed().as_secs_f64()
        );
        if left == 0 {
            println!("drained: no active flow left on {backend}");
            return Ok(());
        }
        if started.elapsed() >= limit {
            match deadline {
                Some(_) => println!(
                    "deadline passed: the remaining flows were re-picked (dead-flow policy: rehash)"
                ),
                None => {
                    println!("still {left} active flows after {limit:?}; the backend stays drained")
                }
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub fn simple(socket: &Path, request: Request, json: bool) -> anyhow::Result<()> {
    let value = call(socket, &request)?;
    print(&value, json);
    Ok(())
}

/// A failover drill: switch to the best standby, check that it really
/// carries traffic (healthy, and its reply counter rises), then put the
/// service back exactly as it was (the switchover in force before, if any,
/// or none). Backends an operator or a failback hold took out are not
/// drilled with: switching to them would end that.
pub fn drill(
    socket: &Path,
    service: &str,
    verify_for: Duration,
    dry_run: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let status = status_answer(socket)?;
    let svc = status
        .service(service)
        .with_context(|| format!("no service {service:?}"))?;
    let active = svc.new_flows_to.clone();
    if active.is_empty() {
        bail!("the service has no active backend to return to");
    }
    let original = active.join(",");
    let previous_switchover = svc.switchover.clone();
    let mut candidates: Vec<&BackendStatus> = svc
        .backends
        .iter()
        .filter(|b| b.healthy && !active.contains(&b.name))
        .filter(|b| {
            b.admin
                .as_deref()
                .is_none_or(|a| a.starts_with("standing by"))
        })
        .collect();
    candidates.sort_by_key(|b| b.tier);
    let standby = candidates
        .first()
        .context("no healthy standby to drill with")?;
    let standby_name = standby.name.clone();
    let packets_before = standby.packets_from.unwrap_or(0);
    println!("drill {service}: {original} -> {standby_name} -> {original}");
    if dry_run {
        println!(
            "dry run: would switch new flows to {standby_name}, wait up to {verify_for:?} for its replies, then put {original} back"
        );
        return Ok(());
    }

    let t = Instant::now();
    call(
        socket,
        &Request::Switchover {
            service: service.into(),
            to: Some(standby_name.clone()),
            dry_run: false,
        },
    )?;
    println!(
        "  1. switchover to {standby_name}: {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );

    let t = Instant::now();
    let mut verified = None;
    while t.elapsed() < verify_for {
        let status = status_answer(socket)?;
        let backend = status
            .service(service)
            .and_then(|s| s.backend(&standby_name));
        if let Some(b) = backend
            && b.healthy
            && b.packets_from.unwrap_or(0) > packets_before
        {
            verified = Some(b.packets_from.unwrap_or(0) - packets_before);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    match verified {
        Some(packets) => println!(
            "  2. verified: {standby_name} is healthy and answered {packets} packets through the data path ({:.1} s)",
            t.elapsed().as_secs_f64()
        ),
        None => println!(
            "  2. NOT verified within {verify_for:?}: no reply traffic from {standby_name} (is there client traffic?)"
        ),
    }

    let t = Instant::now();
    call(
        socket,
        &Request::Switchover {
            service: service.into(),
            to: previous_switchover.clone(),
            dry_run: false,
        },
    )?;
    println!(
        "  3. switched back to {original} ({}): {:.0} ms",
        match &previous_switchover {
            Some(target) => format!("the switchover to {target} in force again"),
            None => "no switchover in force, as before".to_owned(),
        },
        t.elapsed().as_secs_f64() * 1000.0
    );
    println!(
        "drill {}: {:.1} s in all",
        if verified.is_some() {
            "passed"
        } else {
            "FAILED"
        },
        started.elapsed().as_secs_f64()
    );
    if verified.is_none() {
        bail!("the standby did not prove it carries traffic");
    }
    Ok(())
}
