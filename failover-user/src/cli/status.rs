//! `failover status`: the agent's typed status answer as a table, once or
//! refreshing in place (`--watch`, for operators on SSH: the status page's
//! information in a terminal, with packet rates from successive answers).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use crate::control::{Request, StatusAnswer};

use super::ops::{call, listed, print, status_answer, with_port};

/// `failover status [--json]`.
pub fn once(socket: &Path, json: bool) -> anyhow::Result<()> {
    if json {
        print(&call(socket, &Request::Status {})?, true);
        return Ok(());
    }
    print!("{}", render(&status_answer(socket)?, None));
    Ok(())
}

/// The last events a watch frame shows.
const RECENT_SHOWN: usize = 5;

/// `failover status --watch`: refreshes every `interval` until interrupted
/// (or `count` times).
pub fn watch(socket: &Path, interval: Duration, count: Option<u64>) -> anyhow::Result<()> {
    let mut last: Option<(Instant, BTreeMap<String, u64>)> = None;
    let mut shown = 0u64;
    loop {
        let at = Instant::now();
        let frame = match status_answer(socket) {
            Ok(status) => {
                let packets = packets_to(&status);
                let rates = last.as_ref().map(|(then, before)| {
                    let seconds = at.duration_since(*then).as_secs_f64().max(1e-3);
                    packets
                        .iter()
                        .map(|(key, now)| {
                            let before = before.get(key).copied().unwrap_or(*now);
                            (key.clone(), now.saturating_sub(before) as f64 / seconds)
                        })
                        .collect()
                });
                last = Some((at, packets));
                let mut frame = render(&status, rates.as_ref());
                for event in status.recent_events.iter().rev().take(RECENT_SHOWN) {
                    let _ = writeln!(
                        frame,
                        "{} {}: {}",
                        event["time"].as_str().unwrap_or(""),
                        event["kind"].as_str().unwrap_or(""),
                        event["message"].as_str().unwrap_or("")
                    );
                }
                frame
            }
            // The agent restarting: say so and keep watching.
            Err(err) => format!("no answer from the agent: {err:#}\n"),
        };
        // Home and clear, then the frame: no scrolling history.
        print!(
            "\x1b[H\x1b[2J{frame}\n(refreshed every {:?}; Ctrl-C to stop)\n",
            interval
        );
        std::io::stdout().flush()?;
        shown += 1;
        if count.is_some_and(|count| shown >= count) {
            return Ok(());
        }
        std::thread::sleep(interval.saturating_sub(at.elapsed()));
    }
}

/// Packets sent to each backend (`service/backend`) so far.
fn packets_to(status: &StatusAnswer) -> BTreeMap<String, u64> {
    status
        .services
        .iter()
        .flat_map(|s| {
            s.backends
                .iter()
                .filter_map(move |b| Some((format!("{}/{}", s.name, b.name), b.packets_to?)))
        })
        .collect()
}

/// The status as a table; `rates`: packets per second to each backend
/// (`service/backend`), when known.
pub fn render(status: &StatusAnswer, rates: Option<&BTreeMap<String, f64>>) -> String {
    let mut out = String::new();
    for service in &status.services {
        let _ = writeln!(
            out,
            "service {} {}/{}  new flows -> {}",
            service.name,
            with_port(&service.vip, service.port),
            service.protocol,
            listed(&service.new_flows_to)
        );
        let addresses: Vec<String> = service
            .backends
            .iter()
            .map(|b| match b.port {
                Some(port) => with_port(&b.address, port),
                None => b.address.clone(),
            })
            .collect();
        let width = addresses.iter().map(String::len).max().unwrap_or(0).max(18);
        let _ = writeln!(
            out,
            "  {:<12} {:<width$} {:>4} {:<8} {:<9} {:<26} {:>6} {:>10}  last probe",
            "backend",
            "address",
            "tier",
            "health",
            "state",
            "admin",
            "flows",
            if rates.is_some() {
                "pkts/s to"
            } else {
                "pkts to"
            }
        );
        for (b, address) in service.backends.iter().zip(&addresses) {
            let last = match (&b.probe.last_error, b.probe.last_latency_ms) {
                (Some(err), _) => format!("failed: {err}"),
                (None, Some(ms)) => format!("ok {ms:.2} ms"),
                _ => "none yet".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {:<12} {:<width$} {:>4} {:<8} {:<9} {:<26} {:>6} {:>10}  {last}",
                b.name,
                address,
                b.tier,
                if b.healthy { "healthy" } else { "failing" },
                b.state,
                b.admin.as_deref().unwrap_or("-"),
                b.active_flows,
                match rates.and_then(|r| r.get(&format!("{}/{}", service.name, b.name))) {
                    Some(rate) => format!("{rate:.0}"),
                    None => b.packets_to.map_or("-".to_owned(), |p| p.to_string()),
                },
            );
        }
    }
    let _ = writeln!(
        out,
        "failovers {}  failbacks {}  last failover gap {}  (flows: seen within {} s)",
        status.totals.failovers_total,
        status.totals.failbacks_total,
        status
            .totals
            .last_failover_gap_seconds
            .map_or("-".into(), |s| format!("{:.3} s", s)),
        status.active_flow_idle_s
    );
    if status.host_drained {
        let _ = writeln!(
            out,
            "host drained (`failover host undrain` ends it): every VIP withdrawn"
        );
    }
    for announcement in &status.announcements {
        let _ = writeln!(
            out,
            "VIP {} {}: {}",
            announcement.vip,
            if announcement.announced {
                "announced"
            } else {
                "withdrawn"
            },
            announcement.why
        );
    }
    if let Some(sync) = &status.sync {
        let _ = writeln!(
            out,
            "sync {} every {} ms: {} pinned flows sent at the last round, {} copies of the peers' held{}",
            sync.listen,
            sync.interval_ms,
            sync.pinned_flows,
            sync.copies,
            if sync.caught_up {
                ""
            } else {
                "; waiting for the peers' pinned flows before announcing"
            }
        );
        for peer in &sync.peers {
            let _ = writeln!(
                out,
                "  peer {}: {}, {} rounds, {} flows received",
                peer.peer,
                peer.heard_s_ago
                    .map_or("never heard".into(), |s| format!("heard {s:.1} s ago")),
                peer.rounds_complete,
                peer.flows_received_total
            );
        }
        let refused: u64 = sync.refused.values().sum();
        if refused > 0 {
            let _ = writeln!(out, "  refused datagrams: {:?}", sync.refused);
        }
    }
    out
}
