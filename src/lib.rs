//! ringwire: a message transport for messages from a few bytes to many megabytes, none of
//! which may be lost.
//!
//! This facade re-exports the sans-IO core, [`ringwire_core`]; see its documentation for how
//! data flows. Runtime adapters for tokio, async-std and smol will be added behind features.

pub use ringwire_core::*;

/// The README's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
