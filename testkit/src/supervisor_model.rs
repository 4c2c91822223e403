//! A reference model of the supervisor machine
//! ([`lameduck_core::supervisor`]), the [`SupOp`] decoder shared by the
//! property test and the fuzz target, and [`run_bytes`], which runs a
//! sequence of ops against both and checks that they agree and that the
//! supervisor's invariants hold.
//!
//! The model is written for obviousness, not economy: it keeps every
//! generation ever asked for in a vector with what became of it, and
//! works out deadlines, the restart in flight and the exit from that list
//! on every look, where the machine drives the restart machine and keeps
//! the serving and draining generations apart. Agreement is the test.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use lameduck_core::handover::AbortReason;
use lameduck_core::restart::{Refusal, RestartFailure};
use lameduck_core::supervisor::{
    Generation, KillReason, Notice, Role, Supervisor, SupervisorAction, SupervisorConfig,
    SupervisorExit,
};

/// The readiness deadline of every scenario.
const READY_MS: u64 = 1_000;
/// The stop deadline of the scenarios that have one.
const STOP_MS: u64 = 3_000;
/// A pid no generation has.
const STRANGER: u32 = 9_999;

/// One input. Pid operands index the pids issued so far (modulo their
/// number plus one: the last index is a pid no generation has).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SupOp {
    /// [`Supervisor::restart`]
    Restart,
    /// [`Supervisor::started`] with a new pid.
    Started,
    /// [`Supervisor::start_failed`]
    StartFailed,
    /// [`Supervisor::ready`]
    Ready(u8),
    /// [`Supervisor::aborted`]
    Aborted(u8),
    /// [`Supervisor::exited`] with exit code 0, 1 or 2 (the `u8` picks the
    /// pid, the code is its remainder by 3).
    Exited(u8),
    /// [`Supervisor::stop`]
    Stop,
    /// Let this many ms pass, calling [`Supervisor::handle_timeout`] at
    /// every deadline on the way and at the end.
    Advance(u16),
}

/// A decoded scenario: whether the supervisor has a stop deadline, and
/// the ops.
#[derive(Clone, Debug)]
pub struct SupScenario {
    /// [`SupervisorConfig::stop_timeout`] is `STOP_MS` (else none).
    pub stop_deadline: bool,
    /// The inputs, in order.
    pub ops: Vec<SupOp>,
}

/// Decodes bytes into a scenario: the first byte picks the configuration,
/// then each pair of bytes is an op and its operand.
#[must_use]
pub fn decode(bytes: &[u8]) -> SupScenario {
    let stop_deadline = bytes.first().is_some_and(|b| b & 1 == 1);
    let ops = bytes
        .get(1..)
        .unwrap_or_default()
        .chunks(2)
        .map(|pair| {
            let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
            // Weighted so that scenarios live long enough to restart
            // several times before a stop or an exit ends them.
            match op % 16 {
                0 | 1 => SupOp::Restart,
                2..=4 => SupOp::Started,
                5 => SupOp::StartFailed,
                6 | 7 => SupOp::Ready(arg | 0x80),
                8 => SupOp::Ready(arg),
                9 => SupOp::Aborted(arg),
                10 => SupOp::Exited(arg),
                11 => SupOp::Stop,
                12..=14 => SupOp::Advance(u16::from(arg) * 2),
                _ => SupOp::Advance(u16::from(arg) * 20),
            }
        })
        .collect();
    SupScenario { stop_deadline, ops }
}

// ----- the model ---------------------------------------------------------------

/// What became of a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Its start was asked for and not reported yet.
    Asked,
    /// Started, not ready yet.
    Starting,
    /// Being killed as a failed restart; reaped later.
    Killed,
    /// Serving.
    Serving,
    /// Handed off, draining.
    Draining,
    /// Exited and reaped, or never started.
    Gone,
}

#[derive(Clone, Copy, Debug)]
struct Gen {
    number: u64,
    pid: Option<u32>,
    fate: Fate,
    /// When its start was asked for (ms).
    asked_at: u64,
    /// The verdict on it as a restart, once there is one.
    failure: Option<RestartFailure>,
    /// It is the restart in flight (asked, and not yet serving or over).
    in_flight: bool,
}

/// The model's whole state.
#[derive(Clone, Debug)]
struct Model {
    stop_timeout: Option<u64>,
    now: u64,
    gens: Vec<Gen>,
    /// When the stop began.
    stop_at: Option<u64>,
    stop_deadline_done: bool,
    /// The serving generation's exit status, once it exited.
    status: Option<ExitStatus>,
    first_failure: Option<RestartFailure>,
    /// A generation served once.
    ever_served: bool,
    exited: bool,
}

type Out = Vec<SupervisorAction>;

impl Model {
    fn new(stop_timeout: Option<u64>) -> (Model, Out) {
        let mut m = Model {
            stop_timeout,
            now: 0,
            gens: Vec::new(),
            stop_at: None,
            stop_deadline_done: false,
            status: None,
            first_failure: None,
            ever_served: false,
            exited: false,
        };
        let mut out = Vec::new();
        m.ask(&mut out);
        (m, out)
    }

    fn serving(&self) -> Option<Gen> {
        self.gens.iter().copied().find(|g| g.fate == Fate::Serving)
    }

    fn in_flight(&self) -> Option<usize> {
        self.gens.iter().position(|g| g.in_flight)
    }

    fn stopping(&self) -> bool {
        self.stop_at.is_some()
    }

    /// The restart in flight's readiness deadline, while it still counts.
    fn ready_deadline(&self) -> Option<u64> {
        let g = self.gens[self.in_flight()?];
        let counts = !self.stopping()
            && g.failure.is_none()
            && matches!(g.fate, Fate::Asked | Fate::Starting);
        counts.then_some(g.asked_at + READY_MS)
    }

    fn stop_deadline(&self) -> Option<u64> {
        if self.stop_deadline_done {
            return None;
        }
        Some(self.stop_at? + self.stop_timeout?)
    }

    fn deadline(&self) -> Option<u64> {
        if self.exited {
            return None;
        }
        match (self.ready_deadline(), self.stop_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Asks for the next generation.
    fn ask(&mut self, out: &mut Out) -> u64 {
        let number = self.gens.len() as u64 + 1;
        let state_from = self.serving().and_then(|g| g.pid);
        if self.ever_served {
            out.push(SupervisorAction::Notify(Notice::Reloading));
        }
        self.gens.push(Gen {
            number,
            pid: None,
            fate: Fate::Asked,
            asked_at: self.now,
            failure: None,
            in_flight: true,
        });
        out.push(SupervisorAction::Start {
            generation: number,
            state_from,
        });
        number
    }

    /// Time passes: the readiness deadline, then the stop deadline.
    fn advance(&mut self, now: u64, out: &mut Out) {
        self.now = self.now.max(now);
        if self.exited {
            return;
        }
        if let Some(deadline) = self.ready_deadline()
            && deadline <= self.now
        {
            let i = self.in_flight().unwrap();
            let g = &mut self.gens[i];
            g.failure = Some(RestartFailure::NotReady { child: g.pid });
            if let Some(pid) = g.pid {
                g.fate = Fate::Killed;
                out.push(SupervisorAction::Kill {
                    pid,
                    reason: KillReason::Attempt,
                });
            }
        }
        if let Some(deadline) = self.stop_deadline()
            && deadline <= self.now
        {
            self.stop_deadline_done = true;
            for g in self.running() {
                out.push(SupervisorAction::Kill {
                    pid: g.pid.unwrap(),
                    reason: KillReason::StopDeadline,
                });
            }
        }
    }

    /// Serving first, then the draining ones, oldest first.
    fn running(&self) -> Vec<Gen> {
        let mut running: Vec<Gen> = self.serving().into_iter().collect();
        running.extend(self.gens.iter().filter(|g| g.fate == Fate::Draining));
        running
    }

    fn begin_stop(&mut self, out: &mut Out) {
        if self.stopping() {
            return;
        }
        self.stop_at = Some(self.now);
        out.push(SupervisorAction::Notify(Notice::Stopping));
        if let Some(i) = self.in_flight() {
            let g = &mut self.gens[i];
            if g.failure.is_none() {
                g.failure = Some(RestartFailure::Stopping);
                if g.fate == Fate::Starting {
                    g.fate = Fate::Killed;
                    out.push(SupervisorAction::Kill {
                        pid: g.pid.unwrap(),
                        reason: KillReason::Attempt,
                    });
                }
            }
        }
    }

    /// The restart in flight is over if nothing of it runs: report it;
    /// then the exit, if nothing is left.
    fn settle(&mut self, out: &mut Out) {
        if let Some(i) = self.in_flight()
            && self.gens[i].fate == Fate::Gone
        {
            let g = &mut self.gens[i];
            g.in_flight = false;
            let failure = g.failure.unwrap_or(RestartFailure::Stopping);
            if self.ever_served {
                if self.serving().is_some() && !self.stopping() {
                    out.push(SupervisorAction::Notify(Notice::Ready));
                }
                out.push(SupervisorAction::RestartFailed(failure));
            } else {
                self.first_failure = Some(failure);
            }
        }
        let alive = self
            .gens
            .iter()
            .any(|g| g.fate != Fate::Gone || g.in_flight);
        if !self.exited && !alive && (self.stopping() || self.first_failure.is_some()) {
            self.exited = true;
            let exit = match (self.status, self.first_failure) {
                (Some(status), _) => SupervisorExit::Status(status),
                (None, Some(f)) if f != RestartFailure::Stopping => SupervisorExit::FirstFailed(f),
                (None, _) => SupervisorExit::StoppedBeforeReady,
            };
            out.push(SupervisorAction::Exit(exit));
        }
    }
}

// The model's answers, one function per input.
impl Model {
    fn restart(&mut self, out: &mut Out) -> Result<u64, Refusal> {
        if self.exited || self.stopping() {
            return Err(Refusal::Stopping);
        }
        if self.in_flight().is_some() {
            return Err(Refusal::InProgress);
        }
        Ok(self.ask(out))
    }

    fn started(&mut self, pid: u32, out: &mut Out) -> Result<(), Refusal> {
        let i = self
            .in_flight()
            .filter(|&i| self.gens[i].fate == Fate::Asked)
            .ok_or(Refusal::Unexpected)?;
        let g = &mut self.gens[i];
        g.pid = Some(pid);
        if g.failure.is_some() {
            // Too late, or a stop came: not wanted.
            g.fate = Fate::Killed;
            out.push(SupervisorAction::Kill {
                pid,
                reason: KillReason::Attempt,
            });
        } else {
            g.fate = Fate::Starting;
        }
        Ok(())
    }

    fn start_failed(&mut self) -> Result<(), Refusal> {
        let i = self
            .in_flight()
            .filter(|&i| self.gens[i].fate == Fate::Asked)
            .ok_or(Refusal::Unexpected)?;
        let g = &mut self.gens[i];
        g.failure.get_or_insert(RestartFailure::SpawnFailed);
        g.fate = Fate::Gone;
        Ok(())
    }

    /// The in-flight generation with this pid, still starting.
    fn starting(&self, pid: u32) -> Option<usize> {
        self.in_flight()
            .filter(|&i| self.gens[i].fate == Fate::Starting && self.gens[i].pid == Some(pid))
    }

    fn ready(&mut self, pid: u32, out: &mut Out) -> Result<(), Refusal> {
        let i = self.starting(pid).ok_or(Refusal::UnknownChild(pid))?;
        let previous = self.serving();
        if let Some(p) = previous {
            let p = self.gens.iter_mut().find(|g| g.number == p.number).unwrap();
            p.fate = Fate::Draining;
        }
        let g = &mut self.gens[i];
        g.fate = Fate::Serving;
        g.in_flight = false;
        let generation = Generation {
            number: g.number,
            pid,
        };
        if !self.ever_served {
            self.ever_served = true;
            out.push(SupervisorAction::WritePidFile);
        }
        out.push(SupervisorAction::Notify(Notice::Ready));
        out.push(SupervisorAction::Serve {
            generation,
            previous: previous.and_then(|p| p.pid),
        });
        Ok(())
    }

    fn aborted(&mut self, pid: u32, out: &mut Out) -> Result<(), Refusal> {
        let i = self.starting(pid).ok_or(Refusal::UnknownChild(pid))?;
        let g = &mut self.gens[i];
        g.fate = Fate::Killed;
        g.failure = Some(RestartFailure::State {
            child: pid,
            reason: AbortReason::Refused,
        });
        out.push(SupervisorAction::Kill {
            pid,
            reason: KillReason::Attempt,
        });
        Ok(())
    }

    fn exited(&mut self, pid: u32, status: ExitStatus, out: &mut Out) -> Result<Role, Refusal> {
        let i = self
            .gens
            .iter()
            .position(|g| g.pid == Some(pid) && g.fate != Fate::Gone && g.fate != Fate::Asked)
            .ok_or(Refusal::UnknownChild(pid))?;
        let fate = self.gens[i].fate;
        self.gens[i].fate = Fate::Gone;
        Ok(match fate {
            Fate::Serving => {
                self.status = Some(status);
                self.begin_stop(out);
                Role::Serving
            }
            Fate::Draining => Role::Draining,
            _ => {
                self.gens[i]
                    .failure
                    .get_or_insert(RestartFailure::ChildExited { child: pid });
                Role::Starting
            }
        })
    }

    fn stop(&mut self, out: &mut Out) {
        if self.exited {
            return;
        }
        self.begin_stop(out);
        for g in self.running() {
            out.push(SupervisorAction::Forward {
                pid: g.pid.unwrap(),
            });
        }
    }
}

// ----- the harness -------------------------------------------------------------

fn status(code: u8) -> ExitStatus {
    ExitStatus::from_raw(i32::from(code % 3) << 8)
}

/// Runs a decoded scenario against the machine and the model; panics with
/// the step and the ops where they disagree or an invariant breaks.
/// Returns how often each kind of action was seen.
#[must_use]
pub fn run_bytes(bytes: &[u8]) -> BTreeMap<String, usize> {
    let scenario = decode(bytes);
    #[allow(clippy::disallowed_methods)] // the origin of virtual time
    let t0 = Instant::now();
    let stop_timeout = scenario.stop_deadline.then_some(STOP_MS);
    let config = SupervisorConfig {
        ready_timeout: Duration::from_millis(READY_MS),
        stop_timeout: stop_timeout.map(Duration::from_millis),
    };
    let mut sup = Supervisor::new(config, t0);
    let (mut model, first) = Model::new(stop_timeout);
    let mut seen = BTreeMap::new();
    let mut checker = Invariants::default();
    let fail =
        |step: usize, what: String| -> ! { panic!("step {step}: {what}\nops: {:?}", scenario.ops) };
    let actions: Vec<_> = std::iter::from_fn(|| sup.poll_action()).collect();
    if actions != first {
        fail(0, format!("start: machine {actions:?}, model {first:?}"));
    }
    checker
        .check(&actions, &mut seen)
        .unwrap_or_else(|e| fail(0, e));
    let mut pids: Vec<u32> = Vec::new();
    for (step, op) in scenario.ops.iter().enumerate() {
        let pick = |arg: u8| {
            if arg & 0x80 != 0 {
                // The newest pid: the one most inputs are about.
                return pids.last().copied().unwrap_or(STRANGER);
            }
            pids.get(usize::from(arg) % (pids.len() + 1))
                .copied()
                .unwrap_or(STRANGER)
        };
        let mut expected = Vec::new();
        let now = t0 + Duration::from_millis(model.now);
        let (got, want): (String, String) = match *op {
            SupOp::Restart => {
                model.advance(model.now, &mut expected);
                let want = model.restart(&mut expected);
                (format!("{:?}", sup.restart(now)), format!("{want:?}"))
            }
            SupOp::Started => {
                let pid = 100 + pids.len() as u32;
                model.advance(model.now, &mut expected);
                let want = model.started(pid, &mut expected);
                let got = sup.started(pid, now);
                if got.is_ok() {
                    pids.push(pid);
                }
                (format!("{got:?}"), format!("{want:?}"))
            }
            SupOp::StartFailed => {
                model.advance(model.now, &mut expected);
                let want = model.start_failed();
                (format!("{:?}", sup.start_failed(now)), format!("{want:?}"))
            }
            SupOp::Ready(arg) => {
                let pid = pick(arg);
                model.advance(model.now, &mut expected);
                let want = model.ready(pid, &mut expected);
                (format!("{:?}", sup.ready(pid, now)), format!("{want:?}"))
            }
            SupOp::Aborted(arg) => {
                let pid = pick(arg);
                model.advance(model.now, &mut expected);
                let want = model.aborted(pid, &mut expected);
                let got = sup.aborted(pid, AbortReason::Refused, now);
                (format!("{got:?}"), format!("{want:?}"))
            }
            SupOp::Exited(arg) => {
                let pid = pick(arg);
                model.advance(model.now, &mut expected);
                let want = model.exited(pid, status(arg), &mut expected);
                let got = sup.exited(pid, status(arg), now);
                (format!("{got:?}"), format!("{want:?}"))
            }
            SupOp::Stop => {
                model.advance(model.now, &mut expected);
                model.stop(&mut expected);
                sup.stop(now);
                (String::new(), String::new())
            }
            SupOp::Advance(ms) => {
                // Wakes at every deadline on the way, exactly, as a run
                // loop does; then at the end. Each wake passes a deadline
                // (each fires once), so a few suffice.
                let later = model.now + u64::from(ms);
                for _ in 0..8 {
                    let Some(due) = model.deadline().filter(|&due| due <= later) else {
                        break;
                    };
                    let at = t0 + Duration::from_millis(due);
                    if sup.poll_timeout() != Some(at) {
                        fail(
                            step,
                            format!("deadline: machine {:?}, model {due} ms", sup.poll_timeout()),
                        );
                    }
                    model.advance(due, &mut expected);
                    model.settle(&mut expected);
                    sup.handle_timeout(at);
                }
                model.advance(later, &mut expected);
                sup.handle_timeout(t0 + Duration::from_millis(later));
                (String::new(), String::new())
            }
        };
        if !model.exited {
            model.settle(&mut expected);
        }
        if got != want {
            fail(step, format!("{op:?}: machine {got}, model {want}"));
        }
        let actions: Vec<_> = std::iter::from_fn(|| sup.poll_action()).collect();
        if actions != expected {
            fail(
                step,
                format!("{op:?}: machine {actions:?}, model {expected:?}"),
            );
        }
        checker
            .check(&actions, &mut seen)
            .unwrap_or_else(|e| fail(step, e));
        let deadline = model.deadline().map(|ms| t0 + Duration::from_millis(ms));
        if sup.poll_timeout() != deadline {
            fail(
                step,
                format!(
                    "{op:?}: deadline: machine {:?}, model {deadline:?}",
                    sup.poll_timeout()
                ),
            );
        }
        let serving = model.serving().map(|g| Generation {
            number: g.number,
            pid: g.pid.unwrap(),
        });
        if sup.serving() != serving || sup.is_stopping() != model.stopping() {
            fail(step, format!("{op:?}: serving or stopping differ"));
        }
    }
    seen
}

/// What must hold of the actions, whatever the model says.
#[derive(Default)]
struct Invariants {
    /// Starts asked for and not yet reported over (served or failed).
    open_starts: u32,
    serving: Option<u32>,
    exited: bool,
}

impl Invariants {
    fn check(
        &mut self,
        actions: &[SupervisorAction],
        seen: &mut BTreeMap<String, usize>,
    ) -> Result<(), String> {
        for action in actions {
            if self.exited {
                return Err(format!("{action:?} after the exit"));
            }
            let kind = match action {
                SupervisorAction::Start { .. } => {
                    self.open_starts += 1;
                    if self.open_starts > 1 {
                        return Err("two generations starting at once".into());
                    }
                    "Start".to_owned()
                }
                SupervisorAction::Serve {
                    generation,
                    previous,
                } => {
                    self.open_starts -= 1;
                    if *previous != self.serving {
                        return Err(format!(
                            "{previous:?} handed off, {:?} served",
                            self.serving
                        ));
                    }
                    self.serving = Some(generation.pid);
                    format!("Serve(previous: {})", previous.is_some())
                }
                SupervisorAction::RestartFailed(failure) => {
                    self.open_starts -= 1;
                    format!("RestartFailed({})", variant(failure))
                }
                SupervisorAction::Kill { reason, .. } => format!("Kill({reason:?})"),
                SupervisorAction::Exit(exit) => {
                    self.exited = true;
                    format!("Exit({})", variant(exit))
                }
                SupervisorAction::Forward { .. } => "Forward".to_owned(),
                SupervisorAction::WritePidFile => "WritePidFile".to_owned(),
                SupervisorAction::Notify(notice) => format!("Notify({notice:?})"),
            };
            *seen.entry(kind).or_default() += 1;
        }
        Ok(())
    }
}

/// The name of an enum value's variant, from its `Debug`.
fn variant(value: &impl std::fmt::Debug) -> String {
    let debug = format!("{value:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_owned()
}
