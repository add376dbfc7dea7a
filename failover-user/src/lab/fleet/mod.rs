//! The fleet topology, shared by the fleet tests, the benchmark and
//! `failover demo fleet`: a client behind an upstream router that spreads
//! the VIP's flows over the edge hosts by ECMP (BIRD: BGP with BFD, L4
//! hash), and backends with a link to every edge host.
//!
//! ```text
//! client ── router ─┬─ edge0 ─┬─ backend0
//!                   └─ edge1 ─┴─ backend1   (every backend linked to every edge)
//! ```
//!
//! Addresses: client 192.0.2.2/24, router 192.0.2.1; router–edge i
//! 198.18.(i+1).0/30 (router .1, edge .2; the edge hosts' agents share
//! pinned flows over these, through the router); edge i–backend k
//! 198.19.(i+1).(4k)/30 (edge .1, backend .2); backend k serves on
//! 198.51.100.(16k+2)/32 (its loopback), the VIP is 203.0.113.10. The
//! daemons' configurations are in [`bird`]; who runs the agents and the
//! daemons is the caller's.

pub mod bird;

use std::{
    io::{self, Write},
    net::Ipv4Addr,
    process::{Command, Stdio},
};

use super::netns::{NetNs, veth};

pub const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const SERVICE_PORT: u16 = 80;
pub const BACKEND_PORT: u16 = 8080;
pub const BACKEND_UDP_PORT: u16 = 5353;
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const ROUTER_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const EDGES: usize = 2;
/// The port the edge hosts' agents share pinned flows on (`[sync]`).
pub const SYNC_PORT: u16 = 4790;
pub const BACKENDS: usize = 2;

/// Backend `k`'s service address.
pub const fn backend_addr(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 16 * k as u8 + 2)
}

/// The router's address towards edge `i`, and edge `i`'s.
pub const fn router_link(i: usize) -> (Ipv4Addr, Ipv4Addr) {
    let net = i as u8 + 1;
    (
        Ipv4Addr::new(198, 18, net, 1),
        Ipv4Addr::new(198, 18, net, 2),
    )
}

/// Edge `i`'s agent's `[sync] listen`: its address towards the router (the
/// edge hosts reach each other through it).
pub fn sync_addr(i: usize) -> std::net::SocketAddr {
    (router_link(i).1, SYNC_PORT).into()
}

/// Edge `i`'s `[sync] peers`: every other edge host.
pub fn sync_peers(i: usize) -> Vec<std::net::SocketAddr> {
    (0..EDGES).filter(|j| *j != i).map(sync_addr).collect()
}

/// Edge `i`'s address towards backend `k`, and the backend's.
pub const fn backend_link(i: usize, k: usize) -> (Ipv4Addr, Ipv4Addr) {
    let (net, base) = (i as u8 + 1, 4 * k as u8);
    (
        Ipv4Addr::new(198, 19, net, base + 1),
        Ipv4Addr::new(198, 19, net, base + 2),
    )
}

/// Edge host `i`'s links: to the router, then to each backend.
pub fn edge_links() -> Vec<String> {
    std::iter::once("up0".to_owned())
        .chain((0..BACKENDS).map(|k| format!("bk{k}")))
        .collect()
}

/// The namespaces and links; nothing runs in them yet.
pub struct FleetNet {
    pub client: NetNs,
    pub router: NetNs,
    pub edges: Vec<NetNs>,
    pub backends: Vec<NetNs>,
}

impl FleetNet {
    /// Builds the namespaces (roles prefixed with `prefix`), links,
    /// addresses and static routes.
    pub fn build(prefix: &str) -> Self {
        let client = NetNs::new(&format!("{prefix}client"));
        let router = NetNs::new(&format!("{prefix}router"));
        let edges: Vec<NetNs> = (0..EDGES)
            .map(|_| NetNs::new(&format!("{prefix}edge")))
            .collect();
        let backends: Vec<NetNs> = (0..BACKENDS)
            .map(|_| NetNs::new(&format!("{prefix}backend")))
            .collect();
        veth((&client, "eth0"), (&router, "c0"));
        client.ip(&["addr", "add", &format!("{CLIENT_ADDR}/24"), "dev", "eth0"]);
        client.ip(&[
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            &ROUTER_CLIENT_ADDR.to_string(),
        ]);
        router.ip(&[
            "addr",
            "add",
            &format!("{ROUTER_CLIENT_ADDR}/24"),
            "dev",
            "c0",
        ]);
        router.sysctl("net/ipv4/ip_forward", "1");
        router.sysctl("net/ipv4/fib_multipath_hash_policy", "1");
        for (i, edge) in edges.iter().enumerate() {
            let (router_addr, edge_addr) = router_link(i);
            let router_if = format!("e{i}");
            veth((edge, "up0"), (&router, &router_if));
            edge.ip(&["addr", "add", &format!("{edge_addr}/30"), "dev", "up0"]);
            router.ip(&[
                "addr",
                "add",
                &format!("{router_addr}/30"),
                "dev",
                &router_if,
            ]);
            // Redirected replies arrive there: NAPI for them.
            router.enable_gro(&router_if);
            edge.sysctl("net/ipv4/ip_forward", "1");
        }
        for (k, backend) in backends.iter().enumerate() {
            backend.ip(&[
                "addr",
                "add",
                &format!("{}/32", backend_addr(k)),
                "dev",
                "lo",
            ]);
            backend.sysctl("net/ipv4/fib_multipath_hash_policy", "1");
            // A return path over a link that lost carrier is skipped at once,
            // before BFD tells.
            backend.sysctl("net/ipv4/conf/all/ignore_routes_with_linkdown", "1");
            for (i, edge) in edges.iter().enumerate() {
                let (edge_addr, backend_side) = backend_link(i, k);
                let (edge_if, backend_if) = (format!("bk{k}"), format!("e{i}"));
                veth((edge, &edge_if), (backend, &backend_if));
                edge.ip(&["addr", "add", &format!("{edge_addr}/30"), "dev", &edge_if]);
                backend.ip(&[
                    "addr",
                    "add",
                    &format!("{backend_side}/30"),
                    "dev",
                    &backend_if,
                ]);
                backend.enable_gro(&backend_if);
            }
        }
        for (i, edge) in edges.iter().enumerate() {
            edge_routes(edge, i);
        }
        Self {
            client,
            router,
            edges,
            backends,
        }
    }
}

/// Edge host `i`'s links down (gone), or up again with the routes they
/// took with them.
pub fn set_edge_links(edge: &NetNs, i: usize, links: &[String], up: bool) {
    for link in links {
        edge.ip(&["link", "set", link, if up { "up" } else { "down" }]);
    }
    if up {
        edge_routes(edge, i);
    }
}

/// Edge host `i` silent, as a host that died without its links going
/// down: nothing reaches it or leaves it on any link (nftables on the
/// router's and the backends' side), so only BFD tells.
pub fn silence(router: &NetNs, backends: &[NetNs], i: usize) -> io::Result<()> {
    let device = format!("e{i}");
    let ruleset = format!(
        "table netdev fo_silent {{\n\
         chain in {{ type filter hook ingress device \"{device}\" priority 0; policy drop; }}\n\
         chain out {{ type filter hook egress device \"{device}\" priority 0; policy drop; }}\n}}\n"
    );
    for ns in std::iter::once(router).chain(backends) {
        nft(ns, &ruleset)?;
    }
    Ok(())
}

/// Every silenced edge host heard again.
pub fn hear(router: &NetNs, backends: &[NetNs]) -> io::Result<()> {
    for ns in std::iter::once(router).chain(backends) {
        nft(ns, "delete table netdev fo_silent\n")?;
    }
    Ok(())
}

/// The next hops of `prefix`'s route in `ns` (one, or each of a multipath
/// route).
pub fn nexthops(ns: &NetNs, prefix: &str) -> Vec<Ipv4Addr> {
    let Ok(output) = Command::new("ip")
        .args(["-n", ns.name(), "-4", "route", "show", prefix])
        .output()
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "via")
        .filter_map(|w| w[1].parse().ok())
        .collect()
}

/// Loads an nftables ruleset in `ns`.
fn nft(ns: &NetNs, ruleset: &str) -> io::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name(), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(ruleset.as_bytes())?;
    }
    let status = child.wait()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("nft in {}: {ruleset}", ns.name())))
    }
}

/// Edge host `i`'s routes: the client's network and the other edge hosts
/// through the router, each backend through its link (`replace`: a link
/// that went down took them).
fn edge_routes(edge: &NetNs, i: usize) {
    let (router_addr, _) = router_link(i);
    for net in ["192.0.2.0/24", "198.18.0.0/16"] {
        edge.ip(&["route", "replace", net, "via", &router_addr.to_string()]);
    }
    for k in 0..BACKENDS {
        let (_, backend_side) = backend_link(i, k);
        edge.ip(&[
            "route",
            "replace",
            &format!("{}/32", backend_addr(k)),
            "via",
            &backend_side.to_string(),
        ]);
    }
}
