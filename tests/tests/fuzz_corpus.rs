//! Replays every saved fuzz input (`fuzz/corpus/TARGET/*`) through the fuzz
//! targets' bodies on stable Rust, so CI keeps every input the fuzzer ever
//! found interesting as a regression test; crashes, once fixed, are kept by
//! name in `fuzz/regressions/TARGET/`.

use std::path::PathBuf;

fn replay(target: &str, body: fn(&[u8])) {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let dir = fuzz.join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable corpus directory").path())
        .collect();
    // Crashes once found, kept by name where `cargo fuzz cmin` cannot drop them.
    if let Ok(regressions) = std::fs::read_dir(fuzz.join("regressions").join(target)) {
        files.extend(regressions.map(|entry| entry.expect("readable regressions").path()));
    }
    files.sort();
    assert!(
        !files.is_empty(),
        "no corpus for {target} in {}",
        dir.display()
    );
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let result = std::panic::catch_unwind(|| body(&data));
        assert!(result.is_ok(), "{target}: {} fails", file.display());
    }
}

#[test]
fn core_ops_corpus() {
    replay("core_ops", lameduck_testkit::fuzz::core_ops);
}

#[test]
fn activation_env_corpus() {
    replay("activation_env", lameduck_testkit::fuzz::activation_env);
}

#[test]
fn restart_events_corpus() {
    replay("restart_events", lameduck_testkit::fuzz::restart_events);
}

#[test]
fn http_frontend_corpus() {
    replay("http_frontend", lameduck_testkit::fuzz::http_frontend);
}

#[test]
fn http2_frontend_corpus() {
    replay("http2_frontend", lameduck_testkit::fuzz::http2_frontend);
}

#[test]
fn handover_state_corpus() {
    replay("handover_state", lameduck_testkit::fuzz::handover_state);
}

#[test]
fn supervisor_events_corpus() {
    replay(
        "supervisor_events",
        lameduck_testkit::fuzz::supervisor_events,
    );
}
