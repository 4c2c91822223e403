//! Locks that outlive a panic, and waits that miss no notification.
//!
//! Nothing under the crate's locks is meant to panic, and if something
//! did, the state it left is still the best there is: every mutex in the
//! crate is taken through [`lock`] (as in `*lock(&count) += 1`), which
//! recovers from poisoning instead of spreading one panic to every thread
//! that shares the lock.
//!
//! A task that waits for shared state to change waits through
//! [`wait_for`] or [`wait_until`] (as in
//! `wait_until(&event, || flag.load(Ordering::Acquire)).await`), which
//! re-check after registering a listener; whoever changes the state
//! notifies the event.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use event_listener::Event;

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Resolves to what `check` finds, once it finds something. `check` runs
/// before a listener on `event` is registered and again after, so a change
/// between the check and the wait is never missed; each pass waits for one
/// notification, and every change of what `check` reads notifies `event`.
pub(crate) async fn wait_for<T>(event: &Event, mut check: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(found) = check() {
            return found;
        }
        let listener = event.listen();
        if let Some(found) = check() {
            return found;
        }
        listener.await;
    }
}

/// Resolves once `holds` is true ([`wait_for`] with nothing to return).
pub(crate) async fn wait_until(event: &Event, mut holds: impl FnMut() -> bool) {
    wait_for(event, || holds().then_some(())).await;
}

/// Tells a loop to stop (an accept loop, a stage of hooks, an HTTP/2
/// connection's task); an accept loop also says when it started accepting
/// and when it ended (for a hand-off, which waits for both).
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopped: AtomicBool,
    event: Event,
    armed: AtomicBool,
    exited: AtomicBool,
    /// Notified when `armed` or `exited` is set.
    loop_event: Event,
}

impl Stop {
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    /// Resolves once stopped.
    pub(crate) async fn wait(&self) {
        wait_until(&self.event, || self.stopped.load(Ordering::Acquire)).await;
    }

    /// The accept loop is running (it accepts from now on).
    pub(crate) fn armed(&self) {
        self.armed.store(true, Ordering::Release);
        self.loop_event.notify(usize::MAX);
    }

    /// The accept loop ended (or will never run): it accepts no more.
    pub(crate) fn exited(&self) {
        self.exited.store(true, Ordering::Release);
        self.loop_event.notify(usize::MAX);
    }

    pub(crate) async fn wait_armed(&self) {
        wait_until(&self.loop_event, || self.armed.load(Ordering::Acquire)).await;
    }
}
