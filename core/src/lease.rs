//! Leases: a connection's keep-alive requests recorded without the machine.
//!
//! A keep-alive connection spends its life going Idle → Active → Idle, and
//! while the server simply serves, nothing the [`Server`](crate::Server)
//! decides depends on those transitions *when they happen* — only on where
//! they stand when a timer is due or the server changes phase. So the
//! machine may **lend** a connection's transitions to the connection's own
//! task: [`Server::lease`](crate::Server::lease) gives the task a [`Lease`],
//! one atomic word holding the connection's stage and when it entered it;
//! [`Lease::advance`] records a request's start, its head, its body and its
//! response's end (or a multiplexed connection's streams opening and
//! closing) there — a compare-and-swap, no lock, no call into the
//! machine — and answers `false` whenever the input must go to the machine
//! instead (the lease was taken back, or the event does not fit the stage:
//! the machine then answers exactly as it would have).
//!
//! The machine decides everything else, as before:
//! - **When to lend.** Only when the connection goes Idle while the server
//!   is [`Serving`](crate::Phase::Serving) with keep-alive on, with no write
//!   blocked (a multiplexed connection goes Idle when its last stream
//!   closes: its streams are lent the same way).
//! - **When to take back.** Before anything that needs the true stage: any
//!   input about the connection, every phase change ([`shutdown`],
//!   [`hand_off`], [`close`]), and a timer. The timer is armed at the lend
//!   time plus the shortest of the header, body and idle timeouts: no
//!   deadline of a transition made since can come sooner, so taking the
//!   lease back then and re-arming the exact deadline from the recorded
//!   time keeps every timeout exact. The connection goes through the
//!   machine until it is lent again at its next Idle.
//! - **What the word means** when taken back: the stage and the time it
//!   began, applied as if the inputs had been made at those times. The
//!   word keeps times in whole microseconds, rounded up: a timeout of a
//!   lent transition counts from its event or up to 1 µs later, never
//!   earlier.
//!
//! Queries ([`counts`](crate::Server::counts),
//! [`conn_state`](crate::Server::conn_state),
//! [`snapshot`](crate::Server::snapshot)) read lent words as they stand.
//! [`poll_timeout`](crate::Server::poll_timeout) may be earlier than the
//! next close while a connection is lent (the take-back); that wake-up
//! changes nothing visible.
//!
//! The word is shared memory between the machine and the connection's
//! task — the one place the core touches memory another thread writes —
//! and nothing waits on it: each side does one atomic operation.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use lameduck_core::{Action, CloseReason, Config, ConnEvent, ConnState, Server};
//!
//! let t0 = Instant::now();
//! let at = |ms| t0 + Duration::from_millis(ms);
//! let config = Config { header_timeout: Some(Duration::from_secs(1)), ..Config::default() };
//! let mut server = Server::new(config, t0);
//! let l = server.add_listener().unwrap();
//! let c = server.accept(l, at(0)).unwrap();
//! let lease = server.lease(c).unwrap();
//! let clock = server.lease_clock();
//!
//! // The first request goes through the machine; its end lends the connection.
//! server.request_started(c, at(0)).unwrap();
//! server.response_done(c, at(5)).unwrap();
//! assert!(lease.is_lent());
//!
//! // The next requests are the task's own business.
//! assert!(lease.advance(ConnEvent::RequestStarted, &clock, || at(10)));
//! assert!(lease.advance(ConnEvent::BodyComplete, &clock, || at(10)));
//! assert!(lease.advance(ConnEvent::ResponseDone, &clock, || at(12)));
//! assert!(lease.advance(ConnEvent::RequestStarted, &clock, || at(20)));
//! assert_eq!(server.conn_state(c), Ok(ConnState::Active));
//!
//! // Its head never completes: the header timeout is exact all the same.
//! server.handle_timeout(at(1_005)); // the take-back: nothing is due yet
//! assert_eq!(server.poll_action(), None);
//! assert_eq!(server.poll_timeout(), Some(at(1_020)));
//! server.handle_timeout(at(1_020));
//! assert_eq!(
//!     server.poll_action(),
//!     Some(Action::CloseConn { conn: c, reason: CloseReason::HeaderTimeout })
//! );
//! assert!(!lease.advance(ConnEvent::HeadersComplete, &clock, || at(1_021)));
//! ```
//!
//! [`shutdown`]: crate::Server::shutdown
//! [`hand_off`]: crate::Server::hand_off
//! [`close`]: crate::Server::close

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::conn::Stage;
use crate::error::ConnEvent;
use crate::time::Nanos;

// A connection's word: bits 0–2 the stage, bit 3 lent, bits 4–11 a tag
// (the low byte of the connection's generation: a lease of an earlier
// connection in the same slot never matches), bits 12–63 the payload —
// when the stage began, in whole microseconds on the machine's timeline
// (rounded up: a timeout never counts from before its event; 52 bits, 142
// years), or for a multiplexed connection with streams open, how many.
const STAGE: u64 = 0b111;
const IDLE: u64 = 0;
const HEAD: u64 = 1;
const BODY: u64 = 2;
const ACTIVE: u64 = 3;
/// Active with streams open (a multiplexed connection): the payload is
/// their number.
const STREAMS: u64 = 4;
const LENT: u64 = 0b1000;
const TAG_SHIFT: u32 = 4;
const TAG: u64 = 0xFF << TAG_SHIFT;
const SHIFT: u32 = 12;
const PAYLOAD_MAX: u64 = u64::MAX >> SHIFT;

/// Words per chunk: a chunk is allocated once and shared by the machine
/// and the leases of the connections in its slots.
const CHUNK: usize = 64;
type Chunk = [AtomicU64; CHUNK];

/// The machine's side: one word per connection slot, by slot index, in
/// chunks that never move (8 bytes a connection; no allocation per
/// connection).
#[derive(Debug, Default)]
pub(crate) struct Words {
    chunks: Vec<Arc<Chunk>>,
}

impl Words {
    fn cell(&self, index: u32) -> &AtomicU64 {
        let index = index as usize;
        &self.chunks[index / CHUNK][index % CHUNK]
    }

    /// A lease on slot `index` for the connection with generation tag `tag`.
    pub(crate) fn lease(&mut self, index: u32, tag: u32) -> Lease {
        let chunk = index as usize / CHUNK;
        while self.chunks.len() <= chunk {
            self.chunks
                .push(Arc::new(std::array::from_fn(|_| AtomicU64::new(0))));
        }
        Lease {
            chunk: self.chunks[chunk].clone(),
            offset: (index as usize % CHUNK) as u8,
            tag: tag as u8,
        }
    }

    /// Lends slot `index` (its lease was made, [`Words::lease`]) to the
    /// connection tagged `tag`, Idle since the lend (the machine keeps that
    /// time exactly; the word says zero, "not later").
    pub(crate) fn lend(&self, index: u32, tag: u32) {
        let word = (u64::from(tag as u8) << TAG_SHIFT) | LENT | IDLE;
        self.cell(index).store(word, Ordering::Release);
    }

    /// Takes slot `index` back: what was recorded. After this every
    /// [`Lease::advance`] on it answers `false`.
    pub(crate) fn take_back(&self, index: u32) -> Recorded {
        Recorded::of(self.cell(index).fetch_and(!LENT, Ordering::AcqRel))
    }

    /// What slot `index` has recorded, without taking it back.
    pub(crate) fn peek(&self, index: u32) -> Recorded {
        Recorded::of(self.cell(index).load(Ordering::Acquire))
    }

    /// Heap bytes: the chunks (with their `Arc` counts) and their index.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.chunks.len() * (size_of::<Chunk>() + 2 * size_of::<usize>())
            + self.chunks.capacity() * size_of::<Arc<Chunk>>()
    }
}

/// Nanoseconds to whole microseconds, rounded up, within the payload.
fn micros(nanos: u64) -> u64 {
    nanos.div_ceil(1_000).min(PAYLOAD_MAX)
}

/// One connection's lent transitions: its task's handle on the word it
/// shares with the machine (see the [module docs](self)). Get it with
/// [`Server::lease`](crate::Server::lease).
#[derive(Clone)]
pub struct Lease {
    chunk: Arc<Chunk>,
    offset: u8,
    tag: u8,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.cell().load(Ordering::Acquire);
        f.debug_struct("Lease")
            .field("lent", &self.lent(word))
            .field("recorded", &Recorded::of(word))
            .finish()
    }
}

impl Lease {
    fn cell(&self) -> &AtomicU64 {
        &self.chunk[usize::from(self.offset)]
    }

    /// `word` is lent to this lease's connection.
    fn lent(&self, word: u64) -> bool {
        word & LENT != 0 && (word & TAG) >> TAG_SHIFT == u64::from(self.tag)
    }

    /// Records `event` if the connection is lent and the event fits its
    /// stage: `true` means it is recorded and must **not** be reported to
    /// the machine. `false` means report it as usual
    /// ([`Server::request_started`](crate::Server::request_started), …),
    /// and take the machine's answer.
    ///
    /// `now` is called only when the machine needs the time of the stage
    /// entered (`clock` says which stages have a timeout). Lent events:
    /// [`RequestStarted`](ConnEvent::RequestStarted),
    /// [`HeadersComplete`](ConnEvent::HeadersComplete),
    /// [`BodyComplete`](ConnEvent::BodyComplete) and
    /// [`ResponseDone`](ConnEvent::ResponseDone) (with keep-alive: a lent
    /// connection is one the server keeps alive). Every other event always
    /// goes to the machine. A multiplexed connection's
    /// [`StreamOpened`](ConnEvent::StreamOpened) and
    /// [`StreamClosed`](ConnEvent::StreamClosed) are lent the same way
    /// (Active while any stream is open, Idle at none); the two kinds do
    /// not mix.
    pub fn advance(
        &self,
        event: ConnEvent,
        clock: &LeaseClock,
        now: impl FnOnce() -> Instant,
    ) -> bool {
        let word = self.cell().load(Ordering::Acquire);
        if !self.lent(word) {
            return false;
        }
        let to = match (event, word & STAGE) {
            (ConnEvent::RequestStarted, IDLE) => HEAD,
            (ConnEvent::HeadersComplete, HEAD) => BODY,
            (ConnEvent::BodyComplete, HEAD | BODY) => ACTIVE,
            // Idempotent while Active, as the machine's inputs are.
            (ConnEvent::HeadersComplete, BODY | ACTIVE) | (ConnEvent::BodyComplete, ACTIVE) => {
                return true;
            }
            (ConnEvent::ResponseDone, HEAD | BODY | ACTIVE) => IDLE,
            (ConnEvent::StreamOpened, IDLE) => return self.swap(word, STREAMS, 1),
            (ConnEvent::StreamOpened, STREAMS) => {
                let open = word >> SHIFT;
                if open >= u64::from(u16::MAX) {
                    return false; // the machine refuses it
                }
                return self.swap(word, STREAMS, open + 1);
            }
            (ConnEvent::StreamClosed, STREAMS) if word >> SHIFT > 1 => {
                return self.swap(word, STREAMS, (word >> SHIFT) - 1);
            }
            (ConnEvent::StreamClosed, STREAMS) => IDLE,
            _ => return false,
        };
        // The time the stage began, if a timeout counts from it.
        let since = if clock.timed & (1 << to) != 0 {
            clock.since(now())
        } else {
            0
        };
        self.swap(word, to, since)
    }

    /// Replaces `word` (read lent to this lease) by `stage` with `payload`.
    fn swap(&self, word: u64, stage: u64, payload: u64) -> bool {
        let next = (payload.min(PAYLOAD_MAX) << SHIFT) | (word & TAG) | LENT | stage;
        // Only the machine changes a lent word besides this task, and only
        // to take it back: a failed exchange means it was taken back.
        self.cell()
            .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The connection is lent: its requests go through [`advance`](Self::advance).
    #[must_use]
    pub fn is_lent(&self) -> bool {
        self.lent(self.cell().load(Ordering::Acquire))
    }
}

/// What a lease recorded: the stage, when it began (zero if no timeout
/// counts from it) and the streams open (multiplexed; else zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) stage: Stage,
    pub(crate) since: Nanos,
    pub(crate) streams: u16,
}

impl Recorded {
    fn of(word: u64) -> Recorded {
        let payload = word >> SHIFT;
        let stage = match word & STAGE {
            IDLE => Stage::Idle,
            HEAD => Stage::ReadingHead,
            BODY => Stage::ReadingBody,
            _ => Stage::Active,
        };
        if word & STAGE == STREAMS {
            Recorded {
                stage,
                since: Nanos(0),
                streams: u16::try_from(payload).unwrap_or(u16::MAX),
            }
        } else {
            Recorded {
                stage,
                since: Nanos(payload.saturating_mul(1_000)),
                streams: 0,
            }
        }
    }
}

/// What a task needs to stamp its lent transitions: the machine's time
/// origin and which stages have a timeout (only those read the clock).
/// `Copy`; get it once from [`Server::lease_clock`](crate::Server::lease_clock).
#[derive(Clone, Copy, Debug)]
pub struct LeaseClock {
    origin: Instant,
    /// Bit `1 << stage` set when entering that stage starts a timeout.
    timed: u8,
}

impl LeaseClock {
    pub(crate) fn new(
        origin: Instant,
        header: Option<Duration>,
        body: Option<Duration>,
        idle: Option<Duration>,
    ) -> LeaseClock {
        let bit = |d: Option<Duration>, stage: u64| u8::from(d.is_some()) << stage;
        LeaseClock {
            origin,
            timed: bit(header, HEAD) | bit(body, BODY) | bit(idle, IDLE),
        }
    }

    /// `now` on the machine's timeline, in whole microseconds (rounded up).
    fn since(&self, now: Instant) -> u64 {
        micros(
            now.checked_duration_since(self.origin)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // the origin of virtual time in a test
    fn origin() -> Instant {
        Instant::now()
    }

    fn clock(t0: Instant) -> LeaseClock {
        let s = Some(Duration::from_secs(1));
        LeaseClock::new(t0, s, s, s)
    }

    /// A slot's words and the lease of its connection (generation 0).
    fn lent() -> (Words, Lease) {
        let mut words = Words::default();
        let lease = words.lease(0, 0);
        words.lend(0, 0);
        (words, lease)
    }

    #[test]
    fn an_unlent_lease_records_nothing() {
        let t0 = origin();
        let mut words = Words::default();
        let lease = words.lease(0, 0);
        assert!(!lease.advance(ConnEvent::RequestStarted, &clock(t0), || t0));
        assert!(!lease.is_lent());
    }

    #[test]
    fn a_request_goes_through_its_stages_and_back_to_idle() {
        let t0 = origin();
        let ms = |n| t0 + Duration::from_millis(n);
        let (words, lease) = lent();
        let clock = clock(t0);
        assert!(lease.advance(ConnEvent::RequestStarted, &clock, || ms(1)));
        assert_eq!(words.peek(0).stage, Stage::ReadingHead);
        assert!(lease.advance(ConnEvent::HeadersComplete, &clock, || ms(2)));
        assert_eq!(words.peek(0).stage, Stage::ReadingBody);
        assert!(lease.advance(ConnEvent::HeadersComplete, &clock, || ms(3)));
        assert!(lease.advance(ConnEvent::BodyComplete, &clock, || ms(4)));
        assert_eq!(words.peek(0).stage, Stage::Active);
        assert!(lease.advance(ConnEvent::ResponseDone, &clock, || ms(5)));
        let recorded = words.take_back(0);
        assert_eq!(
            (recorded.stage, recorded.since),
            (Stage::Idle, Nanos(5_000_000))
        );
    }

    #[test]
    fn times_are_whole_microseconds_rounded_up() {
        let t0 = origin();
        let (words, lease) = lent();
        assert!(lease.advance(ConnEvent::RequestStarted, &clock(t0), || t0
            + Duration::from_nanos(1_001)));
        assert_eq!(words.take_back(0).since, Nanos(2_000));
    }

    #[test]
    fn events_that_do_not_fit_go_to_the_machine() {
        let t0 = origin();
        let (_words, lease) = lent();
        let clock = clock(t0);
        for event in [
            ConnEvent::HeadersComplete,
            ConnEvent::BodyComplete,
            ConnEvent::ResponseDone,
            ConnEvent::Hijack,
            ConnEvent::StreamClosed,
        ] {
            assert!(!lease.advance(event, &clock, || t0), "{event:?} while Idle");
        }
        assert!(lease.advance(ConnEvent::RequestStarted, &clock, || t0));
        assert!(!lease.advance(ConnEvent::RequestStarted, &clock, || t0));
        assert!(
            lease.is_lent(),
            "a refused event leaves the lease as it was"
        );
    }

    #[test]
    fn only_timed_stages_read_the_clock() {
        let t0 = origin();
        let (words, lease) = lent();
        let untimed = LeaseClock::new(t0, None, None, Some(Duration::from_secs(1)));
        let no_clock = || -> Instant { panic!("the clock was read for an untimed stage") };
        assert!(lease.advance(ConnEvent::RequestStarted, &untimed, no_clock));
        assert!(lease.advance(ConnEvent::HeadersComplete, &untimed, no_clock));
        assert!(lease.advance(ConnEvent::BodyComplete, &untimed, no_clock));
        assert!(lease.advance(ConnEvent::ResponseDone, &untimed, || t0
            + Duration::from_micros(40)));
        assert_eq!(words.take_back(0).since, Nanos(40_000));
    }

    #[test]
    fn streams_are_counted_and_the_last_one_closing_is_idle() {
        let t0 = origin();
        let (words, lease) = lent();
        let clock = clock(t0);
        for _ in 0..3 {
            assert!(lease.advance(ConnEvent::StreamOpened, &clock, || panic!("untimed")));
        }
        assert!(
            !lease.advance(ConnEvent::RequestStarted, &clock, || t0),
            "kinds do not mix"
        );
        assert!(
            !lease.advance(ConnEvent::ResponseDone, &clock, || t0),
            "kinds do not mix"
        );
        assert!(lease.advance(ConnEvent::StreamClosed, &clock, || panic!("untimed")));
        assert_eq!(
            words.peek(0),
            Recorded {
                stage: Stage::Active,
                since: Nanos(0),
                streams: 2
            }
        );
        assert!(lease.advance(ConnEvent::StreamClosed, &clock, || panic!("untimed")));
        assert!(lease.advance(ConnEvent::StreamClosed, &clock, || t0
            + Duration::from_micros(9)));
        assert!(
            !lease.advance(ConnEvent::StreamClosed, &clock, || t0),
            "none open"
        );
        assert_eq!(
            words.take_back(0),
            Recorded {
                stage: Stage::Idle,
                since: Nanos(9_000),
                streams: 0
            }
        );
    }

    #[test]
    fn after_the_take_back_nothing_is_recorded() {
        let t0 = origin();
        let (words, lease) = lent();
        let clock = clock(t0);
        assert!(lease.advance(ConnEvent::RequestStarted, &clock, || t0));
        assert_eq!(words.take_back(0).stage, Stage::ReadingHead);
        assert!(!lease.is_lent());
        assert!(!lease.advance(ConnEvent::BodyComplete, &clock, || t0));
        assert!(!lease.advance(ConnEvent::ResponseDone, &clock, || t0));
        assert_eq!(words.peek(0).stage, Stage::ReadingHead, "unchanged");
    }

    #[test]
    fn an_earlier_connections_lease_never_records_on_the_slot_reused() {
        let t0 = origin();
        let mut words = Words::default();
        let old = words.lease(0, 6);
        let new = words.lease(0, 7);
        words.lend(0, 7);
        assert!(!old.is_lent());
        assert!(!old.advance(ConnEvent::RequestStarted, &clock(t0), || t0));
        assert!(new.advance(ConnEvent::RequestStarted, &clock(t0), || t0));
        assert_eq!(words.peek(0).stage, Stage::ReadingHead);
    }

    #[test]
    fn a_take_back_racing_a_task_loses_nothing() {
        // The task records requests as fast as it can while the machine
        // takes the lease back once: every transition the task was told it
        // recorded is in the word taken back, and none after it.
        for _ in 0..200 {
            let t0 = origin();
            let (words, lease) = lent();
            let clock = clock(t0);
            let task = std::thread::spawn(move || {
                let mut recorded = 0u32;
                for n in 0..10_000u32 {
                    let event = if n % 2 == 0 {
                        ConnEvent::RequestStarted
                    } else {
                        ConnEvent::ResponseDone
                    };
                    if !lease.advance(event, &clock, || t0) {
                        return recorded;
                    }
                    recorded += 1;
                }
                recorded
            });
            let stage = words.take_back(0).stage;
            let recorded = task.join().expect("the task does not panic");
            let expected = if recorded % 2 == 1 {
                Stage::ReadingHead
            } else {
                Stage::Idle
            };
            assert_eq!(stage, expected, "after {recorded} recorded transitions");
        }
    }
}
