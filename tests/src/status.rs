//! Reading the agent's `status` answer in tests, typed: the product's own
//! [`StatusAnswer`], so a change of its shape fails here, loudly.

pub use failover::control::{BackendStatus, ServiceStatus, StatusAnswer};

/// The service called `name`.
pub fn service<'a>(status: &'a StatusAnswer, name: &str) -> &'a ServiceStatus {
    status
        .service(name)
        .unwrap_or_else(|| panic!("no service {name} in {status:#?}"))
}

/// The backend `service_name/name`.
pub fn backend<'a>(status: &'a StatusAnswer, service_name: &str, name: &str) -> &'a BackendStatus {
    service(status, service_name)
        .backend(name)
        .unwrap_or_else(|| panic!("no backend {service_name}/{name} in {status:#?}"))
}

/// Who takes new flows in `service_name`.
pub fn new_flows_to(status: &StatusAnswer, service_name: &str) -> Vec<String> {
    service(status, service_name).new_flows_to.clone()
}

/// A list of names in an operation's report (`new_flows_after`, a reload's
/// `changed`, ...).
pub fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v.as_str().expect("a name").to_owned())
        .collect()
}
