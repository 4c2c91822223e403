//! Restart state: what a process hands its successor besides the
//! listening sockets, as pure code — the wire format, an incremental
//! decoder, the successor's replies, and the commit/abort decision.
//!
//! The old process **offers** a [`Frame`]: an application version and
//! named items, each some bytes and a count of descriptors attached to it
//! (the descriptors travel beside the bytes, e.g. with `SCM_RIGHTS`, in
//! item order). The successor decodes it ([`Decoder`], bounded by
//! [`Limits`], never panicking on any input), checks the version, and
//! **replies** ([`Reply`]): `TAKEN`, or `REFUSED <reason>`; then `READY=1`
//! once it serves. The old process feeds those replies, and any failure of
//! the successor, to a [`Transfer`], which decides once: **commit** (the
//! successor took the state and is ready) or **abort** (it refused, never
//! took it, broke the protocol, failed, was killed or was not ready in
//! time). The old process's own state is never given away: an offer is a
//! copy, so after an abort it keeps serving with what it had.
//!
//! # Wire format (version 1)
//!
//! All integers big-endian.
//!
//! ```text
//! header (22 bytes):
//!   magic        4   b"LDST"
//!   wire version u16 1
//!   app version  u32 the application's state format, its to check
//!   items        u32 number of items
//!   fds          u32 descriptors attached, all items together
//!   body length  u32 bytes after the header
//! each item:
//!   name length  u8  1..=Limits::max_name
//!   name         printable ASCII (0x21..=0x7e), unique in the frame
//!   fds          u16 descriptors attached to this item
//!   data length  u32
//!   data
//! ```
//!
//! ```
//! use lameduck_core::handover::{Decoder, Frame, Limits};
//!
//! let mut frame = Frame::new(3);
//! frame.push("hits", 42u64.to_be_bytes().to_vec(), 0).unwrap();
//! frame.push("udp", Vec::new(), 1).unwrap();
//! let bytes = frame.encode(&Limits::default()).unwrap();
//!
//! let mut decoder = Decoder::new(Limits::default());
//! // Any split of the bytes decodes the same.
//! for chunk in bytes.chunks(5) {
//!     assert_eq!(decoder.feed(chunk).unwrap(), chunk.len());
//! }
//! let decoded = decoder.finish().unwrap();
//! assert_eq!(decoded, frame);
//! assert_eq!(decoded.fds(), 1);
//! ```

use std::fmt;

/// The frame's first four bytes.
///
/// ```
/// assert_eq!(&lameduck_core::handover::MAGIC, b"LDST");
/// ```
pub const MAGIC: [u8; 4] = *b"LDST";

/// The wire format's version (the layout above; not the application's).
///
/// ```
/// assert_eq!(lameduck_core::handover::WIRE_VERSION, 1);
/// ```
pub const WIRE_VERSION: u16 = 1;

/// The header's length in bytes.
///
/// ```
/// assert_eq!(lameduck_core::handover::HEADER_LEN, 22);
/// ```
pub const HEADER_LEN: usize = 22;

/// The most descriptors one frame may carry: Linux passes at most 253 in
/// one message (`SCM_MAX_FD`).
///
/// ```
/// use lameduck_core::handover::{Limits, MAX_FDS};
/// assert!(Limits::default().max_fds <= MAX_FDS);
/// ```
pub const MAX_FDS: u32 = 253;

/// The longest reply line, newline included.
///
/// ```
/// assert_eq!(lameduck_core::handover::MAX_REPLY_LINE, 512);
/// ```
pub const MAX_REPLY_LINE: usize = 512;

/// Bounds on a frame, checked when encoding and when decoding (from the
/// header, before any body byte is buffered).
///
/// ```
/// use lameduck_core::handover::Limits;
/// let limits = Limits { max_bytes: 64 * 1024, ..Limits::default() };
/// assert_eq!(Limits::default().max_bytes, 1024 * 1024);
/// # let _ = limits;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Most items. Default 256.
    pub max_items: u32,
    /// Longest item name, in bytes (1..=255). Default 64.
    pub max_name: u8,
    /// Most body bytes (items with their names and lengths). Default 1 MiB.
    pub max_bytes: u32,
    /// Most descriptors, all items together (at most [`MAX_FDS`]).
    /// Default 64.
    pub max_fds: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_items: 256,
            max_name: 64,
            max_bytes: 1024 * 1024,
            max_fds: 64,
        }
    }
}

impl Limits {
    fn fds(&self) -> u32 {
        self.max_fds.min(MAX_FDS)
    }
}

/// One named item: bytes and a count of attached descriptors.
///
/// ```
/// use lameduck_core::handover::Item;
/// let item = Item::new("hits", vec![0, 7], 0).unwrap();
/// assert_eq!(item.name(), "hits");
/// assert_eq!(item.data(), &[0, 7]);
/// assert_eq!(item.fds(), 0);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Item {
    name: String,
    data: Vec<u8>,
    fds: u16,
}

impl Item {
    /// An item, if `name` is valid (1 to 255 printable ASCII characters,
    /// no space; [`Limits::max_name`] is checked by [`Frame::encode`]).
    ///
    /// ```
    /// use lameduck_core::handover::{FrameError, Item};
    /// assert_eq!(Item::new("a b", vec![], 0), Err(FrameError::BadName("a b".into())));
    /// ```
    pub fn new(name: &str, data: Vec<u8>, fds: u16) -> Result<Item, FrameError> {
        if !valid_name(name.as_bytes(), u8::MAX) {
            return Err(FrameError::BadName(name.to_owned()));
        }
        Ok(Item {
            name: name.to_owned(),
            data,
            fds,
        })
    }

    /// Its name.
    ///
    /// ```
    /// # use lameduck_core::handover::Item;
    /// assert_eq!(Item::new("x", vec![], 0).unwrap().name(), "x");
    /// ```
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bytes.
    ///
    /// ```
    /// # use lameduck_core::handover::Item;
    /// assert_eq!(Item::new("x", vec![1], 0).unwrap().data(), &[1]);
    /// ```
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Its bytes, taken.
    ///
    /// ```
    /// # use lameduck_core::handover::Item;
    /// assert_eq!(Item::new("x", vec![1], 0).unwrap().into_data(), vec![1]);
    /// ```
    #[must_use]
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// How many descriptors are attached to it.
    ///
    /// ```
    /// # use lameduck_core::handover::Item;
    /// assert_eq!(Item::new("x", vec![], 2).unwrap().fds(), 2);
    /// ```
    #[must_use]
    pub fn fds(&self) -> u16 {
        self.fds
    }
}

fn valid_name(name: &[u8], max: u8) -> bool {
    !name.is_empty() && name.len() <= usize::from(max) && name.iter().all(|b| b.is_ascii_graphic())
}

/// A state offer: the application's version and its items, in order.
///
/// ```
/// use lameduck_core::handover::Frame;
/// let mut frame = Frame::new(1);
/// frame.push("hits", vec![0; 8], 0).unwrap();
/// assert_eq!(frame.version(), 1);
/// assert_eq!(frame.items().len(), 1);
/// assert!(frame.get("hits").is_some());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frame {
    version: u32,
    items: Vec<Item>,
}

/// Why a frame cannot be built or encoded.
///
/// ```
/// use lameduck_core::handover::{Frame, FrameError};
/// let mut frame = Frame::new(1);
/// frame.push("a", vec![], 0).unwrap();
/// assert_eq!(frame.push("a", vec![], 0), Err(FrameError::DuplicateName("a".into())));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameError {
    /// Not 1 to 255 printable ASCII characters without space (or longer
    /// than [`Limits::max_name`], when encoding).
    BadName(String),
    /// Two items of this name.
    DuplicateName(String),
    /// More than [`Limits::max_items`] items.
    TooManyItems {
        /// Items in the frame.
        items: usize,
        /// The limit.
        max: u32,
    },
    /// More than [`Limits::max_fds`] descriptors.
    TooManyFds {
        /// Descriptors in the frame.
        fds: u64,
        /// The limit.
        max: u32,
    },
    /// The body is longer than [`Limits::max_bytes`].
    TooLarge {
        /// Body bytes.
        bytes: u64,
        /// The limit.
        max: u32,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadName(name) => write!(
                f,
                "item name {name:?} is not 1 to the limit of printable ASCII characters without space"
            ),
            FrameError::DuplicateName(name) => write!(f, "two items named {name:?}"),
            FrameError::TooManyItems { items, max } => {
                write!(f, "{items} items, more than the limit of {max}")
            }
            FrameError::TooManyFds { fds, max } => {
                write!(f, "{fds} descriptors, more than the limit of {max}")
            }
            FrameError::TooLarge { bytes, max } => {
                write!(f, "{bytes} bytes of state, more than the limit of {max}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl Frame {
    /// An empty offer of application format `version`.
    ///
    /// ```
    /// let frame = lameduck_core::handover::Frame::new(2);
    /// assert!(frame.items().is_empty());
    /// ```
    #[must_use]
    pub fn new(version: u32) -> Frame {
        Frame {
            version,
            items: Vec::new(),
        }
    }

    /// Adds an item; refused if its name is invalid or taken.
    ///
    /// ```
    /// let mut frame = lameduck_core::handover::Frame::new(1);
    /// frame.push("sock", vec![], 1).unwrap();
    /// assert_eq!(frame.fds(), 1);
    /// ```
    pub fn push(&mut self, name: &str, data: Vec<u8>, fds: u16) -> Result<(), FrameError> {
        if self.get(name).is_some() {
            return Err(FrameError::DuplicateName(name.to_owned()));
        }
        self.items.push(Item::new(name, data, fds)?);
        Ok(())
    }

    /// The application's format version.
    ///
    /// ```
    /// assert_eq!(lameduck_core::handover::Frame::new(9).version(), 9);
    /// ```
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The items, in order.
    ///
    /// ```
    /// assert!(lameduck_core::handover::Frame::new(1).items().is_empty());
    /// ```
    #[must_use]
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The items, taken.
    ///
    /// ```
    /// assert!(lameduck_core::handover::Frame::new(1).into_items().is_empty());
    /// ```
    #[must_use]
    pub fn into_items(self) -> Vec<Item> {
        self.items
    }

    /// The item named `name`.
    ///
    /// ```
    /// assert!(lameduck_core::handover::Frame::new(1).get("x").is_none());
    /// ```
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.name == name)
    }

    /// Descriptors attached, all items together.
    ///
    /// ```
    /// assert_eq!(lameduck_core::handover::Frame::new(1).fds(), 0);
    /// ```
    #[must_use]
    pub fn fds(&self) -> u64 {
        self.items.iter().map(|i| u64::from(i.fds)).sum()
    }

    /// The body's length in bytes.
    fn body_len(&self) -> u64 {
        self.items
            .iter()
            .map(|i| 1 + i.name.len() as u64 + 2 + 4 + i.data.len() as u64)
            .sum()
    }

    /// Checks the frame against `limits`.
    ///
    /// ```
    /// use lameduck_core::handover::{Frame, FrameError, Limits};
    /// let mut frame = Frame::new(1);
    /// frame.push("big", vec![0; 100], 0).unwrap();
    /// let small = Limits { max_bytes: 10, ..Limits::default() };
    /// assert!(matches!(frame.check(&small), Err(FrameError::TooLarge { .. })));
    /// ```
    pub fn check(&self, limits: &Limits) -> Result<(), FrameError> {
        if self.items.len() > limits.max_items as usize {
            return Err(FrameError::TooManyItems {
                items: self.items.len(),
                max: limits.max_items,
            });
        }
        if let Some(item) = self
            .items
            .iter()
            .find(|i| !valid_name(i.name.as_bytes(), limits.max_name))
        {
            return Err(FrameError::BadName(item.name.clone()));
        }
        if self.fds() > u64::from(limits.fds()) {
            return Err(FrameError::TooManyFds {
                fds: self.fds(),
                max: limits.fds(),
            });
        }
        if self.body_len() > u64::from(limits.max_bytes) {
            return Err(FrameError::TooLarge {
                bytes: self.body_len(),
                max: limits.max_bytes,
            });
        }
        Ok(())
    }

    /// The frame's bytes, if it is within `limits`.
    ///
    /// ```
    /// use lameduck_core::handover::{Frame, HEADER_LEN, Limits};
    /// let bytes = Frame::new(1).encode(&Limits::default()).unwrap();
    /// assert_eq!(bytes.len(), HEADER_LEN);
    /// assert_eq!(&bytes[..4], b"LDST");
    /// ```
    pub fn encode(&self, limits: &Limits) -> Result<Vec<u8>, FrameError> {
        self.check(limits)?;
        // Checked above: each fits its field (body ≤ max_bytes: u32; items
        // ≤ max_items: u32; fds ≤ MAX_FDS; names ≤ 255; data ≤ body).
        let body = self.body_len() as u32;
        let mut out = Vec::with_capacity(HEADER_LEN + body as usize);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&WIRE_VERSION.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&(self.items.len() as u32).to_be_bytes());
        out.extend_from_slice(&(self.fds() as u32).to_be_bytes());
        out.extend_from_slice(&body.to_be_bytes());
        for item in &self.items {
            out.push(item.name.len() as u8);
            out.extend_from_slice(item.name.as_bytes());
            out.extend_from_slice(&item.fds.to_be_bytes());
            out.extend_from_slice(&(item.data.len() as u32).to_be_bytes());
            out.extend_from_slice(&item.data);
        }
        Ok(out)
    }
}

/// Why received bytes are not a valid frame. Each names what is wrong.
///
/// ```
/// use lameduck_core::handover::{DecodeError, Decoder, Limits};
/// let mut decoder = Decoder::new(Limits::default());
/// assert_eq!(decoder.feed(b"HTTP/1.1 200 OK\r\n\r\nhello"), Err(DecodeError::BadMagic));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeError {
    /// The first four bytes are not [`MAGIC`].
    BadMagic,
    /// A wire version this code does not know.
    WireVersion(u16),
    /// More items than [`Limits::max_items`].
    TooManyItems {
        /// Declared.
        items: u32,
        /// The limit.
        max: u32,
    },
    /// More descriptors than [`Limits::max_fds`].
    TooManyFds {
        /// Declared.
        fds: u32,
        /// The limit.
        max: u32,
    },
    /// A body longer than [`Limits::max_bytes`].
    TooLarge {
        /// Declared.
        bytes: u32,
        /// The limit.
        max: u32,
    },
    /// The bytes ended before the frame did.
    Truncated {
        /// Bytes the frame still needed.
        missing: usize,
    },
    /// Item `index` does not fit in the declared body.
    ItemOverrun {
        /// Which item (from 0).
        index: usize,
    },
    /// Item `index` has an invalid name.
    BadName {
        /// Which item (from 0).
        index: usize,
    },
    /// Item `index` repeats an earlier name.
    DuplicateName {
        /// Which item (from 0).
        index: usize,
    },
    /// The items' descriptor counts do not add up to the header's.
    FdCountMismatch {
        /// The header's count.
        declared: u32,
        /// The items' sum.
        items: u64,
    },
    /// The items end before the declared body does.
    TrailingBody {
        /// Body bytes left over.
        bytes: usize,
    },
    /// The descriptors received are not the ones declared
    /// ([`Frame::check_received`]).
    FdsReceived {
        /// Declared.
        declared: u64,
        /// Received.
        received: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadMagic => f.write_str("not restart state (bad magic)"),
            DecodeError::WireVersion(v) => {
                write!(
                    f,
                    "restart state wire version {v}, only {WIRE_VERSION} is known"
                )
            }
            DecodeError::TooManyItems { items, max } => {
                write!(f, "{items} items, more than the limit of {max}")
            }
            DecodeError::TooManyFds { fds, max } => {
                write!(f, "{fds} descriptors, more than the limit of {max}")
            }
            DecodeError::TooLarge { bytes, max } => {
                write!(f, "{bytes} bytes of state, more than the limit of {max}")
            }
            DecodeError::Truncated { missing } => {
                write!(f, "the state ended {missing} bytes early")
            }
            DecodeError::ItemOverrun { index } => {
                write!(f, "item {index} runs past the end of the state")
            }
            DecodeError::BadName { index } => write!(f, "item {index} has an invalid name"),
            DecodeError::DuplicateName { index } => {
                write!(f, "item {index} repeats an earlier name")
            }
            DecodeError::FdCountMismatch { declared, items } => write!(
                f,
                "{declared} descriptors declared, the items attach {items}"
            ),
            DecodeError::TrailingBody { bytes } => {
                write!(f, "{bytes} bytes after the last item")
            }
            DecodeError::FdsReceived { declared, received } => {
                write!(f, "{declared} descriptors declared, {received} received")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

impl Frame {
    /// Checks that the descriptors received with the frame are as many as
    /// it declares.
    ///
    /// ```
    /// use lameduck_core::handover::{DecodeError, Frame};
    /// let mut frame = Frame::new(1);
    /// frame.push("s", vec![], 1).unwrap();
    /// assert!(frame.check_received(1).is_ok());
    /// assert_eq!(
    ///     frame.check_received(0),
    ///     Err(DecodeError::FdsReceived { declared: 1, received: 0 })
    /// );
    /// ```
    pub fn check_received(&self, received: usize) -> Result<(), DecodeError> {
        if self.fds() == received as u64 {
            Ok(())
        } else {
            Err(DecodeError::FdsReceived {
                declared: self.fds(),
                received,
            })
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    version: u32,
    items: u32,
    fds: u32,
    body: u32,
}

/// An incremental frame decoder: feed it bytes as they arrive, in any
/// split; it buffers at most the header and the declared body (checked
/// against [`Limits`] first), and never panics.
///
/// ```
/// use lameduck_core::handover::{Decoder, Frame, Limits};
/// let bytes = Frame::new(1).encode(&Limits::default()).unwrap();
/// let mut decoder = Decoder::new(Limits::default());
/// assert_eq!(decoder.wanted(), 22);
/// assert_eq!(decoder.feed(&[bytes.as_slice(), b"extra"].concat()).unwrap(), 22);
/// assert!(decoder.is_complete());
/// assert_eq!(decoder.finish().unwrap(), Frame::new(1));
/// ```
#[derive(Clone, Debug)]
pub struct Decoder {
    limits: Limits,
    buf: Vec<u8>,
    header: Option<Header>,
    failed: Option<DecodeError>,
}

impl Decoder {
    /// A decoder within `limits`.
    ///
    /// ```
    /// use lameduck_core::handover::{Decoder, Limits};
    /// let decoder = Decoder::new(Limits::default());
    /// assert!(!decoder.is_complete());
    /// ```
    #[must_use]
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            buf: Vec::with_capacity(HEADER_LEN),
            header: None,
            failed: None,
        }
    }

    /// Bytes still needed to complete the frame (the header's first, then
    /// the body's): 0 once complete.
    ///
    /// ```
    /// use lameduck_core::handover::{Decoder, Limits};
    /// let mut decoder = Decoder::new(Limits::default());
    /// decoder.feed(b"LD").unwrap();
    /// assert_eq!(decoder.wanted(), 20);
    /// ```
    #[must_use]
    pub fn wanted(&self) -> usize {
        match self.header {
            None => HEADER_LEN - self.buf.len(),
            Some(h) => (h.body as usize).saturating_sub(self.buf.len()),
        }
    }

    /// The whole frame arrived.
    ///
    /// ```
    /// use lameduck_core::handover::{Decoder, Limits};
    /// assert!(!Decoder::new(Limits::default()).is_complete());
    /// ```
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.failed.is_none() && self.header.is_some() && self.wanted() == 0
    }

    /// Takes bytes: returns how many belong to the frame (the rest, after
    /// its end, are not taken), or the first error found (then every later
    /// call returns it too).
    ///
    /// ```
    /// use lameduck_core::handover::{DecodeError, Decoder, Limits};
    /// let mut decoder = Decoder::new(Limits::default());
    /// assert_eq!(decoder.feed(b"LDST\x00\x07"), Err(DecodeError::WireVersion(7)));
    /// ```
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut taken = 0;
        if self.header.is_none() {
            let n = bytes.len().min(HEADER_LEN - self.buf.len());
            self.buf.extend_from_slice(&bytes[..n]);
            taken = n;
            if let Err(e) = self.check_partial_header() {
                self.failed = Some(e.clone());
                return Err(e);
            }
            if self.buf.len() < HEADER_LEN {
                return Ok(taken);
            }
            match self.header() {
                Ok(header) => {
                    self.header = Some(header);
                    self.buf = Vec::new();
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        let rest = &bytes[taken..];
        let n = rest.len().min(self.wanted());
        // Grows with what arrives, never past the declared (bounded) body.
        self.buf.extend_from_slice(&rest[..n]);
        Ok(taken + n)
    }

    /// Rejects a wrong magic or wire version as soon as its bytes arrive.
    fn check_partial_header(&self) -> Result<(), DecodeError> {
        let magic = &self.buf[..self.buf.len().min(4)];
        if magic != &MAGIC[..magic.len()] {
            return Err(DecodeError::BadMagic);
        }
        if let Some(v) = self.buf.get(4..6) {
            let v = u16::from_be_bytes([v[0], v[1]]);
            if v != WIRE_VERSION {
                return Err(DecodeError::WireVersion(v));
            }
        }
        Ok(())
    }

    fn header(&self) -> Result<Header, DecodeError> {
        let mut r = Reader(&self.buf[6..]);
        let header = Header {
            version: r.u32().unwrap_or(0),
            items: r.u32().unwrap_or(0),
            fds: r.u32().unwrap_or(0),
            body: r.u32().unwrap_or(0),
        };
        let limits = &self.limits;
        if header.items > limits.max_items {
            return Err(DecodeError::TooManyItems {
                items: header.items,
                max: limits.max_items,
            });
        }
        if header.fds > limits.fds() {
            return Err(DecodeError::TooManyFds {
                fds: header.fds,
                max: limits.fds(),
            });
        }
        if header.body > limits.max_bytes {
            return Err(DecodeError::TooLarge {
                bytes: header.body,
                max: limits.max_bytes,
            });
        }
        Ok(header)
    }

    /// The frame, once complete; [`DecodeError::Truncated`] before.
    ///
    /// ```
    /// use lameduck_core::handover::{DecodeError, Decoder, Limits};
    /// let mut decoder = Decoder::new(Limits::default());
    /// decoder.feed(b"LDST").unwrap();
    /// assert_eq!(decoder.finish(), Err(DecodeError::Truncated { missing: 18 }));
    /// ```
    pub fn finish(self) -> Result<Frame, DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let missing = self.wanted();
        let Some(header) = self.header.filter(|_| missing == 0) else {
            return Err(DecodeError::Truncated { missing });
        };
        let limits = self.limits;
        let mut r = Reader(&self.buf);
        let mut frame = Frame::new(header.version);
        let mut fds: u64 = 0;
        for index in 0..header.items as usize {
            let overrun = DecodeError::ItemOverrun { index };
            let name_len = r.u8().ok_or(overrun.clone())?;
            let name = r.take(usize::from(name_len)).ok_or(overrun.clone())?;
            if !valid_name(name, limits.max_name) {
                return Err(DecodeError::BadName { index });
            }
            // Printable ASCII: valid UTF-8.
            let name = String::from_utf8_lossy(name).into_owned();
            if frame.get(&name).is_some() {
                return Err(DecodeError::DuplicateName { index });
            }
            let item_fds = r.u16().ok_or(overrun.clone())?;
            let len = r.u32().ok_or(overrun.clone())?;
            let data = r.take(len as usize).ok_or(overrun)?;
            fds += u64::from(item_fds);
            frame.items.push(Item {
                name,
                data: data.to_vec(),
                fds: item_fds,
            });
        }
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBody { bytes: r.0.len() });
        }
        if fds != u64::from(header.fds) {
            return Err(DecodeError::FdCountMismatch {
                declared: header.fds,
                items: fds,
            });
        }
        Ok(frame)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// What the successor says back, one line each.
///
/// ```
/// use lameduck_core::handover::Reply;
/// assert_eq!(Reply::Taken.encode(), b"TAKEN\n");
/// assert_eq!(Reply::Refused("version 9".into()).encode(), b"REFUSED version 9\n");
/// assert_eq!(Reply::Ready.encode(), b"READY=1\n");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reply {
    /// It read the whole frame, descriptors included, and keeps it.
    Taken,
    /// It will not run with this state; why (one line, printable, at most
    /// [`MAX_REPLY_LINE`] in all).
    Refused(String),
    /// It serves.
    Ready,
}

impl Reply {
    /// The line. A refusal's reason is made one printable line, cut to
    /// fit.
    ///
    /// ```
    /// use lameduck_core::handover::Reply;
    /// assert_eq!(Reply::Refused("a\nb".into()).encode(), b"REFUSED a b\n");
    /// ```
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Taken => b"TAKEN\n".to_vec(),
            Reply::Ready => b"READY=1\n".to_vec(),
            Reply::Refused(reason) => {
                let mut out = b"REFUSED ".to_vec();
                let room = MAX_REPLY_LINE - out.len() - 1;
                out.extend(
                    reason
                        .bytes()
                        .map(|b| if (0x20..0x7f).contains(&b) { b } else { b' ' })
                        .take(room),
                );
                out.push(b'\n');
                out
            }
        }
    }
}

/// Why the successor's replies are not the protocol.
///
/// ```
/// use lameduck_core::handover::{ReplyDecoder, ReplyError};
/// let mut replies = ReplyDecoder::new();
/// assert_eq!(replies.feed(b"HELLO\n"), Err(ReplyError::Unknown("HELLO".into())));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line longer than [`MAX_REPLY_LINE`].
    LineTooLong,
    /// A line that is no reply (printable form, cut).
    Unknown(String),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::LineTooLong => {
                write!(f, "a reply line longer than {MAX_REPLY_LINE} bytes")
            }
            ReplyError::Unknown(line) => write!(f, "an unknown reply {line:?}"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Splits the successor's bytes into [`Reply`]s, in any split; bounded
/// ([`MAX_REPLY_LINE`]), never panics.
///
/// ```
/// use lameduck_core::handover::{Reply, ReplyDecoder};
/// let mut replies = ReplyDecoder::new();
/// assert_eq!(replies.feed(b"TAK").unwrap(), vec![]);
/// assert_eq!(replies.feed(b"EN\nREADY=1\n").unwrap(), vec![Reply::Taken, Reply::Ready]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ReplyDecoder {
    line: Vec<u8>,
    failed: Option<ReplyError>,
}

impl ReplyDecoder {
    /// A decoder with nothing buffered.
    ///
    /// ```
    /// let replies = lameduck_core::handover::ReplyDecoder::new();
    /// assert!(replies.is_empty());
    /// ```
    #[must_use]
    pub fn new() -> ReplyDecoder {
        ReplyDecoder::default()
    }

    /// No partial line is buffered (an end of file now cuts nothing).
    ///
    /// ```
    /// let mut replies = lameduck_core::handover::ReplyDecoder::new();
    /// replies.feed(b"TA").unwrap();
    /// assert!(!replies.is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    /// The replies completed by `bytes`, or the first error (then every
    /// later call returns it too).
    ///
    /// ```
    /// use lameduck_core::handover::{Reply, ReplyDecoder};
    /// let mut replies = ReplyDecoder::new();
    /// assert_eq!(replies.feed(b"REFUSED no\n").unwrap(), vec![Reply::Refused("no".into())]);
    /// ```
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() + 1 >= MAX_REPLY_LINE {
                    self.failed = Some(ReplyError::LineTooLong);
                    return Err(ReplyError::LineTooLong);
                }
                self.line.push(b);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let reply = match line.as_slice() {
                b"TAKEN" => Reply::Taken,
                b"READY=1" => Reply::Ready,
                l => match l.strip_prefix(b"REFUSED ") {
                    Some(reason) if reason.iter().all(|b| (0x20..0x7f).contains(b)) => {
                        Reply::Refused(String::from_utf8_lossy(reason).into_owned())
                    }
                    _ => {
                        let shown: String = String::from_utf8_lossy(l).chars().take(64).collect();
                        let e = ReplyError::Unknown(shown);
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                },
            };
            out.push(reply);
        }
        Ok(out)
    }
}

/// Why a transfer was aborted.
///
/// ```
/// use lameduck_core::handover::AbortReason;
/// assert_eq!(AbortReason::NotTaken.to_string(), "reported ready without taking the restart state");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AbortReason {
    /// The successor refused the state ([`Reply::Refused`]).
    Refused,
    /// The successor reported ready without taking a non-empty state.
    NotTaken,
    /// The successor's replies broke the protocol (an unknown or
    /// misplaced reply, the descriptors not received).
    Protocol,
    /// The state could not be sent (the successor closed its end).
    SendFailed,
    /// The successor exited, was killed or was not ready in time.
    SuccessorFailed,
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbortReason::Refused => "refused the restart state",
            AbortReason::NotTaken => "reported ready without taking the restart state",
            AbortReason::Protocol => "broke the restart state protocol",
            AbortReason::SendFailed => "could not be sent the restart state",
            AbortReason::SuccessorFailed => "failed before it was ready",
        })
    }
}

/// Where a [`Transfer`] is.
///
/// ```
/// use lameduck_core::handover::{Transfer, TransferState};
/// assert_eq!(Transfer::offered(1).state(), TransferState::Offered);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferState {
    /// Sent (or being sent); the successor has not taken it yet.
    Offered,
    /// The successor took it; it is not ready yet.
    Taken,
    /// The successor took it and is ready: it is the successor's now.
    Committed,
    /// Not handed over: the old process keeps serving with its own.
    Aborted(AbortReason),
}

/// The decision, once made.
///
/// ```
/// use lameduck_core::handover::{Decision, Reply, Transfer};
/// let mut transfer = Transfer::offered(0);
/// assert_eq!(transfer.reply(&Reply::Ready), Ok(Some(Decision::Commit)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Hand off: the successor has the state and serves.
    Commit,
    /// Roll back: kill the successor; the old process keeps its state.
    Abort(AbortReason),
}

/// An input the [`Transfer`] did not expect: it changed nothing.
///
/// ```
/// use lameduck_core::handover::{Reply, Transfer, TransferError};
/// let mut transfer = Transfer::offered(0);
/// transfer.reply(&Reply::Ready).unwrap();
/// assert_eq!(transfer.reply(&Reply::Ready), Err(TransferError::Decided));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransferError {
    /// The decision was already made; nothing changes it.
    Decided,
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the state hand-over was already decided")
    }
}

impl std::error::Error for TransferError {}

/// The commit/abort decision for one offer, made once: `Offered` →
/// `Taken` → `Committed` when the successor reports ready; `Aborted` on a
/// refusal, a ready without taking (of a non-empty offer), a protocol
/// error, a failed send, or the successor's failure (exit, kill,
/// deadline). After the decision every input is
/// [`TransferError::Decided`].
///
/// ```
/// use lameduck_core::handover::*;
/// let mut transfer = Transfer::offered(2);
/// assert_eq!(transfer.reply(&Reply::Taken), Ok(None));
/// assert_eq!(transfer.failed(), Ok(Decision::Abort(AbortReason::SuccessorFailed)));
/// assert_eq!(transfer.state(), TransferState::Aborted(AbortReason::SuccessorFailed));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    items: usize,
    state: TransferState,
}

impl Transfer {
    /// An offer of `items` items, sent or being sent.
    ///
    /// ```
    /// assert_eq!(lameduck_core::handover::Transfer::offered(3).items(), 3);
    /// ```
    #[must_use]
    pub fn offered(items: usize) -> Transfer {
        Transfer {
            items,
            state: TransferState::Offered,
        }
    }

    /// Items offered.
    ///
    /// ```
    /// assert_eq!(lameduck_core::handover::Transfer::offered(0).items(), 0);
    /// ```
    #[must_use]
    pub fn items(&self) -> usize {
        self.items
    }

    /// Where it is.
    ///
    /// ```
    /// use lameduck_core::handover::{Reply, Transfer, TransferState};
    /// let mut transfer = Transfer::offered(1);
    /// transfer.reply(&Reply::Taken).unwrap();
    /// assert_eq!(transfer.state(), TransferState::Taken);
    /// ```
    #[must_use]
    pub fn state(&self) -> TransferState {
        self.state
    }

    /// The decision, if made.
    ///
    /// ```
    /// assert_eq!(lameduck_core::handover::Transfer::offered(1).decision(), None);
    /// ```
    #[must_use]
    pub fn decision(&self) -> Option<Decision> {
        match self.state {
            TransferState::Committed => Some(Decision::Commit),
            TransferState::Aborted(reason) => Some(Decision::Abort(reason)),
            TransferState::Offered | TransferState::Taken => None,
        }
    }

    fn decide(&mut self, state: TransferState) -> Option<Decision> {
        self.state = state;
        self.decision()
    }

    /// A reply from the successor: the decision if it makes one.
    ///
    /// ```
    /// use lameduck_core::handover::*;
    /// let mut transfer = Transfer::offered(1);
    /// assert_eq!(
    ///     transfer.reply(&Reply::Ready),
    ///     Ok(Some(Decision::Abort(AbortReason::NotTaken)))
    /// );
    /// ```
    pub fn reply(&mut self, reply: &Reply) -> Result<Option<Decision>, TransferError> {
        let next = match (self.state, reply) {
            (TransferState::Committed | TransferState::Aborted(_), _) => {
                return Err(TransferError::Decided);
            }
            (TransferState::Offered, Reply::Taken) => TransferState::Taken,
            (TransferState::Taken, Reply::Taken) => TransferState::Aborted(AbortReason::Protocol),
            (_, Reply::Refused(_)) => TransferState::Aborted(AbortReason::Refused),
            (TransferState::Offered, Reply::Ready) if self.items > 0 => {
                TransferState::Aborted(AbortReason::NotTaken)
            }
            (_, Reply::Ready) => TransferState::Committed,
        };
        Ok(self.decide(next))
    }

    /// The replies were not the protocol ([`ReplyError`]), or the
    /// descriptors did not arrive: abort.
    ///
    /// ```
    /// use lameduck_core::handover::*;
    /// let mut transfer = Transfer::offered(0);
    /// assert_eq!(transfer.protocol_error(), Ok(Decision::Abort(AbortReason::Protocol)));
    /// ```
    pub fn protocol_error(&mut self) -> Result<Decision, TransferError> {
        self.abort(AbortReason::Protocol)
    }

    /// The offer could not be sent: abort.
    ///
    /// ```
    /// use lameduck_core::handover::*;
    /// let mut transfer = Transfer::offered(0);
    /// assert_eq!(transfer.send_failed(), Ok(Decision::Abort(AbortReason::SendFailed)));
    /// ```
    pub fn send_failed(&mut self) -> Result<Decision, TransferError> {
        self.abort(AbortReason::SendFailed)
    }

    /// The successor exited, was killed, or was not ready in time: abort.
    ///
    /// ```
    /// use lameduck_core::handover::*;
    /// let mut transfer = Transfer::offered(0);
    /// assert_eq!(transfer.failed(), Ok(Decision::Abort(AbortReason::SuccessorFailed)));
    /// assert_eq!(transfer.failed(), Err(TransferError::Decided));
    /// ```
    pub fn failed(&mut self) -> Result<Decision, TransferError> {
        self.abort(AbortReason::SuccessorFailed)
    }

    fn abort(&mut self, reason: AbortReason) -> Result<Decision, TransferError> {
        match self.state {
            TransferState::Offered | TransferState::Taken => {
                self.state = TransferState::Aborted(reason);
                Ok(Decision::Abort(reason))
            }
            TransferState::Committed | TransferState::Aborted(_) => Err(TransferError::Decided),
        }
    }
}

/// The successor's side: whether to take an offer of `version`, given the
/// versions it knows. The reply to send, and the refusal's reason.
///
/// ```
/// use lameduck_core::handover::{Reply, accept_version};
/// assert_eq!(accept_version(2, 1..=2), Reply::Taken);
/// assert_eq!(
///     accept_version(3, 1..=2),
///     Reply::Refused("restart state version 3 is not one of 1..=2".into())
/// );
/// ```
#[must_use]
pub fn accept_version(version: u32, known: std::ops::RangeInclusive<u32>) -> Reply {
    if known.contains(&version) {
        Reply::Taken
    } else {
        Reply::Refused(format!(
            "restart state version {version} is not one of {}..={}",
            known.start(),
            known.end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        let mut f = Frame::new(7);
        f.push("hits", 5u64.to_be_bytes().to_vec(), 0).unwrap();
        f.push("udp", vec![], 1).unwrap();
        f.push("pipes", b"rw".to_vec(), 2).unwrap();
        f
    }

    #[test]
    fn roundtrip_byte_by_byte() {
        let bytes = sample().encode(&Limits::default()).unwrap();
        let mut d = Decoder::new(Limits::default());
        for b in &bytes {
            assert!(!d.is_complete());
            assert_eq!(d.feed(std::slice::from_ref(b)).unwrap(), 1);
        }
        assert_eq!(d.feed(b"x").unwrap(), 0);
        assert_eq!(d.finish().unwrap(), sample());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode(&Limits::default()).unwrap();
        for cut in 0..bytes.len() {
            let mut d = Decoder::new(Limits::default());
            d.feed(&bytes[..cut]).unwrap();
            assert_eq!(
                d.finish(),
                Err(DecodeError::Truncated {
                    missing: if cut < HEADER_LEN {
                        HEADER_LEN - cut
                    } else {
                        bytes.len() - cut
                    }
                })
            );
        }
    }

    #[test]
    fn limits_are_checked_from_the_header() {
        let bytes = sample().encode(&Limits::default()).unwrap();
        let tight = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let mut d = Decoder::new(tight);
        assert!(matches!(
            d.feed(&bytes),
            Err(DecodeError::TooLarge { max: 10, .. })
        ));
        let mut d = Decoder::new(Limits {
            max_fds: 2,
            ..Limits::default()
        });
        assert_eq!(
            d.feed(&bytes),
            Err(DecodeError::TooManyFds { fds: 3, max: 2 })
        );
        let mut d = Decoder::new(Limits {
            max_items: 2,
            ..Limits::default()
        });
        assert_eq!(
            d.feed(&bytes),
            Err(DecodeError::TooManyItems { items: 3, max: 2 })
        );
        assert!(matches!(
            sample().encode(&tight),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn inconsistent_bodies_are_precise_errors() {
        let mut bytes = sample().encode(&Limits::default()).unwrap();
        // The fd count in the header: 3 → 4.
        bytes[17] = 4;
        let mut d = Decoder::new(Limits::default());
        d.feed(&bytes).unwrap();
        assert_eq!(
            d.finish(),
            Err(DecodeError::FdCountMismatch {
                declared: 4,
                items: 3
            })
        );
        let mut bytes = sample().encode(&Limits::default()).unwrap();
        // The first name's first byte: a space.
        bytes[HEADER_LEN + 1] = b' ';
        let mut d = Decoder::new(Limits::default());
        d.feed(&bytes).unwrap();
        assert_eq!(d.finish(), Err(DecodeError::BadName { index: 0 }));
        // Two items of one name.
        let mut bytes = sample().encode(&Limits::default()).unwrap();
        let second = HEADER_LEN + 1 + 4 + 2 + 4 + 8;
        assert_eq!(&bytes[second + 1..second + 4], b"udp");
        bytes[second + 1..second + 4].copy_from_slice(b"hit");
        bytes[second] = 4;
        let mut d = Decoder::new(Limits::default());
        d.feed(&bytes).unwrap();
        // The name is now "hit" plus one byte of the fd count: invalid or
        // the item overruns; either way an error, never a panic.
        assert!(d.finish().is_err());
    }

    #[test]
    fn transfer_decisions() {
        let mut t = Transfer::offered(1);
        assert_eq!(t.reply(&Reply::Taken), Ok(None));
        assert_eq!(t.reply(&Reply::Ready), Ok(Some(Decision::Commit)));
        assert_eq!(t.failed(), Err(TransferError::Decided));
        assert_eq!(t.state(), TransferState::Committed);

        let mut t = Transfer::offered(1);
        t.reply(&Reply::Taken).unwrap();
        assert_eq!(
            t.reply(&Reply::Refused("late".into())),
            Ok(Some(Decision::Abort(AbortReason::Refused)))
        );
        let mut t = Transfer::offered(1);
        t.reply(&Reply::Taken).unwrap();
        assert_eq!(
            t.reply(&Reply::Taken),
            Ok(Some(Decision::Abort(AbortReason::Protocol)))
        );
        let mut t = Transfer::offered(0);
        assert_eq!(
            t.send_failed(),
            Ok(Decision::Abort(AbortReason::SendFailed))
        );
        assert_eq!(t.reply(&Reply::Ready), Err(TransferError::Decided));
    }

    #[test]
    fn replies_in_any_split_and_bounded() {
        let all = [
            Reply::Taken.encode(),
            Reply::Refused("x".repeat(2000)).encode(),
            Reply::Ready.encode(),
        ]
        .concat();
        for split in 0..all.len() {
            let mut d = ReplyDecoder::new();
            let mut got = d.feed(&all[..split]).unwrap();
            got.extend(d.feed(&all[split..]).unwrap());
            assert_eq!(got.len(), 3);
            assert!(matches!(&got[1], Reply::Refused(r) if r.len() == MAX_REPLY_LINE - 9));
        }
        let mut d = ReplyDecoder::new();
        assert_eq!(d.feed(&[b'A'; 600]), Err(ReplyError::LineTooLong));
        assert_eq!(d.feed(b"TAKEN\n"), Err(ReplyError::LineTooLong));
    }
}
