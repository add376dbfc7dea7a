//! The last [`RECENT_EVENTS`] events, kept in the telemetry snapshot for
//! `status` and the status page (the journal keeps them all).

use tokio::sync::broadcast::{self, error::RecvError};

use crate::{events::Event, outputs::telemetry::Telemetry};

/// Events the snapshot keeps.
pub const RECENT_EVENTS: usize = 50;

/// Keeps the last events until the bus closes.
pub async fn run(mut events: broadcast::Receiver<Event>, telemetry: Telemetry) {
    loop {
        match events.recv().await {
            Ok(event) => {
                let value = serde_json::to_value(&event).unwrap_or_default();
                telemetry.update(|snapshot| {
                    snapshot.recent_events.push_back(value);
                    while snapshot.recent_events.len() > RECENT_EVENTS {
                        snapshot.recent_events.pop_front();
                    }
                });
            }
            // Fell behind: the missed ones are in the journal.
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}
