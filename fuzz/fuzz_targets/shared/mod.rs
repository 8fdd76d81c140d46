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
use ringwire_core::{
    BufferConfig, ConnectionConfig, Hello, Inbound, ProtocolError, ReceiveLimits, Receiver,
};

const MIB: u64 = 1024 * 1024;

/// The receivers a target picks from with one byte of input: three without trailers (a
/// message limit just above the largest ring frame, one far below the ring, and a ring frame
/// limit below the message limit, as a peer might announce) and the first two with CRC32C
/// trailers. Returns the receiver and whether it expects trailers.
pub(crate) fn small_receiver(pick: u8) -> (Receiver, bool) {
    let near = ConnectionConfig::builder()
        .max_message_size(MIB)
        .reassembly_budget(2 * MIB)
        .max_inbound_streams(4)
        .build()
        .expect("valid configuration");
    let ring = BufferConfig::new(BufferConfig::MIN_RING_BUFFER_SIZE).expect("valid ring");
    let below = ConnectionConfig::builder()
        .tell_buffer_config(ring)
        .ask_buffer_config(ring)
        .max_message_size(600)
        .reassembly_budget(1000)
        .max_inbound_streams(2)
        .build()
        .expect("valid configuration");
    let frame_below = ReceiveLimits {
        max_message_size: 2000,
        max_frame_payload: 700,
        max_inbound_streams: 3,
        reassembly_budget: 3000,
    };
    match pick % 5 {
        0 => (Receiver::new(&near), false),
        1 => (Receiver::new(&below), false),
        2 => (Receiver::with_limits(frame_below), false),
        3 => (Receiver::from_handshake(&near, &agreed(&near)), true),
        _ => (Receiver::from_handshake(&below, &agreed(&below)), true),
    }
}

/// What a handshake between two sides with `config` that both want trailers agrees.
fn agreed(config: &ConnectionConfig) -> ringwire_core::Negotiated {
    let hello = Hello::new(config.receive_limits(), true);
    hello.negotiate(&hello).expect("usable limits")
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
