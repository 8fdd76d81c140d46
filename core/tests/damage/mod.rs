//! Valid traffic from a `Sender` for the fuzz harnesses, and the ways it is damaged before a
//! `Receiver` sees it.

use std::ops::Range;

use bolero::generator::TypeGenerator;
use ringwire_core::{
    CRC_LEN, ConnectionConfig, Envelope, FRAME_HEADER_LEN, MessageKind, Outgoing, ReceiveLimits,
    Receiver, Route, Sender,
};

use crate::common;

const KIB: usize = 1024;

/// One message of a [`Traffic`].
#[derive(Debug, TypeGenerator)]
struct TrafficMessage {
    #[generator(0..4u64)]
    key: u64,
    /// 0: tell, 1: ask, 2: reply.
    #[generator(0..3u8)]
    kind: u8,
    #[generator(0..=12_000usize)]
    size: usize,
}

/// Damage done to a valid byte stream. Positions and frame indices wrap around the length of
/// the stream or the number of frames.
#[derive(Debug, TypeGenerator)]
enum Damage {
    None,
    /// XOR one byte anywhere with `mask`.
    Flip {
        at: u32,
        #[generator(1..=255u8)]
        mask: u8,
    },
    /// XOR one byte of a frame's header or fixed fields with `mask`.
    FlipHeader {
        frame: u16,
        #[generator(0..44u8)]
        at: u8,
        #[generator(1..=255u8)]
        mask: u8,
    },
    /// End the stream after `at` bytes.
    Truncate {
        at: u32,
    },
    /// Insert a copy of `len` bytes from `from` at `to`.
    Duplicate {
        from: u32,
        #[generator(1..=300u16)]
        len: u16,
        to: u32,
    },
    /// Insert a copy of `count` whole frames from `first` before frame `to`.
    DuplicateFrames {
        first: u16,
        #[generator(1..=3u8)]
        count: u8,
        to: u16,
    },
    /// Remove one whole frame.
    DropFrame {
        frame: u16,
    },
    /// Exchange two whole frames.
    SwapFrames {
        a: u16,
        b: u16,
    },
}

/// Valid traffic from a sender, then damaged.
#[derive(Debug, TypeGenerator)]
pub(crate) struct Traffic {
    #[generator(bolero::generator::produce::<Vec<TrafficMessage>>().with().len(1usize..=10))]
    messages: Vec<TrafficMessage>,
    /// Picks the largest ring frame the sender may send, and with it its threshold.
    #[generator(0..4u8)]
    frame_limit: u8,
    /// Picks the chunk size.
    #[generator(0..3u8)]
    chunk: u8,
    #[generator(1..=4u32)]
    streams: u32,
    pub(crate) crc32c: bool,
    damage: Damage,
    pub(crate) split_seed: u64,
}

impl Traffic {
    /// The limits the sender keeps within: small, so that a few KiB already go by stream,
    /// streams have several chunks, and the sender must hold streams back for the count and
    /// the budget.
    fn peer_limits(&self) -> ReceiveLimits {
        ReceiveLimits {
            max_message_size: 64 * KIB as u64,
            max_frame_payload: [0, 100, 2 * KIB as u64, 8 * KIB as u64]
                [usize::from(self.frame_limit)],
            max_inbound_streams: self.streams,
            reassembly_budget: 64 * KIB as u64,
        }
    }

    /// A receiver for this traffic: exactly the sender's peer limits without trailers; with
    /// them, built by the handshake from a configuration with the same message, stream and
    /// budget limits (its ring frame limit is then 64 KiB, above what the sender uses).
    pub(crate) fn receiver(&self) -> Receiver {
        if !self.crc32c {
            return Receiver::with_limits(self.peer_limits());
        }
        let limits = self.peer_limits();
        let config = ConnectionConfig::builder()
            .max_message_size(limits.max_message_size)
            .reassembly_budget(limits.reassembly_budget)
            .max_inbound_streams(limits.max_inbound_streams)
            .build()
            .unwrap();
        Receiver::from_handshake(&config, &common::agreed(config.receive_limits(), true))
    }

    /// The sender's output `wire`, damaged as this traffic says.
    pub(crate) fn damaged(&self, wire: &[u8]) -> (Vec<u8>, DamageKind) {
        let trailer = if self.crc32c { CRC_LEN } else { 0 };
        damage(wire, trailer, &self.damage)
    }

    /// Sends every message and returns them, with the route each took, and the bytes the
    /// sender wrote. A message's index is its type hash.
    pub(crate) fn send(&self) -> (Vec<(Outgoing, Route)>, Vec<u8>) {
        let config = ConnectionConfig::builder()
            .chunk_size([KIB, 1500, 4 * KIB][usize::from(self.chunk)])
            .build()
            .unwrap();
        let mut sender = if self.crc32c {
            Sender::from_handshake(&config, &common::agreed(self.peer_limits(), true))
        } else {
            Sender::with_peer_limits(&config, self.peer_limits())
        };
        let mut sent = Vec::new();
        for (index, message) in self.messages.iter().enumerate() {
            let kind = [MessageKind::Tell, MessageKind::Ask, MessageKind::Reply]
                [usize::from(message.kind)];
            let envelope = Envelope {
                kind,
                key: message.key,
                type_hash: index as u32,
                correlation_id: if kind == MessageKind::Tell {
                    0
                } else {
                    index as u64 + 1
                },
            };
            let outgoing = Outgoing::new(envelope, common::payload(message.size, index as u64));
            let route = sender
                .send(outgoing.clone())
                .expect("room for every message");
            sent.push((outgoing, route));
        }
        let mut wire = Vec::new();
        while sender.transmit_into(&mut wire, usize::MAX) > 0 {}
        assert!(!sender.has_output());
        (sent, wire)
    }
}

/// How a damage relates to what a receiver can promise.
#[derive(Debug, PartialEq)]
pub(crate) enum DamageKind {
    /// Nothing changed.
    None,
    /// The stream ends at this length: exactly the messages complete by then arrive.
    Truncated(usize),
    /// Whole frames dropped, copied or moved: whatever arrives is a sent message, unchanged,
    /// since a stream with a missing, repeated or misplaced chunk is refused.
    Frames,
    /// Bytes changed or inserted inside frames. With trailers, whatever arrives is a sent
    /// message, unchanged. Without them a changed payload byte or a shifted length cannot be
    /// noticed, so only the reference decoder says what must come out.
    Bytes,
}

/// Start and end of each frame of a valid stream (trailer included, if any), found from the
/// length in each header.
fn frame_spans(wire: &[u8], trailer: usize) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let body_len = u32::from_le_bytes(wire[at + 4..at + 8].try_into().unwrap()) as usize;
        let end = at + FRAME_HEADER_LEN + body_len + trailer;
        spans.push(at..end);
        at = end;
    }
    assert_eq!(at, wire.len(), "the sender's output ends inside a frame");
    spans
}

fn damage(wire: &[u8], trailer: usize, damage: &Damage) -> (Vec<u8>, DamageKind) {
    let len = wire.len();
    let spans = frame_spans(wire, trailer);
    let span = |index: u16| spans[usize::from(index) % spans.len()].clone();
    let mut out = wire.to_vec();
    let kind = match *damage {
        Damage::None => DamageKind::None,
        Damage::Flip { at, mask } => {
            out[at as usize % len] ^= mask;
            DamageKind::Bytes
        }
        Damage::FlipHeader { frame, at, mask } => {
            let span = span(frame);
            out[span.start + usize::from(at) % span.len()] ^= mask;
            DamageKind::Bytes
        }
        Damage::Truncate { at } => {
            let at = at as usize % (len + 1);
            out.truncate(at);
            DamageKind::Truncated(at)
        }
        Damage::Duplicate {
            from,
            len: count,
            to,
        } => {
            let from = from as usize % len;
            let end = (from + usize::from(count)).min(len);
            let to = to as usize % (len + 1);
            out.splice(to..to, wire[from..end].iter().copied());
            DamageKind::Bytes
        }
        Damage::DuplicateFrames { first, count, to } => {
            let first = usize::from(first) % spans.len();
            let last = (first + usize::from(count)).min(spans.len()) - 1;
            let to = span(to).start;
            out.splice(
                to..to,
                wire[spans[first].start..spans[last].end].iter().copied(),
            );
            DamageKind::Frames
        }
        Damage::DropFrame { frame } => {
            out.drain(span(frame));
            DamageKind::Frames
        }
        Damage::SwapFrames { a, b } => {
            let (a, b) = (span(a), span(b));
            let (first, second) = if a.start <= b.start { (a, b) } else { (b, a) };
            if first != second {
                out = [
                    &wire[..first.start],
                    &wire[second.clone()],
                    &wire[first.end..second.start],
                    &wire[first.clone()],
                    &wire[second.end..],
                ]
                .concat();
            }
            DamageKind::Frames
        }
    };
    (out, kind)
}
