//! What the agent's journal says about the trials.

/// The agent's own timings of the web service's failovers, from its journal.
/// What the agent's journal says about the trials.
pub(super) struct Journal {
    pub(super) decision_to_flip_us: Vec<f64>,
    pub(super) detection_ms: Vec<f64>,
    /// Failovers of the web service.
    pub(super) failovers: usize,
    /// The standby reported down: it never failed, so a false failure.
    pub(super) standby_down: usize,
}

pub(super) fn read_journal(path: &std::path::Path, offset: usize) -> Journal {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(offset..).unwrap_or_default());
    let mut failovers = 0;
    let mut standby_down = 0;
    let mut decision = Vec::new();
    let mut detection = Vec::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["kind"] == "backend_down" && event["backend"] == "standby" {
            standby_down += 1;
        }
        if event["kind"] != "failover" || event["service"] != "web" {
            continue;
        }
        failovers += 1;
        let details = &event["details"];
        if let Some(us) = details["decisive_result_to_map_update_us"].as_f64() {
            decision.push(us);
        }
        if let Some(ms) = details["first_failure_to_map_update_ms"].as_f64() {
            detection.push(ms);
        }
    }
    Journal {
        decision_to_flip_us: decision,
        detection_ms: detection,
        failovers,
        standby_down,
    }
}
