//! The probe tasks: one per backend, restarted as a set on reload. Results
//! carry the set's generation so results of a replaced set are ignored.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::sleep,
};

use crate::{config::ProbeSpec, health::ProbeOutcome, probe};

/// A probe result on its way to the decision loop.
pub struct ProbeEvent {
    pub generation: u64,
    pub service: usize,
    pub backend: usize,
    pub outcome: ProbeOutcome,
}

/// What one probe task needs.
pub struct Target {
    pub service: usize,
    pub backend: usize,
    pub spec: ProbeSpec,
    pub address: Ipv4Addr,
}

pub struct ProbeSet {
    generation: u64,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    events: mpsc::Sender<ProbeEvent>,
}

impl ProbeSet {
    pub fn new(events: mpsc::Sender<ProbeEvent>) -> Self {
        Self {
            generation: 0,
            stop: watch::channel(false).0,
            tasks: Vec::new(),
            events,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Stops the running probes and starts one per target.
    pub async fn restart(&mut self, targets: Vec<Target>) {
        self.stop().await;
        self.generation += 1;
        let (stop, stop_rx) = watch::channel(false);
        self.stop = stop;
        for target in targets {
            self.tasks.push(tokio::spawn(probe_loop(
                self.generation,
                target,
                self.events.clone(),
                stop_rx.clone(),
            )));
        }
    }

    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }
}

/// Probes one backend until stopped: first after a random offset within the
/// interval (so probes never fire in lockstep), then every interval ± jitter.
async fn probe_loop(
    generation: u64,
    target: Target,
    events: mpsc::Sender<ProbeEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let Target {
        service,
        backend,
        spec,
        address,
    } = target;
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
        let event = ProbeEvent {
            generation,
            service,
            backend,
            outcome,
        };
        if events.send(event).await.is_err() {
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
