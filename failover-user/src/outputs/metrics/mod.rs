//! The HTTP endpoint: `GET /metrics` in Prometheus text exposition format
//! 0.0.4, and the status page: `GET /` (one self-contained page, no
//! external assets) refreshed from `GET /status.json`, the same typed
//! answer as the control socket's `status` (asked of the decision loop the
//! same way). Everything is read-only.
//!
//! Agent-side metrics (health, probes, failovers) come from the telemetry
//! snapshot; data-path counters are read from the pinned maps on each scrape,
//! so they are right even across an agent restart. The flow table's counts
//! come from the agent's last walk of it (in the snapshot): a scrape never
//! walks a table of a million entries itself. When the maps cannot be
//! opened (the agent is still loading them, or they were detached) the scrape
//! still answers, with `failover_datapath_up 0` and the agent-side metrics.
//!
//! The server is deliberately small: one request per connection, each
//! connection in its own task, requests read under a size limit and a
//! deadline, a cap on concurrent connections. A slow or hostile client costs
//! one task for at most [`CONNECTION_DEADLINE`].

mod exposition;
mod http;
mod render;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use failover_common::{Counter, Evidence, TrafficStats};
use tokio::{
    net::TcpListener,
    sync::{Mutex, Semaphore},
    task::JoinSet,
    time::timeout,
};
use tracing::{debug, info, warn};

use crate::{
    dataplane::error::DataplaneError,
    dataplane::{
        flow_maps::Flows,
        maps::{Counters, PinDir},
    },
    outputs::telemetry::{Snapshot, Telemetry},
};

use http::Scraper;
pub use render::render;

/// Largest request head (request line and headers) read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head (Prometheus sends it at
/// once; idle connections must not hold slots long).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a connection may live in all, response included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Connections served at once; further ones wait in the listen backlog.
/// Hundreds of idle ones (a misbehaving local client) still leave room for
/// a scrape, which then never waits behind them.
pub const MAX_CONNECTIONS: usize = 512;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Data-path counters read from the pinned maps for one scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DatapathCounters {
    /// Indexed by XDP action, named by [`VERDICT_NAMES`].
    pub verdicts: Vec<Counter>,
    /// Indexed by `stats::reason`.
    pub reasons: Vec<Counter>,
    /// By backend id.
    pub backends: BTreeMap<u32, TrafficStats>,
    /// By service id.
    pub services: BTreeMap<u32, TrafficStats>,
    /// In-band evidence, by backend id.
    pub evidence: BTreeMap<u32, Evidence>,
    /// Entries `FO_FLOWS` holds at most (`max_flows`).
    pub flow_capacity: u32,
}

impl DatapathCounters {
    /// Reads the counters of the services and backends in `snapshot` from the
    /// maps pinned under `pin_dir`. Blocking (bpf syscalls): call from a
    /// blocking thread. The flow table is not walked here: its counts come
    /// from the agent's own walk, in the snapshot.
    pub fn read(pin_dir: &Path, snapshot: &Snapshot) -> Result<Self, DataplaneError> {
        let counters = Counters::open(&mut PinDir(pin_dir))?;
        let flows = Flows::open(&mut PinDir(pin_dir))?;
        let mut backends = BTreeMap::new();
        let mut services = BTreeMap::new();
        let mut evidence = BTreeMap::new();
        for service in &snapshot.services {
            services.insert(service.id, counters.service(service.id)?);
            for backend in &service.backends {
                backends.insert(backend.id, counters.backend(backend.id)?);
                evidence.insert(backend.id, counters.evidence(backend.id)?);
            }
        }
        Ok(Self {
            verdicts: counters.verdicts()?,
            reasons: counters.reasons()?,
            backends,
            services,
            evidence,
            flow_capacity: flows.capacity(),
        })
    }
}

/// Where `/status.json` asks for the status: the decision loop's request
/// channel (`None`: no agent, the page says so).
pub type StatusSource = Option<tokio::sync::mpsc::Sender<crate::control::Call>>;

/// Binds `listen` and serves until `shutdown` completes.
pub async fn serve(
    listen: SocketAddr,
    telemetry: Telemetry,
    pin_dir: PathBuf,
    status: StatusSource,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    info!(listen = %listener.local_addr()?, "metrics endpoint listening");
    serve_listener(listener, telemetry, pin_dir, status, shutdown).await
}

/// Serves on an already bound listener until `shutdown` completes;
/// connections still open then are closed.
pub async fn serve_listener(
    listener: TcpListener,
    telemetry: Telemetry,
    pin_dir: PathBuf,
    status: StatusSource,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let scraper = Arc::new(Scraper {
        telemetry,
        pin_dir,
        datapath_read: Mutex::new(()),
        status,
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: pause instead of spinning.
                    warn!(cause = %crate::util::chain(&err), "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let scraper = scraper.clone();
        connections.spawn(async move {
            let _permit = permit;
            match timeout(CONNECTION_DEADLINE, scraper.handle(stream)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    debug!(%peer, cause = %crate::util::chain(&err), "metrics connection failed")
                }
                Err(_) => debug!(%peer, "metrics connection closed at its deadline"),
            }
        });
    }
    connections.shutdown().await;
    Ok(())
}
