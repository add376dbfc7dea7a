//! Active flows per backend, counted off the decision loop, and expired
//! flows reclaimed (the LRU has no TTL: the data path treats an entry past
//! its lifetime as absent, and this walk deletes it). Walking a full
//! flow table takes a quarter of a second or more; inside the loop it
//! would delay every decision queued behind a `status` call (and `drain`
//! polls status every second). A thread counts on its own map handle and
//! publishes the result; `status` reads the last count. It counts every
//! [`FRESHEST`], or less often on a big table, so that walking takes at
//! most a fifth of one core.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    dataplane::error::DataplaneError,
    dataplane::{flow_maps::Flows, maps::PinDir},
    outputs::telemetry::{FlowsView, Telemetry},
};

/// A flow counts as active while it was seen this recently (entries stay
/// until they expire or are evicted, so drains are followed by idle time).
pub const ACTIVE_FLOW_IDLE: Duration = Duration::from_secs(5);
/// How often the flows are counted at most.
const FRESHEST: Duration = Duration::from_millis(200);

/// The last count.
#[derive(Clone, Debug, Default)]
pub struct FlowCounts {
    /// Flows seen within [`ACTIVE_FLOW_IDLE`], by backend id.
    pub by_backend: BTreeMap<u32, u64>,
    /// Entries in the flow table at the last walk (expired ones included
    /// until reclaimed).
    pub entries: u64,
    /// Expired entries this agent reclaimed so far.
    pub reclaimed_total: u64,
    /// When the walk ended (`None` before the first).
    pub counted_at: Option<Instant>,
}

/// The counting thread; stopped and joined when dropped.
pub struct FlowCounter {
    counts: Arc<Mutex<FlowCounts>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FlowCounter {
    /// Starts counting; each count is also published in `telemetry` (for
    /// the metrics, which never walk the table themselves).
    pub fn start(pin_dir: &Path, telemetry: Telemetry) -> Result<Self, DataplaneError> {
        let mut flows = Flows::open(&mut PinDir(pin_dir))?;
        let counts = Arc::new(Mutex::new(FlowCounts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counts, stop) = (counts.clone(), stop.clone());
            std::thread::Builder::new()
                .name("flow-counter".into())
                .spawn(move || {
                    let mut reclaimed_total = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let walk = walk(&mut flows);
                        reclaimed_total += walk.reclaimed;
                        let fresh = FlowCounts {
                            by_backend: walk.by_backend,
                            entries: walk.entries,
                            reclaimed_total,
                            counted_at: Some(Instant::now()),
                        };
                        telemetry.update(|snapshot| {
                            snapshot.flows = Some(FlowsView {
                                entries: fresh.entries,
                                active_by_backend: fresh.by_backend.clone(),
                            });
                        });
                        *counts.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
                        let until = started + FRESHEST.max(started.elapsed() * 5);
                        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                })
                .map_err(|source| DataplaneError::System {
                    what: "starting the flow counter thread",
                    source,
                })?
        };
        Ok(Self {
            counts,
            stop,
            thread: Some(thread),
        })
    }

    pub fn latest(&self) -> FlowCounts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for FlowCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one walk of the table found and did.
struct Walk {
    by_backend: BTreeMap<u32, u64>,
    entries: u64,
    reclaimed: u64,
}

/// Counts active flows by backend and deletes expired entries (checked
/// again just before: a packet may have renewed one meanwhile).
fn walk(flows: &mut Flows) -> Walk {
    let now = crate::dataplane::now_ns();
    let mut by_backend = BTreeMap::new();
    let mut expired = Vec::new();
    let entries = flows.entries();
    for (key, flow) in &entries {
        if now > flow.expires_ns {
            expired.push(*key);
        } else if now.saturating_sub(flow.last_seen_ns) <= ACTIVE_FLOW_IDLE.as_nanos() as u64 {
            *by_backend.entry(flow.backend_id).or_insert(0) += 1;
        }
    }
    let mut reclaimed = 0;
    for key in expired {
        let still_expired = flows
            .get(&key)
            .ok()
            .flatten()
            .is_some_and(|flow| crate::dataplane::now_ns() > flow.expires_ns);
        if still_expired && flows.remove(&key).is_ok() {
            reclaimed += 1;
        }
    }
    Walk {
        by_backend,
        // What is left once this walk reclaimed the expired.
        entries: entries.len() as u64 - reclaimed,
        reclaimed,
    }
}
