//! The CRC32C trailer: on when both sides ask for it, and any corrupted byte is caught.

mod common;

use bytes::BytesMut;
use common::{handshake_pair, payload, pump, wire_of};
use ringwire_core::{
    BufferConfig, CHUNK_HEADER_LEN, CRC_LEN, ConnectionConfig, Envelope, MESSAGE_HEADER_LEN,
    Outgoing, ProtocolError, Route, Sender,
};

#[test]
fn every_route_round_trips_with_trailers_in_small_pieces() {
    let config = ConnectionConfig::default();
    let (mut sender, mut receiver) = handshake_pair(&config, true);
    let sizes = [0, 1, 1000, 300 * 1024, 2 * 1024 * 1024 + 3];
    let sent: Vec<Outgoing> = sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| Outgoing::new(Envelope::tell(i as u64 % 2), payload(len, i as u64)))
        .collect();
    for message in &sent {
        sender.send(message.clone()).unwrap();
    }
    // A zero-length stream too: behind the stream of key 0, so it goes by stream.
    let empty = Outgoing::new(Envelope::tell(0), payload(0, 99));
    assert_eq!(sender.send(empty.clone()).unwrap(), Route::Stream);

    let received = pump(&mut sender, &mut receiver, 777);
    let mut expected = sent.clone();
    expected.push(empty);
    assert_eq!(received.len(), expected.len());
    for message in &expected {
        assert!(
            received
                .iter()
                .any(|got| got.envelope == message.envelope && got.payload == message.payload),
            "{message:?} missing"
        );
    }
    assert_eq!(receiver.metrics().protocol_errors, 0);
}

#[test]
fn trailers_add_four_bytes_to_each_frame() {
    let config = ConnectionConfig::default();
    let (mut with_crc, _) = handshake_pair(&config, true);
    let mut without = Sender::new(&config);
    let message = Outgoing::new(Envelope::tell(1), payload(100, 1));
    with_crc.send(message.clone()).unwrap();
    without.send(message).unwrap();
    let (a, b) = (wire_of(&mut with_crc), wire_of(&mut without));
    assert_eq!(b.len(), MESSAGE_HEADER_LEN + 100);
    assert_eq!(a.len(), b.len() + CRC_LEN);
    assert_eq!(&a[..b.len()], &b[..]);
    let crc = crc32c::crc32c(&b);
    assert_eq!(&a[b.len()..], &crc.to_le_bytes());
}

#[test]
fn a_flipped_payload_byte_in_a_ring_frame_is_a_checksum_error() {
    let config = ConnectionConfig::default();
    let (mut sender, _) = handshake_pair(&config, true);
    sender
        .send(Outgoing::new(Envelope::tell(1), payload(64, 2)))
        .unwrap();
    let wire = wire_of(&mut sender);
    for at in MESSAGE_HEADER_LEN..wire.len() {
        let mut corrupt = wire.clone();
        corrupt[at] ^= 0x01;
        let (_, mut receiver) = handshake_pair(&config, true);
        let result = receiver.decode(&mut BytesMut::from(&corrupt[..]));
        assert!(
            matches!(
                result,
                Err(ProtocolError::ChecksumMismatch { code: 0x01, .. })
            ),
            "byte {at}: {result:?}"
        );
    }
}

#[test]
fn a_flipped_byte_in_a_chunk_is_caught_before_the_message_is_handed_out() {
    let config = ConnectionConfig::builder()
        .tell_buffer_config(BufferConfig::new(256 * 1024).unwrap())
        .build()
        .unwrap();
    let (mut sender, _) = handshake_pair(&config, true);
    let len = 4 * config.chunk_size() + 5;
    let route = sender
        .send(Outgoing::new(Envelope::tell(1), payload(len, 3)))
        .unwrap();
    assert_eq!(route, Route::Stream);
    let wire = wire_of(&mut sender);
    // Begin frame (with trailer), then the first chunk's header: flip a byte of the second
    // chunk's data, and one of the last chunk's trailer.
    let first_chunk = ringwire_core::BEGIN_FRAME_LEN + CRC_LEN;
    let chunk_frame = CHUNK_HEADER_LEN + config.chunk_size() + CRC_LEN;
    let targets = [
        first_chunk + chunk_frame + CHUNK_HEADER_LEN + 10,
        wire.len() - 1,
    ];
    for at in targets {
        let mut corrupt = wire.clone();
        corrupt[at] ^= 0x80;
        let (_, mut receiver) = handshake_pair(&config, true);
        let mut input = BytesMut::from(&corrupt[..]);
        // The whole input is there: one call either hands the message out or fails.
        let outcome = receiver.decode(&mut input);
        assert!(
            matches!(
                outcome,
                Err(ProtocolError::ChecksumMismatch { code: 0x03, .. })
            ),
            "byte {at}: {outcome:?}"
        );
        assert_eq!(receiver.metrics().reassembly_bytes_in_use, 0);
    }
}
