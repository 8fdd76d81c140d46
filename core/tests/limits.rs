//! Receive limits hold on every route, whatever the peer's own configuration says.

mod common;

use bytes::BytesMut;
use common::payload;
use ringwire_core::{
    ConnectionConfig, Envelope, Lane, Outgoing, ProtocolError, Receiver, Route, SendError, Sender,
};

#[test]
fn ring_frame_above_max_message_size_is_refused_by_the_receiver() {
    let strict = ConnectionConfig::builder()
        .max_message_size(4096)
        .build()
        .unwrap();
    // A sender that believes the peer takes the defaults puts 100 000 bytes in one frame.
    let loose = ConnectionConfig::default();
    let mut sender = Sender::new(&loose);
    let mut receiver = Receiver::new(&strict);
    let route = sender
        .send(Outgoing::new(Envelope::tell(1), payload(100_000, 1)))
        .unwrap();
    assert_eq!(route, Route::Ring);

    let mut wire = Vec::new();
    while sender.transmit_into(&mut wire, usize::MAX) > 0 {}
    let mut input = BytesMut::from(&wire[..]);
    assert_eq!(
        receiver.decode(&mut input),
        Err(ProtocolError::MessageTooLarge {
            size: 100_000,
            limit: 4096
        })
    );
    assert_eq!(receiver.metrics().protocol_errors, 1);
}

#[test]
fn ring_frame_limit_follows_max_message_size() {
    let strict = ConnectionConfig::builder()
        .max_message_size(4096)
        .build()
        .unwrap();
    assert_eq!(strict.receive_limits().max_frame_payload, 4096);
}

#[test]
fn sender_keeps_within_the_peer_limits() {
    let own = ConnectionConfig::default();
    let peer = ConnectionConfig::builder()
        .max_message_size(4096)
        .build()
        .unwrap();
    let mut sender = Sender::with_peer_limits(&own, peer.receive_limits());
    assert_eq!(sender.streaming_threshold(Lane::Tell), 4096);
    assert_eq!(sender.max_message_size(), 4096);

    let refused = sender
        .send(Outgoing::new(Envelope::tell(1), payload(4097, 2)))
        .unwrap_err();
    assert!(matches!(
        refused,
        SendError::TooLarge {
            size: 4097,
            limit: 4096,
            ..
        }
    ));
    assert!(!sender.has_output(), "a refused message writes nothing");

    let mut receiver = Receiver::new(&peer);
    let accepted = Outgoing::new(Envelope::tell(1), payload(4096, 3));
    sender.send(accepted.clone()).unwrap();
    let received = common::pump(&mut sender, &mut receiver, 1000);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].payload, accepted.payload);
}
