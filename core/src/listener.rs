//! Listeners: ids and the table of which are open.

use std::fmt;

/// A listener's id: `Copy`, never reused by the [`Server`](crate::Server) that
/// issued it.
///
/// ```
/// # use std::time::Instant;
/// use lameduck_core::{Config, Server};
///
/// let mut server = Server::new(Config::default(), Instant::now());
/// let a = server.add_listener().unwrap();
/// let b = server.add_listener().unwrap();
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId(pub(crate) u32);

impl fmt::Display for ListenerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "listener {}", self.0)
    }
}

/// A listener's state in the [`ListenerTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListenerState {
    /// Accepting.
    Open,
    /// Handed to a successor ([`Action::ReleaseListener`](crate::Action::ReleaseListener)):
    /// this process stops accepting on it, but an accept that raced the
    /// release is still taken, until the caller reports it closed.
    Released,
    /// Closed: accepts are refused.
    Closed,
}

/// The listeners and their states. Listeners are few; a vector indexed by
/// id is enough.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListenerTable {
    states: Vec<ListenerState>,
}

impl ListenerTable {
    pub(crate) fn add(&mut self) -> ListenerId {
        let id = u32::try_from(self.states.len())
            .expect("fewer than 4 billion listeners are ever added");
        self.states.push(ListenerState::Open);
        ListenerId(id)
    }

    /// The state of a listener this table issued.
    pub(crate) fn state(&self, id: ListenerId) -> Option<ListenerState> {
        self.states.get(id.0 as usize).copied()
    }

    /// Marks `id` closed (whatever its state).
    pub(crate) fn close(&mut self, id: ListenerId) {
        if let Some(state) = self.states.get_mut(id.0 as usize) {
            *state = ListenerState::Closed;
        }
    }

    /// Moves every listener in state `from` to `to`, calling `each` with its id.
    pub(crate) fn move_all(
        &mut self,
        from: ListenerState,
        to: ListenerState,
        mut each: impl FnMut(ListenerId),
    ) {
        for (i, state) in self.states.iter_mut().enumerate() {
            if *state == from {
                *state = to;
                each(ListenerId(i as u32));
            }
        }
    }

    /// Whether any listener is in `state`.
    pub(crate) fn any(&self, state: ListenerState) -> bool {
        self.states.contains(&state)
    }
}
