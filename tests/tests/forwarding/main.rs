//! Forwarding through the XDP data path between real sockets in network
//! namespaces: a client, an edge host (the load balancer), two backends.
//!
//! ```text
//!   client                 lb (XDP forwarder on lbc, lbb1, lbb2)          backends
//!   eth0 192.0.2.2/24 ──── lbc  192.0.2.1/24
//!                          lbb1 198.51.100.1/28  ──── eth0 198.51.100.2/28   backend1
//!                          lbb2 198.51.100.17/28 ──── eth0 198.51.100.18/28  backend2
//!
//!   VIP 203.0.113.10: tcp :80 → backends :8080, udp :53 → backends :5353
//! ```
//!
//! The data path only rewrites the destination (NAT mode), so the backends
//! route the clients' range back through the lb, where replies get the VIP
//! put back as their source. There are no default routes: a packet that
//! escapes the data path's rewrite has nowhere to go. The client and backend
//! ends of the veth pairs carry the pass program (native XDP_TX/redirect into
//! a veth needs an XDP program on its peer) and send with checksum offload
//! off (locally generated packets would be CHECKSUM_PARTIAL: README, data
//! path step 5; the skb-mode test runs with offload on).
//!
//! Each test builds its own lab (namespaces are uniquely named), so they run
//! in parallel.
//!
//! The rig in `failover_tests::forwarding_lab` (the flood tests, a target
//! of their own, use it too), what the tests tally and compare in
//! `checks`; the tests by concern: `spread`, `stickiness`, `backend_down`,
//! `counters`, `icmp`, `pmtu`, `eviction`.

mod backend_down;
mod checks;
mod counters;
mod eviction;
mod icmp;
mod pmtu;
mod spread;
mod stickiness;

use failover_tests::forwarding_lab as lab;
