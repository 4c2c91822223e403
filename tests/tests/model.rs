//! Model-based property test of the lifecycle core: random op
//! sequences with time advances, through the public API, checked against the
//! reference model in `lameduck_testkit::model` and its invariants.

use lameduck_testkit::model::Harness;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    /// The core agrees with the model on every result, action, state, count
    /// and deadline, and the invariants hold, over random scenarios.
    #[test]
    fn core_agrees_with_the_model(bytes in prop::collection::vec(any::<u8>(), 8..600)) {
        let _observed = Harness::run_bytes(&bytes);
    }
}

/// The random scenarios are not idle: across a fixed set of them, every kind
/// of close, every completion and every other action occurs. Guards the
/// property test above against a decoder that stopped reaching behaviours.
#[test]
fn random_scenarios_reach_every_behaviour() {
    use std::collections::BTreeMap;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    );
    for _ in 0..2_000 {
        let len = 8 + (rng.next_u32() % 400) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
        for (k, n) in Harness::run_bytes(&bytes) {
            *seen.entry(k).or_default() += n;
        }
    }
    let expected = [
        "CloseConn(Drain)",
        "CloseConn(KeepAliveOff)",
        "CloseConn(NewConnGrace)",
        "CloseConn(IdleTimeout)",
        "CloseConn(HeaderTimeout)",
        "CloseConn(BodyTimeout)",
        "CloseConn(WriteTimeout)",
        "CloseConn(Deadline)",
        "CloseConn(ServerClosed)",
        "CloseListener",
        "FinishAndClose",
        "NotifyHijacked",
        "RunHooks(LameDuck)",
        "RunHooks(Drain)",
        "RunHooks(ForcedClose)",
        "CutOffHooks(Drain)",
        "CutOffHooks(ForcedClose)",
        "PhaseChanged(LameDuck)",
        "PhaseChanged(Draining)",
        "Done(Drained)",
        "Done(DeadlineExpired)",
        "Done(Closed)",
        "PauseAccepting",
        "ResumeAccepting",
        "ReleaseListener",
        "PhaseChanged(HandedOff)",
        "StreamOpened(beside another)",
        "StreamClosed(last)",
    ];
    for kind in expected {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 5,
            "{kind} seen {:?} times; all: {seen:?}",
            seen.get(kind)
        );
    }
}
