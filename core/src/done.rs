//! A runtime-free done signal: Go's `doneChan`, observable from any executor.
//!
//! [`done_signal`] returns the two halves. The driver keeps the
//! [`DoneSender`] and calls [`DoneSender::complete`] when it drains
//! [`Action::Done`](crate::Action::Done); everyone else holds a clone of
//! [`Drained`] and awaits it, or asks [`Drained::is_done`] synchronously.
//! Completion closes an `async-channel` that never carries a message:
//! closing a channel is a broadcast that wakes every waiter exactly once, on
//! any executor, with no reactor or timer involved.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::action::Outcome;

/// Creates a done signal: the sender for the driver, the receiver for waiters.
///
/// ```
/// use lameduck_core::{done_signal, Completion, Outcome};
///
/// let (sender, drained) = done_signal();
/// let waiter = drained.clone();
/// assert!(!drained.is_done());
/// # let outcome = Outcome { completion: Completion::Drained, forced: 0, hooks_cut_off: false, hijacked_open: 0 };
/// sender.complete(outcome);
/// assert_eq!(futures_lite::future::block_on(waiter.wait()), Ok(outcome));
/// assert_eq!(drained.outcome(), Some(outcome));
/// ```
#[must_use]
pub fn done_signal() -> (DoneSender, Drained) {
    let (tx, rx) = async_channel::bounded(1);
    let outcome = Arc::new(OnceLock::new());
    (
        DoneSender {
            outcome: outcome.clone(),
            tx,
        },
        Drained { outcome, rx },
    )
}

/// The driver's half of a done signal. Dropping it without
/// [`complete`](Self::complete) tells waiters the server was abandoned.
///
/// ```
/// use lameduck_core::{done_signal, Abandoned};
///
/// let (sender, drained) = done_signal();
/// drop(sender);
/// assert_eq!(futures_lite::future::block_on(drained.wait()), Err(Abandoned));
/// ```
pub struct DoneSender {
    outcome: Arc<OnceLock<Outcome>>,
    tx: async_channel::Sender<Never>,
}

impl DoneSender {
    /// Records the outcome and wakes every waiter. Consumes the sender: the
    /// signal completes once.
    ///
    /// ```
    /// use lameduck_core::{done_signal, Completion, Outcome};
    /// let (sender, drained) = done_signal();
    /// # let outcome = Outcome { completion: Completion::Closed, forced: 2, hooks_cut_off: false, hijacked_open: 0 };
    /// sender.complete(outcome);
    /// assert!(drained.is_done());
    /// ```
    pub fn complete(self, outcome: Outcome) {
        // The sender is consumed on the only path that sets the cell.
        let _ = self.outcome.set(outcome);
        self.tx.close();
    }
}

impl fmt::Debug for DoneSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoneSender").finish_non_exhaustive()
    }
}

/// Resolves when the server is done; cheap to clone, usable from any executor.
///
/// ```
/// use lameduck_core::done_signal;
/// let (_sender, drained) = done_signal();
/// let other = drained.clone();
/// assert!(!other.is_done());
/// ```
#[derive(Clone)]
pub struct Drained {
    outcome: Arc<OnceLock<Outcome>>,
    rx: async_channel::Receiver<Never>,
}

impl Drained {
    /// Waits until the server is done, and returns how it ended.
    /// [`Abandoned`] if the driver went away without completing.
    ///
    /// ```
    /// use lameduck_core::{done_signal, Completion, Outcome};
    /// let (sender, drained) = done_signal();
    /// # let outcome = Outcome { completion: Completion::Drained, forced: 0, hooks_cut_off: false, hijacked_open: 0 };
    /// std::thread::spawn(move || sender.complete(outcome));
    /// let got = futures_lite::future::block_on(drained.wait()).unwrap();
    /// assert!(got.is_graceful());
    /// ```
    pub async fn wait(&self) -> Result<Outcome, Abandoned> {
        // Nothing is ever sent: recv() returns only once the channel closes.
        let _ = self.rx.recv().await;
        self.outcome.get().copied().ok_or(Abandoned)
    }

    /// Whether the server is done (or abandoned). Never blocks.
    ///
    /// ```
    /// use lameduck_core::done_signal;
    /// let (sender, drained) = done_signal();
    /// drop(sender);
    /// assert!(drained.is_done());
    /// ```
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.rx.is_closed()
    }

    /// The outcome, once done.
    ///
    /// ```
    /// use lameduck_core::done_signal;
    /// let (_sender, drained) = done_signal();
    /// assert_eq!(drained.outcome(), None);
    /// ```
    #[must_use]
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.get().copied()
    }
}

impl fmt::Debug for Drained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drained")
            .field("outcome", &self.outcome.get())
            .finish()
    }
}

/// The driver went away without completing the done signal.
///
/// ```
/// use lameduck_core::Abandoned;
/// assert_eq!(Abandoned.to_string(), "the server was dropped before it was done");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abandoned;

impl fmt::Display for Abandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server was dropped before it was done")
    }
}

impl std::error::Error for Abandoned {}

/// The done channel's message type: it has no values, so nothing is ever sent.
enum Never {}
