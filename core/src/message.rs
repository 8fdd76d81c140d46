//! The messages that go in and come out: payload bytes plus the envelope that addresses them.

use std::fmt;

use bytes::Bytes;

/// The two lanes of a connection. Each routes with its own [`BufferConfig`](crate::BufferConfig).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// One-way messages.
    Tell,
    /// Requests that expect a reply, and the replies.
    Ask,
}

/// What a message is, which decides its lane. The values are the wire codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageKind {
    /// A one-way message, on the tell lane.
    Tell = 0,
    /// A request, on the ask lane; its correlation id names it.
    Ask = 1,
    /// The answer to an ask, on the ask lane, carrying the ask's correlation id.
    Reply = 2,
}

impl MessageKind {
    /// The lane this kind of message travels on.
    pub const fn lane(self) -> Lane {
        match self {
            Self::Tell => Lane::Tell,
            Self::Ask | Self::Reply => Lane::Ask,
        }
    }

    pub(crate) const fn from_wire(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Tell),
            1 => Some(Self::Ask),
            2 => Some(Self::Reply),
            _ => None,
        }
    }
}

/// Everything about a message but its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// Tell, ask or reply.
    pub kind: MessageKind,
    /// The ordering key, usually the destination actor id. Messages with the same key arrive
    /// in the order they were sent.
    pub key: u64,
    /// Stable hash of the payload's type, or 0 for untyped bytes.
    pub type_hash: u32,
    /// Correlation id of an ask or reply; 0 for a tell.
    pub correlation_id: u64,
}

impl Envelope {
    /// A tell to `key` with an untyped payload.
    pub const fn tell(key: u64) -> Self {
        Self {
            kind: MessageKind::Tell,
            key,
            type_hash: 0,
            correlation_id: 0,
        }
    }

    /// The lane of this message.
    pub const fn lane(&self) -> Lane {
        self.kind.lane()
    }
}

/// The way a message crossed the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// Copied into the lane's ring buffer and sent as one frame.
    Ring,
    /// Sent as a chunked stream, the chunks taken from the caller's bytes without a copy.
    Stream,
}

/// A message handed to a [`Sender`](crate::Sender).
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Where the message goes and what it is.
    pub envelope: Envelope,
    /// The payload.
    pub payload: Bytes,
}

impl Outgoing {
    /// A message with this envelope and payload.
    pub fn new(envelope: Envelope, payload: impl Into<Bytes>) -> Self {
        Self {
            envelope,
            payload: payload.into(),
        }
    }
}

impl fmt::Debug for Outgoing {
    // Payloads are never printed: they may hold anything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outgoing")
            .field("envelope", &self.envelope)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// A complete message yielded by a [`Receiver`](crate::Receiver).
#[derive(Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Where the message goes and what it is.
    pub envelope: Envelope,
    /// The payload, whole.
    pub payload: Bytes,
    /// How it crossed the wire.
    pub route: Route,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("envelope", &self.envelope)
            .field("payload_len", &self.payload.len())
            .field("route", &self.route)
            .finish()
    }
}
