//! New flows: where a sample of new connections went.

use std::{collections::BTreeMap, time::Duration};

use failover_tests::agent_lab::AgentLab;

/// Where `n` new connections went.
pub struct Spread {
    pub counts: BTreeMap<String, usize>,
    pub failures: Vec<String>,
    pub total: usize,
}

impl Spread {
    pub fn of(lab: &AgentLab, n: usize) -> Self {
        let samples = lab.sample(n, Duration::from_millis(1));
        let mut counts = BTreeMap::new();
        let mut failures = Vec::new();
        for (_, result) in samples.0 {
            match result {
                Ok(name) => *counts.entry(name).or_insert(0) += 1,
                Err(err) => failures.push(err.detail),
            }
        }
        Self {
            counts,
            failures,
            total: n,
        }
    }

    pub fn count(&self, name: &str) -> usize {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// Percentage of all new flows that `name` answered.
    pub fn share(&self, name: &str) -> f64 {
        100.0 * self.count(name) as f64 / self.total as f64
    }

    pub fn describe(&self) -> String {
        let shares: Vec<String> = self
            .counts
            .iter()
            .map(|(name, n)| format!("{name} {n} ({:.1} %)", self.share(name)))
            .collect();
        format!(
            "{} new flows: {}; {} failed",
            self.total,
            shares.join(", "),
            self.failures.len()
        )
    }
}
