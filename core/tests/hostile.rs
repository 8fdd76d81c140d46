//! Hostile peers at the core, through the public API only: lengths that claim the impossible,
//! floods of streams, chunks that overlap, repeat, skip or overrun, a `HELLO` with the wrong
//! version, and a peer that dribbles one byte at a time.
//!
//! Every frame a hostile peer sends is written here byte by byte from the tables in
//! docs/PROTOCOL.md rather than by the crate's own encoder, so that the receiver is judged
//! against the contract and not against itself. Each case must end in the typed error the
//! protocol names, with no message handed out and the reassembly gauge back at zero.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::payload;
use ringwire_core::{
    AskError, BufferConfig, Connection, ConnectionConfig, ConnectionError, ConnectionState, Event,
    HandshakeError, Hello, Incoming, ProtocolError, ReceiveLimits, Receiver,
};

const KIB: usize = 1024;
const MIB: u64 = 1024 * 1024;

/// Wire codes from docs/PROTOCOL.md.
const MESSAGE: u8 = 0x01;
const STREAM_BEGIN: u8 = 0x02;
const STREAM_CHUNK: u8 = 0x03;

/// The 8-byte frame header: kind, flags, two reserved bytes, `body_len`.
fn header(kind: u8, flags: u8, body_len: u32) -> Vec<u8> {
    let mut frame = vec![kind, flags, 0, 0];
    frame.extend_from_slice(&body_len.to_le_bytes());
    frame
}

/// A `STREAM_BEGIN` of a tell to key 1 claiming `total_len` bytes.
fn begin(stream_id: u64, total_len: u64) -> Vec<u8> {
    let mut frame = header(STREAM_BEGIN, 0, 36);
    frame.extend_from_slice(&stream_id.to_le_bytes());
    frame.extend_from_slice(&1u64.to_le_bytes()); // key
    frame.extend_from_slice(&0u64.to_le_bytes()); // correlation_id
    frame.extend_from_slice(&0u32.to_le_bytes()); // type_hash
    frame.extend_from_slice(&total_len.to_le_bytes());
    frame
}

/// A `STREAM_CHUNK` carrying `data` at `offset`.
fn chunk(stream_id: u64, offset: u64, data: &[u8]) -> Vec<u8> {
    let mut frame = header(STREAM_CHUNK, 0, 16 + data.len() as u32);
    frame.extend_from_slice(&stream_id.to_le_bytes());
    frame.extend_from_slice(&offset.to_le_bytes());
    frame.extend_from_slice(data);
    frame
}

/// Limits small enough that a test reaches each of them quickly.
fn small_limits() -> ReceiveLimits {
    ReceiveLimits {
        max_message_size: 4 * MIB,
        max_frame_payload: 255 * KIB as u64,
        max_inbound_streams: 8,
        reassembly_budget: 4 * MIB,
    }
}

/// Feeds `frames` in one piece and decodes until an error, which it returns. Fails if a
/// message is handed out on the way or the input runs out first.
fn decode_until_error(receiver: &mut Receiver, frames: &[Vec<u8>]) -> ProtocolError {
    let mut input = BytesMut::from(&frames.concat()[..]);
    match receiver.decode(&mut input) {
        Ok(Some(message)) => panic!("a hostile peer got a message through: {message:?}"),
        Ok(None) => panic!("input ran out without an error"),
        Err(error) => error,
    }
}

/// After a protocol error: the error is sticky, counted once, and every partial message is
/// freed.
fn assert_failed_and_freed(receiver: &mut Receiver, error: &ProtocolError) {
    let mut more = BytesMut::from(&begin(u64::MAX, 1)[..]);
    assert_eq!(receiver.decode(&mut more).as_ref(), Err(error), "sticky");
    assert_eq!(receiver.metrics().protocol_errors, 1);
    assert_eq!(receiver.metrics().reassembly_bytes_in_use, 0);
    assert_eq!(receiver.open_streams(), 0);
}

#[test]
fn a_stream_claiming_2_pow_63_or_u64_max_bytes_is_refused_at_its_begin() {
    for claimed in [1u64 << 63, u64::MAX, (1 << 63) - 1, 128 * MIB + 1] {
        for limits in [small_limits(), ConnectionConfig::default().receive_limits()] {
            let mut receiver = Receiver::with_limits(limits);
            let error = decode_until_error(&mut receiver, &[begin(0, claimed)]);
            assert_eq!(
                error,
                ProtocolError::MessageTooLarge {
                    size: claimed,
                    limit: limits.max_message_size,
                },
                "claimed {claimed}"
            );
            assert_failed_and_freed(&mut receiver, &error);
        }
    }

    // With the largest limits the configuration allows, 2^63 is still refused, and the sum
    // of the claims of open streams cannot wrap past the budget.
    let largest = ConnectionConfig::builder()
        .max_message_size(4 * 1024 * MIB)
        .reassembly_budget(u64::MAX)
        .build()
        .unwrap();
    let mut receiver = Receiver::new(&largest);
    let error = decode_until_error(&mut receiver, &[begin(0, 1 << 63)]);
    assert_eq!(
        error,
        ProtocolError::MessageTooLarge {
            size: 1 << 63,
            limit: 4 * 1024 * MIB,
        }
    );
}

#[test]
fn a_ring_frame_claiming_4_gib_is_refused_from_its_header_alone() {
    for limits in [
        small_limits(),
        ConnectionConfig::default().receive_limits(),
        ConnectionConfig::builder()
            .max_message_size(4 * 1024 * MIB)
            .reassembly_budget(4 * 1024 * MIB)
            .build()
            .unwrap()
            .receive_limits(),
    ] {
        // Only the 8 header bytes: the receiver must not wait for, or set memory aside for,
        // the 4 GiB it is promised.
        let mut receiver = Receiver::with_limits(limits);
        let mut input = BytesMut::from(&header(MESSAGE, 0, u32::MAX)[..]);
        let claimed = u64::from(u32::MAX) - 20;
        let expected = if claimed > limits.max_message_size {
            ProtocolError::MessageTooLarge {
                size: claimed,
                limit: limits.max_message_size,
            }
        } else {
            ProtocolError::FrameTooLarge {
                len: claimed,
                limit: limits.max_frame_payload,
            }
        };
        assert_eq!(receiver.decode(&mut input), Err(expected.clone()));
        assert_failed_and_freed(&mut receiver, &expected);
    }

    // A chunk header claiming 4 GiB of data for a stream of 100 bytes is an overrun, judged
    // before any of the data is awaited.
    let mut receiver = Receiver::with_limits(small_limits());
    let mut claim = header(STREAM_CHUNK, 0, u32::MAX);
    claim.extend_from_slice(&7u64.to_le_bytes());
    claim.extend_from_slice(&0u64.to_le_bytes());
    let error = decode_until_error(&mut receiver, &[begin(7, 100), claim]);
    assert_eq!(
        error,
        ProtocolError::ChunkOverrun {
            id: 7,
            end: u64::from(u32::MAX) - 16,
            total: 100,
        }
    );
    assert_failed_and_freed(&mut receiver, &error);
}

#[test]
fn a_flood_of_stream_begins_stops_at_max_inbound_streams() {
    let limits = small_limits();
    let streams = u64::from(limits.max_inbound_streams);
    let mut receiver = Receiver::with_limits(limits);

    // Each stream is begun and given one byte, so that it really is open.
    let mut frames = Vec::new();
    for id in 0..streams {
        frames.push(begin(id, 1000));
        frames.push(chunk(id, 0, b"x"));
    }
    let mut input = BytesMut::from(&frames.concat()[..]);
    assert_eq!(receiver.decode(&mut input), Ok(None));
    assert_eq!(receiver.open_streams(), streams as usize);
    assert_eq!(receiver.metrics().reassembly_bytes_in_use, streams * 1000);

    // The flood goes on: thousands more begins. The first one past the limit ends it.
    let flood: Vec<Vec<u8>> = (streams..streams + 10_000).map(|id| begin(id, 1)).collect();
    let error = decode_until_error(&mut receiver, &flood);
    assert_eq!(
        error,
        ProtocolError::TooManyStreams {
            limit: limits.max_inbound_streams
        }
    );
    assert_failed_and_freed(&mut receiver, &error);

    // Begins that each stay under the stream count but together claim more than the budget
    // are stopped by the budget instead.
    let mut receiver = Receiver::with_limits(limits);
    let claims: Vec<Vec<u8>> = (0..streams).map(|id| begin(id, 3 * MIB / 2)).collect();
    let error = decode_until_error(&mut receiver, &claims);
    assert_eq!(
        error,
        ProtocolError::ReassemblyBudgetExceeded {
            requested: 3 * MIB / 2,
            in_use: 3 * MIB,
            budget: 4 * MIB,
        }
    );
    assert_failed_and_freed(&mut receiver, &error);

    // Zero-length streams complete at their begin and never count as open, so a long run of
    // them is legitimate traffic, not a flood.
    let mut receiver = Receiver::with_limits(limits);
    let empties: Vec<u8> = (0..1000).flat_map(|id| begin(id, 0)).collect();
    let mut input = BytesMut::from(&empties[..]);
    let mut delivered = 0;
    while let Some(message) = receiver.decode(&mut input).unwrap() {
        assert!(message.payload.is_empty());
        delivered += 1;
    }
    assert_eq!(delivered, 1000);
    assert_eq!(receiver.open_streams(), 0);
}

#[test]
fn chunks_that_overlap_repeat_skip_or_overrun_are_typed_errors_never_a_hole() {
    let data = payload(100, 3);
    // A stream of 100 bytes, then the first 40 of them in order.
    let start = || {
        vec![
            begin(5, 100),
            chunk(5, 0, &data[..30]),
            chunk(5, 30, &data[30..40]),
        ]
    };
    let out_of_order = |offset| ProtocolError::ChunkOutOfOrder {
        id: 5,
        offset,
        expected: 40,
    };
    let cases: [(&str, Vec<u8>, ProtocolError); 7] = [
        ("overlap", chunk(5, 35, &data[35..60]), out_of_order(35)),
        ("repeat", chunk(5, 30, &data[30..40]), out_of_order(30)),
        ("skip", chunk(5, 41, &data[41..100]), out_of_order(41)),
        ("from the start", chunk(5, 0, &data[..]), out_of_order(0)),
        (
            "overrun",
            chunk(5, 40, &[0; 61]),
            ProtocolError::ChunkOverrun {
                id: 5,
                end: 101,
                total: 100,
            },
        ),
        (
            "empty",
            chunk(5, 40, &[]),
            ProtocolError::EmptyChunk { id: 5 },
        ),
        (
            "unknown stream",
            chunk(6, 0, &data[..]),
            ProtocolError::UnknownStream { id: 6 },
        ),
    ];
    for (what, hostile, expected) in cases {
        let mut receiver = Receiver::with_limits(small_limits());
        let mut frames = start();
        frames.push(hostile);
        // Whatever would complete the message after the hostile chunk never gets the chance.
        frames.push(chunk(5, 40, &data[40..]));
        assert_eq!(
            decode_until_error(&mut receiver, &frames),
            expected,
            "{what}"
        );
        assert_failed_and_freed(&mut receiver, &expected);
    }

    // A chunk for a stream that just completed is for a stream no longer open, and so is a
    // repeat of its last chunk: a completed message cannot be extended or completed twice.
    let mut receiver = Receiver::with_limits(small_limits());
    let mut input = BytesMut::from(&[begin(5, 100), chunk(5, 0, &data[..])].concat()[..]);
    let message = receiver.decode(&mut input).unwrap().expect("complete");
    assert_eq!(message.payload, data);
    let error = decode_until_error(&mut receiver, &[chunk(5, 0, &data[..])]);
    assert_eq!(error, ProtocolError::UnknownStream { id: 5 });

    // A stream id used before, even one that completed, cannot be begun again.
    let mut receiver = Receiver::with_limits(small_limits());
    let mut input = BytesMut::from(&[begin(5, 1), chunk(5, 0, b"a")].concat()[..]);
    assert!(receiver.decode(&mut input).unwrap().is_some());
    let error = decode_until_error(&mut receiver, &[begin(5, 1)]);
    assert_eq!(error, ProtocolError::StreamIdReused { id: 5, previous: 5 });
}

/// A `HELLO` written from the protocol table, with our default limits and the given versions.
fn hello_with_versions(min_version: u16, max_version: u16) -> Vec<u8> {
    let mut hello = Hello::new(ConnectionConfig::default().receive_limits(), false);
    hello.min_version = min_version;
    hello.max_version = max_version;
    let frame = hello.encode().to_vec();
    // The version fields sit at offsets 12 and 14 of the frame.
    assert_eq!(
        &frame[12..16],
        [min_version.to_le_bytes(), max_version.to_le_bytes()].concat()
    );
    frame
}

#[test]
fn a_wrong_version_in_hello_fails_the_connection_even_byte_by_byte() {
    for (min, max) in [(0, 0), (2, 2), (2, u16::MAX), (u16::MAX, u16::MAX), (3, 0)] {
        let mut conn = Connection::new(ConnectionConfig::default(), false);
        let now = Instant::now();
        let frame = hello_with_versions(min, max);
        let mut input = BytesMut::new();
        let (last, head) = frame.split_last().unwrap();
        for &byte in head {
            input.extend_from_slice(&[byte]);
            conn.handle_input(&mut input, now)
                .unwrap_or_else(|error| panic!("{min}..={max}: failed early: {error}"));
            assert_eq!(conn.state(), ConnectionState::Handshaking);
        }
        input.extend_from_slice(&[*last]);
        let error = conn.handle_input(&mut input, now).unwrap_err();
        assert_eq!(
            error,
            ConnectionError::Handshake(HandshakeError::VersionMismatch {
                ours_min: 1,
                ours_max: 1,
                theirs_min: min,
                theirs_max: max,
            }),
            "{min}..={max}"
        );
        assert_eq!(conn.state(), ConnectionState::Closed);
        let events: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
        assert!(
            matches!(events[..], [Event::Closed { clean: false }]),
            "{events:?}"
        );
        // A closed connection takes no more input, whatever it is.
        let mut more = BytesMut::from(&hello_with_versions(1, 1)[..]);
        let _ = conn.handle_input(&mut more, now);
        assert_eq!(conn.state(), ConnectionState::Closed);
    }
}

#[test]
fn a_protocol_error_after_the_handshake_fails_pending_asks_with_connection_lost() {
    let config = ConnectionConfig::builder()
        .max_inbound_streams(2)
        .build()
        .unwrap();
    let now = Instant::now();
    let mut conn = Connection::new(config, false);
    let mut input = BytesMut::from(&hello_with_versions(1, 1)[..]);
    conn.handle_input(&mut input, now).unwrap();
    assert!(matches!(conn.poll_event(), Some(Event::Connected(_))));
    let id = conn
        .ask(9, 0, &b"anyone?"[..], now + Duration::from_secs(60))
        .unwrap();

    let flood: Vec<u8> = (0..3).flat_map(|id| begin(id, 10)).collect();
    input.extend_from_slice(&flood);
    let error = conn.handle_input(&mut input, now).unwrap_err();
    assert_eq!(
        error,
        ConnectionError::Protocol(ProtocolError::TooManyStreams { limit: 2 })
    );
    assert_eq!(conn.state(), ConnectionState::Closed);
    assert_eq!(conn.pending_asks(), 0);
    assert_eq!(conn.metrics().receive.reassembly_bytes_in_use, 0);
    let events: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
    assert!(
        events.iter().any(|event| matches!(
            event,
            Event::AskFailed { correlation_id, error: AskError::ConnectionLost }
                if *correlation_id == id
        )),
        "{events:?}"
    );
    assert!(
        matches!(events.last(), Some(Event::Closed { clean: false })),
        "{events:?}"
    );
}

#[test]
fn a_peer_sending_one_byte_at_a_time_is_still_decoded() {
    // A small ring, so that a few hundred KiB already stream; CRC32C on both sides, so that
    // trailers are split too.
    let ring = BufferConfig::new(256 * KIB).unwrap();
    let config = ConnectionConfig::builder()
        .tell_buffer_config(ring)
        .ask_buffer_config(ring)
        .chunk_size(4 * KIB)
        .build()
        .unwrap();
    let now = Instant::now();
    let mut client = Connection::new(config, true);
    let mut server = Connection::new(config, true);

    // Handshake, in one piece each way.
    let mut wire = Vec::new();
    while server.transmit_into(&mut wire, usize::MAX) > 0 {}
    client
        .handle_input(&mut BytesMut::from(&wire[..]), now)
        .unwrap();
    assert!(matches!(client.poll_event(), Some(Event::Connected(_))));

    let sizes = [0, 1, 27, 255 * KIB, 255 * KIB + 1, 300 * KIB, 3, 0];
    let sent: Vec<(u64, bytes::Bytes)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| ((i % 3) as u64, payload(len, i as u64)))
        .collect();
    for (key, data) in &sent {
        client.tell(*key, 0, data.clone()).unwrap();
    }

    // Every byte the client writes, HELLO first, arrives on its own.
    let mut wire = Vec::new();
    while client.transmit_into(&mut wire, usize::MAX) > 0 {}
    let mut input = BytesMut::new();
    let mut received: Vec<Incoming> = Vec::new();
    for &byte in &wire {
        input.extend_from_slice(&[byte]);
        server.handle_input(&mut input, now).unwrap();
        while let Some(event) = server.poll_event() {
            match event {
                Event::Connected(agreed) => assert!(agreed.crc32c),
                Event::Tell(message) => received.push(message),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(input.is_empty(), "{} bytes left over", input.len());
    assert_eq!(server.metrics().receive.reassembly_bytes_in_use, 0);

    // Per key, in the order sent, byte for byte.
    for key in 0..3 {
        let expected: Vec<&bytes::Bytes> = sent
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, data)| data)
            .collect();
        let got: Vec<&bytes::Bytes> = received
            .iter()
            .filter(|message| message.envelope.key == key)
            .map(|message| &message.payload)
            .collect();
        assert_eq!(got, expected, "key {key}");
    }
    assert!(server.metrics().receive.stream_messages >= 2);
    assert!(server.metrics().receive.ring_messages >= 4);
}

#[test]
fn a_second_hello_after_the_handshake_is_a_protocol_error() {
    let now = Instant::now();
    for versions in [(1, 1), (2, 2)] {
        let mut conn = Connection::new(ConnectionConfig::default(), false);
        let mut input = BytesMut::from(&hello_with_versions(1, 1)[..]);
        conn.handle_input(&mut input, now).unwrap();
        assert_eq!(conn.state(), ConnectionState::Open);

        // Handshake frames are not frames of an open connection, whatever they say.
        input.extend_from_slice(&hello_with_versions(versions.0, versions.1));
        let error = conn.handle_input(&mut input, now).unwrap_err();
        assert_eq!(
            error,
            ConnectionError::Protocol(ProtocolError::UnknownFrameKind { code: 0x10 }),
            "{versions:?}"
        );
        assert_eq!(conn.state(), ConnectionState::Closed);
    }
}
