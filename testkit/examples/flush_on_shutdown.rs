//! Property-testing your own lifecycle code against lameduck's reference
//! model: an access log whose shutdown hook must leave nothing unwritten.
//!
//! The application buffers one line per completed response and writes the
//! buffer out in its drain hook (`Builder::on_shutdown`, which lameduck awaits
//! with `Config::shutdown_hooks`). The property: **once the drain completes,
//! every line is written**. The test drives lameduck's core through random
//! scenarios ([`strategy::with_config`]), checked against the model at every
//! step ([`Harness`]), and plays the application's part — a line when a
//! response completes, the hook when the core says to run it — in virtual
//! time: no sockets, no sleeps, thousands of scenarios a second.
//!
//! The first version (flush in the hook, and that is all) loses the lines of
//! requests still in flight when the drain begins: they complete after the
//! hook ran. The test below shows proptest finding that, shrunk to a handful
//! of ops; the second version (flush in the hook, then write through) passes.
//!
//! ```text
//! cargo test -p lameduck-testkit --example flush_on_shutdown
//! ```

use lameduck_core::{Action, Completion, Config, HookStage};
use lameduck_testkit::model::{Harness, Op, Scenario};

/// The application: an access log buffered in memory.
#[derive(Debug, Default)]
struct AccessLog {
    /// Write through once the drain began (the fix), or keep buffering.
    write_through_when_draining: bool,
    draining: bool,
    buffered: Vec<String>,
    written: Vec<String>,
}

impl AccessLog {
    /// A response completed: its line.
    fn response_done(&mut self, line: String) {
        self.buffered.push(line);
        if self.draining && self.write_through_when_draining {
            self.flush();
        }
    }

    /// The drain hook.
    fn on_shutdown(&mut self) {
        self.draining = true;
        self.flush();
    }

    fn flush(&mut self) {
        self.written.append(&mut self.buffered);
    }
}

/// Runs `scenario` with the application's part played at each step;
/// `Err` says how the property broke.
fn check(write_through_when_draining: bool, scenario: &Scenario) -> Result<(), String> {
    let mut log = AccessLog {
        write_through_when_draining,
        ..AccessLog::default()
    };
    let mut harness = Harness::new(scenario.config.clone());
    let mut responses = 0;
    for op in &scenario.ops {
        let step = harness
            .step(*op)
            .map_err(|e| format!("core and model: {e}"))?;
        // A response completed: the application logs it.
        if matches!(op, Op::ResponseDone(_) | Op::ResponseDoneKeptAlive(_))
            && step.result == Some(Ok(()))
        {
            responses += 1;
            log.response_done(format!("response {responses}"));
        }
        for action in &step.actions {
            match action {
                Action::RunHooks(HookStage::Drain) => log.on_shutdown(),
                Action::Done(outcome)
                    if outcome.completion == Completion::Drained && !log.buffered.is_empty() =>
                {
                    return Err(format!(
                        "drained with {} of {responses} lines unwritten: {:?}",
                        log.buffered.len(),
                        log.buffered
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The scenarios: lameduck's defaults, with the drain awaiting its hooks.
fn config() -> Config {
    Config {
        shutdown_hooks: true,
        ..Config::default()
    }
}

/// The shrunk counterexample, by hand: a request in flight when the drain
/// begins completes after the hook flushed.
fn in_flight_at_the_drain() -> Scenario {
    Scenario {
        config: config(),
        ops: vec![
            Op::AddListener,
            Op::Accept(0),
            Op::RequestStarted(0),
            Op::Shutdown(None),
            Op::ResponseDone(0),
            Op::HooksFinished(HookStage::Drain),
        ],
    }
}

fn main() {
    let scenario = in_flight_at_the_drain();
    println!("flush in the hook only: {:?}", check(false, &scenario));
    println!("then write through:     {:?}", check(true, &scenario));
}

#[cfg(test)]
mod tests {
    use super::*;
    use lameduck_testkit::strategy;
    use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};

    /// A runner with a fixed seed: the same scenarios on every run.
    fn runner(cases: u32) -> TestRunner {
        TestRunner::new_with_rng(
            RunnerConfig {
                cases,
                failure_persistence: None,
                ..RunnerConfig::default()
            },
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        )
    }

    /// Flushing in the hook alone loses lines; proptest finds a scenario that
    /// shows it and shrinks it.
    #[test]
    fn flushing_only_in_the_hook_loses_lines() {
        let result = runner(2_000).run(&strategy::with_config(config()), |scenario| {
            check(false, &scenario).map_err(proptest::test_runner::TestCaseError::fail)
        });
        let failure = result.expect_err("no scenario lost a line");
        let message = failure.to_string();
        assert!(message.contains("lines unwritten"), "{message}");
        println!("{message}");
    }

    /// Flushing in the hook and writing through afterwards keeps every line.
    #[test]
    fn flushing_in_the_hook_then_writing_through_keeps_every_line() {
        runner(2_000)
            .run(&strategy::with_config(config()), |scenario| {
                check(true, &scenario).map_err(proptest::test_runner::TestCaseError::fail)
            })
            .unwrap();
    }

    /// The scenario proptest shrinks to, written by hand.
    #[test]
    fn a_request_in_flight_at_the_drain_is_the_case() {
        let lost = check(false, &in_flight_at_the_drain()).unwrap_err();
        assert_eq!(
            lost,
            r#"drained with 1 of 1 lines unwritten: ["response 1"]"#
        );
        check(true, &in_flight_at_the_drain()).unwrap();
    }
}
