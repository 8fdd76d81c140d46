//! Fuzz harnesses for the receiver, driven by bolero. Under plain `cargo test` each one runs
//! the fixed number of random inputs given by its `with_iterations`; under `cargo bolero test`
//! they are coverage-guided fuzz targets. `BOLERO_RANDOM_ITERATIONS` runs more inputs; a
//! failure prints the `BOLERO_RANDOM_SEED` that replays it.
//!
//! Two kinds of input: bytes the receiver must survive whatever they are (arbitrary bytes,
//! and sequences of message and connection frames that break the rules now and then), and
//! valid traffic from a `Sender` that is then damaged. Each runs with and without the CRC32C
//! trailer, and the outcome is compared with a reference decoder written from
//! docs/PROTOCOL.md: through `Receiver::decode`, where a connection frame is an error, and
//! for the first two also through `Receiver::decode_frame`, which hands them out.

mod checks;
mod common;
mod damage;
mod reference;
mod soup;

use bolero::check;
use bolero::generator::produce;
use bytes::BytesMut;
use ringwire_core::{Inbound, Incoming, Outgoing, ProtocolError, Receiver, Route};

use checks::{check_error_is_final, check_gauges, check_size};
use damage::{DamageKind, Traffic};
use reference::{FrameOutcome, Held, Outcome, reference_decode, reference_decode_frames};
use soup::FrameSoup;

const KIB: usize = 1024;

/// Input pieces for the harnesses: up to a few KiB.
fn pieces_of(seed: u64) -> impl FnMut() -> usize {
    checks::pieces(seed, 4 * KIB)
}

fn feed_with<T>(
    receiver: &mut Receiver,
    data: &[u8],
    mut piece: impl FnMut() -> usize,
    decode: fn(&mut Receiver, &mut BytesMut) -> Result<Option<T>, ProtocolError>,
    mut take: impl FnMut(&Receiver, T),
) -> Option<ProtocolError> {
    let mut input = BytesMut::new();
    let mut rest = data;
    loop {
        let taken = checks::read_piece(receiver, &mut input, rest, piece());
        rest = &rest[taken..];
        loop {
            let result = decode(receiver, &mut input);
            check_gauges(receiver);
            match result {
                Ok(Some(item)) => take(receiver, item),
                Ok(None) => break,
                Err(error) => {
                    check_error_is_final(receiver, &error, &mut input, rest);
                    return Some(error);
                }
            }
        }
        if rest.is_empty() {
            return None;
        }
    }
}

/// Feeds `data` through [`Receiver::decode`], for a byte stream of messages only, and checks
/// every message against the size limits.
fn feed(mut receiver: Receiver, data: &[u8], piece: impl FnMut() -> usize) -> Outcome {
    let limits = *receiver.limits();
    let mut messages = Vec::new();
    let error = feed_with(
        &mut receiver,
        data,
        piece,
        Receiver::decode,
        |_, message| {
            check_size(&message, &limits);
            messages.push(message);
        },
    );
    Outcome { messages, error }
}

/// Feeds `data` through [`Receiver::decode_frame`], checks every message against the size
/// limits, and notes after each item what the open streams hold: after a stream abort, the
/// reservation must be back to what the streams still open reserve.
fn feed_frames(mut receiver: Receiver, data: &[u8], piece: impl FnMut() -> usize) -> FrameOutcome {
    let limits = *receiver.limits();
    let mut items = Vec::new();
    let mut held = Vec::new();
    let error = feed_with(
        &mut receiver,
        data,
        piece,
        Receiver::decode_frame,
        |receiver, item| {
            if let Inbound::Message(message) = &item {
                check_size(message, &limits);
            }
            items.push(item);
            held.push(Held {
                streams: receiver.open_streams(),
                reserved: receiver.metrics().reassembly_bytes_in_use,
            });
        },
    );
    FrameOutcome { items, held, error }
}

/// The small receivers of `checks` that expect trailers, or those that do not.
fn small_receivers(crc32c: bool) -> Vec<Receiver> {
    (0..checks::SMALL_RECEIVERS)
        .map(checks::small_receiver)
        .filter(|(_, trailers)| *trailers == crc32c)
        .map(|(receiver, _)| receiver)
        .collect()
}

/// Arbitrary bytes, up to 4 KiB, split arbitrarily (the first byte picks the splits), to
/// every small receiver with and without trailers, through `decode` and through
/// `decode_frame`; each outcome must be the reference decoder's. 3000 inputs.
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
                    let outcome = feed(receiver, data, pieces_of(seed.into()));
                    assert_eq!(outcome, reference_decode(data, &limits, crc32c));
                }
                for receiver in small_receivers(crc32c) {
                    let limits = *receiver.limits();
                    let outcome = feed_frames(receiver, data, pieces_of(seed.into()));
                    assert_eq!(outcome, reference_decode_frames(data, &limits, crc32c));
                }
            }
        });
}

/// Frame sequences that mostly keep the rules, message and connection frames alike, to every
/// small receiver, split arbitrarily, through `decode_frame` and through `decode`; each
/// outcome must be the reference decoder's, down to what the open streams hold after each
/// item. 1500 inputs.
#[test]
fn receiver_keeps_limits_on_frame_soup() {
    check!()
        .with_type::<FrameSoup>()
        .with_iterations(1500)
        .for_each(|soup| {
            let crc32c = soup.crc32c;
            for receiver in small_receivers(crc32c) {
                let limits = *receiver.limits();
                let wire = soup.encode(&limits);
                let outcome = feed_frames(receiver, &wire, pieces_of(soup.split_seed));
                assert_eq!(outcome, reference_decode_frames(&wire, &limits, crc32c));
            }
            for receiver in small_receivers(crc32c) {
                let limits = *receiver.limits();
                let wire = soup.encode(&limits);
                let outcome = feed(receiver, &wire, pieces_of(soup.split_seed));
                assert_eq!(outcome, reference_decode(&wire, &limits, crc32c));
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
            let outcome = feed(traffic.receiver(), &damaged, pieces_of(traffic.split_seed));
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
