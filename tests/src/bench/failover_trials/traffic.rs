//! The client's load through the VIP, and waits on what it recorded.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use failover::lab::load::{Datagrams, Load, LongLived, Plan, Sample};

use super::{LONG_CONNECTIONS, PACE, REQUEST_TIMEOUT, STABLE_PORT, TRAFFIC_LIFETIME, UDP_PORT};
use crate::{
    agent_lab::{VIP, web},
    netns::NetNs,
};

/// The client's load: a new connection every [`PACE`] whatever became of
/// the previous ones (an open loop: a slow failure does not hold back the
/// next request), asks every 10 ms on the long connections (a broken one is
/// recorded and replaced), and, for `udp`, a datagram every [`PACE`] from
/// the next source port of a range (a new flow each, like DNS queries: one
/// long-lived UDP flow would rightly stay on the standby after failback).
pub(super) fn traffic(client: &NetNs, udp: bool) -> Load {
    let plan = Plan {
        in_flight: 64,
        long: Some(LongLived {
            streams: (0..LONG_CONNECTIONS).map(|_| None).collect(),
            every: Duration::from_millis(10),
            reconnect: Some((SocketAddr::from((VIP, STABLE_PORT)), Duration::from_secs(1))),
        }),
        udp: udp.then(|| Datagrams {
            target: SocketAddr::from((VIP, UDP_PORT)),
            every: PACE,
            ports: 20_000..60_000,
        }),
        lifetime: TRAFFIC_LIFETIME,
        ..Plan::new_flows(web(), PACE, REQUEST_TIMEOUT)
    };
    Load::start(client, plan).expect("start the client load")
}

/// The first sample answered by `name` that finished after `since`.
pub(super) fn first_answer(samples: &[Sample], name: &str, since: Instant) -> Option<Instant> {
    samples
        .iter()
        .find(|s| s.done > since && s.result.as_deref() == Ok(name))
        .map(|s| s.done)
}

/// Waits (bounded) until `name` answers a new connection after `since`.
pub(super) fn wait_answer(
    traffic: &Load,
    name: &str,
    since: Instant,
    bound: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Some(at) = first_answer(&traffic.snapshot().new_flows, name, since) {
            return Some(at);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

pub(super) fn wait_udp(traffic: &Load, name: &str, since: Instant, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if first_answer(&traffic.snapshot().udp, name, since).is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Waits (bounded) until a full round of asks on the long connections was
/// answered.
pub(super) fn wait_long_connections(traffic: &Load, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        let long = traffic.snapshot().long;
        if long.len() == LONG_CONNECTIONS
            && long
                .iter()
                .all(|asks| asks.last().is_some_and(|s| s.result.is_ok()))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

pub(super) fn failed_between(samples: &[Sample], from: Instant, to: Instant) -> usize {
    samples
        .iter()
        .filter(|s| s.done >= from && s.started <= to && s.result.is_err())
        .count()
}
