//! Counters, read as plain snapshots.

/// What a [`Sender`](crate::Sender) has done. Counters only grow; the one gauge says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SendMetrics {
    /// Messages accepted into a ring buffer.
    pub ring_sends: u64,
    /// Messages accepted as a chunked stream, for any reason.
    pub streaming_sends: u64,
    /// Times a message under its threshold did not fit in its ring.
    pub ring_full_events: u64,
    /// Messages under their threshold that were streamed because the ring was full.
    pub streaming_fallbacks: u64,
    /// Messages under their threshold that were streamed to stay behind an earlier stream
    /// with the same key.
    pub ordered_behind_stream: u64,
    /// Sends refused because the ring and the stream queue were both full.
    pub backpressure_refusals: u64,
    /// Sends refused because the message was larger than the peer accepts.
    pub oversize_rejections: u64,
    /// Payload bytes accepted into a ring buffer.
    pub ring_bytes: u64,
    /// Payload bytes accepted as streams.
    pub streaming_bytes: u64,
    /// Largest payload accepted.
    pub largest_message: u64,
    /// Payload bytes of streamed messages accepted and not yet completely written, given up
    /// or handed back (a gauge, not a counter). The sender keeps each such payload whole
    /// until its last byte is written, so that it can be handed back if the connection is
    /// lost: this is what streams hold of the caller's memory, the part already written
    /// included. Ring messages are copied and not counted here.
    pub stream_bytes_held: u64,
}

/// What a [`Receiver`](crate::Receiver) has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ReceiveMetrics {
    /// Messages received as one ring frame.
    pub ring_messages: u64,
    /// Messages received as a chunked stream.
    pub stream_messages: u64,
    /// Payload bytes received in ring frames.
    pub ring_bytes: u64,
    /// Payload bytes received in streams.
    pub streaming_bytes: u64,
    /// Bytes reserved by streams being reassembled now (a gauge, not a counter).
    pub reassembly_bytes_in_use: u64,
    /// Largest payload received.
    pub largest_message: u64,
    /// Protocol violations by the peer.
    pub protocol_errors: u64,
}

/// What happened to asks, both ways.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AskMetrics {
    /// Asks this side sent.
    pub sent: u64,
    /// Asks of this side that got their reply.
    pub answered: u64,
    /// Asks of this side whose deadline passed.
    pub expired: u64,
    /// Asks of this side that the peer refused.
    pub refused: u64,
    /// Asks of this side that it cancelled.
    pub cancelled: u64,
    /// Replies or refusals that matched no pending ask, and were discarded.
    pub late_replies: u64,
}

/// Every counter of a connection, as one snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Metrics {
    /// The sending half.
    pub send: SendMetrics,
    /// The receiving half.
    pub receive: ReceiveMetrics,
    /// Asks and replies.
    pub asks: AskMetrics,
}
