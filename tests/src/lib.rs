//! Shared test machinery for lameduck: the reference model of the lifecycle
//! core and the op decoder shared by the property tests and the fuzz targets.

pub mod adversarial;
pub mod balancer;
pub mod client;
pub mod duplex;
pub mod fuzz;
pub mod harness;
pub mod load;
pub mod model;
pub mod process;
/// The demo server's routes, shared word for word with `adapters/examples/serve`.
#[path = "../../adapters/examples/serve/routes.rs"]
pub mod routes;
pub mod scenarios;

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
