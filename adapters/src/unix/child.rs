//! Watching a successor: its exit is reported, it is always reaped (never
//! a zombie), and killing it can never hit a recycled pid.

use std::io;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::io::Errno;
use rustix::process::{Pid, WaitId, WaitIdOptions};

/// A started child, watched by a thread of its own until it exits.
pub(crate) struct ChildWatch {
    pid: u32,
    slot: Arc<Mutex<Slot>>,
    exited: async_channel::Receiver<io::Result<ExitStatus>>,
}

struct Slot {
    child: Child,
    /// Set once reaped: from then on the pid may name another process.
    reaped: bool,
}

impl ChildWatch {
    /// Starts watching `child`. If no thread can be started, the child is
    /// killed and reaped here, and that is the error.
    pub(crate) fn start(child: Child) -> io::Result<ChildWatch> {
        let pid = child.id();
        let slot = Arc::new(Mutex::new(Slot {
            child,
            reaped: false,
        }));
        let (tx, exited) = async_channel::bounded(1);
        let watched = slot.clone();
        let started = std::thread::Builder::new()
            .name(format!("lameduck-reap-{pid}"))
            .spawn(move || {
                // Wait for the exit without reaping: until the reap below,
                // the pid cannot be reused, so a kill meanwhile is safe.
                wait_exit_keep_zombie(pid);
                let status = {
                    let mut slot = watched.lock().unwrap_or_else(PoisonError::into_inner);
                    let status = slot.child.wait();
                    slot.reaped = true;
                    status
                };
                // Nobody listening any more (a successor handed off to) is fine.
                let _ = tx.try_send(status);
            });
        if let Err(e) = started {
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = slot.child.kill();
            let _ = slot.child.wait();
            slot.reaped = true;
            return Err(e);
        }
        Ok(ChildWatch { pid, slot, exited })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills it (`SIGKILL`) unless it was already reaped.
    pub(crate) fn kill(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.reaped {
            let _ = slot.child.kill();
        }
    }

    /// Resolves once it exited and was reaped.
    pub(crate) async fn exited(&self) -> io::Result<ExitStatus> {
        match self.exited.recv().await {
            Ok(status) => status,
            // The watcher ended without a word: it cannot, short of a panic.
            Err(_) => Err(io::Error::other("the child watcher stopped")),
        }
    }
}

/// Blocks until `pid` has exited, leaving it to be reaped.
fn wait_exit_keep_zombie(pid: u32) {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    // Each pass returns on the exit, or is interrupted by a signal and
    // waits again; any other error (none is expected for our own child)
    // falls through to the reaping wait, which then blocks instead.
    loop {
        match rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(Errno::INTR) => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn reports_the_exit_and_reaps() {
        let child = Command::new("sh").arg("-c").arg("exit 3").spawn().unwrap();
        let watch = ChildWatch::start(child).unwrap();
        let status = smol::block_on(watch.exited()).unwrap();
        assert_eq!(status.code(), Some(3));
        watch.kill(); // after the reap: does nothing
    }

    #[test]
    fn kill_then_reaped() {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let watch = ChildWatch::start(child).unwrap();
        watch.kill();
        let status = smol::block_on(watch.exited()).unwrap();
        assert!(!status.success());
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", watch.pid()));
        assert!(stat.is_err(), "reaped: no /proc entry left");
    }
}
