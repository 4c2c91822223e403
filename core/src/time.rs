//! Virtual time inside the core: `Instant`s from the caller, stored compactly.
//!
//! The core keeps every point in time as whole nanoseconds since the first
//! `now` it was given (its *origin*). Eight bytes instead of sixteen per stored
//! deadline keeps a tracked connection small (≤ 64 bytes), and plain
//! integers make ordering and saturation explicit.

use std::time::{Duration, Instant};

/// Nanoseconds since the core's origin. [`Nanos::NEVER`] means "no deadline".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Nanos(pub(crate) u64);

impl Nanos {
    /// The absence of a deadline; also what a saturating addition reaches.
    pub(crate) const NEVER: Nanos = Nanos(u64::MAX);

    /// `self + d`, saturating at [`Nanos::NEVER`] (a deadline 584 years out is none).
    pub(crate) fn after(self, d: Duration) -> Nanos {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Nanos(self.0.saturating_add(d))
    }

    pub(crate) fn is_never(self) -> bool {
        self == Nanos::NEVER
    }
}

/// The mapping between the caller's `Instant`s and [`Nanos`], and the latest
/// time seen.
///
/// Time never goes backwards inside the core: a `now` earlier than one already
/// seen is taken as the latest seen (callers on several threads may read the
/// clock in one order and call in another).
#[derive(Clone, Debug)]
pub(crate) struct Timeline {
    origin: Instant,
    latest: Nanos,
}

impl Timeline {
    pub(crate) fn new(origin: Instant) -> Self {
        Timeline {
            origin,
            latest: Nanos(0),
        }
    }

    /// `t` on this timeline: saturating at zero before the origin, and
    /// strictly before [`Nanos::NEVER`].
    pub(crate) fn nanos(&self, t: Instant) -> Nanos {
        let n = t
            .checked_duration_since(self.origin)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Nanos(n.min(u64::MAX - 1))
    }

    /// The `Instant` at [`Nanos`] zero.
    pub(crate) fn origin(&self) -> Instant {
        self.origin
    }

    /// Moves the latest time to `now` if it is later, and returns the latest.
    pub(crate) fn advance(&mut self, now: Instant) -> Nanos {
        let n = self.nanos(now);
        if n > self.latest {
            self.latest = n;
        }
        self.latest
    }

    /// The `Instant` for `n`, or `None` for [`Nanos::NEVER`] or an `Instant`
    /// the platform cannot represent (which is as good as never).
    pub(crate) fn instant(&self, n: Nanos) -> Option<Instant> {
        if n.is_never() {
            return None;
        }
        self.origin.checked_add(Duration::from_nanos(n.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(Nanos(5).after(Duration::MAX), Nanos::NEVER);
        assert_eq!(Nanos(5).after(Duration::from_nanos(7)), Nanos(12));
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the origin of virtual time in a test
    fn time_never_goes_backwards() {
        let origin = Instant::now();
        let mut t = Timeline::new(origin);
        assert_eq!(
            t.advance(origin + Duration::from_secs(2)),
            Nanos(2_000_000_000)
        );
        assert_eq!(
            t.advance(origin + Duration::from_secs(1)),
            Nanos(2_000_000_000)
        );
        assert_eq!(
            t.instant(Nanos(1_000)),
            Some(origin + Duration::from_nanos(1_000))
        );
        assert_eq!(t.instant(Nanos::NEVER), None);
    }
}
