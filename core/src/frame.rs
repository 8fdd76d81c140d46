//! Wire format v1: the frame header and the fixed fields of each frame kind.
//!
//! Every frame starts with the same 8-byte header; all integers are little-endian.
//!
//! ```text
//!  0        1        2                 4                                 8
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! |  kind  | flags  |    reserved (0)  |        body length (u32)          |
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! ```
//!
//! `docs/PROTOCOL.md` specifies every field byte by byte.

use bytes::{Buf, BufMut, Bytes};

use crate::error::ProtocolError;
use crate::message::{Envelope, MessageKind};

/// Length of the CRC32C trailer that ends every frame when the handshake turned it on.
pub const CRC_LEN: usize = 4;
/// Length of the header every frame starts with.
pub const FRAME_HEADER_LEN: usize = 8;
/// Fixed fields of a message frame after the common header: key, correlation id, type hash.
const MESSAGE_FIELDS_LEN: usize = 8 + 8 + 4;
/// Fixed fields of a stream-begin frame: stream id, key, correlation id, type hash, total length.
const BEGIN_FIELDS_LEN: usize = 8 + 8 + 8 + 4 + 8;
/// Fixed fields of a stream-chunk frame: stream id, offset.
const CHUNK_FIELDS_LEN: usize = 8 + 8;
/// Fixed fields of a stream-abort frame: stream id, code.
const ABORT_FIELDS_LEN: usize = 8 + 4;
/// Fixed fields of a cancel frame: correlation id.
const CANCEL_FIELDS_LEN: usize = 8;
/// Fixed fields of a refuse frame: correlation id, code.
const REFUSE_FIELDS_LEN: usize = 8 + 4;
/// Fixed fields of a close frame: code.
const CLOSE_FIELDS_LEN: usize = 4;
/// Longest reason text a refuse or close frame may carry.
pub const MAX_REASON_LEN: usize = 256;
/// Longest header plus fixed fields of a control frame.
pub(crate) const MAX_CONTROL_HEAD_LEN: usize = FRAME_HEADER_LEN + REFUSE_FIELDS_LEN;

/// Header plus fixed fields of a message frame: the bytes a ring frame adds to its payload.
pub const MESSAGE_HEADER_LEN: usize = FRAME_HEADER_LEN + MESSAGE_FIELDS_LEN;
/// Length of a whole stream-begin frame.
pub const BEGIN_FRAME_LEN: usize = FRAME_HEADER_LEN + BEGIN_FIELDS_LEN;
/// Header plus fixed fields of a chunk frame: the bytes each chunk adds to its data.
pub const CHUNK_HEADER_LEN: usize = FRAME_HEADER_LEN + CHUNK_FIELDS_LEN;

/// Mask of the flag bits that carry the [`MessageKind`] in message and stream-begin frames.
const KIND_MASK: u8 = 0b0000_0011;

/// Frame kinds. The values are the wire codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A whole message in one frame: the ring route.
    Message = 0x01,
    /// Opens a stream: envelope and total length, no data.
    StreamBegin = 0x02,
    /// A piece of a stream's data at an explicit offset. The chunk that reaches the total
    /// length completes the message.
    StreamChunk = 0x03,
    /// The sender gives up a stream it has begun; the receiver frees it.
    StreamAbort = 0x04,
    /// The asker no longer wants the reply to an ask.
    Cancel = 0x11,
    /// The receiver of an ask refuses it; the connection goes on.
    Refuse = 0x12,
    /// The sender will start no new message and ends once its accepted messages are out.
    Close = 0x13,
}

impl FrameKind {
    fn from_wire(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(Self::Message),
            0x02 => Some(Self::StreamBegin),
            0x03 => Some(Self::StreamChunk),
            0x04 => Some(Self::StreamAbort),
            0x11 => Some(Self::Cancel),
            0x12 => Some(Self::Refuse),
            0x13 => Some(Self::Close),
            _ => None,
        }
    }

    /// Length of the fixed fields that follow the common header.
    pub(crate) const fn fields_len(self) -> usize {
        match self {
            Self::Message => MESSAGE_FIELDS_LEN,
            Self::StreamBegin => BEGIN_FIELDS_LEN,
            Self::StreamChunk => CHUNK_FIELDS_LEN,
            Self::StreamAbort => ABORT_FIELDS_LEN,
            Self::Cancel => CANCEL_FIELDS_LEN,
            Self::Refuse => REFUSE_FIELDS_LEN,
            Self::Close => CLOSE_FIELDS_LEN,
        }
    }
}

/// The common header, decoded and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) kind: FrameKind,
    pub(crate) flags: u8,
    /// Bytes after the common header: fixed fields plus payload.
    pub(crate) body_len: u32,
}

impl FrameHeader {
    /// Decodes and checks the first [`FRAME_HEADER_LEN`] bytes of `src`.
    pub(crate) fn decode(mut src: &[u8]) -> Result<Self, ProtocolError> {
        let code = src.get_u8();
        let flags = src.get_u8();
        let reserved = src.get_u16_le();
        let body_len = src.get_u32_le();

        let kind = FrameKind::from_wire(code).ok_or(ProtocolError::UnknownFrameKind { code })?;
        let allowed_flags = match kind {
            FrameKind::Message | FrameKind::StreamBegin => KIND_MASK,
            _ => 0,
        };
        if flags & !allowed_flags != 0 || reserved != 0 {
            return Err(ProtocolError::ReservedBitsSet {
                code,
                flags,
                reserved,
            });
        }
        let min = kind.fields_len();
        if (body_len as usize) < min {
            return Err(ProtocolError::FrameTooShort {
                code,
                body_len,
                min: min as u32,
            });
        }
        Ok(Self {
            kind,
            flags,
            body_len,
        })
    }

    /// Length of the payload after the fixed fields.
    pub(crate) fn payload_len(&self) -> usize {
        self.body_len as usize - self.kind.fields_len()
    }

    fn message_kind(&self) -> Result<MessageKind, ProtocolError> {
        let code = self.flags & KIND_MASK;
        MessageKind::from_wire(code).ok_or(ProtocolError::UnknownMessageKind { code })
    }
}

/// Fields of a stream-begin frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamBegin {
    pub(crate) stream_id: u64,
    pub(crate) envelope: Envelope,
    pub(crate) total_len: u64,
}

/// Fields of a stream-chunk frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkFields {
    pub(crate) stream_id: u64,
    pub(crate) offset: u64,
}

fn put_header(dst: &mut &mut [u8], kind: FrameKind, flags: u8, body_len: usize) {
    dst.put_u8(kind as u8);
    dst.put_u8(flags);
    dst.put_u16_le(0);
    // Callers keep body lengths within u32: ring frames are at most 10 MiB and chunks at most
    // 16 MiB plus fixed fields.
    dst.put_u32_le(body_len as u32);
}

/// Writes the header of a message frame carrying `payload_len` bytes.
pub(crate) fn encode_message_header(
    envelope: &Envelope,
    payload_len: usize,
) -> [u8; MESSAGE_HEADER_LEN] {
    let mut out = [0u8; MESSAGE_HEADER_LEN];
    let mut dst = &mut out[..];
    put_header(
        &mut dst,
        FrameKind::Message,
        envelope.kind as u8,
        MESSAGE_FIELDS_LEN + payload_len,
    );
    dst.put_u64_le(envelope.key);
    dst.put_u64_le(envelope.correlation_id);
    dst.put_u32_le(envelope.type_hash);
    out
}

/// Writes a stream-begin frame into `dst`, which must hold [`BEGIN_FRAME_LEN`] bytes.
pub(crate) fn encode_begin(begin: &StreamBegin, mut dst: &mut [u8]) {
    let dst = &mut dst;
    put_header(
        dst,
        FrameKind::StreamBegin,
        begin.envelope.kind as u8,
        BEGIN_FIELDS_LEN,
    );
    dst.put_u64_le(begin.stream_id);
    dst.put_u64_le(begin.envelope.key);
    dst.put_u64_le(begin.envelope.correlation_id);
    dst.put_u32_le(begin.envelope.type_hash);
    dst.put_u64_le(begin.total_len);
}

/// Writes the header of a chunk of `data_len` bytes into `dst`, which must hold
/// [`CHUNK_HEADER_LEN`] bytes.
pub(crate) fn encode_chunk_header(chunk: &ChunkFields, data_len: usize, mut dst: &mut [u8]) {
    let dst = &mut dst;
    put_header(dst, FrameKind::StreamChunk, 0, CHUNK_FIELDS_LEN + data_len);
    dst.put_u64_le(chunk.stream_id);
    dst.put_u64_le(chunk.offset);
}

/// Decodes the fixed fields of a message frame.
pub(crate) fn decode_message_fields(
    header: &FrameHeader,
    mut src: &[u8],
) -> Result<Envelope, ProtocolError> {
    let kind = header.message_kind()?;
    let key = src.get_u64_le();
    let correlation_id = src.get_u64_le();
    let type_hash = src.get_u32_le();
    Ok(Envelope {
        kind,
        key,
        type_hash,
        correlation_id,
    })
}

/// Decodes the fixed fields of a stream-begin frame.
pub(crate) fn decode_begin_fields(
    header: &FrameHeader,
    mut src: &[u8],
) -> Result<StreamBegin, ProtocolError> {
    let kind = header.message_kind()?;
    let stream_id = src.get_u64_le();
    let key = src.get_u64_le();
    let correlation_id = src.get_u64_le();
    let type_hash = src.get_u32_le();
    let total_len = src.get_u64_le();
    Ok(StreamBegin {
        stream_id,
        envelope: Envelope {
            kind,
            key,
            type_hash,
            correlation_id,
        },
        total_len,
    })
}

/// Decodes the fixed fields of a chunk frame.
pub(crate) fn decode_chunk_fields(mut src: &[u8]) -> ChunkFields {
    ChunkFields {
        stream_id: src.get_u64_le(),
        offset: src.get_u64_le(),
    }
}

/// A frame that carries no message: the connection's own signals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    StreamAbort {
        stream_id: u64,
        code: u32,
    },
    Cancel {
        correlation_id: u64,
    },
    Refuse {
        correlation_id: u64,
        code: u32,
        reason: Bytes,
    },
    Close {
        code: u32,
        reason: Bytes,
    },
}

impl Control {
    /// The reason text sent after the fixed fields.
    pub(crate) fn reason(&self) -> &Bytes {
        static EMPTY: Bytes = Bytes::from_static(b"");
        match self {
            Self::Refuse { reason, .. } | Self::Close { reason, .. } => reason,
            Self::StreamAbort { .. } | Self::Cancel { .. } => &EMPTY,
        }
    }

    /// Writes the header and fixed fields into `dst` and returns their length.
    pub(crate) fn encode_head(&self, mut dst: &mut [u8]) -> usize {
        let reason_len = self.reason().len();
        let dst = &mut dst;
        let (kind, fields) = match self {
            Self::StreamAbort { .. } => (FrameKind::StreamAbort, ABORT_FIELDS_LEN),
            Self::Cancel { .. } => (FrameKind::Cancel, CANCEL_FIELDS_LEN),
            Self::Refuse { .. } => (FrameKind::Refuse, REFUSE_FIELDS_LEN),
            Self::Close { .. } => (FrameKind::Close, CLOSE_FIELDS_LEN),
        };
        put_header(dst, kind, 0, fields + reason_len);
        match self {
            Self::StreamAbort { stream_id, code } => {
                dst.put_u64_le(*stream_id);
                dst.put_u32_le(*code);
            }
            Self::Cancel { correlation_id } => dst.put_u64_le(*correlation_id),
            Self::Refuse {
                correlation_id,
                code,
                ..
            } => {
                dst.put_u64_le(*correlation_id);
                dst.put_u32_le(*code);
            }
            Self::Close { code, .. } => dst.put_u32_le(*code),
        }
        FRAME_HEADER_LEN + fields
    }

    /// Decodes a control frame from its fixed fields and reason bytes.
    pub(crate) fn decode(kind: FrameKind, mut fields: &[u8], reason: Bytes) -> Option<Self> {
        Some(match kind {
            FrameKind::StreamAbort => Self::StreamAbort {
                stream_id: fields.get_u64_le(),
                code: fields.get_u32_le(),
            },
            FrameKind::Cancel => Self::Cancel {
                correlation_id: fields.get_u64_le(),
            },
            FrameKind::Refuse => Self::Refuse {
                correlation_id: fields.get_u64_le(),
                code: fields.get_u32_le(),
                reason,
            },
            FrameKind::Close => Self::Close {
                code: fields.get_u32_le(),
                reason,
            },
            FrameKind::Message | FrameKind::StreamBegin | FrameKind::StreamChunk => return None,
        })
    }
}
