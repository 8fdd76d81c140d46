//! What a connection tells its user: its state, its events and its errors.

use crate::error::ProtocolError;
use crate::handshake::{HandshakeError, Negotiated};
use crate::message::{Incoming, Outgoing};

/// Why a refused or aborted message was refused, as carried on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefuseCode {
    /// The receiver does not know the message's type hash.
    UnknownType,
    /// The receiver has no room for it.
    OverBudget,
    /// The asker cancelled.
    Cancelled,
    /// The receiver's handler failed.
    HandlerFailed,
    /// A code this version does not know.
    Other(u32),
}

impl RefuseCode {
    /// The wire value.
    pub fn to_wire(self) -> u32 {
        match self {
            Self::UnknownType => 1,
            Self::OverBudget => 2,
            Self::Cancelled => 3,
            Self::HandlerFailed => 4,
            Self::Other(code) => code,
        }
    }

    /// The code for a wire value.
    pub fn from_wire(code: u32) -> Self {
        match code {
            1 => Self::UnknownType,
            2 => Self::OverBudget,
            3 => Self::Cancelled,
            4 => Self::HandlerFailed,
            other => Self::Other(other),
        }
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Waiting for the peer's `HELLO`; nothing can be sent yet.
    Handshaking,
    /// Messages flow both ways.
    Open,
    /// One side asked to close: no new message is accepted, accepted ones are finished. Lasts
    /// at most the configured [`close_timeout`](crate::ConnectionConfig::close_timeout).
    Closing,
    /// Done, cleanly or not; see the [`Event::Closed`] that said so.
    Closed,
}

/// Why an ask got no reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// Its deadline passed. The peer was told to drop it.
    #[error("the ask's deadline passed")]
    DeadlineExceeded,
    /// The peer refused it.
    #[error("the peer refused the ask ({code:?}): {reason}")]
    Refused {
        /// Why, as a code.
        code: RefuseCode,
        /// Why, in the peer's words.
        reason: String,
    },
    /// The peer closed the connection before replying.
    #[error("the peer closed the connection before replying")]
    Closed,
    /// The connection was lost before the reply arrived. The peer may or may not have
    /// handled the ask.
    #[error("the connection was lost before the reply arrived")]
    ConnectionLost,
    /// This side was closing and gave up when its
    /// [`close_timeout`](crate::ConnectionConfig::close_timeout) passed, before the reply
    /// arrived. As with a lost connection, the peer may or may not have handled the ask.
    #[error("the close timed out before the reply arrived")]
    CloseTimedOut,
}

/// Why a connection failed. It cannot be used any more; drop its transport.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The handshake failed: not a ringwire peer, or no common version.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
}

/// What a connection tells its user. Read them with [`Connection::poll_event`](crate::Connection::poll_event).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The handshake is done; messages may be sent.
    Connected(Negotiated),
    /// A one-way message.
    Tell(Incoming),
    /// A request to answer with [`Connection::reply`](crate::Connection::reply) or [`Connection::refuse`](crate::Connection::refuse), by its
    /// `envelope.correlation_id`.
    Ask(Incoming),
    /// The answer to one of this side's asks.
    Reply(Incoming),
    /// One of this side's asks will get no reply.
    AskFailed {
        /// The ask's correlation id.
        correlation_id: u64,
        /// Why.
        error: AskError,
    },
    /// The peer no longer wants the reply to its ask; a reply is no longer needed.
    AskCancelled {
        /// The ask's correlation id.
        correlation_id: u64,
    },
    /// The connection was lost, or its close timed out, with these accepted messages not
    /// completely written. They were not delivered; send them again elsewhere or report them.
    Unsent(Vec<Outgoing>),
    /// A graceful close did not complete within the configured
    /// [`close_timeout`](crate::ConnectionConfig::close_timeout): the peer stopped reading or
    /// never answered with its `CLOSE`. The connection gives up as if the transport were
    /// lost: this event is followed by an [`AskFailed`](Self::AskFailed) with
    /// [`AskError::CloseTimedOut`] for each pending ask, an [`Unsent`](Self::Unsent) with the
    /// accepted messages not completely written, if any, and `Closed { clean: false }`. Drop
    /// the transport.
    CloseTimedOut,
    /// The connection is over.
    Closed {
        /// Whether both sides closed gracefully, every accepted message written.
        clean: bool,
    },
}
