//! Events — a server's and its lifecycle's — reach the `log` facade
//! (target `lameduck`) at their documented levels, with no observer
//! registered.

use std::sync::Mutex;
use std::time::Duration;

use lameduck::Config;
use lameduck::unix::{Lifecycle, RestartError, SignalConfig};
use lameduck_testkit::harness::{Binding, EVENTUALLY, SmolRt};

/// Collects every record of target `lameduck`.
struct Capture(Mutex<Vec<(log::Level, String)>>);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "lameduck"
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = record.args().to_string();
            self.0.lock().unwrap().push((record.level(), line));
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn lifecycle_events_are_logged() {
    log::set_logger(&CAPTURE).expect("the only logger in this test binary");
    log::set_max_level(log::LevelFilter::Debug);
    let handle = lameduck::Builder::new()
        .config(Config {
            lame_duck: Duration::from_millis(50),
            ..Config::default()
        })
        .bind("127.0.0.1:0")
        .unwrap()
        .serve_stream(|conn| async move { drop(conn) })
        .unwrap();
    handle.shutdown_within(EVENTUALLY);
    let outcome = SmolRt::block_on(handle.drained().wait()).unwrap();
    assert!(outcome.is_graceful());
    // A lifecycle's event, unobserved: a restart refused once stopped.
    let lifecycle = Lifecycle::builder(handle)
        .signals(SignalConfig::none())
        .notify(false)
        .build();
    let refused = SmolRt::block_on(lifecycle.restart());
    assert_eq!(refused, Err(RestartError::Stopping));
    let records = CAPTURE.0.lock().unwrap().clone();
    let want = [
        (log::Level::Info, "phase: lame duck"),
        (log::Level::Info, "phase: draining"),
        (log::Level::Info, "phase: closed"),
        (log::Level::Warn, "restart refused: the server is stopping"),
    ];
    for (level, line) in want {
        assert!(
            records.iter().any(|(l, r)| *l == level && r == line),
            "{line} at {level}: {records:?}"
        );
    }
    assert!(
        records
            .iter()
            .any(|(l, r)| *l == log::Level::Info && r.starts_with("done: drained")),
        "{records:?}"
    );
}
