//! The probe tasks, restarted as a set on reload. Results carry the set's
//! generation so results of a replaced set are ignored.
//!
//! Backends that several services share are probed once: targets with the
//! same address and the same probe (kind, port, timing; thresholds aside,
//! which each service applies itself) form one task whose every result is
//! delivered to each of them. A thousand services in front of one pool of
//! four backends cost four probes per interval, not four thousand.

use std::{
    collections::{HashMap, hash_map::Entry},
    net::IpAddr,
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::sleep,
};

use crate::{
    config::ProbeSpec,
    probe::{self, ProbeOutcome},
};

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
    pub address: IpAddr,
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

    /// Stops the running probes and starts one per distinct probe of
    /// `targets` (see the module doc).
    pub async fn restart(&mut self, targets: Vec<Target>) {
        self.stop().await;
        self.generation += 1;
        let (stop, stop_rx) = watch::channel(false);
        self.stop = stop;
        for probe in shared(targets) {
            self.tasks.push(tokio::spawn(probe_loop(
                self.generation,
                probe,
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

    /// Probe tasks running: one per distinct probe.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }
}

/// One probe task: an address, a probe, and the (service, backend) pairs
/// that get its results.
struct SharedProbe {
    address: IpAddr,
    spec: ProbeSpec,
    members: Vec<(usize, usize)>,
}

/// Groups targets that probe the same address the same way, in first-seen
/// order.
fn shared(targets: Vec<Target>) -> Vec<SharedProbe> {
    let mut probes: Vec<SharedProbe> = Vec::new();
    let mut index: HashMap<(IpAddr, ProbeSpec), usize> = HashMap::new();
    for target in targets {
        // Thresholds are applied per service: they do not split a probe.
        let key = ProbeSpec {
            rise: 0,
            fall: 0,
            ..target.spec.clone()
        };
        match index.entry((target.address, key)) {
            Entry::Occupied(at) => probes[*at.get()]
                .members
                .push((target.service, target.backend)),
            Entry::Vacant(slot) => {
                slot.insert(probes.len());
                probes.push(SharedProbe {
                    address: target.address,
                    spec: target.spec,
                    members: vec![(target.service, target.backend)],
                });
            }
        }
    }
    probes
}

/// Probes one address until stopped: first after a random offset within the
/// interval (so probes never fire in lockstep), then every interval ± jitter;
/// every result goes to each member.
async fn probe_loop(
    generation: u64,
    probe: SharedProbe,
    events: mpsc::Sender<ProbeEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let SharedProbe {
        address,
        spec,
        members,
    } = probe;
    let (service, backend) = members[0];
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
        for &(service, backend) in &members {
            let event = ProbeEvent {
                generation,
                service,
                backend,
                outcome: outcome.clone(),
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
        wait = period(spec.interval, spec.jitter, &mut rng).saturating_sub(started.elapsed());
    }
}

/// The time to the next probe: the interval ± up to `jitter`, uniformly.
fn period(interval: Duration, jitter: Duration, rng: &mut u64) -> Duration {
    let spread = jitter.as_nanos() as u64;
    let offset = if spread == 0 {
        0
    } else {
        next(rng) % (2 * spread + 1)
    };
    (interval + Duration::from_nanos(offset)).saturating_sub(jitter)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProbeKind;

    #[test]
    fn jitter_spreads_the_period_over_the_interval_plus_or_minus_jitter() {
        let (interval, jitter) = (Duration::from_millis(100), Duration::from_millis(10));
        let mut rng = seed(1, 2);
        let periods: Vec<Duration> = (0..2000)
            .map(|_| period(interval, jitter, &mut rng))
            .collect();
        let (low, high) = (interval - jitter, interval + jitter);
        assert!(periods.iter().all(|p| (low..=high).contains(p)));
        let min = periods.iter().min().unwrap();
        let max = periods.iter().max().unwrap();
        assert!(*min < low + Duration::from_millis(1) && *max > high - Duration::from_millis(1));
        assert_eq!(period(interval, Duration::ZERO, &mut rng), interval);
    }

    use std::net::Ipv4Addr;

    fn target(service: usize, backend: usize, last: u8, port: u16, fall: u32) -> Target {
        Target {
            service,
            backend,
            address: Ipv4Addr::new(198, 51, 100, last).into(),
            spec: ProbeSpec {
                kind: ProbeKind::Tcp { port },
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(50),
                rise: 2,
                fall,
                jitter: Duration::ZERO,
                max_response_bytes: 1024,
            },
        }
    }

    #[test]
    fn one_probe_per_address_and_probe_whatever_the_thresholds() {
        let probes = shared(vec![
            target(0, 0, 2, 8080, 3),
            target(0, 1, 3, 8080, 3),
            target(1, 0, 2, 8080, 5),
            target(1, 1, 3, 8081, 3),
            target(2, 0, 2, 8080, 3),
        ]);
        let members: Vec<Vec<(usize, usize)>> = probes.iter().map(|p| p.members.clone()).collect();
        assert_eq!(
            members,
            vec![vec![(0, 0), (1, 0), (2, 0)], vec![(0, 1)], vec![(1, 1)]]
        );
        assert_eq!(
            probes[0].address,
            IpAddr::from(Ipv4Addr::new(198, 51, 100, 2))
        );
        assert_eq!(probes[2].spec.kind, ProbeKind::Tcp { port: 8081 });
    }
}
