//! Planned switchover to the standby and back under the same load.

use std::time::{Duration, Instant};

use failover::lab::load::{Load, Sample};

use super::{FAILOVER_BOUND, Switchover, traffic::wait_answer};

/// A planned switchover to the standby and back under the same load:
/// `switch(to)` asks the peer to send new flows to `to`.
pub(super) fn planned_switchovers(
    peer: &'static str,
    traffic: &Load,
    failures: &mut Vec<String>,
    mut switch: impl FnMut(&str) -> Result<(), String>,
) -> Vec<Switchover> {
    let mut done = Vec::new();
    for (direction, to) in [
        ("primary → standby", "standby"),
        ("standby → primary", "primary"),
    ] {
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        if let Err(err) = switch(to) {
            failures.push(format!("{peer}: switchover {direction}: {err}"));
            break;
        }
        let Some(reached) = wait_answer(traffic, to, started, FAILOVER_BOUND) else {
            failures.push(format!(
                "{peer}: switchover {direction}: {to} never took new flows"
            ));
            break;
        };
        std::thread::sleep(Duration::from_millis(300));
        let tcp = traffic.snapshot().new_flows;
        let window: Vec<&Sample> = tcp.iter().filter(|s| s.done >= started).collect();
        done.push(Switchover {
            peer,
            direction,
            failed: window.iter().filter(|s| s.result.is_err()).count(),
            requests: window.len(),
            took: reached - started,
        });
    }
    done
}
