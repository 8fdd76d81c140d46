//! What the byte-level targets share: receivers with limits small enough for fuzzed input to
//! reach, a way to split input into pieces, and the checks that hold whatever the input.
//!
//! The ideas come from the bolero harnesses in core/tests/bolero.rs, which run the same
//! checks under `cargo test`; the reference decoder is theirs, included by path so that both
//! compare the receiver with the same reading of docs/PROTOCOL.md.

use bytes::BytesMut;
use ringwire_core::{
    BufferConfig, ConnectionConfig, Hello, Inbound, Incoming, ProtocolError, ReceiveLimits,
    Receiver, Route,
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

/// Sizes of successive pieces of input, drawn from `seed`: single bytes, a few bytes, up to
/// a few KiB, or all that is left.
pub(crate) fn pieces(seed: u64) -> impl FnMut() -> usize {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = (state >> 8) as usize;
        match state % 4 {
            0 => 1,
            1 => size % 16 + 1,
            2 => size % 4096 + 1,
            _ => usize::MAX,
        }
    }
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
        let take = piece().max(1).min(rest.len());
        input.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
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

/// The reassembly gauge within the budget and the open streams within their limit.
pub(crate) fn check_gauges(receiver: &Receiver) {
    let limits = receiver.limits();
    let in_use = receiver.metrics().reassembly_bytes_in_use;
    assert!(
        in_use <= limits.reassembly_budget,
        "{in_use} bytes reserved, budget {}",
        limits.reassembly_budget
    );
    assert!(
        receiver.open_streams() <= limits.max_inbound_streams as usize,
        "{} streams open, limit {}",
        receiver.open_streams(),
        limits.max_inbound_streams
    );
}

/// A message handed out is within the message limit, and a ring message within the frame
/// limit.
pub(crate) fn check_size(message: &Incoming, limits: &ReceiveLimits) {
    let len = message.payload.len() as u64;
    assert!(
        len <= limits.max_message_size,
        "{len}-byte message handed out, max_message_size {}",
        limits.max_message_size
    );
    if message.route == Route::Ring {
        assert!(
            len <= limits.max_frame_payload,
            "{len}-byte ring message handed out, max_frame_payload {}",
            limits.max_frame_payload
        );
    }
}

/// After `error`, both decoders return it again, whatever input follows.
fn check_error_is_final(
    receiver: &mut Receiver,
    error: &ProtocolError,
    input: &mut BytesMut,
    rest: &[u8],
) {
    assert_eq!(receiver.decode(input).as_ref(), Err(error));
    assert_eq!(receiver.decode_frame(input).as_ref(), Err(error));
    let mut more = BytesMut::from(rest);
    assert_eq!(receiver.decode_frame(&mut more).as_ref(), Err(error));
    assert_eq!(receiver.decode(&mut BytesMut::new()).as_ref(), Err(error));
    assert_eq!(receiver.metrics().protocol_errors, 1);
    check_gauges(receiver);
}
