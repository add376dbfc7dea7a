//! Active flows per backend, counted off the decision loop. Walking a full
//! conntrack table takes a quarter of a second or more; inside the loop it
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

use failover_common::flow_direction;

use crate::{
    dataplane::error::DataplaneError,
    dataplane::maps::{Conntrack, PinDir},
};

/// A flow counts as active while it was seen this recently (conntrack
/// entries stay until evicted, so drains are followed by idle time).
pub const ACTIVE_FLOW_IDLE: Duration = Duration::from_secs(5);
/// How often the flows are counted at most.
const FRESHEST: Duration = Duration::from_millis(200);

/// The last count.
#[derive(Clone, Debug, Default)]
pub struct FlowCounts {
    /// Forward entries seen within [`ACTIVE_FLOW_IDLE`], by backend id.
    pub by_backend: BTreeMap<u32, u64>,
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
    pub fn start(pin_dir: &Path) -> Result<Self, DataplaneError> {
        let conntrack = Conntrack::open(&mut PinDir(pin_dir))?;
        let counts = Arc::new(Mutex::new(FlowCounts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (counts, stop) = (counts.clone(), stop.clone());
            std::thread::Builder::new()
                .name("flow-counter".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let by_backend = count(&conntrack);
                        let fresh = FlowCounts {
                            by_backend,
                            counted_at: Some(Instant::now()),
                        };
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

fn count(conntrack: &Conntrack) -> BTreeMap<u32, u64> {
    let now = crate::dataplane::now_ns();
    let mut counts = BTreeMap::new();
    for (_, flow) in conntrack.entries() {
        if flow.direction == flow_direction::FORWARD
            && now.saturating_sub(flow.last_seen_ns) <= ACTIVE_FLOW_IDLE.as_nanos() as u64
        {
            *counts.entry(flow.backend_id).or_insert(0) += 1;
        }
    }
    counts
}
