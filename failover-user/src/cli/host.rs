//! `failover host drain | undrain`: the edge host in a fleet (`[routing]`).
//! A drain withdraws every VIP, so the routers send this host's traffic to
//! the others, and follows its flows until none is left: then the host is
//! safe to stop. It lasts across restarts until `undrain`.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::bail;

use super::ops;
use crate::control::Request;

/// How long a drain is followed unless `--timeout` says otherwise.
const FOLLOW: Duration = Duration::from_secs(600);
/// The shortest `--timeout`: a flow is active this long after its last
/// packet (`agent::flows::ACTIVE_FLOW_IDLE`, which status also reports).
const MIN_FOLLOW: Duration = Duration::from_secs(5);

pub fn run(
    socket: &Path,
    drain: bool,
    wait: bool,
    timeout: Option<Duration>,
    json: bool,
) -> anyhow::Result<()> {
    if let Some(limit) = timeout
        && limit < MIN_FOLLOW
    {
        bail!(
            "--timeout {limit:?} is too short: a flow counts as active for {MIN_FOLLOW:?} after its \
             last packet, so no drain can be seen done sooner; nothing was changed"
        );
    }
    let request = if drain {
        Request::HostDrain {}
    } else {
        Request::HostUndrain {}
    };
    let value = ops::call(socket, &request)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        println!("host {}", if drain { "drained" } else { "undrained" });
        for announcement in value["announcements"].as_array().into_iter().flatten() {
            println!(
                "  VIP {} {}: {}",
                announcement["vip"].as_str().unwrap_or(""),
                if announcement["announced"].as_bool() == Some(true) {
                    "announced"
                } else {
                    "withdrawn"
                },
                announcement["why"].as_str().unwrap_or("")
            );
        }
    }
    if !drain || !wait {
        return Ok(());
    }
    // The routers move the traffic; the host's flows go idle or end. Only
    // a count taken after the drain, once a flow could have gone idle since,
    // says the host carries none.
    let started = Instant::now();
    let limit = timeout.unwrap_or(FOLLOW);
    loop {
        let status = ops::status_answer(socket)?;
        let left: u64 = status
            .services
            .iter()
            .flat_map(|s| &s.backends)
            .map(|b| b.active_flows)
            .sum();
        let since = started.elapsed();
        let counted_since_drain = status
            .active_flows_counted_s_ago
            .is_some_and(|ago| ago < since.as_secs_f64());
        let idle_long_enough = since.as_secs() >= status.active_flow_idle_s;
        if !json {
            println!(
                "  t={:>5.1}s  {left} active flows on this host (seen within {} s)",
                since.as_secs_f64(),
                status.active_flow_idle_s
            );
        }
        if left == 0 && counted_since_drain && idle_long_enough {
            if !json {
                println!("drained: no active flow left on this host; it is safe to stop");
            }
            return Ok(());
        }
        if since >= limit {
            bail!(
                "still {left} active flows on this host after {limit:?}; it stays drained, \
                 but stopping it now would cut them"
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
