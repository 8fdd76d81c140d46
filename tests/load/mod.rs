//! The load of tests/e2e_load.rs: messages that name themselves (sender task, key, sequence
//! number) and carry bytes that can be checked; the sender tasks, which mix `tell`, `try_tell`
//! and asks and record what became of each message; and the server, which checks every
//! arrival and answers every ask.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::LazyLock;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use ringwire::net::{AskFailed, Connection, Delivery};
use ringwire::{AskError, Envelope, MessageKind, Metrics, Route, SendError};

use crate::common::{self, KIB, MIB, Peer, RECV_LIMIT, TestRuntime, payload, within};

/// Tasks sending at once on clones of one connection handle.
pub(crate) const TASKS: u32 = 64;
/// Keys the tasks share.
const KEYS: u64 = 8;
/// Ring of both lanes: 256 KiB, so the streaming threshold is 255 KiB.
pub(crate) const RING: usize = 256 * KIB;
pub(crate) const THRESHOLD: usize = RING - KIB;
/// The largest message sent.
pub(crate) const LARGEST: usize = 5 * MIB;
/// Far more than any ask takes here: an ask ends by its reply or by a loss, never by time.
const ASK_TIMEOUT: Duration = Duration::from_secs(60);
/// Seeds every choice, size and byte, so that a failure replays (up to the interleaving).
const SEED: u64 = 0x5eed_10ad;

/// Sizes each of the first tasks sends first, so that the edges are always covered.
const EDGE_SIZES: [usize; 8] = [
    0,
    1,
    HEADER_LEN - 1,
    HEADER_LEN,
    THRESHOLD,
    THRESHOLD + 1,
    MIB,
    LARGEST,
];

/// Bytes every payload is cut from, after its header.
static PATTERN: LazyLock<Bytes> = LazyLock::new(|| payload(SEED, LARGEST + 4 * KIB));

/// Task, sequence number, key, length and kind at the front of a payload (cut short in
/// payloads shorter than this).
const HEADER_LEN: usize = 24;

/// What a message is, as its payload says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Tell = 1,
    Ask = 2,
    Reply = 3,
}

/// A message's name: who sent it to which key, and its place among that task's messages to
/// that key. It travels in the type hash (so that even an empty payload has a name) and again
/// in the payload's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Id {
    pub(crate) task: u32,
    pub(crate) key: u64,
    pub(crate) seq: u32,
}

impl Id {
    /// Bits of the type hash that hold the sequence number; the task takes the rest.
    const SEQ_BITS: u32 = 24;

    fn type_hash(self) -> u32 {
        assert!(self.seq < 1 << Self::SEQ_BITS, "sequence number overflow");
        self.task << Self::SEQ_BITS | self.seq
    }

    pub(crate) fn from_envelope(envelope: &Envelope) -> Self {
        Self {
            task: envelope.type_hash >> Self::SEQ_BITS,
            key: envelope.key,
            seq: envelope.type_hash & ((1 << Self::SEQ_BITS) - 1),
        }
    }

    /// A number that depends on every field and on `salt`.
    fn hash(self, salt: u64) -> u64 {
        let mut x =
            SEED ^ salt ^ (u64::from(self.task) << 40 | self.key << 32) ^ u64::from(self.seq);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// The payload length of this message: weighted to small. Per mille: 700 under 1 KiB,
    /// 200 up to 64 KiB, 70 within 32 KiB of the streaming threshold, 25 up to 1 MiB and 5 of
    /// 1 to 5 MiB.
    fn len(self, kind: Kind) -> usize {
        if kind == Kind::Reply {
            return (self.hash(3) % (2 * KIB as u64)) as usize;
        }
        if self.seq == 0 && self.key == u64::from(self.task) % KEYS {
            if let Some(&edge) = EDGE_SIZES.get(self.task as usize) {
                return edge;
            }
        }
        let h = self.hash(1);
        let within = |low: usize, high: usize| low + ((h >> 10) % (high - low + 1) as u64) as usize;
        match h % 1000 {
            0..700 => within(0, KIB - 1),
            700..900 => within(KIB, 64 * KIB),
            900..970 => within(THRESHOLD - 32 * KIB, THRESHOLD + 32 * KIB),
            970..995 => within(THRESHOLD + 32 * KIB, MIB),
            _ => within(MIB, LARGEST),
        }
    }

    /// The header of this message's payload.
    fn header(self, kind: Kind, len: usize) -> [u8; HEADER_LEN] {
        let mut header = [0; HEADER_LEN];
        header[..4].copy_from_slice(&self.task.to_le_bytes());
        header[4..8].copy_from_slice(&self.seq.to_le_bytes());
        header[8..16].copy_from_slice(&self.key.to_le_bytes());
        header[16..20].copy_from_slice(&(len as u32).to_le_bytes());
        header[20..].copy_from_slice(&(kind as u32).to_le_bytes());
        header
    }

    /// Where in [`PATTERN`] the bytes after the header start.
    fn offset(self, kind: Kind) -> usize {
        (self.hash(kind as u64 + 10) % (4 * KIB as u64)) as usize
    }

    fn payload(self, kind: Kind) -> Bytes {
        let len = self.len(kind);
        let mut bytes = BytesMut::with_capacity(len);
        let header = self.header(kind, len);
        bytes.put_slice(&header[..len.min(HEADER_LEN)]);
        if len > HEADER_LEN {
            let offset = self.offset(kind);
            bytes.put_slice(&PATTERN[offset..offset + len - HEADER_LEN]);
        }
        bytes.freeze()
    }

    /// Fails unless `data` is this message's payload of `kind`, naming what differs.
    pub(crate) fn check(self, kind: Kind, data: &[u8]) {
        let len = self.len(kind);
        assert_eq!(data.len(), len, "{kind:?} {self:?}: length");
        let header = self.header(kind, len);
        let head = len.min(HEADER_LEN);
        assert_eq!(data[..head], header[..head], "{kind:?} {self:?}: header");
        if len > HEADER_LEN {
            let offset = self.offset(kind);
            let expected = &PATTERN[offset..offset + len - HEADER_LEN];
            if data[HEADER_LEN..] != *expected {
                let at = data[HEADER_LEN..]
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b);
                panic!("{kind:?} {self:?}: bytes differ at {at:?} after the header");
            }
        }
    }
}

/// A small xorshift generator: each task's choices, reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn new(task: u32) -> Self {
        Self((SEED ^ u64::from(task).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Lets the other tasks run. `try_tell` never waits, nor does a `tell` that finds room, so a
/// task that only sent would otherwise keep its thread.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// A message the connection accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) id: Id,
    pub(crate) kind: Kind,
    pub(crate) len: usize,
    /// The route `tell` and `try_tell` reported; an ask does not say.
    pub(crate) route: Option<Route>,
}

/// What one task did.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    /// In the order the connection accepted them.
    pub(crate) accepted: Vec<Accepted>,
    /// Given back at once, never accepted: `try_tell` on a full queue, or any send after the
    /// connection ended.
    pub(crate) handed_back: Vec<Id>,
    pub(crate) try_tells: u64,
    pub(crate) asks_answered: Vec<Id>,
    /// Accepted asks that got no reply, with why.
    pub(crate) asks_failed: Vec<(Id, AskError)>,
    /// The task stopped because the connection ended, not because its time was up.
    pub(crate) stopped_by_loss: bool,
}

impl Sent {
    fn accept(&mut self, id: Id, kind: Kind, route: Option<Route>) {
        self.accepted.push(Accepted {
            id,
            kind,
            len: id.len(kind),
            route,
        });
    }

    fn hand_back(&mut self, id: Id, kind: Kind, error: SendError) {
        let (message, over) = match error {
            SendError::Full { message } => (message, false),
            SendError::NotOpen { message } => (message, true),
            other => panic!("{kind:?} {id:?}: unexpected {other}"),
        };
        assert_eq!(
            Id::from_envelope(&message.envelope),
            id,
            "handed back as sent"
        );
        id.check(kind, &message.payload);
        self.handed_back.push(id);
        self.stopped_by_loss |= over;
    }
}

/// One task: until `until`, or until the connection ends, picks a key and a way to send
/// and sends the next message of that key.
async fn send(conn: Connection, task: u32, until: Instant) -> Sent {
    let mut rng = Rng::new(task);
    let mut next_seq = [0; KEYS as usize];
    let mut sent = Sent::default();
    let mut first = true;
    while !sent.stopped_by_loss && Instant::now() < until {
        // The first message is a tell, so that the edge sizes are always accepted.
        let (way, key) = if first {
            (0, u64::from(task) % KEYS)
        } else {
            (rng.below(100), rng.below(KEYS))
        };
        first = false;
        let id = Id {
            task,
            key,
            seq: next_seq[key as usize],
        };
        next_seq[key as usize] += 1;
        let type_hash = id.type_hash();
        match way {
            0..55 => match conn.tell(key, type_hash, id.payload(Kind::Tell)).await {
                Ok(route) => sent.accept(id, Kind::Tell, Some(route)),
                Err(error) => sent.hand_back(id, Kind::Tell, error),
            },
            55..85 => {
                sent.try_tells += 1;
                match conn.try_tell(key, type_hash, id.payload(Kind::Tell)) {
                    Ok(route) => sent.accept(id, Kind::Tell, Some(route)),
                    Err(error) => sent.hand_back(id, Kind::Tell, error),
                }
            }
            _ => match conn
                .ask(key, type_hash, id.payload(Kind::Ask), ASK_TIMEOUT)
                .await
            {
                Ok(reply) => {
                    assert_eq!(reply.envelope.type_hash, type_hash, "reply to {id:?}");
                    id.check(Kind::Reply, &reply.payload);
                    sent.accept(id, Kind::Ask, None);
                    sent.asks_answered.push(id);
                }
                Err(AskFailed::NotSent(error)) => sent.hand_back(id, Kind::Ask, error),
                Err(AskFailed::NoReply(error)) => {
                    sent.accept(id, Kind::Ask, None);
                    sent.asks_failed.push((id, error));
                    sent.stopped_by_loss = true;
                }
                Err(other) => panic!("ask {id:?}: unexpected {other}"),
            },
        }
        // A send that found room did not wait; give the other tasks their turn.
        yield_now().await;
    }
    sent
}

/// What the server saw.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Per task and key, the messages in the order they arrived.
    pub(crate) by_sender: HashMap<(u32, u64), Vec<(u32, Kind)>>,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    /// Replies the server could not send because the connection had ended.
    pub(crate) replies_not_sent: u64,
    pub(crate) metrics: Metrics,
}

impl Received {
    /// Checks an arrival's name, bytes and order, and records it.
    fn arrived(&mut self, envelope: &Envelope, kind: Kind, data: &[u8]) -> Id {
        let id = Id::from_envelope(envelope);
        id.check(kind, data);
        let seen = self.by_sender.entry((id.task, id.key)).or_default();
        if let Some(&(last, _)) = seen.last() {
            assert!(
                last < id.seq,
                "task {} key {}: message {} after {last}",
                id.task,
                id.key,
                id.seq
            );
        }
        seen.push((id.seq, kind));
        self.messages += 1;
        self.bytes += data.len() as u64;
        id
    }

    /// What arrived from one task on one key, in arrival order.
    pub(crate) fn arrived_from(&self, sender: (u32, u64)) -> &[(u32, Kind)] {
        self.by_sender.get(&sender).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn has_arrived(&self, id: Id) -> bool {
        self.arrived_from((id.task, id.key))
            .iter()
            .any(|&(seq, _)| seq == id.seq)
    }
}

/// The server: checks every arrival (name, bytes, per-task-and-key order) and answers every
/// ask, until the connection ends.
async fn receive(peer: Peer) -> Received {
    let mut received = Received::default();
    while let Some(delivery) = peer.inbox.recv().await {
        match delivery {
            Delivery::Tell(message) => {
                assert_eq!(message.envelope.kind, MessageKind::Tell);
                received.arrived(&message.envelope, Kind::Tell, &message.payload);
            }
            Delivery::Ask(request) => {
                let envelope = request.message.envelope;
                let id = received.arrived(&envelope, Kind::Ask, &request.message.payload);
                match request
                    .reply(envelope.type_hash, id.payload(Kind::Reply))
                    .await
                {
                    Ok(_) => {}
                    // The connection ended (it no longer knows the ask once closed).
                    Err(SendError::NotOpen { .. } | SendError::NoSuchAsk { .. }) => {
                        received.replies_not_sent += 1;
                    }
                    Err(error) => panic!("reply to {id:?}: {error}"),
                }
            }
            other => panic!("unexpected delivery {other:?}"),
        }
    }
    received.metrics = peer.conn.metrics();
    received
}

/// Starts the server's receiver and `TASKS` senders on a clone of `client`'s handle each.
pub(crate) fn start_load<R: TestRuntime>(
    client: &Peer,
    server: Peer,
    until: Instant,
) -> (common::Task<Received>, Vec<common::Task<Sent>>) {
    let receiving = R::spawn_task(receive(server));
    let senders = (0..TASKS)
        .map(|task| R::spawn_task(send(client.conn.clone(), task, until)))
        .collect();
    (receiving, senders)
}

/// What every sender task did, each awaited within the bound.
pub(crate) async fn join_senders<R: TestRuntime>(senders: Vec<common::Task<Sent>>) -> Vec<Sent> {
    let mut sent = Vec::new();
    for sender in senders {
        sent.push(within::<R, _>(RECV_LIMIT, "a sender task", sender).await);
    }
    sent
}

/// Per task and key, the accepted messages in the order they were accepted.
pub(crate) fn accepted_by_sender(sent: &[Sent]) -> HashMap<(u32, u64), Vec<Accepted>> {
    let mut by_sender: HashMap<(u32, u64), Vec<Accepted>> = HashMap::new();
    for message in sent.iter().flat_map(|task| &task.accepted) {
        let id = message.id;
        by_sender
            .entry((id.task, id.key))
            .or_default()
            .push(*message);
    }
    by_sender
}

/// Totals over every task.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) accepted: u64,
    pub(crate) accepted_bytes: u64,
    pub(crate) tells: u64,
    pub(crate) try_tells: u64,
    pub(crate) asks: u64,
    pub(crate) asks_answered: u64,
    pub(crate) handed_back: u64,
    pub(crate) smallest: usize,
    pub(crate) largest: usize,
}

/// Sums what every task did.
pub(crate) fn totals(sent: &[Sent]) -> Totals {
    let mut totals = Totals {
        smallest: usize::MAX,
        ..Totals::default()
    };
    for task in sent {
        for message in &task.accepted {
            totals.accepted += 1;
            totals.accepted_bytes += message.len as u64;
            match message.kind {
                Kind::Tell => totals.tells += 1,
                _ => totals.asks += 1,
            }
            totals.smallest = totals.smallest.min(message.len);
            totals.largest = totals.largest.max(message.len);
        }
        totals.try_tells += task.try_tells;
        totals.asks_answered += task.asks_answered.len() as u64;
        totals.handed_back += task.handed_back.len() as u64;
    }
    totals
}
