//! Which signal does what.

use std::fmt;

/// A Unix signal (re-exported from the `async-signal` crate).
pub use async_signal::Signal;

/// What a signal asks of the [`Lifecycle`](super::Lifecycle).
///
/// ```
/// use lameduck::unix::{Signal, SignalAction, SignalConfig};
/// assert_eq!(SignalConfig::default().action(Signal::Hup), Some(SignalAction::Restart));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignalAction {
    /// Drain, then exit ([`Lifecycle::shutdown`](super::Lifecycle::shutdown)).
    Drain,
    /// Close everything now ([`Lifecycle::close`](super::Lifecycle::close)).
    Close,
    /// Restart: hand the sockets to a successor
    /// ([`Lifecycle::restart`](super::Lifecycle::restart)).
    Restart,
}

/// Which signals drain, close or restart. Default: `SIGTERM` and `SIGINT`
/// drain (a second one closes at once), `SIGHUP` restarts, `SIGUSR2`
/// closes at once.
///
/// A drain signal is a *second one* when the server stops already,
/// however that began: a signal, [`Lifecycle::shutdown`](super::Lifecycle::shutdown)
/// or the [`Handle`](crate::Handle). After a hand-off the old process
/// drains without a stop of its own (and systemd's stop signals every
/// process of the unit): there its first drain signal drains, with the
/// shutdown timeout, and a second closes.
///
/// ```
/// use lameduck::unix::{Signal, SignalAction, SignalConfig};
///
/// // SIGUSR1 restarts instead of SIGHUP; SIGINT is left alone.
/// let config = SignalConfig::none()
///     .on(Signal::Term, SignalAction::Drain)
///     .on(Signal::Usr1, SignalAction::Restart);
/// assert_eq!(config.action(Signal::Hup), None);
/// assert_eq!(config.signals(), vec![Signal::Term, Signal::Usr1]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalConfig {
    actions: Vec<(Signal, SignalAction)>,
    repeat_closes: bool,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig::none()
            .on(Signal::Term, SignalAction::Drain)
            .on(Signal::Int, SignalAction::Drain)
            .on(Signal::Hup, SignalAction::Restart)
            .on(Signal::Usr2, SignalAction::Close)
    }
}

impl SignalConfig {
    /// No signal handled (everything through the
    /// [`Lifecycle`](super::Lifecycle)'s methods); a second drain signal
    /// would close.
    ///
    /// ```
    /// assert!(lameduck::unix::SignalConfig::none().signals().is_empty());
    /// ```
    #[must_use]
    pub fn none() -> SignalConfig {
        SignalConfig {
            actions: Vec::new(),
            repeat_closes: true,
        }
    }

    /// `signal` does `action` (replacing what it did).
    ///
    /// ```
    /// use lameduck::unix::{Signal, SignalAction, SignalConfig};
    /// let config = SignalConfig::default().on(Signal::Usr2, SignalAction::Restart);
    /// assert_eq!(config.action(Signal::Usr2), Some(SignalAction::Restart));
    /// ```
    #[must_use]
    pub fn on(mut self, signal: Signal, action: SignalAction) -> SignalConfig {
        self.actions.retain(|(s, _)| *s != signal);
        self.actions.push((signal, action));
        self
    }

    /// `signal` is not handled (its default disposition applies).
    ///
    /// ```
    /// use lameduck::unix::{Signal, SignalConfig};
    /// let config = SignalConfig::default().ignore(Signal::Int);
    /// assert_eq!(config.action(Signal::Int), None);
    /// ```
    #[must_use]
    pub fn ignore(mut self, signal: Signal) -> SignalConfig {
        self.actions.retain(|(s, _)| *s != signal);
        self
    }

    /// Whether a drain signal received while already draining closes at
    /// once (default `true`).
    ///
    /// ```
    /// let config = lameduck::unix::SignalConfig::default().repeat_closes(false);
    /// # let _ = config;
    /// ```
    #[must_use]
    pub fn repeat_closes(mut self, closes: bool) -> SignalConfig {
        self.repeat_closes = closes;
        self
    }

    /// What `signal` does, if it is handled.
    ///
    /// ```
    /// use lameduck::unix::{Signal, SignalAction, SignalConfig};
    /// assert_eq!(SignalConfig::default().action(Signal::Usr2), Some(SignalAction::Close));
    /// ```
    #[must_use]
    pub fn action(&self, signal: Signal) -> Option<SignalAction> {
        self.actions
            .iter()
            .find(|(s, _)| *s == signal)
            .map(|(_, a)| *a)
    }

    /// The handled signals.
    ///
    /// ```
    /// assert_eq!(lameduck::unix::SignalConfig::default().signals().len(), 4);
    /// ```
    #[must_use]
    pub fn signals(&self) -> Vec<Signal> {
        self.actions.iter().map(|(s, _)| *s).collect()
    }

    pub(crate) fn closes_on_repeat(&self) -> bool {
        self.repeat_closes
    }
}

/// `SIGTERM`, …: the conventional name.
pub(crate) struct SignalName(pub(crate) Signal);

impl fmt::Display for SignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            Signal::Hup => "SIGHUP",
            Signal::Int => "SIGINT",
            Signal::Quit => "SIGQUIT",
            Signal::Term => "SIGTERM",
            Signal::Usr1 => "SIGUSR1",
            Signal::Usr2 => "SIGUSR2",
            Signal::Alarm => "SIGALRM",
            Signal::Child => "SIGCHLD",
            Signal::Cont => "SIGCONT",
            Signal::Tstp => "SIGTSTP",
            Signal::Ttin => "SIGTTIN",
            Signal::Ttou => "SIGTTOU",
            Signal::Pipe => "SIGPIPE",
            other => return write!(f, "{other:?}"),
        };
        f.write_str(name)
    }
}
