//! `failover run`: load (or adopt) the data path, probe every backend, and
//! turn health flips and operator requests into map updates through each
//! service's policy.
//!
//! Fail-static: the program stays attached through pinned links and the maps
//! stay pinned when the agent exits for any reason, so forwarding goes on
//! with the last decisions. A restarted agent adopts both without touching
//! established flows.

mod announce;
mod apply;
mod cold;
mod damping;
mod egress;
mod flip;
mod flood_guard;
mod flows;
mod lag;
mod lock;
mod op_error;
mod ops;
mod passive;
mod persist;
mod probes;
mod reload_diff;
mod report;
mod resync;
mod runtime;
mod second_opinion;
mod slow_start;
mod start;

pub use self::lock::{LockError, PinDirLock, is_agent, remove_pid_file, write_pid_file};

use std::{future::Future, path::PathBuf, time::Instant};

use tokio::{sync::mpsc, time::sleep_until};
use tracing::{info, warn};

use self::{
    probes::{ProbeEvent, ProbeSet},
    runtime::ServiceRuntime,
};
use crate::{
    Dataplane,
    config::AgentConfig,
    control,
    dataplane::error::DataplaneError,
    events::{Event, EventBus, EventKind},
    outputs::telemetry::{Telemetry, Totals},
};

/// Probe results handled per pass of the decision loop at most, so that
/// signals, control requests and timers still get their turn under load.
const PROBE_BATCH: usize = 1024;

/// Requests from signals (SIGUSR1, SIGHUP).
#[derive(Debug, Clone, Copy)]
pub enum Command {
    /// Release every failback hold.
    Failback,
    /// Re-read the configuration file and apply the difference.
    Reload,
}

/// Errors that stop the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("control socket {path}")]
    Control {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics endpoint {listen}")]
    Metrics {
        listen: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("[routing]")]
    Routing(#[from] crate::routing::RoutingError),
    #[error("[sync]")]
    Sync(#[from] crate::flow_sync::SyncError),
    #[error("interface {interface} (nothing was attached anywhere)")]
    Interface {
        interface: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where the agent's configuration comes from: the file (re-read on
/// reload) and the command line's overrides of it.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    /// `--socket`: the control socket, whatever the file says.
    pub socket: Option<PathBuf>,
}

impl Source {
    /// Reads the file and applies the overrides.
    pub fn load(&self) -> Result<AgentConfig, crate::config::ConfigError> {
        let mut config = AgentConfig::from_file(&self.path)?;
        if let Some(socket) = &self.socket {
            config.control_socket = socket.clone();
        }
        Ok(config)
    }
}

/// The agent's state, owned by the decision loop.
pub(crate) struct Agent {
    source: Source,
    config: AgentConfig,
    dataplane: Dataplane,
    services: Vec<ServiceRuntime>,
    probes: ProbeSet,
    telemetry: Telemetry,
    events: EventBus,
    totals: Totals,
    resync: resync::Resync,
    /// Active flows per backend, counted off the decision loop.
    flows: flows::FlowCounter,
    /// Kernel drops of redirected frames, partial checksums.
    _egress: egress::EgressWatch,
    /// Where bursts of probes confirming the data path's evidence report.
    confirms: mpsc::Sender<passive::Confirmed>,
    /// Bumped whenever `services` is rebuilt (start, reload): a result
    /// about backend indexes of another epoch is stale.
    services_epoch: u64,
    /// How late the agent's own timers fire (a starved edge host).
    lag: lag::LagMeter,
    /// `[routing]`: the VIPs announced through the routing daemon.
    routing: Option<announce::Routing>,
    /// `[sync]`: flows pinned off the table shared with the other edge hosts.
    flow_sync: Option<crate::flow_sync::FlowSync>,
}

/// Sets up the data path from `config` and runs until `shutdown` resolves.
pub async fn run(
    source: Source,
    config: AgentConfig,
    mut commands: mpsc::Receiver<Command>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    start::preflight(&config)?;
    // Before anything is attached: a host that cannot announce does not start.
    let routing = config
        .routing
        .as_ref()
        .map(announce::Routing::start)
        .transpose()?;
    let events = EventBus::new(1024);
    let telemetry = Telemetry::new();
    let (stop_tasks, tasks_stop) = crate::util::shutdown::channel();
    // Requests for the decision loop: the control socket's, and the status
    // page's `/status.json`.
    let (calls_tx, mut calls) = mpsc::channel::<control::Call>(64);
    let mut background =
        spawn_outputs(&config, &events, &telemetry, &calls_tx, &tasks_stop).await?;
    let control_listener = control::bind(&config.control_socket)
        .await
        .map_err(|source| AgentError::Control {
            path: config.control_socket.clone(),
            source,
        })?;

    let mut undo = start::Undo::new(&config);
    let loaded = Dataplane::load_with(&config.pin_dir, config.conntrack.max_flows).and_then(
        |mut dataplane| {
            dataplane.set_flow_settings(&config.conntrack.settings())?;
            let adopted = dataplane.adopt()?;
            Ok((dataplane, adopted))
        },
    );
    let (mut dataplane, adopted) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => {
            undo.abandon(&config);
            return Err(err.into());
        }
    };
    if adopted > 0 {
        info!(services = adopted, pin_dir = %config.pin_dir.display(), "adopted pinned maps from an earlier agent");
    }
    let flow_counter = match flows::FlowCounter::start(&config.pin_dir, telemetry.clone()) {
        Ok(counter) => counter,
        Err(err) => {
            undo.abandon(&config);
            return Err(err.into());
        }
    };
    let flow_sync = match config.sync.as_ref().map(|sync| {
        crate::flow_sync::FlowSync::start(
            sync,
            &config.pin_dir,
            config.conntrack.settings(),
            telemetry.clone(),
        )
    }) {
        None => None,
        Some(Ok(sync)) => Some(sync),
        Some(Err(err)) => {
            undo.abandon(&config);
            return Err(err.into());
        }
    };
    let watching = match dataplane.watch_redirects() {
        Ok(()) => true,
        Err(err) => {
            warn!(cause = %crate::util::chain(&err), "cannot watch for redirected frames the kernel drops: an egress interface that cannot take them (a veth whose peer has no NAPI) would drop forwarded packets unseen");
            false
        }
    };
    let egress_watch =
        match egress::EgressWatch::start(&config.pin_dir, telemetry.clone(), watching) {
            Ok(watch) => watch,
            Err(err) => {
                undo.abandon(&config);
                return Err(err.into());
            }
        };
    let (probe_tx, mut probe_events) = mpsc::channel::<ProbeEvent>(1024);
    let (confirms, mut confirmed) = passive::channel();
    let mut agent = Agent {
        source,
        config: config.clone(),
        dataplane,
        services: Vec::new(),
        probes: ProbeSet::new(probe_tx),
        telemetry,
        events,
        totals: Totals::default(),
        resync: resync::Resync::default(),
        flows: flow_counter,
        _egress: egress_watch,
        confirms,
        services_epoch: 0,
        lag: lag::LagMeter::start(),
        routing,
        flow_sync,
    };
    for warning in config.warnings() {
        warn!("{warning}");
    }
    if let Err(err) = agent.set_up(&mut undo) {
        undo.abandon(&config);
        return Err(err);
    }
    agent.restart_probes().await;
    agent.refresh_telemetry();
    agent.announce();

    background.push(tokio::spawn(control::serve(
        control_listener,
        config.control_socket.clone(),
        calls_tx,
        tasks_stop.clone(),
    )));
    info!(
        services = agent.services.len(),
        probes = agent.probes.len(),
        "agent running"
    );
    agent.events.publish(
        Event::new(
            EventKind::AgentStart,
            format!("agent started with {} services", agent.services.len()),
        )
        .details(serde_json::json!({"adopted_services": adopted, "pid": std::process::id()})),
    );

    tokio::pin!(shutdown);
    // Finding the next deadline looks at every backend: it is recomputed only
    // after something that can move one (a flip, a timer, an operator call),
    // not after every probe result.
    let mut deadline = agent.next_deadline();
    let mut passive_tick = tokio::time::interval(passive::SAMPLE_EVERY);
    passive_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let mut moved = true;
        let watching = agent.has_passive();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = passive_tick.tick(), if watching => moved = agent.on_passive_tick(),
            Some(done) = confirmed.recv() => moved = agent.on_confirmed(done),
            Some(event) = probe_events.recv() => {
                // Take every result already queued: the bookkeeping after
                // each pass of this loop (deadlines, cold standbys) looks at
                // every service, and at thousands of probes a second doing it
                // per result would saturate the loop.
                let mut next = Some(event);
                let mut taken = 0;
                moved = false;
                while let Some(event) = next {
                    if event.generation == agent.probes.generation() {
                        moved |= agent.on_probe(event);
                    }
                    taken += 1;
                    next = if taken < PROBE_BATCH { probe_events.try_recv().ok() } else { None };
                }
            }
            Some(command) = commands.recv() => match command {
                Command::Failback => {
                    let result = agent.failback(None, false);
                    info!(?result, "failback requested by signal");
                }
                Command::Reload => {
                    let result = agent.reload(false).await;
                    match result {
                        Ok(diff) => info!(%diff, "reloaded on SIGHUP"),
                        Err(err) => warn!(cause = %crate::util::chain(&err), "reload on SIGHUP refused; nothing changed"),
                    }
                }
            },
            Some(call) = calls.recv() => {
                let response = agent.handle(call.request).await;
                let _ = call.reply.send(response);
            }
            _ = sleep_until_opt(deadline) => agent.on_tick(),
        }
        if agent.update_cold_standbys() {
            agent.restart_probes().await;
            moved = true;
        }
        if moved || agent.has_cold_standbys() {
            deadline = agent.next_deadline();
        }
        if moved || agent.announce_due() {
            agent.announce();
        }
    }
    agent.withdraw_all();
    agent.probes.stop().await;
    stop_tasks.fire();
    let _ = std::fs::remove_file(&agent.config.control_socket);
    agent.events.publish(Event::new(
        EventKind::AgentStop,
        "agent stopped; the data path stays attached and keeps forwarding (fail-static)",
    ));
    info!("agent stopped; the data path stays attached and keeps forwarding (fail-static)");
    // Every task ends: the servers at the shutdown signal, the journal and
    // alert hooks once they took the last events (a moment at most).
    drop(agent);
    for task in background {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
    }
    Ok(())
}

/// Starts the metrics endpoint (until `shutdown`), journal and alert hooks
/// (until the event bus closes).
async fn spawn_outputs(
    config: &AgentConfig,
    events: &EventBus,
    telemetry: &Telemetry,
    calls: &mpsc::Sender<control::Call>,
    shutdown: &crate::util::shutdown::Shutdown,
) -> Result<Vec<tokio::task::JoinHandle<()>>, AgentError> {
    let mut tasks = vec![tokio::spawn(crate::outputs::recent::run(
        events.subscribe(),
        telemetry.clone(),
    ))];
    if let Some(listen) = config.metrics_listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| AgentError::Metrics { listen, source })?;
        info!(%listen, "metrics endpoint ready (GET /metrics); status page at GET / and /status.json, read-only, where /metrics binds");
        let telemetry = telemetry.clone();
        let pin_dir = config.pin_dir.clone();
        let shutdown = shutdown.clone();
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(err) = crate::outputs::metrics::serve_listener(
                listener,
                telemetry,
                pin_dir,
                Some(calls),
                shutdown.wait(),
            )
            .await
            {
                warn!(cause = %crate::util::chain(&err), "metrics endpoint stopped");
            }
        }));
    }
    if let Some(journal) = config.journal.clone() {
        tasks.push(tokio::spawn(crate::outputs::journal::run(
            journal,
            events.subscribe(),
        )));
    }
    if !config.alerts.is_empty() {
        tasks.push(tokio::spawn(crate::outputs::alerts::run(
            config.alerts.clone(),
            events.subscribe(),
        )));
    }
    Ok(tasks)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Agent {
    /// Restarts the probes: every backend except dormant cold standbys.
    async fn restart_probes(&mut self) {
        let targets = self
            .services
            .iter()
            .enumerate()
            .flat_map(|(s, service)| {
                service
                    .plan
                    .backends
                    .iter()
                    .enumerate()
                    .filter(|(b, _)| {
                        !matches!(
                            service.backends[*b].cold,
                            Some(runtime::ColdState::Dormant | runtime::ColdState::Failed { .. })
                        )
                    })
                    .map(move |(b, backend)| probes::Target {
                        service: s,
                        backend: b,
                        spec: backend.probe.clone(),
                        address: backend.spec.addr,
                    })
            })
            .collect();
        self.probes.restart(targets).await;
    }
}
