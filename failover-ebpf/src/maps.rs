//! Every map of the data path. Pinned by name: the agent pins them under its
//! pin directory so forwarding survives agent restarts and `inspect` can read
//! them with the agent dead.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, ProgramArray},
};
use failover_common::{
    ADDRESS_SLOTS, AdminRecord, Backend, CLIENT_HOP_SLOTS, CachedHop, ClientHop, Counter,
    DEFAULT_MAX_FLOWS, EGRESS_SLOTS, Egress, Evidence, FloodWindow, Flow, FlowKey, LastRedirect,
    MAGLEV_CHUNKS, MAX_BACKENDS, MAX_SERVICES, MaglevChunk, MaglevKey, REDIRECT_DROP_ENTRIES,
    ReverseKey, ReverseNat, SYN_SLOTS, Service, ServiceKey, Settings, Spares, SynSeen,
    TimersRecord, TrafficStats, programs,
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

/// Client → VIP tuple → the flow's backend, state, lifetime and cached next
/// hops; one entry per flow. Written by this program; the agent sizes it at
/// load (`[conntrack] max_flows`) and reclaims expired entries. One global
/// LRU, not per-CPU: a flow's replies usually arrive on another CPU than
/// its requests (another interface or NIC queue) and touch the same entry.
#[map(name = "FO_FLOWS")]
pub static FLOWS: LruHashMap<FlowKey, Flow> = LruHashMap::pinned(DEFAULT_MAX_FLOWS, 0);

/// Backend endpoint → the VIP and port its replies are rewritten to come
/// from. Written by the agent with the backends; `reply_ifindex` learned
/// here.
#[map(name = "FO_REVERSE")]
pub static REVERSE: HashMap<ReverseKey, ReverseNat> = HashMap::pinned(MAX_BACKENDS, 0);

/// `address_slot` → `ADDRESS_F_*`: whether some VIP or backend address
/// hashes there. Written by the agent before the services and backends it
/// covers (a set bit only costs a lookup; a missing one would pass traffic).
#[map(name = "FO_ADDRESSES")]
pub static ADDRESSES: Array<u32> = Array::pinned(ADDRESS_SLOTS, 0);

/// Index 0: flow lifetimes and the flood guard's threshold. Written by the
/// agent.
#[map(name = "FO_SETTINGS")]
pub static SETTINGS: Array<Settings> = Array::pinned(1, 0);

/// Service id → the backends a refused SYN may go to besides the
/// selection (`redispatch`). Written by the agent.
#[map(name = "FO_SPARES")]
pub static SPARES: Array<Spares> = Array::pinned(MAX_SERVICES, 0);

/// Backend id → the next hop of new flows to it, refreshed at most once a
/// second (as a flow's own). Not pinned: a cache.
#[map(name = "FO_BACKEND_HOPS")]
pub static BACKEND_HOPS: Array<CachedHop> = Array::with_max_entries(MAX_BACKENDS, 0);

/// Client address hash → the next hop of replies to that client, per CPU
/// (see `ClientHop`). Not pinned: a cache.
#[map(name = "FO_CLIENT_HOPS")]
pub static CLIENT_HOPS: PerCpuArray<ClientHop> = PerCpuArray::with_max_entries(CLIENT_HOP_SLOTS, 0);

/// Flow hash → the backend its SYN was sent to, briefly (see `SynSeen`).
/// Not pinned: a handshake outlives no program.
#[map(name = "FO_SYNS")]
pub static SYNS: Array<SynSeen> = Array::with_max_entries(SYN_SLOTS, 0);

/// This CPU's new flows in the current second (the flood guard). Not pinned:
/// a new program starts a new window.
#[map(name = "FO_FLOOD")]
pub static FLOOD: PerCpuArray<FloodWindow> = PerCpuArray::with_max_entries(1, 0);

/// Backend id → what this program saw of its handshakes (`Evidence`), per
/// CPU. Written by this program, read by the agent.
#[map(name = "FO_EVIDENCE")]
pub static EVIDENCE: PerCpuArray<Evidence> = PerCpuArray::pinned(MAX_BACKENDS, 0);

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

/// Backend id → its flap-damping penalty and suppression, kept by the
/// agent for its successor. Never read here.
#[map(name = "FO_TIMERS")]
pub static DAMPING: Array<TimersRecord> = Array::pinned(MAX_BACKENDS, 0);

/// ifindex modulo `EGRESS_SLOTS` → how to send there (the agent marks an
/// interface that drops redirected frames; see `failover_redirect_watch`).
#[map(name = "FO_EGRESS")]
pub static EGRESS: Array<Egress> = Array::pinned(EGRESS_SLOTS, 0);

/// Egress ifindex → frames the kernel dropped after a redirect to it
/// (from the `xdp:xdp_devmap_xmit` tracepoint), per CPU.
#[map(name = "FO_REDIRECT_DROPS")]
pub static REDIRECT_DROPS: PerCpuHashMap<u32, u64> =
    PerCpuHashMap::pinned(REDIRECT_DROP_ENTRIES, 0);

/// Per-CPU scratch space for summing a segment (completing partial
/// checksums): one helper call's worth. Not pinned: nothing outlives a
/// packet here.
#[map(name = "FO_SCRATCH")]
pub static SCRATCH: PerCpuArray<[u32; 128]> = PerCpuArray::with_max_entries(1, 0);

/// The id of this agent's forwarding program: the redirect watch counts only
/// its failures (tracepoints are host-wide). Not pinned: each agent's own.
#[map(name = "FO_WATCHED_PROGRAM")]
pub static WATCHED_PROGRAM: Array<u32> = Array::with_max_entries(1, 0);

/// The outcome counted for the frame this CPU redirected last (see
/// `LastRedirect`). Not pinned.
#[map(name = "FO_LAST_REDIRECT")]
pub static LAST_REDIRECT: PerCpuArray<LastRedirect> = PerCpuArray::with_max_entries(1, 0);

/// Programs the data path hands frames to by tail call
/// (`failover_common::programs`), so their code and stack stay out of the
/// TCP/UDP path. Set by the agent; pinned, so they stay when it exits.
#[map(name = "FO_PROGRAMS")]
pub static PROGRAMS: ProgramArray = ProgramArray::pinned(programs::COUNT, 0);
