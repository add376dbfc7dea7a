//! The fleet lab's BIRD configurations: the upstream router (BGP with BFD
//! to every edge host, ECMP into its kernel), each edge host (learns the
//! agent's announcements from their kernel table and announces them to the
//! router; offers the clients' network to the backends) and each backend
//! (routes its replies to the clients over every live edge host: BFD takes
//! a dead one out).

use std::net::Ipv4Addr;

/// The router's AS and the edge hosts' (one AS for the fleet, so their
/// routes are equal and the router merges them).
pub const ROUTER_AS: u32 = 64500;
pub const FLEET_AS: u32 = 64501;
pub const BACKEND_AS: u32 = 64502;
/// The clients' network, which the edge hosts offer the backends.
const CLIENTS: &str = "192.0.2.0/24";
/// The kernel table the agents announce into.
pub const TABLE: u32 = 200;
/// BFD: every 100 ms, down after 3 missed.
const BFD: &str = "interval 100 ms; multiplier 3;";

/// What every daemon of the lab has: its id, the log, interfaces, BFD.
fn header(id: Ipv4Addr) -> String {
    format!(
        "router id {id};\n\
         log stderr all;\n\
         protocol device {{ scan time 1; }}\n\
         protocol bfd {{ interface \"*\" {{ {BFD} }}; }}\n"
    )
}

/// A BGP session with BFD, reconnecting fast, with IPv4 `channel`.
fn session(
    name: &str,
    local_as: u32,
    neighbor: Ipv4Addr,
    neighbor_as: u32,
    channel: &str,
) -> String {
    format!(
        "protocol bgp {name} {{\n  local as {local_as};\n  neighbor {neighbor} as {neighbor_as};\n  \
         bfd on;\n  connect retry time 1;\n  error wait time 1, 2;\n  ipv4 {{ {channel} }};\n}}\n"
    )
}

/// Learns from every edge host at `edges` (as `local_as`) and merges
/// their routes into one multipath route in its kernel.
fn learner(id: Ipv4Addr, local_as: u32, edges: &[Ipv4Addr]) -> String {
    let mut config = header(id)
        + "protocol kernel {\n  merge paths on;\n  ipv4 { import none; export all; };\n}\n";
    for (i, edge) in edges.iter().enumerate() {
        config += &session(
            &format!("edge{i}"),
            local_as,
            *edge,
            FLEET_AS,
            "import all; export none;",
        );
    }
    config
}

/// The upstream router: a BGP session with BFD to each edge host's
/// address, the VIPs' routes merged into one ECMP route in its kernel.
pub fn router(id: Ipv4Addr, edges: &[Ipv4Addr]) -> String {
    learner(id, ROUTER_AS, edges)
}

/// An edge host: the agent's announcements learned from [`TABLE`] and
/// announced to the router, next hop self; the clients' network (through
/// the router) offered to each backend at `backends` (their addresses on
/// its links).
pub fn edge(id: Ipv4Addr, router: Ipv4Addr, backends: &[Ipv4Addr]) -> String {
    let mut config = header(id)
        + &format!(
            "protocol kernel failover_vips {{\n  kernel table {TABLE};\n  learn;\n  scan time 1;\n  \
             ipv4 {{ import where ifname = \"fo-announce\" && net.len = 32; export none; }};\n}}\n\
             protocol static clients {{\n  ipv4;\n  route {CLIENTS} via {router};\n}}\n"
        );
    config += &session(
        "upstream",
        FLEET_AS,
        router,
        ROUTER_AS,
        "import none; export where proto = \"failover_vips\"; next hop self;",
    );
    for (k, backend) in backends.iter().enumerate() {
        config += &session(
            &format!("backend{k}"),
            FLEET_AS,
            *backend,
            BACKEND_AS,
            "import none; export where proto = \"clients\"; next hop self;",
        );
    }
    config
}

/// A backend: the clients' network learned from every edge host at
/// `edges` (their addresses on its links), merged into one multipath
/// route in its kernel.
pub fn backend(id: Ipv4Addr, edges: &[Ipv4Addr]) -> String {
    learner(id, BACKEND_AS, edges)
}
