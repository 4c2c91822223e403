//! The hand-off's environment: the variables a restart's successor or a
//! supervisor's generation is started with, and
//! [`spawn_with_listeners`], which starts any program with listening
//! sockets the way systemd does. A lameduck server needs none of this
//! ([`Inherited::from_env`](super::Inherited::from_env) reads the
//! variables, [`Lifecycle`](super::Lifecycle) and
//! [`Supervisor`](super::Supervisor) set them); it is for programs that
//! start a server themselves, or look at what it inherited.
//!
//! ```
//! use lameduck::unix::handoff;
//!
//! // What a process was handed, before `Inherited::from_env` removes it.
//! let handed: Vec<&str> = handoff::VARS
//!     .into_iter()
//!     .filter(|var| std::env::var_os(var).is_some())
//!     .collect();
//! assert!(handoff::VARS.contains(&"LAMEDUCK_READY_FD"));
//! # let _ = handed;
//! ```

// The hand-off's pieces, one job each: adopting what a process inherited
// (`inherit`, refusals in `error`, through `fd`, the only place a raw descriptor number is
// borrowed or owned), the channel to a successor (`ready`, its frames
// carrying descriptors through `fdpass`), a supervisor's link to a
// generation (`link`), an inherited listener (`inherited_listener`) and
// serving one or binding a new one (`inherit_or_bind`), starting a process with the listeners (`spawn`),
// and the application's restart state (`state`).
pub(super) mod error;
pub(super) mod inherit;
pub(super) mod inherit_or_bind;
pub(super) mod inherited_listener;
pub(super) mod link;
pub(super) mod ready;
pub(super) mod spawn;
pub(super) mod state;

mod fd;
mod fdpass;

pub use spawn::spawn_with_listeners;

/// The variable naming a successor's hand-off channel: one end of a Unix
/// socket pair on which it receives the restart state and writes
/// `TAKEN` (or `REFUSED <why>`), then `READY=1\n` once it serves (see
/// [`Lifecycle`](super::Lifecycle), [`lameduck_core::handover`]). A
/// successor also accepts the write end of a pipe there (an earlier
/// lameduck's predecessor: readiness only).
pub(crate) const READY_FD_VAR: &str = "LAMEDUCK_READY_FD";

/// The variable naming a supervised generation's link to its supervisor:
/// the read end of a pipe on which the supervisor writes `HANDOFF <pid>`
/// (see [`Supervisor`](super::Supervisor)).
pub(crate) const SUPERVISOR_FD_VAR: &str = "LAMEDUCK_SUPERVISOR_FD";

/// The variable naming the inherited Unix sockets whose files a restart's
/// successor takes over: their descriptor numbers, `:`-separated (`4`,
/// `3:5`). Set by a restart for each Unix socket whose file the
/// predecessor would have removed at its end (it bound the socket, or took
/// the file over itself); never for a socket whose file belongs to someone
/// else (a systemd `.socket` unit), nor by a
/// [`Supervisor`](super::Supervisor) (it owns the files itself). The
/// successor removes such a file when it finally stops serving the socket
/// — once it reported ready, so a successor that fails before that leaves
/// the file to its predecessor. Read and removed with the other hand-off
/// variables by [`Inherited::from_env`](super::Inherited::from_env).
pub(crate) const OWNED_FDS_VAR: &str = "LAMEDUCK_OWNED_FDS";

/// Every variable of the hand-off: systemd's three (`LISTEN_PID`,
/// `LISTEN_FDS`, `LISTEN_FDNAMES`) and lameduck's (`LAMEDUCK_READY_FD`:
/// a successor's hand-off channel; `LAMEDUCK_SUPERVISOR_FD`: a
/// generation's link to its supervisor; `LAMEDUCK_OWNED_FDS`: the
/// inherited Unix sockets whose files the successor takes over). Never passed on from a
/// process's own environment to a child (the child's are set for it), and
/// removed by [`Inherited::from_env`](super::Inherited::from_env).
///
/// ```
/// assert!(lameduck::unix::handoff::VARS.contains(&"LISTEN_FDS"));
/// ```
pub const VARS: [&str; 6] = [
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    READY_FD_VAR,
    SUPERVISOR_FD_VAR,
    OWNED_FDS_VAR,
];

/// The variable numbering a server's generations: 1 for a process started
/// by hand (or by systemd), one more for each successor started by a
/// restart, and the supervisor's count for its generations. Informational
/// ([`generation`], the lifecycle's snapshot); nothing depends on it.
pub(crate) const GENERATION_VAR: &str = "LAMEDUCK_GENERATION";

/// This process's generation: [`GENERATION_VAR`], or 1 when it is unset or
/// not a positive number (a warning is logged then).
pub(crate) fn generation() -> u64 {
    static GENERATION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *GENERATION.get_or_init(|| match std::env::var(GENERATION_VAR) {
        Err(std::env::VarError::NotPresent) => 1,
        Ok(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                log::warn!(target: "lameduck", "{GENERATION_VAR}={v:?} is not a positive number: generation 1");
                1
            }
        },
        Err(e) => {
            log::warn!(target: "lameduck", "{GENERATION_VAR}: {e}: generation 1");
            1
        }
    })
}
