//! The namespace lab shared by the integration tests and `failover demo`:
//! network namespaces and veth links that clean up after themselves, and
//! backend TCP/UDP servers that answer with their name.

pub mod netns;
pub mod servers;
