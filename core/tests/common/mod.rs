//! Helpers shared by the integration tests: moving bytes from a `Sender` to a `Receiver` in
//! memory, the way a socket would.

#![allow(dead_code, unreachable_pub)]

use bytes::{Bytes, BytesMut};
use ringwire_core::{
    ConnectionConfig, Envelope, Hello, Incoming, Negotiated, Outgoing, ReceiveLimits, Receiver,
    Sender,
};

/// Moves every pending output byte from `sender` to `receiver`, `piece` bytes at a time, and
/// returns the messages decoded, in arrival order. Panics on a protocol error.
pub fn pump(sender: &mut Sender, receiver: &mut Receiver, piece: usize) -> Vec<Incoming> {
    pump_with(sender, receiver, |_| piece)
}

/// Like [`pump`], with the size of each write chosen by `next_piece(write_index)`; a size of
/// zero is taken as one byte.
pub fn pump_with(
    sender: &mut Sender,
    receiver: &mut Receiver,
    mut next_piece: impl FnMut(usize) -> usize,
) -> Vec<Incoming> {
    let mut input = BytesMut::new();
    let mut wire = Vec::new();
    let mut delivered = Vec::new();
    let mut writes = 0;
    loop {
        wire.clear();
        let written = sender.transmit_into(&mut wire, next_piece(writes).max(1));
        writes += 1;
        input.extend_from_slice(&wire);
        while let Some(message) = receiver.decode(&mut input).expect("protocol error") {
            delivered.push(message);
        }
        if written == 0 {
            assert!(!sender.has_output(), "sender has output but offered none");
            assert!(input.is_empty(), "bytes left over after the last frame");
            return delivered;
        }
    }
}

/// A payload of `len` bytes whose content depends on `seed`, so that swapped or shifted
/// bytes are caught.
pub fn payload(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Like [`pump`], `piece` bytes per write, and also returns for each message how many bytes
/// had been written when it was decoded, so tests can tell how long a message waited.
pub fn pump_counting(
    sender: &mut Sender,
    receiver: &mut Receiver,
    piece: usize,
) -> Vec<(usize, Incoming)> {
    let mut input = BytesMut::new();
    let mut wire = Vec::new();
    let mut delivered = Vec::new();
    let mut total = 0;
    loop {
        wire.clear();
        let written = sender.transmit_into(&mut wire, piece.max(1));
        total += written;
        input.extend_from_slice(&wire);
        while let Some(message) = receiver.decode(&mut input).expect("protocol error") {
            delivered.push((total, message));
        }
        if written == 0 {
            assert!(!sender.has_output(), "sender has output but offered none");
            assert!(input.is_empty(), "bytes left over after the last frame");
            return delivered;
        }
    }
}

/// Asserts that `received` holds exactly the messages of `sent`, each once, and that the
/// messages of each key arrived in the order they were sent. Messages of different keys may
/// have overtaken each other.
pub fn assert_per_key_order(sent: &[Outgoing], received: &[Incoming]) {
    assert_eq!(
        received.len(),
        sent.len(),
        "messages sent and received differ in number"
    );
    let mut keys: Vec<u64> = sent.iter().map(|m| m.envelope.key).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let sent: Vec<(&Envelope, &Bytes)> = sent
            .iter()
            .filter(|m| m.envelope.key == key)
            .map(|m| (&m.envelope, &m.payload))
            .collect();
        let received: Vec<(&Envelope, &Bytes)> = received
            .iter()
            .filter(|m| m.envelope.key == key)
            .map(|m| (&m.envelope, &m.payload))
            .collect();
        // Compared by position first, so a failure names the first difference, not 5 MiB.
        assert_eq!(sent.len(), received.len(), "key {key}: count differs");
        for (index, (s, r)) in sent.iter().zip(&received).enumerate() {
            assert_eq!(s.0, r.0, "key {key}, message {index}: envelope differs");
            assert!(
                s.1 == r.1,
                "key {key}, message {index}: payload differs (sent {} bytes, got {})",
                s.1.len(),
                r.1.len()
            );
        }
    }
}

/// A payload like [`payload`], drawn eight bytes per step: several times cheaper for payloads
/// of many MiB in an unoptimised test build. The bytes differ from those of [`payload`].
pub fn large_payload(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = vec![0u8; len];
    for word in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
    }
    bytes.into()
}

/// Moves at most `max` output bytes from `sender` into `input` and decodes what is complete,
/// keeping any partial frame in `input` for the next call. Returns how many bytes moved and
/// the messages decoded. Panics on a protocol error.
pub fn pump_once(
    sender: &mut Sender,
    receiver: &mut Receiver,
    input: &mut BytesMut,
    max: usize,
) -> (usize, Vec<Incoming>) {
    let mut wire = Vec::new();
    let written = sender.transmit_into(&mut wire, max.max(1));
    input.extend_from_slice(&wire);
    let mut delivered = Vec::new();
    while let Some(message) = receiver.decode(input).expect("protocol error") {
        delivered.push(message);
    }
    (written, delivered)
}

/// The index of the first byte where `a` and `b` differ, or of the end of the shorter one if
/// one is a prefix of the other; `None` when they are equal. Says where two multi-MiB
/// payloads part without printing them.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    // The slice comparison is a memcmp even in a debug build; the walk only runs on failure.
    if a == b {
        return None;
    }
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// Writes exactly `bytes` output bytes from `sender` into `receiver` and returns what
/// arrived; the receiver keeps any partial frame in its own state, so the input buffer is
/// left empty for [`pump`] to go on.
pub fn write_exactly(sender: &mut Sender, receiver: &mut Receiver, bytes: usize) -> Vec<Bytes> {
    let mut wire = Vec::new();
    while wire.len() < bytes {
        let before = wire.len();
        sender.transmit_into(&mut wire, bytes - before);
        assert!(wire.len() > before, "sender ran dry");
    }
    let mut input = BytesMut::from(&wire[..]);
    let mut arrived = Vec::new();
    while let Some(message) = receiver.decode(&mut input).unwrap() {
        arrived.push(message.payload);
    }
    assert!(
        input.is_empty(),
        "a frame header was cut; choose another length"
    );
    arrived
}

/// What a handshake agrees between two sides that both ask for the CRC32C trailer or both do
/// not, when the peer announced `peer_limits`.
pub fn agreed(peer_limits: ReceiveLimits, crc32c: bool) -> Negotiated {
    let hello = Hello::new(peer_limits, crc32c);
    let agreed = hello.negotiate(&hello).expect("usable limits");
    assert_eq!(agreed.crc32c, crc32c);
    agreed
}

/// A sender and a receiver built from what a handshake between two sides with `config` agrees,
/// both asking for CRC32C trailers or neither.
pub fn handshake_pair(config: &ConnectionConfig, crc32c: bool) -> (Sender, Receiver) {
    let agreed = agreed(config.receive_limits(), crc32c);
    (
        Sender::from_handshake(config, &agreed),
        Receiver::from_handshake(config, &agreed),
    )
}

/// Every byte `sender` has to write, taken at once.
pub fn wire_of(sender: &mut Sender) -> Vec<u8> {
    let mut wire = Vec::new();
    while sender.transmit_into(&mut wire, usize::MAX) > 0 {}
    wire
}
