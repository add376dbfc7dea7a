//! Helpers the agent's parts share: the one runner for external commands,
//! errors printed with their causes, one shutdown signal for its tasks.

mod chain;
pub mod process;
pub mod shutdown;

pub use chain::{Chain, chain};
