//! One shutdown signal for every task of the agent: the loop triggers it
//! once, each task's future resolves, and the loop joins them all.

use tokio::sync::watch;

/// Ends every [`Shutdown`] cloned from the one it came with.
pub struct Trigger(watch::Sender<bool>);

/// Resolves [`Shutdown::wait`] once the trigger fired (or was dropped).
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A trigger and the signal it ends.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Waits until the shutdown was triggered.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}
