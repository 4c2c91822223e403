//! Graceful shutdown and zero-downtime restart for servers on smol and
//! async-std, built on the runtime-free state machines of [`lameduck_core`].
//!
//! The socket adapters are being built; today this crate re-exports the core.

#![deny(unsafe_op_in_unsafe_fn)]

pub use lameduck_core as core;
