//! Model-based property test of the supervisor machine: random op
//! sequences with time advances, checked against the reference model in
//! `lameduck_testkit::supervisor_model` and its invariants.

use lameduck_testkit::supervisor_model::run_bytes;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    /// The machine agrees with the model on every result, action, deadline
    /// and serving generation, and the invariants hold.
    #[test]
    fn supervisor_agrees_with_the_model(bytes in prop::collection::vec(any::<u8>(), 1..300)) {
        let _observed = run_bytes(&bytes);
    }
}

/// The random scenarios are not idle: across a fixed set of them, every
/// action and every way to fail or exit occurs. Guards the property test
/// above against a decoder that stopped reaching behaviours.
#[test]
fn random_scenarios_reach_every_decision() {
    use std::collections::BTreeMap;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    );
    for _ in 0..2_000 {
        let len = 1 + (rng.next_u32() % 200) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
        for (k, n) in run_bytes(&bytes) {
            *seen.entry(k).or_default() += n;
        }
    }
    let expected = [
        "Start",
        "Serve(previous: false)",
        "Serve(previous: true)",
        "WritePidFile",
        "Notify(Ready)",
        "Notify(Reloading)",
        "Notify(Stopping)",
        "Forward",
        "Kill(Attempt)",
        "Kill(StopDeadline)",
        "RestartFailed(SpawnFailed)",
        "RestartFailed(ChildExited)",
        "RestartFailed(NotReady)",
        "RestartFailed(Stopping)",
        "RestartFailed(State)",
        "Exit(Status)",
        "Exit(FirstFailed)",
        "Exit(StoppedBeforeReady)",
    ];
    for kind in expected {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 5,
            "{kind} seen {:?} times; all: {seen:?}",
            seen.get(kind)
        );
    }
}

/// The fuzz target's hand-written seeds reach what their names say.
#[test]
fn the_fuzz_seeds_reach_what_they_name() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/supervisor_events");
    let seeds = [
        ("seed-first-serves-then-stops", "Exit(Status)"),
        ("seed-restart-hands-off", "Serve(previous: true)"),
        ("seed-stop-deadline-kills", "Kill(StopDeadline)"),
        ("seed-not-ready-in-time", "RestartFailed(NotReady)"),
        ("seed-state-refused", "RestartFailed(State)"),
        ("seed-first-generation-exits", "Exit(FirstFailed)"),
        ("seed-stop-before-ready", "Exit(StoppedBeforeReady)"),
        ("seed-serving-dies-mid-restart", "RestartFailed(Stopping)"),
        ("seed-start-fails", "RestartFailed(SpawnFailed)"),
        ("seed-late-start-after-deadline", "Kill(Attempt)"),
    ];
    for (name, kind) in seeds {
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let seen = run_bytes(&bytes);
        assert!(
            seen.contains_key(kind),
            "{name} does not reach {kind}: {seen:?}"
        );
        assert!(
            seen.keys().any(|k| k.starts_with("Exit")),
            "{name} does not end: {seen:?}"
        );
    }
}
