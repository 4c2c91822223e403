//! Core memory per tracked connection: a lease (which lameduck's driver
//! takes for every connection) adds its word — 8 bytes, and its share of
//! the chunk the word lives in — and nothing else, whatever the
//! configuration and the number of connections. (The figure itself, and
//! its target, are the benchmark's: `bench/run.sh --only scale`.)

use std::time::{Duration, Instant};

use lameduck_core::{Config, ConnEvent, Server};

/// `memory_footprint()` per connection for `n` kept-alive connections,
/// each idle after three requests — through its lease (the later two)
/// if `leased`.
fn bytes_per_conn(config: &Config, n: usize, leased: bool) -> f64 {
    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    let t0 = Instant::now();
    let mut server = Server::new(config.clone(), t0);
    let l = server.add_listener().unwrap();
    let clock = server.lease_clock();
    let empty = server.memory_footprint();
    let mut leases = Vec::with_capacity(n);
    for i in 0..n {
        // A microsecond between connections, and between a connection's
        // events (as on a real server).
        let at = t0 + Duration::from_micros(16 * i as u64);
        let c = server.accept(l, at).unwrap();
        let lease = leased.then(|| server.lease(c).unwrap());
        for r in 0..3u64 {
            let at = at + Duration::from_micros(1 + 4 * r);
            let recorded = lease.as_ref().is_some_and(|lease| {
                lease.advance(ConnEvent::RequestStarted, &clock, || at)
                    && lease.advance(ConnEvent::BodyComplete, &clock, || at)
                    && lease.advance(ConnEvent::ResponseDone, &clock, || at)
            });
            if !recorded {
                server.request_started(c, at).unwrap();
                server.body_complete(c, at).unwrap();
                server.response_done(c, at).unwrap();
            }
        }
        leases.push(lease);
        while server.poll_action().is_some() {}
    }
    assert_eq!(server.lent(), if leased { n } else { 0 });
    (server.memory_footprint() - empty) as f64 / n as f64
}

#[test]
fn a_lease_costs_a_connection_its_word_and_nothing_more() {
    let timers = Config {
        idle_timeout: Some(Duration::from_secs(60)),
        header_timeout: Some(Duration::from_secs(10)),
        ..Config::default()
    };
    for n in [1_000, 50_000] {
        for (name, config) in [("default", Config::default()), ("timers", timers.clone())] {
            let plain = bytes_per_conn(&config, n, false);
            let leased = bytes_per_conn(&config, n, true);
            assert!(
                leased - plain <= 9.0,
                "{name}, {n} connections: {plain:.1} bytes each, {leased:.1} with leases"
            );
        }
    }
}
