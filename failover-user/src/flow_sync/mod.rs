//! `[sync]`: the flows this edge host carries on a backend its table no
//! longer names for them are sent to the other edge hosts every interval,
//! and theirs are written into this host's flow table, so that a flow ECMP
//! moves between hosts (one died, drained or came back) continues on its
//! backend. Every other flow needs nothing: the tables are the same on
//! every host and replies carry no per-flow state.
//!
//! A thread of its own, on its own map handles: a round walks the flow
//! table (`pinned`), sends the pinned flows to every peer over UDP
//! (`wire`), and between rounds it writes what the peers sent (`learn`).

mod learn;
mod maps;
mod peers;
mod pinned;
pub mod wire;

use std::{
    collections::BTreeMap,
    net::{SocketAddr, UdpSocket},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use failover_common::Settings;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use self::{learn::LocalIndex, maps::LocalMaps, peers::Peer};
use crate::{config::SyncConfig, dataplane::error::DataplaneError, outputs::telemetry::Telemetry};

/// Why sync could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "binding the sync socket {listen}: {source} (is sync.listen an address of this host, and the port free?)"
    )]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Maps(#[from] DataplaneError),
    #[error("starting the sync thread: {0}")]
    Thread(std::io::Error),
}

/// How long a receive waits before the thread looks at the clock again.
const RECEIVE_WAIT: Duration = Duration::from_millis(20);
/// Datagrams sent to a peer before what arrived meanwhile is read (a long
/// round must not overflow the peers' receive buffers, nor this host's).
const SEND_BURST: usize = 64;
/// The receive buffer asked for: several thousand datagrams, a round of
/// about a hundred thousand pinned flows, while the thread walks its table.
const RECEIVE_BUFFER: libc::c_int = 16 << 20;
/// How often status and metrics see the receiving side's counters at most.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// What status and metrics show of sync.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncView {
    pub listen: String,
    pub interval_ms: u64,
    /// Every peer delivered a whole round since the start (or the wait
    /// for them is over): the VIPs may be announced.
    pub caught_up: bool,
    /// Flows pinned off the table at the last round (sent to each peer).
    pub pinned_flows: u64,
    /// Copies learned from the peers in the flow table at the last round
    /// (never seen here yet); at most a quarter of the table.
    pub copies: u64,
    pub rounds_total: u64,
    /// How long the last round's walk of the flow table took.
    pub last_walk_ms: f64,
    pub flows_sent_total: u64,
    /// Pinned flows left out of the last round (more than a round carries:
    /// the next rounds start where it stopped).
    pub not_sent_last_round: u64,
    pub send_errors_total: u64,
    pub peers: Vec<PeerView>,
    /// Flows received, by what became of them (learned, refreshed,
    /// closed, kept_local, over_budget, unknown_service, unknown_backend).
    pub received: BTreeMap<String, u64>,
    /// Datagrams refused, by reason (stranger, length, magic, version,
    /// record, map).
    pub refused: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerView {
    pub peer: String,
    pub heard_s_ago: Option<f64>,
    pub rounds_complete: u64,
    pub flows_received_total: u64,
    pub datagrams_lost_total: u64,
}

/// The sync thread; stopped and joined when dropped.
pub struct FlowSync {
    caught_up: Arc<AtomicBool>,
    settings: Arc<Mutex<Settings>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FlowSync {
    pub fn start(
        config: &SyncConfig,
        pin_dir: &Path,
        settings: Settings,
        telemetry: Telemetry,
    ) -> Result<Self, SyncError> {
        let socket = UdpSocket::bind(config.listen).map_err(|source| SyncError::Bind {
            listen: config.listen,
            source,
        })?;
        socket
            .set_read_timeout(Some(RECEIVE_WAIT))
            .map_err(SyncError::Thread)?;
        grow_receive_buffer(&socket);
        let maps = LocalMaps::open(pin_dir)?;
        let copies_left = copies_budget(maps.flows.capacity());
        let caught_up = Arc::new(AtomicBool::new(false));
        let settings = Arc::new(Mutex::new(settings));
        let stop = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            config: config.clone(),
            socket,
            maps,
            index: LocalIndex::new(),
            boot: boot_id(),
            round: 0,
            period: config.interval,
            started: Instant::now(),
            peers: config.peers.iter().map(|p| (*p, Peer::default())).collect(),
            view: SyncView {
                listen: config.listen.to_string(),
                interval_ms: config.interval.as_millis() as u64,
                ..SyncView::default()
            },
            caught_up: caught_up.clone(),
            settings: settings.clone(),
            telemetry,
            warned: Default::default(),
            copies_left,
        };
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("flow-sync".into())
                .spawn(move || worker.run(&stop))
                .map_err(SyncError::Thread)?
        };
        info!(listen = %config.listen, peers = ?config.peers, interval = ?config.interval, "sharing flows pinned off the table with the other edge hosts");
        Ok(Self {
            caught_up,
            settings,
            stop,
            thread: Some(thread),
        })
    }

    /// Whether the peers' pinned flows are here (or the wait for them is
    /// over): until then this host does not announce its VIPs.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    /// The flow lifetimes after a reload (they cap a peer's).
    pub fn set_settings(&self, settings: Settings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings;
    }
}

impl Drop for FlowSync {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The flows pinned off the table in the maps pinned at `pin_dir` now
/// (what the next round sends): for `failover inspect flows --pinned`.
pub fn pinned_now(pin_dir: &Path) -> Result<Vec<wire::PinnedFlow>, DataplaneError> {
    let maps = LocalMaps::open(pin_dir)?;
    Ok(pinned::pinned_flows(&maps, crate::dataplane::now_ns())?.0)
}

/// The most copies learned from peers the flow table holds: a quarter of
/// it, so that peers (or forged datagrams) cannot evict this host's own
/// flows from the LRU table.
pub fn copies_budget(capacity: u32) -> usize {
    capacity as usize / 4
}

/// How long a starting agent waits for its peers' rounds before it
/// announces anyway (a peer that is down sends none).
pub fn catch_up_wait(interval: Duration) -> Duration {
    interval * 3 + Duration::from_secs(1)
}

struct Worker {
    config: SyncConfig,
    socket: UdpSocket,
    maps: LocalMaps,
    index: LocalIndex,
    boot: u32,
    round: u32,
    /// How often a round goes out: the interval, or five times the last
    /// walk of the table if longer.
    period: Duration,
    started: Instant,
    peers: BTreeMap<SocketAddr, Peer>,
    view: SyncView,
    caught_up: Arc<AtomicBool>,
    settings: Arc<Mutex<Settings>>,
    telemetry: Telemetry,
    /// Copies this host may still learn before the next walk counts them
    /// ([`copies_budget`]).
    copies_left: usize,
    /// Reasons already logged (each is logged once; counters go on).
    warned: std::collections::BTreeSet<String>,
}

impl Worker {
    fn run(&mut self, stop: &AtomicBool) {
        let mut next_round = Instant::now();
        let mut next_hello = Instant::now();
        let mut published = Instant::now();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_hello {
                self.send_hello();
                next_hello = now + self.config.interval;
            }
            if now >= next_round {
                self.send_round(&mut buf);
                // A big table is walked less often: at most a fifth of a core.
                self.period = self.config.interval.max(now.elapsed() * 5);
                next_round = now + self.period;
                self.publish();
                published = Instant::now();
            }
            self.receive_waiting(&mut buf);
            self.check_caught_up();
            if published.elapsed() >= PUBLISH_EVERY {
                self.publish();
                published = Instant::now();
            }
        }
    }

    /// Waits up to [`RECEIVE_WAIT`] for one datagram and takes it.
    fn receive_waiting(&mut self, buf: &mut [u8]) {
        match self.socket.recv_from(buf) {
            Ok((len, from)) => self.receive(&buf[..len], from),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) => {
                self.warn_once("receive", format!("receiving sync datagrams: {err}"));
                std::thread::sleep(RECEIVE_WAIT);
            }
        }
    }

    /// Takes every datagram already waiting, without waiting for more.
    fn receive_pending(&mut self, buf: &mut [u8]) {
        if self.socket.set_nonblocking(true).is_err() {
            return;
        }
        while let Ok((len, from)) = self.socket.recv_from(buf) {
            self.receive(&buf[..len], from);
        }
        let _ = self.socket.set_nonblocking(false);
    }

    fn check_caught_up(&mut self) {
        if self.caught_up.load(Ordering::Relaxed) {
            return;
        }
        let since_start = self.started.elapsed();
        let base = catch_up_wait(self.config.interval);
        if self
            .peers
            .values()
            .all(|p| p.done_waiting(since_start, base))
        {
            self.caught_up.store(true, Ordering::Relaxed);
            let whole: Vec<String> = self
                .peers
                .iter()
                .filter(|(_, p)| p.rounds_complete > 0)
                .map(|(addr, _)| addr.to_string())
                .collect();
            info!(waited = ?since_start, peers_with_a_whole_round = ?whole, "caught up with the other edge hosts' pinned flows");
            self.publish();
        }
    }

    fn send_hello(&mut self) {
        let hello = wire::encode(wire::Header::hello(self.boot, self.period), &[]);
        for peer in self.config.peers.clone() {
            if let Err(err) = self.socket.send_to(&hello, peer) {
                self.view.send_errors_total += 1;
                self.warn_once(
                    &format!("send {peer}"),
                    format!("sending to sync peer {peer}: {err}"),
                );
            }
        }
    }

    fn send_round(&mut self, buf: &mut [u8]) {
        let started = Instant::now();
        let mut flows = match pinned::pinned_flows(&self.maps, crate::dataplane::now_ns()) {
            Ok((flows, copies)) => {
                self.copies_left = copies_budget(self.maps.flows.capacity()).saturating_sub(copies);
                self.view.copies = copies as u64;
                flows
            }
            Err(err) => {
                self.warn_once("walk", format!("reading the flow table for sync: {err}"));
                return;
            }
        };
        self.view.last_walk_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.round = self.round.checked_add(1).unwrap_or(1);
        // More than a round carries: this one starts where the last stopped.
        let pinned = flows.len();
        if pinned > wire::MAX_ROUND_FLOWS {
            let start = (self.round as usize).wrapping_mul(wire::MAX_ROUND_FLOWS) % pinned;
            flows.rotate_left(start);
            flows.truncate(wire::MAX_ROUND_FLOWS);
            self.warn_once(
                "round full",
                format!(
                    "{pinned} flows are pinned off the table, more than a sync round carries ({}): \
                     each round sends the next part of them",
                    wire::MAX_ROUND_FLOWS
                ),
            );
        }
        self.view.not_sent_last_round = (pinned - flows.len()) as u64;
        let datagrams = wire::round(self.boot, self.round, self.period, &flows);
        let mut sent_to = vec![true; self.config.peers.len()];
        for burst in datagrams.chunks(SEND_BURST) {
            for (p, peer) in self.config.peers.clone().into_iter().enumerate() {
                if !sent_to[p] {
                    continue;
                }
                for datagram in burst {
                    if let Err(err) = self.socket.send_to(datagram, peer) {
                        self.view.send_errors_total += 1;
                        self.warn_once(
                            &format!("send {peer}"),
                            format!("sending pinned flows to {peer}: {err}"),
                        );
                        sent_to[p] = false;
                        break;
                    }
                }
            }
            self.receive_pending(buf);
        }
        let whole = sent_to.iter().filter(|sent| **sent).count();
        self.view.flows_sent_total += (flows.len() * whole) as u64;
        self.view.pinned_flows = pinned as u64;
        self.view.rounds_total += 1;
    }

    fn receive(&mut self, bytes: &[u8], from: SocketAddr) {
        if !self.peers.contains_key(&from) {
            self.refuse(
                "stranger",
                &format!("a datagram from {from}, which is not in sync.peers"),
            );
            return;
        }
        let (header, flows) = match wire::decode(bytes) {
            Ok(decoded) => decoded,
            Err(err) => {
                self.refuse(err.reason(), &format!("a datagram from {from}: {err}"));
                return;
            }
        };
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.datagram(&header, flows.len(), Instant::now());
        }
        if flows.is_empty() {
            return;
        }
        let settings = *self.settings.lock().unwrap_or_else(|e| e.into_inner());
        let budget = &mut self.copies_left;
        match learn::apply(&mut self.maps, &mut self.index, &flows, &settings, budget) {
            Ok(outcomes) => {
                for outcome in outcomes {
                    *self
                        .view
                        .received
                        .entry(outcome.label().into())
                        .or_default() += 1;
                }
            }
            Err(err) => self.refuse("map", &format!("writing pinned flows from {from}: {err}")),
        }
    }

    fn refuse(&mut self, reason: &str, what: &str) {
        *self.view.refused.entry(reason.into()).or_default() += 1;
        self.warn_once(reason, format!("sync refused {what} (logged once; counted in status and failover_sync_refused_total)"));
    }

    fn warn_once(&mut self, key: &str, message: String) {
        if self.warned.insert(key.to_owned()) {
            warn!("{message}");
        }
    }

    fn publish(&mut self) {
        self.view.caught_up = self.caught_up.load(Ordering::Relaxed);
        self.view.peers = self
            .peers
            .iter()
            .map(|(addr, peer)| PeerView {
                peer: addr.to_string(),
                heard_s_ago: peer.last_heard.map(|at| at.elapsed().as_secs_f64()),
                rounds_complete: peer.rounds_complete,
                flows_received_total: peer.flows_received_total,
                datagrams_lost_total: peer.datagrams_lost_total,
            })
            .collect();
        let view = self.view.clone();
        self.telemetry.update(|snapshot| snapshot.sync = Some(view));
    }
}

/// Asks for a receive buffer of [`RECEIVE_BUFFER`] (beyond the system's
/// limit: the agent runs as root), else whatever the system allows.
fn grow_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size = RECEIVE_BUFFER;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid socket and a c_int option value of its size.
        let done = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        } == 0;
        if done {
            return;
        }
    }
}

/// A number that differs between two starts of the agent.
fn boot_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
    nanos ^ std::process::id().rotate_left(16)
}
