//! `failover check`: validate and explain a configuration.

use std::path::Path;

use crate::{
    config::{AgentConfig, ProbeKind, RoutingConfig},
    decide::{announce::WhenUnusable, policy::Failback},
};

pub fn run(path: &Path) -> anyhow::Result<()> {
    let config = AgentConfig::from_file(path)?;
    println!("{}: valid", path.display());
    for warning in config.warnings() {
        println!("warning: {warning}");
    }
    let used = config.capacity(None)?;
    let limits = crate::dataplane::Capacity::LIMITS;
    println!(
        "capacity: {} of {} services, {} of {} backends, {} of {} Maglev table chunks",
        used.services,
        limits.services,
        used.backends,
        limits.backends,
        used.table_chunks,
        limits.table_chunks
    );
    let flows = &config.conntrack;
    println!(
        "flows: up to {} ({} MiB of kernel memory at {} bytes each); without packets an open \
         TCP flow lives {:?}, a closing one {:?}, UDP {:?}; each CPU records at most {} new \
         flows a second (the flood guard)",
        flows.max_flows,
        u64::from(flows.max_flows) * failover_common::FLOW_ENTRY_BYTES / (1 << 20),
        failover_common::FLOW_ENTRY_BYTES,
        flows.tcp_timeout,
        flows.tcp_closing_timeout,
        flows.udp_timeout,
        flows.max_new_flows_per_cpu
    );
    if let Ok(local) = crate::dataplane::local_vips::local_ipv4() {
        for service in config
            .services
            .iter()
            .filter(|s| matches!(s.spec.vip, std::net::IpAddr::V4(vip) if local.contains(&vip)))
        {
            println!(
                "service {}: its VIP {} is an address of this host; the agent turns \
                 accept_local on for its interfaces so first replies are not dropped as martians",
                service.name, service.spec.vip
            );
        }
    }
    println!("pin directory: {}", config.pin_dir.display());
    if config.interfaces.is_empty() {
        println!("interfaces: none (the data path is programmed but attached nowhere)");
    }
    for (name, mode) in &config.interfaces {
        println!("interface {name}: XDP {mode:?}");
        match crate::dataplane::netdev::driver(name) {
            Err(_) => println!(
                "  not in this network namespace (run check where the agent runs); the agent refuses to start without it"
            ),
            Ok(driver) if driver == "veth" && *mode != crate::dataplane::AttachMode::Skb => {
                println!(
                    "  a veth: frames redirected into it need NAPI on its peer (GRO on there, or an XDP program); \
                 the agent watches for redirects the kernel drops and sends such an interface's packets through \
                 the stack, logging the remedy. Local senders with transmit checksum offload leave partial \
                 checksums, which the data path completes (`ethtool -K <veth> tx off` on the senders avoids that work)"
                )
            }
            Ok(driver) => println!("  driver {driver}"),
        }
    }
    if let Some(routing) = &config.routing {
        explain_routing(routing);
    }
    if let Some(sync) = &config.sync {
        explain_sync(sync, config.routing.is_some());
    }
    for service in &config.services {
        let failback = match service.failback {
            Failback::Auto { delay } => format!("automatic after {delay:?} of health"),
            Failback::Manual => "manual (`failover failback`)".to_owned(),
        };
        println!(
            "\nservice {} = {}; failback {failback}",
            service.name, service.spec
        );
        let mut tiers: Vec<u8> = service.backends.iter().map(|b| b.spec.tier).collect();
        tiers.sort_unstable();
        tiers.dedup();
        for tier in tiers {
            let role = if Some(&tier) == service.backends.iter().map(|b| &b.spec.tier).min() {
                "serves new flows while any of them is healthy"
            } else {
                "takes over when every more preferred tier is down"
            };
            println!("  tier {tier}: {role}");
            for backend in service.backends.iter().filter(|b| b.spec.tier == tier) {
                let p = &backend.probe;
                let kind = match &p.kind {
                    ProbeKind::Tcp { port } => format!("tcp connect :{port}"),
                    ProbeKind::Http {
                        port, path, status, ..
                    } => {
                        format!(
                            "http GET :{port}{path} expecting {}-{}",
                            status.start(),
                            status.end()
                        )
                    }
                    ProbeKind::Udp { port, .. } => format!("udp :{port}"),
                    ProbeKind::Icmp => "icmp echo".to_owned(),
                    ProbeKind::Exec { command, .. } => format!("exec {}", command.join(" ")),
                };
                let worst = p.interval * p.fall + p.jitter;
                println!(
                    "    {} {}: {kind} every {:?} (±{:?}), timeout {:?}, down after {} failures (about {worst:?}), up after {}",
                    backend.name, backend.spec, p.interval, p.jitter, p.timeout, p.fall, p.rise
                );
            }
        }
    }
    Ok(())
}

/// What `[routing]` does, what the routing daemon needs, and whether this
/// host has what the agent needs for it.
fn explain_routing(routing: &RoutingConfig) {
    let RoutingConfig {
        table,
        device,
        when_unusable,
        drain_file,
        ..
    } = routing;
    println!(
        "routing: each VIP this host can serve is a host route to the device {device} in kernel \
         table {table} (proto static); the device lives as long as the agent, so when the agent \
         stops or dies its routes go and the daemon withdraws them"
    );
    println!(
        "  a VIP none of whose services has a backend taking new flows is {}",
        match when_unusable {
            WhenUnusable::Withdraw => "withdrawn (when_unusable = \"withdraw\")",
            WhenUnusable::Announce =>
                "still announced, its packets dropped (when_unusable = \"announce\")",
        }
    );
    println!(
        "  BIRD learns them with (only the host routes to {device}, whatever else the table holds):\n    \
         protocol kernel failover_vips {{\n      kernel table {table};\n      learn;\n      scan time 1;\n      \
         ipv4 {{ import where ifname = \"{device}\" && net.len = 32; export none; }};\n    }}\n  \
         (and failover_vips6 with ipv6 and net.len = 128 for IPv6 VIPs), and announces them with \
         `export where proto = \"failover_vips\"` on its BGP sessions; enable BFD on those sessions \
         for sub-second failover (README: Running a fleet)"
    );
    println!(
        "  `failover host drain` withdraws every VIP and records it in {}: {}",
        drain_file.display(),
        if drain_file.exists() {
            "the host is drained now"
        } else {
            "not drained now"
        }
    );
    if !std::path::Path::new("/dev/net/tun").exists() {
        println!(
            "  problem: /dev/net/tun is missing: the agent cannot create {device}; load the tun module"
        );
    }
    let ip = std::process::Command::new("ip").arg("-V").output();
    if !ip.is_ok_and(|o| o.status.success()) {
        println!(
            "  problem: `ip` (iproute2) is not installed: the agent writes the routes with it"
        );
    }
}

/// What `[sync]` does, and whether its socket can be bound here.
fn explain_sync(sync: &crate::config::SyncConfig, routing: bool) {
    println!(
        "sync: every {:?}, the flows this host carries on a backend its table no longer names for \
         them (after a failback, a drain, `keep`, slow start) go to {} over UDP from {}; the peers' \
         are written into this host's flow table, so any edge host continues any flow. Datagrams \
         are accepted from the listed peers' address:port only; put them on a network only the \
         edge hosts reach",
        sync.interval,
        sync.peers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        sync.listen
    );
    if routing {
        println!(
            "  at start, VIPs are announced once every peer delivered a whole round, or after {:?} \
             (a peer that is down sends none)",
            crate::flow_sync::catch_up_wait(sync.interval)
        );
    } else {
        println!(
            "  without [routing] nothing waits for the peers' flows at start: the routers may bring \
             flows here before they arrive"
        );
    }
    match std::net::UdpSocket::bind(sync.listen) {
        Ok(_) => println!("  {} can be bound here", sync.listen),
        Err(err) => println!(
            "  problem: binding {} here failed: {err} (an address of this host, a free port; or the agent already runs)",
            sync.listen
        ),
    }
}
