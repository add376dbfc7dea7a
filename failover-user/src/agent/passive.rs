//! Passive detection in the agent: the data path's evidence of each
//! backend of a service with `[services.passive]`, sampled every
//! [`SAMPLE_EVERY`]; a backend the evidence condemns (`decide::passive`)
//! is ejected through the same path as a probe's flip, within the
//! service's cap, never its last healthy backend, and returns through
//! `rise` passing probes. Unanswered SYNs are confirmed first by a burst
//! of probes ([`CONFIRM_PROBES`] at once, timing out after `syn_timeout`),
//! run off the decision loop; every one must fail.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Agent;
use crate::{
    config::ProbeSpec,
    decide::passive::{CONFIRM_PROBES, Verdict},
    probe,
};

/// How often the evidence counters are read (one syscall per backend).
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// A refused ejection is logged at most this often per backend.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// A confirming burst's result on its way to the decision loop.
pub(super) struct Confirmed {
    /// The services' epoch when the burst started (a reload that rebuilt
    /// them makes it stale: indexes may name other backends).
    epoch: u64,
    service: usize,
    backend: usize,
    why: String,
    /// When the evidence was read.
    read_at: Instant,
    /// Probes that failed, of [`CONFIRM_PROBES`].
    failed: usize,
    /// The first failure, or the first success.
    detail: String,
}

impl Agent {
    /// Whether any service watches the data path's evidence.
    pub(super) fn has_passive(&self) -> bool {
        self.services.iter().any(|s| s.plan.passive.is_some())
    }

    /// Samples every watched backend's evidence; ejects those it condemns
    /// and sends probes to confirm what needs it. Returns whether a
    /// backend was ejected.
    pub(super) fn on_passive_tick(&mut self) -> bool {
        let now = Instant::now();
        let mut moved = false;
        for s in 0..self.services.len() {
            let Some(settings) = self.services[s].plan.passive else {
                continue;
            };
            for b in 0..self.services[s].backends.len() {
                let id = self.services[s].backends[b].id;
                let Ok(evidence) = self.dataplane.counters().evidence(id) else {
                    continue;
                };
                let backend = &mut self.services[s].backends[b];
                if backend.confirming == Some(self.services_epoch) {
                    continue;
                }
                let Some(verdict) = backend.watch.observe(now, evidence, &settings) else {
                    continue;
                };
                // Judged once per window: the next ejection needs new evidence.
                backend.watch.clear();
                if !backend.health.healthy() {
                    continue;
                }
                let Verdict { why, confirm } = verdict;
                if confirm {
                    self.confirm(s, b, why, now, settings.syn_timeout);
                } else {
                    moved |= self.eject(s, b, why, now);
                }
            }
        }
        moved
    }

    /// Ejects backend `b` of service `s` on `why` (read at `now`) unless the
    /// service's cap or its last healthy backend forbids it. Returns
    /// whether it was ejected.
    fn eject(&mut self, s: usize, b: usize, why: String, now: Instant) -> bool {
        let Some(settings) = self.services[s].plan.passive else {
            return false;
        };
        let service = &mut self.services[s];
        let cap = settings.max_ejected(service.backends.len());
        // Every unhealthy backend counts against the cap, whatever made it
        // so (a restart or reload keeps health, not why).
        let unhealthy = service
            .backends
            .iter()
            .filter(|b| !b.health.healthy())
            .count();
        let healthy = service.backends.len() - unhealthy;
        let backend = &mut service.backends[b];
        if unhealthy >= cap || healthy <= 1 {
            if backend
                .passive_refused_at
                .is_none_or(|at| now.duration_since(at) >= REFUSED_LOG_EVERY)
            {
                backend.passive_refused_at = Some(now);
                let reason = if healthy <= 1 {
                    "it is the service's last healthy backend"
                } else {
                    "the service's cap of unhealthy backends is reached (max_ejected_percent)"
                };
                warn!(service = %service.name, backend = %backend.name, evidence = %why, unhealthy, cap, "not ejected: {reason}");
            }
            return false;
        }
        let Some(flip) = backend.health.eject(now, why) else {
            return false;
        };
        self.on_flip(s, b, flip)
    }

    /// Sends [`CONFIRM_PROBES`] probes to backend `b` of service `s` at
    /// once, each given `timeout`; the result comes back as [`Confirmed`].
    fn confirm(&mut self, s: usize, b: usize, why: String, read_at: Instant, timeout: Duration) {
        let service = &mut self.services[s];
        let backend = &mut service.backends[b];
        backend.confirming = Some(self.services_epoch);
        info!(service = %service.name, backend = %backend.name, evidence = %why, "confirming the data path's evidence with {CONFIRM_PROBES} probes");
        let plan = &service.plan.backends[b];
        let spec = ProbeSpec {
            timeout: timeout.min(plan.probe.timeout),
            ..plan.probe.clone()
        };
        let address = plan.spec.addr;
        let epoch = self.services_epoch;
        let results = self.confirms.clone();
        tokio::spawn(async move {
            let (failed, detail) = burst(&spec, address).await;
            let _ = results
                .send(Confirmed {
                    epoch,
                    service: s,
                    backend: b,
                    why,
                    read_at,
                    failed,
                    detail,
                })
                .await;
        });
    }

    /// Acts on a confirming burst: ejects the backend if every probe
    /// failed. Returns whether it was ejected.
    pub(super) fn on_confirmed(&mut self, done: Confirmed) -> bool {
        if done.epoch != self.services_epoch {
            // Rebuilt meanwhile: the flag it set is of an old epoch.
            return false;
        }
        let Some(backend) = self
            .services
            .get_mut(done.service)
            .and_then(|s| s.backends.get_mut(done.backend))
        else {
            return false;
        };
        backend.confirming = None;
        let name = backend.name.clone();
        let service = self.services[done.service].name.clone();
        if done.failed < CONFIRM_PROBES {
            info!(%service, backend = %name, evidence = %done.why, probe = %done.detail, "not ejected: a confirming probe passed");
            return false;
        }
        let why = format!(
            "{}; {CONFIRM_PROBES} confirming probes failed ({})",
            done.why, done.detail
        );
        self.eject(done.service, done.backend, why, done.read_at)
    }
}

/// The confirming probes: how many failed, and the first failure (or the
/// first success) for the log.
async fn burst(spec: &ProbeSpec, address: IpAddr) -> (usize, String) {
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..CONFIRM_PROBES {
        let spec = spec.clone();
        running.spawn(async move { probe::probe(&spec, address).await });
    }
    let outcomes: Vec<_> = running.join_all().await;
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    let detail = outcomes
        .iter()
        .find(|o| o.ok == (failed == CONFIRM_PROBES))
        .map(|o| match &o.error {
            Some(err) => format!("{} after {:?}", crate::util::chain(err), o.latency),
            None => format!("answered in {:?}", o.latency),
        })
        .unwrap_or_default();
    (failed, detail)
}

/// The channel confirming bursts report on.
pub(super) fn channel() -> (mpsc::Sender<Confirmed>, mpsc::Receiver<Confirmed>) {
    mpsc::channel(64)
}
