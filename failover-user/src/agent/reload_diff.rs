//! What a reload changes, for the answer, the log and the event.

use serde_json::{Value, json};

use crate::config::AgentConfig;

/// What a reload changes, by service name.
#[derive(Debug, Default)]
pub struct ReloadDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    pub interfaces_added: Vec<String>,
    pub interfaces_removed: Vec<String>,
    /// Flow lifetimes or the flood guard changed (`[conntrack]`).
    pub conntrack: bool,
}

impl ReloadDiff {
    pub(super) fn between(old: &AgentConfig, new: &AgentConfig) -> Self {
        let mut diff = Self::default();
        for plan in &new.services {
            match old.services.iter().find(|o| o.name == plan.name) {
                None => diff.added.push(plan.name.clone()),
                Some(o) if o == plan => diff.unchanged.push(plan.name.clone()),
                Some(_) => diff.changed.push(plan.name.clone()),
            }
        }
        for plan in &old.services {
            if !new.services.iter().any(|n| n.name == plan.name) {
                diff.removed.push(plan.name.clone());
            }
        }
        let names = |c: &AgentConfig| {
            c.interfaces
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>()
        };
        let (old_ifs, new_ifs) = (names(old), names(new));
        diff.interfaces_added = new_ifs
            .iter()
            .filter(|n| !old_ifs.contains(n))
            .cloned()
            .collect();
        diff.interfaces_removed = old_ifs
            .iter()
            .filter(|n| !new_ifs.contains(n))
            .cloned()
            .collect();
        diff.conntrack = old.conntrack != new.conntrack;
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.interfaces_added.is_empty()
            && self.interfaces_removed.is_empty()
            && !self.conntrack
    }

    pub fn to_json(&self) -> Value {
        json!({
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "interfaces_added": self.interfaces_added,
            "interfaces_removed": self.interfaces_removed,
            "conntrack": self.conntrack,
        })
    }
}

impl std::fmt::Display for ReloadDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        write!(
            f,
            "added {:?}, removed {:?}, changed {:?}, unchanged {:?}{}",
            self.added,
            self.removed,
            self.changed,
            self.unchanged,
            if self.conntrack {
                ", flow settings changed"
            } else {
                ""
            }
        )
    }
}
