//! The namespace lab shared by the integration tests and `failover demo`:
//! network namespaces and veth links that clean up after themselves, the
//! client/edge/backends topology, backend TCP/UDP servers that answer with
//! their name, the agent as a child process, and client load recorded one
//! way for all of them.

pub mod agent;
pub mod bird;
pub mod child;
pub mod fleet;
pub mod load;
pub mod netns;
pub mod servers;
pub mod topology;
