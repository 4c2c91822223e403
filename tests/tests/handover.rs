//! Property tests of the restart state's wire format
//! (`lameduck_core::handover`): random item sets round-trip through any
//! split of their bytes; every truncation is an error; any corruption is
//! an error or another valid frame, never a panic; the decision machine
//! commits only after the state was taken.

use lameduck_core::handover::{
    AbortReason, Decision, DecodeError, Decoder, Frame, Limits, Reply, ReplyDecoder, Transfer,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[!-~]{1,64}").unwrap()
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<u32>(),
        prop::collection::vec(
            (name(), prop::collection::vec(any::<u8>(), 0..300), 0u16..3),
            0..12,
        ),
    )
        .prop_map(|(version, items)| {
            let mut frame = Frame::new(version);
            for (name, data, fds) in items {
                // A repeated name is refused; the rest go in.
                let _ = frame.push(&name, data, fds);
            }
            frame
        })
}

fn decode(bytes: &[u8], split: usize) -> Result<Frame, DecodeError> {
    let mut decoder = Decoder::new(Limits::default());
    for piece in bytes.chunks(split.max(1)) {
        decoder.feed(piece)?;
    }
    decoder.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_roundtrip_in_any_split(frame in frame(), split in 1usize..64) {
        let bytes = frame.encode(&Limits::default()).unwrap();
        let decoded = decode(&bytes, split).unwrap();
        prop_assert_eq!(&decoded, &frame);
        prop_assert!(decoded.check_received(frame.fds() as usize).is_ok());
    }

    #[test]
    fn every_truncation_is_an_error(frame in frame(), cut in any::<prop::sample::Index>()) {
        let bytes = frame.encode(&Limits::default()).unwrap();
        let cut = cut.index(bytes.len());
        let is_truncated = matches!(decode(&bytes[..cut], 7), Err(DecodeError::Truncated { .. }));
        prop_assert!(is_truncated);
    }

    #[test]
    fn corruption_is_an_error_or_a_valid_frame(
        frame in frame(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
    ) {
        let mut bytes = frame.encode(&Limits::default()).unwrap();
        let at = at.index(bytes.len());
        bytes[at] ^= xor;
        if let Ok(other) = decode(&bytes, 3) {
            // Then it is canonical: it re-encodes to a prefix of the bytes.
            let again = other.encode(&Limits::default()).unwrap();
            prop_assert_eq!(&again[..], &bytes[..again.len()]);
            prop_assert_ne!(other, frame);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&bytes, 5);
        let mut with_magic = b"LDST\x00\x01".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = decode(&with_magic, 5);
        let _ = ReplyDecoder::new().feed(&bytes);
    }

    #[test]
    fn commit_only_after_taking(replies in prop::collection::vec(0u8..4, 0..6), items in 0usize..3) {
        let mut transfer = Transfer::offered(items);
        let mut taken = false;
        for r in replies {
            let reply = match r {
                0 => Reply::Taken,
                1 => Reply::Refused("no".into()),
                _ => Reply::Ready,
            };
            match transfer.reply(&reply) {
                Ok(Some(Decision::Commit)) => prop_assert!(taken || items == 0),
                Ok(Some(Decision::Abort(AbortReason::NotTaken))) => prop_assert!(!taken && items > 0),
                Ok(None) => taken = true,
                Ok(Some(_)) | Err(_) => {}
            }
        }
    }
}
