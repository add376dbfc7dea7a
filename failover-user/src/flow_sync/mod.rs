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
    pub rounds_total: u64,
    /// How long the last round's walk of the flow table took.
    pub last_walk_ms: f64,
    pub flows_sent_total: u64,
    pub send_errors_total: u64,
    pub peers: Vec<PeerView>,
    /// Flows received, by what became of them (learned, refreshed,
    /// kept_local, unknown_service, unknown_backend).
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
        let maps = LocalMaps::open(pin_dir)?;
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
    started: Instant,
    peers: BTreeMap<SocketAddr, Peer>,
    view: SyncView,
    caught_up: Arc<AtomicBool>,
    settings: Arc<Mutex<Settings>>,
    telemetry: Telemetry,
    /// Reasons already logged (each is logged once; counters go on).
    warned: std::collections::BTreeSet<String>,
}

impl Worker {
    fn run(&mut self, stop: &AtomicBool) {
        let mut next_round = Instant::now();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next_round {
                let started = Instant::now();
                self.send_round();
                // A big table is walked less often: at most a fifth of a core.
                next_round = started + self.config.interval.max(started.elapsed() * 5);
                self.publish();
            }
            match self.socket.recv_from(&mut buf) {
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
            if !self.caught_up.load(Ordering::Relaxed)
                && (self.peers.values().all(|p| p.rounds_complete > 0)
                    || self.started.elapsed() >= catch_up_wait(self.config.interval))
            {
                self.caught_up.store(true, Ordering::Relaxed);
                info!(waited = ?self.started.elapsed(), peers_heard = self.peers.values().filter(|p| p.rounds_complete > 0).count(), "caught up with the other edge hosts' pinned flows");
                self.publish();
            }
        }
    }

    fn send_round(&mut self) {
        let started = Instant::now();
        let flows = match pinned::pinned_flows(&self.maps, crate::dataplane::now_ns()) {
            Ok(flows) => flows,
            Err(err) => {
                self.warn_once("walk", format!("reading the flow table for sync: {err}"));
                return;
            }
        };
        self.view.last_walk_ms = started.elapsed().as_secs_f64() * 1000.0;
        self.round = self.round.wrapping_add(1);
        let datagrams = wire::round(self.boot, self.round, &flows);
        for peer in self.config.peers.clone() {
            for datagram in &datagrams {
                if let Err(err) = self.socket.send_to(datagram, peer) {
                    self.view.send_errors_total += 1;
                    self.warn_once(
                        &format!("send {peer}"),
                        format!("sending pinned flows to {peer}: {err}"),
                    );
                    break;
                }
            }
            self.view.flows_sent_total += flows.len() as u64;
        }
        self.view.pinned_flows = flows.len() as u64;
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
        let settings = *self.settings.lock().unwrap_or_else(|e| e.into_inner());
        match learn::apply(&mut self.maps, &mut self.index, &flows, &settings) {
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

/// A number that differs between two starts of the agent.
fn boot_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
    nanos ^ std::process::id().rotate_left(16)
}
