//! The flood guard's episodes, as an operator reads them. The data path
//! counts every new flow the guard did not record (`event_flood_guard_skip`)
//! and every CPU-second it spent refusing (`event_flood_guard_second`);
//! `/metrics` has both. The log says it once when an episode starts and
//! once when it ends (no refusal for [`QUIET`]), with what was refused.

use std::time::{Duration, Instant};

use failover_common::{Counter, stats::reason};
use tracing::warn;

/// An episode ends after this long without a refusal.
pub const QUIET: Duration = Duration::from_secs(2);

/// What the last looks saw.
#[derive(Default)]
pub struct FloodEpisodes {
    /// Refusals and CPU-seconds counted at the last look.
    seen: Option<(u64, u64)>,
    episode: Option<Episode>,
}

struct Episode {
    started: Instant,
    last_refusal: Instant,
    refused: u64,
    cpu_seconds: u64,
}

impl FloodEpisodes {
    /// Looks at the data path's counters (called every few hundred ms).
    pub fn look(&mut self, reasons: &[Counter]) {
        let count = |index: u32| reasons.get(index as usize).map_or(0, |c| c.packets);
        let now_seen = (
            count(reason::EVENT_FLOOD_GUARD_SKIP),
            count(reason::EVENT_FLOOD_GUARD_SECOND),
        );
        let Some(before) = self.seen.replace(now_seen) else {
            return;
        };
        let refused = now_seen.0.saturating_sub(before.0);
        let cpu_seconds = now_seen.1.saturating_sub(before.1);
        let now = Instant::now();
        match &mut self.episode {
            None if refused > 0 => {
                warn!(
                    refused,
                    "the flood guard is on: a CPU is recording more than [conntrack] \
                     max_new_flows_per_cpu new flows a second; new flows past that are \
                     forwarded by the table without being recorded (event_flood_guard_skip). \
                     A flood, or a limit too low for this host's real rate of new flows"
                );
                self.episode = Some(Episode {
                    started: now,
                    last_refusal: now,
                    refused,
                    cpu_seconds,
                });
            }
            None => {}
            Some(episode) if refused > 0 => {
                episode.last_refusal = now;
                episode.refused += refused;
                episode.cpu_seconds += cpu_seconds;
            }
            Some(episode) => {
                episode.cpu_seconds += cpu_seconds;
                if now.duration_since(episode.last_refusal) >= QUIET {
                    warn!(
                        lasted_s = format_args!(
                            "{:.1}",
                            episode
                                .last_refusal
                                .duration_since(episode.started)
                                .as_secs_f64()
                        ),
                        refused = episode.refused,
                        cpu_seconds = episode.cpu_seconds,
                        "the flood guard is off again: every new flow is recorded"
                    );
                    self.episode = None;
                }
            }
        }
    }
}
