//! Reading the agent's `status --json` answer in tests.

use serde_json::Value;

/// The service called `name`.
pub fn service<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["services"]
        .as_array()
        .expect("services array")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {status:#}"))
}

/// The backend `service_name/name`.
pub fn backend<'a>(status: &'a Value, service_name: &str, name: &str) -> &'a Value {
    service(status, service_name)["backends"]
        .as_array()
        .expect("backends array")
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {service_name}/{name} in {status:#}"))
}

/// A list of names (`new_flows_to`).
pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v.as_str().expect("a name").to_owned())
        .collect()
}

/// Who takes new flows in `service_name`.
pub fn new_flows_to(status: &Value, service_name: &str) -> Vec<String> {
    names(&service(status, service_name)["new_flows_to"])
}
