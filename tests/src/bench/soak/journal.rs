//! The soak labs' reading of the agent's journal.

use std::path::Path;

/// The journal's length now: events after it are the run's.
pub(super) fn offset(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| m.len() as usize)
}

/// The events written between `from` and `to` (byte offsets; `None`: the end).
pub(super) fn events(path: &Path, from: usize, to: Option<usize>) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let end = to.unwrap_or(bytes.len()).min(bytes.len());
    String::from_utf8_lossy(bytes.get(from..end).unwrap_or_default())
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Events of `service` of one of `kinds`.
pub(super) fn of<'a>(
    events: &'a [serde_json::Value],
    service: &str,
    kinds: &[&str],
) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["service"] == service && kinds.iter().any(|k| e["kind"] == *k))
        .collect()
}

/// Changes of who takes new flows (a switch to none is also a failover).
pub(super) const SWITCHES: &[&str] = &["failover", "failback", "operation"];

/// One line per event, for the report.
pub(super) fn lines(events: &[&serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["time"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}
