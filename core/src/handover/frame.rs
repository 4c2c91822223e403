//! The wire format, the sending side: a [`Frame`] of named [`Item`]s, the
//! [`Limits`] that bound it, the header's constants, and
//! [`Frame::encode`], which checks a frame against its limits and lays it
//! out as the module docs describe (decoding is [`super::Decoder`]'s).

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
    pub(super) fn fds(&self) -> u32 {
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
    pub(super) name: String,
    pub(super) data: Vec<u8>,
    pub(super) fds: u16,
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

pub(super) fn valid_name(name: &[u8], max: u8) -> bool {
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
    pub(super) items: Vec<Item>,
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
