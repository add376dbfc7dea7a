//! (being written)

use super::Section;

pub fn run(_quick: bool) -> Section {
    Section {
        title: "control_plane",
        markdown: "not measured yet\n".into(),
        json: serde_json::Value::Null,
        summary: Vec::new(),
        failures: vec!["control_plane: not implemented".into()],
    }
}
