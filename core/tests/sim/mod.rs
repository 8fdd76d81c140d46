//! A simulated pair of connections: a client and a server joined by two in-memory links, with
//! a virtual clock.
//!
//! The core never reads a clock, so time here is a fixed `Instant` plus a `Duration` that the
//! simulation advances. Each [`Link`] carries one direction and can cut writes into pieces of
//! chosen or random sizes, hold bytes back for a latency, stall, and cut the connection at a
//! point of its byte stream.
//!
//! [`Pair::step`] moves what can move once; [`Pair::drive`] steps until nothing moves and no
//! timer is due, jumping the clock to the next timer whenever the pair is idle.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringwire_core::{
    AskError, Connection, ConnectionConfig, ConnectionError, ConnectionState, Event, Incoming,
    Negotiated, Outgoing,
};

/// Steps [`Pair::drive`] allows before it calls the run a livelock.
const DEFAULT_MAX_STEPS: usize = 1_000_000;

/// A client and a server, the links between them, and the virtual clock.
#[derive(Debug)]
pub(crate) struct Pair {
    pub(crate) client: Side,
    pub(crate) server: Side,
    /// Bytes written by the client, read by the server.
    pub(crate) to_server: Link,
    /// Bytes written by the server, read by the client.
    pub(crate) to_client: Link,
    epoch: Instant,
    elapsed: Duration,
    /// The transport is gone; nothing moves any more.
    lost: bool,
}

impl Pair {
    /// Two connections, not yet connected, joined by links that carry up to 64 KiB per write
    /// with no latency.
    pub(crate) fn new(client: Connection, server: Connection) -> Self {
        Self {
            client: Side::new("client", client),
            server: Side::new("server", server),
            to_server: Link::default(),
            to_client: Link::default(),
            epoch: Instant::now(),
            elapsed: Duration::ZERO,
            lost: false,
        }
    }

    /// A client and a server with these configurations, without CRC32C, after the handshake.
    pub(crate) fn connected(client: ConnectionConfig, server: ConnectionConfig) -> Self {
        let mut pair = Self::new(
            Connection::new(client, false),
            Connection::new(server, false),
        );
        pair.connect();
        pair
    }

    /// Drives until both sides are open.
    pub(crate) fn connect(&mut self) {
        self.drive_until("the handshake completes", |pair| {
            pair.client.conn.state() == ConnectionState::Open
                && pair.server.conn.state() == ConnectionState::Open
        });
    }

    /// The virtual time now.
    pub(crate) fn now(&self) -> Instant {
        self.epoch + self.elapsed
    }

    /// Virtual time since the pair was built.
    pub(crate) fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Moves the clock forward; timers fire at the next step.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.elapsed += by;
    }

    /// Moves what can move once: timers whose time has come fire, each side makes one write
    /// into its link, and each link delivers the pieces that are due. Returns whether anything
    /// happened.
    pub(crate) fn step(&mut self) -> bool {
        if self.lost {
            return false;
        }
        let now = self.now();
        let mut moved = self.client.fire_timers(now) | self.server.fire_timers(now);
        moved |= self.to_server.write(&mut self.client, self.elapsed);
        moved |= self.to_client.write(&mut self.server, self.elapsed);
        moved |= self.to_server.deliver(&mut self.server, now, self.elapsed);
        moved |= self.to_client.deliver(&mut self.client, now, self.elapsed);

        // A side that failed drops its transport; a link cut at a point breaks once the bytes
        // before that point have arrived.
        let failed = self.client.error.is_some() || self.server.error.is_some();
        if failed || self.to_server.is_broken() || self.to_client.is_broken() {
            self.lose_connection();
            moved = true;
        }
        moved
    }

    /// Steps until nothing moves and no timer is due, moving the clock to the next timer or
    /// piece in flight whenever the pair is idle.
    ///
    /// # Panics
    ///
    /// On livelock (still busy after a million steps), or if a side that can write has
    /// output it does not offer.
    pub(crate) fn drive(&mut self) {
        self.drive_bounded(DEFAULT_MAX_STEPS);
    }

    /// Like [`drive`](Self::drive), with a bound on the steps.
    ///
    /// # Panics
    ///
    /// When the pair is still busy after `max_steps` steps: a livelock.
    pub(crate) fn drive_bounded(&mut self, max_steps: usize) {
        self.run(max_steps, |_| false);
    }

    /// Drives until `done` holds.
    ///
    /// # Panics
    ///
    /// If the pair goes idle first (naming `what` it waited for), or on livelock.
    pub(crate) fn drive_until(&mut self, what: &str, done: impl FnMut(&Self) -> bool) {
        if !self.run(DEFAULT_MAX_STEPS, done) {
            panic!("the pair went idle before {what}:\n{}", self.describe());
        }
    }

    /// The connection is lost now: bytes in flight are dropped and both sides are told.
    pub(crate) fn cut(&mut self) {
        self.to_server.in_flight.clear();
        self.to_client.in_flight.clear();
        self.lose_connection();
    }

    /// Whether the transport is gone.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost
    }

    /// Steps until `done` holds (returns true) or the pair is idle with nothing due (false).
    fn run(&mut self, max_steps: usize, mut done: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            if self.step() {
                continue;
            }
            match self.next_due() {
                Some(due) => self.elapsed = self.elapsed.max(due),
                None => {
                    self.check_not_stuck();
                    return done(self);
                }
            }
        }
        panic!(
            "livelock: the pair is still busy after {max_steps} steps:\n{}",
            self.describe()
        );
    }

    /// The earliest time at which a timer fires or a piece in flight arrives.
    fn next_due(&mut self) -> Option<Duration> {
        if self.lost {
            return None;
        }
        let epoch = self.epoch;
        let timer = |side: &mut Side| {
            let running = side.error.is_none();
            let deadline = side.conn.poll_timeout().filter(|_| running);
            deadline.map(|at| at.saturating_duration_since(epoch))
        };
        [
            timer(&mut self.client),
            timer(&mut self.server),
            self.to_server.next_due(),
            self.to_client.next_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// An idle pair whose sides have output they could write but do not offer is a deadlock
    /// in the core, not a quiet network.
    fn check_not_stuck(&self) {
        for (side, link) in [
            (&self.client, &self.to_server),
            (&self.server, &self.to_client),
        ] {
            let open = side.conn.state() != ConnectionState::Closed;
            if !self.lost && open && link.can_write() && side.conn.has_output() {
                panic!(
                    "deadlock: the {} has output but offers none:\n{}",
                    side.name,
                    self.describe()
                );
            }
        }
    }

    fn lose_connection(&mut self) {
        if self.lost {
            return;
        }
        self.lost = true;
        for side in [&mut self.client, &mut self.server] {
            side.conn.handle_connection_lost();
            side.collect();
        }
    }

    fn describe(&self) -> String {
        format!(
            "  virtual time {:?}, transport {}\n  {}\n  {}\n  to server: {}\n  to client: {}",
            self.elapsed,
            if self.lost { "lost" } else { "up" },
            self.client.describe(),
            self.server.describe(),
            self.to_server.describe(),
            self.to_client.describe(),
        )
    }
}

/// One end of the pair: its connection, its unread input, and everything it reported.
#[derive(Debug)]
pub(crate) struct Side {
    name: &'static str,
    pub(crate) conn: Connection,
    /// Bytes received and not yet taken by the connection (a partial frame).
    input: BytesMut,
    /// Every event the connection reported, in order.
    pub(crate) events: Vec<Event>,
    /// The error `handle_input` returned, if any; the side reads nothing after it.
    pub(crate) error: Option<ConnectionError>,
    /// Bytes received from the link.
    pub(crate) received: u64,
}

impl Side {
    fn new(name: &'static str, conn: Connection) -> Self {
        Self {
            name,
            conn,
            input: BytesMut::new(),
            events: Vec::new(),
            error: None,
            received: 0,
        }
    }

    /// Moves the connection's pending events into [`events`](Self::events). The pair does this
    /// after every call into the connection; call it after a command that may report.
    pub(crate) fn collect(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            self.events.push(event);
        }
    }

    fn fire_timers(&mut self, now: Instant) -> bool {
        let due = self.conn.poll_timeout().is_some_and(|at| at <= now);
        if due && self.error.is_none() {
            self.conn.handle_timeout(now);
            self.collect();
        }
        due
    }

    fn receive(&mut self, bytes: &[u8], now: Instant) {
        self.received += bytes.len() as u64;
        if self.error.is_some() {
            return;
        }
        self.input.extend_from_slice(bytes);
        if let Err(error) = self.conn.handle_input(&mut self.input, now) {
            self.error = Some(error);
        }
        self.collect();
    }

    /// The one-way messages received, in order.
    pub(crate) fn tells(&self) -> Vec<&Incoming> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Tell(message) => Some(message),
                _ => None,
            })
            .collect()
    }

    /// The peer's asks received, in order.
    pub(crate) fn asks(&self) -> Vec<&Incoming> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Ask(message) => Some(message),
                _ => None,
            })
            .collect()
    }

    /// The replies to this side's asks, in order.
    pub(crate) fn replies(&self) -> Vec<&Incoming> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Reply(message) => Some(message),
                _ => None,
            })
            .collect()
    }

    /// This side's asks that failed, with why.
    pub(crate) fn ask_failures(&self) -> Vec<(u64, &AskError)> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::AskFailed {
                    correlation_id,
                    error,
                } => Some((*correlation_id, error)),
                _ => None,
            })
            .collect()
    }

    /// The peer's asks that the peer cancelled.
    pub(crate) fn cancelled_asks(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::AskCancelled { correlation_id } => Some(*correlation_id),
                _ => None,
            })
            .collect()
    }

    /// The messages handed back as unsent, over every `Unsent` event.
    pub(crate) fn unsent(&self) -> Vec<&Outgoing> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Unsent(messages) => Some(messages.iter()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// What each `Connected` event reported.
    pub(crate) fn connected(&self) -> Vec<&Negotiated> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Connected(agreed) => Some(agreed),
                _ => None,
            })
            .collect()
    }

    /// The `clean` flag of each `Closed` event.
    pub(crate) fn closed(&self) -> Vec<bool> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::Closed { clean } => Some(*clean),
                _ => None,
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!(
            "{}: {:?}, has output {}, {} events, error {:?}, {} bytes received, {} waiting",
            self.name,
            self.conn.state(),
            self.conn.has_output(),
            self.events.len(),
            self.error,
            self.received,
            self.input.len(),
        )
    }
}

/// How a link cuts the writer's output into writes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Split {
    /// Each write takes up to this many bytes.
    Fixed(usize),
    /// Each write takes a random number of bytes from 1 to `max`, drawn from a seeded
    /// generator so a failure can be replayed.
    Random {
        /// The largest write.
        max: usize,
        /// The generator's state.
        state: u64,
    },
}

impl Split {
    fn next(&mut self) -> usize {
        match self {
            Self::Fixed(size) => (*size).max(1),
            Self::Random { max, state } => {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                (*state % *max as u64) as usize + 1
            }
        }
    }
}

/// One direction of the transport: an ordered byte stream whose writes arrive as pieces,
/// each after the link's latency.
#[derive(Debug)]
pub(crate) struct Link {
    /// How long a piece takes to arrive.
    pub(crate) latency: Duration,
    /// How the writer's output is cut into writes, one write per step.
    pub(crate) split: Split,
    stalled: bool,
    /// The offset in the byte stream where the connection breaks.
    cut_at: Option<u64>,
    /// Pieces written and not yet delivered, with the virtual time they arrive.
    in_flight: VecDeque<(Duration, Bytes)>,
    written: u64,
    delivered: u64,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            split: Split::Fixed(64 * 1024),
            stalled: false,
            cut_at: None,
            in_flight: VecDeque::new(),
            written: 0,
            delivered: 0,
        }
    }
}

impl Link {
    /// Writes of exactly `size` bytes, or less when the writer has less.
    pub(crate) fn split_fixed(&mut self, size: usize) {
        self.split = Split::Fixed(size);
    }

    /// Writes of a random size from 1 to `max` bytes, from a generator seeded with `seed`.
    pub(crate) fn split_random(&mut self, max: usize, seed: u64) {
        self.split = Split::Random {
            max,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        };
    }

    /// Stops moving bytes, both writes and deliveries, until [`resume`](Self::resume).
    pub(crate) fn stall(&mut self) {
        self.stalled = true;
    }

    /// Moves bytes again after a [`stall`](Self::stall).
    pub(crate) fn resume(&mut self) {
        self.stalled = false;
    }

    /// The link carries `bytes` more bytes of its stream, then the connection is lost: the
    /// writer cannot write past that point, and both sides are told once the bytes before it
    /// have arrived.
    pub(crate) fn cut_after(&mut self, bytes: u64) {
        self.cut_at = Some(self.written + bytes);
    }

    /// Bytes the writer has put into the link.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Bytes the link has handed to the reader.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered
    }

    fn can_write(&self) -> bool {
        !self.stalled && self.cut_at != Some(self.written)
    }

    fn is_broken(&self) -> bool {
        self.cut_at == Some(self.delivered)
    }

    fn next_due(&self) -> Option<Duration> {
        let (due, _) = self.in_flight.front().filter(|_| !self.stalled)?;
        Some(*due)
    }

    /// One write from `side` into the link; returns whether any byte moved.
    fn write(&mut self, side: &mut Side, elapsed: Duration) -> bool {
        if !self.can_write() || side.error.is_some() {
            return false;
        }
        let room = self.cut_at.map_or(u64::MAX, |at| at - self.written);
        let max = self
            .split
            .next()
            .min(usize::try_from(room).unwrap_or(usize::MAX));
        let mut piece = Vec::new();
        let written = side.conn.transmit_into(&mut piece, max);
        side.collect();
        if written == 0 {
            return false;
        }
        self.written += written as u64;
        self.in_flight
            .push_back((elapsed + self.latency, Bytes::from(piece)));
        true
    }

    /// Hands every piece that is due to `side`, each in its own call, in order; returns
    /// whether any arrived.
    fn deliver(&mut self, side: &mut Side, now: Instant, elapsed: Duration) -> bool {
        let mut moved = false;
        while !self.stalled {
            match self.in_flight.front() {
                Some((due, _)) if *due <= elapsed => {}
                _ => break,
            }
            let (_, piece) = self.in_flight.pop_front().expect("checked above");
            self.delivered += piece.len() as u64;
            side.receive(&piece, now);
            moved = true;
        }
        moved
    }

    fn describe(&self) -> String {
        let in_flight: usize = self.in_flight.iter().map(|(_, piece)| piece.len()).sum();
        format!(
            "{} written, {} delivered, {} in flight, {}stalled, cut at {:?}",
            self.written,
            self.delivered,
            in_flight,
            if self.stalled { "" } else { "not " },
            self.cut_at,
        )
    }
}
