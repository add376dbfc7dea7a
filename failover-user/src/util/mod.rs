//! Helpers the agent's parts share: the one runner for external commands,
//! errors printed with their causes.

mod chain;
pub mod process;

pub use chain::{Chain, chain};
