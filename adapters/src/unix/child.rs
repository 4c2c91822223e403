//! Watching a child: its exit is reported, it is always reaped (never a
//! zombie), and signalling it can never hit a recycled pid.
//!
//! Two ways to reap:
//! - [`ChildWatch::start`]: a thread of its own waits for that one pid.
//!   For a process that may have other children of its own (a server
//!   restarting itself): nothing else is waited for.
//! - [`ChildWatch::spawn_reaped`]: one process-wide reaper thread waits for
//!   **every** child (`waitpid(-1)`), the watched ones and any other —
//!   orphans re-parented to this process when it is PID 1 (a container's
//!   init, a new pid namespace) included. For the
//!   [`Supervisor`](super::Supervisor), which owns every child of its
//!   process.
//!
//! A child started in a process group of its own ([`Group::Own`]: a
//! restart's successor, a supervisor's generation) is killed with its
//! whole group: whatever it started itself (a wrapper script's program, a
//! helper) holds the inherited listening sockets too, and must not outlive
//! a failed attempt. Until [`ChildWatch::keep_group`] (the attempt handed
//! off to it), its group is also killed when it exits on its own — between
//! its exit and its reaping, while its pid still names the group.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use rustix::io::Errno;
use rustix::process::{Pid, WaitId, WaitIdOptions, WaitOptions};

use crate::sync::lock;

type Exit = io::Result<ExitStatus>;

/// Which process group a watched child is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    /// This process's (or any other): only the child itself is killed.
    /// (Every child lameduck starts has its own; the tests use this.)
    #[cfg_attr(not(test), allow(dead_code))]
    Shared,
    /// Its own, which it leads (its pgid is its pid): killing it kills the
    /// group.
    Own,
}

/// A started child, watched until it exits.
pub(crate) struct ChildWatch {
    pid: u32,
    group: Group,
    by: ReapedBy,
    exited: async_channel::Receiver<Exit>,
}

enum ReapedBy {
    /// A thread of its own.
    Thread(Arc<Mutex<Slot>>),
    /// The process-wide reaper.
    Reaper(&'static Reaper),
}

struct Slot {
    child: Child,
    /// Set once reaped: from then on the pid may name another process.
    reaped: bool,
    /// Its group is killed when it exits (see the module docs).
    sweep: bool,
}

impl ChildWatch {
    /// Starts watching `child` (in `group`) on a thread of its own. If no
    /// thread can be started, the child is killed and reaped here, and that
    /// is the error.
    pub(crate) fn start(child: Child, group: Group) -> io::Result<ChildWatch> {
        let pid = child.id();
        let slot = Arc::new(Mutex::new(Slot {
            child,
            reaped: false,
            sweep: group == Group::Own,
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
                    let mut slot = lock(&watched);
                    if slot.sweep {
                        // Not reaped yet: the pid still names its group.
                        kill_group(pid);
                    }
                    let status = slot.child.wait();
                    slot.reaped = true;
                    status
                };
                // Nobody listening any more (a successor handed off to) is fine.
                let _ = tx.try_send(status);
            });
        if let Err(e) = started {
            let mut slot = lock(&slot);
            if group == Group::Own {
                kill_group(pid);
            }
            let _ = slot.child.kill();
            let _ = slot.child.wait();
            slot.reaped = true;
            return Err(e);
        }
        Ok(ChildWatch {
            pid,
            group,
            by: ReapedBy::Thread(slot),
            exited,
        })
    }

    /// Starts a child (in `group`) with `spawn` and watches it through the
    /// process-wide reaper, which from then on reaps every child of this
    /// process (see the module docs). The spawn runs under the reaper's
    /// lock, so the child is known before its exit can be seen.
    pub(crate) fn spawn_reaped(
        spawn: impl FnOnce() -> io::Result<Child>,
        group: Group,
    ) -> io::Result<ChildWatch> {
        let reaper = Reaper::get()?;
        let mut registry = lock(&reaper.registry);
        let child = spawn()?;
        let pid = child.id();
        // Dropping a `Child` neither waits nor kills; the reaper waits.
        drop(child);
        let (tx, exited) = async_channel::bounded(1);
        registry.watched.insert(
            pid,
            Watched {
                tx,
                sweep: group == Group::Own,
            },
        );
        reaper.spawned.notify_all();
        Ok(ChildWatch {
            pid,
            group,
            by: ReapedBy::Reaper(reaper),
            exited,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills it (`SIGKILL`) unless it was already reaped — with its whole
    /// process group if it leads one of its own ([`Group::Own`]); says
    /// whether the signal was sent.
    pub(crate) fn kill(&self) -> bool {
        let signal = rustix::process::Signal::KILL;
        match self.group {
            Group::Own => self.unreaped(|pid| rustix::process::kill_process_group(pid, signal)),
            Group::Shared => self.signal(signal),
        }
    }

    /// Sends `signal` to it alone (not its group) unless it was already
    /// reaped; says whether it was sent.
    pub(crate) fn signal(&self, signal: rustix::process::Signal) -> bool {
        self.unreaped(|pid| rustix::process::kill_process(pid, signal))
    }

    /// Runs `send` with its pid unless it was already reaped (holding the
    /// lock that reaping takes, so the pid cannot be recycled meanwhile);
    /// says whether `send` succeeded.
    fn unreaped(&self, send: impl FnOnce(Pid) -> rustix::io::Result<()>) -> bool {
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else {
            return false;
        };
        match &self.by {
            ReapedBy::Thread(slot) => {
                let slot = lock(slot);
                !slot.reaped && send(pid).is_ok()
            }
            ReapedBy::Reaper(reaper) => {
                // Under the reaper's lock: not reaped meanwhile.
                let registry = lock(&reaper.registry);
                registry.watched.contains_key(&self.pid) && send(pid).is_ok()
            }
        }
    }

    /// From now on its group is not killed when it exits (it was handed
    /// off to: what it started is its own business).
    pub(crate) fn keep_group(&self) {
        match &self.by {
            ReapedBy::Thread(slot) => lock(slot).sweep = false,
            ReapedBy::Reaper(reaper) => {
                if let Some(watched) = lock(&reaper.registry).watched.get_mut(&self.pid) {
                    watched.sweep = false;
                }
            }
        }
    }

    /// Resolves once it exited and was reaped.
    pub(crate) async fn exited(&self) -> Exit {
        match self.exited.recv().await {
            Ok(status) => status,
            // The watcher ended without a word: it cannot, short of a panic.
            Err(_) => Err(io::Error::other("the child watcher stopped")),
        }
    }
}

/// Kills the process group `pgid` (`SIGKILL`). Call it only while its
/// leader is not reaped: then the number names that group and no other.
fn kill_group(pgid: u32) {
    if let Some(pgid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        // Fails only if the group is empty already: nothing to do.
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}

/// Whether the child `pid` has exited and is not reaped yet (without
/// reaping it).
fn exited_unreaped(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    matches!(
        rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG,
        ),
        Ok(Some(_))
    )
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

/// Called for every child the reaper reaps that nobody watched (an orphan
/// re-parented to this process), with its pid and status.
pub(crate) type OrphanObserver = Arc<dyn Fn(u32, ExitStatus) + Send + Sync>;

/// The process-wide reaper: one thread that reaps every child.
struct Reaper {
    registry: Mutex<Registry>,
    /// Notified when a child is registered (the thread sleeps on it while
    /// this process has no child at all).
    spawned: Condvar,
}

struct Registry {
    /// Watched children not reaped yet.
    watched: HashMap<u32, Watched>,
    on_orphan: Option<OrphanObserver>,
}

/// A watched child of the reaper's.
struct Watched {
    /// Where its exit goes.
    tx: async_channel::Sender<Exit>,
    /// Its group is killed when it exits (see the module docs).
    sweep: bool,
}

/// The reaper, once started (`None`: its thread could not be started).
static REAPER: OnceLock<Option<&'static Reaper>> = OnceLock::new();

/// Observes the children the reaper reaps that nobody watched (replacing
/// the previous observer). Starts the reaper if it is not running yet.
pub(crate) fn on_orphan_reaped(observer: OrphanObserver) -> io::Result<()> {
    let reaper = Reaper::get()?;
    lock(&reaper.registry).on_orphan = Some(observer);
    Ok(())
}

impl Reaper {
    /// The reaper, started on first use (once per process: two would
    /// compete for the same children).
    fn get() -> io::Result<&'static Reaper> {
        let reaper = REAPER.get_or_init(|| {
            // Lives as long as the process, like its thread.
            let reaper: &'static Reaper = Box::leak(Box::new(Reaper {
                registry: Mutex::new(Registry {
                    watched: HashMap::new(),
                    on_orphan: None,
                }),
                spawned: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("lameduck-reaper".into())
                .spawn(move || reaper.run())
                .ok()
                .map(|_| reaper)
        });
        reaper.ok_or_else(|| io::Error::other("the reaper thread could not be started"))
    }

    /// Reaps every child as it exits, forever.
    fn run(&self) {
        // One wait per pass: for any child to have exited (not reaping it,
        // and not holding the lock, so spawns go on meanwhile); then every
        // exited child is reaped under the lock.
        loop {
            match rustix::process::waitid(
                WaitId::All,
                WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
            ) {
                Ok(_) => self.reap_exited(),
                Err(Errno::INTR) => {}
                Err(Errno::CHILD) => self.wait_for_a_child(),
                // Not expected (waitid's other errors are for bad
                // arguments): reap what can be reaped, and sleep while
                // there is no child.
                Err(_) => {
                    self.reap_exited();
                    self.wait_for_a_child();
                }
            }
        }
    }

    /// Reaps every child that has exited, under the lock: no spawn (and no
    /// `Command::spawn` reaping a child whose `exec` failed) runs meanwhile,
    /// and no signal is sent to a watched child once it is reaped.
    fn reap_exited(&self) {
        let mut orphans = Vec::new();
        let mut registry = lock(&self.registry);
        // First the groups of watched children that exited and lead a group
        // that goes with them: killed before the reaping below, while their
        // pids still name their groups. (A few children at most.)
        for (pid, watched) in &mut registry.watched {
            if watched.sweep && exited_unreaped(*pid) {
                kill_group(*pid);
                watched.sweep = false;
            }
        }
        // One child per pass; ends when none has exited (or none is left).
        // `wait` is waitpid(-1): any child, whatever its process group
        // (rustix's `waitpid(None, …)` is waitpid(0): this group's only).
        loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    let pid = pid.as_raw_nonzero().get().unsigned_abs();
                    let status = ExitStatus::from_raw(status.as_raw());
                    match registry.watched.remove(&pid) {
                        Some(watched) => {
                            if watched.sweep {
                                // It exited after the look above, and is
                                // reaped already. While a member is left,
                                // the group keeps its number (Linux does
                                // not reuse it): this reaches that group;
                                // an empty group is not signalled, short
                                // of the number's reuse by a new group
                                // leader within this instant.
                                kill_group(pid);
                            }
                            // Nobody listening any more is fine.
                            drop(watched.tx.try_send(Ok(status)));
                        }
                        None => orphans.push((pid, status)),
                    }
                }
                Ok(None) => break,
                Err(Errno::INTR) => {}
                // No child left: any still registered was reaped by
                // someone else (code in this process that should not
                // have): its status is lost.
                Err(Errno::CHILD) => {
                    registry.lost_all();
                    break;
                }
                Err(_) => break,
            }
        }
        // Told without the lock held: the observer may take its time.
        let observer = registry.on_orphan.clone();
        drop(registry);
        if let Some(observer) = observer {
            for (pid, status) in orphans {
                observer(pid, status);
            }
        }
    }

    /// This process had no child a moment ago: sleeps until one is
    /// registered.
    fn wait_for_a_child(&self) {
        let mut registry = lock(&self.registry);
        // Checked again under the lock (a spawn may have come in between):
        // with the lock held no child is being started.
        let none = matches!(
            rustix::process::waitid(
                WaitId::All,
                WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG,
            ),
            Err(Errno::CHILD)
        );
        if !none {
            return;
        }
        // A watched child that is no child of ours any more was reaped by
        // someone else; said so, it is forgotten.
        registry.lost_all();
        // Each pass wakes on a registration (or spuriously) and re-checks.
        while registry.watched.is_empty() {
            registry = self
                .spawned
                .wait(registry)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Registry {
    fn lost_all(&mut self) {
        for (pid, watched) in self.watched.drain() {
            let _ = watched.tx.try_send(Err(io::Error::other(format!(
                "child {pid} was reaped by someone else: its exit status is lost"
            ))));
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
        let watch = ChildWatch::start(child, Group::Shared).unwrap();
        let status = smol::block_on(watch.exited()).unwrap();
        assert_eq!(status.code(), Some(3));
        watch.kill(); // after the reap: does nothing
    }

    #[test]
    fn kill_then_reaped() {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let watch = ChildWatch::start(child, Group::Shared).unwrap();
        watch.kill();
        let status = smol::block_on(watch.exited()).unwrap();
        assert!(!status.success());
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", watch.pid()));
        assert!(stat.is_err(), "reaped: no /proc entry left");
    }

    /// A shell in a group of its own that starts `sleep` in the background,
    /// prints its pid, then runs `then`; the watch, the sleep's pid and
    /// the shell's stdin.
    fn wrapper(then: &str, reaper: bool) -> (ChildWatch, u32, std::process::ChildStdin) {
        use std::os::unix::process::CommandExt;
        let (mut stdout, mut stdin) = (None, None);
        let mut spawn = || {
            let mut child = Command::new("sh")
                .args([
                    "-c",
                    &format!("sleep 600 </dev/null >/dev/null & echo $!; {then}"),
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .process_group(0)
                .spawn()?;
            stdout = child.stdout.take();
            stdin = child.stdin.take();
            Ok(child)
        };
        let watch = if reaper {
            ChildWatch::spawn_reaped(spawn, Group::Own).unwrap()
        } else {
            let child = spawn().unwrap();
            ChildWatch::start(child, Group::Own).unwrap()
        };
        let mut line = String::new();
        io::BufRead::read_line(&mut io::BufReader::new(stdout.unwrap()), &mut line).unwrap();
        (watch, line.trim().parse().unwrap(), stdin.unwrap())
    }

    /// Whether `pid` is gone or a zombie, within 20 s.
    fn gone(pid: u32) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // One look per pass; bounded by the deadline.
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.chars().next()));
            if matches!(state, None | Some(Some('Z' | 'X'))) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn kill_pid(pid: u32) {
        let _ = rustix::process::kill_process(
            Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }

    #[test]
    fn an_own_group_is_killed_with_its_leader() {
        let (watch, sleeper, _stdin) = wrapper("wait", false);
        assert!(watch.kill());
        assert!(!smol::block_on(watch.exited()).unwrap().success());
        assert!(gone(sleeper), "the leader's child was killed too");
    }

    #[test]
    fn an_own_group_goes_when_its_leader_exits_unless_kept() {
        let (watch, sleeper, _stdin) = wrapper("exit 4", false);
        assert_eq!(smol::block_on(watch.exited()).unwrap().code(), Some(4));
        assert!(gone(sleeper), "swept at the leader's exit");
        assert!(!watch.kill(), "reaped: nothing sent");

        // The shell exits once its stdin ends: after `keep_group`.
        let (watch, sleeper, stdin) = wrapper("read _; exit 5", false);
        watch.keep_group();
        drop(stdin);
        assert_eq!(smol::block_on(watch.exited()).unwrap().code(), Some(5));
        let kept = !gone_now(sleeper);
        kill_pid(sleeper);
        assert!(kept, "kept: the leader's child outlives it");
    }

    /// Whether `pid` is gone or a zombie, now.
    fn gone_now(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
            .is_none_or(|c| c == 'Z' || c == 'X')
    }

    /// The process-wide reaper reaps every child of its process, so it is
    /// tested in a process of its own: this test runs itself again, alone,
    /// with `REAPER_TEST` set.
    const REAPER_TEST: &str = "LAMEDUCK_REAPER_TEST";

    #[test]
    fn the_reaper_reaps_watched_children_and_orphans() {
        if std::env::var_os(REAPER_TEST).is_some() {
            return reaper_in_this_process();
        }
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "unix::child::tests::the_reaper_reaps_watched_children_and_orphans",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(REAPER_TEST, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    fn reaper_in_this_process() {
        use std::time::Duration;
        // Orphans of our children come to this process (as to a PID 1):
        // prctl(PR_SET_CHILD_SUBREAPER), any non-zero value sets it.
        rustix::process::set_child_subreaper(Some(rustix::process::getpid())).unwrap();
        let (orphan_tx, orphans) = std::sync::mpsc::channel();
        let orphan_tx = Mutex::new(orphan_tx);
        on_orphan_reaped(Arc::new(move |pid, status| {
            let _ = lock(&orphan_tx).send((pid, status));
        }))
        .unwrap();

        let exits = ChildWatch::spawn_reaped(
            || Command::new("sh").args(["-c", "exit 3"]).spawn(),
            Group::Shared,
        )
        .unwrap();
        assert_eq!(smol::block_on(exits.exited()).unwrap().code(), Some(3));
        assert!(
            !exits.signal(rustix::process::Signal::TERM),
            "reaped: not sent"
        );

        let sleeps =
            ChildWatch::spawn_reaped(|| Command::new("sleep").arg("600").spawn(), Group::Shared)
                .unwrap();
        assert!(sleeps.signal(rustix::process::Signal::TERM));
        let status = smol::block_on(sleeps.exited()).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));

        // A program that cannot be executed: `Command::spawn` reaps it
        // itself, under the reaper's lock, so nothing competes.
        for _ in 0..20 {
            let e =
                ChildWatch::spawn_reaped(|| Command::new("/nonexistent/x").spawn(), Group::Shared);
            assert!(e.is_err());
        }

        // Many at once, each status to its own watcher.
        let watches: Vec<_> = (0..40)
            .map(|i| {
                ChildWatch::spawn_reaped(
                    || {
                        Command::new("sh")
                            .args(["-c", &format!("exit {}", i % 7)])
                            .spawn()
                    },
                    Group::Shared,
                )
                .unwrap()
            })
            .collect();
        for (i, watch) in watches.iter().enumerate() {
            let status = smol::block_on(watch.exited()).unwrap();
            assert_eq!(status.code(), Some(i as i32 % 7));
        }

        // An orphan: the shell's background child outlives it and is
        // re-parented here; the reaper reaps it and says so.
        let mut stdout = None;
        let parent = ChildWatch::spawn_reaped(
            || {
                let mut child = Command::new("sh")
                    .args(["-c", "sleep 0.2 >/dev/null & echo $!; exit 0"])
                    .stdout(std::process::Stdio::piped())
                    .spawn()?;
                stdout = child.stdout.take();
                Ok(child)
            },
            Group::Shared,
        )
        .unwrap();
        let mut out = String::new();
        io::Read::read_to_string(&mut stdout.unwrap(), &mut out).unwrap();
        let orphan: u32 = out.trim().parse().unwrap();
        assert!(smol::block_on(parent.exited()).unwrap().success());
        let (pid, status) = orphans.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(pid, orphan);
        assert!(status.success());
        let stat = std::fs::read_to_string(format!("/proc/{orphan}/stat"));
        assert!(stat.is_err(), "the orphan was reaped: {stat:?}");

        // A group of its own goes with its leader: killed, or at its exit
        // (before the reaper reaps the leader).
        let (watch, sleeper, _stdin) = wrapper("wait", true);
        assert!(watch.kill());
        assert!(!smol::block_on(watch.exited()).unwrap().success());
        assert!(gone(sleeper), "killed with its leader");
        let (watch, sleeper, _stdin) = wrapper("exit 4", true);
        assert_eq!(smol::block_on(watch.exited()).unwrap().code(), Some(4));
        assert!(gone(sleeper), "swept at its leader's exit");
    }
}
