//! Adversarial clients over real sockets (slowloris, never-reading clients,
//! a connection flood, half-closes, oversized requests, garbage) on smol.

lameduck_tests::adversarial!(lameduck_tests::harness::SmolRt);
