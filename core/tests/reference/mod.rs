//! A reference decoder for the receiving side of docs/PROTOCOL.md, written for plain reading
//! rather than speed, to compare a `Receiver` with on input where no sent message can be
//! expected: arbitrary bytes, rule-breaking frames, damaged traffic.

use std::collections::HashMap;

use bytes::Bytes;
use ringwire_core::{
    CRC_LEN, Envelope, FRAME_HEADER_LEN, Inbound, Incoming, MAX_REASON_LEN, MessageKind,
    ProtocolError, ReceiveLimits, Route,
};

/// What `Receiver::decode` made of some input: the messages it handed out, in order, and the
/// error that stopped it, if any.
#[derive(Debug, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) messages: Vec<Incoming>,
    pub(crate) error: Option<ProtocolError>,
}

/// What `Receiver::decode_frame` made of some input: the items it handed out, in order, what
/// the open streams held right after each item, and the error that stopped it, if any.
#[derive(Debug, PartialEq)]
pub(crate) struct FrameOutcome {
    pub(crate) items: Vec<Inbound>,
    pub(crate) held: Vec<Held>,
    pub(crate) error: Option<ProtocolError>,
}

/// Streams open at the receiver and the bytes they reserve against the reassembly budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) streams: usize,
    pub(crate) reserved: u64,
}

/// A stream begun and not complete.
struct Open {
    envelope: Envelope,
    total: u64,
    data: Vec<u8>,
}

/// Decodes all of `wire` at once for a byte stream that carries messages only, as
/// `Receiver::decode` does: like [`reference_decode_frames`], except that the first
/// connection frame (stream abort, cancel, refuse, close) is `UnexpectedFrame`.
///
/// A connection frame is judged by every rule of its kind before it counts as unexpected:
/// its header (and the length of its reason) as soon as the header is in, then, once the
/// whole frame is in, its trailer, then its stream id or the UTF-8 of its reason. Only a frame
/// that passes them all is reported as `UnexpectedFrame`.
pub(crate) fn reference_decode(wire: &[u8], limits: &ReceiveLimits, crc32c: bool) -> Outcome {
    let frames = reference_decode_frames(wire, limits, crc32c);
    let mut messages = Vec::new();
    for item in frames.items {
        match item {
            Inbound::Message(message) => messages.push(message),
            other => {
                let code = frame_code(&other);
                return Outcome {
                    messages,
                    error: Some(ProtocolError::UnexpectedFrame { code }),
                };
            }
        }
    }
    Outcome {
        messages,
        error: frames.error,
    }
}

/// The wire code of the connection frame behind `item`.
fn frame_code(item: &Inbound) -> u8 {
    match item {
        Inbound::StreamAborted { .. } => 0x04,
        Inbound::Cancel { .. } => 0x11,
        Inbound::Refuse { .. } => 0x12,
        Inbound::Close { .. } => 0x13,
        other => panic!("{other:?} is not a connection frame this reference knows"),
    }
}

/// Decodes all of `wire` at once, frame by frame, and stops at the first broken rule, as a
/// receiver with `limits` does through `decode_frame` (with a CRC32C trailer on every frame
/// if `crc32c`).
///
/// A rule is checked as soon as the bytes it needs are there: the header's rules with the
/// header, the length of a connection frame's reason included; a message's trailer and fields
/// once the whole frame is in; a stream-begin's once its fixed fields and trailer are in; a
/// chunk's fields before its data, its trailer after; a connection frame's trailer, then its
/// stream id or reason text, once the whole frame is in. Where the protocol leaves open which
/// of two broken rules is reported, this follows the order of the checks in `Receiver`, so
/// that outcomes compare exactly.
pub(crate) fn reference_decode_frames(
    wire: &[u8],
    limits: &ReceiveLimits,
    crc32c: bool,
) -> FrameOutcome {
    let trailer = if crc32c { CRC_LEN } else { 0 };
    let u32_at = |at: usize| u32::from_le_bytes(wire[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(wire[at..at + 8].try_into().unwrap());
    let envelope_at = |flags: u8, at: usize| {
        let kind = match flags & 0b11 {
            0 => MessageKind::Tell,
            1 => MessageKind::Ask,
            2 => MessageKind::Reply,
            code => return Err(ProtocolError::UnknownMessageKind { code }),
        };
        Ok(Envelope {
            kind,
            key: u64_at(at),
            correlation_id: u64_at(at + 8),
            type_hash: u32_at(at + 16),
        })
    };
    // The trailer after `covered`, if trailers are on.
    let check_crc = |code: u8, covered: std::ops::Range<usize>| {
        if !crc32c {
            return Ok(());
        }
        let computed = crc32c::crc32c(&wire[covered.clone()]);
        let received = u32_at(covered.end);
        if computed == received {
            Ok(())
        } else {
            Err(ProtocolError::ChecksumMismatch {
                code,
                received,
                computed,
            })
        }
    };

    let mut items = Vec::new();
    let mut held = Vec::new();
    let mut open: HashMap<u64, Open> = HashMap::new();
    let mut last_id: Option<u64> = None;
    let mut reserved_total = 0u64;
    let mut at = 0;
    let error = loop {
        let available = wire.len() - at;
        if available < FRAME_HEADER_LEN {
            break None;
        }

        // The header, checked before anything else is waited for.
        let (code, flags) = (wire[at], wire[at + 1]);
        let reserved = u16::from_le_bytes([wire[at + 2], wire[at + 3]]);
        let body_len = u32_at(at + 4);
        let (fields, allowed_flags) = match code {
            0x01 => (20, 0b11),
            0x02 => (36, 0b11),
            0x03 => (16, 0),
            0x04 => (12, 0),
            0x11 => (8, 0),
            0x12 => (12, 0),
            0x13 => (4, 0),
            _ => break Some(ProtocolError::UnknownFrameKind { code }),
        };
        if flags & !allowed_flags != 0 || reserved != 0 {
            break Some(ProtocolError::ReservedBitsSet {
                code,
                flags,
                reserved,
            });
        }
        if body_len < fields {
            break Some(ProtocolError::FrameTooShort {
                code,
                body_len,
                min: fields,
            });
        }
        let payload_len = u64::from(body_len - fields);
        if code == 0x01 && payload_len > limits.max_message_size {
            break Some(ProtocolError::MessageTooLarge {
                size: payload_len,
                limit: limits.max_message_size,
            });
        }
        if code == 0x01 && payload_len > limits.max_frame_payload {
            break Some(ProtocolError::FrameTooLarge {
                len: payload_len,
                limit: limits.max_frame_payload,
            });
        }
        if code == 0x02 && payload_len != 0 {
            break Some(ProtocolError::BeginWithPayload {
                extra: payload_len as u32,
            });
        }
        // A reason longer than allowed, or any payload where none is allowed, is refused
        // before the frame is waited for.
        let reason_limit = match code {
            0x12 | 0x13 => Some(MAX_REASON_LEN as u64),
            0x04 | 0x11 => Some(0),
            _ => None,
        };
        if let Some(limit) = reason_limit.filter(|&limit| payload_len > limit) {
            break Some(ProtocolError::ReasonTooLong {
                len: payload_len,
                limit,
            });
        }
        let head = FRAME_HEADER_LEN + fields as usize;

        match code {
            // MESSAGE: handed out once the whole frame is in and checked.
            0x01 => {
                let end = FRAME_HEADER_LEN + body_len as usize;
                if available < end + trailer {
                    break None;
                }
                if let Err(error) = check_crc(code, at..at + end) {
                    break Some(error);
                }
                let envelope = match envelope_at(flags, at + 8) {
                    Ok(envelope) => envelope,
                    Err(error) => break Some(error),
                };
                items.push(Inbound::Message(Incoming {
                    envelope,
                    payload: Bytes::copy_from_slice(&wire[at + head..at + end]),
                    route: Route::Ring,
                }));
                at += end + trailer;
            }
            // STREAM_BEGIN: opens a stream within the limits.
            0x02 => {
                if available < head + trailer {
                    break None;
                }
                if let Err(error) = check_crc(code, at..at + head) {
                    break Some(error);
                }
                let envelope = match envelope_at(flags, at + 16) {
                    Ok(envelope) => envelope,
                    Err(error) => break Some(error),
                };
                let (id, total) = (u64_at(at + 8), u64_at(at + 36));
                if let Some(previous) = last_id.filter(|&previous| id <= previous) {
                    break Some(ProtocolError::StreamIdReused { id, previous });
                }
                if total > limits.max_message_size {
                    break Some(ProtocolError::MessageTooLarge {
                        size: total,
                        limit: limits.max_message_size,
                    });
                }
                if open.len() >= limits.max_inbound_streams as usize {
                    break Some(ProtocolError::TooManyStreams {
                        limit: limits.max_inbound_streams,
                    });
                }
                if reserved_total + total > limits.reassembly_budget {
                    break Some(ProtocolError::ReassemblyBudgetExceeded {
                        requested: total,
                        in_use: reserved_total,
                        budget: limits.reassembly_budget,
                    });
                }
                last_id = Some(id);
                if total == 0 {
                    items.push(Inbound::Message(Incoming {
                        envelope,
                        payload: Bytes::new(),
                        route: Route::Stream,
                    }));
                } else {
                    reserved_total += total;
                    let data = Vec::new();
                    open.insert(
                        id,
                        Open {
                            envelope,
                            total,
                            data,
                        },
                    );
                }
                at += head + trailer;
            }
            // STREAM_CHUNK: the next piece of an open stream; the stream completes only after
            // the chunk's trailer.
            0x03 => {
                if available < head {
                    break None;
                }
                let (id, offset) = (u64_at(at + 8), u64_at(at + 16));
                let Some(stream) = open.get_mut(&id) else {
                    break Some(ProtocolError::UnknownStream { id });
                };
                if payload_len == 0 {
                    break Some(ProtocolError::EmptyChunk { id });
                }
                let expected = stream.data.len() as u64;
                if offset != expected {
                    break Some(ProtocolError::ChunkOutOfOrder {
                        id,
                        offset,
                        expected,
                    });
                }
                if offset + payload_len > stream.total {
                    break Some(ProtocolError::ChunkOverrun {
                        id,
                        end: offset + payload_len,
                        total: stream.total,
                    });
                }
                let end = head + payload_len as usize;
                if available < end + trailer {
                    break None;
                }
                if let Err(error) = check_crc(code, at..at + end) {
                    break Some(error);
                }
                stream.data.extend_from_slice(&wire[at + head..at + end]);
                at += end + trailer;
                if stream.data.len() as u64 == stream.total {
                    let stream = open.remove(&id).unwrap();
                    reserved_total -= stream.total;
                    items.push(Inbound::Message(Incoming {
                        envelope: stream.envelope,
                        payload: stream.data.into(),
                        route: Route::Stream,
                    }));
                }
            }
            // STREAM_ABORT, CANCEL, REFUSE, CLOSE: judged once the whole frame is in.
            _ => {
                let end = FRAME_HEADER_LEN + body_len as usize;
                if available < end + trailer {
                    break None;
                }
                if let Err(error) = check_crc(code, at..at + end) {
                    break Some(error);
                }
                let reason = || {
                    String::from_utf8(wire[at + head..at + end].to_vec())
                        .map_err(|_| ProtocolError::InvalidReason)
                };
                let item = match code {
                    0x04 => {
                        let id = u64_at(at + 8);
                        let Some(stream) = open.remove(&id) else {
                            break Some(ProtocolError::UnknownStream { id });
                        };
                        reserved_total -= stream.total;
                        Inbound::StreamAborted {
                            envelope: stream.envelope,
                            code: u32_at(at + 16),
                        }
                    }
                    0x11 => Inbound::Cancel {
                        correlation_id: u64_at(at + 8),
                    },
                    0x12 => match reason() {
                        Ok(reason) => Inbound::Refuse {
                            correlation_id: u64_at(at + 8),
                            code: u32_at(at + 16),
                            reason,
                        },
                        Err(error) => break Some(error),
                    },
                    _ => match reason() {
                        Ok(reason) => Inbound::Close {
                            code: u32_at(at + 8),
                            reason,
                        },
                        Err(error) => break Some(error),
                    },
                };
                items.push(item);
                at += end + trailer;
            }
        }
        // Whatever was handed out by this frame, with what the open streams hold after it.
        while held.len() < items.len() {
            held.push(Held {
                streams: open.len(),
                reserved: reserved_total,
            });
        }
    };
    FrameOutcome { items, held, error }
}
