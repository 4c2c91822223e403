//! lameduck's own test machinery beyond the testkit (`lameduck-testkit`,
//! which holds the reference model, the fuzz targets' bodies and the
//! conformance suite): the process tests' helpers — the demo server as a
//! child process, load generators, a load balancer.

pub mod balancer;
pub mod load;
pub mod process;

/// The README's code blocks, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
