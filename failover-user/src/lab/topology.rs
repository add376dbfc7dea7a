//! The edge topology of the namespace labs: a client, an edge host ("lb")
//! and its backends, each in its own namespace.
//!
//! ```text
//!   client                 lb                                           backend i
//!   eth0 192.0.2.2/24 ──── lbc 192.0.2.1/24
//!                          <lb_if> 198.51.100.(16i+1)/28 ──── eth0 198.51.100.(16i+2)/28
//! ```
//!
//! Documentation address ranges only and no default routes: the client
//! reaches 203.0.113.0/24 (the VIPs) through the lb, and the backends route
//! the clients' range back through the lb (NAT mode: replies get the VIP put
//! back on the way). IPv6 is off unless a lab asks for it
//! ([`Topology::add_ipv6`]: the same shape in 2001:db8::/32, no router
//! advertisements, no duplicate address detection), so no router
//! solicitations or DAD probes wander through the other labs. The client and backends send with transmit
//! checksum offload off: locally generated packets are CHECKSUM_PARTIAL, and
//! once XDP rewrites them in native mode the receiver drops them as bad
//! checksums (veth pitfall 3).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::netns::{self, NetNs};
use crate::{AttachMode, Dataplane, DataplaneError};

/// The client's address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The lb's address on the client's segment.
pub const LB_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The lb's interface toward the client.
pub const LB_CLIENT_IF: &str = "lbc";
/// The interface of the client and of every backend (the lb's veth peers).
pub const PEER_IF: &str = "eth0";

/// Backend `i`'s address (`i` < 15): 198.51.100.(16 i + 2), on its own /28
/// with the lb.
pub const fn backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 16 * i as u8 + 2)
}

/// The lb's address toward backend `i`: 198.51.100.(16 i + 1).
pub const fn lb_backend_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 16 * i as u8 + 1)
}

/// The client's IPv6 address.
pub const CLIENT_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 2);
/// The lb's IPv6 address on the client's segment.
pub const LB_CLIENT_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1);
/// Where the IPv6 VIPs are (the client routes it through the lb).
pub const VIP6_PREFIX: &str = "2001:db8:10::/64";
/// The IPv6 VIP the labs and the demo use.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 0x10);

/// Backend `i`'s IPv6 address: 2001:db8:b:i::2, on its own /64 with the lb.
pub const fn backend_addr6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xb, i as u16, 0, 0, 0, 2)
}

/// The lb's IPv6 address toward backend `i`: 2001:db8:b:i::1.
pub const fn lb_backend_addr6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xb, i as u16, 0, 0, 0, 1)
}

/// One backend of a [`Topology`].
#[derive(Clone, Copy, Debug)]
pub struct BackendLink<'a> {
    /// The role in its namespace's name (`fo-<role>-<pid>-<n>`).
    pub role: &'a str,
    /// The lb's interface toward it.
    pub lb_if: &'a str,
}

/// The namespaces of the lab; deleted (with their links) in `Drop`.
pub struct Topology {
    pub client: NetNs,
    pub lb: NetNs,
    /// In the order of the [`BackendLink`]s given to [`Topology::build`].
    pub backends: Vec<NetNs>,
    /// The lb's interface toward each backend, in the same order.
    pub lb_backend_ifs: Vec<String>,
}

/// Attaching the pass program to a veth peer failed.
#[derive(Debug, thiserror::Error)]
#[error("attaching the pass program in {namespace}")]
pub struct PassAttachError {
    pub namespace: String,
    #[source]
    pub source: Box<DataplaneError>,
}

impl Topology {
    /// Creates the namespaces (client, lb, then the backends) and links them.
    /// Panics if it cannot, like [`NetNs`].
    pub fn build(client_role: &str, lb_role: &str, backends: &[BackendLink<'_>]) -> Self {
        let client = NetNs::new(client_role);
        let lb = NetNs::new(lb_role);
        let backend_ns: Vec<NetNs> = backends.iter().map(|b| NetNs::new(b.role)).collect();
        for ns in [&client, &lb].into_iter().chain(&backend_ns) {
            ns.sysctl("net/ipv6/conf/default/disable_ipv6", "1");
            ns.sysctl("net/ipv6/conf/all/disable_ipv6", "1");
        }
        netns::veth((&lb, LB_CLIENT_IF), (&client, PEER_IF));
        lb.ip(&[
            "addr",
            "add",
            &format!("{LB_CLIENT_ADDR}/24"),
            "dev",
            LB_CLIENT_IF,
        ]);
        client.ip(&["addr", "add", &format!("{CLIENT_ADDR}/24"), "dev", PEER_IF]);
        client.ip(&[
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            &LB_CLIENT_ADDR.to_string(),
        ]);
        for (i, (link, ns)) in backends.iter().zip(&backend_ns).enumerate() {
            netns::veth((&lb, link.lb_if), (ns, PEER_IF));
            let lb_cidr = format!("{}/28", lb_backend_addr(i));
            lb.ip(&["addr", "add", &lb_cidr, "dev", link.lb_if]);
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/28", backend_addr(i)),
                "dev",
                PEER_IF,
            ]);
            ns.ip(&[
                "route",
                "add",
                "192.0.2.0/24",
                "via",
                &lb_backend_addr(i).to_string(),
            ]);
        }
        lb.sysctl("net/ipv4/conf/all/forwarding", "1");
        for ns in [&client].into_iter().chain(&backend_ns) {
            ns.disable_tx_checksum(PEER_IF);
        }
        Self {
            client,
            lb,
            backends: backend_ns,
            lb_backend_ifs: backends.iter().map(|b| b.lb_if.to_owned()).collect(),
        }
    }

    /// Turns IPv6 on in every namespace and gives the lab its IPv6 shape
    /// (see the module doc): addresses without duplicate address detection
    /// and no router advertisements, so they are usable at once and no
    /// stray router messages wander through.
    pub fn add_ipv6(&self) {
        for ns in self.namespaces() {
            for key in ["accept_ra", "accept_dad", "router_solicitations"] {
                ns.sysctl(&format!("net/ipv6/conf/default/{key}"), "0");
                ns.sysctl(&format!("net/ipv6/conf/all/{key}"), "0");
            }
            ns.sysctl("net/ipv6/conf/all/disable_ipv6", "0");
            ns.sysctl("net/ipv6/conf/default/disable_ipv6", "0");
            for interface in ns.interfaces() {
                for key in ["accept_ra", "accept_dad", "router_solicitations"] {
                    ns.sysctl(&format!("net/ipv6/conf/{interface}/{key}"), "0");
                }
                ns.sysctl(&format!("net/ipv6/conf/{interface}/disable_ipv6"), "0");
            }
        }
        let with_prefix = |addr: Ipv6Addr| format!("{addr}/64");
        self.lb.ip(&[
            "addr",
            "add",
            &with_prefix(LB_CLIENT_ADDR6),
            "dev",
            LB_CLIENT_IF,
            "nodad",
        ]);
        self.client.ip(&[
            "addr",
            "add",
            &with_prefix(CLIENT_ADDR6),
            "dev",
            PEER_IF,
            "nodad",
        ]);
        self.client.ip(&[
            "-6",
            "route",
            "add",
            VIP6_PREFIX,
            "via",
            &LB_CLIENT_ADDR6.to_string(),
        ]);
        for (i, (ns, lb_if)) in self.backends.iter().zip(&self.lb_backend_ifs).enumerate() {
            self.lb.ip(&[
                "addr",
                "add",
                &with_prefix(lb_backend_addr6(i)),
                "dev",
                lb_if,
                "nodad",
            ]);
            ns.ip(&[
                "addr",
                "add",
                &with_prefix(backend_addr6(i)),
                "dev",
                PEER_IF,
                "nodad",
            ]);
            ns.ip(&[
                "-6",
                "route",
                "add",
                "2001:db8:c::/64",
                "via",
                &lb_backend_addr6(i).to_string(),
            ]);
        }
        self.lb.sysctl("net/ipv6/conf/all/forwarding", "1");
    }

    /// Every namespace: client, lb, backends.
    pub fn namespaces(&self) -> impl Iterator<Item = &NetNs> {
        [&self.client, &self.lb].into_iter().chain(&self.backends)
    }

    /// Attaches `dataplane`'s pass program (native) to the lb's veth peers,
    /// the client's and the backends' [`PEER_IF`]: native XDP_TX or redirect
    /// into a veth needs an XDP program on its peer.
    pub fn attach_pass_on_peers(&self, dataplane: &mut Dataplane) -> Result<(), PassAttachError> {
        for ns in [&self.client].into_iter().chain(&self.backends) {
            ns.run(|| dataplane.attach_pass(PEER_IF, AttachMode::Native))
                .map_err(|source| PassAttachError {
                    namespace: ns.name().to_owned(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }
}
