//! (being written)

use super::Section;

pub fn run(_quick: bool) -> Section {
    Section {
        title: "failover",
        markdown: "not measured yet\n".into(),
        json: serde_json::Value::Null,
        summary: Vec::new(),
        failures: vec!["failover: not implemented".into()],
    }
}
