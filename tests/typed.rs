//! Typed messages: rkyv archives through the sans-IO core, type-hash checks, damaged archives
//! and misaligned payloads.

use bytes::{Bytes, BytesMut};
use ringwire::typed::{self, ARCHIVE_ALIGNMENT, DecodeBuffer, Message, TypedError, type_hash};
use ringwire::{BufferConfig, ConnectionConfig, Envelope, Incoming, Receiver, Route, Sender};
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

const KIB: usize = 1024;

/// The production message of the acceptance scenario: a backtest summary with 122 KiB of data.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Summary {
    id: String,
    pnl: f64,
    trade_count: u64,
    win_rate: f64,
    data: Vec<u8>,
}

impl Message for Summary {
    const TYPE_NAME: &'static str = "ringwire_tests::Summary";
}

/// A second type, for mismatches.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Ping {
    sequence: u64,
}

impl Message for Ping {
    const TYPE_NAME: &'static str = "ringwire_tests::Ping";
}

fn summary(data_len: usize) -> Summary {
    Summary {
        id: "backtest-2024-06-01/momentum-ü".to_owned(),
        pnl: -12_345.678_9,
        trade_count: 48_213,
        win_rate: 0.537_2,
        data: (0..data_len).map(|i| (i % 251) as u8).collect(),
    }
}

fn config_256k() -> ConnectionConfig {
    let buffer = BufferConfig::new(256 * KIB).expect("256 KiB is a valid ring size");
    ConnectionConfig::builder()
        .tell_buffer_config(buffer)
        .ask_buffer_config(buffer)
        .build()
        .expect("valid config")
}

/// Moves everything the sender has to the receiver and returns the messages that arrive.
fn pump(sender: &mut Sender, receiver: &mut Receiver) -> Vec<Incoming> {
    let mut wire = Vec::new();
    while sender.transmit_into(&mut wire, usize::MAX) > 0 {}
    let mut input = BytesMut::from(&wire[..]);
    let mut arrived = Vec::new();
    while let Some(message) = receiver.decode(&mut input).expect("valid stream") {
        arrived.push(message);
    }
    assert!(input.is_empty(), "bytes left after the last message");
    arrived
}

fn assert_same_summary(archived: &ArchivedSummary, expected: &Summary) {
    assert_eq!(archived.id, expected.id);
    assert_eq!(archived.pnl.to_native().to_bits(), expected.pnl.to_bits());
    assert_eq!(archived.trade_count.to_native(), expected.trade_count);
    assert_eq!(
        archived.win_rate.to_native().to_bits(),
        expected.win_rate.to_bits()
    );
    assert_eq!(archived.data.as_slice(), &expected.data[..]);
}

/// `bytes` placed at `offset` bytes past a 16-aligned address, as a `Bytes`.
fn at_offset(bytes: &[u8], offset: usize) -> Bytes {
    let mut backing = AlignedVec::<ARCHIVE_ALIGNMENT>::with_capacity(offset + bytes.len());
    backing.extend_from_slice(&vec![0xA5; offset]);
    backing.extend_from_slice(bytes);
    let shifted = Bytes::from_owner(backing).slice(offset..);
    assert_eq!(
        shifted.as_ptr().addr() % ARCHIVE_ALIGNMENT,
        offset % ARCHIVE_ALIGNMENT
    );
    shifted
}

#[test]
fn type_hash_is_fnv1a_32_of_the_name() {
    // Published FNV-1a 32-bit test vectors: the hash is part of the wire contract.
    assert_eq!(type_hash(""), 0x811c_9dc5);
    assert_eq!(type_hash("a"), 0xe40c_292c);
    assert_eq!(type_hash("foobar"), 0xbf9c_f968);

    assert_eq!(Summary::TYPE_HASH, type_hash("ringwire_tests::Summary"));
    assert_ne!(Summary::TYPE_HASH, Ping::TYPE_HASH);
    assert_ne!(Summary::TYPE_HASH, 0, "0 is reserved for untyped bytes");
}

#[test]
fn summary_round_trips_through_sender_and_receiver_with_256k_buffers() {
    let config = config_256k();
    let mut sender = Sender::new(&config);
    let mut receiver = Receiver::new(&config);
    let original = summary(122 * KIB);

    let message = typed::outgoing(Envelope::tell(42), &original).expect("encodes");
    assert_eq!(message.envelope.type_hash, Summary::TYPE_HASH);
    assert!(message.payload.len() > 122 * KIB);
    assert_eq!(sender.send(message).expect("accepted"), Route::Ring);

    let arrived = pump(&mut sender, &mut receiver);
    assert_eq!(arrived.len(), 1);
    let incoming = &arrived[0];
    assert_eq!(incoming.envelope.key, 42);

    // Zero-copy view: every field compared in place.
    let mut buffer = DecodeBuffer::new();
    let view =
        typed::decode::<Summary>(incoming.envelope.type_hash, &incoming.payload, &mut buffer)
            .expect("a valid summary");
    assert_same_summary(&view, &original);
    if !view.was_copied() {
        // Read in place: the archived value lies inside the received payload.
        let payload = incoming.payload.as_ptr_range();
        let archived: *const ArchivedSummary = view.archived();
        assert!(payload.contains(&archived.cast::<u8>()));
    }

    // Owned: equal to what was sent.
    assert_eq!(view.deserialize().expect("deserialises"), original);
    let owned = typed::decode_owned::<Summary>(incoming.envelope.type_hash, &incoming.payload)
        .expect("a valid summary");
    assert_eq!(owned, original);
}

#[test]
fn a_summary_above_the_threshold_streams_and_decodes() {
    // The same type on the streaming route: reassembled payloads decode as well.
    let config = config_256k();
    let mut sender = Sender::new(&config);
    let mut receiver = Receiver::new(&config);
    let original = summary(300 * KIB);

    let message = typed::outgoing(Envelope::tell(7), &original).expect("encodes");
    assert_eq!(sender.send(message).expect("accepted"), Route::Stream);
    let arrived = pump(&mut sender, &mut receiver);
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0].route, Route::Stream);

    let decoded =
        typed::decode_owned::<Summary>(arrived[0].envelope.type_hash, &arrived[0].payload)
            .expect("a valid summary");
    assert_eq!(decoded, original);
}

#[test]
fn encode_returns_the_type_hash_and_aligned_bytes() {
    let (hash, payload) = typed::encode(&summary(16)).expect("encodes");
    assert_eq!(hash, Summary::TYPE_HASH);
    assert_eq!(payload.as_ptr().addr() % ARCHIVE_ALIGNMENT, 0);

    let mut buffer = DecodeBuffer::new();
    let view = typed::decode::<Summary>(hash, &payload, &mut buffer).expect("valid");
    assert!(!view.was_copied(), "an aligned payload is read in place");
    assert_eq!(buffer.capacity(), 0, "and the buffer is not touched");
}

#[test]
fn a_type_hash_mismatch_is_reported_with_both_hashes() {
    let (_, payload) = typed::encode(&summary(64)).expect("encodes");
    let mut buffer = DecodeBuffer::new();

    let error = typed::decode::<Ping>(Summary::TYPE_HASH, &payload, &mut buffer).unwrap_err();
    assert!(
        matches!(
            error,
            TypedError::TypeMismatch { type_name: "ringwire_tests::Ping", expected, found }
                if expected == Ping::TYPE_HASH && found == Summary::TYPE_HASH
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("ringwire_tests::Ping"));

    // Untyped bytes (hash 0) are not a typed message of any type.
    let error = typed::decode::<Summary>(0, &payload, &mut buffer).unwrap_err();
    assert!(matches!(error, TypedError::TypeMismatch { found: 0, .. }));

    // The hash is checked before the bytes: a mismatch never copies or validates.
    assert_eq!(buffer.capacity(), 0);
}

#[test]
fn a_truncated_archive_is_invalid() {
    let (hash, payload) = typed::encode(&summary(122 * KIB)).expect("encodes");
    let mut buffer = DecodeBuffer::new();

    for len in [
        0,
        1,
        8,
        40,
        payload.len() / 2,
        payload.len() - 8,
        payload.len() - 1,
    ] {
        let result = typed::decode::<Summary>(hash, &payload[..len], &mut buffer);
        assert!(
            matches!(
                result,
                Err(TypedError::InvalidArchive {
                    type_name: "ringwire_tests::Summary",
                    ..
                })
            ),
            "truncated to {len} bytes: {result:?}"
        );
    }
}

#[test]
fn every_truncation_of_a_small_archive_is_invalid() {
    let (hash, payload) = typed::encode(&summary(32)).expect("encodes");
    let mut buffer = DecodeBuffer::new();
    for len in 0..payload.len() {
        let result = typed::decode::<Summary>(hash, &payload[..len], &mut buffer);
        assert!(
            matches!(result, Err(TypedError::InvalidArchive { .. })),
            "truncated to {len} of {} bytes: {result:?}",
            payload.len()
        );
    }
}

#[test]
fn corrupted_structure_is_invalid() {
    let original = summary(122 * KIB);
    let (hash, payload) = typed::encode(&original).expect("encodes");

    // The root sits at the end of an rkyv archive; its last field is the data vector's
    // relative pointer and length. Pointing it far outside the buffer must be caught.
    let mut far_pointer = payload.to_vec();
    let root_start = far_pointer.len() - size_of::<ArchivedSummary>();
    let data_field = root_start + std::mem::offset_of!(ArchivedSummary, data);
    far_pointer[data_field + 3] ^= 0x40;
    let result = check(hash, &far_pointer);
    assert!(
        matches!(result, Err(TypedError::InvalidArchive { .. })),
        "{result:?}"
    );

    // A length longer than the buffer.
    let mut long_vec = payload.to_vec();
    long_vec[data_field + 7] = 0x7f;
    let result = check(hash, &long_vec);
    assert!(
        matches!(result, Err(TypedError::InvalidArchive { .. })),
        "{result:?}"
    );

    // Invalid UTF-8 in the id string (0xFF never occurs in UTF-8).
    let mut bad_utf8 = payload.to_vec();
    let id_at = find(&bad_utf8, original.id.as_bytes()).expect("the id is in the archive");
    bad_utf8[id_at] = 0xFF;
    let result = check(hash, &bad_utf8);
    assert!(
        matches!(result, Err(TypedError::InvalidArchive { .. })),
        "{result:?}"
    );
}

#[test]
fn flipping_any_byte_never_panics() {
    // Every byte of a small archive, flipped three ways: the result is either a valid archive
    // (a flipped number is still a number) or InvalidArchive, never a panic or another error.
    let (hash, payload) = typed::encode(&summary(48)).expect("encodes");
    let mut buffer = DecodeBuffer::new();
    let mut invalid = 0;
    for index in 0..payload.len() {
        for mask in [0x01, 0x80, 0xFF] {
            let mut damaged = payload.to_vec();
            damaged[index] ^= mask;
            for offset in [0, 1] {
                match typed::decode::<Summary>(hash, &at_offset(&damaged, offset), &mut buffer) {
                    Ok(view) => {
                        // Still valid: the owned value can be built from it.
                        view.deserialize().expect("a valid archive deserialises");
                    }
                    Err(TypedError::InvalidArchive { .. }) => invalid += 1,
                    Err(other) => panic!("byte {index} ^ {mask:#x}: unexpected {other:?}"),
                }
            }
        }
    }
    assert!(invalid > 0, "some flips must break the structure");
}

#[test]
fn a_misaligned_payload_is_copied_and_decodes() {
    let original = summary(122 * KIB);
    let (hash, payload) = typed::encode(&original).expect("encodes");
    let mut buffer = DecodeBuffer::new();

    for offset in [1, 3, 4, 8, 15] {
        let shifted = at_offset(&payload, offset);
        let view = typed::decode::<Summary>(hash, &shifted, &mut buffer).expect("decodes");
        assert!(view.was_copied(), "offset {offset}");
        assert_same_summary(&view, &original);
        assert_eq!(view.deserialize().expect("deserialises"), original);
    }
    let capacity = buffer.capacity();
    assert!(capacity >= payload.len());

    // Reused for the next misaligned payload without growing.
    let shifted = at_offset(&payload, 1);
    typed::decode::<Summary>(hash, &shifted, &mut buffer).expect("decodes");
    assert_eq!(buffer.capacity(), capacity);

    // The owned path handles a misaligned payload on its own.
    let owned = typed::decode_owned::<Summary>(hash, &at_offset(&payload, 1)).expect("decodes");
    assert_eq!(owned, original);
}

#[test]
fn a_payload_at_offset_16_is_read_in_place() {
    let (hash, payload) = typed::encode(&summary(1024)).expect("encodes");
    let shifted = at_offset(&payload, ARCHIVE_ALIGNMENT);
    let mut buffer = DecodeBuffer::new();
    let view = typed::decode::<Summary>(hash, &shifted, &mut buffer).expect("decodes");
    assert!(!view.was_copied());
}

/// Decodes `bytes`, placed 16-aligned, as a `Summary`, keeping only the outcome.
fn check(hash: u32, bytes: &[u8]) -> Result<(), TypedError> {
    let aligned = at_offset(bytes, 0);
    let mut buffer = DecodeBuffer::new();
    typed::decode::<Summary>(hash, &aligned, &mut buffer).map(|_| ())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
