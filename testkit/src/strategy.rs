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
