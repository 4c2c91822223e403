//! The wire format, the receiving side: [`Decoder`] takes a frame's bytes
//! in any split, buffering no more than the header and the body it
//! declares (checked against [`Limits`] before any body byte is kept),
//! and rebuilds the [`Frame`] or names what is wrong ([`DecodeError`]),
//! never panicking; [`Frame::check_received`] checks the descriptors that
//! came beside it.

use std::fmt;

use super::frame::{Frame, HEADER_LEN, Item, Limits, MAGIC, WIRE_VERSION, valid_name};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handover::FrameError;

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
}
