//! The bodies of the fuzz targets, as plain functions: `fuzz/` calls them
//! under libFuzzer, and `tests/tests/fuzz_corpus.rs` replays the saved corpus
//! through them on stable Rust. Each panics on a broken invariant.

use std::time::{Duration, Instant};

use lameduck_core::activation::{FIRST_FD, ListenEnv};
use lameduck_core::restart::{Restart, RestartAction, RestartConfig, RestartPhase};

use crate::model::Harness;

/// Target `core_ops`: random op sequences against the lifecycle core and the
/// reference model (the same decoder as the property tests).
pub fn core_ops(data: &[u8]) {
    let _observed = Harness::run_bytes(data);
}

/// Target `activation_env`: arbitrary `LISTEN_*` values never panic, and
/// whatever parses is consistent and round-trips.
pub fn activation_env(data: &[u8]) {
    // Fields separated by 0xFF: pid, fds, names, own pid (decimal digits).
    let mut parts = data
        .split(|b| *b == 0xFF)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let field = |p: Option<String>| p.filter(|s| s != "-");
    let env = ListenEnv {
        pid: field(parts.next()),
        fds: field(parts.next()),
        fdnames: field(parts.next()),
    };
    let own_pid = parts
        .next()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    let Ok(Some(fds)) = env.parse(own_pid) else {
        return;
    };
    let n: usize = env
        .fds
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("parsed, so LISTEN_FDS is a count");
    assert_eq!(fds.len(), n);
    for (i, fd) in fds.iter().enumerate() {
        assert_eq!(
            fd.fd,
            FIRST_FD + i as i32,
            "descriptors are consecutive from 3"
        );
    }
    let names: Vec<&str> = fds.iter().map(|f| f.name.as_str()).collect();
    let again = ListenEnv::for_successor(own_pid, &names).expect("parsed names are valid names");
    assert_eq!(again.parse(own_pid).expect("round trip"), Some(fds.clone()));
}

/// Target `restart_events`: random reports to the restart machine. Checks: at
/// most one successor in flight; every started successor that was not handed
/// off is killed or seen to exit; every spawn ends in exactly one hand-off or
/// failure; the deadline is never in the past.
pub fn restart_events(data: &[u8]) {
    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    let t0 = Instant::now();
    let mut now = t0;
    let mut r = Restart::new(
        RestartConfig {
            ready_timeout: Duration::from_millis(500),
        },
        t0,
    );
    let mut next_pid = 100u32;
    // Spawns asked for and not yet ended by a hand-off or a failure.
    let mut open_spawns = 0u32;
    // Children started and neither exited nor handed off.
    let mut alive: Vec<u32> = Vec::new();
    let mut killed: Vec<u32> = Vec::new();
    let mut handed_off = false;
    for chunk in data.chunks(2) {
        let (op, arg) = (chunk[0], chunk.get(1).copied().unwrap_or(0));
        // The pid an op refers to: a live child, or a made-up one.
        let pick = |alive: &[u32]| {
            alive
                .get(usize::from(arg) % (alive.len() + 1))
                .copied()
                .unwrap_or(9_999)
        };
        match op % 8 {
            0 | 1 => {
                let _ = r.request(now);
            }
            2 => {
                next_pid += 1;
                if r.spawned(next_pid, now).is_ok() {
                    alive.push(next_pid);
                }
            }
            3 => {
                let _ = r.spawn_failed(now);
            }
            4 => {
                let _ = r.child_ready(pick(&alive), now);
            }
            5 => {
                let pid = pick(&alive);
                if r.child_exited(pid, now).is_ok() {
                    alive.retain(|p| *p != pid);
                    killed.retain(|p| *p != pid);
                }
            }
            6 => r.stopping(now),
            _ => {
                now += Duration::from_millis(u64::from(arg) * 4);
                r.handle_timeout(now);
            }
        }
        while let Some(action) = r.poll_action() {
            match action {
                RestartAction::Spawn { .. } => {
                    open_spawns += 1;
                    assert_eq!(open_spawns, 1, "two restarts in flight");
                    assert!(
                        alive.is_empty(),
                        "a spawn while a successor lives: {alive:?}"
                    );
                }
                RestartAction::Failed(_) => {
                    assert_eq!(open_spawns, 1, "a failure with no restart in flight");
                    open_spawns -= 1;
                }
                RestartAction::HandOff { child } => {
                    assert_eq!(open_spawns, 1, "a hand-off with no restart in flight");
                    open_spawns -= 1;
                    assert!(alive.contains(&child) && !killed.contains(&child));
                    handed_off = true;
                }
                RestartAction::Kill { child } => {
                    assert!(alive.contains(&child), "kill of a process not started");
                    killed.push(child);
                }
            }
        }
        if let Some(t) = r.poll_timeout() {
            assert!(t > now, "deadline in the past");
        }
        if handed_off {
            assert_eq!(r.phase(), RestartPhase::HandedOff);
        }
    }
    // Every successor not handed off was killed (or is still starting).
    let starting = if r.phase() == RestartPhase::Spawning {
        r.child()
    } else {
        None
    };
    for pid in &alive {
        let ours = r.phase() == RestartPhase::HandedOff && r.child() == Some(*pid);
        assert!(
            ours || killed.contains(pid) || starting == Some(*pid),
            "pid {pid} left running"
        );
    }
}
