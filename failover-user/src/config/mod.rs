//! The agent's TOML configuration: parsing (unknown fields rejected, errors
//! that name the field and line) and validation into a resolved plan.
//!
//! Defaults: pin_dir `/sys/fs/bpf/failover`; interface mode `auto`; probe
//! `tcp` every 1s, timeout 500ms, rise 2, fall 3, jitter 10% of the interval;
//! failback `auto` after 10s.

mod check;
mod duration;
pub mod limits;
mod plan;
mod raw;
mod resolve;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use duration::parse_duration;
pub use plan::*;

/// A configuration that cannot be used. Nothing is applied when one occurs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax errors, unknown fields, wrong types: toml's message names the
    /// line, column and field.
    #[error(transparent)]
    Parse(#[from] toml::de::Error),
    #[error("{field} (line {line}): {message}")]
    Invalid {
        field: String,
        line: usize,
        message: String,
    },
    /// The configuration does not fit the data path's maps.
    #[error("the configuration does not fit the data path: {0}")]
    Capacity(#[from] crate::dataplane::CapacityError),
}
