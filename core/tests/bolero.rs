//! Fuzz harnesses for the receiver, driven by bolero. Under plain `cargo test` each one runs
//! the fixed number of random inputs given by its `with_iterations`; under `cargo bolero test`
//! they are coverage-guided fuzz targets. `BOLERO_RANDOM_ITERATIONS` runs more inputs; a
//! failure prints the `BOLERO_RANDOM_SEED` that replays it.
//!
//! Two kinds of input: bytes the receiver must survive whatever they are (arbitrary bytes,
//! and sequences of frames that break the rules now and then), and valid traffic from a
//! `Sender` that is then damaged. Each runs with and without the CRC32C trailer, and the
//! outcome is compared with a reference decoder written from docs/PROTOCOL.md.

mod common;
mod damage;
mod reference;

use bolero::check;
use bolero::generator::{TypeGenerator, produce};
use bytes::BytesMut;
use ringwire_core::{
    BufferConfig, ConnectionConfig, FRAME_HEADER_LEN, Incoming, Outgoing, ProtocolError,
    ReceiveLimits, Receiver, Route,
};

use damage::{DamageKind, Traffic};
use reference::{Outcome, reference_decode};

const KIB: usize = 1024;
const MIB: u64 = 1024 * 1024;

/// Sizes of successive pieces of input, drawn from `seed`: single bytes, a few bytes, up to
/// a few KiB, or all that is left.
fn pieces(seed: u64) -> impl FnMut() -> usize {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = (state >> 8) as usize;
        match state % 4 {
            0 => 1,
            1 => size % 16 + 1,
            2 => size % (4 * KIB) + 1,
            _ => usize::MAX,
        }
    }
}

/// Feeds `data` to `receiver` in pieces of the sizes `piece` gives, decoding after each
/// piece. Checks on every call what must hold whatever the input: no panic, the reassembly
/// gauge within the budget, open streams within their limit, every message within the size
/// limits, and after an error the same error on every later call.
fn feed(mut receiver: Receiver, data: &[u8], mut piece: impl FnMut() -> usize) -> Outcome {
    let limits = *receiver.limits();
    let mut input = BytesMut::new();
    let mut messages = Vec::new();
    let mut rest = data;
    loop {
        let take = piece().max(1).min(rest.len());
        input.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        loop {
            let result = receiver.decode(&mut input);
            check_gauges(&receiver);
            match result {
                Ok(Some(message)) => {
                    check_size(&message, &limits);
                    messages.push(message);
                }
                Ok(None) => break,
                Err(error) => {
                    check_error_is_final(&mut receiver, &error, &mut input, rest);
                    return Outcome {
                        messages,
                        error: Some(error),
                    };
                }
            }
        }
        if rest.is_empty() {
            return Outcome {
                messages,
                error: None,
            };
        }
    }
}

fn check_gauges(receiver: &Receiver) {
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

fn check_size(message: &Incoming, limits: &ReceiveLimits) {
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

/// After `error`, every call returns it again, whatever input follows.
fn check_error_is_final(
    receiver: &mut Receiver,
    error: &ProtocolError,
    input: &mut BytesMut,
    rest: &[u8],
) {
    assert_eq!(receiver.decode(input).as_ref(), Err(error));
    assert_eq!(
        receiver.decode(&mut BytesMut::from(rest)).as_ref(),
        Err(error)
    );
    assert_eq!(receiver.decode(&mut BytesMut::new()).as_ref(), Err(error));
    assert_eq!(receiver.metrics().protocol_errors, 1);
    check_gauges(receiver);
}

/// Receivers with limits small enough for random input to reach them: a message limit just
/// above the largest ring frame, a message limit far below the ring, and (only without
/// trailers, since a handshake builds its receiver from a configuration) a ring frame limit
/// below the message limit, as a peer might announce.
fn small_receivers(crc32c: bool) -> Vec<Receiver> {
    let near = ConnectionConfig::builder()
        .max_message_size(MIB)
        .reassembly_budget(2 * MIB)
        .max_inbound_streams(4)
        .build()
        .unwrap();
    let ring = BufferConfig::new(BufferConfig::MIN_RING_BUFFER_SIZE).unwrap();
    let below = ConnectionConfig::builder()
        .tell_buffer_config(ring)
        .ask_buffer_config(ring)
        .max_message_size(600)
        .reassembly_budget(1000)
        .max_inbound_streams(2)
        .build()
        .unwrap();
    let frame_below = ReceiveLimits {
        max_message_size: 2000,
        max_frame_payload: 700,
        max_inbound_streams: 3,
        reassembly_budget: 3000,
    };
    if crc32c {
        [near, below]
            .iter()
            .map(|config| {
                Receiver::from_handshake(config, &common::agreed(config.receive_limits(), true))
            })
            .collect()
    } else {
        vec![
            Receiver::new(&near),
            Receiver::new(&below),
            Receiver::with_limits(frame_below),
        ]
    }
}

/// Arbitrary bytes, up to 4 KiB, split arbitrarily (the first byte picks the splits), to
/// every small receiver with and without trailers; the outcome must be the reference
/// decoder's. 3000 inputs.
#[test]
fn receiver_survives_arbitrary_bytes() {
    check!()
        .with_generator(produce::<Vec<u8>>().with().len(0usize..=4 * KIB))
        .with_iterations(3000)
        .for_each(|input: &Vec<u8>| {
            let Some((&seed, data)) = input.split_first() else {
                return;
            };
            for crc32c in [false, true] {
                for receiver in small_receivers(crc32c) {
                    let limits = *receiver.limits();
                    let outcome = feed(receiver, data, pieces(seed.into()));
                    assert_eq!(outcome, reference_decode(data, &limits, crc32c));
                }
            }
        });
}

/// One frame of a [`FrameSoup`]. Most frames keep the rules; `honest` and `size` decide how
/// often ids, offsets, lengths and trailers break them or sit right at a limit.
#[derive(Debug, TypeGenerator)]
struct SoupFrame {
    /// 0: message, 1: stream begin, 2: chunk.
    #[generator(0..3u8)]
    kind: u8,
    #[generator(0..=2u8)]
    message_kind: u8,
    key: u8,
    /// Payload of a message, data of a chunk, or total of a small stream.
    #[generator(0..2048u16)]
    len: u16,
    /// Below 160 a small size from `len`; up to 191 a size at a limit, give or take one
    /// byte; above that a size from `large_total`, up to the message limit and an eighth.
    size: u8,
    #[generator(0..1_500_000u32)]
    large_total: u32,
    /// Which open stream a chunk goes to, or which limit a size sits at.
    pick: u8,
    /// Below 240 the frame keeps the rules on ids, offsets and lengths; up to 247 a chunk
    /// misses them by a little; above that ids and offsets are arbitrary; at 255 the
    /// trailer is wrong too.
    honest: u8,
}

/// Frames with consistent lengths and mostly valid fields, now and then breaking a rule or
/// sitting at a limit, plus possibly one arbitrary header: input that gets past the frame
/// header and reaches the stream rules and the limits, which arbitrary bytes seldom do.
#[derive(Debug, TypeGenerator)]
struct FrameSoup {
    frames: Vec<SoupFrame>,
    junk: Option<(u8, [u8; FRAME_HEADER_LEN])>,
    crc32c: bool,
    split_seed: u64,
}

impl FrameSoup {
    /// The wire bytes for a receiver with `limits`.
    fn encode(&self, limits: &ReceiveLimits) -> Vec<u8> {
        struct Open {
            id: u64,
            total: u64,
            received: u64,
        }
        // Sizes mostly within the limits, some above them.
        let above = |limit: u64| (limit + limit / 16 + 1).min(2048) as u16;
        let (message_cap, stream_cap) = (
            above(limits.max_frame_payload.min(limits.max_message_size)),
            above(limits.max_message_size),
        );
        let mut wire = Vec::new();
        let mut open: Vec<Open> = Vec::new();
        let mut next_id = 0u64;
        for (index, frame) in self.frames.iter().enumerate() {
            if let Some((at, header)) = &self.junk {
                if usize::from(*at) == index {
                    wire.extend_from_slice(header);
                }
            }
            let start = wire.len();
            let reserved: u64 = open.iter().map(|stream| stream.total).sum();
            let at_limit = [
                limits.max_message_size,
                limits.max_frame_payload,
                limits.reassembly_budget.saturating_sub(reserved),
            ][usize::from(frame.pick % 3)];
            // One below, at, or one above.
            let at_limit = (at_limit + u64::from(frame.pick / 3 % 3)).saturating_sub(1);
            let cap = if frame.kind == 0 {
                message_cap
            } else {
                stream_cap
            };
            let small = u64::from(frame.len % cap);
            let size = match frame.size {
                0..160 => small,
                // Filled in for real only when small, to keep inputs cheap.
                160..192 if at_limit <= 4096 => at_limit,
                160..192 => small,
                _ => u64::from(frame.large_total) % (limits.max_message_size * 9 / 8 + 1),
            };
            // An honest chunk needs an open stream; without one it is a message instead.
            let kind = match frame.kind {
                2 if frame.honest < 248 && open.is_empty() => 0,
                kind => kind,
            };
            match kind {
                0 => {
                    let len = size.min(4096) as usize;
                    put_header(&mut wire, 0x01, frame.message_kind, 20 + len);
                    put_envelope_fields(&mut wire, frame.key.into(), index as u64, 0);
                    wire.extend_from_slice(&common::payload(len, index as u64));
                }
                1 => {
                    let id = if frame.honest < 248 {
                        next_id
                    } else {
                        u64::from(frame.pick % 8)
                    };
                    next_id = next_id.max(id + 1);
                    put_header(&mut wire, 0x02, frame.message_kind, 36);
                    wire.extend_from_slice(&id.to_le_bytes());
                    put_envelope_fields(&mut wire, frame.key.into(), index as u64, 0);
                    wire.extend_from_slice(&size.to_le_bytes());
                    open.retain(|stream| stream.id != id);
                    if size > 0 {
                        open.push(Open {
                            id,
                            total: size,
                            received: 0,
                        });
                    }
                }
                _ => {
                    let data_len = size.clamp(1, 4096);
                    let target = (frame.honest < 248).then(|| usize::from(frame.pick) % open.len());
                    let (id, offset, len) = match target {
                        Some(i) => {
                            let stream = &open[i];
                            let left = stream.total - stream.received;
                            let (offset, len) = match frame.honest {
                                0..240 => (stream.received, data_len.min(left)),
                                // A near miss: one byte early, late or too long, or empty.
                                _ => match frame.honest % 4 {
                                    0 => (stream.received + 1, data_len.min(left)),
                                    1 => (stream.received.saturating_sub(1), data_len.min(left)),
                                    2 => (stream.received, left + 1),
                                    _ => (stream.received, 0),
                                },
                            };
                            (stream.id, offset, len)
                        }
                        None => (
                            u64::from(frame.pick % 8),
                            u64::from(frame.large_total % 4096),
                            data_len,
                        ),
                    };
                    put_header(&mut wire, 0x03, 0, 16 + len as usize);
                    wire.extend_from_slice(&id.to_le_bytes());
                    wire.extend_from_slice(&offset.to_le_bytes());
                    wire.extend_from_slice(&common::payload(len as usize, index as u64));
                    if let Some(i) = target {
                        open[i].received += len;
                        if open[i].received >= open[i].total {
                            open.remove(i);
                        }
                    }
                }
            }
            if self.crc32c {
                let crc = crc32c::crc32c(&wire[start..]) ^ u32::from(frame.honest == 255);
                wire.extend_from_slice(&crc.to_le_bytes());
            }
        }
        wire
    }
}

fn put_header(wire: &mut Vec<u8>, kind: u8, flags: u8, body_len: usize) {
    wire.extend_from_slice(&[kind, flags, 0, 0]);
    wire.extend_from_slice(&(body_len as u32).to_le_bytes());
}

fn put_envelope_fields(wire: &mut Vec<u8>, key: u64, correlation_id: u64, type_hash: u32) {
    wire.extend_from_slice(&key.to_le_bytes());
    wire.extend_from_slice(&correlation_id.to_le_bytes());
    wire.extend_from_slice(&type_hash.to_le_bytes());
}

/// Frame sequences that mostly keep the rules, to every small receiver, split arbitrarily;
/// the outcome must be the reference decoder's. 1500 inputs.
#[test]
fn receiver_keeps_limits_on_frame_soup() {
    check!()
        .with_type::<FrameSoup>()
        .with_iterations(1500)
        .for_each(|soup| {
            for receiver in small_receivers(soup.crc32c) {
                let limits = *receiver.limits();
                let wire = soup.encode(&limits);
                let outcome = feed(receiver, &wire, pieces(soup.split_seed));
                assert_eq!(outcome, reference_decode(&wire, &limits, soup.crc32c));
            }
        });
}

/// Decodes all of `wire` at once and returns each message with the number of bytes read
/// when it came out.
fn decode_at_once(mut receiver: Receiver, wire: &[u8]) -> (Vec<(usize, Incoming)>, Outcome) {
    let mut input = BytesMut::from(wire);
    let mut complete_at = Vec::new();
    let error = loop {
        match receiver.decode(&mut input) {
            Ok(Some(message)) => complete_at.push((wire.len() - input.len(), message)),
            Ok(None) => break None,
            Err(error) => break Some(error),
        }
    };
    let messages = complete_at.iter().map(|(_, m)| m.clone()).collect();
    (complete_at, Outcome { messages, error })
}

/// Asserts that every message in `arrived` is one of `sent` (found by its type hash), with
/// the same envelope and the same bytes.
fn assert_all_sent(arrived: &[Incoming], sent: &[(Outgoing, Route)]) {
    for message in arrived {
        let index = message.envelope.type_hash as usize;
        let Some((original, _)) = sent.get(index) else {
            panic!("a message with type hash {index} was never sent");
        };
        assert_eq!(message.envelope, original.envelope);
        assert!(
            message.payload == original.payload,
            "message {index} arrived with other bytes"
        );
    }
}

/// Traffic from a sender, with or without trailers, damaged one way or another, fed to a
/// receiver in random pieces. What arrives must be what the reference decoder makes of the
/// same bytes; and where the damage allows a promise in terms of the sent messages (nothing
/// changed, a cut stream, whole frames dropped, repeated or moved, any damage under
/// trailers), that each message is a sent one, unchanged. 1500 inputs.
#[test]
fn damaged_traffic_yields_sent_messages_or_an_error() {
    check!()
        .with_type::<Traffic>()
        .with_iterations(1500)
        .for_each(|traffic| {
            let (sent, wire) = traffic.send();
            let limits = *traffic.receiver().limits();

            // Undamaged, all at once: every message, unchanged, by its route, in key order.
            let (complete_at, clean) = decode_at_once(traffic.receiver(), &wire);
            assert_eq!(clean.error, None);
            let outgoing: Vec<Outgoing> = sent.iter().map(|(m, _)| m.clone()).collect();
            common::assert_per_key_order(&outgoing, &clean.messages);
            for message in &clean.messages {
                assert_eq!(message.route, sent[message.envelope.type_hash as usize].1);
            }
            assert_eq!(reference_decode(&wire, &limits, traffic.crc32c), clean);

            let (damaged, kind) = traffic.damaged(&wire);
            let outcome = feed(traffic.receiver(), &damaged, pieces(traffic.split_seed));
            assert_eq!(outcome, reference_decode(&damaged, &limits, traffic.crc32c));
            match kind {
                DamageKind::None => assert_eq!(outcome, clean),
                DamageKind::Truncated(cut) => {
                    let expected: Vec<Incoming> = complete_at
                        .into_iter()
                        .filter(|(end, _)| *end <= cut)
                        .map(|(_, message)| message)
                        .collect();
                    assert_eq!(outcome.error, None);
                    assert_eq!(outcome.messages, expected);
                }
                DamageKind::Frames => assert_all_sent(&outcome.messages, &sent),
                DamageKind::Bytes if traffic.crc32c => assert_all_sent(&outcome.messages, &sent),
                DamageKind::Bytes => {}
            }
        });
}
