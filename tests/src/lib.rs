//! Shared test machinery for lameduck.
