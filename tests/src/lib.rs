//! Shared test machinery for lameduck: the reference model of the lifecycle
//! core and the op decoder shared by the property tests and the fuzz targets.

pub mod model;
pub mod fuzz;
