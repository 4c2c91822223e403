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

/// Which listeners are open. Listeners are few; a vector indexed by id is enough.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListenerTable {
    open: Vec<bool>,
}

impl ListenerTable {
    pub(crate) fn add(&mut self) -> ListenerId {
        let id =
            u32::try_from(self.open.len()).expect("fewer than 4 billion listeners are ever added");
        self.open.push(true);
        ListenerId(id)
    }

    /// `Some(open)` for a listener this table issued.
    pub(crate) fn is_open(&self, id: ListenerId) -> Option<bool> {
        self.open.get(id.0 as usize).copied()
    }

    /// Marks `id` closed; returns whether it was open.
    pub(crate) fn close(&mut self, id: ListenerId) -> bool {
        match self.open.get_mut(id.0 as usize) {
            Some(open) => std::mem::replace(open, false),
            None => false,
        }
    }

    pub(crate) fn close_all(&mut self) {
        self.open.iter_mut().for_each(|open| *open = false);
    }

    /// Ids of the listeners still open.
    pub(crate) fn open_ids(&self) -> impl Iterator<Item = ListenerId> + '_ {
        self.open
            .iter()
            .enumerate()
            .filter(|(_, open)| **open)
            .map(|(i, _)| ListenerId(i as u32))
    }
}
