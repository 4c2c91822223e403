//! The adversarial tests of `adversarial_smol.rs`, instantiated for the
//! async-std binding. Needs the `async-std` feature
//! (`cargo test --workspace --all-features`).

#![cfg(feature = "async-std")]

lameduck_tests::adversarial!(lameduck_tests::harness::AsyncStdRt);
