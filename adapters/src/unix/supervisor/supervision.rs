//! The supervisor at work: one event loop that feeds the core's
//! [`supervisor`](lameduck_core::supervisor) machine what happened (a
//! signal, a control request, a generation started, ready or exited, a
//! deadline) and carries out the actions it asks for, in order.
//!
//! ```ignore
//! // Crate-internal: how `Supervisor::run` drives it.
//! let mut supervision = Supervision::new(&settings, &machine);
//! let status = supervision.run(&mut signals).await?;
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{Future, pending, poll_fn};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use async_signal::Signals;
use futures_lite::{FutureExt, StreamExt};
use lameduck_core::restart::{RestartFailure, RestartPhase};
use lameduck_core::supervisor::{
    Generation, KillReason, Notice, Role, Supervisor as Machine, SupervisorAction, SupervisorExit,
};

use super::generation::{
    Conversation, GenerationProcess, Launch, launch_generation, serving_state,
};
use super::{Supervisor, SupervisorEvent};
use crate::sync::lock;
use crate::unix::attempt::Launched;
use crate::unix::child::ChildWatch;
use crate::unix::ctl::{Ask, one_line, serve_on_threads};
use crate::unix::error::RestartError;
use crate::unix::handoff::link::LinkWriter;
use crate::unix::handoff::ready::Heard;
use crate::unix::notify::{monotonic_usec, notify_or_report};
use crate::unix::pidfile;
use crate::unix::signals::{Signal, SignalAction};

/// The supervisor while it runs: its settings, the core machine it feeds
/// what happened, and what carrying out the machine's actions holds —
/// the generations' processes, the start and readiness conversation in
/// flight, the control clients waiting for a restart's outcome.
pub(super) struct Supervision<'a> {
    settings: &'a Supervisor,
    /// Shared with the systemd watch, which reads it between inputs.
    machine: &'a RefCell<Machine>,
    processes: HashMap<u32, GenerationProcess>,
    /// The start being carried out, and its generation's number.
    launching: Option<(u64, Launch<'a>)>,
    conversation: Option<(u32, Conversation)>,
    /// What the failure of the restart in flight says beyond its kind: why
    /// the start failed, how it exited, why the state was refused.
    detail: Option<String>,
    /// Control clients waiting for the outcome of the restart in flight.
    waiters: Vec<async_channel::Sender<String>>,
    /// Set by [`SupervisorAction::Exit`]: what `run` returns.
    exit: Option<io::Result<ExitStatus>>,
}

impl<'a> Supervision<'a> {
    /// Ready to run with `settings`, feeding `machine` (shared with the
    /// caller, which reads nothing of it meanwhile).
    pub(super) fn new(settings: &'a Supervisor, machine: &'a RefCell<Machine>) -> Self {
        Supervision {
            settings,
            machine,
            processes: HashMap::new(),
            launching: None,
            conversation: None,
            detail: None,
            waiters: Vec::new(),
            exit: None,
        }
    }

    fn event(&self, event: SupervisorEvent) {
        self.settings.report(event);
    }

    fn send_notify(&self, state: &str) {
        if !self.settings.notify {
            return;
        }
        notify_or_report(state, |problem| {
            self.event(SupervisorEvent::Problem(problem));
        });
    }

    fn answer_waiters(&mut self, reply: &str) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.try_send(reply.to_owned());
        }
    }

    /// Carries out what the machine asks, in order. `signal`: the stop
    /// signal being forwarded, if any; the pids it was forwarded to.
    fn carry_out(&mut self, signal: Option<Signal>) -> Vec<u32> {
        let mut forwarded = Vec::new();
        loop {
            let Some(action) = self.machine.borrow_mut().poll_action() else {
                return forwarded;
            };
            match action {
                SupervisorAction::Start {
                    generation,
                    state_from,
                } => {
                    self.detail = None;
                    let channel = state_from
                        .and_then(|pid| self.processes.get(&pid))
                        .and_then(|p| p.channel.clone());
                    let settings = self.settings;
                    let launch: Launch<'a> = Box::pin(async move {
                        let offer = serving_state(settings, channel).await?;
                        launch_generation(settings, generation, offer)
                    });
                    self.launching = Some((generation, launch));
                }
                SupervisorAction::Kill { pid, reason } => {
                    if let Some(process) = self.processes.get(&pid) {
                        // With its process group: what it started would
                        // hold the listening sockets on otherwise.
                        let killed = process.watch.kill();
                        if killed && reason == KillReason::StopDeadline {
                            self.event(SupervisorEvent::Killed { pid });
                        }
                    }
                    if self.conversation.as_ref().is_some_and(|(p, _)| *p == pid) {
                        self.conversation = None;
                    }
                }
                SupervisorAction::Forward { pid } => {
                    let signal =
                        signal.and_then(|s| rustix::process::Signal::from_named_raw(s as i32));
                    if let (Some(signal), Some(process)) = (signal, self.processes.get(&pid))
                        && process.watch.signal(signal)
                    {
                        forwarded.push(pid);
                    }
                }
                SupervisorAction::WritePidFile => {
                    if let Some(path) = &self.settings.pid_file {
                        pidfile::write_or_report(path, std::process::id(), |problem| {
                            self.event(SupervisorEvent::Problem(problem));
                        });
                    }
                }
                SupervisorAction::Notify(notice) => match notice {
                    Notice::Ready => self.send_notify("READY=1"),
                    Notice::Reloading => self
                        .send_notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec())),
                    Notice::Stopping => self.send_notify("STOPPING=1"),
                },
                SupervisorAction::Serve {
                    generation,
                    previous,
                } => self.serve(generation, previous),
                SupervisorAction::RestartFailed(failure) => {
                    let error = self.failed(failure);
                    self.answer_waiters(&format!("error {}", one_line(&error.to_string())));
                    self.event(SupervisorEvent::RestartFailed(error));
                }
                SupervisorAction::Exit(exit) => {
                    let result = match exit {
                        SupervisorExit::Status(status) => Ok(status),
                        SupervisorExit::FirstFailed(failure) => Err(io::Error::other(format!(
                            "the first generation failed: {}",
                            self.failed(failure)
                        ))),
                        SupervisorExit::StoppedBeforeReady => Err(io::Error::other(
                            SupervisorExit::StoppedBeforeReady.to_string(),
                        )),
                    };
                    let reply = match &result {
                        Ok(_) => "error the supervisor is stopping".to_owned(),
                        Err(e) => format!("error {}", one_line(&e.to_string())),
                    };
                    self.answer_waiters(&reply);
                    self.exit = Some(result);
                }
            }
        }
    }

    /// `generation` serves: the previous one (if any) is told to hand off;
    /// the readiness channel stays, to ask for the state later.
    fn serve(&mut self, generation: Generation, previous: Option<u32>) {
        let Generation { number, pid } = generation;
        if let Some(process) = self.processes.get(&pid) {
            // It serves now: its group no longer goes with it.
            process.watch.keep_group();
        }
        self.answer_waiters(&format!("ok restarted pid={pid} generation={number}"));
        match previous {
            Some(old) => {
                let told = self.processes.get_mut(&old).map(|previous| {
                    // Its state is the new generation's now: no more asking.
                    previous.channel = None;
                    previous.link.hand_off(pid)
                });
                if let Some(Err(e)) = told {
                    self.event(SupervisorEvent::Problem(format!(
                        "cannot tell generation pid {old} to hand off: {e}"
                    )));
                }
                self.event(SupervisorEvent::HandedOff {
                    generation: number,
                    pid,
                    previous: old,
                });
            }
            None => self.event(SupervisorEvent::Ready {
                pid: std::process::id(),
                generation_pid: pid,
            }),
        }
    }

    /// The error for a failed restart, with what is known beyond its kind.
    fn failed(&mut self, failure: RestartFailure) -> RestartError {
        let detail = match failure {
            RestartFailure::NotReady { .. } => Some(RestartError::not_ready_detail()),
            RestartFailure::Stopping => None,
            _ => self.detail.take(),
        };
        RestartError::Failed { failure, detail }
    }

    /// A restart asked for: refusals are reported.
    fn restart(&self, now: Instant) -> Result<u64, RestartError> {
        let refused = self.machine.borrow_mut().restart(now);
        refused.map_err(|e| {
            let e = RestartError::refused(&e);
            self.event(SupervisorEvent::RestartFailed(e.clone()));
            e
        })
    }

    /// The status line for the control socket.
    fn status_line(&self) -> String {
        let machine = self.machine.borrow();
        let phase = if machine.is_stopping() {
            "draining"
        } else {
            "serving"
        };
        let restart = format!("{:?}", machine.restart_phase()).to_lowercase();
        let (pid, generation) = machine.serving().map_or((0, 0), |g| (g.pid, g.number));
        format!(
            "phase={phase} restart={restart} pid={pid} generation={generation} supervisor={} \
             restarts={}",
            std::process::id(),
            machine.generations().saturating_sub(1)
        )
    }

    /// A signal arrived.
    fn on_signal(&mut self, signal: Signal, now: Instant) {
        let Some(action) = self.settings.signals.action(signal) else {
            return;
        };
        match action {
            SignalAction::Restart => {
                self.event(SupervisorEvent::Signal {
                    signal,
                    action,
                    forwarded_to: Vec::new(),
                });
                let _ = self.restart(now);
            }
            SignalAction::Drain | SignalAction::Close => {
                self.machine.borrow_mut().stop(now);
                let forwarded_to = self.carry_out(Some(signal));
                self.event(SupervisorEvent::Signal {
                    signal,
                    action,
                    forwarded_to,
                });
            }
        }
    }

    /// Runs until the machine's `Exit`: what it returns.
    pub(super) async fn run(&mut self, signals: &mut Option<Signals>) -> io::Result<ExitStatus> {
        // systemd beyond READY (STATUS=, WATCHDOG=1): see `observed`. Polled
        // by this loop, so its pings say the loop is alive.
        let machine = self.machine;
        let settings = self.settings;
        let problem = |p| settings.report(SupervisorEvent::Problem(p));
        let systemd = crate::unix::notify::supervisor_watch(
            settings.notify,
            || observed(&machine.borrow()),
            problem,
            async_io::Timer::at,
        );
        let mut systemd = std::pin::pin!(systemd);
        // The control socket, served on threads; their requests come here.
        let (asks_tx, asks) = async_channel::unbounded();
        let control = lock(&settings.control).take();
        let _served = match control {
            Some(socket) => Some(serve_on_threads(socket, asks_tx)?),
            None => None,
        };
        enum Woke {
            Control(Ask),
            Signal(Option<io::Result<Signal>>),
            Launched(u64, io::Result<(Launched, LinkWriter)>),
            Heard(u32, io::Result<Heard>),
            Exited(u32, io::Result<ExitStatus>),
            Timeout,
        }
        // One event per pass, fed to the machine, whose actions are then
        // carried out. Ends with its Exit: once stopping with no
        // generation left (each is bounded by its own drain deadline, or
        // the stop deadline's kill), or when the first generation failed.
        loop {
            self.carry_out(None);
            if let Some(result) = self.exit.take() {
                return result;
            }
            let deadline = machine.borrow().poll_timeout();
            let watches: Vec<Arc<ChildWatch>> =
                self.processes.values().map(|p| p.watch.clone()).collect();
            let woke = {
                let signal = async {
                    match signals {
                        Some(signals) => Woke::Signal(signals.next().await),
                        None => pending().await,
                    }
                };
                let control = async {
                    match asks.recv().await {
                        Ok(ask) => Woke::Control(ask),
                        Err(_) => pending().await,
                    }
                };
                let launching = &mut self.launching;
                let launched = async {
                    match launching {
                        Some((generation, f)) => Woke::Launched(*generation, f.await),
                        None => pending().await,
                    }
                };
                let conversation = &mut self.conversation;
                let heard = async {
                    match conversation {
                        Some((pid, f)) => Woke::Heard(*pid, f.await),
                        None => pending().await,
                    }
                };
                let mut waits: Vec<_> = watches
                    .iter()
                    .map(|w| {
                        let pid = w.pid();
                        Box::pin(async move { (pid, w.exited().await) })
                    })
                    .collect();
                let exited = poll_fn(|cx| {
                    for wait in &mut waits {
                        if let Poll::Ready((pid, status)) = wait.as_mut().poll(cx) {
                            return Poll::Ready(Woke::Exited(pid, status));
                        }
                    }
                    Poll::Pending
                });
                let timeout = async {
                    match deadline {
                        Some(at) => {
                            async_io::Timer::at(at).await;
                            Woke::Timeout
                        }
                        None => pending().await,
                    }
                };
                signal
                    .or(control)
                    .or(launched)
                    .or(heard)
                    .or(exited)
                    .or(timeout)
                    .or(systemd.as_mut())
                    .await
            };
            let now = Instant::now();
            match woke {
                Woke::Control(Ask::Status(reply)) => {
                    let _ = reply.try_send(format!("ok status {}", self.status_line()));
                }
                Woke::Control(Ask::Restart(reply)) => {
                    let joined = matches!(
                        machine.borrow().restart_phase(),
                        RestartPhase::Spawning | RestartPhase::Reaping
                    );
                    self.event(SupervisorEvent::ControlRestart { joined });
                    if joined {
                        self.waiters.push(reply);
                    } else {
                        match self.restart(now) {
                            Ok(_) => self.waiters.push(reply),
                            Err(e) => {
                                let _ =
                                    reply.try_send(format!("error {}", one_line(&e.to_string())));
                            }
                        }
                    }
                }
                Woke::Signal(Some(Ok(signal))) => self.on_signal(signal, now),
                Woke::Signal(Some(Err(e))) => return Err(e),
                Woke::Signal(None) => return Err(io::Error::other("signal handling stopped")),
                Woke::Launched(generation, launched) => {
                    self.launching = None;
                    match launched {
                        Ok((launched, link)) => {
                            let Launched {
                                watch,
                                reader,
                                offer,
                            } = launched;
                            let pid = watch.pid();
                            self.event(SupervisorEvent::GenerationStarted { generation, pid });
                            self.processes.insert(
                                pid,
                                GenerationProcess {
                                    watch,
                                    link,
                                    channel: Some(reader.clone()),
                                },
                            );
                            self.conversation = Some((pid, Box::pin(reader.converse(offer))));
                            let _ = machine.borrow_mut().started(pid, now);
                        }
                        Err(e) => {
                            self.detail = Some(e.to_string());
                            let _ = machine.borrow_mut().start_failed(now);
                        }
                    }
                }
                Woke::Heard(pid, heard) => {
                    self.conversation = None;
                    match heard {
                        Ok(Heard::Ready) => {
                            // Refused only if it is no longer wanted (the
                            // deadline passed, or a stop began): it is
                            // being killed.
                            let _ = machine.borrow_mut().ready(pid, now);
                        }
                        Ok(Heard::Aborted { reason, detail }) => {
                            self.detail = detail;
                            let _ = machine.borrow_mut().aborted(pid, reason, now);
                        }
                        // End of file without READY: its exit, or the
                        // deadline, says how it failed.
                        Ok(Heard::Eof) | Err(_) => {}
                    }
                }
                Woke::Exited(pid, status) => {
                    // A status lost (reaped elsewhere: cannot happen)
                    // counts as a failure.
                    let status = status.unwrap_or_else(|_| ExitStatus::from_raw(1 << 8));
                    // Its link and channel go with it.
                    self.processes.remove(&pid);
                    if self.conversation.as_ref().is_some_and(|(p, _)| *p == pid) {
                        self.conversation = None;
                    }
                    let role = machine.borrow_mut().exited(pid, status, now);
                    if role == Ok(Role::Starting) && self.detail.is_none() {
                        self.detail = Some(status.to_string());
                    }
                    self.event(SupervisorEvent::GenerationExited {
                        pid,
                        status,
                        serving: role == Ok(Role::Serving),
                    });
                }
                Woke::Timeout => machine.borrow_mut().handle_timeout(now),
            }
        }
    }
}

/// What systemd's watch reports (STATUS=, WATCHDOG=1; notify.rs): nothing
/// before the first generation is ready; then serving (or restarting),
/// and draining once stopping.
fn observed(machine: &Machine) -> Option<lameduck_core::systemd::Observed> {
    use lameduck_core::Phase;
    if !machine.has_served() {
        return None;
    }
    let phase = if machine.is_stopping() {
        Phase::Draining
    } else {
        Phase::Serving
    };
    Some(lameduck_core::systemd::Observed::phase(
        phase,
        machine.restart_phase(),
    ))
}
