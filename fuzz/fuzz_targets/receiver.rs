//! Fuzz target: arbitrary bytes, split arbitrarily, into `Receiver::decode_frame` of a
//! receiver with small limits, with and without CRC32C trailers.
//!
//! The first byte picks the receiver, the second seeds the split; the rest is the wire. No
//! panic; the reassembly gauge within the budget and the open streams within their limit
//! after every call; every message within the size limits; after an error, the same error on
//! every later call; and the outcome is the reference decoder's (core/tests/reference).

#![no_main]

#[allow(dead_code, unreachable_pub)]
#[path = "../../core/tests/reference/mod.rs"]
mod reference;
mod shared;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let [pick, seed, data @ ..] = input else {
        return;
    };
    let (mut receiver, crc32c) = shared::small_receiver(*pick);
    let limits = *receiver.limits();
    let (items, error) = shared::feed_frames(&mut receiver, data, shared::pieces((*seed).into()));

    let expected = reference::reference_decode_frames(data, &limits, crc32c);
    assert_eq!(items, expected.items);
    assert_eq!(error, expected.error);
});
