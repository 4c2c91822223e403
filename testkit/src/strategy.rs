//! proptest strategies that generate lifecycle scenarios: random
//! configurations and op sequences, through the same decoder as the fuzz
//! targets ([`decode`]), so proptest shrinks a failure to a few bytes and
//! every byte string is a valid scenario.
//!
//! ```
//! use lameduck_testkit::model::Harness;
//! use lameduck_testkit::strategy::scenarios;
//! use proptest::prelude::*;
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(64))]
//!     // `#[test]` in a test file; called below here.
//!     fn the_core_agrees_with_the_model(scenario in scenarios()) {
//!         let _observed = Harness::check(&scenario);
//!     }
//! }
//! # the_core_agrees_with_the_model();
//! ```

use lameduck_core::Config;
use proptest::collection::vec;
use proptest::prelude::*;

use crate::model::{Op, Scenario, decode, decode_ops};

/// Random scenarios: a configuration (small limits, timeouts from zero to
/// a few seconds, every flag) and up to a few hundred ops, starting with a
/// listener.
pub fn scenarios() -> impl Strategy<Value = Scenario> {
    vec(any::<u8>(), 8..600).prop_map(|bytes| decode(&bytes))
}

/// Random ops for a configuration of your own (see [`with_config`]),
/// starting with a listener: traffic is common, shutdowns and closes rare,
/// time advances by up to six seconds at a time.
pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    vec(any::<u8>(), 0..600).prop_map(|bytes| decode_ops(&bytes))
}

/// Random scenarios under `config`: [`ops`] with it.
pub fn with_config(config: Config) -> impl Strategy<Value = Scenario> {
    ops().prop_map(move |ops| Scenario {
        config: config.clone(),
        ops,
    })
}

/// Keep-alive traffic: a few connections going through whole requests
/// again and again (most ops are whole requests on one of four
/// connections, with pauses of up to 50 ms, sometimes 2 s, between their
/// events, or bursts of streams on a multiplexed one), now and then a stray event, a write stall, a hijack, a stream,
/// a close, a long wait — then maybe one shutdown, hand-off or `close`,
/// and a little more traffic. Keep-alive is on; the rest of the configuration
/// is as random as in [`scenarios`]. Where [`scenarios`] reaches every
/// corner of the machine, this reaches long runs of requests on the same
/// connections: what [`Harness::check_leased`](crate::model::Harness::check_leased)
/// needs to exercise leases.
pub fn keep_alive_traffic() -> impl Strategy<Value = Scenario> {
    use lameduck_core::HookStage;
    let conn = 0u8..4;
    let pause = || prop_oneof![3 => 0u16..50, 1 => 0u16..2_000].prop_map(Op::Advance);
    // A whole request on one connection, with pauses between its events;
    // sometimes its head and body are reported apart, sometimes as one.
    let request =
        (conn.clone(), pause(), pause(), pause(), any::<bool>()).prop_map(|(c, a, b, d, apart)| {
            let mut ops = vec![Op::RequestStarted(c), a];
            if apart {
                ops.extend([Op::HeadersComplete(c), b]);
            }
            ops.extend([Op::BodyComplete(c), d, Op::ResponseDone(c)]);
            ops
        });
    // A multiplexed connection's burst: streams opening, then closing.
    let burst = (conn.clone(), 1usize..4, pause(), pause()).prop_map(|(c, n, a, b)| {
        let mut ops = vec![Op::StreamOpened(c); n];
        ops.push(a);
        ops.extend(std::iter::repeat_n(Op::StreamClosed(c), n - 1));
        ops.push(b);
        ops.push(Op::StreamClosed(c));
        ops
    });
    let single = prop_oneof![
        3 => conn.clone().prop_map(Op::RequestStarted),
        2 => conn.clone().prop_map(Op::HeadersComplete),
        2 => conn.clone().prop_map(Op::BodyComplete),
        3 => conn.clone().prop_map(Op::ResponseDone),
        1 => conn.clone().prop_map(Op::ResponseDoneKeptAlive),
        1 => conn.clone().prop_map(Op::WriteBlocked),
        1 => conn.clone().prop_map(Op::WriteUnblocked),
        1 => conn.clone().prop_map(Op::Hijack),
        1 => conn.clone().prop_map(Op::StreamOpened),
        1 => conn.clone().prop_map(Op::StreamClosed),
        1 => conn.prop_map(Op::Closed),
        2 => (0u16..3_000).prop_map(Op::Advance),
        1 => (0u16..3_000).prop_map(Op::Jump),
    ];
    let unit = prop_oneof![
        8 => request,
        2 => burst,
        1 => Just(vec![Op::Accept(0)]),
        3 => single.prop_map(|op| vec![op]),
    ];
    // One phase change at most, late: the traffic before it is the point.
    let end = prop_oneof![
        Just(None),
        proptest::option::of(0u16..6_000).prop_map(|d| Some(Op::Shutdown(d))),
        (0u16..2_000, proptest::option::of(0u16..6_000)).prop_map(|(l, d)| Some(Op::HandOff(l, d))),
        Just(Some(Op::Close)),
    ];
    let after = vec(unit.clone(), 0..6);
    (vec(any::<u8>(), 8), vec(unit, 0..60), end, after).prop_map(|(head, units, end, after)| {
        let mut config = decode(&head).config;
        config.keep_alives = true;
        let mut ops = vec![Op::AddListener, Op::Accept(0), Op::Accept(0)];
        ops.extend(units.into_iter().flatten());
        ops.extend(end);
        ops.push(Op::HooksFinished(HookStage::LameDuck));
        ops.push(Op::HooksFinished(HookStage::Drain));
        ops.extend(after.into_iter().flatten());
        Scenario { config, ops }
    })
}
