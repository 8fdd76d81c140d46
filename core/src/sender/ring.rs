//! The ring: small messages copied in as whole frames, both lanes in one allocation.

use std::collections::VecDeque;

use crate::config::{BufferConfig, ConnectionConfig};
use crate::frame::{self, CRC_LEN, FRAME_HEADER_LEN, FrameHeader, MESSAGE_HEADER_LEN};
use crate::message::{MessageKind, Outgoing};

use super::lane_index;

/// The bytes `[offset, offset + len)` of a ring whose contents are `front` then `back`.
pub(super) fn ring_range<'a>(
    front: &'a [u8],
    back: &'a [u8],
    offset: usize,
    len: usize,
) -> [&'a [u8]; 2] {
    if offset >= front.len() {
        let start = offset - front.len();
        [&back[start..start + len], &[]]
    } else {
        let first = len.min(front.len() - offset);
        [&front[offset..offset + first], &back[..len - first]]
    }
}

/// Ring frames of both lanes in one allocation, in the order they were accepted, so that
/// frames leave in that order whatever their lane. Each lane's use is counted against its own
/// [`BufferConfig`], so the allocation (the sum of both sizes) can never overflow.
#[derive(Debug)]
pub(super) struct Ring {
    pub(super) bytes: VecDeque<u8>,
    /// Whether each frame ends with a CRC32C trailer.
    crc32c: bool,
    /// Bytes per lane accepted and not yet written.
    pub(super) used: [usize; 2],
    /// Bytes at the front of `bytes` already in the plan.
    pub(super) planned: usize,
    /// Bytes ever pushed and ever planned; a stream opens only once every ring frame accepted
    /// before it is planned, which keeps per-key order when a key moves from ring to stream.
    pub(super) pushed_total: u64,
    pub(super) planned_total: u64,
}

impl Ring {
    pub(super) fn new(config: &ConnectionConfig, crc32c: bool) -> Self {
        let capacity = config.tell_buffer_config().ring_buffer_size()
            + config.ask_buffer_config().ring_buffer_size();
        let mut bytes = VecDeque::new();
        bytes.reserve_exact(capacity);
        Self {
            bytes,
            crc32c,
            used: [0; 2],
            planned: 0,
            pushed_total: 0,
            planned_total: 0,
        }
    }

    pub(super) fn has_unplanned(&self) -> bool {
        self.planned < self.bytes.len()
    }

    pub(super) fn trailer_len(&self) -> usize {
        if self.crc32c { CRC_LEN } else { 0 }
    }

    /// Copies the message in as one frame if its lane has room.
    pub(super) fn try_push(&mut self, message: &Outgoing, lane_config: BufferConfig) -> bool {
        let lane = lane_index(message.envelope.lane());
        let frame_len = MESSAGE_HEADER_LEN + message.payload.len() + self.trailer_len();
        if self.used[lane] + frame_len > lane_config.ring_buffer_size() {
            return false;
        }
        let header = frame::encode_message_header(&message.envelope, message.payload.len());
        self.bytes.extend(&header);
        self.bytes.extend(&message.payload[..]);
        if self.crc32c {
            let crc = crc32c::crc32c_append(crc32c::crc32c(&header), &message.payload);
            self.bytes.extend(&crc.to_le_bytes());
        }
        self.used[lane] += frame_len;
        self.pushed_total += frame_len as u64;
        true
    }

    /// Takes whole unplanned frames, at least one, until about `quantum` bytes.
    pub(super) fn plan_run(&mut self, quantum: usize) -> Option<RingRun> {
        let mut run = RingRun::default();
        while self.planned + run.len < self.bytes.len() && run.len < quantum {
            let at = self.planned + run.len;
            let flags = self.bytes[at + 1];
            let body_len = u32::from_le_bytes([
                self.bytes[at + 4],
                self.bytes[at + 5],
                self.bytes[at + 6],
                self.bytes[at + 7],
            ]) as usize;
            let frame_len = FRAME_HEADER_LEN + body_len + self.trailer_len();
            let kind = MessageKind::from_wire(flags).unwrap_or(MessageKind::Tell);
            run.lane_bytes[lane_index(kind.lane())] += frame_len;
            run.len += frame_len;
        }
        if run.len == 0 {
            return None;
        }
        self.planned += run.len;
        self.planned_total += run.len as u64;
        Some(run)
    }

    /// Drops a fully written run from the front and gives its lanes back their room.
    pub(super) fn release(&mut self, run: &RingRun) {
        self.bytes.drain(..run.len);
        self.planned -= run.len;
        for (used, freed) in self.used.iter_mut().zip(run.lane_bytes) {
            *used -= freed;
        }
    }

    /// Takes out every frame that does not lie within the first `written` bytes, as the
    /// messages they hold, and empties the ring.
    pub(super) fn take_unsent(&mut self, written: usize) -> Vec<Outgoing> {
        let mut unsent = Vec::new();
        let mut at = 0;
        while at < self.bytes.len() {
            let head: Vec<u8> = self
                .bytes
                .range(at..at + MESSAGE_HEADER_LEN)
                .copied()
                .collect();
            let header = FrameHeader::decode(&head[..FRAME_HEADER_LEN])
                .expect("the ring holds frames this sender encoded");
            let frame_len = FRAME_HEADER_LEN + header.body_len as usize + self.trailer_len();
            if at + frame_len > written {
                let envelope = frame::decode_message_fields(&header, &head[FRAME_HEADER_LEN..])
                    .expect("the ring holds frames this sender encoded");
                let payload_at = at + MESSAGE_HEADER_LEN;
                let payload: Vec<u8> = self
                    .bytes
                    .range(payload_at..payload_at + header.payload_len())
                    .copied()
                    .collect();
                unsent.push(Outgoing::new(envelope, payload));
            }
            at += frame_len;
        }
        self.bytes.clear();
        self.planned = 0;
        self.used = [0; 2];
        // Everything accepted counts as planned now, so streams and connection frames that
        // wait for earlier ring frames are not left waiting for bytes that will never come.
        self.planned_total = self.pushed_total;
        unsent
    }
}

/// Whole ring frames planned together.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RingRun {
    /// Bytes of the run.
    pub(super) len: usize,
    /// Bytes of the run already written. The run stays in the ring until it is all written,
    /// so that the frames not yet out can still be read back if the connection is lost.
    pub(super) written: usize,
    /// Bytes of the run per lane, given back to the lanes once the run is written.
    pub(super) lane_bytes: [usize; 2],
}
