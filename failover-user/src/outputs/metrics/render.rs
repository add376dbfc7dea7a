//! The metric families: agent-side from the telemetry snapshot, data-path
//! counters from the maps.

use failover_common::{
    Counter, TrafficStats,
    stats::{VERDICT_NAMES, reason},
};

use super::{
    DatapathCounters,
    exposition::{Exposition, SampleValue, float},
};
use crate::outputs::telemetry::{
    BackendView, EgressStatus, LATENCY_BUCKETS, ServiceView, Snapshot,
};

/// The exposition text for one scrape: agent-side metrics from `snapshot`,
/// data-path counters from `datapath` (`None`: maps unavailable).
pub fn render(snapshot: &Snapshot, datapath: Option<&DatapathCounters>) -> String {
    let mut out = Exposition::default();

    out.family(
        "failover_agent_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
    );
    out.sample(
        "failover_agent_uptime_seconds",
        &[],
        snapshot.started_seconds_ago,
    );

    out.family(
        "failover_datapath_up",
        "gauge",
        "1 if the pinned data-path maps could be read for this scrape.",
    );
    out.sample("failover_datapath_up", &[], u8::from(datapath.is_some()));

    render_agent(&mut out, snapshot);
    if let Some(datapath) = datapath {
        render_datapath(&mut out, snapshot, datapath);
    }
    out.text
}

/// `service`, `backend` and `address` of one backend.
pub(super) type BackendLabels<'a> = [(&'static str, &'a str); 3];

/// Every backend with its service and the labels naming it.
pub(super) fn backends(
    snapshot: &Snapshot,
) -> impl Iterator<Item = (&ServiceView, &BackendView, BackendLabels<'_>)> {
    snapshot.services.iter().flat_map(|service| {
        service.backends.iter().map(move |backend| {
            let labels = [
                ("service", service.name.as_str()),
                ("backend", backend.name.as_str()),
                ("address", backend.address.as_str()),
            ];
            (service, backend, labels)
        })
    })
}

/// A gauge family with one sample per backend that `value` gives one.
pub(super) fn backend_gauge<V: SampleValue>(
    out: &mut Exposition,
    snapshot: &Snapshot,
    name: &str,
    help: &str,
    value: impl Fn(&ServiceView, &BackendView) -> Option<V>,
) {
    out.family(name, "gauge", help);
    for (service, backend, labels) in backends(snapshot) {
        if let Some(value) = value(service, backend) {
            out.sample(name, &labels, value);
        }
    }
}

pub(super) fn render_agent(out: &mut Exposition, snapshot: &Snapshot) {
    out.family(
        "failover_service_active_backends",
        "gauge",
        "Backends of the service that take new flows now.",
    );
    for service in &snapshot.services {
        out.sample(
            "failover_service_active_backends",
            &[("service", &service.name)],
            service.active.len(),
        );
    }

    backend_gauge(
        out,
        snapshot,
        "failover_backend_healthy",
        "1 if the backend is healthy by its probes (rise/fall applied).",
        |_, backend| Some(u8::from(backend.healthy)),
    );
    backend_gauge(
        out,
        snapshot,
        "failover_backend_active",
        "1 if the backend takes new flows now.",
        |service, backend| Some(u8::from(service.active.contains(&backend.name))),
    );
    backend_gauge(
        out,
        snapshot,
        "failover_backend_tier",
        "The backend's priority tier: 0 the most preferred; higher tiers are standbys.",
        |_, backend| Some(backend.tier),
    );
    backend_gauge(
        out,
        snapshot,
        "failover_backend_weight",
        "The backend's configured weight: its share of new flows among those taking them (times failover_backend_slow_start_share while it ramps).",
        |_, backend| Some(backend.weight),
    );

    out.family(
        "failover_backend_state",
        "gauge",
        "Data-path state of the backend: 1 for the current one of up, down, draining.",
    );
    for (_, backend, labels) in backends(snapshot) {
        for state in ["up", "down", "draining"] {
            let labels = with(&labels, ("state", state));
            out.sample(
                "failover_backend_state",
                &labels,
                u8::from(backend.state == state),
            );
        }
    }

    out.family(
        "failover_backend_admin_reason",
        "gauge",
        "1 with the reason when the backend's state is not plain health (held, drained, maintenance).",
    );
    for (_, backend, labels) in backends(snapshot) {
        if let Some(reason) = &backend.admin {
            out.sample(
                "failover_backend_admin_reason",
                &with(&labels, ("reason", reason)),
                1u8,
            );
        }
    }

    backend_gauge(
        out,
        snapshot,
        "failover_backend_suppressed",
        "1 while flap damping keeps the backend out of new flows.",
        |_, backend| Some(u8::from(backend.suppressed_for_s.is_some())),
    );
    backend_gauge(
        out,
        snapshot,
        "failover_backend_damping_penalty",
        "Flap-damping penalty of the backend (services with damping), as of its last change.",
        |_, backend| backend.damping_penalty,
    );
    backend_gauge(
        out,
        snapshot,
        "failover_backend_slow_start_share",
        "Share of its weight a returning backend gets while its slow start ramps up.",
        |_, backend| backend.slow_start_share,
    );

    out.family(
        "failover_probe_results_total",
        "counter",
        "Health probes by result.",
    );
    for (_, backend, labels) in backends(snapshot) {
        let ok = with(&labels, ("result", "ok"));
        out.sample("failover_probe_results_total", &ok, backend.probe.ok_total);
        let failed = with(&labels, ("result", "failed"));
        out.sample(
            "failover_probe_results_total",
            &failed,
            backend.probe.failed_total,
        );
    }

    out.family(
        "failover_probe_latency_seconds",
        "histogram",
        "Health probe latency, successful and failed probes alike.",
    );
    for (_, backend, labels) in backends(snapshot) {
        let probe = &backend.probe;
        // Cumulative already; the running maximum keeps it so whatever the source.
        let mut cumulative = 0;
        for (count, bound) in probe.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            cumulative = cumulative.max(*count);
            let le = float(bound);
            out.sample(
                "failover_probe_latency_seconds_bucket",
                &with(&labels, ("le", &le)),
                cumulative,
            );
        }
        let total = probe.latency_count.max(cumulative);
        out.sample(
            "failover_probe_latency_seconds_bucket",
            &with(&labels, ("le", "+Inf")),
            total,
        );
        out.sample(
            "failover_probe_latency_seconds_sum",
            &labels,
            probe.latency_sum_seconds,
        );
        out.sample("failover_probe_latency_seconds_count", &labels, total);
    }

    let totals = &snapshot.totals;
    out.family(
        "failover_transitions_total",
        "counter",
        "Health flips of any backend.",
    );
    out.sample("failover_transitions_total", &[], totals.transitions_total);
    out.family(
        "failover_failovers_total",
        "counter",
        "Unplanned switches of new flows away from failed backends.",
    );
    out.sample("failover_failovers_total", &[], totals.failovers_total);
    out.family(
        "failover_failbacks_total",
        "counter",
        "Switches of new flows back to a recovered, more preferred backend.",
    );
    out.sample("failover_failbacks_total", &[], totals.failbacks_total);
    out.family(
        "failover_redirect_watch_up",
        "gauge",
        "1 if the agent counts the frames the kernel drops after the data path redirected them.",
    );
    out.sample(
        "failover_redirect_watch_up",
        &[],
        u8::from(snapshot.egress.watching),
    );
    for (family, kind, help, value) in [
        (
            "failover_redirect_drops_total",
            "counter",
            "Frames the kernel dropped after the data path redirected them to this interface (since the agent started).",
            (|e: &EgressStatus| e.redirect_drops) as fn(&EgressStatus) -> u64,
        ),
        (
            "failover_egress_via_stack",
            "gauge",
            "1 if packets for this interface go through the kernel stack because it drops redirected frames.",
            |e: &EgressStatus| u64::from(e.via_stack),
        ),
    ] {
        out.family(family, kind, help);
        for egress in &snapshot.egress.interfaces {
            out.sample(
                family,
                &[("interface", egress.interface.as_str())],
                value(egress),
            );
        }
    }
    out.family(
        "failover_vip_announced",
        "gauge",
        "1 if the VIP is announced to the routing daemon ([routing]); 0 if withdrawn.",
    );
    for announcement in &snapshot.announcements {
        out.sample(
            "failover_vip_announced",
            &[("vip", announcement.vip.as_str())],
            u8::from(announcement.announced),
        );
    }
    if let Some(sync) = &snapshot.sync {
        sync_families(out, sync);
    }
    out.family(
        "failover_switches_total",
        "counter",
        "Changes of who takes new flows, planned (operator requests: switchover, drain, maintenance, failback) or unplanned (a failure, a recovery, a timer), with the reason.",
    );
    for count in &totals.switches {
        out.sample(
            "failover_switches_total",
            &[
                ("service", count.service.as_str()),
                ("kind", count.kind.as_str()),
                ("reason", count.reason.as_str()),
            ],
            count.total,
        );
    }
    out.family(
        "failover_map_write_failures_total",
        "counter",
        "Data-path map writes that failed; the service is written again until the maps agree.",
    );
    out.sample(
        "failover_map_write_failures_total",
        &[],
        totals.map_write_failures_total,
    );
    out.family(
        "failover_services_out_of_sync",
        "gauge",
        "Services whose maps do not carry the agent's decisions yet (being resynced).",
    );
    out.sample(
        "failover_services_out_of_sync",
        &[],
        totals.services_out_of_sync,
    );
    out.family(
        "failover_last_failover_gap_seconds",
        "gauge",
        "First failed probe to map update, of the last failover (absent before the first).",
    );
    if let Some(gap) = totals.last_failover_gap_seconds {
        out.sample("failover_last_failover_gap_seconds", &[], gap);
    }
}

pub(super) fn render_datapath(
    out: &mut Exposition,
    snapshot: &Snapshot,
    datapath: &DatapathCounters,
) {
    const DIRECTIONS: [&str; 2] = ["to_backend", "from_backend"];
    pub(super) fn split(stats: &TrafficStats) -> [(&'static str, Counter); 2] {
        [
            (DIRECTIONS[0], stats.to_backend),
            (DIRECTIONS[1], stats.from_backend),
        ]
    }

    for (unit, what) in [("packets", "Packets"), ("bytes", "Bytes")] {
        let name = format!("failover_backend_{unit}_total");
        out.family(
            &name,
            "counter",
            &format!("{what} forwarded to the backend and replies from it, by direction."),
        );
        for (_, backend, labels) in backends(snapshot) {
            let Some(stats) = datapath.backends.get(&backend.id) else {
                continue;
            };
            for (direction, counter) in split(stats) {
                let value = of_unit(unit, &counter);
                out.sample(&name, &with(&labels, ("direction", direction)), value);
            }
        }
    }

    let name = "failover_backend_evidence_total";
    out.family(
        name,
        "counter",
        "What the data path saw of the backend's handshakes, by signal: SYNs sent to it, \
         SYN-ACKs from it, RSTs answering a SYN exactly, ICMP unreachable from its side.",
    );
    for (_, backend, labels) in backends(snapshot) {
        let Some(evidence) = datapath.evidence.get(&backend.id) else {
            continue;
        };
        for (signal, value) in [
            ("syns", evidence.syns),
            ("syn_acks", evidence.syn_acks),
            ("syn_resets", evidence.syn_resets),
            ("unreachable", evidence.unreachable),
        ] {
            out.sample(name, &with(&labels, ("signal", signal)), value);
        }
    }

    for (unit, what) in [("packets", "Packets"), ("bytes", "Bytes")] {
        let name = format!("failover_service_{unit}_total");
        out.family(
            &name,
            "counter",
            &format!(
                "{what} forwarded to the service's backends and replies from them, by direction."
            ),
        );
        for service in &snapshot.services {
            let Some(stats) = datapath.services.get(&service.id) else {
                continue;
            };
            for (direction, counter) in split(stats) {
                out.sample(
                    &name,
                    &[("service", &service.name), ("direction", direction)],
                    of_unit(unit, &counter),
                );
            }
        }
    }

    for (family, help, value) in [
        (
            "failover_verdict_packets_total",
            "Packets by XDP verdict.",
            (|c: &Counter| c.packets) as fn(&Counter) -> u64,
        ),
        (
            "failover_verdict_bytes_total",
            "Bytes by XDP verdict.",
            |c: &Counter| c.bytes,
        ),
    ] {
        out.family(family, "counter", help);
        for (name, counter) in VERDICT_NAMES.iter().zip(&datapath.verdicts) {
            out.sample(family, &[("verdict", name)], value(counter));
        }
    }

    out.family(
        "failover_reason_packets_total",
        "counter",
        "Packets by reason: kind=outcome (exactly one per packet, why it got its verdict) or kind=event (things that happened on the way).",
    );
    for (index, (name, counter)) in reason::NAMES.iter().zip(&datapath.reasons).enumerate() {
        let kind = if index as u32 >= reason::FIRST_EVENT {
            "event"
        } else {
            "outcome"
        };
        out.sample(
            "failover_reason_packets_total",
            &[("reason", name), ("kind", kind)],
            counter.packets,
        );
    }

    if let Some(flows) = &snapshot.flows {
        out.family(
            "failover_flow_entries",
            "gauge",
            "Flow-table entries in use at the agent's last count (one per flow; expired ones until the agent reclaims them).",
        );
        out.sample("failover_flow_entries", &[], flows.entries);
        backend_gauge(
            out,
            snapshot,
            "failover_backend_flows",
            "Flows on the backend seen in the last 5 s, at the agent's last count of the flow table.",
            |_, backend| {
                Some(
                    flows
                        .active_by_backend
                        .get(&backend.id)
                        .copied()
                        .unwrap_or(0),
                )
            },
        );
    }
    out.family(
        "failover_flow_capacity",
        "gauge",
        "Flow-table entries the table holds at most ([conntrack] max_flows).",
    );
    out.sample("failover_flow_capacity", &[], datapath.flow_capacity);
}

pub(super) fn with<'a, const N: usize>(
    labels: &[(&'static str, &'a str); N],
    extra: (&'static str, &'a str),
) -> Vec<(&'static str, &'a str)> {
    let mut all = labels.to_vec();
    all.push(extra);
    all
}

/// A counter's packets or bytes.
fn of_unit(unit: &str, counter: &Counter) -> u64 {
    if unit == "packets" {
        counter.packets
    } else {
        counter.bytes
    }
}

/// `[sync]`: the pinned flows shared with the other edge hosts.
fn sync_families(out: &mut Exposition, sync: &crate::flow_sync::SyncView) {
    out.family(
        "failover_sync_pinned_flows",
        "gauge",
        "Flows this host carries on a backend its table no longer names for them, sent to every peer at the last round ([sync]).",
    );
    out.sample("failover_sync_pinned_flows", &[], sync.pinned_flows);
    out.family(
        "failover_sync_copies",
        "gauge",
        "Copies of the peers' pinned flows in this host's flow table at the last round, never seen here yet (at most a quarter of the table).",
    );
    out.sample("failover_sync_copies", &[], sync.copies);
    out.family(
        "failover_sync_not_sent_flows",
        "gauge",
        "Pinned flows left out of the last round (more than a round carries; the next rounds carry them).",
    );
    out.sample(
        "failover_sync_not_sent_flows",
        &[],
        sync.not_sent_last_round,
    );
    out.family(
        "failover_sync_flows_sent_total",
        "counter",
        "Pinned flows sent to the peers (one per flow and peer and round).",
    );
    out.sample("failover_sync_flows_sent_total", &[], sync.flows_sent_total);
    out.family(
        "failover_sync_send_errors_total",
        "counter",
        "Rounds a peer could not be sent to.",
    );
    out.sample(
        "failover_sync_send_errors_total",
        &[],
        sync.send_errors_total,
    );
    out.family(
        "failover_sync_flows_received_total",
        "counter",
        "Pinned flows received from the peers, by what became of them (learned, refreshed, closed, kept_local, over_budget, unknown_service, unknown_backend).",
    );
    for (outcome, total) in &sync.received {
        out.sample(
            "failover_sync_flows_received_total",
            &[("outcome", outcome.as_str())],
            *total,
        );
    }
    out.family(
        "failover_sync_refused_total",
        "counter",
        "Sync datagrams refused, by reason (stranger: not from a configured peer; length, magic, version, record: malformed; map: not written).",
    );
    for (reason, total) in &sync.refused {
        out.sample(
            "failover_sync_refused_total",
            &[("reason", reason.as_str())],
            *total,
        );
    }
    out.family(
        "failover_sync_peer_rounds_total",
        "counter",
        "Whole rounds received from each peer since the agent started.",
    );
    for peer in &sync.peers {
        out.sample(
            "failover_sync_peer_rounds_total",
            &[("peer", peer.peer.as_str())],
            peer.rounds_complete,
        );
    }
    out.family(
        "failover_sync_peer_heard_seconds",
        "gauge",
        "Seconds since each peer was last heard, at the last round (absent: never).",
    );
    for peer in &sync.peers {
        if let Some(ago) = peer.heard_s_ago {
            out.sample(
                "failover_sync_peer_heard_seconds",
                &[("peer", peer.peer.as_str())],
                ago,
            );
        }
    }
}
