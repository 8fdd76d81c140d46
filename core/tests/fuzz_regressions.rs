//! Inputs the fuzz targets in fuzz/ found, kept as tests. Each test names the target, what the
//! input is, and what docs/PROTOCOL.md says should happen.

use ringwire_core::{
    Connection, ConnectionConfig, ConnectionState, Event, HELLO_FRAME_LEN, Hello, PROTOCOL_VERSION,
};

/// Found by the `handshake` target (minimised; the target's two leading control bytes
/// dropped): a `HELLO` of the base length whose `features` field is `0x57`: bit 0 (CRC32C)
/// and bits 1, 2, 4 and 6, which version 1 does not know.
const HELLO_WITH_UNKNOWN_FEATURES: [u8; HELLO_FRAME_LEN] = [
    0x10, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x52, 0x47, 0x57, 0x52, 0x01, 0x00, 0x03, 0x09,
    0x03, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x7e, 0x10, 0x00, 0x00, 0x00, 0x52, 0x47,
    0x57, 0x00, 0x00, 0x00, 0x00, 0x7e, 0x10, 0x00, 0x00, 0x00, 0x52, 0x47, 0x57, 0x00, 0x00, 0x00,
];

/// docs/PROTOCOL.md: `features` bits are offers; the ones a side does not know are ignored,
/// and only bit 0 means anything to version 1. The fuzz target found these bits accepted while
/// the document still called them reserved; the document now says what the code does, and
/// this test pins it down.
#[test]
fn unknown_feature_bits_are_ignored_and_bit_0_still_counts() {
    let (hello, len) = Hello::decode(&HELLO_WITH_UNKNOWN_FEATURES)
        .expect("a HELLO")
        .expect("complete");
    assert_eq!(len, HELLO_FRAME_LEN);
    assert!(hello.crc32c, "bit 0 asks for CRC32C");
    let again = hello.encode();
    assert_eq!(again[44..48], [1, 0, 0, 0], "only known bits are sent back");
    assert_eq!(again[..44], HELLO_WITH_UNKNOWN_FEATURES[..44]);
}

/// The smallest change to a valid `HELLO`: bit 1 of `features` set, CRC32C not asked for.
#[test]
fn an_unknown_feature_bit_alone_turns_nothing_on() {
    let mut bytes = Hello::new(ConnectionConfig::default().receive_limits(), false).encode();
    bytes[44] |= 0b10;
    let (hello, _) = Hello::decode(&bytes).expect("a HELLO").expect("complete");
    assert!(!hello.crc32c);
}

/// What a connection does with such a peer: it connects, with CRC32C on because both asked,
/// and the unknown offers change nothing else.
#[test]
fn a_connection_accepts_a_peer_offering_unknown_features() {
    let config = ConnectionConfig::default();
    let mut peer = Hello::new(config.receive_limits(), true).encode();
    peer[44] = 0x57;
    let mut connection = Connection::new(config, true);
    let mut input = bytes::BytesMut::from(&peer[..]);
    connection
        .handle_input(&mut input, std::time::Instant::now())
        .expect("connects");
    assert_eq!(connection.state(), ConnectionState::Open);
    let Some(Event::Connected(agreed)) = connection.poll_event() else {
        panic!("no Connected event");
    };
    assert!(agreed.crc32c);
    assert_eq!(agreed.version, PROTOCOL_VERSION);
}

/// Found by the `pair` target (minimised): side B writes its `HELLO` and then closes before
/// the handshake is done, which ends it at once, not cleanly, and without a word to A (it
/// cannot send `CLOSE` before the handshake). A completes its handshake from B's `HELLO`,
/// accepts a 500 KB tell, writes all of it, and closes; B reads nothing more, so A's close
/// times out. The tell neither arrives nor comes back, which docs/DESIGN.md allows for a tell
/// written completely and then lost (a transport would report the loss to A as an end of
/// stream). The target's check had expected that only while the writer was still open; it
/// now expects it whenever the reader ended without a clean close while the link was up.
#[test]
fn a_tell_written_to_a_peer_that_gave_up_in_its_handshake_is_lost_as_documented() {
    use bytes::BytesMut;
    use std::time::{Duration, Instant};

    let now = Instant::now();
    let config_a = ConnectionConfig::builder()
        .close_timeout(Duration::from_millis(1))
        .build()
        .unwrap();
    let mut a = Connection::new(config_a, true);
    let mut b = Connection::new(ConnectionConfig::default(), false);

    let mut to_a = Vec::new();
    while b.transmit_into(&mut to_a, usize::MAX) > 0 {}
    b.close("closed during the handshake", now);
    assert_eq!(b.state(), ConnectionState::Closed);
    assert!(matches!(
        b.poll_event(),
        Some(Event::Closed { clean: false })
    ));

    a.handle_input(&mut BytesMut::from(&to_a[..]), now).unwrap();
    assert_eq!(a.state(), ConnectionState::Open);
    a.tell(1, 0, vec![7u8; 500_356]).unwrap();
    a.close("done", now);
    let mut to_b = Vec::new();
    while a.transmit_into(&mut to_b, usize::MAX) > 0 {}
    assert!(to_b.len() > 500_356, "the whole tell was written");
    b.handle_input(&mut BytesMut::from(&to_b[..]), now).unwrap();
    assert!(
        b.poll_event().is_none(),
        "a closed connection reads nothing"
    );

    a.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(a.state(), ConnectionState::Closed);
    let events: Vec<Event> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(e, Event::CloseTimedOut)));
    assert!(
        !events.iter().any(|e| matches!(e, Event::Unsent(_))),
        "nothing was left unwritten: {events:?}"
    );
    assert!(matches!(
        events.last(),
        Some(Event::Closed { clean: false })
    ));
}
