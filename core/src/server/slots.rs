//! Connection-table bookkeeping: a live connection's stage, the error for
//! an input its state refuses, and every change to a slot — through
//! [`update`](Server::update), which keeps the deadline queue current — its
//! stage (and the counts), forgetting it (and resuming accepting), closing
//! it with a reason, and whether the server is at capacity.

use crate::action::{Action, CloseReason};
use crate::conn::{ConnId, Resolved, Stage};
use crate::error::{ConnEvent, Error};

use super::Server;

impl Server {
    pub(super) fn live_stage(&self, conn: ConnId) -> Result<Stage, Error> {
        match self.conns.resolve(conn) {
            Resolved::Live(_) => Ok(self.conns.slot(conn).stage),
            Resolved::Closed => Err(Error::ConnClosed(conn)),
            Resolved::Unknown => Err(Error::UnknownConn(conn)),
        }
    }

    pub(super) fn invalid(&self, conn: ConnId, stage: Stage, event: ConnEvent) -> Error {
        Error::InvalidTransition {
            conn,
            state: stage.state(),
            event,
        }
    }

    /// Changes a live slot with `change`, then indexes the time it is due
    /// at if that changed. Every change to what [`Slot::due`] reads goes
    /// through here, so each live slot that is due at all has a current
    /// entry in the deadline queue.
    ///
    /// [`Slot::due`]: crate::conn::Slot::due
    pub(super) fn update(&mut self, conn: ConnId, change: impl FnOnce(&mut crate::conn::Slot)) {
        let slot = self.conns.slot_mut(conn);
        let before = slot.due();
        change(slot);
        let after = slot.due();
        if after != before {
            self.deadlines.arm(conn, after, &self.conns);
        }
    }

    pub(super) fn set_stage(&mut self, conn: ConnId, to: Stage) {
        let from = self.conns.slot(conn).stage;
        self.update(conn, |slot| slot.stage = to);
        if let Some(n) = self.counts.of(from) {
            *n -= 1;
        }
        if let Some(n) = self.counts.of(to) {
            *n += 1;
        }
    }

    /// Forgets a live connection.
    pub(super) fn remove(&mut self, conn: ConnId) {
        if self.conns.slot(conn).lent {
            // Its task must not record anything more (it is not told: its
            // next input meets `ConnClosed`). What it recorded no longer
            // matters; the slot's stage (Idle) is what the counts hold.
            let _ = self.words.take_back(conn.index);
            self.lent -= 1;
        }
        let stage = self.conns.slot(conn).stage;
        if let Some(n) = self.counts.of(stage) {
            *n -= 1;
        }
        self.conns.remove(conn);
        if self.accept_paused && !self.at_capacity() && !self.listeners_closed() {
            self.accept_paused = false;
            self.actions.push_back(Action::ResumeAccepting);
        }
    }

    /// [`Config::max_connections`] connections are open.
    pub(super) fn at_capacity(&self) -> bool {
        self.config
            .max_connections
            .is_some_and(|max| self.conns.live() >= max)
    }

    /// The core closes a live connection: forget it and tell the caller.
    pub(super) fn close_conn(&mut self, conn: ConnId, reason: CloseReason) {
        self.remove(conn);
        self.actions.push_back(Action::CloseConn { conn, reason });
    }
}
