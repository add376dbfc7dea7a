//! (being written)

use super::Section;

pub fn run(_quick: bool) -> Section {
    Section {
        title: "requests",
        markdown: "not measured yet\n".into(),
        json: serde_json::Value::Null,
        summary: Vec::new(),
        failures: vec!["requests: not implemented".into()],
    }
}
