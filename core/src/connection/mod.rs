//! The connection: handshake, then a sender and a receiver joined by asks, replies,
//! deadlines, cancels and a graceful close.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::IoSlice;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tracing::{debug, warn};

use crate::config::ConnectionConfig;
use crate::error::SendError;
use crate::frame::{Control, MAX_REASON_LEN};
use crate::handshake::{HELLO_FRAME_LEN, Hello, Negotiated};
use crate::message::{Envelope, Lane, MessageKind, Outgoing, Route};
use crate::metrics::{AskMetrics, Metrics};
use crate::receiver::{ChunkSpace, Inbound, Receiver};
use crate::sender::{Sender, copy_out};

mod types;

pub use types::{AskError, ConnectionError, ConnectionState, Event, RefuseCode};

/// The sender and receiver, built once the handshake has agreed their settings.
#[derive(Debug)]
struct Link {
    agreed: Negotiated,
    sender: Sender,
    receiver: Receiver,
}

/// A ringwire connection as a state machine: bytes in, bytes out, events for the user, and
/// the time passed in. No sockets, no clock.
///
/// Methods, in order below: getters; `handle_*` for input; commands (`tell`, `ask`, `reply`,
/// `refuse`, `cancel_ask`, `close`); `poll_*`, `transmit` and `advance` for output.
///
/// Every deadline (an ask's, and the close's
/// [`close_timeout`](ConnectionConfig::close_timeout)) is kept against the `now` passed in,
/// and fires only in [`handle_timeout`](Self::handle_timeout) (which
/// [`handle_input`](Self::handle_input) calls first); [`poll_timeout`](Self::poll_timeout) says
/// when to call it.
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::BytesMut;
/// use ringwire_core::{Connection, ConnectionConfig, Event};
///
/// let config = ConnectionConfig::default();
/// let (mut a, mut b) = (Connection::new(config, false), Connection::new(config, false));
/// let now = Instant::now();
///
/// // Move bytes both ways until nothing moves: the handshake.
/// let (mut a_in, mut b_in) = (BytesMut::new(), BytesMut::new());
/// for _ in 0..2 {
///     let mut wire = Vec::new();
///     while a.transmit_into(&mut wire, usize::MAX) > 0 {}
///     b_in.extend_from_slice(&wire);
///     wire.clear();
///     while b.transmit_into(&mut wire, usize::MAX) > 0 {}
///     a_in.extend_from_slice(&wire);
///     a.handle_input(&mut a_in, now).unwrap();
///     b.handle_input(&mut b_in, now).unwrap();
/// }
/// assert!(matches!(a.poll_event(), Some(Event::Connected(_))));
///
/// let id = a.ask(7, 0, &b"ping"[..], now + Duration::from_secs(1)).unwrap();
/// let mut wire = Vec::new();
/// while a.transmit_into(&mut wire, usize::MAX) > 0 {}
/// b_in.extend_from_slice(&wire);
/// b.handle_input(&mut b_in, now).unwrap();
/// assert!(matches!(b.poll_event(), Some(Event::Connected(_))));
/// let Some(Event::Ask(ask)) = b.poll_event() else { panic!("no ask") };
/// assert_eq!(ask.envelope.correlation_id, id);
/// b.reply(id, 0, &b"pong"[..]).unwrap();
/// ```
#[derive(Debug)]
pub struct Connection {
    config: ConnectionConfig,
    hello: Hello,
    state: ConnectionState,
    /// This side's `HELLO` and how much of it is written.
    hello_bytes: [u8; HELLO_FRAME_LEN],
    hello_written: usize,
    link: Option<Link>,
    events: VecDeque<Event>,
    asks: Asks,
    close: CloseProgress,
    metrics: AskMetrics,
}

/// Asks in both directions.
#[derive(Debug, Default)]
struct Asks {
    /// The next correlation id; ids start at 1 and are never reused on a connection.
    next_id: u64,
    /// This side's asks awaiting a reply, with their deadlines.
    outgoing: HashMap<u64, Instant>,
    /// The same deadlines, soonest first. Entries of asks that ended are skipped when met.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// The peer's asks handed out and not yet answered, with their keys.
    incoming: HashMap<u64, u64>,
}

#[derive(Debug, Default)]
struct CloseProgress {
    /// Code and reason of this side's `CLOSE`, once closing.
    ours: Option<(u32, Bytes)>,
    /// This side's `CLOSE` has been queued behind every accepted message.
    queued: bool,
    /// ... and written.
    written: bool,
    /// The peer's `CLOSE` has arrived.
    received: bool,
    /// When this side gives up waiting for the close to complete; set when it starts closing.
    deadline: Option<Instant>,
}

impl Connection {
    /// A connection that will announce the limits of `config`, and ask for a CRC32C trailer on
    /// every frame if `crc32c`. Its `HELLO` is the first output.
    pub fn new(config: ConnectionConfig, crc32c: bool) -> Self {
        let hello = Hello::new(config.receive_limits(), crc32c);
        Self {
            config,
            hello,
            state: ConnectionState::Handshaking,
            hello_bytes: hello.encode(),
            hello_written: 0,
            link: None,
            events: VecDeque::new(),
            asks: Asks {
                next_id: 1,
                ..Asks::default()
            },
            close: CloseProgress::default(),
            metrics: AskMetrics::default(),
        }
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// What the handshake agreed, once it is done.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.link.as_ref().map(|link| &link.agreed)
    }

    /// Payloads up to this size on `lane` go through the ring; larger ones stream. Before the
    /// handshake, this side's own threshold; after, lowered to what the peer accepts in one
    /// frame if that is smaller.
    pub fn streaming_threshold(&self, lane: Lane) -> usize {
        match &self.link {
            Some(link) => link.sender.streaming_threshold(lane),
            None => match lane {
                Lane::Tell => self.config.tell_buffer_config().streaming_threshold(),
                Lane::Ask => self.config.ask_buffer_config().streaming_threshold(),
            },
        }
    }

    /// A snapshot of every counter.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            send: self
                .link
                .as_ref()
                .map(|l| l.sender.metrics())
                .unwrap_or_default(),
            receive: self
                .link
                .as_ref()
                .map(|l| l.receiver.metrics())
                .unwrap_or_default(),
            asks: self.metrics,
        }
    }

    /// Asks of this side awaiting a reply.
    pub fn pending_asks(&self) -> usize {
        self.asks.outgoing.len()
    }

    /// Takes input from the front of `src`: the peer's `HELLO`, then frames. Complete
    /// messages and other news become events. `now` is the current time.
    ///
    /// # Errors
    ///
    /// A [`ConnectionError`] if the handshake fails or the peer breaks the protocol. The
    /// connection is then closed: pending asks fail, unsent messages are handed back as
    /// events, and nothing more should be read or written.
    pub fn handle_input(
        &mut self,
        src: &mut BytesMut,
        now: Instant,
    ) -> Result<(), ConnectionError> {
        // A deadline is a promise: an ask past it fails even if its reply is in `src`.
        self.handle_timeout(now);
        let result = self.read(src, now);
        if let Err(error) = &result {
            warn!(%error, "connection failed");
            self.fail_all(AskError::ConnectionLost);
        }
        result
    }

    /// Room to read the rest of an inbound chunk's data into directly, once `src` is
    /// drained: see [`Receiver::chunk_space`]. After [`ChunkSpace::fill`], call
    /// [`handle_input`](Self::handle_input) as usual.
    pub fn chunk_space(&mut self, src: &BytesMut, max: usize) -> Option<ChunkSpace<'_>> {
        match (&mut self.link, self.state) {
            (_, ConnectionState::Closed) | (None, _) => None,
            (Some(link), _) => link.receiver.chunk_space(src, max),
        }
    }

    /// Lets time pass: asks whose deadline is `now` or earlier fail, and the peer is told to
    /// drop them. A close still under way when its deadline is `now` or earlier is given up:
    /// an [`Event::CloseTimedOut`], then pending asks fail with [`AskError::CloseTimedOut`],
    /// accepted messages not completely written come back in an [`Event::Unsent`], and the
    /// connection is closed, not cleanly.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_asks(now);
        if self.close.deadline.is_some_and(|deadline| deadline <= now) {
            warn!(
                timeout = ?self.config.close_timeout(),
                peer_close_received = self.close.received,
                close_written = self.close.written,
                "the close did not complete in time; giving up the connection"
            );
            self.events.push_back(Event::CloseTimedOut);
            self.fail_all(AskError::CloseTimedOut);
        }
    }

    /// Fails the asks whose deadline is `now` or earlier, and tells the peer to drop them.
    fn expire_asks(&mut self, now: Instant) {
        while let Some(&Reverse((deadline, id))) = self.asks.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.asks.deadlines.pop();
            if self.asks.outgoing.get(&id) == Some(&deadline) {
                self.asks.outgoing.remove(&id);
                self.metrics.expired += 1;
                debug!(correlation_id = id, "ask deadline passed");
                self.withdraw_ask(id);
                self.events.push_back(Event::AskFailed {
                    correlation_id: id,
                    error: AskError::DeadlineExceeded,
                });
            }
        }
    }

    /// The transport is gone. Pending asks fail with [`AskError::ConnectionLost`], accepted
    /// messages not completely written come back in an [`Event::Unsent`], partial inbound
    /// messages are freed, and the connection is closed.
    pub fn handle_connection_lost(&mut self) {
        self.fail_all(AskError::ConnectionLost);
    }

    /// Sends a one-way message to `key`.
    ///
    /// # Errors
    ///
    /// The message comes back inside the error: [`SendError::NotOpen`] before the handshake
    /// or after close, or what [`Sender::send`] refuses.
    pub fn tell(
        &mut self,
        key: u64,
        type_hash: u32,
        payload: impl Into<Bytes>,
    ) -> Result<Route, SendError> {
        let envelope = Envelope {
            kind: MessageKind::Tell,
            key,
            type_hash,
            correlation_id: 0,
        };
        self.send(Outgoing::new(envelope, payload))
    }

    /// Sends a request to `key` and returns its correlation id. The reply comes as an
    /// [`Event::Reply`] with that id, or the ask fails with an [`Event::AskFailed`], at the
    /// latest once `deadline` has passed and [`handle_timeout`](Self::handle_timeout) has been
    /// called.
    ///
    /// # Errors
    ///
    /// As [`tell`](Self::tell); a refused ask leaves nothing pending.
    pub fn ask(
        &mut self,
        key: u64,
        type_hash: u32,
        payload: impl Into<Bytes>,
        deadline: Instant,
    ) -> Result<u64, SendError> {
        let id = self.asks.next_id;
        let envelope = Envelope {
            kind: MessageKind::Ask,
            key,
            type_hash,
            correlation_id: id,
        };
        self.send(Outgoing::new(envelope, payload))?;
        self.asks.next_id += 1;
        self.asks.outgoing.insert(id, deadline);
        self.asks.deadlines.push(Reverse((deadline, id)));
        self.metrics.sent += 1;
        Ok(id)
    }

    /// Answers the peer's ask `correlation_id`.
    ///
    /// # Errors
    ///
    /// [`SendError::NoSuchAsk`] if the ask was already answered or refused, or the peer
    /// cancelled it (an [`Event::AskCancelled`] said so): the reply is not needed. Otherwise
    /// as [`tell`](Self::tell); the ask then stays open, to answer again.
    pub fn reply(
        &mut self,
        correlation_id: u64,
        type_hash: u32,
        payload: impl Into<Bytes>,
    ) -> Result<Route, SendError> {
        let payload = payload.into();
        let Some(key) = self.asks.incoming.remove(&correlation_id) else {
            let envelope = Envelope {
                kind: MessageKind::Reply,
                key: 0,
                type_hash,
                correlation_id,
            };
            return Err(SendError::NoSuchAsk {
                message: Outgoing::new(envelope, payload),
            });
        };
        let envelope = Envelope {
            kind: MessageKind::Reply,
            key,
            type_hash,
            correlation_id,
        };
        self.send(Outgoing::new(envelope, payload))
            .inspect_err(|_| {
                self.asks.incoming.insert(correlation_id, key);
            })
    }

    /// Refuses the peer's ask `correlation_id`: the asker's ask fails with `code` and
    /// `reason` (cut to 256 bytes). Returns whether the ask was open.
    pub fn refuse(&mut self, correlation_id: u64, code: RefuseCode, reason: &str) -> bool {
        if self.asks.incoming.remove(&correlation_id).is_none() {
            return false;
        }
        if let Some(link) = &mut self.link {
            link.sender.send_control(Control::Refuse {
                correlation_id,
                code: code.to_wire(),
                reason: reason_bytes(reason),
            });
        }
        true
    }

    /// Gives up this side's ask `correlation_id`: no event will come for it, the peer is told
    /// to drop it, and a request still being streamed is aborted. Returns whether the ask was
    /// pending.
    pub fn cancel_ask(&mut self, correlation_id: u64) -> bool {
        if self.asks.outgoing.remove(&correlation_id).is_none() {
            return false;
        }
        self.metrics.cancelled += 1;
        self.withdraw_ask(correlation_id);
        true
    }

    /// Starts a graceful close at `now`: no new message is accepted, every accepted one is
    /// written, then a `CLOSE` frame. The connection is closed once the peer's `CLOSE` has
    /// arrived too; an [`Event::Closed`] says so.
    ///
    /// If that has not happened by `now` plus the configured
    /// [`close_timeout`](ConnectionConfig::close_timeout), the close is given up at the next
    /// [`handle_timeout`](Self::handle_timeout) (see there); [`poll_timeout`](Self::poll_timeout)
    /// includes the deadline. Calling `close` again, or after the peer's `CLOSE` started the
    /// close, changes nothing, the deadline included.
    pub fn close(&mut self, reason: &str, now: Instant) {
        if matches!(self.state, ConnectionState::Closed) || self.close.ours.is_some() {
            return;
        }
        self.close.ours = Some((0, reason_bytes(reason)));
        if self.state == ConnectionState::Handshaking {
            // Nothing was accepted and the peer cannot be told: end here, not cleanly.
            self.finish(false);
            return;
        }
        self.start_closing(now);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if ever: the
    /// earliest deadline of a pending ask or of a close under way.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop the entries of asks that ended, so the earliest left is a live one.
        let mut ask = None;
        while let Some(&Reverse((deadline, id))) = self.asks.deadlines.peek() {
            if self.asks.outgoing.get(&id) == Some(&deadline) {
                ask = Some(deadline);
                break;
            }
            self.asks.deadlines.pop();
        }
        match (ask, self.close.deadline) {
            (Some(ask), Some(close)) => Some(ask.min(close)),
            (ask, close) => ask.or(close),
        }
    }

    /// Whether anything is waiting to be written.
    pub fn has_output(&self) -> bool {
        self.hello_written < HELLO_FRAME_LEN
            || self
                .link
                .as_ref()
                .is_some_and(|link| link.sender.has_output())
    }

    /// Fills `dst` with the next output bytes and returns how many slices it used; see
    /// [`Sender::transmit`].
    pub fn transmit<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        if dst.is_empty() || self.state == ConnectionState::Closed {
            return 0;
        }
        if self.hello_written < HELLO_FRAME_LEN {
            dst[0] = IoSlice::new(&self.hello_bytes[self.hello_written..]);
            return 1;
        }
        match &mut self.link {
            Some(link) => link.sender.transmit(dst),
            None => 0,
        }
    }

    /// Reports that the first `written` bytes offered by [`transmit`](Self::transmit) were
    /// written.
    ///
    /// # Panics
    ///
    /// If `written` is more than the bytes last offered.
    pub fn advance(&mut self, mut written: usize) {
        if self.hello_written < HELLO_FRAME_LEN {
            let taken = written.min(HELLO_FRAME_LEN - self.hello_written);
            self.hello_written += taken;
            written -= taken;
        }
        if written == 0 {
            return;
        }
        let link = self
            .link
            .as_mut()
            .expect("advance() past the bytes offered");
        link.sender.advance(written);
        if self.close.queued {
            if !link.sender.has_output() {
                self.close.written = true;
                self.try_finish_close();
            }
        } else if self.state == ConnectionState::Closing {
            self.queue_close_when_drained();
        }
    }

    /// Copies up to `max` output bytes to the end of `dst` and marks them written; returns how
    /// many. For tests and in-memory use.
    pub fn transmit_into(&mut self, dst: &mut Vec<u8>, max: usize) -> usize {
        let mut slices = [IoSlice::new(&[]); 40];
        let count = self.transmit(&mut slices);
        let copied = copy_out(&slices[..count], dst, max);
        self.advance(copied);
        copied
    }

    fn send(&mut self, message: Outgoing) -> Result<Route, SendError> {
        match (&mut self.link, self.state) {
            (Some(link), ConnectionState::Open) => link.sender.send(message),
            _ => Err(SendError::NotOpen { message }),
        }
    }

    fn read(&mut self, src: &mut BytesMut, now: Instant) -> Result<(), ConnectionError> {
        if self.state == ConnectionState::Closed {
            return Ok(());
        }
        if self.link.is_none() {
            let Some((peer, len)) = Hello::decode(src)? else {
                return Ok(());
            };
            src.advance(len);
            let agreed = self.hello.negotiate(&peer)?;
            debug!(
                version = agreed.version,
                crc32c = agreed.crc32c,
                "handshake done"
            );
            self.link = Some(Link {
                agreed,
                sender: Sender::from_handshake(&self.config, &agreed),
                receiver: Receiver::from_handshake(&self.config, &agreed),
            });
            if self.state == ConnectionState::Handshaking {
                self.state = ConnectionState::Open;
            }
            self.events.push_back(Event::Connected(agreed));
        }
        loop {
            let link = self.link.as_mut().expect("set above");
            let Some(inbound) = link.receiver.decode_frame(src)? else {
                return Ok(());
            };
            self.dispatch(inbound, now);
        }
    }

    fn dispatch(&mut self, inbound: Inbound, now: Instant) {
        match inbound {
            Inbound::Message(message) => match message.envelope.kind {
                MessageKind::Tell => self.events.push_back(Event::Tell(message)),
                MessageKind::Ask => {
                    let envelope = message.envelope;
                    self.asks
                        .incoming
                        .insert(envelope.correlation_id, envelope.key);
                    self.events.push_back(Event::Ask(message));
                }
                MessageKind::Reply => {
                    let id = message.envelope.correlation_id;
                    if self.asks.outgoing.remove(&id).is_some() {
                        self.metrics.answered += 1;
                        self.events.push_back(Event::Reply(message));
                    } else {
                        self.metrics.late_replies += 1;
                        debug!(correlation_id = id, "discarded a reply to no pending ask");
                    }
                }
            },
            Inbound::StreamAborted { envelope, code } => {
                debug!(?envelope, code, "peer aborted a stream");
            }
            Inbound::Cancel { correlation_id } => {
                // A reply may already be streaming: stop it whether or not the ask is open.
                if let Some(link) = &mut self.link {
                    let code = RefuseCode::Cancelled.to_wire();
                    link.sender.abort(MessageKind::Reply, correlation_id, code);
                }
                if self.asks.incoming.remove(&correlation_id).is_some() {
                    self.events
                        .push_back(Event::AskCancelled { correlation_id });
                }
            }
            Inbound::Refuse {
                correlation_id,
                code,
                reason,
            } => {
                if self.asks.outgoing.remove(&correlation_id).is_some() {
                    self.metrics.refused += 1;
                    self.events.push_back(Event::AskFailed {
                        correlation_id,
                        error: AskError::Refused {
                            code: RefuseCode::from_wire(code),
                            reason,
                        },
                    });
                } else {
                    self.metrics.late_replies += 1;
                }
            }
            Inbound::Close { code, reason } => {
                debug!(code, %reason, "peer is closing");
                self.close.received = true;
                // The peer starts nothing new, so no reply will come.
                for (correlation_id, _) in self.asks.outgoing.drain() {
                    self.events.push_back(Event::AskFailed {
                        correlation_id,
                        error: AskError::Closed,
                    });
                }
                self.asks.incoming.clear();
                if self.close.ours.is_none() {
                    self.close.ours = Some((0, Bytes::new()));
                    self.start_closing(now);
                } else {
                    self.queue_close_when_drained();
                }
                self.try_finish_close();
            }
        }
    }

    /// Tells the peer to drop the ask `id` and aborts it if it is still being streamed.
    fn withdraw_ask(&mut self, id: u64) {
        if let Some(link) = &mut self.link {
            link.sender
                .abort(MessageKind::Ask, id, RefuseCode::Cancelled.to_wire());
            link.sender
                .send_control(Control::Cancel { correlation_id: id });
        }
    }

    /// Enters `Closing` at `now`, with the close's deadline, and queues this side's `CLOSE`
    /// if nothing is left to write before it.
    fn start_closing(&mut self, now: Instant) {
        self.state = ConnectionState::Closing;
        self.close.deadline = Some(now + self.config.close_timeout());
        self.queue_close_when_drained();
    }

    /// Queues this side's `CLOSE` once every accepted message is planned, so it goes last.
    fn queue_close_when_drained(&mut self) {
        let Some(link) = &mut self.link else {
            return;
        };
        if self.close.queued || link.sender.has_output() {
            return;
        }
        let (code, reason) = self.close.ours.clone().expect("closing");
        link.sender.send_control(Control::Close { code, reason });
        self.close.queued = true;
    }

    fn try_finish_close(&mut self) {
        if self.close.written && self.close.received {
            self.finish(true);
        }
    }

    /// Fails every pending ask, hands back unsent messages, frees partial inbound messages
    /// and closes.
    fn fail_all(&mut self, error: AskError) {
        if self.state == ConnectionState::Closed {
            return;
        }
        for (correlation_id, _) in self.asks.outgoing.drain() {
            self.events.push_back(Event::AskFailed {
                correlation_id,
                error: error.clone(),
            });
        }
        if let Some(link) = &mut self.link {
            let unsent = link.sender.take_unsent();
            if !unsent.is_empty() {
                self.events.push_back(Event::Unsent(unsent));
            }
            link.receiver.abandon_streams();
        }
        self.finish(false);
    }

    fn finish(&mut self, clean: bool) {
        self.state = ConnectionState::Closed;
        self.asks.incoming.clear();
        self.asks.deadlines.clear();
        self.close.deadline = None;
        self.events.push_back(Event::Closed { clean });
    }
}

fn reason_bytes(reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Bytes::copy_from_slice(&reason.as_bytes()[..end])
}
