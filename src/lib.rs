//! ringwire: a message transport for messages from a few bytes to many megabytes, none of
//! which may be lost.
//!
//! This facade re-exports the sans-IO core, [`ringwire_core`], at its root (see its
//! documentation for how data flows), the async connection in [`net`], and one module per
//! runtime behind a feature of the same name: [`tokio`], [`async_std`], [`smol`], each with
//! `connect`, `accept` and `wrap` (any byte stream of that runtime, TLS included).
//!
//! On top of byte payloads, [`typed`] sends values archived with rkyv: the envelope's
//! `type_hash` names the type, and the receiver validates the archive before reading it in
//! place.

pub use ringwire_core::*;

pub mod typed;
pub use typed::{DecodeBuffer, Message, Typed, TypedError};

/// The async side, shared by every runtime: the connection handle, the inbox and their errors.
pub mod net {
    pub use ringwire_adapters::{
        AskFailed, CloseError, ConnectError, Connection, Delivery, Inbox, Options, Request,
        Runtime, Sleep, SocketBuffers, start,
    };
}

#[cfg(feature = "async-std")]
pub use ringwire_adapters::async_std;
#[cfg(feature = "smol")]
pub use ringwire_adapters::smol;
#[cfg(feature = "tokio")]
pub use ringwire_adapters::tokio;

/// The README's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
