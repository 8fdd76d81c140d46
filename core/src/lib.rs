//! The sans-IO core of ringwire: a message transport that routes small payloads through a
//! ring buffer and large ones through chunked streams, and never loses a message between the
//! two.
//!
//! Nothing here touches a socket, a clock, a thread or a runtime. A [`Sender`] turns messages
//! into bytes to write; a [`Receiver`] turns bytes read back into messages. A [`Connection`]
//! joins the two behind the [`Hello`] handshake and adds asks with deadlines, cancels,
//! refusals and a graceful close; time is passed in and [`Connection::poll_timeout`] says when
//! to come back. The runtime adapters move the bytes.
//!
//! ```text
//!  send(Outgoing)                                                 decode(&mut BytesMut)
//!       |                                                                  ^
//!       v          payload <= lane threshold                               |
//!  +---------+ ------------------------------> [ ring: frames copied ]     |
//!  | Sender  |                                        \                  +----------+
//!  | routing |                                         >-- transmit --> | Receiver |
//!  +---------+ ---- larger, ring full, or key ------> /    (vectored,    | limits,  |
//!       |           behind a stream            [ stream queue:       ]  |  reassembly
//!       v                                      [ chunks of the       ]  +----------+
//!  SendError::Full hands the message back       [ caller's Bytes      ]       |
//!  when the stream queue is full too                                       Incoming
//! ```
//!
//! # One source of truth
//!
//! Each lane (tell, ask) has one [`BufferConfig`]. Its
//! [`streaming_threshold`](BufferConfig::streaming_threshold) is derived from the ring size and
//! is the only threshold there is: a payload at most that size fits in the ring by
//! construction, a larger one streams, and a full ring falls back to streaming.
//!
//! # Guarantees
//!
//! - Every accepted message is written exactly once; a refused one is handed back in a
//!   [`SendError`].
//! - Messages with the same key arrive in the order they were sent, whatever route each took.
//! - Chunks of different streams and runs of ring frames take turns, and output is planned only
//!   about one chunk ahead, so a large stream delays a small message by less than two chunks.
//! - The receiver checks every length against its [`ReceiveLimits`] before reserving memory
//!   and reports malformed input as a [`ProtocolError`], never with a panic or a partial
//!   message.
//!
//! # Logging
//!
//! `tracing` events: `debug` for each routing decision (size, lane, threshold, route), `warn`
//! when the peer breaks the protocol. Payload bytes are never logged.

mod config;
mod connection;
mod error;
mod frame;
mod handshake;
mod message;
mod metrics;
mod receiver;
mod sender;

pub use config::{
    BufferConfig, ConfigError, ConnectionConfig, ConnectionConfigBuilder, HEADER_HEADROOM,
    ReceiveLimits,
};
pub use connection::{AskError, Connection, ConnectionError, ConnectionState, Event, RefuseCode};
pub use error::{ProtocolError, SendError};
pub use frame::{
    BEGIN_FRAME_LEN, CHUNK_HEADER_LEN, CRC_LEN, FRAME_HEADER_LEN, FrameKind, MAX_REASON_LEN,
    MESSAGE_HEADER_LEN,
};
pub use handshake::{
    HELLO_FRAME_LEN, HELLO_KIND, HELLO_MAGIC, HandshakeError, Hello, Negotiated, PROTOCOL_VERSION,
};
pub use message::{Envelope, Incoming, Lane, MessageKind, Outgoing, Route};
pub use metrics::{AskMetrics, Metrics, ReceiveMetrics, SendMetrics};
pub use receiver::{ChunkSpace, Inbound, Receiver};
pub use sender::Sender;
