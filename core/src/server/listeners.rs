//! The listener side of a [`Server`]: registering a listener, the caller
//! reporting one closed (or a released one finished), and closing the open
//! ones when a drain begins. Releasing them to a successor is
//! [`hand_off`](Server::hand_off)'s, in `shutdown.rs`.

use crate::action::Action;
use crate::error::Error;
use crate::listener::{ListenerId, ListenerState};

use super::Server;

impl Server {
    /// Registers a listener. Refused with [`Error::ServerClosed`] once shutdown
    /// has begun (Go: `trackListener` returns false when `shuttingDown()`, and
    /// `Serve` returns `ErrServerClosed`).
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Error, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// assert!(server.add_listener().is_ok());
    /// server.close(now);
    /// assert_eq!(server.add_listener(), Err(Error::ServerClosed));
    /// ```
    pub fn add_listener(&mut self) -> Result<ListenerId, Error> {
        if self.phase.is_shutting_down() {
            return Err(Error::ServerClosed);
        }
        Ok(self.listeners.add())
    }

    /// The caller closed or lost a listener on its own (e.g. a fatal accept
    /// error), or finished releasing it after [`Action::ReleaseListener`]
    /// (its accept loop ended). Accepts on it are refused from now on; a
    /// drain that waited only for a released listener completes in this
    /// call.
    ///
    /// ```
    /// # use std::time::Instant;
    /// use lameduck_core::{Config, Error, Server};
    /// let now = Instant::now();
    /// let mut server = Server::new(Config::default(), now);
    /// let l = server.add_listener().unwrap();
    /// server.listener_closed(l).unwrap();
    /// assert_eq!(server.accept(l, now), Err(Error::ListenerClosed(l)));
    /// ```
    pub fn listener_closed(&mut self, listener: ListenerId) -> Result<(), Error> {
        match self.listeners.state(listener) {
            None => Err(Error::UnknownListener(listener)),
            Some(_) => {
                self.listeners.close(listener);
                self.maybe_complete();
                Ok(())
            }
        }
    }

    /// No listener is open: nothing to resume.
    pub(super) fn listeners_closed(&self) -> bool {
        !self.listeners.any(ListenerState::Open)
    }

    /// Closes the open listeners (released ones close on their own).
    pub(super) fn close_listeners(&mut self) {
        let actions = &mut self.actions;
        self.listeners
            .move_all(ListenerState::Open, ListenerState::Closed, |l| {
                actions.push_back(Action::CloseListener(l));
            });
    }
}
