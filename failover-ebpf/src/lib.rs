#![no_std]
// The program is the `failover` binary target (src/main.rs); this library
// target only exists so `failover-user` can name the crate as a
// build-dependency and cargo rebuilds it when the eBPF sources change.
