//! Carrying out [`Restart`]'s actions for one attempt of a
//! [`Lifecycle`](super::Lifecycle): start the successor with the listeners
//! and a readiness pipe, wait for its readiness, its exit or the deadline,
//! and either hand off or kill, reap and roll back. What differs from one
//! server to the next — a timer, what "hand off" means, how a rollback is
//! reported — is its [`Carrier`]; the policy is the machine's.
//!
//! [`Spawn`] is shared with the [`Supervisor`](super::Supervisor), whose
//! generations start the same way (its decisions are the core's
//! [`supervisor`](lameduck_core::supervisor) machine's).

use std::ffi::OsString;
use std::future::{Future, pending};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_lite::FutureExt;
use lameduck_core::Phase;
use lameduck_core::restart::{Refusal, Restart, RestartAction, RestartConfig, RestartPhase};

use super::child::{ChildWatch, Group};
use super::error::RestartError;
use super::handoff::ready::{Heard, Offer, ReadyReader, ready_channel};
use super::handoff::spawn::spawn;
use super::handoff::{GENERATION_VAR, READY_FD_VAR, SUPERVISOR_FD_VAR};
use crate::sync::{lock, wait_until};

/// The program a restart starts: `executable` (this executable's path as
/// `std::env::current_exe` found it, or as set), or why it is unknown.
pub(crate) fn program(executable: &io::Result<PathBuf>) -> io::Result<PathBuf> {
    match executable {
        Ok(path) => Ok(path.clone()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("this executable's path is unknown: {e}"),
        )),
    }
}

/// What an attempt needs from whoever carries it out.
pub(crate) trait Carrier: Sync {
    /// Completes once `Instant::now() >= at`.
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send;
    /// The new process reported ready: "stop, or hand off?",
    /// decided once. Under the lock that a stop takes too, the carrier
    /// calls `restart_takes(serving)` — `serving`: no stop for exit began
    /// — which feeds the restart machine and says whether it hands off;
    /// only then does the carrier hand off, still under that lock. A stop
    /// that comes later reaches the restart machine as a phase, after that
    /// lock (see [`Attempts::server_phase`]), so it finds the hand-off
    /// recorded. Returns whether it handed off.
    fn decide_hand_off(&self, restart_takes: impl FnOnce(bool) -> bool) -> bool;
    /// `child` took over ([`decide_hand_off`](Self::decide_hand_off) said
    /// yes): announce it.
    fn handed_off(&self, child: u32) -> impl Future<Output = ()> + Send;
    /// The attempt is over without a hand-off, its process (if any)
    /// reaped: report it. `None`: called off because the server is
    /// stopping.
    fn rolled_back(&self, failure: Option<RestartError>) -> RestartError;
}

/// A started process, its hand-off channel and the state to send on it.
pub(crate) struct Launched {
    pub(crate) watch: Arc<ChildWatch>,
    pub(crate) reader: ReadyReader,
    pub(crate) offer: Offer,
}

/// A process to start ([`Spawn::launch`]): a restart's successor or a
/// supervisor's generation, with the listeners and a new hand-off channel.
pub(crate) struct Spawn<'a> {
    /// The executable.
    pub(crate) program: &'a Path,
    /// Its arguments.
    pub(crate) args: &'a [OsString],
    /// The listening sockets, named, for descriptors 3, 4, ….
    pub(crate) listeners: &'a [(BorrowedFd<'a>, &'a str)],
    /// Which restart mode it serves in.
    pub(crate) mode: Mode<'a>,
    /// Its generation number (`LAMEDUCK_GENERATION`).
    pub(crate) generation: u64,
    /// The restart state, sent on its hand-off channel once the attempt
    /// runs.
    pub(crate) offer: Offer,
}

/// What differs between a restart's successor and a supervisor's
/// generation.
#[derive(Clone, Copy)]
pub(crate) enum Mode<'a> {
    /// A direct restart's successor: it takes over the socket files of the
    /// listeners at these indices (`LAMEDUCK_OWNED_FDS`) and becomes
    /// systemd's main process; watched by a thread of its own (this
    /// process may have other children).
    Direct { owned_files: &'a [usize] },
    /// A supervisor's generation: it gets the read end of its link
    /// (`LAMEDUCK_SUPERVISOR_FD`, after the hand-off channel); reaped by
    /// the process-wide reaper (the supervisor owns every child).
    Supervised { link: BorrowedFd<'a> },
}

impl Spawn<'_> {
    /// Starts the process with the listeners at descriptors 3, 4, …, one
    /// end of a new hand-off channel after them (`LAMEDUCK_READY_FD`), and
    /// what its [`Mode`] adds.
    ///
    /// The process leads a process group of its own, so that a failed
    /// attempt kills everything it started (see
    /// [`spawn`](super::handoff::spawn#process-groups)).
    pub(crate) fn launch(self) -> io::Result<Launched> {
        let Spawn {
            program,
            args,
            listeners,
            mode,
            generation,
            offer,
        } = self;
        if listeners.is_empty() {
            return Err(io::Error::other("no open listener to hand over"));
        }
        let (reader, writer) = ready_channel()?;
        let mut command = Command::new(program);
        command.args(args);
        command.env(GENERATION_VAR, generation.to_string());
        // setpgid(0, 0) in the child before exec (std does it before the
        // pre-exec code of `spawn`; async-signal-safe). `Command::spawn`
        // returns once the child has executed (or failed to), so the group
        // exists before anyone may signal it.
        command.process_group(0);
        let mut extra = vec![(writer.as_fd(), READY_FD_VAR)];
        let owned_files = match mode {
            Mode::Direct { owned_files } => {
                // A direct restart's successor becomes systemd's main
                // process.
                super::notify::watchdog_for_successor(&mut command);
                owned_files
            }
            Mode::Supervised { link } => {
                extra.push((link, SUPERVISOR_FD_VAR));
                &[]
            }
        };
        let start = || {
            spawn(command, listeners, &extra, owned_files)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", program.display())))
        };
        let watch = match mode {
            Mode::Direct { .. } => ChildWatch::start(start()?, Group::Own)?,
            Mode::Supervised { .. } => ChildWatch::spawn_reaped(start, Group::Own)?,
        };
        // Only the new process holds the write end now: its exit is an end
        // of file here.
        drop(writer);
        Ok(Launched {
            watch: Arc::new(watch),
            reader,
            offer,
        })
    }
}

struct Machine {
    restart: Restart,
    /// The process being started (or killed), until it is handed off to
    /// or reaped.
    child: Option<Arc<ChildWatch>>,
    /// An attempt was begun and has not yet reported its end (its process
    /// may not even be started yet).
    in_flight: bool,
}

/// The restart machine and the attempt in flight.
pub(crate) struct Attempts {
    machine: Mutex<Machine>,
    /// Notified when an attempt is over (its child handed off or reaped).
    over: event_listener::Event,
}

impl Attempts {
    pub(crate) fn new(config: RestartConfig) -> Attempts {
        Attempts {
            machine: Mutex::new(Machine {
                restart: Restart::new(config, Instant::now()),
                child: None,
                in_flight: false,
            }),
            over: event_listener::Event::new(),
        }
    }

    pub(crate) fn phase(&self) -> RestartPhase {
        lock(&self.machine).restart.phase()
    }

    /// Restarts this machine has started.
    pub(crate) fn attempted(&self) -> u64 {
        lock(&self.machine).restart.attempts()
    }

    /// Asks for a restart: the attempt's number, or why not.
    pub(crate) fn begin(&self) -> Result<u64, Refusal> {
        let mut machine = lock(&self.machine);
        machine.restart.request(Instant::now())?;
        machine.in_flight = true;
        match machine.restart.poll_action() {
            Some(RestartAction::Spawn { attempt }) => Ok(attempt),
            // `request` from Running queues exactly one Spawn.
            other => unreachable!("a restart request queues Spawn, not {other:?}"),
        }
    }

    /// Tells the machine the server entered `phase`
    /// ([`Restart::server_phase`]), and carries out what follows (kill a
    /// process still starting, if the server began stopping). Told after
    /// the server's lock (see [`Carrier::decide_hand_off`]): a hand-off
    /// decided first is then already recorded, and a stop changes nothing.
    /// Returns whether this phase stopped the restarts (the first of a
    /// stop, not after a hand-off).
    pub(crate) fn server_phase(&self, phase: Phase) -> bool {
        let (actions, child, stopped) = {
            let mut machine = lock(&self.machine);
            let before = machine.restart.phase();
            machine.restart.server_phase(phase, Instant::now());
            let stopped =
                before != RestartPhase::Stopped && machine.restart.phase() == RestartPhase::Stopped;
            let actions: Vec<_> = std::iter::from_fn(|| machine.restart.poll_action()).collect();
            (actions, machine.child.clone(), stopped)
        };
        let mut progress = Progress::default();
        carry_out(actions, child.as_deref(), &mut progress, None);
        stopped
    }

    /// A drain signal arrived: whether it repeats one
    /// ([`Restart::drain_signal`]).
    pub(crate) fn drain_signal(&self) -> bool {
        lock(&self.machine).restart.drain_signal()
    }

    /// A hand-off to `successor`, a process this machine did not start
    /// ([`Restart::handed_off_to`]): whether the machine takes it. Asked
    /// under the server's lock, as [`Carrier::decide_hand_off`]'s
    /// `restart_takes` is.
    pub(crate) fn handed_off_to(&self, successor: u32) -> bool {
        lock(&self.machine)
            .restart
            .handed_off_to(successor, Instant::now())
            .is_ok()
    }

    /// The process handed off to, once handed off.
    pub(crate) fn successor(&self) -> Option<u32> {
        let machine = lock(&self.machine);
        match machine.restart.phase() {
            RestartPhase::HandedOff => machine.restart.child(),
            _ => None,
        }
    }

    /// Resolves once no attempt is in flight: each one begun has handed
    /// off, or killed and reaped its process, and reported its outcome.
    /// (An attempt whose process is still being started counts: the
    /// process must not exit before it can kill that one.)
    pub(crate) async fn finished(&self) {
        // Attempts end (hand-off, or a reap after a kill), and each end
        // notifies `over`.
        let idle = || {
            let machine = lock(&self.machine);
            !machine.in_flight && machine.child.is_none()
        };
        wait_until(&self.over, idle).await;
    }

    /// Carries out the attempt begun by [`begin`](Self::begin), whose
    /// process was `launched` (or could not be): resolves to the new
    /// process's pid once `carrier` handed off to it, or to the reported
    /// failure once it is killed and reaped.
    pub(crate) async fn run(
        &self,
        launched: io::Result<Launched>,
        carrier: &impl Carrier,
    ) -> Result<u32, RestartError> {
        let mut progress = Progress::default();
        let Launched {
            watch,
            reader,
            offer,
        } = match launched {
            Ok(launched) => launched,
            Err(e) => {
                let actions = {
                    let mut machine = lock(&self.machine);
                    let _ = machine.restart.spawn_failed(Instant::now());
                    std::iter::from_fn(|| machine.restart.poll_action()).collect()
                };
                carry_out(actions, None, &mut progress, Some(e.to_string()));
                let error = carrier.rolled_back(progress.failure);
                lock(&self.machine).in_flight = false;
                self.over.notify(usize::MAX);
                return Err(error);
            }
        };
        let pid = watch.pid();
        let actions = {
            let mut machine = lock(&self.machine);
            machine.child = Some(watch.clone());
            let _ = machine.restart.spawned(pid, Instant::now());
            std::iter::from_fn(|| machine.restart.poll_action()).collect()
        };
        carry_out(actions, Some(&watch), &mut progress, None);
        let result = match self
            .await_child(&watch, reader, offer, progress, carrier)
            .await
        {
            Ok(child) => {
                // It serves now: its group no longer goes with it.
                watch.keep_group();
                carrier.handed_off(child).await;
                Ok(child)
            }
            Err(failure) => Err(carrier.rolled_back(failure)),
        };
        // Reported first: whoever waits for the attempt's end (before the
        // process exits) sees its outcome reported.
        {
            let mut machine = lock(&self.machine);
            machine.child = None;
            machine.in_flight = false;
        }
        self.over.notify(usize::MAX);
        result
    }

    /// Waits for the process's readiness, exit, or deadline, feeding the
    /// machine, until it says hand off (the pid) or the attempt is over
    /// (the failure, if any).
    async fn await_child(
        &self,
        watch: &Arc<ChildWatch>,
        reader: ReadyReader,
        offer: Offer,
        mut progress: Progress,
        carrier: &impl Carrier,
    ) -> Result<u32, Option<RestartError>> {
        let pid = watch.pid();
        let mut ready = Some(Box::pin(reader.converse(offer)));
        let mut exit = Some(Box::pin(watch.exited()));
        enum Step {
            Ready(io::Result<Heard>),
            Exited(io::Result<ExitStatus>),
            Deadline,
        }
        // Each pass handles one event: readiness (or its end of file), the
        // exit, or the deadline; the machine's deadline and the kill that
        // follows it bound the attempt.
        loop {
            if let Some(child) = progress.hand_off {
                return Ok(child);
            }
            let (phase, deadline, child) = {
                let machine = lock(&self.machine);
                (
                    machine.restart.phase(),
                    machine.restart.poll_timeout(),
                    machine.restart.child(),
                )
            };
            let over = match phase {
                RestartPhase::Running => true,
                RestartPhase::Stopped => child.is_none(),
                _ => false,
            };
            if over {
                return Err(progress.failure);
            }
            if exit.is_none() {
                // Reaped, yet the machine still expects it: cannot happen
                // (child_exited ends every phase that has a child).
                return Err(progress.failure);
            }
            let step = async {
                match &mut ready {
                    Some(f) => Step::Ready(f.await),
                    None => pending().await,
                }
            }
            .or(async {
                match &mut exit {
                    Some(f) => Step::Exited(f.await),
                    None => pending().await,
                }
            })
            .or(async {
                match deadline {
                    Some(at) => {
                        carrier.sleep_until(at).await;
                        Step::Deadline
                    }
                    None => pending().await,
                }
            })
            .await;
            if let Step::Ready(Ok(Heard::Ready)) = step {
                ready = None;
                // "Stop, or hand off?": decided under the carrier's lock,
                // by the server's state and this machine together.
                let mut actions = Vec::new();
                carrier.decide_hand_off(|serving| {
                    let mut machine = lock(&self.machine);
                    let now = Instant::now();
                    if serving {
                        // Refused only past the readiness deadline, which
                        // then killed it.
                        let _ = machine.restart.child_ready(pid, now);
                    } else {
                        // A stop for exit began first: the new process is
                        // not wanted.
                        machine.restart.stopping(now);
                    }
                    actions.extend(std::iter::from_fn(|| machine.restart.poll_action()));
                    machine.restart.phase() == RestartPhase::HandedOff
                });
                carry_out(actions, Some(watch), &mut progress, None);
                continue;
            }
            let now = Instant::now();
            let (actions, detail) = {
                let mut machine = lock(&self.machine);
                let detail = match step {
                    // Handled above.
                    Step::Ready(Ok(Heard::Ready)) => None,
                    Step::Ready(Ok(Heard::Aborted { reason, detail })) => {
                        // The state was not handed over: kill it.
                        ready = None;
                        let _ = machine.restart.child_aborted(pid, reason, now);
                        detail
                    }
                    Step::Ready(_) => {
                        // End of file without READY: wait for the exit or
                        // the deadline.
                        ready = None;
                        None
                    }
                    Step::Exited(status) => {
                        exit = None;
                        let _ = machine.restart.child_exited(pid, now);
                        Some(match status {
                            Ok(status) => status.to_string(),
                            Err(e) => e.to_string(),
                        })
                    }
                    Step::Deadline => {
                        machine.restart.handle_timeout(now);
                        Some(RestartError::not_ready_detail())
                    }
                };
                let actions: Vec<_> =
                    std::iter::from_fn(|| machine.restart.poll_action()).collect();
                (actions, detail)
            };
            carry_out(actions, Some(watch), &mut progress, detail);
        }
    }
}

/// What carrying out actions left for the attempt to do.
#[derive(Default)]
struct Progress {
    hand_off: Option<u32>,
    failure: Option<RestartError>,
}

/// Carries out the restart machine's actions (not `Spawn`: only
/// [`Attempts::begin`] asks for one, and its caller handles it).
fn carry_out(
    actions: Vec<RestartAction>,
    child: Option<&ChildWatch>,
    progress: &mut Progress,
    detail: Option<String>,
) {
    for action in actions {
        match action {
            RestartAction::Spawn { .. } => {}
            RestartAction::Kill { child: pid } => {
                if let Some(watch) = child.filter(|w| w.pid() == pid) {
                    watch.kill();
                }
            }
            RestartAction::HandOff { child } => progress.hand_off = Some(child),
            // Reported once the attempt is over (`rolled_back`): after the
            // process is reaped.
            RestartAction::Failed(failure) => {
                progress.failure = Some(RestartError::Failed {
                    failure,
                    detail: detail.clone(),
                });
            }
        }
    }
}
