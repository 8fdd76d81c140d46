//! The sending half: routes each message to its lane's ring or to a chunked stream, and
//! schedules the output bytes.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tracing::debug;

use crate::config::{BufferConfig, ConnectionConfig, ReceiveLimits};
use crate::error::SendError;
use crate::frame::{
    self, BEGIN_FRAME_LEN, CHUNK_HEADER_LEN, CRC_LEN, ChunkFields, Control, MAX_CONTROL_HEAD_LEN,
    StreamBegin,
};
use crate::handshake::Negotiated;
use crate::message::{Lane, MessageKind, Outgoing, Route};
use crate::metrics::SendMetrics;

mod ring;
mod streams;

use ring::{Ring, RingRun};
use streams::StreamQueue;

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
    /// Connection frames waiting to be planned, each with the ring position it must follow.
    controls: VecDeque<(Control, u64)>,
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
            controls: VecDeque::new(),
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
        !self.plan.is_empty()
            || self.ring.has_unplanned()
            || !self.streams.is_empty()
            || !self.controls.is_empty()
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
        self.metrics.stream_bytes_held += size as u64;
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
        // Ring runs lie one after the other from the first unwritten frame.
        let ring = this.ring.live();
        let mut ring_offset = 0;
        let mut used = 0;
        for segment in &this.plan {
            let part: &'a [u8] = match segment {
                Segment::Ring(run) => {
                    let part = &ring[ring_offset + run.written..ring_offset + run.len];
                    ring_offset += run.len;
                    part
                }
                Segment::Inline(inline) => &inline.buf[inline.start..inline.end],
                Segment::Data(data) => &data[..],
                Segment::End(_) => continue,
            };
            if part.is_empty() {
                continue;
            }
            if used == dst.len() {
                return used;
            }
            dst[used] = IoSlice::new(part);
            used += 1;
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
                    let taken = (run.len - run.written).min(written);
                    run.written += taken;
                    let done = run.written == run.len;
                    if done {
                        self.ring.release(run);
                    }
                    (taken, done)
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
                Segment::End(_) => (0, true),
            };
            if done {
                self.pop_segment();
            }
            self.plan_bytes -= taken;
            written -= taken;
        }
        // A stream whose last byte is now written is complete.
        while let Some(Segment::End(_)) = self.plan.front() {
            self.pop_segment();
        }
    }

    /// Drops the first planned segment, which is written; the end of a stream lets go of
    /// its payload.
    fn pop_segment(&mut self) {
        if let Some(Segment::End(message)) = self.plan.pop_front() {
            self.metrics.stream_bytes_held -= message.payload.len() as u64;
        }
    }

    /// Gives up the stream of the ask or reply `correlation_id` of kind `kind`, if it is
    /// still queued: a stream not yet begun is dropped unseen; one begun is ended with a
    /// `STREAM_ABORT` so the peer frees its partial message. Returns whether one was found.
    pub(crate) fn abort(&mut self, kind: MessageKind, correlation_id: u64, code: u32) -> bool {
        let Some(index) = self.streams.find(kind, correlation_id) else {
            return false;
        };
        if let Some(stream) = self.streams.remove(index) {
            self.metrics.stream_bytes_held -= stream.total_len;
            if let Some(stream_id) = stream.id {
                // Ahead of any later stream-begin: the peer must free this stream's
                // reservation before it counts a new one.
                self.controls
                    .push_back((Control::StreamAbort { stream_id, code }, 0));
            }
        }
        true
    }

    /// Queues a connection frame. It goes out before any message not yet planned, except the
    /// ring frames accepted before it, which it follows.
    pub(crate) fn send_control(&mut self, control: Control) {
        self.controls.push_back((control, self.ring.pushed_total));
    }

    /// Takes back every accepted message that is not completely written, and empties the
    /// sender: what is planned, the ring and the stream queue. For a connection that is gone,
    /// so that no accepted message is lost without a word.
    pub fn take_unsent(&mut self) -> Vec<Outgoing> {
        let ring_written = match self.plan.front() {
            Some(Segment::Ring(run)) => run.written,
            _ => 0,
        };
        let mut unsent = self.ring.take_unsent(ring_written);
        for segment in self.plan.drain(..) {
            if let Segment::End(message) = segment {
                unsent.push(message);
            }
        }
        unsent.extend(self.streams.take_all());
        self.plan_bytes = 0;
        self.metrics.stream_bytes_held = 0;
        self.controls.clear();
        unsent
    }

    /// Copies up to `max` output bytes to the end of `dst` and marks them written; returns
    /// how many. A convenience for tests and in-memory use; sockets want
    /// [`transmit`](Self::transmit), which does not copy.
    pub fn transmit_into(&mut self, dst: &mut Vec<u8>, max: usize) -> usize {
        let mut slices = [IoSlice::new(&[]); PLAN_CAPACITY + 1];
        let count = self.transmit(&mut slices);
        let copied = copy_out(&slices[..count], dst, max);
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
        // A chunk takes up to four segments: inline headers, data, trailer and end marker.
        while self.plan.len() + 4 <= PLAN_CAPACITY {
            // Connection frames are small and go first, once the ring frames accepted before
            // them are planned: a cancel never overtakes the ask it cancels.
            let ring_planned = self.ring.planned_total;
            let ready = self
                .controls
                .iter()
                .position(|(_, mark)| *mark <= ring_planned);
            if let Some((control, _)) = ready.and_then(|index| self.controls.remove(index)) {
                self.plan_control(&control);
                continue;
            }
            if self.plan_bytes >= self.config.chunk_size() {
                break;
            }
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
            let stream = self.streams.remove(index).expect("index is in the queue");
            let message = Outgoing::new(stream.envelope, stream.payload);
            self.plan.push_back(Segment::End(message));
        }
        true
    }

    /// Plans a connection frame: header and fields inline, then its reason text, then the
    /// trailer.
    fn plan_control(&mut self, control: &Control) {
        let mut head = Inline::default();
        let len = control.encode_head(head.reserve(MAX_CONTROL_HEAD_LEN));
        head.end = len;
        let reason = control.reason().clone();
        let crc = self
            .crc32c
            .then(|| crc32c::crc32c_append(crc32c::crc32c(&head.buf[..len]), &reason));
        self.plan_bytes += len + reason.len();
        self.plan.push_back(Segment::Inline(head));
        if !reason.is_empty() {
            self.plan.push_back(Segment::Data(reason));
        }
        if let Some(crc) = crc {
            let mut trailer = Inline::default();
            trailer.reserve(CRC_LEN).copy_from_slice(&crc.to_le_bytes());
            self.plan_bytes += CRC_LEN;
            self.plan.push_back(Segment::Inline(trailer));
        }
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

/// Appends up to `max` bytes of `slices` to `dst`, in order, and returns how many.
pub(crate) fn copy_out(slices: &[IoSlice<'_>], dst: &mut Vec<u8>, max: usize) -> usize {
    let mut copied = 0;
    for slice in slices {
        let take = slice.len().min(max - copied);
        dst.extend_from_slice(&slice[..take]);
        copied += take;
        if copied == max {
            break;
        }
    }
    copied
}

const fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Tell => 0,
        Lane::Ask => 1,
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
    /// No bytes: marks where a stream's message is complete, and holds it until then.
    End(Outgoing),
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
