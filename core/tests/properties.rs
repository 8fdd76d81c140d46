//! Property tests of the sans-IO core, through its public API only: every payload size from 0
//! to 5 MiB round-trips under every valid buffer size on both lanes, the byte stream may be cut
//! into writes of any size, and many messages interleaved on several keys and both lanes each
//! arrive exactly once, unchanged and in per-key order.
//!
//! Case counts are set per property so that the whole file stays well under a minute in a
//! debug build on two cores; `PROPTEST_CASES` overrides them all for a longer run.

mod common;
mod link;

use proptest::prelude::*;
use ringwire_core::{
    BufferConfig, CRC_LEN, ConnectionConfig, ConnectionConfigBuilder, Envelope, Lane,
    MESSAGE_HEADER_LEN, MessageKind, Outgoing, Receiver, Route, Sender,
};

use link::Link;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// The largest payload the round-trip property tries.
const MAX_PAYLOAD: usize = 5 * MIB;
/// Every ring size the requirement names.
const RING_SIZES: [usize; 4] = [256 * KIB, 512 * KIB, MIB, 10 * MIB];

/// `default` cases, or the value of `PROPTEST_CASES` when it is set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn config_with_cases(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        ..ProptestConfig::default()
    }
}

/// Both ends of a connection built from `config`, as a handshake between two sides with that
/// configuration makes them, with or without the CRC32C trailer.
fn pair(config: &ConnectionConfig, crc32c: bool) -> (Sender, Receiver) {
    let agreed = common::agreed(config.receive_limits(), crc32c);
    (
        Sender::from_handshake(config, &agreed),
        Receiver::from_handshake(config, &agreed),
    )
}

fn lane_buffer(config: &ConnectionConfig, lane: Lane) -> BufferConfig {
    match lane {
        Lane::Tell => config.tell_buffer_config(),
        Lane::Ask => config.ask_buffer_config(),
    }
}

fn buffer_config() -> impl Strategy<Value = BufferConfig> {
    prop::sample::select(&RING_SIZES[..]).prop_map(|size| BufferConfig::new(size).unwrap())
}

/// Mostly the default chunk size, sometimes the smallest, sometimes anything up to 8 MiB.
fn chunk_size() -> impl Strategy<Value = usize> {
    let min = ConnectionConfigBuilder::MIN_CHUNK_SIZE;
    prop_oneof![
        3 => Just(ConnectionConfig::DEFAULT_CHUNK_SIZE),
        1 => Just(min),
        2 => min..=256 * KIB,
        1 => min..=8 * MIB,
    ]
}

fn message_kind() -> impl Strategy<Value = MessageKind> {
    prop_oneof![
        2 => Just(MessageKind::Tell),
        1 => Just(MessageKind::Ask),
        1 => Just(MessageKind::Reply),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (message_kind(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(
        |(kind, key, type_hash, id)| Envelope {
            kind,
            key,
            type_hash,
            correlation_id: if kind == MessageKind::Tell { 0 } else { id },
        },
    )
}

/// The sizes where routing or chunking changes on `lane` of `config`, each with its two
/// neighbours: 0, the ring size, the streaming threshold, one and two chunks, and 5 MiB.
fn boundary_sizes(config: &ConnectionConfig, lane: Lane) -> Vec<usize> {
    let buffer = lane_buffer(config, lane);
    let chunk = config.chunk_size();
    let points = [
        0,
        buffer.ring_buffer_size(),
        buffer.streaming_threshold(),
        chunk,
        2 * chunk,
        MAX_PAYLOAD,
    ];
    let mut sizes: Vec<usize> = points
        .iter()
        .flat_map(|&point| [point.saturating_sub(1), point, point + 1])
        .filter(|&size| size <= MAX_PAYLOAD)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Payload sizes for `lane` of `config`: the boundaries, sizes spread over the whole range,
/// and small sizes.
fn payload_size(config: ConnectionConfig, lane: Lane) -> impl Strategy<Value = usize> {
    prop_oneof![
        5 => prop::sample::select(boundary_sizes(&config, lane)),
        3 => 0..=MAX_PAYLOAD,
        2 => 0..=4 * KIB,
    ]
}

/// Sizes of successive writes, from single bytes up to several MiB.
fn write_sizes() -> impl Strategy<Value = Vec<usize>> {
    let size = prop_oneof![
        3 => Just(1usize),
        3 => 1..=64usize,
        2 => 1..=16 * KIB,
        1 => 1..=4 * MIB,
    ];
    prop::collection::vec(size, 1..=12)
}

/// The size of write `index`: `writes` in turn, each round closed by one write of 1/256 of
/// `total`. A multi-MiB message then takes a few thousand writes, while writes of one or a few
/// bytes still land all through it, headers included.
fn write_plan(writes: &[usize], total: usize) -> impl FnMut(usize) -> usize + '_ {
    let stride = (total / 256).max(1);
    move |index| {
        writes
            .get(index % (writes.len() + 1))
            .copied()
            .unwrap_or(stride)
    }
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

/// One message alone on a fresh connection.
#[derive(Clone, Debug)]
struct Single {
    config: ConnectionConfig,
    crc32c: bool,
    envelope: Envelope,
    size: usize,
    writes: Vec<usize>,
    seed: u64,
}

fn single() -> impl Strategy<Value = Single> {
    (
        buffer_config(),
        buffer_config(),
        chunk_size(),
        any::<bool>(),
        envelope(),
    )
        .prop_flat_map(|(tell, ask, chunk, crc32c, envelope)| {
            let config = ConnectionConfig::builder()
                .tell_buffer_config(tell)
                .ask_buffer_config(ask)
                .chunk_size(chunk)
                .build()
                .unwrap();
            (
                Just((config, crc32c, envelope)),
                payload_size(config, envelope.lane()),
                write_sizes(),
                any::<u64>(),
            )
        })
        .prop_map(|((config, crc32c, envelope), size, writes, seed)| Single {
            config,
            crc32c,
            envelope,
            size,
            writes,
            seed,
        })
}

/// Sends one message, pumps it across in the planned writes and checks what arrives, the
/// route and the counters on both sides.
fn round_trip(case: &Single) -> Result<(), TestCaseError> {
    let lane = case.envelope.lane();
    let threshold = lane_buffer(&case.config, lane).streaming_threshold();
    let (mut sender, mut receiver) = pair(&case.config, case.crc32c);
    prop_assert_eq!(sender.streaming_threshold(lane), threshold);

    let payload = common::large_payload(case.size, case.seed);
    let route = sender
        .send(Outgoing::new(case.envelope, payload.clone()))
        .map_err(fail)?;
    let expected = if case.size <= threshold {
        Route::Ring
    } else {
        Route::Stream
    };
    prop_assert_eq!(
        route,
        expected,
        "size {} threshold {}",
        case.size,
        threshold
    );

    let delivered = common::pump_with(
        &mut sender,
        &mut receiver,
        write_plan(&case.writes, case.size),
    );
    prop_assert_eq!(delivered.len(), 1);
    let message = &delivered[0];
    prop_assert_eq!(message.envelope, case.envelope);
    prop_assert_eq!(message.route, route);
    prop_assert_eq!(common::first_difference(&message.payload, &payload), None);

    let (ring, stream) = match route {
        Route::Ring => (1, 0),
        Route::Stream => (0, 1),
    };
    let sent = sender.metrics();
    let received = receiver.metrics();
    prop_assert_eq!((sent.ring_sends, sent.streaming_sends), (ring, stream));
    prop_assert_eq!(
        (received.ring_messages, received.stream_messages),
        (ring, stream)
    );
    prop_assert_eq!(sent.ring_bytes + sent.streaming_bytes, case.size as u64);
    prop_assert_eq!(received.reassembly_bytes_in_use, 0);
    prop_assert_eq!(receiver.open_streams(), 0);
    prop_assert_eq!(sender.ring_bytes_in_use(lane), 0);
    Ok(())
}

proptest! {
    #![proptest_config(config_with_cases(768))]

    /// Any size from 0 to 5 MiB, any of the four ring sizes on either lane, any chunk size,
    /// with or without trailers, the byte stream cut into random writes. 768 cases.
    #[test]
    fn every_size_round_trips(case in single()) {
        round_trip(&case)?;
    }
}

/// Not random: every boundary size under every ring size, on both lanes, with the default
/// chunk size and an odd one, with and without trailers, so that no boundary depends on what
/// the sampler picks.
#[test]
fn every_boundary_round_trips_under_every_buffer_size() {
    let default = ConnectionConfig::DEFAULT_CHUNK_SIZE;
    let variants = [
        (default, false),
        (default, true),
        (100_003, false),
        (100_003, true),
    ];
    for ring in RING_SIZES {
        let buffer = BufferConfig::new(ring).unwrap();
        for kind in [MessageKind::Tell, MessageKind::Ask] {
            for (chunk, crc32c) in variants {
                let config = ConnectionConfig::builder()
                    .tell_buffer_config(buffer)
                    .ask_buffer_config(buffer)
                    .chunk_size(chunk)
                    .build()
                    .unwrap();
                let envelope = Envelope {
                    kind,
                    key: 9,
                    type_hash: 0xfeed,
                    correlation_id: if kind == MessageKind::Tell { 0 } else { 77 },
                };
                for size in boundary_sizes(&config, envelope.lane()) {
                    let case = Single {
                        config,
                        crc32c,
                        envelope,
                        size,
                        writes: vec![64 * KIB + 3],
                        seed: size as u64,
                    };
                    if let Err(error) = round_trip(&case) {
                        panic!(
                            "ring {ring}, {kind:?}, chunk {chunk}, crc32c {crc32c}, size {size}: {error}"
                        );
                    }
                }
            }
        }
    }
}

/// Ring frames of random sizes on one lane, a few on the other, then one message sized to
/// leave the lane's ring exactly full, one byte short of full, or one byte over.
#[derive(Clone, Debug)]
struct ExactFill {
    config: ConnectionConfig,
    crc32c: bool,
    kind: MessageKind,
    fills: Vec<usize>,
    other_lane: Vec<usize>,
    /// -1, 0 or 1: the last message's frame against the room left.
    delta: i64,
}

fn exact_fill() -> impl Strategy<Value = ExactFill> {
    let fill = prop::collection::vec(KIB..=96 * KIB, 1..8);
    let other = prop::collection::vec(0..=8 * KIB, 0..4);
    (
        buffer_config(),
        buffer_config(),
        any::<bool>(),
        message_kind(),
        fill,
        other,
        -1..=1i64,
    )
        .prop_map(
            |(tell, ask, crc32c, kind, fills, other_lane, delta)| ExactFill {
                config: ConnectionConfig::builder()
                    .tell_buffer_config(tell)
                    .ask_buffer_config(ask)
                    .build()
                    .unwrap(),
                crc32c,
                kind,
                fills,
                other_lane,
                delta,
            },
        )
}

fn run_exact_fill(case: &ExactFill) -> Result<(), TestCaseError> {
    let lane = case.kind.lane();
    let (other_kind, other) = match lane {
        Lane::Tell => (MessageKind::Ask, Lane::Ask),
        Lane::Ask => (MessageKind::Tell, Lane::Tell),
    };
    let envelope = |kind, key| Envelope {
        kind,
        key,
        type_hash: 0,
        correlation_id: 0,
    };
    let (mut sender, mut receiver) = pair(&case.config, case.crc32c);
    // What a ring frame adds to its payload: the header, and the trailer if there is one.
    let overhead = MESSAGE_HEADER_LEN + if case.crc32c { CRC_LEN } else { 0 };
    let mut sent = Vec::new();
    let mut send = |sender: &mut Sender, message: Outgoing| {
        sent.push(message.clone());
        sender.send(message).map_err(fail)
    };

    // Fills on keys of their own, so that none of them holds the last message back.
    let mut other_in_use = 0;
    for (index, &size) in case.other_lane.iter().enumerate() {
        let message = Outgoing::new(envelope(other_kind, 1), common::payload(size, index as u64));
        if send(&mut sender, message)? == Route::Ring {
            other_in_use += overhead + size;
        }
    }
    let mut in_use = 0;
    for (index, &size) in case.fills.iter().enumerate() {
        let message = Outgoing::new(envelope(case.kind, 2), common::payload(size, index as u64));
        if send(&mut sender, message)? == Route::Ring {
            in_use += overhead + size;
        }
        prop_assert_eq!(sender.ring_bytes_in_use(lane), in_use);
    }
    prop_assert_eq!(sender.ring_bytes_in_use(other), other_in_use);

    let ring = lane_buffer(&case.config, lane).ring_buffer_size();
    let room = ring - in_use;
    let frame = room as i64 + case.delta;
    prop_assume!(frame >= overhead as i64);
    let size = frame as usize - overhead;
    prop_assert!(size <= sender.streaming_threshold(lane));
    let before = sender.metrics();
    let route = send(
        &mut sender,
        Outgoing::new(envelope(case.kind, 3), common::large_payload(size, 99)),
    )?;
    let after = sender.metrics();
    if case.delta <= 0 {
        prop_assert_eq!(
            route,
            Route::Ring,
            "a frame of {} bytes, {} bytes of room",
            frame,
            room
        );
        prop_assert_eq!(
            sender.ring_bytes_in_use(lane),
            ring - (-case.delta) as usize
        );
    } else {
        prop_assert_eq!(
            route,
            Route::Stream,
            "a frame of {} bytes, {} bytes of room",
            frame,
            room
        );
        prop_assert_eq!(after.ring_full_events, before.ring_full_events + 1);
        prop_assert_eq!(after.streaming_fallbacks, before.streaming_fallbacks + 1);
        prop_assert_eq!(sender.ring_bytes_in_use(lane), in_use);
    }
    prop_assert_eq!(sender.ring_bytes_in_use(other), other_in_use);

    let received = common::pump(&mut sender, &mut receiver, 64 * KIB + 5);
    common::assert_per_key_order(&sent, &received);
    Ok(())
}

proptest! {
    #![proptest_config(config_with_cases(192))]

    /// Ring capacity is counted in bytes, per lane: a frame that leaves the ring exactly full
    /// goes by ring, one byte more falls back to a stream, and the other lane's frames do not
    /// count. 192 cases.
    #[test]
    fn ring_capacity_is_counted_in_bytes(case in exact_fill()) {
        run_exact_fill(&case)?;
    }
}

/// One step of an interleaving: hand a message to the sender, or write some output.
#[derive(Clone, Debug)]
enum Step {
    Send {
        kind: MessageKind,
        key: u64,
        size: usize,
    },
    Write(usize),
}

#[derive(Clone, Debug)]
struct Interleaving {
    config: ConnectionConfig,
    crc32c: bool,
    steps: Vec<Step>,
}

/// Mostly small, some up to the threshold, some right at it, some streams up to twice it.
fn message_size(threshold: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0..=256usize,
        3 => 0..=8 * KIB,
        2 => 0..=threshold,
        1 => threshold - 1..=threshold + 1,
        1 => threshold + 1..=2 * threshold,
    ]
}

fn step(tell_threshold: usize, ask_threshold: usize) -> impl Strategy<Value = Step> {
    let send = (message_kind(), 0..4u64).prop_flat_map(move |(kind, key)| {
        let threshold = match kind.lane() {
            Lane::Tell => tell_threshold,
            Lane::Ask => ask_threshold,
        };
        message_size(threshold).prop_map(move |size| Step::Send { kind, key, size })
    });
    let write = prop_oneof![
        2 => Just(1usize),
        2 => 1..=64usize,
        2 => 1..=16 * KIB,
        1 => 1..=MIB,
    ];
    prop_oneof![3 => send, 2 => write.prop_map(Step::Write)]
}

/// Small rings, small chunks and tight queues, so that rings fill, sends fall back to streams,
/// the stream queue refuses, and the sender has to respect the receiver's stream and budget
/// limits.
fn interleaving() -> impl Strategy<Value = Interleaving> {
    let ring = || {
        prop::sample::select(vec![256 * KIB, 512 * KIB])
            .prop_map(|size| BufferConfig::new(size).unwrap())
    };
    let chunk = prop_oneof![
        Just(KIB),
        Just(4 * KIB),
        Just(ConnectionConfig::DEFAULT_CHUNK_SIZE),
        KIB..=128 * KIB,
    ];
    (
        ring(),
        ring(),
        chunk,
        1..=8usize,
        1..=4u32,
        0..=2 * MIB as u64,
    )
        .prop_flat_map(
            |(tell, ask, chunk, queued_streams, inbound, extra_budget)| {
                (chunk as u64..=2 * MIB as u64).prop_map(move |queued_bytes| {
                    ConnectionConfig::builder()
                        .tell_buffer_config(tell)
                        .ask_buffer_config(ask)
                        .chunk_size(chunk)
                        .max_queued_streams(queued_streams)
                        .max_queued_stream_bytes(queued_bytes)
                        .max_inbound_streams(inbound)
                        .max_message_size(2 * MIB as u64)
                        .reassembly_budget(2 * MIB as u64 + extra_budget)
                        .build()
                        .unwrap()
                })
            },
        )
        .prop_flat_map(|config| {
            let tell = config.tell_buffer_config().streaming_threshold();
            let ask = config.ask_buffer_config().streaming_threshold();
            (
                Just(config),
                any::<bool>(),
                prop::collection::vec(step(tell, ask), 1..=48),
            )
        })
        .prop_map(|(config, crc32c, steps)| Interleaving {
            config,
            crc32c,
            steps,
        })
}

fn run_interleaving(case: &Interleaving) -> Result<(), TestCaseError> {
    let (sender, receiver) = pair(&case.config, case.crc32c);
    let mut link = Link::new(sender, receiver);
    let mut refusals = 0;
    for step in &case.steps {
        match *step {
            Step::Send { kind, key, size } => refusals += link.send(kind, key, size)?,
            Step::Write(max) => {
                link.write(max)?;
            }
        }
    }

    // Drain, with a bound so that a sender that never runs dry fails instead of hanging.
    let mut writes = 0;
    while link.write(MIB)? > 0 {
        writes += 1;
        prop_assert!(writes < 1_000_000, "output never ends");
    }
    prop_assert!(!link.sender.has_output());
    prop_assert!(link.input.is_empty(), "bytes left after the last frame");
    let missing = link.missing();
    prop_assert!(missing.is_empty(), "never arrived: {:?}", missing);

    let messages = link.sent.len() as u64;
    let by_ring = link
        .sent
        .iter()
        .filter(|(_, route)| *route == Route::Ring)
        .count() as u64;
    let bytes: u64 = link.sent.iter().map(|(m, _)| m.payload.len() as u64).sum();
    let sent = link.sender.metrics();
    let received = link.receiver.metrics();
    prop_assert_eq!(sent.ring_sends + sent.streaming_sends, messages);
    prop_assert_eq!(sent.ring_sends, by_ring);
    prop_assert_eq!(sent.ring_bytes + sent.streaming_bytes, bytes);
    prop_assert_eq!(sent.backpressure_refusals, refusals);
    prop_assert_eq!(received.ring_messages, sent.ring_sends);
    prop_assert_eq!(received.stream_messages, sent.streaming_sends);
    prop_assert_eq!(received.reassembly_bytes_in_use, 0);
    prop_assert_eq!(link.receiver.open_streams(), 0);
    prop_assert_eq!(link.sender.ring_bytes_in_use(Lane::Tell), 0);
    prop_assert_eq!(link.sender.ring_bytes_in_use(Lane::Ask), 0);
    Ok(())
}

proptest! {
    #![proptest_config(config_with_cases(768))]

    /// Up to 48 steps of sends (four keys, both lanes, mostly small, some streams) and partial
    /// writes, with or without trailers; every message arrives once, unchanged, by the route
    /// it was given, and in order per key. 768 cases.
    #[test]
    fn interleaved_messages_arrive_once_in_key_order(case in interleaving()) {
        run_interleaving(&case)?;
    }
}
