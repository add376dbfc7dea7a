//! Types and pure functions shared by the XDP program (`failover-ebpf`) and the
//! agent (`failover-user`).
//!
//! Everything here is `no_std`, allocation-free and verifier-friendly: the same
//! code runs in the kernel and in userspace, so `inspect explain` and the tests
//! compute exactly what the data path computes.
#![no_std]

pub mod csum;
pub mod evidence;
pub mod flows;
pub mod hash;
pub mod maps;
pub mod pick;
pub mod stats;

pub use evidence::Evidence;
pub use flows::*;
pub use maps::*;
