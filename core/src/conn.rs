//! Connections: their ids, their states, and the table that stores them.

use std::fmt;

use crate::listener::ListenerId;
use crate::time::Nanos;

/// A connection's id: `Copy`, cheap, never reused by the [`Server`](crate::Server)
/// that issued it.
///
/// An id names one connection for its whole life. After the connection is
/// closed the id keeps meaning "that closed connection": events for it are
/// answered with [`Error::ConnClosed`](crate::Error::ConnClosed) rather than
/// reaching a newer connection.
///
/// ```
/// # use std::time::Instant;
/// use lameduck_core::{Config, Server};
///
/// let now = Instant::now();
/// let mut server = Server::new(Config::default(), now);
/// let listener = server.add_listener().unwrap();
/// let a = server.accept(listener, now).unwrap();
/// let b = server.accept(listener, now).unwrap();
/// assert_ne!(a, b);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({}.{})", self.index, self.generation)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn {}.{}", self.index, self.generation)
    }
}

/// A connection's state, as in Go's `net/http` `ConnState`.
///
/// ```
/// # use std::time::Instant;
/// use lameduck_core::{Config, ConnState, Server};
///
/// let now = Instant::now();
/// let mut server = Server::new(Config::default(), now);
/// let l = server.add_listener().unwrap();
/// let c = server.accept(l, now).unwrap();
/// assert_eq!(server.conn_state(c), Ok(ConnState::New));
/// server.request_started(c, now).unwrap();
/// assert_eq!(server.conn_state(c), Ok(ConnState::Active));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// Accepted; no byte of a request read yet (Go's `StateNew`).
    New,
    /// One or more bytes of a request read; stays Active until the response is
    /// done (Go's `StateActive`).
    Active,
    /// Kept alive between requests, waiting for the next (Go's `StateIdle`).
    Idle,
    /// Taken over by the application, e.g. after an HTTP upgrade. Terminal:
    /// the core never closes it and does not wait for it unless
    /// [`Config::wait_for_hijacked`](crate::Config::wait_for_hijacked) is set;
    /// it is told when shutdown begins (Go's `StateHijacked`).
    Hijacked,
    /// Closed (Go's `StateClosed`). Terminal.
    Closed,
}

/// Why a timer is armed on a connection; when it fires, the reason it closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Timer {
    None,
    /// Request head not complete in time (`Config::header_timeout`).
    Header,
    /// Request body not complete in time (`Config::body_timeout`).
    Body,
    /// Idle too long between requests (`Config::idle_timeout`).
    Idle,
    /// A New connection, draining, silent for `Config::new_conn_grace`.
    NewConnGrace,
    /// The connection is lent ([`crate::lease`]): take it back, then arm
    /// the exact timer of the stage recorded. Never closes by itself.
    Lease,
}

/// The stored stage of a slot: [`ConnState`] with the Active state split by
/// how much of the request has been read, plus the vacant slot states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Stage {
    /// Free for reuse; ids with a smaller generation are closed connections.
    Vacant,
    /// Never reused again: its generation is spent.
    Retired,
    New,
    /// Active, request head not complete yet.
    ReadingHead,
    /// Active, head complete, body not read completely yet (or not reported).
    ReadingBody,
    /// Active, the whole request read: the response under way.
    Active,
    Idle,
    Hijacked,
}

impl Stage {
    pub(crate) fn state(self) -> ConnState {
        match self {
            Stage::Vacant | Stage::Retired => ConnState::Closed,
            Stage::New => ConnState::New,
            Stage::ReadingHead | Stage::ReadingBody | Stage::Active => ConnState::Active,
            Stage::Idle => ConnState::Idle,
            Stage::Hijacked => ConnState::Hijacked,
        }
    }

    /// A request is in progress (the write timeout applies).
    pub(crate) fn in_request(self) -> bool {
        matches!(
            self,
            Stage::ReadingHead | Stage::ReadingBody | Stage::Active
        )
    }
}

/// One connection's record: 32 bytes.
///
/// A connection has at most two deadlines at once: its stage's `timer`
/// (header, body, idle or grace) and, while a request is in progress, the
/// write stall. It is due at the earlier ([`Slot::due`]).
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    /// While [`Stage::New`]: when it was accepted (its grace and first
    /// header timer count from it). While a request is in progress
    /// ([`Stage::in_request`]): when its blocked write times out,
    /// [`Nanos::NEVER`] if none is blocked (or there is no write timeout).
    /// Otherwise unused. One field serves both, since a connection is never
    /// New and in a request at once: the slot stays 32 bytes.
    pub(crate) mark: Nanos,
    /// When `timer` fires; [`Nanos::NEVER`] when no timer is armed.
    pub(crate) deadline: Nanos,
    pub(crate) generation: u32,
    pub(crate) listener: ListenerId,
    pub(crate) stage: Stage,
    pub(crate) timer: Timer,
    /// A write is blocked: reported blocked and not unblocked since.
    pub(crate) write_blocked: bool,
    /// Streams open on a multiplexed connection (HTTP/2): Active while any
    /// is, 0 otherwise. Always 0 on a connection served one request at a
    /// time.
    pub(crate) streams: u16,
    /// Its transitions are lent to its task ([`crate::lease`]): `stage` is
    /// Idle here, the true stage is in the lease.
    pub(crate) lent: bool,
    /// Its task holds a lease ([`Server::lease`](crate::Server::lease)):
    /// it may be lent.
    pub(crate) leased: bool,
}

impl Slot {
    /// When the connection is next due: its timer's deadline or, in a
    /// request, its write stall's, whichever is earlier.
    pub(crate) fn due(&self) -> Nanos {
        if self.stage.in_request() {
            self.deadline.min(self.mark)
        } else {
            self.deadline
        }
    }

    /// Whether the write stall is what is due at [`Slot::due`] (the
    /// stage's timer wins a tie).
    pub(crate) fn write_stall_due(&self) -> bool {
        self.stage.in_request() && self.mark < self.deadline
    }
}

/// What a [`ConnId`] refers to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Live, in this slot.
    Live(usize),
    /// The connection existed and is closed.
    Closed,
    /// This table never issued the id.
    Unknown,
}

/// A slab of [`Slot`]s with generations, so ids are never reused and memory is.
///
/// Steady state allocates nothing: a closed connection's slot goes on the free
/// list and the next accept takes it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl ConnTable {
    pub(crate) fn insert(&mut self, listener: ListenerId, now: Nanos) -> ConnId {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len())
                    .expect("more than 4 billion simultaneous connections cannot be open");
                self.slots.push(Slot {
                    mark: now,
                    deadline: Nanos::NEVER,
                    generation: 0,
                    listener,
                    stage: Stage::Vacant,
                    timer: Timer::None,
                    write_blocked: false,
                    streams: 0,
                    lent: false,
                    leased: false,
                });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        debug_assert_eq!(
            slot.stage,
            Stage::Vacant,
            "the free list holds vacant slots only"
        );
        slot.mark = now;
        slot.deadline = Nanos::NEVER;
        slot.listener = listener;
        slot.stage = Stage::New;
        slot.timer = Timer::None;
        slot.write_blocked = false;
        slot.streams = 0;
        slot.lent = false;
        slot.leased = false;
        self.live += 1;
        ConnId {
            index,
            generation: slot.generation,
        }
    }

    pub(crate) fn resolve(&self, id: ConnId) -> Resolved {
        let Some(slot) = self.slots.get(id.index as usize) else {
            return Resolved::Unknown;
        };
        match slot.stage {
            Stage::Vacant if id.generation < slot.generation => Resolved::Closed,
            Stage::Retired if id.generation <= slot.generation => Resolved::Closed,
            Stage::Vacant | Stage::Retired => Resolved::Unknown,
            _ if id.generation == slot.generation => Resolved::Live(id.index as usize),
            _ if id.generation < slot.generation => Resolved::Closed,
            _ => Resolved::Unknown,
        }
    }

    /// The slot of a connection the caller knows is live.
    pub(crate) fn slot(&self, id: ConnId) -> &Slot {
        let slot = &self.slots[id.index as usize];
        debug_assert_eq!(slot.generation, id.generation, "slot() takes live ids only");
        slot
    }

    /// The slot of a connection the caller knows is live.
    pub(crate) fn slot_mut(&mut self, id: ConnId) -> &mut Slot {
        let slot = &mut self.slots[id.index as usize];
        debug_assert_eq!(
            slot.generation, id.generation,
            "slot_mut() takes live ids only"
        );
        slot
    }

    /// The live slot at `index` if it still holds `generation`.
    pub(crate) fn live_at(&self, index: u32, generation: u32) -> Option<&Slot> {
        self.slots.get(index as usize).filter(|s| {
            s.generation == generation && !matches!(s.stage, Stage::Vacant | Stage::Retired)
        })
    }

    /// Frees a live slot. The caller has checked that `id` is live.
    pub(crate) fn remove(&mut self, id: ConnId) {
        let slot = &mut self.slots[id.index as usize];
        debug_assert_eq!(
            slot.generation, id.generation,
            "remove() takes live ids only"
        );
        slot.deadline = Nanos::NEVER;
        slot.mark = Nanos::NEVER;
        slot.timer = Timer::None;
        slot.lent = false;
        self.live -= 1;
        match slot.generation.checked_add(1) {
            Some(g) => {
                slot.generation = g;
                slot.stage = Stage::Vacant;
                self.free.push(id.index);
            }
            // Its ids are spent: retire the slot rather than reuse an id.
            None => slot.stage = Stage::Retired,
        }
    }

    /// The id of the live connection in slot `index`, if any.
    pub(crate) fn live_id(&self, index: usize) -> Option<ConnId> {
        let slot = self.slots.get(index)?;
        match slot.stage {
            Stage::Vacant | Stage::Retired => None,
            _ => Some(ConnId {
                index: index as u32,
                generation: slot.generation,
            }),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Bytes of memory held per slot and per free-list entry.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>() + self.free.capacity() * size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_32_bytes() {
        assert_eq!(size_of::<Slot>(), 32);
    }

    #[test]
    fn ids_are_not_reused() {
        let mut t = ConnTable::default();
        let l = ListenerId(0);
        let a = t.insert(l, Nanos(0));
        t.remove(a);
        let b = t.insert(l, Nanos(0));
        assert_eq!(a.index, b.index, "the slot is reused");
        assert_ne!(a, b, "the id is not");
        assert_eq!(t.resolve(a), Resolved::Closed);
        assert_eq!(t.resolve(b), Resolved::Live(b.index as usize));
        let future = ConnId {
            index: b.index,
            generation: b.generation + 1,
        };
        assert_eq!(t.resolve(future), Resolved::Unknown);
        assert_eq!(
            t.resolve(ConnId {
                index: 9,
                generation: 0
            }),
            Resolved::Unknown
        );
    }

    #[test]
    fn a_spent_slot_is_retired() {
        let mut t = ConnTable::default();
        let a = t.insert(ListenerId(0), Nanos(0));
        t.slots[0].generation = u32::MAX;
        let a = ConnId {
            generation: u32::MAX,
            ..a
        };
        t.remove(a);
        assert_eq!(t.resolve(a), Resolved::Closed);
        let b = t.insert(ListenerId(0), Nanos(0));
        assert_ne!(b.index, a.index);
    }
}
