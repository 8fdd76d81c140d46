//! The ring: small messages copied in as whole frames, both lanes in one allocation.

use crate::config::{BufferConfig, ConnectionConfig};
use crate::frame::{self, CRC_LEN, FRAME_HEADER_LEN, FrameHeader, MESSAGE_HEADER_LEN};
use crate::message::{MessageKind, Outgoing};

use super::lane_index;

/// Ring frames of both lanes in one allocation, in the order they were accepted, so that
/// frames leave in that order whatever their lane. Each lane's use is counted against its own
/// [`BufferConfig`].
///
/// Frames lie whole and contiguous, so a frame is written with two copies into place, its
/// header is read back with plain loads, and a run of frames goes out as one slice. The
/// live frames are `bytes[head..]`. Once the ring is empty it starts again at the front; when
/// a frame does not fit behind the end, the live frames move to the front first. The
/// allocation is the two lanes' sizes plus the larger of them, which is what makes that move
/// always leave room: the live bytes plus the new frame never exceed the two lanes' sizes,
/// and between two moves at least the larger lane's size is written, so moving costs at
/// most one extra copy of each byte and usually none.
#[derive(Debug)]
pub(super) struct Ring {
    /// Frames accepted, from `head` on. Never grows past the capacity reserved at the start.
    bytes: Vec<u8>,
    /// Where the first frame not yet written starts.
    head: usize,
    /// Whether each frame ends with a CRC32C trailer.
    crc32c: bool,
    /// Bytes per lane accepted and not yet written.
    pub(super) used: [usize; 2],
    /// Bytes after `head` already in the plan.
    planned: usize,
    /// Bytes ever pushed and ever planned; a stream opens only once every ring frame accepted
    /// before it is planned, which keeps per-key order when a key moves from ring to stream.
    pub(super) pushed_total: u64,
    pub(super) planned_total: u64,
}

impl Ring {
    pub(super) fn new(config: &ConnectionConfig, crc32c: bool) -> Self {
        let tell = config.tell_buffer_config().ring_buffer_size();
        let ask = config.ask_buffer_config().ring_buffer_size();
        Self {
            bytes: Vec::with_capacity(tell + ask + tell.max(ask)),
            head: 0,
            crc32c,
            used: [0; 2],
            planned: 0,
            pushed_total: 0,
            planned_total: 0,
        }
    }

    pub(super) fn has_unplanned(&self) -> bool {
        self.head + self.planned < self.bytes.len()
    }

    pub(super) fn trailer_len(&self) -> usize {
        if self.crc32c { CRC_LEN } else { 0 }
    }

    /// Copies the message in as one frame if its lane has room.
    pub(super) fn try_push(&mut self, message: &Outgoing, lane_config: BufferConfig) -> bool {
        let lane = lane_index(message.envelope.lane());
        let payload = &message.payload[..];
        let frame_len = MESSAGE_HEADER_LEN + payload.len() + self.trailer_len();
        if self.used[lane] + frame_len > lane_config.ring_buffer_size() {
            return false;
        }
        if self.bytes.len() + frame_len > self.bytes.capacity() {
            // Move the live frames to the front. They and this frame fit in the two lanes'
            // sizes, which is less than the capacity: the vector does not reallocate.
            self.bytes.drain(..self.head);
            self.head = 0;
        }
        let header = frame::encode_message_header(&message.envelope, payload.len());
        self.bytes.extend_from_slice(&header);
        self.bytes.extend_from_slice(payload);
        if self.crc32c {
            let crc = crc32c::crc32c_append(crc32c::crc32c(&header), payload);
            self.bytes.extend_from_slice(&crc.to_le_bytes());
        }
        self.used[lane] += frame_len;
        self.pushed_total += frame_len as u64;
        true
    }

    /// Takes whole unplanned frames, at least one, until about `quantum` bytes.
    pub(super) fn plan_run(&mut self, quantum: usize) -> Option<RingRun> {
        let start = self.head + self.planned;
        let unplanned = &self.bytes[start..];
        let trailer = self.trailer_len();
        let mut run = RingRun::default();
        while run.len < unplanned.len() && run.len < quantum {
            let head: &[u8; FRAME_HEADER_LEN] = unplanned[run.len..run.len + FRAME_HEADER_LEN]
                .try_into()
                .expect("a whole header");
            let body_len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
            let frame_len = FRAME_HEADER_LEN + body_len + trailer;
            let kind = MessageKind::from_wire(head[1]).unwrap_or(MessageKind::Tell);
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

    /// The frames not yet written, planned ones first, in the order they were accepted.
    pub(super) fn live(&self) -> &[u8] {
        &self.bytes[self.head..]
    }

    /// Drops a fully written run from the front and gives its lanes back their room. Runs
    /// are released in the order they were planned.
    pub(super) fn release(&mut self, run: &RingRun) {
        self.head += run.len;
        self.planned -= run.len;
        for (used, freed) in self.used.iter_mut().zip(run.lane_bytes) {
            *used -= freed;
        }
        if self.head == self.bytes.len() {
            self.bytes.clear();
            self.head = 0;
        }
    }

    /// Takes out every frame that does not lie within the first `written` bytes, as the
    /// messages they hold, and empties the ring.
    pub(super) fn take_unsent(&mut self, written: usize) -> Vec<Outgoing> {
        let mut unsent = Vec::new();
        let live = &self.bytes[self.head..];
        let mut at = 0;
        while at < live.len() {
            let head = &live[at..at + MESSAGE_HEADER_LEN];
            let header = FrameHeader::decode(&head[..FRAME_HEADER_LEN])
                .expect("the ring holds frames this sender encoded");
            let frame_len = FRAME_HEADER_LEN + header.body_len as usize + self.trailer_len();
            if at + frame_len > written {
                let envelope = frame::decode_message_fields(&header, &head[FRAME_HEADER_LEN..])
                    .expect("the ring holds frames this sender encoded");
                let payload_at = at + MESSAGE_HEADER_LEN;
                let payload = live[payload_at..payload_at + header.payload_len()].to_vec();
                unsent.push(Outgoing::new(envelope, payload));
            }
            at += frame_len;
        }
        self.bytes.clear();
        self.head = 0;
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
