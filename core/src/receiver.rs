//! The receiving half: decodes frames from bytes split anywhere and reassembles streams
//! within the configured limits.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};
use tracing::warn;

use crate::config::{ConnectionConfig, ReceiveLimits};
use crate::error::ProtocolError;
use crate::frame::{
    self, CRC_LEN, Control, FRAME_HEADER_LEN, FrameHeader, FrameKind, MAX_REASON_LEN,
};
use crate::handshake::Negotiated;
use crate::message::{Envelope, Incoming, Route};
use crate::metrics::ReceiveMetrics;

/// The sans-IO receiving half of a connection.
///
/// Append input to a [`BytesMut`] and call [`decode`](Self::decode) until it returns
/// `Ok(None)`. Input may be split anywhere, down to one byte at a time.
///
/// Every length is checked against [`ReceiveLimits`] before any memory is set aside for it,
/// and a stream's buffer grows with the data that actually arrives, never with the length the
/// peer claims. A message is handed out only when it is complete.
///
/// ```
/// use bytes::BytesMut;
/// use ringwire_core::{ConnectionConfig, ProtocolError, Receiver};
///
/// let mut receiver = Receiver::new(&ConnectionConfig::default());
/// // A frame of kind 0x7f does not exist.
/// let mut input = BytesMut::from(&[0x7f, 0, 0, 0, 0, 0, 0, 0][..]);
/// assert_eq!(
///     receiver.decode(&mut input),
///     Err(ProtocolError::UnknownFrameKind { code: 0x7f })
/// );
/// ```
#[derive(Debug)]
pub struct Receiver {
    limits: ReceiveLimits,
    /// Whether every frame ends with a CRC32C trailer.
    crc32c: bool,
    state: DecodeState,
    streams: HashMap<u64, InStream>,
    last_stream_id: Option<u64>,
    /// Set by the first protocol error; every later call returns it again.
    failed: Option<ProtocolError>,
    metrics: ReceiveMetrics,
}

/// Where the decoder stands between calls.
#[derive(Clone, Copy, Debug)]
enum DecodeState {
    /// Waiting for a frame header and the frame's fixed fields.
    Head,
    /// Inside a chunk's data: this many bytes of stream `id` are still to come. `crc` runs
    /// over the chunk so far (header included) when trailers are on.
    ChunkData { id: u64, remaining: usize, crc: u32 },
    /// After a chunk's data: its trailer, if trailers are on, then the check for completion.
    ChunkEnd { id: u64, crc: u32 },
}

#[derive(Debug)]
struct InStream {
    envelope: Envelope,
    total_len: u64,
    /// Grown as data arrives; never beyond `total_len`.
    data: Vec<u8>,
}

impl Receiver {
    /// A receiver enforcing the receive limits of `config`.
    pub fn new(config: &ConnectionConfig) -> Self {
        Self::with_limits(config.receive_limits())
    }

    /// A receiver enforcing `limits`.
    pub fn with_limits(limits: ReceiveLimits) -> Self {
        Self::build(limits, false)
    }

    /// A receiver for what the handshake agreed: the limits of `config`, and a CRC32C trailer
    /// checked on every frame if both sides asked for it.
    pub fn from_handshake(config: &ConnectionConfig, agreed: &Negotiated) -> Self {
        Self::build(config.receive_limits(), agreed.crc32c)
    }

    fn build(limits: ReceiveLimits, crc32c: bool) -> Self {
        Self {
            limits,
            crc32c,
            state: DecodeState::Head,
            streams: HashMap::new(),
            last_stream_id: None,
            failed: None,
            metrics: ReceiveMetrics::default(),
        }
    }

    /// The limits this receiver enforces.
    pub fn limits(&self) -> &ReceiveLimits {
        &self.limits
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> ReceiveMetrics {
        self.metrics
    }

    /// Streams begun and not yet complete.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Decodes messages from the front of `src`, for a byte stream that carries messages
    /// only, as a bare [`Sender`](crate::Sender) writes.
    ///
    /// Returns `Ok(Some(message))` for each complete message and `Ok(None)` once `src` holds
    /// no complete frame: append more input and call again. Bytes are taken from `src` as
    /// they are used; a partial frame header is left in place.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] when the peer breaks the protocol, including a connection frame
    /// (cancel, refuse, close), which only [`decode_frame`](Self::decode_frame) accepts. The
    /// receiver is then failed: every later call returns the same error, and the connection
    /// should be closed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        match self.decode_frame(src)? {
            None => Ok(None),
            Some(Inbound::Message(message)) => Ok(Some(message)),
            Some(other) => {
                let error = ProtocolError::UnexpectedFrame {
                    code: other.frame_kind() as u8,
                };
                self.fail(&error);
                Err(error)
            }
        }
    }

    /// Decodes the next message or connection frame from the front of `src`.
    ///
    /// Like [`decode`](Self::decode), and also returns the frames a connection acts on. A
    /// `STREAM_ABORT` frees the stream's partial message before it is returned.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] when the peer breaks the protocol; the receiver is then failed.
    #[inline]
    pub fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.decode_inner(src);
        if let Err(error) = &result {
            self.fail(error);
        }
        result
    }

    fn fail(&mut self, error: &ProtocolError) {
        warn!(%error, "peer broke the protocol");
        self.metrics.protocol_errors += 1;
        self.failed = Some(error.clone());
        self.abandon_streams();
    }

    /// Room to read the rest of the current chunk's data into directly, once `src` is
    /// drained; `None` anywhere else.
    ///
    /// Inside a chunk the next bytes on the wire belong to one stream, so a reader can put
    /// them straight into that stream's buffer instead of into `src` and then copying them
    /// again. The room is at most `max` bytes and never more than the chunk has left, so a
    /// read into it cannot take bytes of the next frame. Read into it, then call
    /// [`ChunkSpace::fill`] with the count; then call [`decode`](Self::decode) as usual, which
    /// hands out the message once its last chunk is in.
    ///
    /// The stream's buffer grows here as it would for data in `src`: fourfold, never past
    /// the stream's length. The room is zeroed first, since a read needs initialized bytes.
    pub fn chunk_space(&mut self, src: &BytesMut, max: usize) -> Option<ChunkSpace<'_>> {
        let DecodeState::ChunkData { id, remaining, crc } = self.state else {
            return None;
        };
        if !src.is_empty() || max == 0 || self.failed.is_some() {
            return None;
        }
        let stream = self
            .streams
            .get_mut(&id)
            .expect("a chunk's stream stays open until its data is in");
        let base = stream.data.len();
        let len = remaining.min(max);
        reserve_bounded(&mut stream.data, len, stream.total_len);
        stream.data.resize(base + len, 0);
        Some(ChunkSpace {
            data: &mut stream.data,
            state: &mut self.state,
            crc32c: self.crc32c,
            id,
            remaining,
            crc,
            base,
            kept: 0,
        })
    }

    /// Frees every partial stream, for example when the connection is gone. The reassembly
    /// gauge returns to zero.
    pub fn abandon_streams(&mut self) {
        self.streams.clear();
        self.metrics.reassembly_bytes_in_use = 0;
        self.state = DecodeState::Head;
    }

    fn decode_inner(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, ProtocolError> {
        let trailer = self.trailer_len();
        loop {
            match self.state {
                DecodeState::Head => {
                    if src.len() < FRAME_HEADER_LEN {
                        return Ok(None);
                    }
                    let header = FrameHeader::decode(&src[..FRAME_HEADER_LEN])?;
                    // Checked on the header alone, before waiting for the body.
                    self.check_header(&header)?;
                    let head_len = FRAME_HEADER_LEN + header.kind.fields_len();
                    match header.kind {
                        FrameKind::Message => {
                            let frame_len = FRAME_HEADER_LEN + header.body_len as usize;
                            if src.len() < frame_len + trailer {
                                return Ok(None);
                            }
                            if trailer > 0 {
                                self.verify(&header, &src[..frame_len + trailer])?;
                            }
                            let fields = &src[FRAME_HEADER_LEN..head_len];
                            let envelope = frame::decode_message_fields(&header, fields)?;
                            // One split for the whole frame; skipping the header of a `Bytes`
                            // is cheaper than advancing the input past it.
                            let mut payload = src.split_to(frame_len).freeze();
                            payload.advance(head_len);
                            if trailer > 0 {
                                src.advance(trailer);
                            }
                            let message = self.deliver(envelope, payload, Route::Ring);
                            return Ok(Some(Inbound::Message(message)));
                        }
                        FrameKind::StreamBegin => {
                            if src.len() < head_len + trailer {
                                return Ok(None);
                            }
                            self.verify(&header, &src[..head_len + trailer])?;
                            let fields = &src[FRAME_HEADER_LEN..head_len];
                            let begin = frame::decode_begin_fields(&header, fields)?;
                            src.advance(head_len + trailer);
                            if let Some(message) = self.begin_stream(begin)? {
                                return Ok(Some(Inbound::Message(message)));
                            }
                        }
                        FrameKind::StreamChunk => {
                            if src.len() < head_len {
                                return Ok(None);
                            }
                            let fields = frame::decode_chunk_fields(&src[FRAME_HEADER_LEN..]);
                            let data_len = header.payload_len();
                            self.check_chunk(fields, data_len)?;
                            let crc = if trailer > 0 {
                                crc32c::crc32c(&src[..head_len])
                            } else {
                                0
                            };
                            src.advance(head_len);
                            self.state = DecodeState::ChunkData {
                                id: fields.stream_id,
                                remaining: data_len,
                                crc,
                            };
                        }
                        FrameKind::StreamAbort
                        | FrameKind::Cancel
                        | FrameKind::Refuse
                        | FrameKind::Close => {
                            let frame_len = FRAME_HEADER_LEN + header.body_len as usize;
                            if src.len() < frame_len + trailer {
                                return Ok(None);
                            }
                            self.verify(&header, &src[..frame_len + trailer])?;
                            let fields = src[FRAME_HEADER_LEN..head_len].to_vec();
                            src.advance(head_len);
                            let reason = src.split_to(header.payload_len()).freeze();
                            src.advance(trailer);
                            let control = Control::decode(header.kind, &fields, reason)
                                .expect("a connection frame kind");
                            return self.handle_control(control).map(Some);
                        }
                    }
                }
                DecodeState::ChunkData { id, remaining, crc } => {
                    if src.is_empty() {
                        return Ok(None);
                    }
                    let take = remaining.min(src.len());
                    let stream = self
                        .streams
                        .get_mut(&id)
                        .expect("a chunk's stream stays open until its data is in");
                    let data = &src[..take];
                    let crc = if trailer > 0 {
                        crc32c::crc32c_append(crc, data)
                    } else {
                        crc
                    };
                    append_bounded(&mut stream.data, data, stream.total_len);
                    src.advance(take);
                    self.state = if take < remaining {
                        DecodeState::ChunkData {
                            id,
                            remaining: remaining - take,
                            crc,
                        }
                    } else {
                        DecodeState::ChunkEnd { id, crc }
                    };
                }
                DecodeState::ChunkEnd { id, crc } => {
                    if src.len() < trailer {
                        return Ok(None);
                    }
                    if trailer > 0 {
                        check_crc(FrameKind::StreamChunk, crc, &src[..trailer])?;
                        src.advance(trailer);
                    }
                    self.state = DecodeState::Head;
                    let complete = self
                        .streams
                        .get(&id)
                        .is_some_and(|stream| stream.data.len() as u64 == stream.total_len);
                    if complete {
                        let stream = self.streams.remove(&id).expect("present above");
                        self.metrics.reassembly_bytes_in_use -= stream.total_len;
                        let payload = Bytes::from(stream.data);
                        let message = self.deliver(stream.envelope, payload, Route::Stream);
                        return Ok(Some(Inbound::Message(message)));
                    }
                }
            }
        }
    }

    fn trailer_len(&self) -> usize {
        if self.crc32c { CRC_LEN } else { 0 }
    }

    /// Checks the CRC32C trailer at the end of `frame`, if trailers are on.
    fn verify(&self, header: &FrameHeader, frame: &[u8]) -> Result<(), ProtocolError> {
        if !self.crc32c {
            return Ok(());
        }
        let (covered, trailer) = frame.split_at(frame.len() - CRC_LEN);
        check_crc(header.kind, crc32c::crc32c(covered), trailer)
    }

    /// Turns a connection frame into what the caller sees, freeing an aborted stream.
    fn handle_control(&mut self, control: Control) -> Result<Inbound, ProtocolError> {
        Ok(match control {
            Control::StreamAbort { stream_id, code } => {
                let stream = self
                    .streams
                    .remove(&stream_id)
                    .ok_or(ProtocolError::UnknownStream { id: stream_id })?;
                self.metrics.reassembly_bytes_in_use -= stream.total_len;
                Inbound::StreamAborted {
                    envelope: stream.envelope,
                    code,
                }
            }
            Control::Cancel { correlation_id } => Inbound::Cancel { correlation_id },
            Control::Refuse {
                correlation_id,
                code,
                reason,
            } => Inbound::Refuse {
                correlation_id,
                code,
                reason: reason_text(&reason)?,
            },
            Control::Close { code, reason } => Inbound::Close {
                code,
                reason: reason_text(&reason)?,
            },
        })
    }

    fn check_header(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let payload_len = header.payload_len() as u64;
        match header.kind {
            FrameKind::Refuse | FrameKind::Close if payload_len > MAX_REASON_LEN as u64 => {
                Err(ProtocolError::ReasonTooLong {
                    len: payload_len,
                    limit: MAX_REASON_LEN as u64,
                })
            }
            FrameKind::StreamAbort | FrameKind::Cancel if payload_len != 0 => {
                Err(ProtocolError::ReasonTooLong {
                    len: payload_len,
                    limit: 0,
                })
            }
            FrameKind::Message if payload_len > self.limits.max_message_size => {
                Err(ProtocolError::MessageTooLarge {
                    size: payload_len,
                    limit: self.limits.max_message_size,
                })
            }
            FrameKind::Message if payload_len > self.limits.max_frame_payload => {
                Err(ProtocolError::FrameTooLarge {
                    len: payload_len,
                    limit: self.limits.max_frame_payload,
                })
            }
            FrameKind::StreamBegin if payload_len != 0 => Err(ProtocolError::BeginWithPayload {
                extra: payload_len as u32,
            }),
            _ => Ok(()),
        }
    }

    /// Opens a stream after checking it against every limit. A stream of length zero is
    /// complete at once and returned.
    fn begin_stream(
        &mut self,
        begin: frame::StreamBegin,
    ) -> Result<Option<Incoming>, ProtocolError> {
        if let Some(previous) = self.last_stream_id {
            if begin.stream_id <= previous {
                return Err(ProtocolError::StreamIdReused {
                    id: begin.stream_id,
                    previous,
                });
            }
        }
        if begin.total_len > self.limits.max_message_size {
            return Err(ProtocolError::MessageTooLarge {
                size: begin.total_len,
                limit: self.limits.max_message_size,
            });
        }
        if self.streams.len() >= self.limits.max_inbound_streams as usize {
            return Err(ProtocolError::TooManyStreams {
                limit: self.limits.max_inbound_streams,
            });
        }
        let in_use = self.metrics.reassembly_bytes_in_use;
        if in_use + begin.total_len > self.limits.reassembly_budget {
            return Err(ProtocolError::ReassemblyBudgetExceeded {
                requested: begin.total_len,
                in_use,
                budget: self.limits.reassembly_budget,
            });
        }
        self.last_stream_id = Some(begin.stream_id);

        if begin.total_len == 0 {
            return Ok(Some(self.deliver(
                begin.envelope,
                Bytes::new(),
                Route::Stream,
            )));
        }
        self.metrics.reassembly_bytes_in_use += begin.total_len;
        self.streams.insert(
            begin.stream_id,
            InStream {
                envelope: begin.envelope,
                total_len: begin.total_len,
                data: Vec::new(),
            },
        );
        Ok(None)
    }

    fn check_chunk(
        &self,
        fields: frame::ChunkFields,
        data_len: usize,
    ) -> Result<(), ProtocolError> {
        let id = fields.stream_id;
        let stream = self
            .streams
            .get(&id)
            .ok_or(ProtocolError::UnknownStream { id })?;
        if data_len == 0 {
            return Err(ProtocolError::EmptyChunk { id });
        }
        let expected = stream.data.len() as u64;
        if fields.offset != expected {
            return Err(ProtocolError::ChunkOutOfOrder {
                id,
                offset: fields.offset,
                expected,
            });
        }
        let end = expected + data_len as u64;
        if end > stream.total_len {
            return Err(ProtocolError::ChunkOverrun {
                id,
                end,
                total: stream.total_len,
            });
        }
        Ok(())
    }

    fn deliver(&mut self, envelope: Envelope, payload: Bytes, route: Route) -> Incoming {
        let size = payload.len() as u64;
        match route {
            Route::Ring => {
                self.metrics.ring_messages += 1;
                self.metrics.ring_bytes += size;
            }
            Route::Stream => {
                self.metrics.stream_messages += 1;
                self.metrics.streaming_bytes += size;
            }
        }
        self.metrics.largest_message = self.metrics.largest_message.max(size);
        Incoming {
            envelope,
            payload,
            route,
        }
    }
}

/// Appends `data`, growing the buffer fourfold but never past `total`, so memory follows
/// the bytes received rather than the length claimed.
fn append_bounded(buf: &mut Vec<u8>, data: &[u8], total: u64) {
    reserve_bounded(buf, data.len(), total);
    buf.extend_from_slice(data);
}

/// Makes room for `additional` more bytes, growing fourfold but never past `total`. Each
/// reallocation copies what arrived so far: growing by four copies at most about 4/3 of a
/// message over its growth where doubling copies up to twice it (5 MiB in 64 KiB chunks: 1.0
/// times against 1.6), for at most four times the bytes received.
fn reserve_bounded(buf: &mut Vec<u8>, additional: usize, total: u64) {
    let needed = buf.len() + additional;
    if needed > buf.capacity() {
        let target = (buf.capacity() * 4).max(needed).min(total as usize);
        buf.reserve_exact(target - buf.len());
    }
}

/// Room in a stream's buffer for the rest of a chunk's data, from
/// [`Receiver::chunk_space`]. It derefs to the bytes to read into.
///
/// Call [`fill`](Self::fill) with the number of bytes read. Dropped without it, nothing was
/// read: the room is taken back and the receiver is as before.
#[derive(Debug)]
pub struct ChunkSpace<'a> {
    data: &'a mut Vec<u8>,
    state: &'a mut DecodeState,
    crc32c: bool,
    id: u64,
    remaining: usize,
    crc: u32,
    /// The buffer's length before the room was added.
    base: usize,
    /// Bytes of the room that hold data.
    kept: usize,
}

impl ChunkSpace<'_> {
    /// Keeps the first `read` bytes of the room as the chunk's next data.
    ///
    /// # Panics
    ///
    /// If `read` is more than the room's length.
    pub fn fill(mut self, read: usize) {
        let room = self.data.len() - self.base;
        assert!(read <= room, "fill({read}) past a room of {room} bytes");
        let data = &self.data[self.base..self.base + read];
        let crc = if self.crc32c {
            crc32c::crc32c_append(self.crc, data)
        } else {
            self.crc
        };
        let (id, remaining) = (self.id, self.remaining - read);
        *self.state = if remaining > 0 {
            DecodeState::ChunkData { id, remaining, crc }
        } else {
            DecodeState::ChunkEnd { id, crc }
        };
        self.kept = read;
    }
}

impl std::ops::Deref for ChunkSpace<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data[self.base..]
    }
}

impl std::ops::DerefMut for ChunkSpace<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.base..]
    }
}

impl Drop for ChunkSpace<'_> {
    fn drop(&mut self) {
        self.data.truncate(self.base + self.kept);
    }
}

/// Compares a computed CRC32C with the trailer received.
fn check_crc(kind: FrameKind, computed: u32, trailer: &[u8]) -> Result<(), ProtocolError> {
    let received = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if computed == received {
        Ok(())
    } else {
        Err(ProtocolError::ChecksumMismatch {
            code: kind as u8,
            received,
            computed,
        })
    }
}

/// A reason text from the peer, which must be UTF-8.
fn reason_text(bytes: &[u8]) -> Result<String, ProtocolError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtocolError::InvalidReason)
}

/// What [`Receiver::decode_frame`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inbound {
    /// A complete message.
    Message(Incoming),
    /// The peer gave up a stream it had begun; its partial message has been freed.
    StreamAborted {
        /// The envelope of the abandoned message.
        envelope: Envelope,
        /// Why, as a refuse code.
        code: u32,
    },
    /// The peer no longer wants the reply to its ask `correlation_id`.
    Cancel {
        /// The ask's correlation id.
        correlation_id: u64,
    },
    /// The peer refused the ask `correlation_id`.
    Refuse {
        /// The ask's correlation id.
        correlation_id: u64,
        /// Why, as a refuse code.
        code: u32,
        /// Why, in words.
        reason: String,
    },
    /// The peer will start no new message.
    Close {
        /// Close code: 0 normal, 1 protocol error, 2 going away.
        code: u32,
        /// Why, in words.
        reason: String,
    },
}

impl Inbound {
    fn frame_kind(&self) -> FrameKind {
        match self {
            Self::Message(message) => match message.route {
                Route::Ring => FrameKind::Message,
                Route::Stream => FrameKind::StreamChunk,
            },
            Self::StreamAborted { .. } => FrameKind::StreamAbort,
            Self::Cancel { .. } => FrameKind::Cancel,
            Self::Refuse { .. } => FrameKind::Refuse,
            Self::Close { .. } => FrameKind::Close,
        }
    }
}
