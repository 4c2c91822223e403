//! A virtual clock: time that moves only when a test moves it.
//!
//! `lameduck-core` never reads the time itself; every call takes `now`. A
//! test (or a driver under test) passes [`VirtualClock::now`] instead of
//! `Instant::now()`, and advances the clock by exactly what it wants to
//! happen: the boundaries are exact (4.999 s is not 5 s), and no test sleeps.
//!
//! ```
//! use std::time::Duration;
//! use lameduck_core::{Action, CloseReason, Config, Server};
//! use lameduck_testkit::clock::VirtualClock;
//!
//! let mut clock = VirtualClock::new();
//! let mut server = Server::new(Config::default(), clock.now());
//! let listener = server.add_listener().unwrap();
//! let conn = server.accept(listener, clock.now()).unwrap();
//! server.shutdown(clock.now(), None);
//! while server.poll_action().is_some() {}
//!
//! // A new connection's grace (5 s by default) is exact.
//! clock.advance(Duration::from_millis(4_999));
//! server.handle_timeout(clock.now());
//! assert_eq!(server.poll_action(), None);
//! clock.advance(Duration::from_millis(1));
//! server.handle_timeout(clock.now());
//! assert_eq!(
//!     server.poll_action(),
//!     Some(Action::CloseConn { conn, reason: CloseReason::NewConnGrace })
//! );
//! ```

use std::time::{Duration, Instant};

/// A clock that moves only when told to: an origin and the time elapsed
/// since it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualClock {
    origin: Instant,
    elapsed: Duration,
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock::new()
    }
}

impl VirtualClock {
    /// A clock at its origin, which is the real time of this call (an
    /// `Instant` has no other origin to take); from here on it moves only
    /// with [`advance`](VirtualClock::advance).
    #[must_use]
    pub fn new() -> VirtualClock {
        #[allow(clippy::disallowed_methods)] // the origin of virtual time
        let origin = Instant::now();
        VirtualClock::starting_at(origin)
    }

    /// A clock whose origin is `origin`.
    #[must_use]
    pub fn starting_at(origin: Instant) -> VirtualClock {
        VirtualClock {
            origin,
            elapsed: Duration::ZERO,
        }
    }

    /// The current virtual time.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.origin + self.elapsed
    }

    /// The origin.
    #[must_use]
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The virtual time elapsed since the origin.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&mut self, by: Duration) {
        self.elapsed += by;
    }

    /// Moves the clock forward to `at`; an `at` not after [`now`](VirtualClock::now)
    /// leaves it where it is (a clock never goes back).
    pub fn advance_to(&mut self, at: Instant) {
        self.elapsed = self.elapsed.max(at.saturating_duration_since(self.origin));
    }
}
