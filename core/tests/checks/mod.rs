//! What must hold of a `Receiver` whatever its input, and a way to cut input into pieces.
//! Shared by the bolero harnesses, the unsent-accounting tests and (included by path) the
//! cargo-fuzz targets in fuzz/, so that all of them judge the receiver the same way.

#![allow(dead_code, unreachable_pub)]

use bytes::BytesMut;
use ringwire_core::{
    BufferConfig, ConnectionConfig, Hello, Incoming, ProtocolError, ReceiveLimits, Receiver, Route,
};

const MIB: u64 = 1024 * 1024;

/// How many receivers [`small_receiver`] builds.
pub(crate) const SMALL_RECEIVERS: usize = 5;

/// A receiver with limits small enough for random input to reach them, by `index` modulo
/// [`SMALL_RECEIVERS`], and whether it expects CRC32C trailers: without trailers, a message
/// limit just above the largest ring frame, one far below the ring, and a ring frame limit
/// below the message limit, as a peer might announce; then the first two with trailers (a
/// handshake builds its receiver from a configuration, so the third has no such twin).
pub(crate) fn small_receiver(index: usize) -> (Receiver, bool) {
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
    let with_trailers = |config: &ConnectionConfig| {
        let hello = Hello::new(config.receive_limits(), true);
        let agreed = hello.negotiate(&hello).expect("usable limits");
        Receiver::from_handshake(config, &agreed)
    };
    match index % SMALL_RECEIVERS {
        0 => (Receiver::new(&near), false),
        1 => (Receiver::new(&below), false),
        2 => (Receiver::with_limits(frame_below), false),
        3 => (with_trailers(&near), true),
        _ => (with_trailers(&below), true),
    }
}

/// Sizes of successive pieces, drawn from `seed`: single bytes, a few bytes, up to `up_to`
/// bytes, or all that is left.
pub(crate) fn pieces(seed: u64, up_to: usize) -> impl FnMut() -> usize {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = (state >> 8) as usize;
        match state % 4 {
            0 => 1,
            1 => size % 16 + 1,
            2 => size % up_to + 1,
            _ => usize::MAX,
        }
    }
}

/// Moves the first `piece` bytes of `rest` (at least one) to the receiver and returns how
/// many it moved. Odd-sized pieces go straight into a stream's buffer when the receiver offers
/// room (inside a chunk, with `input` drained), as the adapters read; the rest is appended to
/// `input`. Either way, the outcome of decoding must not change.
pub(crate) fn read_piece(
    receiver: &mut Receiver,
    input: &mut BytesMut,
    rest: &[u8],
    piece: usize,
) -> usize {
    let take = piece.max(1).min(rest.len());
    let mut direct = 0;
    let space = if piece % 2 == 1 {
        receiver.chunk_space(input, take)
    } else {
        None
    };
    if let Some(mut space) = space {
        direct = space.len().min(take);
        space[..direct].copy_from_slice(&rest[..direct]);
        space.fill(direct);
    }
    input.extend_from_slice(&rest[direct..take]);
    take
}

/// Reservations within the budget and open streams within their limit.
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
        "{:?} message of {len} bytes handed out, max_message_size {}",
        message.route,
        limits.max_message_size
    );
    if message.route == Route::Ring {
        assert!(
            len <= limits.max_frame_payload,
            "ring message of {len} bytes handed out, max_frame_payload {}",
            limits.max_frame_payload
        );
    }
}

/// After `error`, every call of either decoder returns it again, whatever input follows; it
/// is counted once, and the gauges still hold.
pub(crate) fn check_error_is_final(
    receiver: &mut Receiver,
    error: &ProtocolError,
    input: &mut BytesMut,
    rest: &[u8],
) {
    assert_eq!(receiver.decode(input).as_ref(), Err(error));
    assert_eq!(receiver.decode_frame(input).as_ref(), Err(error));
    assert_eq!(
        receiver.decode(&mut BytesMut::from(rest)).as_ref(),
        Err(error)
    );
    assert_eq!(
        receiver.decode_frame(&mut BytesMut::from(rest)).as_ref(),
        Err(error)
    );
    assert_eq!(receiver.decode(&mut BytesMut::new()).as_ref(), Err(error));
    assert_eq!(receiver.metrics().protocol_errors, 1);
    check_gauges(receiver);
}
