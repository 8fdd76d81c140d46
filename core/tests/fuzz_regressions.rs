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
