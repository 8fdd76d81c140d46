//! Fuzz target: two `Connection`s joined by an in-memory link, driven by an arbitrary script
//! of operations: tells, asks and replies of any size (up to 300 KiB, and a few up to 2 MiB)
//! on any key, partial writes, partial reads, time passing, cancelled and refused asks, a
//! graceful close (which may time out), and the loss of the link.
//!
//! What must hold whatever the script:
//! - no panic, and no protocol or handshake error between two correct peers;
//! - a refused message comes back whole;
//! - every message that arrives was accepted, arrives once, with its envelope and bytes, and
//!   after every earlier message of its key from the same side;
//! - every accepted tell arrives or, after the link is lost or its sender's close timed out,
//!   comes back as unsent; never both. The one exception, as documented: a tell written
//!   completely before its receiver gave up a close (and so read no more) does neither;
//! - every ask ends exactly once (a reply or a failure), or is cancelled by its asker and
//!   then hears nothing more;
//! - each receiver's reassembly gauge stays within its budget.

#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringwire_core::{
    BufferConfig, Connection, ConnectionConfig, ConnectionState, Envelope, Event, MessageKind,
    Outgoing, RefuseCode, SendError,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Sizes above this are "large"; only [`MAX_LARGE_SENDS`] of them are sent per input, to keep
/// each run fast.
const MEDIUM_MAX: usize = 300 * KIB;
const LARGE_MAX: usize = 2 * MIB;
const MAX_LARGE_SENDS: usize = 3;

/// Bytes every payload is cut from: payload `n` starts at offset `n % 251`, so messages of
/// the same size still differ.
static PATTERN: LazyLock<Bytes> = LazyLock::new(|| {
    (0..LARGE_MAX + 256)
        .map(|i| (i ^ (i >> 8) ^ (i >> 16)) as u8)
        .collect::<Vec<u8>>()
        .into()
});

/// One side of the pair, chosen by the script.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Side {
    A,
    B,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }
}

/// A payload size.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Size {
    Small(u8),
    Medium(u32),
    Large(u32),
}

impl Size {
    fn bytes(self, large_sends: &mut usize) -> usize {
        match self {
            Self::Small(n) => n.into(),
            Self::Medium(n) => n as usize % (MEDIUM_MAX + 1),
            Self::Large(n) if *large_sends < MAX_LARGE_SENDS => {
                *large_sends += 1;
                MEDIUM_MAX + n as usize % (LARGE_MAX - MEDIUM_MAX + 1)
            }
            Self::Large(n) => n as usize % (MEDIUM_MAX + 1),
        }
    }
}

/// How much of something to move: a given number of bytes, or all of it.
#[derive(Arbitrary, Clone, Copy, Debug)]
enum Amount {
    Bytes(u16),
    All,
}

impl Amount {
    fn bytes(self) -> usize {
        match self {
            Self::Bytes(n) => n.into(),
            Self::All => usize::MAX,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Tell {
        from: Side,
        key: u8,
        size: Size,
    },
    Ask {
        from: Side,
        key: u8,
        size: Size,
        deadline_ms: u16,
    },
    /// Answers one of the peer's asks this side has seen.
    Reply {
        from: Side,
        pick: u8,
        size: Size,
    },
    Refuse {
        from: Side,
        pick: u8,
    },
    /// Gives up one of this side's pending asks.
    Cancel {
        from: Side,
        pick: u8,
    },
    /// A write of at most this much of the side's output onto the link.
    Write {
        from: Side,
        amount: Amount,
    },
    /// A read of at most this much from the link into the side.
    Read {
        to: Side,
        amount: Amount,
    },
    Pass {
        ms: u16,
    },
    Close {
        from: Side,
    },
    /// The link breaks once what is on it has been read.
    Lose,
}

/// Each side's configuration, in ranges small enough for the script to reach every limit.
#[derive(Arbitrary, Debug)]
struct Setup {
    crc32c: bool,
    large_ring: bool,
    chunk_kib: u8,
    large_messages: bool,
    budget_factor: u8,
    inbound_streams: u8,
    queued_stream_mib: u8,
    queued_streams: u8,
    close_timeout_ms: u16,
}

impl Setup {
    fn config(&self) -> Option<ConnectionConfig> {
        let ring = if self.large_ring {
            2 * BufferConfig::MIN_RING_BUFFER_SIZE
        } else {
            BufferConfig::MIN_RING_BUFFER_SIZE
        };
        let ring = BufferConfig::new(ring).ok()?;
        let max_message = if self.large_messages { 4 * MIB } else { MIB } as u64;
        ConnectionConfig::builder()
            .tell_buffer_config(ring)
            .ask_buffer_config(ring)
            .chunk_size((usize::from(self.chunk_kib % 64) + 1) * KIB)
            .max_message_size(max_message)
            .reassembly_budget(max_message * (u64::from(self.budget_factor % 3) + 1))
            .max_inbound_streams(u32::from(self.inbound_streams % 4) + 1)
            .max_queued_stream_bytes((u64::from(self.queued_stream_mib % 8) + 2) * MIB as u64)
            .max_queued_streams(usize::from(self.queued_streams % 16) + 1)
            .close_timeout(Duration::from_millis(
                u64::from(self.close_timeout_ms % 30_000) + 1,
            ))
            .build()
            .ok()
    }
}

#[derive(Arbitrary, Debug)]
struct Script {
    setups: [Setup; 2],
    /// Whether the handshake is done before the script starts.
    connect_first: bool,
    ops: Vec<Op>,
}

/// What became of an accepted message.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    Pending,
    Delivered,
    Unsent,
}

/// An accepted message, known by its number (sent as its type hash).
#[derive(Debug)]
struct Sent {
    envelope: Envelope,
    len: usize,
    fate: Fate,
}

/// Where one of this side's asks is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum AskState {
    Pending,
    Ended,
    Cancelled,
}

struct Peer {
    connection: Connection,
    /// Bytes read from the link and not yet taken by the connection.
    input: BytesMut,
    /// Messages this side accepted, by number.
    sent: HashMap<u32, Sent>,
    /// This side's asks.
    asks: HashMap<u64, AskState>,
    /// The peer's asks this side has seen and not answered.
    to_answer: Vec<u64>,
    /// Number of the last message of each key from the peer that arrived here.
    last_of_key: HashMap<u64, u32>,
    /// The key of each of the peer's asks that arrived here.
    ask_keys: HashMap<u64, u64>,
    /// This side's close timed out: it gave up, handed back what it had not written, and
    /// read nothing more.
    close_timed_out: bool,
    /// This side ended without a clean close while the link was up (its close timed out, or
    /// it closed during the handshake), so it read nothing more: the peer's tells written after that neither
    /// arrive nor come back, as documented.
    closed_unclean: bool,
}

struct Pair {
    peers: [Peer; 2],
    /// Bytes written by each side and not yet read by the other.
    links: [Vec<u8>; 2],
    /// Each side's reassembly budget.
    budgets: [u64; 2],
    now: Instant,
    next_number: u32,
    large_sends: usize,
    lost: bool,
}

fn payload(number: u32, len: usize) -> Bytes {
    let start = number as usize % 251;
    PATTERN.slice(start..start + len)
}

impl Pair {
    fn new(configs: [ConnectionConfig; 2], crc32c: [bool; 2]) -> Self {
        let peer = |i: usize| Peer {
            connection: Connection::new(configs[i], crc32c[i]),
            input: BytesMut::new(),
            sent: HashMap::new(),
            asks: HashMap::new(),
            to_answer: Vec::new(),
            last_of_key: HashMap::new(),
            ask_keys: HashMap::new(),
            close_timed_out: false,
            closed_unclean: false,
        };
        Self {
            peers: [peer(0), peer(1)],
            links: [Vec::new(), Vec::new()],
            budgets: configs.map(|config| config.reassembly_budget()),
            now: Instant::now(),
            next_number: 0,
            large_sends: 0,
            lost: false,
        }
    }

    fn number(&mut self) -> u32 {
        self.next_number += 1;
        self.next_number
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Tell { from, key, size } => {
                let number = self.number();
                let len = size.bytes(&mut self.large_sends);
                let peer = &mut self.peers[from.index()];
                let result = peer
                    .connection
                    .tell(key.into(), number, payload(number, len));
                let envelope = Envelope {
                    kind: MessageKind::Tell,
                    key: key.into(),
                    correlation_id: 0,
                    type_hash: number,
                };
                peer.accepted(result.map(|_| ()), envelope, len);
            }
            Op::Ask {
                from,
                key,
                size,
                deadline_ms,
            } => {
                let number = self.number();
                let len = size.bytes(&mut self.large_sends);
                let deadline = self.now + Duration::from_millis(deadline_ms.into());
                let peer = &mut self.peers[from.index()];
                let result =
                    peer.connection
                        .ask(key.into(), number, payload(number, len), deadline);
                let id = *result.as_ref().unwrap_or(&0);
                let envelope = Envelope {
                    kind: MessageKind::Ask,
                    key: key.into(),
                    correlation_id: id,
                    type_hash: number,
                };
                if peer.accepted(result.map(|_| ()), envelope, len) {
                    assert!(
                        peer.asks.insert(id, AskState::Pending).is_none(),
                        "id {id} reused"
                    );
                }
            }
            Op::Reply { from, pick, size } => {
                let number = self.number();
                let len = size.bytes(&mut self.large_sends);
                let peer = &mut self.peers[from.index()];
                if peer.to_answer.is_empty() {
                    return;
                }
                let index = usize::from(pick) % peer.to_answer.len();
                let id = peer.to_answer[index];
                let result = peer.connection.reply(id, number, payload(number, len));
                if matches!(result, Ok(_) | Err(SendError::NoSuchAsk { .. })) {
                    peer.to_answer.swap_remove(index);
                }
                let key = match &result {
                    Err(SendError::NoSuchAsk { .. }) => 0,
                    _ => peer.key_of_ask(id),
                };
                let envelope = Envelope {
                    kind: MessageKind::Reply,
                    key,
                    correlation_id: id,
                    type_hash: number,
                };
                peer.accepted(result.map(|_| ()), envelope, len);
            }
            Op::Refuse { from, pick } => {
                let peer = &mut self.peers[from.index()];
                if !peer.to_answer.is_empty() {
                    let index = usize::from(pick) % peer.to_answer.len();
                    let id = peer.to_answer.swap_remove(index);
                    peer.connection.refuse(
                        id,
                        RefuseCode::HandlerFailed,
                        "refused by the fuzz script",
                    );
                }
            }
            Op::Cancel { from, pick } => {
                let peer = &mut self.peers[from.index()];
                let mut pending: Vec<u64> = peer
                    .asks
                    .iter()
                    .filter(|(_, state)| **state == AskState::Pending)
                    .map(|(id, _)| *id)
                    .collect();
                pending.sort_unstable();
                if let Some(&id) = pending.get(usize::from(pick) % pending.len().max(1)) {
                    // An ask whose failure is still unread is no longer pending in the
                    // connection; only one it still holds can be cancelled.
                    if peer.connection.cancel_ask(id) {
                        peer.asks.insert(id, AskState::Cancelled);
                    }
                }
            }
            Op::Write { from, amount } => {
                let link = &mut self.links[from.index()];
                self.peers[from.index()]
                    .connection
                    .transmit_into(link, amount.bytes());
            }
            Op::Read { to, amount } => self.read(to.index(), amount.bytes()),
            Op::Pass { ms } => {
                self.now += Duration::from_millis(ms.into());
                for peer in &mut self.peers {
                    peer.connection.handle_timeout(self.now);
                }
            }
            Op::Close { from } => self.peers[from.index()]
                .connection
                .close("closed by the fuzz script", self.now),
            Op::Lose => {
                self.read(0, usize::MAX);
                self.read(1, usize::MAX);
                for peer in &mut self.peers {
                    peer.connection.handle_connection_lost();
                }
                self.lost = true;
            }
        }
        self.settle();
    }

    /// Moves at most `max` bytes from the link into side `to` and lets it read them.
    fn read(&mut self, to: usize, max: usize) {
        let link = &mut self.links[1 - to];
        let take = max.min(link.len());
        let peer = &mut self.peers[to];
        // As the adapters read: inside a chunk, with no input waiting, straight into the
        // stream's buffer, and the rest into the input buffer.
        let mut direct = 0;
        if let Some(mut space) = peer.connection.chunk_space(&peer.input, take) {
            direct = space.len().min(take);
            space[..direct].copy_from_slice(&link[..direct]);
            space.fill(direct);
        }
        peer.input.extend_from_slice(&link[direct..take]);
        link.drain(..take);
        let result = peer.connection.handle_input(&mut peer.input, self.now);
        assert!(result.is_ok(), "side {to} failed: {result:?}");
    }

    /// Takes every event, checks it against what was sent, and checks the gauges.
    fn settle(&mut self) {
        for to in 0..2 {
            while let Some(event) = self.peers[to].connection.poll_event() {
                self.event(to, event);
            }
            let in_use = self.peers[to]
                .connection
                .metrics()
                .receive
                .reassembly_bytes_in_use;
            let budget = self.budgets[to];
            assert!(
                in_use <= budget,
                "side {to}: {in_use} bytes reserved, budget {budget}"
            );
        }
    }

    fn event(&mut self, to: usize, event: Event) {
        let lost = self.lost;
        let [a, b] = &mut self.peers;
        let (here, there) = if to == 0 { (a, b) } else { (b, a) };
        match event {
            Event::Connected(_) | Event::Closed { clean: true } => {}
            // The loss of the link is not this side giving up: the link was read to the end
            // first, so nothing written may be missing then.
            Event::Closed { clean: false } => here.closed_unclean |= !lost,
            Event::CloseTimedOut => {
                assert_eq!(
                    here.connection.state(),
                    ConnectionState::Closed,
                    "side {to}: a close timed out and the connection goes on"
                );
                here.close_timed_out = true;
            }
            Event::Tell(message) | Event::Ask(message) | Event::Reply(message) => {
                let number = message.envelope.type_hash;
                let Some(sent) = there.sent.get_mut(&number) else {
                    panic!("side {to} got message {number}, never accepted");
                };
                assert_eq!(message.envelope, sent.envelope, "message {number}");
                assert!(
                    message.payload == payload(number, sent.len),
                    "message {number} arrived with other bytes"
                );
                assert_eq!(sent.fate, Fate::Pending, "message {number} arrived again");
                sent.fate = Fate::Delivered;
                let key = message.envelope.key;
                if let Some(&last) = here.last_of_key.get(&key) {
                    assert!(last < number, "key {key}: message {number} after {last}");
                }
                here.last_of_key.insert(key, number);
                match message.envelope.kind {
                    MessageKind::Ask => {
                        here.to_answer.push(message.envelope.correlation_id);
                        here.ask_keys.insert(message.envelope.correlation_id, key);
                    }
                    MessageKind::Reply => here.end_ask(message.envelope.correlation_id),
                    MessageKind::Tell => {}
                }
            }
            Event::AskFailed { correlation_id, .. } => here.end_ask(correlation_id),
            Event::AskCancelled { correlation_id } => {
                here.to_answer.retain(|id| *id != correlation_id);
            }
            Event::Unsent(messages) => {
                for message in messages {
                    let number = message.envelope.type_hash;
                    let Some(sent) = here.sent.get_mut(&number) else {
                        panic!("side {to}: unsent message {number} never accepted");
                    };
                    assert_eq!(message.envelope, sent.envelope);
                    assert!(message.payload == payload(number, sent.len));
                    assert_eq!(
                        sent.fate,
                        Fate::Pending,
                        "message {number} unsent after {:?}",
                        sent.fate
                    );
                    sent.fate = Fate::Unsent;
                }
            }
            _ => {}
        }
    }

    /// Lets the pair run until nothing moves, then lets every deadline pass, and checks
    /// that every message and every ask came to an end.
    fn finish(&mut self) {
        for round in 0.. {
            assert!(round < 100_000, "the pair does not settle");
            let mut moved = 0;
            for side in 0..2 {
                loop {
                    let written = self.peers[side]
                        .connection
                        .transmit_into(&mut self.links[side], usize::MAX);
                    if written == 0 {
                        break;
                    }
                    moved += written;
                }
            }
            let on_links = self.links[0].len() + self.links[1].len();
            self.read(0, usize::MAX);
            self.read(1, usize::MAX);
            self.settle();
            if moved == 0 && on_links == 0 {
                break;
            }
        }
        let far = self.now + Duration::from_secs(1 << 20);
        for peer in &mut self.peers {
            peer.connection.handle_timeout(far);
        }
        self.settle();

        for (side, peer) in self.peers.iter().enumerate() {
            for (number, sent) in &peer.sent {
                if sent.envelope.kind != MessageKind::Tell {
                    continue;
                }
                let other = &self.peers[1 - side];
                match sent.fate {
                    Fate::Delivered => {}
                    Fate::Unsent => assert!(
                        self.lost || peer.close_timed_out,
                        "tell {number} unsent, link not lost and no close timed out"
                    ),
                    // Written completely, but the peer ended without a clean close and read
                    // no more. A clean close on the peer's side means this side's `CLOSE`,
                    // which follows every tell, arrived there.
                    Fate::Pending => assert!(
                        other.closed_unclean,
                        "side {side}: tell {number} ({} bytes) neither arrived nor came back",
                        sent.len
                    ),
                }
            }
            for (id, state) in &peer.asks {
                assert_ne!(
                    *state,
                    AskState::Pending,
                    "side {side}: ask {id} never ended"
                );
            }
            assert_eq!(peer.connection.pending_asks(), 0, "side {side}");
        }
    }
}

impl Peer {
    /// Records a message the connection accepted, or checks that a refused one came back
    /// whole. Returns whether it was accepted.
    fn accepted(&mut self, result: Result<(), SendError>, envelope: Envelope, len: usize) -> bool {
        match result {
            Ok(()) => {
                let number = envelope.type_hash;
                let sent = Sent {
                    envelope,
                    len,
                    fate: Fate::Pending,
                };
                assert!(self.sent.insert(number, sent).is_none());
                true
            }
            Err(error) => {
                let message: Outgoing = error.into_message();
                assert_eq!(message.envelope.type_hash, envelope.type_hash);
                assert_eq!(message.envelope.kind, envelope.kind);
                assert!(message.payload == payload(envelope.type_hash, len));
                false
            }
        }
    }

    /// The key of the peer's ask `id`, as it arrived here.
    fn key_of_ask(&self, id: u64) -> u64 {
        self.ask_keys.get(&id).copied().unwrap_or(0)
    }

    fn end_ask(&mut self, id: u64) {
        let state = self.asks.get_mut(&id);
        assert_eq!(
            state.as_deref(),
            Some(&AskState::Pending),
            "ask {id} ended twice or after cancel"
        );
        if let Some(state) = state {
            *state = AskState::Ended;
        }
    }
}

fuzz_target!(|script: Script| {
    let [Some(a), Some(b)] = [script.setups[0].config(), script.setups[1].config()] else {
        return;
    };
    let mut pair = Pair::new([a, b], [script.setups[0].crc32c, script.setups[1].crc32c]);
    if script.connect_first {
        pair.run(&Op::Write {
            from: Side::A,
            amount: Amount::All,
        });
        pair.run(&Op::Write {
            from: Side::B,
            amount: Amount::All,
        });
        pair.run(&Op::Read {
            to: Side::A,
            amount: Amount::All,
        });
        pair.run(&Op::Read {
            to: Side::B,
            amount: Amount::All,
        });
    }
    for op in &script.ops {
        pair.run(op);
    }
    pair.finish();
});
