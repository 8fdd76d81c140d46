//! Errors: the caller's refused sends apart from the peer's protocol violations.

use crate::message::Outgoing;

/// A message the [`Sender`](crate::Sender) did not accept. The message is handed back whole;
/// nothing of it was queued or written.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The payload is larger than the largest message the peer accepts. Split it, or raise
    /// `max_message_size` on the receiving side. The connection stays usable.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Payload size in bytes.
        size: u64,
        /// The largest accepted payload.
        limit: u64,
        /// The refused message.
        message: Outgoing,
    },
    /// The ring was full and so is the stream queue. Write pending output, then send again.
    #[error("send queues are full; write pending output and try again")]
    Full {
        /// The refused message.
        message: Outgoing,
    },
    /// The connection is not open: the handshake is not done, or it is closing or closed.
    /// Wait for it to connect, or send on another connection.
    #[error("the connection is not open")]
    NotOpen {
        /// The refused message.
        message: Outgoing,
    },
    /// A reply to an ask that is not open: already answered or refused, or cancelled by the
    /// peer. The reply is not needed.
    #[error("no open ask with this correlation id; the reply is not needed")]
    NoSuchAsk {
        /// The refused reply.
        message: Outgoing,
    },
}

impl SendError {
    /// The refused message, to retry or to report.
    pub fn into_message(self) -> Outgoing {
        match self {
            Self::TooLarge { message, .. }
            | Self::Full { message }
            | Self::NotOpen { message }
            | Self::NoSuchAsk { message } => message,
        }
    }
}

/// The peer broke the protocol. The connection cannot continue: close it. No partial message
/// is ever handed out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame kind code is not one this version knows.
    #[error("unknown frame kind 0x{code:02x}")]
    UnknownFrameKind {
        /// The code received.
        code: u8,
    },
    /// Flag or reserved bits that must be zero are set.
    #[error(
        "frame 0x{code:02x} has reserved bits set (flags 0x{flags:02x}, reserved 0x{reserved:04x})"
    )]
    ReservedBitsSet {
        /// The frame kind code.
        code: u8,
        /// The flags byte received.
        flags: u8,
        /// The reserved field received.
        reserved: u16,
    },
    /// The message kind in the flags is not tell, ask or reply.
    #[error("unknown message kind {code}")]
    UnknownMessageKind {
        /// The kind code received.
        code: u8,
    },
    /// The body is shorter than the frame kind's fixed fields.
    #[error("frame 0x{code:02x} body of {body_len} bytes is shorter than its {min} fixed bytes")]
    FrameTooShort {
        /// The frame kind code.
        code: u8,
        /// The body length received.
        body_len: u32,
        /// The length of the fixed fields.
        min: u32,
    },
    /// A stream-begin frame carries bytes after its fixed fields.
    #[error("stream-begin frame carries {extra} unexpected bytes")]
    BeginWithPayload {
        /// Bytes past the fixed fields.
        extra: u32,
    },
    /// A ring frame's payload is larger than this side accepts in one frame.
    #[error("frame payload of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The payload length claimed.
        len: u64,
        /// This side's limit.
        limit: u64,
    },
    /// A stream claims a total length above this side's largest message.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The total length claimed.
        size: u64,
        /// This side's limit.
        limit: u64,
    },
    /// A stream was opened while the limit of open streams was reached.
    #[error("peer opened more than {limit} concurrent streams")]
    TooManyStreams {
        /// This side's limit.
        limit: u32,
    },
    /// A stream would reserve more than the reassembly budget has left.
    #[error(
        "stream of {requested} bytes exceeds the reassembly budget ({in_use} of {budget} bytes in use)"
    )]
    ReassemblyBudgetExceeded {
        /// The total length claimed.
        requested: u64,
        /// Bytes reserved by open streams.
        in_use: u64,
        /// This side's budget.
        budget: u64,
    },
    /// A stream id was not larger than every id before it.
    #[error("stream id {id} is not above the previous id {previous}")]
    StreamIdReused {
        /// The id received.
        id: u64,
        /// The largest id seen before.
        previous: u64,
    },
    /// A chunk names a stream that is not open.
    #[error("chunk for stream {id}, which is not open")]
    UnknownStream {
        /// The stream id received.
        id: u64,
    },
    /// A chunk does not start where the previous one ended: a duplicate, an overlap or a hole.
    #[error("chunk of stream {id} at offset {offset}, expected offset {expected}")]
    ChunkOutOfOrder {
        /// The stream id.
        id: u64,
        /// The offset received.
        offset: u64,
        /// The offset that continues the stream.
        expected: u64,
    },
    /// A chunk ends past the stream's total length.
    #[error("chunk of stream {id} ends at {end}, past the total length {total}")]
    ChunkOverrun {
        /// The stream id.
        id: u64,
        /// Where the chunk ends.
        end: u64,
        /// The stream's total length.
        total: u64,
    },
    /// A frame's CRC32C trailer does not match its bytes: they were corrupted on the way.
    #[error(
        "frame 0x{code:02x} fails its CRC32C check (received {received:08x}, computed {computed:08x})"
    )]
    ChecksumMismatch {
        /// The frame kind code.
        code: u8,
        /// The trailer received.
        received: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// A connection frame arrived where only messages are expected.
    #[error("unexpected frame 0x{code:02x} on a message-only stream")]
    UnexpectedFrame {
        /// The frame kind code.
        code: u8,
    },
    /// A reason text, or a frame that carries none, is longer than allowed.
    #[error("frame carries {len} bytes of reason text, more than {limit}")]
    ReasonTooLong {
        /// The length received.
        len: u64,
        /// The longest allowed.
        limit: u64,
    },
    /// A reason text is not UTF-8.
    #[error("reason text is not UTF-8")]
    InvalidReason,
    /// A chunk carries no data.
    #[error("empty chunk for stream {id}")]
    EmptyChunk {
        /// The stream id.
        id: u64,
    },
}
