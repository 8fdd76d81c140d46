//! The sending half: routes each message to its lane's ring or to a chunked stream, and
//! schedules the output bytes.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tracing::debug;

use crate::config::{BufferConfig, ConnectionConfig, ReceiveLimits};
use crate::error::SendError;
use crate::frame::{
    self, BEGIN_FRAME_LEN, CHUNK_HEADER_LEN, CRC_LEN, ChunkFields, FRAME_HEADER_LEN,
    MESSAGE_HEADER_LEN, StreamBegin,
};
use crate::handshake::Negotiated;
use crate::message::{Envelope, Lane, MessageKind, Outgoing, Route};
use crate::metrics::SendMetrics;

/// Segments planned for output at once. Small enough to scan on every call, large enough to
/// fill a vectored write with several chunks and ring runs.
const PLAN_CAPACITY: usize = 32;
/// A stream-begin frame with its trailer and the header of its first chunk fit together in
/// one inline segment.
const INLINE_CAPACITY: usize = BEGIN_FRAME_LEN + CRC_LEN + CHUNK_HEADER_LEN;

/// The sans-IO sending half of a connection.
///
/// Methods come in three kinds, in this order below: getters, [`send`](Self::send) to hand
/// over a message, and the output pair [`transmit`](Self::transmit) and
/// [`advance`](Self::advance).
///
/// Small messages are copied into the lane's ring buffer, large ones are queued as streams
/// whose chunks are sliced from the caller's [`Bytes`] without a copy. The output interleaves
/// ring runs and chunks of different streams, so no stream holds up small messages.
///
/// ```
/// use bytes::BytesMut;
/// use ringwire_core::{ConnectionConfig, Envelope, Outgoing, Receiver, Route, Sender};
///
/// let config = ConnectionConfig::default();
/// let mut sender = Sender::new(&config);
/// let mut receiver = Receiver::new(&config);
///
/// let route = sender.send(Outgoing::new(Envelope::tell(7), &b"hello"[..])).unwrap();
/// assert_eq!(route, Route::Ring);
///
/// // In place of a socket, copy the output into the receiver's input buffer.
/// let mut wire = Vec::new();
/// while sender.transmit_into(&mut wire, usize::MAX) > 0 {}
/// let mut input = BytesMut::from(&wire[..]);
/// let message = receiver.decode(&mut input).unwrap().unwrap();
/// assert_eq!(&message.payload[..], b"hello");
/// assert_eq!(message.envelope.key, 7);
/// ```
#[derive(Debug)]
pub struct Sender {
    config: ConnectionConfig,
    peer: ReceiveLimits,
    /// Whether every frame ends with a CRC32C trailer.
    crc32c: bool,
    ring: Ring,
    streams: StreamQueue,
    /// Output decided but not yet written, in wire order.
    plan: VecDeque<Segment>,
    /// Bytes in `plan` not yet written.
    plan_bytes: usize,
    /// Whose turn it is to plan the next segment, so ring runs and chunks alternate.
    ring_turn: bool,
    metrics: SendMetrics,
}

impl Sender {
    /// A sender that assumes the peer enforces the same limits as `config`.
    pub fn new(config: &ConnectionConfig) -> Self {
        Self::with_peer_limits(config, config.receive_limits())
    }

    /// A sender that keeps within the limits the peer announced.
    pub fn with_peer_limits(config: &ConnectionConfig, peer: ReceiveLimits) -> Self {
        Self::build(config, peer, false)
    }

    /// A sender for what the handshake agreed: the peer's limits, and a CRC32C trailer on
    /// every frame if both sides asked for it.
    pub fn from_handshake(config: &ConnectionConfig, agreed: &Negotiated) -> Self {
        Self::build(config, agreed.peer_limits, agreed.crc32c)
    }

    fn build(config: &ConnectionConfig, peer: ReceiveLimits, crc32c: bool) -> Self {
        Self {
            config: *config,
            peer,
            crc32c,
            ring: Ring::new(config, crc32c),
            streams: StreamQueue::new(config.max_queued_streams()),
            plan: VecDeque::with_capacity(PLAN_CAPACITY),
            plan_bytes: 0,
            ring_turn: true,
            metrics: SendMetrics::default(),
        }
    }

    /// The configuration this sender was built with.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// Payloads up to this size on `lane` go through the ring; larger ones stream.
    ///
    /// It is the lane's [`BufferConfig::streaming_threshold`], lowered to the largest ring
    /// frame the peer accepts if that is smaller.
    pub fn streaming_threshold(&self, lane: Lane) -> usize {
        let own = self.buffer_config(lane).streaming_threshold();
        own.min(usize::try_from(self.peer.max_frame_payload).unwrap_or(usize::MAX))
    }

    /// The largest payload the peer accepts.
    pub fn max_message_size(&self) -> u64 {
        self.peer.max_message_size
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> SendMetrics {
        self.metrics
    }

    /// Whether anything is waiting to be written.
    pub fn has_output(&self) -> bool {
        !self.plan.is_empty() || self.ring.has_unplanned() || !self.streams.is_empty()
    }

    /// Bytes of ring frames accepted on `lane` and not yet written.
    pub fn ring_bytes_in_use(&self, lane: Lane) -> usize {
        self.ring.used[lane_index(lane)]
    }

    /// Accepts a message and decides its route.
    ///
    /// A payload up to [`streaming_threshold`](Self::streaming_threshold) is copied into the
    /// lane's ring as one frame. A larger payload, or one that does not fit in the ring, or one
    /// whose key already has a stream waiting, is queued as a stream without copying.
    ///
    /// # Errors
    ///
    /// Nothing is queued when this fails, and the message is handed back inside the error.
    /// [`SendError::TooLarge`] if the payload is larger than the peer accepts;
    /// [`SendError::Full`] if the stream queue is full as well as the ring: write output with
    /// [`transmit`](Self::transmit) and [`advance`](Self::advance), then send again.
    pub fn send(&mut self, message: Outgoing) -> Result<Route, SendError> {
        let size = message.payload.len();
        let limit = self.peer.max_message_size;
        if size as u64 > limit {
            self.metrics.oversize_rejections += 1;
            return Err(SendError::TooLarge {
                size: size as u64,
                limit,
                message,
            });
        }

        let lane = message.envelope.lane();
        let threshold = self.streaming_threshold(lane);
        let reason = if size > threshold {
            StreamReason::AboveThreshold
        } else if self.streams.has_key(message.envelope.key) {
            // A ring frame would overtake the earlier stream of the same key.
            StreamReason::OrderedBehindStream
        } else if self.ring.try_push(&message, self.buffer_config(lane)) {
            self.metrics.ring_sends += 1;
            self.metrics.ring_bytes += size as u64;
            self.note_size(size);
            debug!(size, ?lane, threshold, route = "ring", "routed message");
            return Ok(Route::Ring);
        } else {
            self.metrics.ring_full_events += 1;
            StreamReason::RingFull
        };

        if !self.streams.has_room(size, &self.config) {
            self.metrics.backpressure_refusals += 1;
            debug!(
                size,
                ?lane,
                threshold,
                "refused message: ring and stream queue full"
            );
            return Err(SendError::Full { message });
        }
        self.streams.push(message, self.ring.pushed_total);
        match reason {
            StreamReason::RingFull => self.metrics.streaming_fallbacks += 1,
            StreamReason::OrderedBehindStream => self.metrics.ordered_behind_stream += 1,
            StreamReason::AboveThreshold => {}
        }
        self.metrics.streaming_sends += 1;
        self.metrics.streaming_bytes += size as u64;
        self.note_size(size);
        debug!(
            size,
            ?lane,
            threshold,
            route = "stream",
            reason = reason.as_str(),
            "routed message"
        );
        Ok(Route::Stream)
    }

    /// Fills `dst` with the next output bytes, in order, and returns how many slices it used.
    /// Zero means there is nothing to write.
    ///
    /// Write the slices (a vectored write suits them), then report how many bytes were
    /// written with [`advance`](Self::advance): a short write is fine, the rest comes again.
    pub fn transmit<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        self.fill_plan();

        let this: &'a Self = self;
        let (front, back) = this.ring.bytes.as_slices();
        let mut ring_offset = 0;
        let mut used = 0;
        for segment in &this.plan {
            let parts: [&'a [u8]; 2] = match segment {
                Segment::Ring(run) => {
                    let parts = ring_range(front, back, ring_offset, run.len);
                    ring_offset += run.len;
                    parts
                }
                Segment::Inline(inline) => [&inline.buf[inline.start..inline.end], &[]],
                Segment::Data(data) => [&data[..], &[]],
            };
            for part in parts.into_iter().filter(|part| !part.is_empty()) {
                if used == dst.len() {
                    return used;
                }
                dst[used] = IoSlice::new(part);
                used += 1;
            }
        }
        used
    }

    /// Reports that the first `written` bytes offered by [`transmit`](Self::transmit) reached
    /// the wire.
    ///
    /// # Panics
    ///
    /// If `written` is more than the bytes last offered by `transmit`.
    pub fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let segment = self
                .plan
                .front_mut()
                .expect("advance() past the bytes offered by transmit()");
            let (taken, done) = match segment {
                Segment::Ring(run) => {
                    let taken = run.len.min(written);
                    self.ring.consume(taken);
                    run.len -= taken;
                    if run.len == 0 {
                        self.ring.release(run);
                    }
                    (taken, run.len == 0)
                }
                Segment::Inline(inline) => {
                    let taken = (inline.end - inline.start).min(written);
                    inline.start += taken;
                    (taken, inline.start == inline.end)
                }
                Segment::Data(data) => {
                    let taken = data.len().min(written);
                    data.advance(taken);
                    (taken, data.is_empty())
                }
            };
            if done {
                self.plan.pop_front();
            }
            self.plan_bytes -= taken;
            written -= taken;
        }
    }

    /// Copies up to `max` output bytes to the end of `dst` and marks them written; returns
    /// how many. A convenience for tests and in-memory use; sockets want
    /// [`transmit`](Self::transmit), which does not copy.
    pub fn transmit_into(&mut self, dst: &mut Vec<u8>, max: usize) -> usize {
        let mut slices = [IoSlice::new(&[]); PLAN_CAPACITY + 1];
        let count = self.transmit(&mut slices);
        let mut copied = 0;
        for slice in &slices[..count] {
            let take = slice.len().min(max - copied);
            dst.extend_from_slice(&slice[..take]);
            copied += take;
            if copied == max {
                break;
            }
        }
        self.advance(copied);
        copied
    }

    fn buffer_config(&self, lane: Lane) -> BufferConfig {
        match lane {
            Lane::Tell => self.config.tell_buffer_config(),
            Lane::Ask => self.config.ask_buffer_config(),
        }
    }

    fn note_size(&mut self, size: usize) {
        self.metrics.largest_message = self.metrics.largest_message.max(size as u64);
    }

    /// Plans output until about one chunk is planned or nothing more can go, alternating
    /// between a run of ring frames and one stream chunk.
    ///
    /// Planning little ahead is what bounds head-of-line delay: a message accepted now waits
    /// only for what is already planned.
    fn fill_plan(&mut self) {
        // A chunk takes up to three segments: inline headers, data and trailer.
        while self.plan.len() + 3 <= PLAN_CAPACITY && self.plan_bytes < self.config.chunk_size() {
            // After a stream chunk the ring goes first, so a frame accepted now leaves right
            // after what is already planned.
            let planned = if self.ring_turn && self.plan_ring() {
                self.ring_turn = false;
                true
            } else if self.plan_stream() {
                self.ring_turn = true;
                true
            } else {
                self.plan_ring()
            };
            if !planned {
                break;
            }
        }
    }

    /// Plans a run of whole ring frames of about one chunk's size.
    fn plan_ring(&mut self) -> bool {
        match self.ring.plan_run(self.config.chunk_size()) {
            Some(run) => {
                self.plan_bytes += run.len;
                self.plan.push_back(Segment::Ring(run));
                true
            }
            None => false,
        }
    }

    /// Plans the next chunk of the next stream in turn, opening it first if needed.
    fn plan_stream(&mut self) -> bool {
        let Some(index) = self.streams.next_ready(self.ring.planned_total, &self.peer) else {
            return false;
        };
        let mut inline = Inline::default();
        let stream = &mut self.streams.queue[index];
        let id = match stream.id {
            Some(id) => id,
            None => {
                let id = self.streams.open(index);
                let stream = &self.streams.queue[index];
                let begin = StreamBegin {
                    stream_id: id,
                    envelope: stream.envelope,
                    total_len: stream.total_len,
                };
                let frame = inline.reserve(BEGIN_FRAME_LEN);
                frame::encode_begin(&begin, frame);
                if self.crc32c {
                    let crc = crc32c::crc32c(frame);
                    inline.reserve(CRC_LEN).copy_from_slice(&crc.to_le_bytes());
                }
                id
            }
        };

        let stream = &mut self.streams.queue[index];
        let data_len = stream.rest.len().min(self.config.chunk_size());
        if data_len > 0 {
            let fields = ChunkFields {
                stream_id: id,
                offset: stream.total_len - stream.rest.len() as u64,
            };
            let header = inline.reserve(CHUNK_HEADER_LEN);
            frame::encode_chunk_header(&fields, data_len, header);
            let crc = self.crc32c.then(|| crc32c::crc32c(header));
            let data = stream.rest.split_to(data_len);
            self.plan_bytes += inline.end + data_len;
            if let Some(crc) = crc {
                let mut trailer = Inline::default();
                let crc = crc32c::crc32c_append(crc, &data);
                trailer.reserve(CRC_LEN).copy_from_slice(&crc.to_le_bytes());
                self.plan_bytes += CRC_LEN;
                self.plan.push_back(Segment::Inline(inline));
                self.plan.push_back(Segment::Data(data));
                self.plan.push_back(Segment::Inline(trailer));
            } else {
                self.plan.push_back(Segment::Inline(inline));
                self.plan.push_back(Segment::Data(data));
            }
        } else {
            self.plan_bytes += inline.end;
            self.plan.push_back(Segment::Inline(inline));
        }
        self.streams.queued_bytes -= data_len as u64;
        if self.streams.queue[index].rest.is_empty() {
            self.streams.finish(index);
        }
        true
    }
}

/// Why a message goes by stream.
#[derive(Clone, Copy, Debug)]
enum StreamReason {
    AboveThreshold,
    RingFull,
    OrderedBehindStream,
}

impl StreamReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::AboveThreshold => "above threshold",
            Self::RingFull => "ring full",
            Self::OrderedBehindStream => "behind a stream with the same key",
        }
    }
}

const fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Tell => 0,
        Lane::Ask => 1,
    }
}

/// The bytes `[offset, offset + len)` of a ring whose contents are `front` then `back`.
fn ring_range<'a>(front: &'a [u8], back: &'a [u8], offset: usize, len: usize) -> [&'a [u8]; 2] {
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
struct Ring {
    bytes: VecDeque<u8>,
    /// Whether each frame ends with a CRC32C trailer.
    crc32c: bool,
    /// Bytes per lane accepted and not yet written.
    used: [usize; 2],
    /// Bytes at the front of `bytes` already in the plan.
    planned: usize,
    /// Bytes ever pushed and ever planned; a stream opens only once every ring frame accepted
    /// before it is planned, which keeps per-key order when a key moves from ring to stream.
    pushed_total: u64,
    planned_total: u64,
}

impl Ring {
    fn new(config: &ConnectionConfig, crc32c: bool) -> Self {
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

    fn has_unplanned(&self) -> bool {
        self.planned < self.bytes.len()
    }

    fn trailer_len(&self) -> usize {
        if self.crc32c { CRC_LEN } else { 0 }
    }

    /// Copies the message in as one frame if its lane has room.
    fn try_push(&mut self, message: &Outgoing, lane_config: BufferConfig) -> bool {
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
    fn plan_run(&mut self, quantum: usize) -> Option<RingRun> {
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

    /// Drops `n` written bytes from the front.
    fn consume(&mut self, n: usize) {
        self.bytes.drain(..n);
        self.planned -= n;
    }

    /// Gives the lanes back the room of a fully written run.
    fn release(&mut self, run: &RingRun) {
        for (used, freed) in self.used.iter_mut().zip(run.lane_bytes) {
            *used -= freed;
        }
    }
}

/// Whole ring frames planned together.
#[derive(Clone, Copy, Debug, Default)]
struct RingRun {
    /// Bytes of the run not yet written.
    len: usize,
    /// Bytes of the run per lane, given back to the lanes once the run is written.
    lane_bytes: [usize; 2],
}

/// Streams waiting or in progress, in the order they were accepted.
#[derive(Debug)]
struct StreamQueue {
    queue: VecDeque<OutStream>,
    /// Payload bytes not yet planned.
    queued_bytes: u64,
    /// Streams per key not yet fully planned; a key present here keeps later messages of
    /// the same key off the ring.
    per_key: HashMap<u64, u32>,
    /// Streams opened and not yet fully planned, and their total length: what the peer is
    /// holding for them.
    open: u32,
    open_bytes: u64,
    next_id: u64,
    /// Where the round-robin over streams goes on.
    cursor: usize,
}

#[derive(Debug)]
struct OutStream {
    envelope: Envelope,
    total_len: u64,
    /// The part of the payload not yet planned.
    rest: Bytes,
    /// Set when the stream-begin frame is planned.
    id: Option<u64>,
    /// The stream may open once this many ring bytes have been planned.
    ring_mark: u64,
    /// An earlier stream with the same key is not fully planned yet.
    waits_for_key: bool,
}

impl StreamQueue {
    fn new(max_streams: usize) -> Self {
        Self {
            queue: VecDeque::with_capacity(max_streams.min(1024)),
            queued_bytes: 0,
            per_key: HashMap::new(),
            open: 0,
            open_bytes: 0,
            next_id: 0,
            cursor: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn has_key(&self, key: u64) -> bool {
        !self.per_key.is_empty() && self.per_key.contains_key(&key)
    }

    /// Whether a payload of `size` bytes may join the queue. One message larger than the
    /// byte bound still goes when nothing else waits, so every allowed size can be sent.
    fn has_room(&self, size: usize, config: &ConnectionConfig) -> bool {
        self.queue.len() < config.max_queued_streams()
            && (self.queued_bytes == 0
                || self.queued_bytes + size as u64 <= config.max_queued_stream_bytes())
    }

    fn push(&mut self, message: Outgoing, ring_mark: u64) {
        let count = self.per_key.entry(message.envelope.key).or_insert(0);
        let waits_for_key = *count > 0;
        *count += 1;
        self.queued_bytes += message.payload.len() as u64;
        self.queue.push_back(OutStream {
            envelope: message.envelope,
            total_len: message.payload.len() as u64,
            rest: message.payload,
            id: None,
            ring_mark,
            waits_for_key,
        });
    }

    /// The stream to plan next: open streams take turns; a stream that is not open yet takes
    /// its turn only if it is the first that may open, which keeps opening in FIFO order.
    fn next_ready(&mut self, ring_planned_total: u64, peer: &ReceiveLimits) -> Option<usize> {
        let len = self.queue.len();
        if len == 0 {
            return None;
        }
        let opener = self
            .queue
            .iter()
            .position(|s| s.id.is_none() && !s.waits_for_key)
            .filter(|&i| {
                let s = &self.queue[i];
                s.ring_mark <= ring_planned_total
                    && self.open < peer.max_inbound_streams
                    && self.open_bytes + s.total_len <= peer.reassembly_budget
            });
        let start = self.cursor % len;
        let index = (0..len)
            .map(|step| (start + step) % len)
            .find(|&i| self.queue[i].id.is_some() || Some(i) == opener)?;
        self.cursor = index + 1;
        Some(index)
    }

    fn open(&mut self, index: usize) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let stream = &mut self.queue[index];
        stream.id = Some(id);
        self.open += 1;
        self.open_bytes += stream.total_len;
        id
    }

    /// Removes a fully planned stream and lets the next stream of its key go.
    fn finish(&mut self, index: usize) {
        let Some(stream) = self.queue.remove(index) else {
            return;
        };
        self.open -= 1;
        self.open_bytes -= stream.total_len;
        if index < self.cursor {
            self.cursor -= 1;
        }
        let key = stream.envelope.key;
        let remaining = self.per_key.get_mut(&key).map(|count| {
            *count -= 1;
            *count
        });
        if remaining == Some(0) {
            self.per_key.remove(&key);
        } else if let Some(next) = self
            .queue
            .iter_mut()
            .find(|s| s.envelope.key == key && s.waits_for_key)
        {
            next.waits_for_key = false;
        }
    }
}

/// One piece of planned output.
#[derive(Debug)]
enum Segment {
    /// The next bytes of the ring.
    Ring(RingRun),
    /// Stream frame headers.
    Inline(Inline),
    /// A chunk's data, sliced from the caller's payload.
    Data(Bytes),
}

/// A few header bytes held in place, without allocating.
#[derive(Debug)]
struct Inline {
    buf: [u8; INLINE_CAPACITY],
    start: usize,
    end: usize,
}

impl Default for Inline {
    fn default() -> Self {
        Self {
            buf: [0; INLINE_CAPACITY],
            start: 0,
            end: 0,
        }
    }
}

impl Inline {
    /// The next `len` bytes, to be written.
    fn reserve(&mut self, len: usize) -> &mut [u8] {
        let at = self.end;
        self.end += len;
        &mut self.buf[at..self.end]
    }
}
