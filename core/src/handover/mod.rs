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

mod decode;
mod frame;
mod reply;
mod transfer;

pub use decode::{DecodeError, Decoder};
pub use frame::{Frame, FrameError, HEADER_LEN, Item, Limits, MAGIC, MAX_FDS, WIRE_VERSION};
pub use reply::{MAX_REPLY_LINE, Reply, ReplyDecoder, ReplyError, accept_version};
pub use transfer::{AbortReason, Decision, Transfer, TransferError, TransferState};
