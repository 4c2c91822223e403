//! The scenario suite (Go's shutdown behaviours over real sockets) on
//! async-std: the same scenarios as `scenarios_smol.rs`, instantiated for
//! the async-std binding. Needs the `async-std` feature
//! (`cargo test --workspace --all-features`).

#![cfg(feature = "async-std")]

lameduck_tests::scenarios!(lameduck_tests::harness::AsyncStdRt);
