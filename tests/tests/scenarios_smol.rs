//! The scenario suite (Go's shutdown behaviours over real sockets) on smol.

lameduck_tests::scenarios!(lameduck_tests::harness::SmolRt);
