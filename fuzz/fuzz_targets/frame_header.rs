//! Fuzz target: the first frame a fresh receiver sees, header first. Covers the decoding of
//! the 8-byte frame header (kind, flags, reserved bits, body length against the limits)
//! through the public API.
//!
//! The first byte picks the receiver; the next 8 bytes are the header, handed over alone
//! before anything else, so a header that can be judged by itself is judged then; the rest
//! is the body and what follows. The outcome must be the reference decoder's.

#![no_main]

#[allow(dead_code, unreachable_pub)]
#[path = "../../core/tests/reference/mod.rs"]
mod reference;
#[allow(dead_code)]
mod shared;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringwire_core::FRAME_HEADER_LEN;

fuzz_target!(|input: &[u8]| {
    let Some((&pick, wire)) = input.split_first() else {
        return;
    };
    if wire.len() < FRAME_HEADER_LEN {
        return;
    }
    let (mut receiver, crc32c) = shared::small_receiver(pick);
    let limits = *receiver.limits();
    let expected = reference::reference_decode_frames(wire, &limits, crc32c);

    // The header alone: either an error the header shows, or a wait for the body, or (for a
    // frame with no body and no trailer) the frame itself.
    let mut head = BytesMut::from(&wire[..FRAME_HEADER_LEN]);
    let first = receiver.decode_frame(&mut head);
    shared::check_gauges(&receiver);
    if let Err(error) = &first {
        assert_eq!(expected.error.as_ref(), Some(error), "header-only error");
        assert!(expected.items.is_empty());
        return;
    }

    // Then the rest in one piece, and the same outcome as the reference.
    let mut input = head;
    input.extend_from_slice(&wire[FRAME_HEADER_LEN..]);
    let mut items: Vec<_> = first.ok().flatten().into_iter().collect();
    let error = loop {
        match receiver.decode_frame(&mut input) {
            Ok(Some(item)) => {
                if let ringwire_core::Inbound::Message(message) = &item {
                    shared::check_size(message, &limits);
                }
                items.push(item);
            }
            Ok(None) => break None,
            Err(error) => break Some(error),
        }
        shared::check_gauges(&receiver);
    };
    assert_eq!(items, expected.items);
    assert_eq!(error, expected.error);
});
