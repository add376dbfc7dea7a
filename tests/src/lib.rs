//! Test support: packet builders, namespace guards.
