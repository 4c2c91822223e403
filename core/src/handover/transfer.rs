//! The commit/abort decision: a [`Transfer`] follows one offer from the
//! old process's side, fed the successor's replies and failures, and
//! decides once ([`Decision`]) whether the state was handed over or why
//! not ([`AbortReason`]).

use std::fmt;

use super::reply::Reply;

/// Why a transfer was aborted.
///
/// ```
/// use lameduck_core::handover::AbortReason;
/// assert_eq!(AbortReason::NotTaken.to_string(), "reported ready without taking the restart state");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbortReason {
    /// The successor refused the state ([`Reply::Refused`]).
    Refused,
    /// The successor reported ready without taking a non-empty state.
    NotTaken,
    /// The successor's replies broke the protocol (an unknown or
    /// misplaced reply, the descriptors not received).
    Protocol,
    /// The state could not be sent (the successor closed its end).
    SendFailed,
    /// The successor exited, was killed or was not ready in time.
    SuccessorFailed,
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbortReason::Refused => "refused the restart state",
            AbortReason::NotTaken => "reported ready without taking the restart state",
            AbortReason::Protocol => "broke the restart state protocol",
            AbortReason::SendFailed => "could not be sent the restart state",
            AbortReason::SuccessorFailed => "failed before it was ready",
        })
    }
}

/// Where a [`Transfer`] is.
///
/// ```
/// use lameduck_core::handover::{Transfer, TransferState};
/// assert_eq!(Transfer::offered(1).state(), TransferState::Offered);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferState {
    /// Sent (or being sent); the successor has not taken it yet.
    Offered,
    /// The successor took it; it is not ready yet.
    Taken,
    /// The successor took it and is ready: it is the successor's now.
    Committed,
    /// Not handed over: the old process keeps serving with its own.
    Aborted(AbortReason),
}

/// The decision, once made.
///
/// ```
/// use lameduck_core::handover::{Decision, Reply, Transfer};
/// let mut transfer = Transfer::offered(0);
/// assert_eq!(transfer.reply(&Reply::Ready), Ok(Some(Decision::Commit)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Hand off: the successor has the state and serves.
    Commit,
    /// Roll back: kill the successor; the old process keeps its state.
    Abort(AbortReason),
}

/// An input the [`Transfer`] did not expect: it changed nothing.
///
/// ```
/// use lameduck_core::handover::{Reply, Transfer, TransferError};
/// let mut transfer = Transfer::offered(0);
/// transfer.reply(&Reply::Ready).unwrap();
/// assert_eq!(transfer.reply(&Reply::Ready), Err(TransferError::Decided));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransferError {
    /// The decision was already made; nothing changes it.
    Decided,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the state hand-over was already decided")
    }
}

impl std::error::Error for TransferError {}

/// The commit/abort decision for one offer, made once: `Offered` →
/// `Taken` → `Committed` when the successor reports ready; `Aborted` on a
/// refusal, a ready without taking (of a non-empty offer), a protocol
/// error, a failed send, or the successor's failure (exit, kill,
/// deadline). After the decision every input is
/// [`TransferError::Decided`].
///
/// ```
/// use lameduck_core::handover::*;
/// let mut transfer = Transfer::offered(2);
/// assert_eq!(transfer.reply(&Reply::Taken), Ok(None));
/// assert_eq!(transfer.failed(), Ok(Decision::Abort(AbortReason::SuccessorFailed)));
/// assert_eq!(transfer.state(), TransferState::Aborted(AbortReason::SuccessorFailed));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    items: usize,
    state: TransferState,
}

impl Transfer {
    /// An offer of `items` items, sent or being sent.
    ///
    /// ```
    /// assert_eq!(lameduck_core::handover::Transfer::offered(3).items(), 3);
    /// ```
    #[must_use]
    pub fn offered(items: usize) -> Transfer {
        Transfer {
            items,
            state: TransferState::Offered,
        }
    }

    /// Items offered.
    ///
    /// ```
    /// assert_eq!(lameduck_core::handover::Transfer::offered(0).items(), 0);
    /// ```
    #[must_use]
    pub fn items(&self) -> usize {
        self.items
    }

    /// Where it is.
    ///
    /// ```
    /// use lameduck_core::handover::{Reply, Transfer, TransferState};
    /// let mut transfer = Transfer::offered(1);
    /// transfer.reply(&Reply::Taken).unwrap();
    /// assert_eq!(transfer.state(), TransferState::Taken);
    /// ```
    #[must_use]
    pub fn state(&self) -> TransferState {
        self.state
    }

    /// The decision, if made.
    ///
    /// ```
    /// assert_eq!(lameduck_core::handover::Transfer::offered(1).decision(), None);
    /// ```
    #[must_use]
    pub fn decision(&self) -> Option<Decision> {
        match self.state {
            TransferState::Committed => Some(Decision::Commit),
            TransferState::Aborted(reason) => Some(Decision::Abort(reason)),
            TransferState::Offered | TransferState::Taken => None,
        }
    }

    fn decide(&mut self, state: TransferState) -> Option<Decision> {
        self.state = state;
        self.decision()
    }

    /// A reply from the successor: the decision if it makes one.
    ///
    /// ```
    /// use lameduck_core::handover::*;
    /// let mut transfer = Transfer::offered(1);
    /// assert_eq!(
    ///     transfer.reply(&Reply::Ready),
    ///     Ok(Some(Decision::Abort(AbortReason::NotTaken)))
    /// );
    /// ```
    pub fn reply(&mut self, reply: &Reply) -> Result<Option<Decision>, TransferError> {
        let next = match (self.state, reply) {
            (TransferState::Committed | TransferState::Aborted(_), _) => {
                return Err(TransferError::Decided);
            }
            (TransferState::Offered, Reply::Taken) => TransferState::Taken,
            (TransferState::Taken, Reply::Taken) => TransferState::Aborted(AbortReason::Protocol),
            (_, Reply::Refused(_)) => TransferState::Aborted(AbortReason::Refused),
            (TransferState::Offered, Reply::Ready) if self.items > 0 => {
                TransferState::Aborted(AbortReason::NotTaken)
            }
            (_, Reply::Ready) => TransferState::Committed,
        };
        Ok(self.decide(next))
    }

    /// The replies were not the protocol
    /// ([`ReplyError`](super::ReplyError)), or the descriptors did not
    /// arrive: abort.
    ///
    /// ```
    /// use lameduck_core::handover::*;
    /// let mut transfer = Transfer::offered(0);
    /// assert_eq!(transfer.protocol_error(), Ok(Decision::Abort(AbortReason::Protocol)));
    /// ```
    pub fn protocol_error(&mut self) -> Result<Decision, TransferError> {
        self.abort(AbortReason::Protocol)
    }

    /// The offer could not be sent: abort.
    ///
    /// ```
    /// use lameduck_core::handover::*;
    /// let mut transfer = Transfer::offered(0);
    /// assert_eq!(transfer.send_failed(), Ok(Decision::Abort(AbortReason::SendFailed)));
    /// ```
    pub fn send_failed(&mut self) -> Result<Decision, TransferError> {
        self.abort(AbortReason::SendFailed)
    }

    /// The successor exited, was killed, or was not ready in time: abort.
    ///
    /// ```
    /// use lameduck_core::handover::*;
    /// let mut transfer = Transfer::offered(0);
    /// assert_eq!(transfer.failed(), Ok(Decision::Abort(AbortReason::SuccessorFailed)));
    /// assert_eq!(transfer.failed(), Err(TransferError::Decided));
    /// ```
    pub fn failed(&mut self) -> Result<Decision, TransferError> {
        self.abort(AbortReason::SuccessorFailed)
    }

    fn abort(&mut self, reason: AbortReason) -> Result<Decision, TransferError> {
        match self.state {
            TransferState::Offered | TransferState::Taken => {
                self.state = TransferState::Aborted(reason);
                Ok(Decision::Abort(reason))
            }
            TransferState::Committed | TransferState::Aborted(_) => Err(TransferError::Decided),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_decisions() {
        let mut t = Transfer::offered(1);
        assert_eq!(t.reply(&Reply::Taken), Ok(None));
        assert_eq!(t.reply(&Reply::Ready), Ok(Some(Decision::Commit)));
        assert_eq!(t.failed(), Err(TransferError::Decided));
        assert_eq!(t.state(), TransferState::Committed);

        let mut t = Transfer::offered(1);
        t.reply(&Reply::Taken).unwrap();
        assert_eq!(
            t.reply(&Reply::Refused("late".into())),
            Ok(Some(Decision::Abort(AbortReason::Refused)))
        );
        let mut t = Transfer::offered(1);
        t.reply(&Reply::Taken).unwrap();
        assert_eq!(
            t.reply(&Reply::Taken),
            Ok(Some(Decision::Abort(AbortReason::Protocol)))
        );
        let mut t = Transfer::offered(0);
        assert_eq!(
            t.send_failed(),
            Ok(Decision::Abort(AbortReason::SendFailed))
        );
        assert_eq!(t.reply(&Reply::Ready), Err(TransferError::Decided));
    }
}
