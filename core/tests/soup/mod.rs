//! Frame sequences for the fuzz harnesses: frames with consistent lengths and mostly valid
//! fields, message and connection frames alike, now and then breaking a rule or sitting at a
//! limit.

use bolero::generator::TypeGenerator;
use ringwire_core::{FRAME_HEADER_LEN, MAX_REASON_LEN, ReceiveLimits};

use crate::common;

/// One frame of a [`FrameSoup`]. Most frames keep the rules; `honest` and `size` decide how
/// often ids, offsets, lengths, reasons and trailers break them or sit right at a limit.
#[derive(Debug, TypeGenerator)]
struct SoupFrame {
    /// 0: message, 1: stream begin, 2: chunk.
    #[generator(0..3u8)]
    kind: u8,
    /// Below 64 the frame is a connection frame instead, by `control % 4`: stream abort,
    /// cancel, refuse, close.
    control: u8,
    #[generator(0..=2u8)]
    message_kind: u8,
    key: u8,
    /// Payload of a message, data of a chunk, total of a small stream, or length of a reason.
    #[generator(0..2048u16)]
    len: u16,
    /// Below 160 a small size from `len`; up to 191 a size at a limit, give or take one
    /// byte; above that a size from `large_total`, up to the message limit and an eighth.
    size: u8,
    #[generator(0..1_500_000u32)]
    large_total: u32,
    /// Which open stream a chunk or an abort goes to, or which limit a size sits at.
    pick: u8,
    /// Below 240 the frame keeps the rules on ids, offsets and lengths; up to 247 it misses
    /// them by a little (see [`Writer::chunk`] and [`Writer::control`]); above that ids and
    /// offsets are arbitrary; at 255 the trailer is wrong too.
    honest: u8,
}

/// Frames with consistent lengths and mostly valid fields, now and then breaking a rule or
/// sitting at a limit, plus possibly one arbitrary header: input that gets past the frame
/// header and reaches the stream rules, the limits and the connection frames' rules, which
/// arbitrary bytes seldom do.
#[derive(Debug, TypeGenerator)]
pub(crate) struct FrameSoup {
    frames: Vec<SoupFrame>,
    junk: Option<(u8, [u8; FRAME_HEADER_LEN])>,
    pub(crate) crc32c: bool,
    pub(crate) split_seed: u64,
}

impl FrameSoup {
    /// The wire bytes for a receiver with `limits`.
    pub(crate) fn encode(&self, limits: &ReceiveLimits) -> Vec<u8> {
        let mut writer = Writer::new(limits);
        for (index, frame) in self.frames.iter().enumerate() {
            if let Some((at, header)) = &self.junk {
                if usize::from(*at) == index {
                    writer.wire.extend_from_slice(header);
                }
            }
            let start = writer.wire.len();
            if frame.control < 64 {
                writer.control(frame, index);
            } else {
                writer.message_or_stream(frame, index);
            }
            if self.crc32c {
                let crc = crc32c::crc32c(&writer.wire[start..]) ^ u32::from(frame.honest == 255);
                writer.wire.extend_from_slice(&crc.to_le_bytes());
            }
        }
        writer.wire
    }
}

/// A stream as the soup left it: begun, and so far given `received` bytes.
struct Stream {
    id: u64,
    total: u64,
    received: u64,
}

/// The bytes written so far, and the streams the receiver should hold open.
struct Writer<'a> {
    limits: &'a ReceiveLimits,
    wire: Vec<u8>,
    open: Vec<Stream>,
    /// Streams given up with a valid `STREAM_ABORT`: a chunk for one is `UnknownStream`.
    aborted: Vec<Stream>,
    next_id: u64,
    /// Largest message payload and stream total drawn, a little above the limits.
    message_cap: u16,
    stream_cap: u16,
}

impl<'a> Writer<'a> {
    fn new(limits: &'a ReceiveLimits) -> Self {
        // Sizes mostly within the limits, some above them.
        let above = |limit: u64| (limit + limit / 16 + 1).min(2048) as u16;
        Self {
            limits,
            wire: Vec::new(),
            open: Vec::new(),
            aborted: Vec::new(),
            next_id: 0,
            message_cap: above(limits.max_frame_payload.min(limits.max_message_size)),
            stream_cap: above(limits.max_message_size),
        }
    }

    /// A message, stream-begin or chunk frame.
    fn message_or_stream(&mut self, frame: &SoupFrame, index: usize) {
        let limits = self.limits;
        let reserved: u64 = self.open.iter().map(|stream| stream.total).sum();
        let at_limit = [
            limits.max_message_size,
            limits.max_frame_payload,
            limits.reassembly_budget.saturating_sub(reserved),
        ][usize::from(frame.pick % 3)];
        // One below, at, or one above.
        let at_limit = (at_limit + u64::from(frame.pick / 3 % 3)).saturating_sub(1);
        let cap = if frame.kind == 0 {
            self.message_cap
        } else {
            self.stream_cap
        };
        let small = u64::from(frame.len % cap);
        let size = match frame.size {
            0..160 => small,
            // Filled in for real only when small, to keep inputs cheap.
            160..192 if at_limit <= 4096 => at_limit,
            160..192 => small,
            _ => u64::from(frame.large_total) % (limits.max_message_size * 9 / 8 + 1),
        };
        // A near-miss chunk now and then goes to a stream given up before.
        let to_aborted = frame.kind == 2
            && (240..248).contains(&frame.honest)
            && frame.pick >= 192
            && !self.aborted.is_empty();
        // An honest chunk needs an open stream; without one it is a message instead.
        let kind = match frame.kind {
            2 if frame.honest < 248 && self.open.is_empty() && !to_aborted => 0,
            kind => kind,
        };
        match kind {
            0 => {
                let len = size.min(4096) as usize;
                put_header(&mut self.wire, 0x01, frame.message_kind, 20 + len);
                put_envelope_fields(&mut self.wire, frame.key.into(), index as u64, 0);
                self.wire
                    .extend_from_slice(&common::payload(len, index as u64));
            }
            1 => {
                let id = if frame.honest < 248 {
                    self.next_id
                } else {
                    u64::from(frame.pick % 8)
                };
                self.next_id = self.next_id.max(id + 1);
                put_header(&mut self.wire, 0x02, frame.message_kind, 36);
                self.wire.extend_from_slice(&id.to_le_bytes());
                put_envelope_fields(&mut self.wire, frame.key.into(), index as u64, 0);
                self.wire.extend_from_slice(&size.to_le_bytes());
                self.open.retain(|stream| stream.id != id);
                if size > 0 {
                    self.open.push(Stream {
                        id,
                        total: size,
                        received: 0,
                    });
                }
            }
            _ => self.chunk(frame, index, size, to_aborted),
        }
    }

    /// A chunk. Honest, it continues an open stream. A near miss is one byte early or late,
    /// one byte too long, empty, or (`to_aborted`) the next piece of a stream given up.
    fn chunk(&mut self, frame: &SoupFrame, index: usize, size: u64, to_aborted: bool) {
        enum Target {
            Open(usize),
            Aborted(usize),
            Any,
        }
        let data_len = size.clamp(1, 4096);
        let target = if to_aborted {
            Target::Aborted(usize::from(frame.pick) % self.aborted.len())
        } else if frame.honest < 248 {
            Target::Open(usize::from(frame.pick) % self.open.len())
        } else {
            Target::Any
        };
        let (id, offset, len) = match target {
            Target::Open(i) => {
                let stream = &self.open[i];
                let left = stream.total - stream.received;
                let (offset, len) = match frame.honest {
                    0..240 => (stream.received, data_len.min(left)),
                    _ => match frame.honest % 4 {
                        0 => (stream.received + 1, data_len.min(left)),
                        1 => (stream.received.saturating_sub(1), data_len.min(left)),
                        2 => (stream.received, left + 1),
                        _ => (stream.received, 0),
                    },
                };
                (stream.id, offset, len)
            }
            Target::Aborted(i) => {
                let stream = &self.aborted[i];
                let left = stream.total - stream.received;
                (stream.id, stream.received, data_len.min(left))
            }
            Target::Any => (
                u64::from(frame.pick % 8),
                u64::from(frame.large_total % 4096),
                data_len,
            ),
        };
        put_header(&mut self.wire, 0x03, 0, 16 + len as usize);
        self.wire.extend_from_slice(&id.to_le_bytes());
        self.wire.extend_from_slice(&offset.to_le_bytes());
        self.wire
            .extend_from_slice(&common::payload(len as usize, index as u64));
        if let Target::Open(i) = target {
            self.open[i].received += len;
            if self.open[i].received >= self.open[i].total {
                self.open.remove(i);
            }
        }
    }

    /// A stream abort, cancel, refuse or close frame.
    ///
    /// Honest, an abort names an open stream (without one it is a cancel instead) and a
    /// reason is UTF-8 of at most 256 bytes. A near miss, by `honest % 8`:
    /// 0. a payload on an abort or cancel, a reason of 257 bytes or more;
    /// 1. a header claiming far more than that, the rest never sent;
    /// 2. an abort of a stream aborted before, a reason with a byte that is never UTF-8;
    /// 3. an abort of a stream never begun, a reason ending inside a character;
    /// 4. a flag bit set;
    /// 5. a body shorter than the fixed fields;
    /// 6. keeps the rules, with a reason of exactly 256 bytes;
    /// 7. keeps the rules, with an empty reason.
    fn control(&mut self, frame: &SoupFrame, index: usize) {
        let miss = (240..248)
            .contains(&frame.honest)
            .then_some(frame.honest % 8);
        let honest = frame.honest < 240 || matches!(miss, Some(6 | 7));
        let kind = match [0x04, 0x11, 0x12, 0x13][usize::from(frame.control % 4)] {
            0x04 if honest && self.open.is_empty() => 0x11,
            kind => kind,
        };
        let len = usize::from(frame.len);
        let code = u32::from(frame.len % 6);

        let mut body = Vec::new();
        match kind {
            0x04 => {
                let id = match miss {
                    Some(2) => self
                        .aborted
                        .get(usize::from(frame.pick) % self.aborted.len().max(1))
                        .map_or(self.next_id, |stream| stream.id),
                    Some(3) => self.next_id + u64::from(frame.pick % 4),
                    _ if frame.honest >= 248 || self.open.is_empty() => u64::from(frame.pick % 8),
                    _ => self.open[usize::from(frame.pick) % self.open.len()].id,
                };
                body.extend_from_slice(&id.to_le_bytes());
                body.extend_from_slice(&code.to_le_bytes());
                // A well-formed abort of an open stream frees it.
                if !matches!(miss, Some(0 | 1 | 4 | 5)) {
                    if let Some(at) = self.open.iter().position(|stream| stream.id == id) {
                        self.aborted.push(self.open.remove(at));
                    }
                }
            }
            0x11 => body.extend_from_slice(&(index as u64).to_le_bytes()),
            0x12 => {
                body.extend_from_slice(&(index as u64).to_le_bytes());
                body.extend_from_slice(&code.to_le_bytes());
            }
            _ => body.extend_from_slice(&code.to_le_bytes()),
        }
        let fields_len = body.len();

        if matches!(kind, 0x12 | 0x13) {
            let reason = match miss {
                Some(0) => reason(MAX_REASON_LEN + 1 + len % 16, index),
                Some(2) => {
                    let mut reason = reason(1 + len % MAX_REASON_LEN, index);
                    let at = usize::from(frame.pick) % reason.len();
                    reason[at] = 0xff;
                    reason
                }
                // The first byte of a three-byte character, and nothing after it.
                Some(3) => [reason(len % MAX_REASON_LEN, index), vec![0xe2]].concat(),
                Some(6) => reason(MAX_REASON_LEN, index),
                Some(7) => Vec::new(),
                _ => reason(len % (MAX_REASON_LEN + 1), index),
            };
            body.extend_from_slice(&reason);
        } else if miss == Some(0) {
            body.extend_from_slice(&common::payload(1 + len % 8, index as u64));
        }

        let mut flags = 0;
        let mut body_len = body.len();
        match miss {
            Some(1) => {
                body_len = fields_len + MAX_REASON_LEN + 1 + len * 512;
                body.truncate(fields_len);
            }
            Some(4) => flags = 1 << (frame.pick % 8),
            Some(5) => {
                body_len = len % fields_len;
                body.truncate(body_len);
            }
            _ => {}
        }
        put_header(&mut self.wire, kind, flags, body_len);
        self.wire.extend_from_slice(&body);
    }
}

/// A UTF-8 text of exactly `len` bytes, of characters one to four bytes long, drawn from
/// `seed`.
fn reason(len: usize, seed: usize) -> Vec<u8> {
    const CHARACTERS: [&str; 6] = ["a", "é", "€", "𝄞", " ", "Z"];
    let mut text = String::with_capacity(len);
    let mut state = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while text.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let character = CHARACTERS[(state % CHARACTERS.len() as u64) as usize];
        if text.len() + character.len() <= len {
            text.push_str(character);
        } else {
            text.push('.');
        }
    }
    text.into_bytes()
}

fn put_header(wire: &mut Vec<u8>, kind: u8, flags: u8, body_len: usize) {
    wire.extend_from_slice(&[kind, flags, 0, 0]);
    wire.extend_from_slice(&(body_len as u32).to_le_bytes());
}

fn put_envelope_fields(wire: &mut Vec<u8>, key: u64, correlation_id: u64, type_hash: u32) {
    wire.extend_from_slice(&key.to_le_bytes());
    wire.extend_from_slice(&correlation_id.to_le_bytes());
    wire.extend_from_slice(&type_hash.to_le_bytes());
}
