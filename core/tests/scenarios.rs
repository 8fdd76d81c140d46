//! The acceptance scenarios of the specification at the level of the core: a `Sender` joined to
//! a `Receiver` in memory. Scenarios 6, 10 and 12 need a socket, tasks or a benchmark and live
//! elsewhere.

mod common;

use std::time::Duration;

use common::{assert_per_key_order, payload, pump, pump_counting, write_exactly};
use ringwire_core::{
    BufferConfig, CHUNK_HEADER_LEN, ConfigError, ConnectionConfig, ConnectionConfigBuilder,
    Envelope, HEADER_HEADROOM, Lane, MESSAGE_HEADER_LEN, MessageKind, Outgoing, Receiver, Route,
    SendError, Sender,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The buffer sizes the specification names as the least every size must work with.
const BUFFER_SIZES: [usize; 4] = [256 * KIB, 512 * KIB, MIB, 10 * MIB];

/// Bytes per simulated write: a prime, so frames and chunks are cut in odd places.
const PIECE: usize = 7919;

/// A connection whose tell lane has a ring of `ring_size` bytes; everything else default.
fn tell_config(ring_size: usize) -> ConnectionConfig {
    ConnectionConfig::builder()
        .tell_buffer_config(BufferConfig::new(ring_size).unwrap())
        .build()
        .unwrap()
}

fn ask(key: u64, correlation_id: u64) -> Envelope {
    Envelope {
        kind: MessageKind::Ask,
        key,
        type_hash: 0,
        correlation_id,
    }
}

fn pair(config: &ConnectionConfig) -> (Sender, Receiver) {
    (Sender::new(config), Receiver::new(config))
}

/// Sends `message`, checks the route it took, pumps it across and checks that it alone
/// arrived, whole, by the same route.
fn round_trip(sender: &mut Sender, receiver: &mut Receiver, message: Outgoing, route: Route) {
    let size = message.payload.len();
    let taken = sender.send(message.clone()).unwrap();
    assert_eq!(taken, route, "route at the sender of {size} bytes");
    let received = pump(sender, receiver, PIECE);
    assert_eq!(received.len(), 1, "{size} bytes: messages received");
    assert_eq!(received[0].route, route, "route on arrival of {size} bytes");
    assert_eq!(received[0].envelope, message.envelope);
    assert!(
        received[0].payload == message.payload,
        "{size} bytes: payload differs"
    );
}

// Scenario 1: config validation.

#[test]
fn ring_buffer_below_256_kib_is_rejected_naming_the_minimum() {
    let error = BufferConfig::new(100 * KIB).unwrap_err();
    assert_eq!(
        error,
        ConfigError::RingBufferTooSmall {
            size: 100 * KIB,
            min: 256 * KIB
        }
    );
    assert!(error.to_string().contains("262144"), "{error}");

    assert_eq!(
        BufferConfig::new(256 * KIB - 1),
        Err(ConfigError::RingBufferTooSmall {
            size: 256 * KIB - 1,
            min: 256 * KIB
        })
    );
    assert!(matches!(
        BufferConfig::new(0),
        Err(ConfigError::RingBufferTooSmall { .. })
    ));
}

#[test]
fn ring_buffer_above_10_mib_is_rejected_naming_the_maximum() {
    let error = BufferConfig::new(11 * MIB).unwrap_err();
    assert_eq!(
        error,
        ConfigError::RingBufferTooLarge {
            size: 11 * MIB,
            max: 10 * MIB
        }
    );
    assert!(error.to_string().contains("10485760"), "{error}");

    assert_eq!(
        BufferConfig::new(10 * MIB + 1),
        Err(ConfigError::RingBufferTooLarge {
            size: 10 * MIB + 1,
            max: 10 * MIB
        })
    );
}

#[test]
fn ring_buffer_of_512_kib_is_accepted_with_threshold_511_kib() {
    let config = BufferConfig::new(512 * KIB).unwrap();
    assert_eq!(config.ring_buffer_size(), 512 * KIB);
    assert_eq!(config.streaming_threshold(), 511 * KIB);

    // Both bounds are inside the accepted range.
    for size in [256 * KIB, 10 * MIB] {
        let config = BufferConfig::new(size).unwrap();
        assert_eq!(config.ring_buffer_size(), size);
        assert_eq!(config.streaming_threshold(), size - KIB);
    }
}

#[test]
fn connection_config_builder_errors_name_the_setting() {
    let out_of_range: [(ConnectionConfigBuilder, &str, u64); 7] = [
        (
            ConnectionConfig::builder().max_message_size(0),
            "max_message_size",
            0,
        ),
        (
            ConnectionConfig::builder().max_message_size(4 * 1024 * MIB as u64 + 1),
            "max_message_size",
            4 * 1024 * MIB as u64 + 1,
        ),
        (
            ConnectionConfig::builder().max_inbound_streams(0),
            "max_inbound_streams",
            0,
        ),
        (
            ConnectionConfig::builder().chunk_size(512),
            "chunk_size",
            512,
        ),
        (
            ConnectionConfig::builder().chunk_size(16 * MIB + 1),
            "chunk_size",
            16 * MIB as u64 + 1,
        ),
        // Below the default chunk size of 64 KiB.
        (
            ConnectionConfig::builder().max_queued_stream_bytes(1000),
            "max_queued_stream_bytes",
            1000,
        ),
        (
            ConnectionConfig::builder().max_queued_streams(0),
            "max_queued_streams",
            0,
        ),
    ];
    for (builder, setting, asked) in out_of_range {
        let error = builder.build().unwrap_err();
        match &error {
            ConfigError::OutOfRange { name, value, .. } => {
                assert_eq!(*name, setting);
                assert_eq!(*value, asked, "{setting}");
            }
            other => panic!("{setting}: expected OutOfRange, got {other:?}"),
        }
        assert!(error.to_string().contains(setting), "{error}");
    }

    let error = ConnectionConfig::builder()
        .max_message_size(8 * MIB as u64)
        .reassembly_budget(4 * MIB as u64)
        .build()
        .unwrap_err();
    assert_eq!(
        error,
        ConfigError::BudgetBelowMessageSize {
            budget: 4 * MIB as u64,
            max_message_size: 8 * MIB as u64
        }
    );
    assert!(error.to_string().contains("max_message_size"), "{error}");
}

#[test]
fn close_timeout_defaults_to_10_s_and_is_checked_by_the_builder() {
    assert_eq!(
        ConnectionConfig::default().close_timeout(),
        Duration::from_secs(10)
    );
    let (min, max) = (
        ConnectionConfigBuilder::MIN_CLOSE_TIMEOUT,
        ConnectionConfigBuilder::MAX_CLOSE_TIMEOUT,
    );
    for accepted in [min, Duration::from_millis(250), max] {
        let config = ConnectionConfig::builder().close_timeout(accepted).build();
        assert_eq!(config.map(|c| c.close_timeout()), Ok(accepted));
    }
    for refused in [
        Duration::ZERO,
        min - Duration::from_nanos(1),
        max + Duration::from_nanos(1),
    ] {
        let error = ConnectionConfig::builder()
            .close_timeout(refused)
            .build()
            .unwrap_err();
        assert_eq!(
            error,
            ConfigError::DurationOutOfRange {
                name: "close_timeout",
                value: refused,
                min,
                max,
            }
        );
        assert!(error.to_string().contains("close_timeout"), "{error}");
    }
}

// Scenario 2: the threshold of a 1 MiB config.

#[test]
fn default_1_mib_config_has_threshold_below_ring_size_and_above_1020_kib() {
    let config = BufferConfig::default();
    assert_eq!(config.ring_buffer_size(), MIB);
    let threshold = config.streaming_threshold();
    assert!(threshold < MIB, "{threshold}");
    assert!(threshold > 1020 * KIB, "{threshold}");
    assert_eq!(threshold, MIB - HEADER_HEADROOM);
    assert_eq!(BufferConfig::new(MIB).unwrap(), config);

    let connection = ConnectionConfig::default();
    assert_eq!(connection.tell_buffer_config(), config);
    assert_eq!(connection.ask_buffer_config().ring_buffer_size(), 256 * KIB);
}

// Scenario 3: no hardcoded sizes.

#[test]
fn sender_reports_the_threshold_of_the_config_it_was_built_from() {
    let sender = Sender::new(&tell_config(512 * KIB));
    assert_eq!(sender.streaming_threshold(Lane::Tell), 511 * KIB);
    // The ask lane keeps its own default of 256 KiB.
    assert_eq!(sender.streaming_threshold(Lane::Ask), 255 * KIB);
}

#[test]
fn ask_lane_routes_with_its_own_config() {
    let config = ConnectionConfig::builder()
        .tell_buffer_config(BufferConfig::new(512 * KIB).unwrap())
        .ask_buffer_config(BufferConfig::new(MIB).unwrap())
        .build()
        .unwrap();
    let (mut sender, mut receiver) = pair(&config);
    assert_eq!(sender.streaming_threshold(Lane::Tell), 511 * KIB);
    assert_eq!(sender.streaming_threshold(Lane::Ask), 1023 * KIB);

    // One size, above the tell threshold and below the ask threshold.
    let bytes = payload(511 * KIB + 1, 3);
    let tell = Outgoing::new(Envelope::tell(1), bytes.clone());
    round_trip(&mut sender, &mut receiver, tell, Route::Stream);
    let request = Outgoing::new(ask(1, 42), bytes);
    round_trip(&mut sender, &mut receiver, request, Route::Ring);
}

// Scenario 4: dynamic threshold.

#[test]
fn message_of_300_kib_streams_on_256_kib_and_takes_the_ring_on_1_mib() {
    let bytes = payload(300 * KIB, 4);
    for (ring_size, route) in [(256 * KIB, Route::Stream), (MIB, Route::Ring)] {
        let (mut sender, mut receiver) = pair(&tell_config(ring_size));
        let message = Outgoing::new(Envelope::tell(9), bytes.clone());
        round_trip(&mut sender, &mut receiver, message, route);
    }
}

// Scenario 5: fallback when the ring is full, and what happens when the stream queue is full
// as well.

/// Sends small ring messages on keys `first_key..first_key + 4` without writing anything
/// until the next one would not fit in the tell ring; returns them in send order.
fn fill_tell_ring(
    sender: &mut Sender,
    ring_size: usize,
    first_key: u64,
    seed: u64,
) -> Vec<Outgoing> {
    const SMALL: usize = 1000;
    let mut sent = Vec::new();
    while sender.ring_bytes_in_use(Lane::Tell) + MESSAGE_HEADER_LEN + SMALL <= ring_size {
        let message = Outgoing::new(
            Envelope::tell(first_key + sent.len() as u64 % 4),
            payload(SMALL, seed + sent.len() as u64),
        );
        assert_eq!(sender.send(message.clone()).unwrap(), Route::Ring);
        sent.push(message);
    }
    assert!(sender.ring_bytes_in_use(Lane::Tell) > ring_size - MESSAGE_HEADER_LEN - SMALL);
    sent
}

#[test]
fn message_under_threshold_falls_back_to_stream_when_ring_is_full_and_arrives() {
    let config = ConnectionConfig::default();
    let (mut sender, mut receiver) = pair(&config);
    let ring_size = config.tell_buffer_config().ring_buffer_size();
    let mut sent = fill_tell_ring(&mut sender, ring_size, 0, 500);
    let before = sender.metrics();

    let fallback = Outgoing::new(Envelope::tell(0), payload(100 * KIB, 5));
    assert!(100 * KIB < sender.streaming_threshold(Lane::Tell));
    assert_eq!(sender.send(fallback.clone()).unwrap(), Route::Stream);
    sent.push(fallback);

    let after = sender.metrics();
    assert_eq!(after.streaming_fallbacks, before.streaming_fallbacks + 1);
    assert_eq!(after.ring_full_events, before.ring_full_events + 1);
    assert_eq!(after.streaming_sends, before.streaming_sends + 1);
    assert_eq!(after.ring_sends, before.ring_sends);

    let received = pump(&mut sender, &mut receiver, PIECE);
    assert_per_key_order(&sent, &received);
    let last_of_key_0 = received.iter().rfind(|m| m.envelope.key == 0).unwrap();
    assert_eq!(last_of_key_0.payload.len(), 100 * KIB);
    assert_eq!(last_of_key_0.route, Route::Stream);
    assert_eq!(sender.ring_bytes_in_use(Lane::Tell), 0);
}

#[test]
fn full_stream_queue_hands_the_message_back_and_drops_nothing() {
    // The queue is full by count in one case and by bytes in the other.
    let by_count = ConnectionConfig::builder()
        .tell_buffer_config(BufferConfig::new(256 * KIB).unwrap())
        .max_queued_streams(1);
    let by_bytes = ConnectionConfig::builder()
        .tell_buffer_config(BufferConfig::new(256 * KIB).unwrap())
        .max_queued_stream_bytes(350 * KIB as u64);
    for builder in [by_count, by_bytes] {
        let config = builder.build().unwrap();
        let (mut sender, mut receiver) = pair(&config);

        let first = Outgoing::new(Envelope::tell(1), payload(300 * KIB, 6));
        assert_eq!(sender.send(first.clone()).unwrap(), Route::Stream);
        let mut delivered = vec![first];

        // Above the threshold: it would stream, but the queue is full.
        let large = Outgoing::new(Envelope::tell(2), payload(300 * KIB, 7));
        let error = sender.send(large.clone()).unwrap_err();
        assert!(matches!(error, SendError::Full { .. }), "{error:?}");
        assert_eq!(error.into_message(), large);
        assert_eq!(sender.metrics().backpressure_refusals, 1);
        assert_eq!(sender.metrics().streaming_sends, 1);

        // Under the threshold with the ring full: it would fall back, but the queue is full.
        delivered.extend(fill_tell_ring(&mut sender, 256 * KIB, 10, 700));
        let small = Outgoing::new(Envelope::tell(3), payload(100 * KIB, 8));
        let error = sender.send(small.clone()).unwrap_err();
        assert!(matches!(error, SendError::Full { .. }), "{error:?}");
        assert_eq!(error.into_message(), small);
        assert_eq!(sender.metrics().backpressure_refusals, 2);
        assert_eq!(sender.metrics().streaming_sends, 1);
        assert_eq!(sender.metrics().streaming_fallbacks, 0);

        // Everything accepted arrives, nothing refused does.
        let received = pump(&mut sender, &mut receiver, PIECE);
        assert_per_key_order(&delivered, &received);

        // With the queues drained, the refused messages go through.
        assert_eq!(sender.send(large.clone()).unwrap(), Route::Stream);
        assert_eq!(sender.send(small.clone()).unwrap(), Route::Ring);
        let received = pump(&mut sender, &mut receiver, PIECE);
        assert_per_key_order(&[large, small], &received);
    }
}

#[test]
fn message_above_max_message_size_is_refused_naming_size_and_limit() {
    let limit = MIB as u64;
    let config = ConnectionConfig::builder()
        .tell_buffer_config(BufferConfig::new(256 * KIB).unwrap())
        .max_message_size(limit)
        .build()
        .unwrap();
    let (mut sender, mut receiver) = pair(&config);
    assert_eq!(sender.max_message_size(), limit);

    let oversize = Outgoing::new(Envelope::tell(1), payload(MIB + 1, 9));
    let error = sender.send(oversize.clone()).unwrap_err();
    let text = error.to_string();
    match &error {
        SendError::TooLarge { size, limit: l, .. } => {
            assert_eq!(*size, limit + 1);
            assert_eq!(*l, limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(
        text.contains("1048577") && text.contains("1048576"),
        "{text}"
    );
    assert_eq!(error.into_message(), oversize);
    assert_eq!(sender.metrics().oversize_rejections, 1);
    assert_eq!(sender.metrics().streaming_sends, 0);
    assert!(!sender.has_output(), "a refused message left output behind");

    // The sender stays usable: a message of exactly the limit streams, a small one takes the
    // ring.
    let at_limit = Outgoing::new(Envelope::tell(1), payload(MIB, 10));
    round_trip(&mut sender, &mut receiver, at_limit, Route::Stream);
    let small = Outgoing::new(Envelope::tell(1), payload(100, 11));
    round_trip(&mut sender, &mut receiver, small, Route::Ring);
    assert_eq!(sender.metrics().oversize_rejections, 1);
}

// Scenario 7: size ladder.

const LADDER_KIB: [usize; 9] = [1, 10, 100, 250, 300, 500, 1024, 2048, 5120];

#[test]
fn size_ladder_arrives_under_every_buffer_size() {
    for ring_size in BUFFER_SIZES {
        let (mut sender, mut receiver) = pair(&tell_config(ring_size));
        let threshold = ring_size - HEADER_HEADROOM;
        for (i, kib) in LADDER_KIB.into_iter().enumerate() {
            let size = kib * KIB;
            let route = if size > threshold {
                Route::Stream
            } else {
                Route::Ring
            };
            let message = Outgoing::new(Envelope::tell(i as u64), payload(size, i as u64));
            round_trip(&mut sender, &mut receiver, message, route);
        }
        assert_eq!(receiver.metrics().reassembly_bytes_in_use, 0);
    }
}

#[test]
fn size_ladder_sent_at_once_on_one_key_arrives_in_order() {
    for ring_size in BUFFER_SIZES {
        let (mut sender, mut receiver) = pair(&tell_config(ring_size));
        let mut sent = Vec::new();
        let mut routes = Vec::new();
        for (i, kib) in LADDER_KIB.into_iter().enumerate() {
            let message = Outgoing::new(Envelope::tell(7), payload(kib * KIB, 20 + i as u64));
            routes.push(sender.send(message.clone()).unwrap());
            sent.push(message);
        }
        let received = pump(&mut sender, &mut receiver, PIECE);
        assert_per_key_order(&sent, &received);
        let arrived: Vec<Route> = received.iter().map(|m| m.route).collect();
        assert_eq!(arrived, routes, "ring {ring_size}");
    }
}

// Scenario 8: boundaries.

#[test]
fn threshold_boundaries_route_by_ring_ring_stream_on_both_lanes() {
    for ring_size in BUFFER_SIZES {
        let buffer = BufferConfig::new(ring_size).unwrap();
        let config = ConnectionConfig::builder()
            .tell_buffer_config(buffer)
            .ask_buffer_config(buffer)
            .build()
            .unwrap();
        let (mut sender, mut receiver) = pair(&config);
        let threshold = buffer.streaming_threshold();
        let cases = [
            (threshold - 1, Route::Ring),
            (threshold, Route::Ring),
            (threshold + 1, Route::Stream),
        ];
        for (lane, envelope) in [(Lane::Tell, Envelope::tell(1)), (Lane::Ask, ask(1, 1))] {
            assert_eq!(sender.streaming_threshold(lane), threshold);
            for (size, route) in cases {
                assert_eq!(sender.ring_bytes_in_use(lane), 0);
                let message = Outgoing::new(envelope, payload(size, size as u64));
                round_trip(&mut sender, &mut receiver, message, route);
            }
        }
        assert_eq!(sender.metrics().ring_full_events, 0, "ring {ring_size}");
    }
}

// Scenario 9: large messages on a small connection.

#[test]
fn large_messages_on_256_kib_connection_all_stream_and_arrive() {
    let (mut sender, mut receiver) = pair(&tell_config(256 * KIB));
    let sizes = [
        300 * KIB,
        300 * KIB + 1,
        512 * KIB,
        MIB,
        2 * MIB + 3,
        3 * MIB,
        5 * MIB,
    ];
    let mut sent = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let message = Outgoing::new(Envelope::tell(i as u64), payload(size, 30 + i as u64));
        assert_eq!(sender.send(message.clone()).unwrap(), Route::Stream);
        sent.push(message);
    }
    let received = pump(&mut sender, &mut receiver, 64 * KIB + 1);
    assert_per_key_order(&sent, &received);
    assert!(received.iter().all(|m| m.route == Route::Stream));

    let metrics = receiver.metrics();
    assert_eq!(metrics.stream_messages, sizes.len() as u64);
    assert_eq!(metrics.ring_messages, 0);
    assert_eq!(metrics.largest_message, 5 * MIB as u64);
    assert_eq!(metrics.reassembly_bytes_in_use, 0);
    assert_eq!(receiver.open_streams(), 0);
}

// Scenario 11: metrics.

#[test]
fn one_small_and_one_2_mib_message_move_each_route_counter_by_one() {
    let (mut sender, mut receiver) = pair(&ConnectionConfig::default());
    // Earlier traffic, so the counters move from a value other than zero.
    sender
        .send(Outgoing::new(Envelope::tell(1), payload(10, 40)))
        .unwrap();
    sender
        .send(Outgoing::new(Envelope::tell(2), payload(3 * MIB, 41)))
        .unwrap();
    pump(&mut sender, &mut receiver, PIECE);
    let sent_before = sender.metrics();
    let received_before = receiver.metrics();

    let small = Outgoing::new(Envelope::tell(3), payload(100, 42));
    let large = Outgoing::new(Envelope::tell(4), payload(2 * MIB, 43));
    assert_eq!(sender.send(small).unwrap(), Route::Ring);
    assert_eq!(sender.send(large).unwrap(), Route::Stream);
    let received = pump(&mut sender, &mut receiver, PIECE);
    assert_eq!(received.len(), 2);

    let sent = sender.metrics();
    assert_eq!(sent.ring_sends, sent_before.ring_sends + 1);
    assert_eq!(sent.streaming_sends, sent_before.streaming_sends + 1);
    assert_eq!(sent.ring_bytes, sent_before.ring_bytes + 100);
    assert_eq!(
        sent.streaming_bytes,
        sent_before.streaming_bytes + 2 * MIB as u64
    );
    assert_eq!(sent.ring_full_events, 0);
    assert_eq!(sent.streaming_fallbacks, 0);

    let got = receiver.metrics();
    assert_eq!(got.ring_messages, received_before.ring_messages + 1);
    assert_eq!(got.stream_messages, received_before.stream_messages + 1);
    assert_eq!(got.ring_bytes, received_before.ring_bytes + 100);
    assert_eq!(
        got.streaming_bytes,
        received_before.streaming_bytes + 2 * MIB as u64
    );
    assert_eq!(got.reassembly_bytes_in_use, 0);
    assert_eq!(got.protocol_errors, 0);
}

// Order per key, and no head-of-line blocking across keys.

#[test]
fn small_message_after_a_stream_on_the_same_key_arrives_after_it() {
    let (mut sender, mut receiver) = pair(&ConnectionConfig::default());
    let large = Outgoing::new(Envelope::tell(5), payload(2 * MIB, 50));
    let small = Outgoing::new(Envelope::tell(5), payload(10, 51));
    let other_key = Outgoing::new(Envelope::tell(6), payload(10, 52));
    assert_eq!(sender.send(large.clone()).unwrap(), Route::Stream);
    // Under the threshold with room in the ring, yet it must not overtake the stream.
    assert_eq!(sender.send(small.clone()).unwrap(), Route::Stream);
    assert_eq!(sender.metrics().ordered_behind_stream, 1);
    // Another key is free to take the ring.
    assert_eq!(sender.send(other_key.clone()).unwrap(), Route::Ring);
    assert_eq!(sender.metrics().ordered_behind_stream, 1);

    let received = pump(&mut sender, &mut receiver, PIECE);
    assert_per_key_order(&[large, small, other_key], &received);
    let small_arrived = received
        .iter()
        .find(|m| m.envelope.key == 5 && m.payload.len() == 10)
        .unwrap();
    assert_eq!(small_arrived.route, Route::Stream);
}

#[test]
fn small_message_on_another_key_is_not_stuck_behind_a_5_mib_stream() {
    let (mut sender, mut receiver) = pair(&ConnectionConfig::default());
    let large = Outgoing::new(Envelope::tell(1), payload(5 * MIB, 60));
    let small = Outgoing::new(Envelope::tell(2), payload(100, 61));
    assert_eq!(sender.send(large.clone()).unwrap(), Route::Stream);
    assert_eq!(sender.send(small.clone()).unwrap(), Route::Ring);

    let received = pump(&mut sender, &mut receiver, 4 * KIB);
    let order: Vec<u64> = received.iter().map(|m| m.envelope.key).collect();
    assert_eq!(order, [2, 1], "arrival order by key");
    assert_per_key_order(&[large, small], &received);
}

#[test]
fn small_message_sent_while_a_stream_is_on_the_wire_waits_about_one_chunk() {
    let config = ConnectionConfig::default();
    let chunk = config.chunk_size();
    let (mut sender, mut receiver) = pair(&config);
    let large = Outgoing::new(Envelope::tell(1), payload(5 * MIB, 62));
    assert_eq!(sender.send(large.clone()).unwrap(), Route::Stream);

    // Put a first part of the stream on the wire, then send the small message.
    let head = write_exactly(&mut sender, &mut receiver, 3 * chunk);
    assert!(head.is_empty());
    let small = Outgoing::new(Envelope::tell(2), payload(100, 63));
    assert_eq!(sender.send(small.clone()).unwrap(), Route::Ring);

    let received = pump_counting(&mut sender, &mut receiver, 4 * KIB);
    let (waited, first) = &received[0];
    assert_eq!(first.envelope.key, 2, "the small message arrived last");
    // Output planned before it was sent goes first. The crate promises a delay of about one
    // chunk; allow two with their headers, plus the frame itself, but not many chunks.
    let bound = 2 * (chunk + CHUNK_HEADER_LEN) + MESSAGE_HEADER_LEN + 100;
    assert!(
        *waited <= bound,
        "the small message waited for {waited} bytes, more than {bound}"
    );
    let received: Vec<_> = received.into_iter().map(|(_, m)| m).collect();
    assert_per_key_order(&[large, small], &received);
}
