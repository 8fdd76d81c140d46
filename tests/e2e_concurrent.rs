//! Scenario 10 over real TCP on every runtime: many tasks send mixed sizes on several keys at
//! once through clones of one connection, and every message is accounted for, whole and in
//! order.

mod common;

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};
use common::{KIB, MIB, TestRuntime, assert_same_bytes, close, options, pair, payload, recv_tell};

common::on_every_runtime!(seconds: 60; concurrent_senders);

const SENDERS: u32 = 24;
const KEYS: u32 = 6;
const MESSAGES_PER_SENDER: u32 = 16;
/// Key, sender and sequence number at the front of every payload.
const HEADER_LEN: usize = 16;

/// Sizes weighted to small: about three in four up to 4 KiB, the rest up to 300 KiB (both
/// sides of the 255 KiB threshold), and four messages of 1 to 5 MiB, by different senders.
fn size_of(sender: u32, sequence: u32) -> usize {
    match (sender, sequence) {
        (0, 3) => 5 * MIB,
        (5, 8) => 3 * MIB,
        (11, 1) => 2 * MIB + 7,
        (17, 12) => MIB,
        _ => {
            let roll = u64::from_le_bytes(
                payload(u64::from(sender) << 32 | u64::from(sequence), 8)[..]
                    .try_into()
                    .expect("8 bytes"),
            );
            let span = if roll % 4 == 0 { 300 * KIB } else { 4 * KIB };
            HEADER_LEN + (roll >> 8) as usize % span
        }
    }
}

fn key_of(sender: u32) -> u64 {
    u64::from(sender % KEYS)
}

/// The payload itself says who sent it: its key, sender and sequence number, then bytes that
/// depend on all three.
fn message(sender: u32, sequence: u32) -> Bytes {
    let len = size_of(sender, sequence);
    let mut bytes = BytesMut::with_capacity(len);
    bytes.put_u64_le(key_of(sender));
    bytes.put_u32_le(sender);
    bytes.put_u32_le(sequence);
    let seed = u64::from(sender) << 32 | u64::from(sequence);
    bytes.put(payload(seed, len - HEADER_LEN));
    bytes.freeze()
}

/// Several senders share each key, so order is checked per key and sender: each sender's
/// messages to its key must arrive in the order it sent them. Messages of different senders
/// on one key have no order between them, since their sends race.
async fn concurrent_senders<R: TestRuntime>() {
    let (client, server) = pair::<R>(options(256 * KIB), options(256 * KIB)).await;

    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let conn = client.conn.clone();
            R::spawn_task(async move {
                for sequence in 0..MESSAGES_PER_SENDER {
                    conn.tell(key_of(sender), 0, message(sender, sequence))
                        .await
                        .expect("sent");
                }
            })
        })
        .collect();

    let total_messages = u64::from(SENDERS * MESSAGES_PER_SENDER);
    let total_bytes: usize = (0..SENDERS)
        .flat_map(|sender| (0..MESSAGES_PER_SENDER).map(move |seq| size_of(sender, seq)))
        .sum();
    let mut next_sequence: HashMap<(u64, u32), u32> = HashMap::new();
    let mut received_bytes = 0;
    for _ in 0..total_messages {
        let arrived = recv_tell::<R>(&server.inbox).await;
        let header = &arrived.payload[..HEADER_LEN];
        let key = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
        let sender = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        let sequence = u32::from_le_bytes(header[12..].try_into().expect("4 bytes"));
        assert_eq!(arrived.envelope.key, key, "delivered under its own key");

        let next = next_sequence.entry((key, sender)).or_default();
        assert_eq!(sequence, *next, "order of sender {sender} on key {key}");
        *next += 1;
        let what = format!("message {sequence} of sender {sender}");
        assert_same_bytes(&arrived.payload, &message(sender, sequence), &what);
        received_bytes += arrived.payload.len();
    }
    assert_eq!(received_bytes, total_bytes);
    for sender in senders {
        sender.await;
    }
    let complete = next_sequence.values().all(|&n| n == MESSAGES_PER_SENDER);
    assert!(complete && next_sequence.len() == SENDERS as usize);

    // The counters agree on both ends: every message sent once and received once.
    let sent = client.conn.metrics().send;
    assert_eq!(sent.ring_sends + sent.streaming_sends, total_messages);
    assert_eq!(sent.ring_bytes + sent.streaming_bytes, total_bytes as u64);
    let received = server.conn.metrics().receive;
    assert_eq!(
        received.ring_messages + received.stream_messages,
        total_messages
    );
    assert_eq!(
        received.ring_bytes + received.streaming_bytes,
        total_bytes as u64
    );
    assert_eq!(received.largest_message, 5 * MIB as u64);
    close::<R>(&client, &server).await;
}
