//! Writes the seed corpus under `corpus/<target>/seed-*`: a few small, valid inputs made by
//! ringwire's own encoders, so that every run starts from traffic that gets past the first
//! checks. Run from the fuzz directory: `cargo run --example seeds`.
//!
//! The byte targets take one or two leading bytes that pick the receiver and the split; the
//! seeds pick the receiver with the small frame limit (pick 2), so a 1500-byte payload goes
//! by stream in two chunks. The `pair` target reads an operation script, not wire bytes; its
//! seeds are fixed pseudo-random bytes that decode to a short script.

use std::fs;
use std::path::Path;

use ringwire_core::{
    ConnectionConfig, Envelope, Hello, MessageKind, Outgoing, ReceiveLimits, Sender,
};

/// The limits of the byte targets' receiver number 2: a ring frame limit below the message
/// limit, as a peer might announce.
const FRAME_BELOW: ReceiveLimits = ReceiveLimits {
    max_message_size: 2000,
    max_frame_payload: 700,
    max_inbound_streams: 3,
    reassembly_budget: 3000,
};

fn main() -> std::io::Result<()> {
    let hello = Hello::new(ConnectionConfig::default().receive_limits(), true).encode();
    let ring = wire(&[(MessageKind::Tell, 40)]);
    let stream = wire(&[(MessageKind::Ask, 1500)]);
    let mixed = wire(&[
        (MessageKind::Tell, 10),
        (MessageKind::Tell, 1200),
        (MessageKind::Reply, 0),
    ]);

    let picked = |pick: &[u8], frames: &[u8]| [pick, frames].concat();
    write("receiver", "ring", &picked(&[2, 0], &ring))?;
    write("receiver", "stream", &picked(&[2, 7], &stream))?;
    write("receiver", "mixed", &picked(&[2, 3], &mixed))?;
    write("frame_header", "ring", &picked(&[2], &ring))?;
    write("frame_header", "stream", &picked(&[2], &stream))?;
    write("handshake", "hello", &picked(&[0, 0], &hello))?;
    write(
        "handshake",
        "hello-then-ring",
        &picked(&[3, 9], &[&hello[..], &ring].concat()),
    )?;
    for (name, seed) in [("script-a", 1u64), ("script-b", 2)] {
        write("pair", name, &pseudo_random(seed, 256))?;
    }
    Ok(())
}

/// The bytes a sender that knows the receiver's limits writes for these messages, keys 1, 2,
/// ... in order.
fn wire(messages: &[(MessageKind, usize)]) -> Vec<u8> {
    let config = ConnectionConfig::builder()
        .chunk_size(1024)
        .build()
        .expect("valid configuration");
    let mut sender = Sender::with_peer_limits(&config, FRAME_BELOW);
    for (index, &(kind, len)) in messages.iter().enumerate() {
        let envelope = Envelope {
            kind,
            key: index as u64 + 1,
            correlation_id: if kind == MessageKind::Tell { 0 } else { 9 },
            type_hash: 0x5eed,
        };
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        sender
            .send(Outgoing::new(envelope, payload))
            .expect("accepted");
    }
    let mut out = Vec::new();
    while sender.transmit_into(&mut out, usize::MAX) > 0 {}
    out
}

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn write(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(format!("seed-{name}")), bytes)
}
