//! The connection state machine on a simulated pair: handshake, asks with deadlines, cancels
//! and refusals, a lost transport, oversize sends, graceful close and its timeout, and
//! head-of-line blocking, all under a virtual clock.

mod common;
mod sim;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{assert_per_key_order, first_difference, large_payload, payload};
use ringwire_core::{
    AskError, CHUNK_HEADER_LEN, Connection, ConnectionConfig, ConnectionError, ConnectionState,
    Envelope, Event, HandshakeError, Hello, Incoming, MESSAGE_HEADER_LEN, Outgoing,
    PROTOCOL_VERSION, RefuseCode, Route, SendError,
};
use sim::{Pair, Side};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Far enough away that no test reaches it unless it means to.
const NO_HURRY: Duration = Duration::from_secs(3600);

fn connected() -> Pair {
    Pair::connected(ConnectionConfig::default(), ConnectionConfig::default())
}

/// The client asks `key`, with a deadline `within` from now; returns the correlation id.
fn ask(pair: &mut Pair, key: u64, payload: impl Into<Bytes>, within: Duration) -> u64 {
    let deadline = pair.now() + within;
    pair.client
        .conn
        .ask(key, 0, payload, deadline)
        .expect("ask accepted")
}

/// `side` tells `key`; returns the route the message took.
fn tell(side: &mut Side, key: u64, payload: impl Into<Bytes>) -> Route {
    side.conn.tell(key, 0, payload).expect("tell accepted")
}

fn is_no_such_ask(result: &Result<Route, SendError>) -> bool {
    matches!(result, Err(SendError::NoSuchAsk { .. }))
}

/// Asserts two payloads are equal without printing megabytes.
fn assert_same_bytes(got: &[u8], expected: &[u8], what: &str) {
    let (got_len, expected_len) = (got.len(), expected.len());
    let at = first_difference(got, expected);
    assert_eq!(
        at, None,
        "{what}: got {got_len} bytes, expected {expected_len}"
    );
}

/// A `HELLO` frame written byte by byte from the table in docs/PROTOCOL.md, with the limits of
/// the default configuration and no CRC32C.
fn hello_bytes(min_version: u16, max_version: u16) -> Vec<u8> {
    let limits = ConnectionConfig::default().receive_limits();
    let mut frame = vec![0x10, 0, 0, 0];
    frame.extend_from_slice(&40u32.to_le_bytes());
    frame.extend_from_slice(b"RGWR");
    frame.extend_from_slice(&min_version.to_le_bytes());
    frame.extend_from_slice(&max_version.to_le_bytes());
    frame.extend_from_slice(&limits.max_message_size.to_le_bytes());
    frame.extend_from_slice(&limits.max_frame_payload.to_le_bytes());
    frame.extend_from_slice(&limits.max_inbound_streams.to_le_bytes());
    frame.extend_from_slice(&limits.reassembly_budget.to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame
}

#[test]
fn handshake_completes_on_both_sides_and_crc_is_on_only_when_both_ask() {
    let client_config = ConnectionConfig::default();
    let server_config = ConnectionConfig::builder()
        .max_message_size(32 * MIB as u64)
        .max_inbound_streams(8)
        .build()
        .unwrap();
    for (client_crc, server_crc) in [(false, false), (true, false), (false, true), (true, true)] {
        let case = format!("client crc {client_crc}, server crc {server_crc}");
        let mut pair = Pair::new(
            Connection::new(client_config, client_crc),
            Connection::new(server_config, server_crc),
        );
        assert_eq!(pair.client.conn.state(), ConnectionState::Handshaking);
        let early = pair.client.conn.tell(1, 0, &b"too early"[..]);
        assert!(matches!(early, Err(SendError::NotOpen { .. })), "{case}");

        pair.connect();
        for (side, peer_config) in [(&pair.client, server_config), (&pair.server, client_config)] {
            assert_eq!(side.conn.state(), ConnectionState::Open, "{case}");
            let first = side.events.first();
            assert!(
                matches!(first, Some(Event::Connected(_))),
                "{case}: {first:?}"
            );
            let agreed = side.connected();
            assert_eq!(agreed.len(), 1, "{case}: one Connected event");
            assert_eq!(agreed[0].version, PROTOCOL_VERSION, "{case}");
            assert_eq!(agreed[0].crc32c, client_crc && server_crc, "{case}");
            let peer_limits = peer_config.receive_limits();
            assert_eq!(agreed[0].peer_limits, peer_limits, "{case}");
            assert_eq!(side.conn.negotiated(), Some(agreed[0]), "{case}");
        }

        // Both routes work with whatever trailer setting was agreed.
        let big = payload(300 * KIB, 1);
        assert_eq!(tell(&mut pair.client, 1, &b"hi"[..]), Route::Ring);
        assert_eq!(tell(&mut pair.server, 2, big.clone()), Route::Ring);
        ask(&mut pair, 3, big.clone(), NO_HURRY);
        pair.drive();
        assert_eq!(pair.server.tells().len(), 1, "{case}");
        assert_eq!(pair.server.asks()[0].route, Route::Stream, "{case}");
        assert_same_bytes(&pair.server.asks()[0].payload, &big, &case);
        assert_same_bytes(&pair.client.tells()[0].payload, &big, &case);
    }
}

#[test]
fn a_peer_speaking_another_version_fails_at_connect_time() {
    // The bytes written from the protocol document are what the crate encodes.
    let ours = Hello::new(ConnectionConfig::default().receive_limits(), false);
    assert_eq!(hello_bytes(1, 1), ours.encode());

    let mut conn = Connection::new(ConnectionConfig::default(), false);
    let mut out = Vec::new();
    while conn.transmit_into(&mut out, usize::MAX) > 0 {}
    assert_eq!(
        out,
        hello_bytes(1, 1),
        "before the peer answers, only the HELLO"
    );

    let mut input = BytesMut::from(&hello_bytes(2, 2)[..]);
    let mismatch = HandshakeError::VersionMismatch {
        ours_min: 1,
        ours_max: 1,
        theirs_min: 2,
        theirs_max: 2,
    };
    let result = conn.handle_input(&mut input, Instant::now());
    assert_eq!(result, Err(ConnectionError::Handshake(mismatch)));
    assert_eq!(conn.state(), ConnectionState::Closed);
    let events: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
    assert!(
        matches!(events[..], [Event::Closed { clean: false }]),
        "no Connected, only an unclean close: {events:?}"
    );
    assert_eq!(
        conn.transmit_into(&mut out, usize::MAX),
        0,
        "nothing more to write"
    );
    let late = conn.tell(1, 0, &b"after"[..]);
    assert!(matches!(late, Err(SendError::NotOpen { .. })));

    // A peer whose range reaches ours is accepted at the highest common version.
    let mut conn = Connection::new(ConnectionConfig::default(), false);
    let mut input = BytesMut::from(&hello_bytes(1, 2)[..]);
    conn.handle_input(&mut input, Instant::now()).unwrap();
    assert_eq!(conn.state(), ConnectionState::Open);
    assert_eq!(conn.negotiated().map(|agreed| agreed.version), Some(1));
}

#[test]
fn a_peer_that_is_not_ringwire_fails_on_its_first_bytes() {
    let http = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    for len in [1, http.len()] {
        let mut conn = Connection::new(ConnectionConfig::default(), false);
        let mut input = BytesMut::from(&http[..len]);
        let error = conn.handle_input(&mut input, Instant::now()).unwrap_err();
        assert!(
            matches!(
                error,
                ConnectionError::Handshake(HandshakeError::NotRingwire { kind: b'G', .. })
            ),
            "{len} bytes: {error:?}"
        );
        assert_eq!(conn.state(), ConnectionState::Closed);
    }
}

#[test]
fn ask_round_trips_with_small_and_5_mib_replies() {
    let mut pair = connected();
    pair.to_server.split_random(3000, 1);
    pair.to_client.split_random(40_000, 2);
    let small = ask(&mut pair, 1, &b"ping"[..], NO_HURRY);
    let large = ask(&mut pair, 2, &b"5 MiB, please"[..], NO_HURRY);
    assert_ne!(small, large);
    pair.drive_until("both asks arrive", |p| p.server.asks().len() == 2);

    let big = large_payload(5 * MIB, 3);
    let server = &mut pair.server.conn;
    assert_eq!(server.reply(small, 0, &b"pong"[..]).unwrap(), Route::Ring);
    assert_eq!(server.reply(large, 0, big.clone()).unwrap(), Route::Stream);
    pair.drive();

    let replies = pair.client.replies();
    assert_eq!(replies.len(), 2);
    let by_id = |id: u64| replies.iter().find(|r| r.envelope.correlation_id == id);
    assert_eq!(&by_id(small).expect("small reply").payload[..], b"pong");
    let large_reply = by_id(large).expect("5 MiB reply");
    assert_eq!(large_reply.route, Route::Stream);
    assert_same_bytes(&large_reply.payload, &big, "5 MiB reply");

    let asks = pair.client.conn.metrics().asks;
    assert_eq!((asks.sent, asks.answered, asks.expired), (2, 2, 0));
    assert_eq!(asks.late_replies, 0);
    assert_eq!(pair.server.conn.metrics().asks.sent, 0);
    assert_eq!(pair.client.conn.pending_asks(), 0);
    assert!(pair.client.ask_failures().is_empty());
}

#[test]
fn deadline_expiry_fails_the_ask_frees_it_and_tells_the_peer() {
    let mut pair = connected();
    let latency = Duration::from_millis(100);
    pair.to_server.latency = latency;
    pair.to_client.latency = latency;
    let start = pair.elapsed();

    // One ask the server never answers; one it answers at once, which still takes a round
    // trip (200 ms) to come back: too late for a 150 ms deadline.
    let unanswered = ask(&mut pair, 1, &b"q1"[..], Duration::from_millis(500));
    let too_late = ask(&mut pair, 2, &b"q2"[..], Duration::from_millis(150));
    pair.drive_until("both asks arrive", |p| p.server.asks().len() == 2);
    assert_eq!(pair.elapsed(), start + latency);
    pair.server.conn.reply(too_late, 0, &b"late"[..]).unwrap();

    // Just before the deadline nothing has failed.
    pair.advance(Duration::from_millis(49));
    pair.step();
    assert!(pair.client.ask_failures().is_empty());
    assert_eq!(pair.client.conn.pending_asks(), 2);

    pair.drive_until("the first ask fails", |p| {
        !p.client.ask_failures().is_empty()
    });
    assert_eq!(
        pair.elapsed(),
        start + Duration::from_millis(150),
        "exactly at the deadline"
    );
    let expired = AskError::DeadlineExceeded;
    assert_eq!(pair.client.ask_failures(), [(too_late, &expired)]);
    assert_eq!(pair.client.conn.pending_asks(), 1);

    pair.drive();
    let failures = pair.client.ask_failures();
    assert_eq!(failures, [(too_late, &expired), (unanswered, &expired)]);
    assert!(
        pair.client.replies().is_empty(),
        "a late reply is not delivered"
    );
    assert_eq!(pair.client.conn.pending_asks(), 0);
    assert_eq!(pair.client.conn.poll_timeout(), None);
    let asks = pair.client.conn.metrics().asks;
    assert_eq!((asks.expired, asks.answered, asks.late_replies), (2, 0, 1));

    // The server was told about the ask it still held, and its state for it is gone.
    assert_eq!(pair.server.cancelled_asks(), [unanswered]);
    let reply = pair.server.conn.reply(unanswered, 0, &b"a1"[..]);
    assert!(is_no_such_ask(&reply), "{reply:?}");
}

#[test]
fn an_ask_whose_deadline_passes_before_it_is_written_is_freed_on_both_sides() {
    let mut pair = connected();
    pair.to_server.stall();
    let id = ask(&mut pair, 1, &b"stuck"[..], Duration::from_millis(100));
    pair.drive();
    assert_eq!(
        pair.client.ask_failures(),
        [(id, &AskError::DeadlineExceeded)]
    );

    pair.to_server.resume();
    pair.drive();
    // The server must not be left holding an ask nobody waits for: either the ask never
    // reaches it, or it is told that the ask is cancelled.
    let asked = !pair.server.asks().is_empty();
    let cancelled = pair.server.cancelled_asks().contains(&id);
    assert!(
        !asked || cancelled,
        "the server got the expired ask {id} and was not told it was cancelled"
    );
    let reply = pair.server.conn.reply(id, 0, &b"nobody waits"[..]);
    assert!(is_no_such_ask(&reply), "{reply:?}");
}

#[test]
fn cancel_during_a_streamed_reply_aborts_it_and_the_connection_goes_on() {
    let mut pair = connected();
    pair.to_client.split_fixed(16 * KIB);
    let id = ask(&mut pair, 1, &b"5 MiB, please"[..], NO_HURRY);
    pair.drive_until("the ask arrives", |p| p.server.asks().len() == 1);
    let big = large_payload(5 * MIB, 4);
    assert_eq!(pair.server.conn.reply(id, 0, big).unwrap(), Route::Stream);

    let start = pair.to_client.delivered();
    pair.drive_until("a MiB of the reply arrives", |p| {
        p.to_client.delivered() > start + MIB as u64
    });
    let gauge = pair.client.conn.metrics().receive.reassembly_bytes_in_use;
    assert_eq!(gauge, 5 * MIB as u64, "the reply is being reassembled");
    assert!(pair.client.conn.cancel_ask(id));
    assert!(!pair.client.conn.cancel_ask(id), "only once");
    pair.drive();

    let client = pair.client.conn.metrics();
    assert_eq!(client.receive.reassembly_bytes_in_use, 0);
    assert!(pair.client.replies().is_empty());
    assert_eq!(client.asks.cancelled, 1);
    let reply_bytes = pair.to_client.delivered() - start;
    let late_replies = client.asks.late_replies;
    assert!(
        client.receive.stream_messages == 0 && late_replies == 0,
        "the reply stream was not aborted but completed: {reply_bytes} bytes of it reached the \
         client, {late_replies} late replies"
    );
    assert!(reply_bytes < 5 * MIB as u64);

    // The connection goes on.
    let again = ask(&mut pair, 1, &b"again"[..], NO_HURRY);
    pair.drive_until("the second ask arrives", |p| p.server.asks().len() == 2);
    pair.server.conn.reply(again, 0, &b"pong"[..]).unwrap();
    pair.drive();
    let replies = pair.client.replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].envelope.correlation_id, again);
    assert_eq!(&replies[0].payload[..], b"pong");
}

#[test]
fn cancel_while_the_ask_itself_streams_aborts_it() {
    let mut pair = connected();
    pair.to_server.split_fixed(16 * KIB);
    let id = ask(&mut pair, 1, large_payload(5 * MIB, 5), NO_HURRY);
    pair.drive_until("a MiB of the ask arrives", |p| {
        p.server.conn.metrics().receive.reassembly_bytes_in_use > 0
            && p.to_server.delivered() > MIB as u64
    });
    let held = pair.client.conn.metrics().send.stream_bytes_held;
    assert_eq!(held, 5 * MIB as u64, "the ask's payload is held whole");
    assert!(pair.client.conn.cancel_ask(id));
    assert_eq!(pair.client.conn.metrics().send.stream_bytes_held, 0);
    pair.drive();

    let server = pair.server.conn.metrics().receive;
    assert_eq!(server.reassembly_bytes_in_use, 0);
    assert_eq!(server.stream_messages, 0, "the ask stream was aborted");
    assert!(pair.server.asks().is_empty());
    assert!(pair.to_server.written() < 5 * MIB as u64);
    assert_eq!(pair.client.conn.pending_asks(), 0);
    assert!(
        pair.client.ask_failures().is_empty(),
        "a cancel reports nothing"
    );

    tell(&mut pair.client, 1, &b"still here"[..]);
    pair.drive();
    assert_eq!(&pair.server.tells()[0].payload[..], b"still here");
}

#[test]
fn refuse_fails_the_ask_with_code_and_reason() {
    let mut pair = connected();
    let id = ask(&mut pair, 1, &b"q"[..], NO_HURRY);
    let long = ask(&mut pair, 1, &b"q"[..], NO_HURRY);
    pair.drive_until("the asks arrive", |p| p.server.asks().len() == 2);

    let server = &mut pair.server.conn;
    let code = RefuseCode::HandlerFailed;
    assert!(server.refuse(id, code, "no handler for this"));
    assert!(!server.refuse(id, code, "twice"), "refused once");
    // A reason is cut to 256 bytes, on a character boundary.
    assert!(server.refuse(long, RefuseCode::Other(77), &"é".repeat(200)));
    pair.drive();

    let reason = "no handler for this".to_owned();
    let refused = AskError::Refused { code, reason };
    let cut = AskError::Refused {
        code: RefuseCode::Other(77),
        reason: "é".repeat(128),
    };
    assert_eq!(pair.client.ask_failures(), [(id, &refused), (long, &cut)]);
    assert_eq!(pair.client.conn.metrics().asks.refused, 2);
    assert_eq!(pair.client.conn.pending_asks(), 0);
    let reply = pair.server.conn.reply(id, 0, &b"after all"[..]);
    assert!(is_no_such_ask(&reply), "{reply:?}");
}

#[test]
fn peer_dying_mid_stream_frees_reassembly_and_hands_back_what_was_unsent() {
    let mut pair = connected();
    assert_eq!(tell(&mut pair.client, 1, &b"before"[..]), Route::Ring);
    let id = ask(&mut pair, 3, &b"question"[..], NO_HURRY);
    pair.drive_until("the tell and the ask arrive", |p| {
        p.server.tells().len() == 1 && p.server.asks().len() == 1
    });

    // A 5 MiB tell, and a small one that must wait behind it (same key), so goes by stream.
    let big = Outgoing::new(Envelope::tell(2), large_payload(5 * MIB, 6));
    let after = Outgoing::new(Envelope::tell(2), &b"after the big one"[..]);
    for message in [&big, &after] {
        assert_eq!(
            tell(&mut pair.client, 2, message.payload.clone()),
            Route::Stream
        );
    }
    pair.to_server.split_fixed(10_000);
    pair.to_server.cut_after(2 * MIB as u64 + 12_345);
    pair.drive_until("the stream is being reassembled", |p| {
        p.server.conn.metrics().receive.reassembly_bytes_in_use > 0
    });
    pair.drive();
    assert!(pair.is_lost());

    // The receiver freed the partial message and saw nothing past the cut.
    let server = &pair.server;
    assert_eq!(server.conn.metrics().receive.reassembly_bytes_in_use, 0);
    assert_eq!(server.conn.state(), ConnectionState::Closed);
    assert_eq!(server.closed(), [false]);
    assert_eq!(server.tells().len(), 1, "only the tell before the stream");

    // The sender got back exactly the messages not completely written.
    let client = &pair.client;
    assert_eq!(client.conn.state(), ConnectionState::Closed);
    assert_eq!(client.closed(), [false]);
    assert_eq!(client.ask_failures(), [(id, &AskError::ConnectionLost)]);
    let mut unsent = client.unsent();
    unsent.sort_by_key(|message| std::cmp::Reverse(message.payload.len()));
    assert!(unsent == [&big, &after], "unsent: {unsent:?}");
}

#[test]
fn a_cut_fails_pending_asks_at_once_and_stops_the_clock() {
    let mut pair = connected();
    let id = ask(&mut pair, 1, &b"q"[..], Duration::from_secs(1));
    pair.drive_until("the ask arrives", |p| p.server.asks().len() == 1);
    let before = pair.elapsed();
    pair.cut();
    assert_eq!(
        pair.client.ask_failures(),
        [(id, &AskError::ConnectionLost)]
    );
    assert_eq!(pair.client.conn.poll_timeout(), None, "no deadline left");
    pair.drive();
    assert_eq!(pair.elapsed(), before, "nothing left to wake up for");
    for side in [&pair.client, &pair.server] {
        assert_eq!(side.conn.state(), ConnectionState::Closed);
        assert_eq!(side.closed(), [false]);
    }
    assert!(pair.server.conn.reply(id, 0, &b"a"[..]).is_err());
}

#[test]
fn oversize_message_fails_at_the_sender_and_the_connection_stays_usable() {
    let limit = 300 * KIB;
    let server_config = ConnectionConfig::builder()
        .max_message_size(limit as u64)
        .build()
        .unwrap();
    let mut pair = Pair::connected(ConnectionConfig::default(), server_config);
    let written = pair.to_server.written();

    let too_big = payload(limit + 1, 7);
    let error = pair.client.conn.tell(1, 0, too_big.clone()).unwrap_err();
    let text = error.to_string();
    let names_both = text.contains(&(limit + 1).to_string()) && text.contains(&limit.to_string());
    assert!(names_both, "{text}");
    match error {
        SendError::TooLarge {
            size,
            limit: named,
            message,
        } => {
            assert_eq!((size, named), (limit as u64 + 1, limit as u64));
            assert_eq!(message.payload, too_big, "the message is handed back");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let refused = pair.client.conn.ask(1, 0, too_big, pair.now() + NO_HURRY);
    assert!(
        matches!(refused, Err(SendError::TooLarge { .. })),
        "{refused:?}"
    );
    assert_eq!(pair.client.conn.pending_asks(), 0);
    assert!(!pair.client.conn.has_output(), "nothing was queued");
    pair.drive();
    assert_eq!(pair.to_server.written(), written, "no byte was written");
    let send = pair.client.conn.metrics().send;
    assert_eq!(send.oversize_rejections, 2);
    assert_eq!(send.ring_bytes + send.streaming_bytes, 0);

    // At the limit, and small: both arrive.
    let at_limit = payload(limit, 8);
    tell(&mut pair.client, 1, at_limit.clone());
    tell(&mut pair.client, 1, &b"small"[..]);
    pair.drive();
    let tells = pair.server.tells();
    assert_eq!(tells.len(), 2);
    assert_same_bytes(&tells[0].payload, &at_limit, "message at the limit");
    assert_eq!(&tells[1].payload[..], b"small");
}

#[test]
fn graceful_close_drains_accepted_messages_then_closes_cleanly() {
    let mut pair = connected();
    pair.to_server.split_random(50_000, 9);
    let big = large_payload(5 * MIB, 10);
    assert_eq!(tell(&mut pair.client, 1, big.clone()), Route::Stream);
    let now = pair.now();
    pair.client.conn.close("done", now);
    assert_eq!(pair.client.conn.state(), ConnectionState::Closing);

    let late = &b"after close"[..];
    match pair.client.conn.tell(1, 0, late) {
        Err(SendError::NotOpen { message }) => assert_eq!(&message.payload[..], late),
        other => panic!("expected NotOpen, got {other:?}"),
    }
    let refused = pair.client.conn.ask(1, 0, late, pair.now() + NO_HURRY);
    assert!(
        matches!(refused, Err(SendError::NotOpen { .. })),
        "{refused:?}"
    );
    pair.drive();

    let tells = pair.server.tells();
    assert_eq!(tells.len(), 1);
    assert_same_bytes(&tells[0].payload, &big, "the tell sent before close");
    let events = &pair.server.events;
    let tell_at = events.iter().position(|e| matches!(e, Event::Tell(_)));
    let closed_at = events
        .iter()
        .position(|e| matches!(e, Event::Closed { .. }));
    assert!(tell_at < closed_at, "delivered before the close");
    for side in [&pair.client, &pair.server] {
        assert_eq!(side.closed(), [true]);
        assert_eq!(side.conn.state(), ConnectionState::Closed);
        assert!(side.unsent().is_empty());
    }
    assert!(!pair.is_lost(), "closed, not lost");
    let after = pair.server.conn.tell(1, 0, late);
    assert!(matches!(after, Err(SendError::NotOpen { .. })));
}

/// A configuration whose graceful close may take `timeout`.
fn with_close_timeout(timeout: Duration) -> ConnectionConfig {
    ConnectionConfig::builder()
        .close_timeout(timeout)
        .build()
        .expect("a valid close timeout")
}

/// The events of `side` from index `from` on, by name, for comparing sequences.
fn event_names(side: &Side, from: usize) -> Vec<&'static str> {
    side.events[from..]
        .iter()
        .map(|event| match event {
            Event::Connected(_) => "Connected",
            Event::Tell(_) => "Tell",
            Event::Ask(_) => "Ask",
            Event::Reply(_) => "Reply",
            Event::AskFailed { .. } => "AskFailed",
            Event::AskCancelled { .. } => "AskCancelled",
            Event::Unsent(_) => "Unsent",
            Event::CloseTimedOut => "CloseTimedOut",
            Event::Closed { .. } => "Closed",
            _ => "other",
        })
        .collect()
}

#[test]
fn a_close_the_peer_never_answers_ends_at_its_deadline_with_the_unsent_handed_back() {
    let timeout = Duration::from_secs(2);
    let mut pair = Pair::connected(with_close_timeout(timeout), ConnectionConfig::default());
    let id = ask(&mut pair, 1, &b"question"[..], NO_HURRY);
    pair.drive_until("the ask arrives", |p| p.server.asks().len() == 1);

    // The server stops reading: nothing the client writes from now on reaches it.
    pair.to_server.stall();
    let big = Outgoing::new(Envelope::tell(2), large_payload(5 * MIB, 21));
    let small = Outgoing::new(Envelope::tell(3), &b"small"[..]);
    assert_eq!(
        tell(&mut pair.client, 2, big.payload.clone()),
        Route::Stream
    );
    assert_eq!(
        tell(&mut pair.client, 3, small.payload.clone()),
        Route::Ring
    );
    let closed_at = pair.elapsed();
    let now = pair.now();
    let events_before = pair.client.events.len();
    pair.client.conn.close("done", now);
    assert_eq!(pair.client.conn.state(), ConnectionState::Closing);
    assert_eq!(pair.client.conn.poll_timeout(), Some(now + timeout));

    // Still closing a moment before the deadline, whatever is tried meanwhile...
    pair.advance(timeout - Duration::from_micros(1));
    pair.step();
    assert_eq!(pair.client.conn.state(), ConnectionState::Closing);
    assert_eq!(
        pair.client.events.len(),
        events_before,
        "nothing happened yet"
    );

    // ... and given up exactly at it.
    pair.advance(Duration::from_micros(1));
    pair.step();
    let client = &pair.client;
    assert_eq!(pair.elapsed(), closed_at + timeout);
    assert_eq!(client.conn.state(), ConnectionState::Closed);
    assert_eq!(
        event_names(client, events_before),
        ["CloseTimedOut", "AskFailed", "Unsent", "Closed"]
    );
    assert_eq!(client.ask_failures(), [(id, &AskError::CloseTimedOut)]);
    let mut unsent = client.unsent();
    unsent.sort_by_key(|message| std::cmp::Reverse(message.payload.len()));
    assert!(unsent == [&big, &small], "unsent: {unsent:?}");
    assert_eq!(client.closed(), [false]);
    assert_eq!(client.conn.pending_asks(), 0);
    assert_eq!(pair.client.conn.poll_timeout(), None, "no deadline left");

    // Nothing more is written, and the stalled server never heard of the close.
    let written = pair.to_server.written();
    pair.to_server.resume();
    pair.drive();
    assert_eq!(pair.to_server.written(), written);
    assert_eq!(pair.server.conn.state(), ConnectionState::Open);
    assert!(pair.server.tells().is_empty());
}

#[test]
fn a_close_answered_in_time_is_clean_and_its_deadline_goes_away() {
    let timeout = Duration::from_secs(2);
    let mut pair = Pair::connected(with_close_timeout(timeout), with_close_timeout(timeout));
    // Each way takes 400 ms: the close completes after 800 ms, well within 2 s.
    pair.to_server.latency = Duration::from_millis(400);
    pair.to_client.latency = Duration::from_millis(400);
    let message = payload(KIB, 22);
    tell(&mut pair.client, 1, message.clone());
    let closed_at = pair.elapsed();
    let now = pair.now();
    pair.client.conn.close("done", now);
    assert_eq!(pair.client.conn.poll_timeout(), Some(now + timeout));
    pair.drive_until("both sides close", |p| {
        p.client.conn.state() == ConnectionState::Closed
            && p.server.conn.state() == ConnectionState::Closed
    });
    let took = pair.elapsed() - closed_at;
    assert_eq!(took, Duration::from_millis(800));

    for side in [&pair.client, &pair.server] {
        assert_eq!(side.closed(), [true]);
        assert!(side.unsent().is_empty());
        assert!(!event_names(side, 0).contains(&"CloseTimedOut"));
    }
    assert_same_bytes(&pair.server.tells()[0].payload, &message, "the tell");
    // The deadline went with the close: the clock does not move for it any more.
    assert_eq!(pair.client.conn.poll_timeout(), None);
    pair.drive();
    assert_eq!(pair.elapsed() - closed_at, took);
}

#[test]
fn a_close_answered_after_the_deadline_is_given_up_with_nothing_unsent() {
    // The answer needs 2 s to come back; the closer waits 1.5 s.
    let timeout = Duration::from_millis(1500);
    let mut pair = Pair::connected(with_close_timeout(timeout), ConnectionConfig::default());
    pair.to_server.latency = Duration::from_secs(1);
    pair.to_client.latency = Duration::from_secs(1);
    tell(&mut pair.client, 1, &b"written before the close"[..]);
    let closed_at = pair.elapsed();
    let now = pair.now();
    pair.client.conn.close("done", now);
    pair.drive();

    // Everything was written: the client gives up on the answer only, and reports nothing
    // unsent. The server saw both CLOSE frames cross on its side and closed cleanly; the
    // client, closed by then, never reads its answer.
    let client = &pair.client;
    assert!(event_names(client, 0).contains(&"CloseTimedOut"));
    assert!(client.unsent().is_empty());
    assert_eq!(client.closed(), [false]);
    assert_eq!(pair.server.tells().len(), 1);
    assert_eq!(pair.server.closed(), [true]);
    assert!(pair.elapsed() - closed_at >= timeout);
}

#[test]
fn the_side_answering_a_close_gives_up_too_when_it_cannot_drain() {
    let client_timeout = Duration::from_secs(3);
    let server_timeout = Duration::from_secs(1);
    let mut pair = Pair::connected(
        with_close_timeout(client_timeout),
        with_close_timeout(server_timeout),
    );
    // The client stops reading: the server's 5 MiB tell cannot be written, so the server,
    // closing because the client's CLOSE arrived, can never send its own.
    pair.to_client.stall();
    let big = Outgoing::new(Envelope::tell(4), large_payload(5 * MIB, 23));
    assert_eq!(
        tell(&mut pair.server, 4, big.payload.clone()),
        Route::Stream
    );
    let closed_at = pair.elapsed();
    let now = pair.now();
    pair.client.conn.close("done", now);
    pair.drive_until("the server gives up", |p| {
        p.server.conn.state() == ConnectionState::Closed
    });
    assert_eq!(pair.elapsed() - closed_at, server_timeout);
    let server = &pair.server;
    assert_eq!(
        event_names(server, 0),
        ["Connected", "CloseTimedOut", "Unsent", "Closed"]
    );
    assert!(server.unsent() == [&big]);
    assert_eq!(pair.client.conn.state(), ConnectionState::Closing);

    pair.drive();
    assert_eq!(pair.elapsed() - closed_at, client_timeout);
    assert_eq!(pair.client.closed(), [false]);
    assert!(
        pair.client.unsent().is_empty(),
        "the client wrote everything"
    );
}

#[test]
fn a_stalled_link_pushes_back_and_everything_arrives_after_resume() {
    let mut pair = connected();
    pair.to_server.stall();
    let mut accepted = Vec::new();
    loop {
        let index = accepted.len() as u64;
        let message = Outgoing::new(Envelope::tell(index % 3), payload(100 * KIB, index));
        match pair.client.conn.tell(index % 3, 0, message.payload.clone()) {
            Ok(_) => accepted.push(message),
            Err(SendError::Full { message: back }) => {
                assert_eq!(back, message, "the refused message is handed back");
                break;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
        assert!(accepted.len() < 10_000, "never pushed back");
    }
    let send = pair.client.conn.metrics().send;
    assert_eq!(send.backpressure_refusals, 1);
    assert!(
        send.ring_sends > 0 && send.streaming_fallbacks > 0,
        "{send:?}"
    );

    pair.to_server.resume();
    pair.drive();
    let received: Vec<Incoming> = pair.server.tells().into_iter().cloned().collect();
    assert_per_key_order(&accepted, &received);
}

#[test]
#[should_panic(expected = "livelock")]
fn drive_bounded_calls_a_run_that_does_not_settle_a_livelock() {
    let mut pair = connected();
    pair.to_server.split_fixed(KIB);
    tell(&mut pair.client, 1, payload(MIB, 12));
    pair.drive_bounded(100);
}

/// While a 64 MiB message streams on key 1, sends a small tell on another key about every
/// 250 KB of progress, and measures how many bytes each waits on the wire.
#[test]
fn small_messages_pass_a_64_mib_stream() {
    const BIG: usize = 64 * MIB;
    /// Not a multiple of the chunk size, so that the sends fall at every point of a chunk.
    const EVERY: u64 = 250_007;
    /// Bytes per write: the resolution of the delay measurement.
    const PIECE: usize = KIB;

    // Room for a 64 MiB message in the receiver, and in the stream queue for the small message
    // of the same key that has to wait behind it.
    let config = ConnectionConfig::builder()
        .max_message_size(BIG as u64)
        .reassembly_budget(BIG as u64)
        .max_queued_stream_bytes(BIG as u64 + 1024)
        .build()
        .unwrap();
    let chunk = config.chunk_size();
    let mut pair = Pair::connected(config, config);
    pair.to_server.split_fixed(PIECE);

    // The big message, and a small one of the same key that must wait behind it.
    let mut sent = vec![
        Outgoing::new(Envelope::tell(1), large_payload(BIG, 11)),
        Outgoing::new(Envelope::tell(1), &b"behind"[..]),
    ];
    for message in &sent {
        assert_eq!(
            tell(&mut pair.client, 1, message.payload.clone()),
            Route::Stream
        );
    }

    // For each small message: the bytes written when it was sent. Its payload is its index.
    let mut sent_at = Vec::new();
    // For each small message that arrived while the big one streamed: the range its wait
    // lies in, since it completed somewhere within the last write.
    let mut waits = Vec::new();
    let mut seen = pair.server.events.len();
    let mut big_done = false;
    while !big_done {
        if pair.to_server.written() >= EVERY * (sent_at.len() as u64 + 1) {
            let n = sent_at.len() as u64;
            let small = Outgoing::new(Envelope::tell(2 + n % 4), n.to_le_bytes().to_vec());
            let route = tell(&mut pair.client, small.envelope.key, small.payload.clone());
            assert_eq!(route, Route::Ring);
            sent.push(small);
            sent_at.push(pair.to_server.written());
        }
        let before = pair.to_server.delivered();
        assert!(pair.step(), "the pair stalled mid-stream");
        for event in &pair.server.events[seen..] {
            let Event::Tell(message) = event else {
                continue;
            };
            if message.envelope.key == 1 {
                big_done = true;
            } else if !big_done {
                let n = u64::from_le_bytes(message.payload[..8].try_into().unwrap());
                let at = sent_at[n as usize];
                waits.push((before.saturating_sub(at), pair.to_server.delivered() - at));
            }
        }
        seen = pair.server.events.len();
    }
    pair.drive();

    // Every message arrived once, in order per key: on key 1, the big one first.
    let received: Vec<Incoming> = pair.server.tells().into_iter().cloned().collect();
    assert_per_key_order(&sent, &received);

    let passed = waits.len();
    let worst = waits.iter().map(|&(_, upper)| upper).max().unwrap();
    let worst_lower = waits.iter().map(|&(lower, _)| lower).max().unwrap();
    let mean = waits.iter().map(|&(_, upper)| upper).sum::<u64>() / passed as u64;
    let in_chunks = |bytes: u64| bytes as f64 / chunk as f64;
    println!(
        "head-of-line: {passed} of {} small messages sent during the 64 MiB stream arrived \
         before it completed",
        sent_at.len()
    );
    println!(
        "head-of-line: the longest wait of a small message sent mid-stream was \
         {worst_lower}..={worst} bytes ({:.2} chunks of {chunk}); mean at most {mean} bytes \
         ({:.2} chunks); measured to {PIECE} bytes",
        in_chunks(worst),
        in_chunks(mean),
    );
    assert!(
        passed >= sent_at.len() - 1 && passed >= 250,
        "only {passed} of {} small messages passed the stream",
        sent_at.len()
    );
    // Two chunks with their headers, and the small message's own frame. The upper end of
    // each measured range is held to it, so the claim holds whatever the write resolution.
    let bound = 2 * (chunk + CHUNK_HEADER_LEN) + MESSAGE_HEADER_LEN + 8;
    assert!(
        worst < bound as u64,
        "a small message waited {worst_lower}..={worst} bytes, not under {bound}"
    );
}
