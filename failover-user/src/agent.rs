//! `failover run`: load (or adopt) the data path, probe every backend, and
//! turn health flips into map updates through each service's policy.
//!
//! Fail-static: the program stays attached through pinned links and the maps
//! stay pinned when the agent exits for any reason, so forwarding goes on
//! with the last decisions. A restarted agent adopts both without touching
//! established flows.

use std::{
    future::Future,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use tokio::{
    sync::mpsc,
    time::{sleep, sleep_until},
};
use tracing::{error, info, warn};

use crate::{
    Dataplane,
    config::{AgentConfig, ProbeSpec},
    error::DataplaneError,
    health::{Flip, Health, ProbeOutcome},
    model::BackendState,
    policy::{Action, ServicePolicy},
    probe,
};

/// A probe result on its way to the decision loop.
struct ProbeEvent {
    service: usize,
    backend: usize,
    outcome: ProbeOutcome,
}

struct BackendRuntime {
    name: String,
    id: u32,
    address: Ipv4Addr,
    health: Health,
}

struct ServiceRuntime {
    name: String,
    backends: Vec<BackendRuntime>,
    policy: ServicePolicy,
}

/// Operator requests that reach the running agent (signals for now).
#[derive(Debug, Clone, Copy)]
pub enum Command {
    /// Release every manual (or pending) failback hold.
    Failback,
}

/// Sets up the data path from `config` and runs until `shutdown` resolves.
pub async fn run(
    config: AgentConfig,
    mut commands: mpsc::Receiver<Command>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DataplaneError> {
    let mut dataplane = Dataplane::load(&config.pin_dir)?;
    let adopted = dataplane.adopt()?;
    if adopted > 0 {
        info!(services = adopted, pin_dir = %config.pin_dir.display(), "adopted pinned maps from an earlier agent");
    }
    let wanted: Vec<_> = config
        .services
        .iter()
        .map(|s| (s.spec, s.backends.iter().map(|b| b.spec).collect()))
        .collect();
    let ids = dataplane.reconcile(&wanted)?;
    for (interface, mode) in &config.interfaces {
        match dataplane.attach_pinned(interface, *mode)? {
            Some(mode) => info!(interface, ?mode, "XDP attached (pinned link)"),
            None => info!(interface, "XDP link adopted"),
        }
    }

    let mut services = Vec::new();
    for (plan, (_, backend_ids)) in config.services.iter().zip(&ids) {
        let mut backends = Vec::new();
        let mut members = Vec::new();
        for (backend, id) in plan.backends.iter().zip(backend_ids) {
            let up = dataplane.backends_map().get(*id)?.state == BackendState::Up.raw();
            members.push((backend.spec.tier, up));
            backends.push(BackendRuntime {
                name: backend.name.clone(),
                id: *id,
                address: backend.spec.addr,
                health: Health::new(backend.probe.rise, backend.probe.fall, up),
            });
        }
        services.push(ServiceRuntime {
            name: plan.name.clone(),
            backends,
            policy: ServicePolicy::new(plan.failback, members),
        });
    }

    let (events_tx, mut events) = mpsc::channel::<ProbeEvent>(1024);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut probes = Vec::new();
    for (s, plan) in config.services.iter().enumerate() {
        for (b, backend) in plan.backends.iter().enumerate() {
            probes.push(tokio::spawn(probe_loop(
                s,
                b,
                backend.probe.clone(),
                backend.spec.addr,
                events_tx.clone(),
                stop_rx.clone(),
            )));
        }
    }
    drop(events_tx);
    info!(
        services = services.len(),
        probes = probes.len(),
        "agent running"
    );

    tokio::pin!(shutdown);
    loop {
        let deadline = services
            .iter()
            .filter_map(|s| s.policy.next_deadline())
            .min();
        tokio::select! {
            _ = &mut shutdown => break,
            Some(event) = events.recv() => {
                on_probe(&mut dataplane, &mut services, event);
            }
            Some(command) = commands.recv() => match command {
                Command::Failback => {
                    for service in &mut services {
                        let before = active_backends(service);
                        let actions = service.policy.failback_now();
                        apply(&mut dataplane, service, before, &actions, "operator failback", None);
                    }
                }
            },
            _ = sleep_until_opt(deadline) => {
                let now = Instant::now();
                for service in &mut services {
                    let before = active_backends(service);
                    let actions = service.policy.on_tick(now);
                    apply(&mut dataplane, service, before, &actions, "failback delay elapsed", None);
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    for probe in probes {
        let _ = probe.await;
    }
    info!("agent stopped; the data path stays attached and keeps forwarding (fail-static)");
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn on_probe(dataplane: &mut Dataplane, services: &mut [ServiceRuntime], event: ProbeEvent) {
    let service = &mut services[event.service];
    let backend = &mut service.backends[event.backend];
    let Some(flip) = backend.health.record(event.outcome) else {
        return;
    };
    log_flip(&service.name, backend, &flip);
    let now = Instant::now();
    let before = active_backends(service);
    let actions = service.policy.on_health(event.backend, flip.healthy, now);
    let cause = if flip.healthy {
        "backend recovered"
    } else {
        "backend failed"
    };
    apply(
        dataplane,
        service,
        before,
        &actions,
        cause,
        flip.first_failure_at,
    );
    if flip.healthy && !service.policy.serving(event.backend) {
        let backend = &service.backends[event.backend];
        match service.policy.hold_remaining(event.backend, now) {
            Some(left) => {
                info!(service = %service.name, backend = %backend.name, failback_in = ?left, "healthy again; failback held for the failback delay")
            }
            None => {
                info!(service = %service.name, backend = %backend.name, "healthy again; waiting for an operator failback (failover failback)")
            }
        }
    }
}

fn log_flip(service: &str, backend: &BackendRuntime, flip: &Flip) {
    let evidence: Vec<String> = flip
        .evidence
        .iter()
        .map(|o| match &o.error {
            None => format!("ok {:?}", o.latency),
            Some(err) => format!("fail {:?} ({err})", o.latency),
        })
        .collect();
    let evidence = evidence.join(", ");
    if flip.healthy {
        info!(service, backend = %backend.name, address = %backend.address, evidence, "backend healthy");
    } else {
        warn!(service, backend = %backend.name, address = %backend.address, evidence, "backend unhealthy");
    }
}

/// Applies policy actions to the data path and logs the resulting switch
/// (`before`: who took new flows before the policy decided).
fn apply(
    dataplane: &mut Dataplane,
    service: &mut ServiceRuntime,
    before: Vec<String>,
    actions: &[Action],
    cause: &str,
    first_failure: Option<Instant>,
) {
    if actions.is_empty() {
        return;
    }
    for action in actions {
        let Action::Serve { backend, serving } = *action;
        let runtime = &service.backends[backend];
        let state = if serving {
            BackendState::Up
        } else {
            BackendState::Down
        };
        if let Err(err) = dataplane.set_backend_state(runtime.id, state) {
            error!(service = %service.name, backend = %runtime.name, cause = %err, "map update failed");
        }
    }
    let after = active_backends(service);
    let gap = first_failure.map(|at| at.elapsed());
    if before != after {
        warn!(
            service = %service.name,
            from = %before.join(","),
            to = %if after.is_empty() { "nothing (no healthy backend)".to_owned() } else { after.join(",") },
            cause,
            first_failure_to_map_update = ?gap,
            "new flows switched"
        );
    }
}

/// Names of the backends that receive new flows (the active tier's serving ones).
fn active_backends(service: &ServiceRuntime) -> Vec<String> {
    let Some(tier) = service.policy.active_tier() else {
        return Vec::new();
    };
    service
        .backends
        .iter()
        .enumerate()
        .filter(|(i, _)| service.policy.serving(*i) && tier_of(service, *i) == tier)
        .map(|(_, b)| b.name.clone())
        .collect()
}

fn tier_of(service: &ServiceRuntime, backend: usize) -> u8 {
    // Policy members were built in backend order with their tiers.
    service.policy.tier(backend)
}

/// Probes one backend forever: first after a random offset within the
/// interval (so probes never fire in lockstep), then every interval ± jitter.
async fn probe_loop(
    service: usize,
    backend: usize,
    spec: ProbeSpec,
    address: Ipv4Addr,
    events: mpsc::Sender<ProbeEvent>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = seed(service, backend);
    let mut wait = Duration::from_nanos(next(&mut rng) % spec.interval.as_nanos().max(1) as u64);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = sleep(wait) => {}
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = stop.changed() => return,
            outcome = probe::probe(&spec, address) => outcome,
        };
        if events
            .send(ProbeEvent {
                service,
                backend,
                outcome,
            })
            .await
            .is_err()
        {
            return;
        }
        let jitter = spec.jitter.as_nanos() as u64;
        let offset = if jitter == 0 {
            0
        } else {
            next(&mut rng) % (2 * jitter + 1)
        };
        let period = (spec.interval + Duration::from_nanos(offset)).saturating_sub(spec.jitter);
        wait = period.saturating_sub(started.elapsed());
    }
}

fn seed(service: usize, backend: usize) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (now ^ ((service as u64) << 32) ^ (backend as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
