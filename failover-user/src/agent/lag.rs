//! How late the agent's own timers fire: a task wakes every
//! [`TICK`] and notes by how much each wake-up overshot. Probes share the
//! runtime, so a late tick is a late probe: the edge host is starved.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;

const TICK: Duration = Duration::from_millis(10);
/// Overshoots below this are noise, not noted.
const NOTED: Duration = Duration::from_millis(1);
/// How far back the meter remembers.
const KEPT: Duration = Duration::from_secs(120);

/// The agent's timer lag, measured off the decision loop.
pub(super) struct LagMeter {
    late: Arc<Mutex<VecDeque<(Instant, Duration)>>>,
    task: JoinHandle<()>,
}

impl LagMeter {
    pub(super) fn start() -> Self {
        let late: Arc<Mutex<VecDeque<(Instant, Duration)>>> = Arc::default();
        let noted = late.clone();
        let task = tokio::spawn(async move {
            loop {
                let planned = Instant::now() + TICK;
                tokio::time::sleep_until(planned.into()).await;
                let woke = Instant::now();
                let lag = woke.saturating_duration_since(planned);
                if lag < NOTED {
                    continue;
                }
                let mut late = noted.lock().unwrap_or_else(|p| p.into_inner());
                while late
                    .front()
                    .is_some_and(|(at, _)| woke.duration_since(*at) > KEPT)
                {
                    late.pop_front();
                }
                late.push_back((woke, lag));
            }
        });
        Self { late, task }
    }

    /// The worst lag since `since`.
    pub(super) fn worst_since(&self, since: Instant) -> Duration {
        let late = self.late.lock().unwrap_or_else(|p| p.into_inner());
        late.iter()
            .rev()
            .take_while(|(at, _)| *at >= since)
            .map(|(_, lag)| *lag)
            .max()
            .unwrap_or_default()
    }
}

impl Drop for LagMeter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
