//! The ring under a reader that never quite catches up: frames keep being added while earlier
//! ones are only partly written, so the ring's frames reach the end of its buffer and move
//! to the front many times. Every message still arrives once, whole, in order, and each
//! lane's byte count returns to zero.

mod common;

use bytes::BytesMut;
use common::payload;
use ringwire_core::{
    BufferConfig, ConnectionConfig, Envelope, Incoming, Lane, MessageKind, Outgoing, Receiver,
    Route, Sender,
};

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

#[test]
fn frames_moved_to_the_front_arrive_whole_and_in_order() {
    let config = ConnectionConfig::builder()
        .tell_buffer_config(BufferConfig::new(256 * 1024).unwrap())
        .ask_buffer_config(BufferConfig::new(256 * 1024).unwrap())
        .build()
        .unwrap();
    let mut sender = Sender::new(&config);
    let mut receiver = Receiver::new(&config);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut input = BytesMut::new();
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    let mut received: Vec<Incoming> = Vec::new();

    for round in 0..3000 {
        // Up to a few messages of up to 30 KiB on either lane, while the ring takes them.
        for _ in 0..rng.below(4) {
            let n = sent.len() as u64;
            let envelope = if rng.below(3) == 0 {
                Envelope {
                    kind: MessageKind::Ask,
                    key: n % 5,
                    type_hash: 0,
                    correlation_id: n + 1,
                }
            } else {
                Envelope::tell(n % 5)
            };
            let body = payload(rng.below(30 * 1024), n);
            let lane = envelope.lane();
            let room = 256 * 1024 - sender.ring_bytes_in_use(lane);
            if body.len() + 64 > room {
                continue;
            }
            let route = sender.send(Outgoing::new(envelope, body.clone())).unwrap();
            assert_eq!(route, Route::Ring, "round {round}");
            sent.push((envelope, body));
        }
        // A write of any size, often shorter than what waits.
        wire.clear();
        sender.transmit_into(&mut wire, 1 + rng.below(40 * 1024));
        input.extend_from_slice(&wire);
        while let Some(message) = receiver.decode(&mut input).unwrap() {
            received.push(message);
        }
    }
    loop {
        wire.clear();
        if sender.transmit_into(&mut wire, usize::MAX) == 0 {
            break;
        }
        input.extend_from_slice(&wire);
        while let Some(message) = receiver.decode(&mut input).unwrap() {
            received.push(message);
        }
    }

    assert!(sent.len() > 2000, "only {} messages sent", sent.len());
    assert_eq!(received.len(), sent.len());
    for (index, ((envelope, body), message)) in sent.iter().zip(&received).enumerate() {
        assert_eq!(&message.envelope, envelope, "message {index}");
        assert_eq!(&message.payload, body, "message {index}");
    }
    assert_eq!(sender.ring_bytes_in_use(Lane::Tell), 0);
    assert_eq!(sender.ring_bytes_in_use(Lane::Ask), 0);
}
