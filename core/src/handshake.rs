//! The handshake: each side's first frame, `HELLO`, carries the protocol versions it speaks
//! and the limits it enforces on input.
//!
//! Both sides send their `HELLO` at once and accept the peer's before anything else. A
//! [`Sender`](crate::Sender) is then built with the peer's limits
//! ([`Sender::with_peer_limits`](crate::Sender::with_peer_limits)) and a
//! [`Receiver`](crate::Receiver) with one's own.

use bytes::{Buf, BufMut};

use crate::config::ReceiveLimits;
use crate::frame::FRAME_HEADER_LEN;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Wire code of the `HELLO` frame.
pub const HELLO_KIND: u8 = 0x10;
/// The four bytes that open every `HELLO` body.
pub const HELLO_MAGIC: [u8; 4] = *b"RGWR";
/// Fixed body length of a `HELLO` frame.
const HELLO_BODY_LEN: usize = 4 + 2 + 2 + 8 + 8 + 4 + 8 + 4;
/// Longest `HELLO` body accepted, leaving later versions room to add fields.
const MAX_HELLO_BODY_LEN: usize = 1024;
/// Length of a whole `HELLO` frame.
pub const HELLO_FRAME_LEN: usize = FRAME_HEADER_LEN + HELLO_BODY_LEN;

/// Bit of the `features` field asking for a CRC32C trailer on every frame. Other bits are
/// offers of features this version does not know, and are ignored: a feature is on only when
/// both sides set its bit, and refusing unknown bits would stop a later version from offering
/// anything to this one.
const FEATURE_CRC32C: u32 = 1;

/// What one side announces in its `HELLO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hello {
    /// Oldest protocol version spoken.
    pub min_version: u16,
    /// Newest protocol version spoken.
    pub max_version: u16,
    /// Limits enforced on input.
    pub limits: ReceiveLimits,
    /// Whether this side wants a CRC32C trailer on every frame.
    pub crc32c: bool,
}

/// What both sides agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Negotiated {
    /// The protocol version in use: the highest both sides speak.
    pub version: u16,
    /// The limits the peer enforces, to build the [`Sender`](crate::Sender) with.
    pub peer_limits: ReceiveLimits,
    /// Whether every frame carries a CRC32C trailer: only when both sides asked for it.
    pub crc32c: bool,
}

/// Why a handshake failed. The connection cannot be used; close it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first bytes are not a ringwire `HELLO`: the peer speaks another protocol, or is
    /// not the service expected at that address.
    #[error("peer is not a ringwire endpoint (first frame kind 0x{kind:02x}, magic {magic:02x?})")]
    NotRingwire {
        /// Kind code of the first frame received.
        kind: u8,
        /// The four bytes where the magic should be, or fewer if the frame was shorter.
        magic: [u8; 4],
    },
    /// The two sides share no protocol version. Upgrade the older side.
    #[error(
        "no common protocol version: this side speaks {ours_min}..={ours_max}, the peer \
         {theirs_min}..={theirs_max}"
    )]
    VersionMismatch {
        /// Oldest version this side speaks.
        ours_min: u16,
        /// Newest version this side speaks.
        ours_max: u16,
        /// Oldest version the peer speaks.
        theirs_min: u16,
        /// Newest version the peer speaks.
        theirs_max: u16,
    },
    /// The peer announced limits under which no message could ever be received: no stream
    /// at all, or a reassembly budget below its own largest message.
    #[error("peer announced unusable limits: {reason}")]
    UnusableLimits {
        /// What is wrong with them.
        reason: &'static str,
    },
}

impl Hello {
    /// A `HELLO` for this crate's protocol version.
    pub fn new(limits: ReceiveLimits, crc32c: bool) -> Self {
        Self {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            limits,
            crc32c,
        }
    }

    /// The whole frame, ready to write.
    pub fn encode(&self) -> [u8; HELLO_FRAME_LEN] {
        let mut out = [0u8; HELLO_FRAME_LEN];
        let mut dst = &mut out[..];
        dst.put_u8(HELLO_KIND);
        dst.put_u8(0);
        dst.put_u16_le(0);
        dst.put_u32_le(HELLO_BODY_LEN as u32);
        dst.put_slice(&HELLO_MAGIC);
        dst.put_u16_le(self.min_version);
        dst.put_u16_le(self.max_version);
        dst.put_u64_le(self.limits.max_message_size);
        dst.put_u64_le(self.limits.max_frame_payload);
        dst.put_u32_le(self.limits.max_inbound_streams);
        dst.put_u64_le(self.limits.reassembly_budget);
        dst.put_u32_le(if self.crc32c { FEATURE_CRC32C } else { 0 });
        out
    }

    /// Decodes the peer's `HELLO` from the start of `src` and returns it with the length of
    /// the frame. Returns `Ok(None)` until the whole frame is there; a foreign first frame
    /// fails as soon as the bytes that have arrived show it.
    ///
    /// A later version may append fields to the body; they are skipped, so that the versions
    /// can still be compared.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::NotRingwire`] for anything that is not a `HELLO`.
    pub fn decode(src: &[u8]) -> Result<Option<(Self, usize)>, HandshakeError> {
        let mut magic = [0u8; 4];
        let magic_seen = src.get(FRAME_HEADER_LEN..).unwrap_or(&[]);
        let seen = magic_seen.len().min(magic.len());
        magic[..seen].copy_from_slice(&magic_seen[..seen]);
        let not_ringwire = HandshakeError::NotRingwire {
            kind: src.first().copied().unwrap_or(0),
            magic,
        };

        // Judge what has arrived so far, so that a foreign peer fails without being waited for.
        let head_ok = src.first().is_none_or(|&kind| kind == HELLO_KIND)
            && src.iter().skip(1).take(3).all(|&b| b == 0)
            && magic[..seen] == HELLO_MAGIC[..seen];
        if !head_ok {
            return Err(not_ringwire);
        }
        if src.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let body_len = u32::from_le_bytes([src[4], src[5], src[6], src[7]]) as usize;
        if !(HELLO_BODY_LEN..=MAX_HELLO_BODY_LEN).contains(&body_len) {
            return Err(not_ringwire);
        }
        let frame_len = FRAME_HEADER_LEN + body_len;
        if src.len() < frame_len {
            return Ok(None);
        }

        let mut body = &src[FRAME_HEADER_LEN + HELLO_MAGIC.len()..frame_len];
        let min_version = body.get_u16_le();
        let max_version = body.get_u16_le();
        let limits = ReceiveLimits {
            max_message_size: body.get_u64_le(),
            max_frame_payload: body.get_u64_le(),
            max_inbound_streams: body.get_u32_le(),
            reassembly_budget: body.get_u64_le(),
        };
        let features = body.get_u32_le();
        let hello = Self {
            min_version,
            max_version,
            limits,
            crc32c: features & FEATURE_CRC32C != 0,
        };
        Ok(Some((hello, frame_len)))
    }

    /// Agrees on a version and the peer's limits.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::VersionMismatch`] when the version ranges do not meet,
    /// [`HandshakeError::UnusableLimits`] when the peer's limits admit no message.
    pub fn negotiate(&self, peer: &Hello) -> Result<Negotiated, HandshakeError> {
        let low = self.min_version.max(peer.min_version);
        let high = self.max_version.min(peer.max_version);
        if low > high {
            return Err(HandshakeError::VersionMismatch {
                ours_min: self.min_version,
                ours_max: self.max_version,
                theirs_min: peer.min_version,
                theirs_max: peer.max_version,
            });
        }
        let limits = peer.limits;
        if limits.max_inbound_streams == 0 {
            return Err(HandshakeError::UnusableLimits {
                reason: "max_inbound_streams is 0",
            });
        }
        if limits.reassembly_budget < limits.max_message_size {
            return Err(HandshakeError::UnusableLimits {
                reason: "reassembly_budget is below max_message_size",
            });
        }
        Ok(Negotiated {
            version: high,
            peer_limits: limits,
            crc32c: self.crc32c && peer.crc32c,
        })
    }
}
