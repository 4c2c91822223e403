//! Locks that outlive a panic.
//!
//! Nothing under the crate's locks is meant to panic, and if something
//! did, the state it left is still the best there is: every mutex in the
//! crate is taken through [`lock`] (as in `*lock(&count) += 1`), which
//! recovers from poisoning instead of spreading one panic to every thread
//! that shares the lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
