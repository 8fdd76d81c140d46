//! The stream queue: large messages waiting or in progress, opened in order and within the
//! peer's limits.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use crate::config::{ConnectionConfig, ReceiveLimits};
use crate::message::{Envelope, MessageKind, Outgoing};

/// Streams waiting or in progress, in the order they were accepted.
#[derive(Debug)]
pub(super) struct StreamQueue {
    pub(super) queue: VecDeque<OutStream>,
    /// Payload bytes not yet planned.
    pub(super) queued_bytes: u64,
    /// Streams per key not yet fully planned; a key present here keeps later messages of
    /// the same key off the ring.
    pub(super) per_key: HashMap<u64, u32>,
    /// Streams opened and not yet fully planned, and their total length: what the peer is
    /// holding for them.
    pub(super) open: u32,
    pub(super) open_bytes: u64,
    pub(super) next_id: u64,
    /// Where the round-robin over streams goes on.
    pub(super) cursor: usize,
}

#[derive(Debug)]
pub(super) struct OutStream {
    pub(super) envelope: Envelope,
    pub(super) total_len: u64,
    /// The whole payload, to hand back if the stream is never completed.
    pub(super) payload: Bytes,
    /// The part of the payload not yet planned.
    pub(super) rest: Bytes,
    /// Set when the stream-begin frame is planned.
    pub(super) id: Option<u64>,
    /// The stream may open once this many ring bytes have been planned.
    pub(super) ring_mark: u64,
    /// An earlier stream with the same key is not fully planned yet.
    pub(super) waits_for_key: bool,
}

impl StreamQueue {
    pub(super) fn new(max_streams: usize) -> Self {
        Self {
            queue: VecDeque::with_capacity(max_streams.min(1024)),
            queued_bytes: 0,
            per_key: HashMap::new(),
            open: 0,
            open_bytes: 0,
            next_id: 0,
            cursor: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub(super) fn has_key(&self, key: u64) -> bool {
        !self.per_key.is_empty() && self.per_key.contains_key(&key)
    }

    /// Whether a payload of `size` bytes may join the queue. One message larger than the
    /// byte bound still goes when nothing else waits, so every allowed size can be sent.
    pub(super) fn has_room(&self, size: usize, config: &ConnectionConfig) -> bool {
        self.queue.len() < config.max_queued_streams()
            && (self.queued_bytes == 0
                || self.queued_bytes + size as u64 <= config.max_queued_stream_bytes())
    }

    pub(super) fn push(&mut self, message: Outgoing, ring_mark: u64) {
        let count = self.per_key.entry(message.envelope.key).or_insert(0);
        let waits_for_key = *count > 0;
        *count += 1;
        self.queued_bytes += message.payload.len() as u64;
        self.queue.push_back(OutStream {
            envelope: message.envelope,
            total_len: message.payload.len() as u64,
            rest: message.payload.clone(),
            payload: message.payload,
            id: None,
            ring_mark,
            waits_for_key,
        });
    }

    /// The stream to plan next: open streams take turns; a stream that is not open yet takes
    /// its turn only if it is the first that may open, which keeps opening in FIFO order.
    pub(super) fn next_ready(
        &mut self,
        ring_planned_total: u64,
        peer: &ReceiveLimits,
    ) -> Option<usize> {
        let len = self.queue.len();
        if len == 0 {
            return None;
        }
        let opener = self
            .queue
            .iter()
            .position(|s| s.id.is_none() && !s.waits_for_key)
            .filter(|&i| {
                let s = &self.queue[i];
                s.ring_mark <= ring_planned_total
                    && self.open < peer.max_inbound_streams
                    && self.open_bytes + s.total_len <= peer.reassembly_budget
            });
        let start = self.cursor % len;
        let index = (0..len)
            .map(|step| (start + step) % len)
            .find(|&i| self.queue[i].id.is_some() || Some(i) == opener)?;
        self.cursor = index + 1;
        Some(index)
    }

    pub(super) fn open(&mut self, index: usize) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let stream = &mut self.queue[index];
        stream.id = Some(id);
        self.open += 1;
        self.open_bytes += stream.total_len;
        id
    }

    /// Removes a stream, fully planned or given up, and lets the next stream of its key go.
    pub(super) fn remove(&mut self, index: usize) -> Option<OutStream> {
        let stream = self.queue.remove(index)?;
        if stream.id.is_some() {
            self.open -= 1;
            self.open_bytes -= stream.total_len;
        }
        self.queued_bytes -= stream.rest.len() as u64;
        if index < self.cursor {
            self.cursor -= 1;
        }
        let key = stream.envelope.key;
        let remaining = self.per_key.get_mut(&key).map(|count| {
            *count -= 1;
            *count
        });
        if remaining == Some(0) {
            self.per_key.remove(&key);
        } else if !stream.waits_for_key {
            // It was its key's head: the next stream of the key may go.
            if let Some(next) = self
                .queue
                .iter_mut()
                .find(|s| s.envelope.key == key && s.waits_for_key)
            {
                next.waits_for_key = false;
            }
        }
        Some(stream)
    }

    /// The index of the stream carrying the ask or reply `correlation_id`.
    pub(super) fn find(&self, kind: MessageKind, correlation_id: u64) -> Option<usize> {
        self.queue
            .iter()
            .position(|s| s.envelope.kind == kind && s.envelope.correlation_id == correlation_id)
    }

    /// Takes out every stream, as the messages they carry.
    pub(super) fn take_all(&mut self) -> Vec<Outgoing> {
        let unsent = self
            .queue
            .drain(..)
            .map(|s| Outgoing::new(s.envelope, s.payload))
            .collect();
        // Stream ids are never reused on a connection, even after a reset.
        let next_id = self.next_id;
        *self = Self::new(self.queue.capacity());
        self.next_id = next_id;
        unsent
    }
}
