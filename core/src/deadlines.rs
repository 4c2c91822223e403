//! The index of connection deadlines: a min-heap with lazy deletion.
//!
//! Re-arming a connection's timer pushes a new entry and leaves the old one in
//! place; an entry is *current* only while its slot still holds the same
//! generation and is due at the same time ([`Slot::due`](crate::conn::Slot::due)). Stale entries are dropped when they reach
//! the top, and the heap is compacted in place when they reach half the live
//! connections, so memory stays proportional to the connections and steady
//! state allocates nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::conn::{ConnId, ConnTable};
use crate::time::Nanos;

/// One armed deadline: 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Nanos,
    index: u32,
    generation: u32,
}

impl Entry {
    fn is_current(&self, conns: &ConnTable) -> bool {
        conns
            .live_at(self.index, self.generation)
            .is_some_and(|slot| slot.due() == self.at)
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct DeadlineQueue {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl DeadlineQueue {
    /// Records that `id` is now due at `at` (which the caller has stored in
    /// the slot). Earlier entries for `id` become stale.
    pub(crate) fn arm(&mut self, id: ConnId, at: Nanos, conns: &ConnTable) {
        if at.is_never() {
            return;
        }
        // Compact in place before growing past one and a half times the
        // live set, and before the allocation would grow if a fifth of the
        // entries are stale (at most one is current per live connection):
        // each compaction frees at least a fifth, so the cost is amortised
        // O(1), and the allocation stays near the live deadlines.
        let live = conns.live();
        let len = self.heap.len();
        let full = len == self.heap.capacity();
        if len >= live + live / 2 + 64 || (full && len >= live + live / 4 + 64) {
            self.compact(conns);
        }
        self.heap.push(Reverse(Entry {
            at,
            index: id.index,
            generation: id.generation,
        }));
    }

    /// Drops the stale entries, and the duplicates of current ones (a
    /// timer re-armed to the time it had before leaves two entries that
    /// are both current: without this, such pairs would survive every
    /// compaction and make it run on every push).
    fn compact(&mut self, conns: &ConnTable) {
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.retain(|Reverse(e)| e.is_current(conns));
        entries.sort_unstable();
        entries.dedup();
        self.heap = BinaryHeap::from(entries);
    }

    /// The earliest current deadline, dropping stale entries on the way.
    pub(crate) fn earliest(&mut self, conns: &ConnTable) -> Option<Nanos> {
        while let Some(Reverse(top)) = self.heap.peek() {
            if top.is_current(conns) {
                return Some(top.at);
            }
            self.heap.pop();
        }
        None
    }

    /// The top entry's time, current or not: exact after [`Self::earliest`]
    /// has dropped the stale entries above the first current one.
    pub(crate) fn peek(&self) -> Option<Nanos> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Removes and returns a connection whose current deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Nanos, conns: &ConnTable) -> Option<ConnId> {
        let at = self.earliest(conns)?;
        if at > now {
            return None;
        }
        // earliest() just returned Some: the heap has a top.
        let Reverse(e) = self.heap.pop().expect("earliest() saw an entry");
        Some(ConnId {
            index: e.index,
            generation: e.generation,
        })
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.heap.capacity() * size_of::<Reverse<Entry>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::ListenerId;

    #[test]
    fn an_entry_is_16_bytes() {
        assert_eq!(size_of::<Reverse<Entry>>(), 16);
    }

    #[test]
    fn stale_entries_are_skipped_and_compacted() {
        let mut conns = ConnTable::default();
        let mut q = DeadlineQueue::default();
        let id = conns.insert(ListenerId(0), Nanos(0));
        for at in 1..1000u64 {
            conns.slot_mut(id).deadline = Nanos(at);
            q.arm(id, Nanos(at), &conns);
        }
        assert!(
            q.heap.len() <= 2 * conns.live() + 64,
            "compacted: {}",
            q.heap.len()
        );
        assert_eq!(q.earliest(&conns), Some(Nanos(999)));
        assert_eq!(q.pop_due(Nanos(998), &conns), None);
        assert_eq!(q.pop_due(Nanos(999), &conns), Some(id));
    }
}
