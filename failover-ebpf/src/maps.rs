//! Every map of the data path. Pinned by name: the agent pins them under its
//! pin directory so forwarding survives agent restarts and `inspect` can read
//! them with the agent dead.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use failover_common::{
    AdminRecord, Backend, CONNTRACK_ENTRIES, Counter, Flow, FlowKey, MAGLEV_CHUNKS, MAX_BACKENDS,
    MAX_SERVICES, MaglevChunk, MaglevKey, Service, ServiceKey, TrafficStats,
    stats::{VERDICT_COUNT, reason},
};

/// (VIP, port, protocol) → service and its selection. Written by the agent.
#[map(name = "FO_SERVICES")]
pub static SERVICES: HashMap<ServiceKey, Service> = HashMap::pinned(MAX_SERVICES, 0);

/// (service, generation, chunk) → backend ids of 256 Maglev slots. Written by
/// the agent into the generation not in use, before it flips the service's
/// generation. Allocated on use (BPF_F_NO_PREALLOC): services pay for the
/// table size they chose.
#[map(name = "FO_MAGLEV")]
pub static MAGLEV: HashMap<MaglevKey, MaglevChunk> =
    HashMap::pinned(MAGLEV_CHUNKS, BPF_F_NO_PREALLOC);

const BPF_F_NO_PREALLOC: u32 = 1;

/// Backend id → address, port, tier, state. Written by the agent.
#[map(name = "FO_BACKENDS")]
pub static BACKENDS: Array<Backend> = Array::pinned(MAX_BACKENDS, 0);

/// Flow tuple (as on the wire, either direction) → backend or VIP. Written by
/// this program. One global LRU, not per-CPU: the reply direction of a flow
/// usually arrives on another CPU (another NIC queue or interface) than the
/// request, and a per-CPU table would not find the entry there.
#[map(name = "FO_CONNTRACK")]
pub static CONNTRACK: LruHashMap<FlowKey, Flow> = LruHashMap::pinned(CONNTRACK_ENTRIES, 0);

/// XDP action → packets/bytes. Written by this program.
#[map(name = "FO_VERDICTS")]
pub static VERDICTS: PerCpuArray<Counter> = PerCpuArray::pinned(VERDICT_COUNT, 0);

/// `stats::reason` index → packets/bytes. Written by this program.
#[map(name = "FO_REASONS")]
pub static REASONS: PerCpuArray<Counter> = PerCpuArray::pinned(reason::COUNT, 0);

/// Backend id → traffic to and from it. Written by this program.
#[map(name = "FO_BACKEND_STATS")]
pub static BACKEND_STATS: PerCpuArray<TrafficStats> = PerCpuArray::pinned(MAX_BACKENDS, 0);

/// Service id → traffic to and from its backends. Written by this program.
#[map(name = "FO_SERVICE_STATS")]
pub static SERVICE_STATS: PerCpuArray<TrafficStats> = PerCpuArray::pinned(MAX_SERVICES, 0);

/// Backend id → the agent's own state of it (admin state, health, holds),
/// so a restarted agent resumes exactly. Never read here; declared in this
/// object so it is created and pinned with the other maps.
#[map(name = "FO_ADMIN")]
pub static ADMIN: Array<AdminRecord> = Array::pinned(MAX_BACKENDS, 0);
