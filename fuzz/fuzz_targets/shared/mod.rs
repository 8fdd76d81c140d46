//! What the byte-level targets share: receivers with limits small enough for fuzzed input to
//! reach, a way to split input into pieces, and the checks that hold whatever the input.
//!
//! The ideas come from the bolero harnesses in core/tests/bolero.rs, which run the same
//! checks under `cargo test`; the reference decoder is theirs, included by path so that both
//! compare the receiver with the same reading of docs/PROTOCOL.md.

use bytes::BytesMut;

#[path = "../../../core/tests/checks/mod.rs"]
mod checks;
pub(crate) use checks::{check_error_is_final, check_gauges, check_size};
use ringwire_core::{Inbound, ProtocolError, Receiver};

/// The receiver a target picks with one byte of input, and whether it expects trailers: one
/// of the small receivers the bolero harnesses use too.
pub(crate) fn small_receiver(pick: u8) -> (Receiver, bool) {
    checks::small_receiver(pick.into())
}

/// Sizes of successive pieces of input, drawn from `seed`: up to 4 KiB at a time.
pub(crate) fn pieces(seed: u64) -> impl FnMut() -> usize {
    checks::pieces(seed, 4096)
}

/// Feeds `data` to `receiver` through [`Receiver::decode_frame`] in pieces of the sizes
/// `piece` gives, checking after every call the gauges and every message handed out, and
/// after an error that it is final. Returns the items and the error, if any.
pub(crate) fn feed_frames(
    receiver: &mut Receiver,
    data: &[u8],
    mut piece: impl FnMut() -> usize,
) -> (Vec<Inbound>, Option<ProtocolError>) {
    let limits = *receiver.limits();
    let mut items = Vec::new();
    let mut input = BytesMut::new();
    let mut rest = data;
    loop {
        let taken = checks::read_piece(receiver, &mut input, rest, piece());
        rest = &rest[taken..];
        loop {
            let result = receiver.decode_frame(&mut input);
            check_gauges(receiver);
            match result {
                Ok(Some(item)) => {
                    if let Inbound::Message(message) = &item {
                        check_size(message, &limits);
                    }
                    items.push(item);
                }
                Ok(None) => break,
                Err(error) => {
                    check_error_is_final(receiver, &error, &mut input, rest);
                    return (items, Some(error));
                }
            }
        }
        if rest.is_empty() {
            return (items, None);
        }
    }
}
