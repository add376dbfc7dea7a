//! `inspect explain`: which path a packet would take through the data path,
//! in the program's order, on the pinned maps (the per-packet pick is the
//! very code the program runs).

use anyhow::bail;
use failover_common::{
    Backend, FlowKey, MaglevKey, ReverseKey, Service,
    hash::{FLOW_HASH_SEED, flow_hash},
    pick::{self, Found, PickMaps},
    usable_for_established,
};
use serde_json::{Value, json};

use super::{Pinned, addr, endpoint_of_key, state_name};
use crate::model::{Proto, addr_key};

pub(super) fn explain(
    p: &Pinned,
    proto: &str,
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
) -> anyhow::Result<Value> {
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        other => bail!("protocol {other:?}: expected tcp or udp"),
    };
    if src.is_ipv4() != dst.is_ipv4() {
        bail!("{src} and {dst} are of two families: a packet has one (IPv4 or IPv6)");
    }
    let ((src_addr, family), (dst_addr, _)) = (addr_key(src.ip()), addr_key(dst.ip()));
    let key = FlowKey::new(
        family,
        src_addr,
        dst_addr,
        src.port().to_be(),
        dst.port().to_be(),
        proto.number(),
    );
    let service_key = crate::model::ServiceSpec::new(dst.ip(), dst.port(), proto).key();
    // The program's order: the flow's entry, the service, then whether the
    // packet is a reply from a backend.
    let mut steps = Vec::new();
    let mut repick = false;
    let now = crate::dataplane::now_ns();
    if let Some(flow) = p.flows.get(&key)? {
        let backend = p.backends.get(flow.backend_id)?;
        let recorded = backend.generation == flow.backend_generation
            && backend.state != failover_common::backend_state::EMPTY;
        if now > flow.expires_ns {
            steps.push(format!(
                "the flow's entry expired {:.1} s ago: treated as absent (event_flow_expired)",
                (now - flow.expires_ns) as f64 / 1e9
            ));
        } else if recorded && usable_for_established(backend.state) {
            steps.push(format!(
                "tracked flow on backend {} ({}, {}): stays there; the entry expires in {:.1} s without packets \
                 (a SYN skips the entry and is picked by the table, as below)",
                flow.backend_id,
                describe(&backend),
                state_name(backend.state),
                flow.expires_ns.saturating_sub(now) as f64 / 1e9
            ));
            return Ok(json!({"path": "established", "backend": flow.backend_id, "steps": steps}));
        } else {
            let why = if recorded {
                state_name(backend.state).to_owned()
            } else {
                "gone (its id has another owner or none)".to_owned()
            };
            steps.push(format!(
                "tracked flow's backend {} is {why}: re-picked (the first ACK of a new connection follows its SYN instead)",
                flow.backend_id
            ));
            repick = true;
        }
    }
    let Some(service) = p.services.get(&service_key)? else {
        if repick {
            steps.push("no service at its destination any more: the entry is forgotten".into());
        }
        if let Some(reply) = reply(p, proto, src, dst) {
            steps.extend(reply.1);
            return Ok(json!({"path": "reply", "backend": reply.0, "steps": steps}));
        }
        steps.push(format!(
            "{dst}/{proto} is not a service and {src} is no backend's endpoint: passed to the kernel stack untouched"
        ));
        return Ok(json!({"path": "pass_no_service", "steps": steps}));
    };
    steps.insert(
        0,
        format!(
            "service id {} ({dst}/{proto}), active tier {}",
            service.id, service.active_tier
        ),
    );
    if repick
        && proto == Proto::Tcp
        && service.flags & failover_common::SERVICE_F_RESET_DEAD_FLOWS != 0
    {
        steps.push(
            "dead-flow policy reset: a TCP packet (other than a RST, a SYN, or the first ACK of a new connection, which follows its SYN) is answered with a RST from the VIP (tx_reset)"
                .into(),
        );
        return Ok(json!({"path": "tx_reset", "steps": steps}));
    }
    let picked = pick(p, &service, &key)?;
    match picked {
        Some((id, backend, how)) => {
            steps.push(format!(
                "hash {:#010x} → {how} → backend {id} ({})",
                flow_hash(&key, FLOW_HASH_SEED),
                describe(&backend),
            ));
            steps.push(if proto == Proto::Tcp {
                "a SYN is forwarded so and records no flow (its backend is remembered for 10 s, for the first ACK \
                 to follow across a table change); the client's first ACK (no SYN, FIN or RST) records the flow, \
                 as UDP's first packet does, unless the flood guard is on (event_flood_guard_skip)"
                    .to_owned()
            } else {
                "the first packet records the flow, unless the flood guard is on (event_flood_guard_skip)"
                    .to_owned()
            });
            Ok(json!({"path": "new_flow", "backend": id, "steps": steps}))
        }
        None => {
            steps.push("no usable backend: dropped (drop_no_backend)".into());
            Ok(json!({"path": "drop_no_backend", "steps": steps}))
        }
    }
}

/// A packet from a backend's endpoint: its reverse NAT, if it has one.
fn reply(
    p: &Pinned,
    proto: Proto,
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
) -> Option<(u32, Vec<String>)> {
    let (src_addr, family) = addr_key(src.ip());
    let endpoint = ReverseKey::new(family, src_addr, src.port().to_be(), proto.number());
    let nat = p.reverse.get(&endpoint)?;
    let mut steps = vec![format!(
        "{src} is backend {} of service id {}: a reply, source rewritten to {} for {dst}",
        nat.backend_id,
        nat.service_id,
        endpoint_of_key(nat.vip, family, nat.vip_port_be)
    )];
    if nat.reply_ifindex != 0 {
        let name = crate::dataplane::netdev::name_of(nat.reply_ifindex)
            .unwrap_or_else(|| format!("ifindex {}", nat.reply_ifindex));
        steps.push(format!(
            "only when it arrives on {name}, the backend's side; elsewhere it is dropped (drop_reply_wrong_interface)"
        ));
    }
    Some((nat.backend_id, steps))
}

fn describe(backend: &Backend) -> String {
    let port = if backend.port_be == 0 {
        "service port".to_owned()
    } else {
        u16::from_be(backend.port_be).to_string()
    };
    let address = addr(backend.addr, backend.family);
    if backend.port_be == 0 {
        return format!("{address}:{port}, tier {}", backend.tier);
    }
    format!(
        "{}, tier {}",
        crate::model::endpoint_text(address, u16::from_be(backend.port_be)),
        backend.tier
    )
}

/// The pinned maps as the shared per-packet pick reads them; the first
/// read error is kept (the pick itself only knows found or not).
struct PinnedPick<'a> {
    pinned: &'a Pinned,
    error: std::cell::RefCell<Option<anyhow::Error>>,
}

impl PinnedPick<'_> {
    fn keep<T>(&self, result: Result<Option<T>, impl Into<anyhow::Error>>) -> Option<T> {
        result.unwrap_or_else(|err| {
            self.error.borrow_mut().get_or_insert(err.into());
            None
        })
    }
}

impl PickMaps for PinnedPick<'_> {
    fn backend(&self, id: u32) -> Option<Backend> {
        self.keep(self.pinned.backends.get(id).map(Some))
    }

    fn table_slot(&self, key: &MaglevKey, index: usize) -> Option<u32> {
        self.keep(self.pinned.tables.chunk_slot(key, index))
    }
}

/// The data path's pick: the same code the program runs, on the pinned
/// maps. Returns (backend id, backend, how it was found).
fn pick(
    p: &Pinned,
    service: &Service,
    key: &FlowKey,
) -> anyhow::Result<Option<(u32, Backend, String)>> {
    let maps = PinnedPick {
        pinned: p,
        error: Default::default(),
    };
    let (picked, _stale) = pick::pick(&maps, service, flow_hash(key, FLOW_HASH_SEED));
    if let Some(err) = maps.error.into_inner() {
        return Err(err.context("reading the pinned maps"));
    }
    Ok(picked.map(|p| {
        let how = match p.found {
            Found::Table { slot } => format!(
                "Maglev slot {slot} of {} (generation {})",
                service.table_size, service.table_generation
            ),
            Found::Selection { entry } => {
                format!("selection entry {entry} of {}", service.selection_len)
            }
        };
        (p.backend_id, p.backend, how)
    }))
}
