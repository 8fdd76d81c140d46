//! Nothing accepted is lost without a word: wherever a connection is cut, every message the
//! `Sender` accepted is either delivered whole by the `Receiver` or handed back by
//! `Sender::take_unsent`, exactly one of the two. Afterwards the sender holds nothing, its
//! rings are free again, and the next connection carries new messages and the handed-back
//! ones.
//!
//! One small fixed exchange is cut at every byte, with and without the CRC32C trailer;
//! proptest cuts random exchanges at random points. `PROPTEST_CASES` overrides the case
//! count.

mod checks;
mod common;

use std::collections::HashMap;
use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use ringwire_core::{
    BufferConfig, CRC_LEN, ConnectionConfig, Envelope, Hello, Incoming, Lane, MESSAGE_HEADER_LEN,
    MessageKind, Outgoing, ReceiveLimits, Receiver, Route, SendError, Sender,
};

const KIB: usize = 1024;
/// Type hashes of the messages sent after the reset start here, apart from those sent before.
const AFTER_RESET: u32 = 1 << 20;

/// The two configurations of a connection.
#[derive(Clone, Copy, Debug)]
enum Profile {
    /// The receiving side announces a ring frame limit of 600 bytes, far below what its
    /// configuration enforces, so that the sender streams anything larger in 1 KiB chunks; at
    /// most 2 streams open and 16 KiB reserved at once, at most 4 streams queued.
    Small,
    /// Rings of 256 KiB on both lanes, announced as they are: the threshold is 255 KiB, a
    /// ring holds one message at the threshold, and a second falls back to a stream.
    Ring,
}

impl Profile {
    fn config(self) -> ConnectionConfig {
        let ring = BufferConfig::new(BufferConfig::MIN_RING_BUFFER_SIZE).unwrap();
        let builder = ConnectionConfig::builder()
            .tell_buffer_config(ring)
            .ask_buffer_config(ring);
        match self {
            Self::Small => builder
                .chunk_size(KIB)
                .max_queued_streams(4)
                .max_queued_stream_bytes(8 * KIB as u64),
            Self::Ring => builder
                .chunk_size(16 * KIB)
                .max_queued_streams(8)
                .max_inbound_streams(2),
        }
        .build()
        .unwrap()
    }

    /// What the receiving side announces in its `HELLO`: never more than it enforces.
    fn announced(self) -> ReceiveLimits {
        match self {
            Self::Small => ReceiveLimits {
                max_message_size: 16 * KIB as u64,
                max_frame_payload: 600,
                max_inbound_streams: 2,
                reassembly_budget: 16 * KIB as u64,
            },
            Self::Ring => self.config().receive_limits(),
        }
    }

    /// The streaming threshold of both lanes.
    fn threshold(self) -> usize {
        match self {
            Self::Small => 600,
            Self::Ring => 255 * KIB,
        }
    }

    /// Both ends of a connection, as a handshake in which both sides ask for the trailer, or
    /// neither does, builds them.
    fn connect(self, crc32c: bool) -> (Sender, Receiver) {
        let config = self.config();
        let (sender_side, receiver_side) = (
            Hello::new(config.receive_limits(), crc32c),
            Hello::new(self.announced(), crc32c),
        );
        let for_sender = sender_side.negotiate(&receiver_side).unwrap();
        let for_receiver = receiver_side.negotiate(&sender_side).unwrap();
        assert_eq!((for_sender.crc32c, for_receiver.crc32c), (crc32c, crc32c));
        let sender = Sender::from_handshake(&config, &for_sender);
        assert_eq!(sender.streaming_threshold(Lane::Tell), self.threshold());
        assert_eq!(sender.streaming_threshold(Lane::Ask), self.threshold());
        (sender, Receiver::from_handshake(&config, &for_receiver))
    }
}

/// A message size, relative to the threshold.
#[derive(Clone, Copy, Debug)]
enum Size {
    Tiny(usize),
    /// The threshold plus this, from -2 to 2.
    Near(isize),
    /// This many 65 536ths of twice the threshold, and one byte.
    Upto(u16),
}

impl Size {
    fn bytes(self, threshold: usize) -> usize {
        match self {
            Self::Tiny(size) => size,
            Self::Near(delta) => threshold.saturating_add_signed(delta),
            Self::Upto(share) => 1 + 2 * threshold * usize::from(share) / 65_536,
        }
    }
}

/// One step of an exchange.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Hand the sender a message; while it refuses it as full, write and try again.
    Send {
        kind: MessageKind,
        key: u64,
        size: Size,
    },
    /// Write up to this many 65 536ths of twice the threshold, and one byte.
    Write(u16),
}

/// Messages handed to a sender and writes, then a cut.
#[derive(Clone, Debug)]
struct Exchange {
    profile: Profile,
    crc32c: bool,
    ops: Vec<Op>,
    /// Draws the sizes of the writes after the last step.
    piece_seed: u64,
}

/// What is checked after `take_unsent`, beyond the sender being empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterReset {
    Nothing,
    /// A message above the threshold and every handed-back message go out on a new
    /// connection.
    Send,
    /// Both rings first take exactly as many frames at the threshold as fit, then as `Send`.
    FillRings,
}

/// One side of a cut connection, and what crossed it.
struct Cut {
    sender: Sender,
    /// Every message offered, by type hash; `None` if the sender refused it.
    offered: Vec<Option<Outgoing>>,
    /// Whether each message offered was accepted as a stream.
    streamed: Vec<bool>,
    delivered: Vec<Incoming>,
    written: usize,
}

/// The message offered as the `index`-th, recognisable by its type hash.
fn message(index: u32, kind: MessageKind, key: u64, size: usize) -> Outgoing {
    let envelope = Envelope {
        kind,
        key,
        type_hash: index,
        correlation_id: if kind == MessageKind::Tell {
            0
        } else {
            u64::from(index) + 1
        },
    };
    Outgoing::new(envelope, common::large_payload(size, index.into()))
}

impl Exchange {
    /// Runs the exchange over a connection that carries `cut` bytes and then no more: the
    /// receiver sees exactly what the sender wrote before the cut. Steps after the cut still
    /// hand messages to the sender, as an application that has not yet heard of the cut does.
    fn run(&self, cut: usize) -> Result<Cut, TestCaseError> {
        let threshold = self.profile.threshold();
        let (sender, mut receiver) = self.profile.connect(self.crc32c);
        let mut link = Cut {
            sender,
            offered: Vec::new(),
            streamed: Vec::new(),
            delivered: Vec::new(),
            written: 0,
        };
        let mut input = BytesMut::new();
        let mut write = |link: &mut Cut, max: usize| -> Result<usize, TestCaseError> {
            let max = max.min(cut - link.written);
            if max == 0 {
                return Ok(0);
            }
            let mut wire = Vec::new();
            let written = link.sender.transmit_into(&mut wire, max);
            link.written += written;
            input.extend_from_slice(&wire);
            loop {
                match receiver.decode(&mut input) {
                    Ok(Some(message)) => link.delivered.push(message),
                    Ok(None) => return Ok(written),
                    Err(error) => return Err(TestCaseError::fail(format!("receiver: {error}"))),
                }
            }
        };

        for op in &self.ops {
            match *op {
                Op::Send { kind, key, size } => {
                    let index = link.offered.len() as u32;
                    let original = message(index, kind, key, size.bytes(threshold));
                    let mut offer = original.clone();
                    let accepted = loop {
                        match link.sender.send(offer) {
                            Ok(route) => {
                                link.streamed.push(route == Route::Stream);
                                break true;
                            }
                            Err(SendError::Full { message }) => {
                                prop_assert!(message == original, "a refusal changed the message");
                                // Once the connection is cut, a full sender stays full.
                                if write(&mut link, 64 * KIB)? == 0 {
                                    prop_assert!(link.written == cut, "full, nothing to write");
                                    link.streamed.push(false);
                                    break false;
                                }
                                offer = message;
                            }
                            Err(error) => return Err(TestCaseError::fail(error.to_string())),
                        }
                    };
                    link.offered.push(accepted.then_some(original));
                }
                Op::Write(share) => {
                    write(&mut link, 1 + 2 * threshold * usize::from(share) / 65_536)?;
                }
            }
        }
        let mut piece = checks::pieces(self.piece_seed, 2 * threshold);
        while write(&mut link, piece())? > 0 {}
        Ok(link)
    }

    /// Cuts the exchange after `cut` bytes, takes back what was not sent, and checks that
    /// every accepted message is accounted for once and that the sender is left empty; then,
    /// unless `then` is [`AfterReset::Nothing`], that it starts afresh on a new connection.
    fn check(&self, cut: usize, then: AfterReset) -> Result<(), TestCaseError> {
        let mut link = self.run(cut)?;
        check_held(&link)?;
        let unsent = link.sender.take_unsent();
        prop_assert_eq!(
            link.sender.metrics().stream_bytes_held,
            0,
            "held after take_unsent"
        );
        account(&link, &unsent)?;
        check_empty(&mut link.sender)?;
        if then == AfterReset::Nothing {
            return Ok(());
        }
        let fill = then == AfterReset::FillRings;
        start_afresh(self.profile, self.crc32c, link.sender, unsent, fill)
    }

    /// Bytes the sender writes when nothing cuts the connection.
    fn whole_len(&self) -> Result<usize, TestCaseError> {
        let link = self.run(usize::MAX)?;
        prop_assert!(!link.sender.has_output(), "the sender kept output back");
        check_held(&link)?;
        Ok(link.written)
    }
}

/// The sender's gauge of stream payloads held counts exactly the streamed messages not yet
/// delivered: the receiver decodes everything written, and a stream's payload is let go when
/// its last byte is written.
fn check_held(link: &Cut) -> Result<(), TestCaseError> {
    let delivered = link.delivered.iter().map(|m| (&m.envelope, &m.payload));
    let delivered = tally(&link.offered, delivered, "delivered")?;
    let expected: u64 = link
        .offered
        .iter()
        .zip(&link.streamed)
        .zip(delivered)
        .filter(|&((_, &streamed), delivered)| streamed && !delivered)
        .filter_map(|((message, _), _)| message.as_ref())
        .map(|message| message.payload.len() as u64)
        .sum();
    prop_assert_eq!(
        link.sender.metrics().stream_bytes_held,
        expected,
        "stream payload bytes held, {} bytes written",
        link.written
    );
    Ok(())
}

/// Every accepted message is delivered, whole and unchanged, or handed back unchanged; never
/// both, never neither; nothing else comes out.
fn account(link: &Cut, unsent: &[Outgoing]) -> Result<(), TestCaseError> {
    let delivered = link.delivered.iter().map(|m| (&m.envelope, &m.payload));
    let delivered = tally(&link.offered, delivered, "delivered")?;
    let unsent = unsent.iter().map(|m| (&m.envelope, &m.payload));
    let handed_back = tally(&link.offered, unsent, "handed back")?;
    for (index, original) in link.offered.iter().enumerate() {
        let Some(original) = original else {
            continue;
        };
        let (size, written) = (original.payload.len(), link.written);
        prop_assert!(
            delivered[index] != handed_back[index],
            "message {} ({} bytes, {:?}): delivered {}, handed back {}, {} bytes written",
            index,
            size,
            original.envelope.kind,
            delivered[index],
            handed_back[index],
            written
        );
    }
    Ok(())
}

/// Which of the `offered` messages are among `messages`, each checked to be an accepted one,
/// unchanged, and there once.
fn tally<'a>(
    offered: &[Option<Outgoing>],
    messages: impl Iterator<Item = (&'a Envelope, &'a Bytes)>,
    what: &str,
) -> Result<Vec<bool>, TestCaseError> {
    let mut seen = vec![false; offered.len()];
    for (envelope, payload) in messages {
        let index = envelope.type_hash as usize;
        let original = offered.get(index).and_then(Option::as_ref);
        prop_assert!(
            original.is_some(),
            "message {} {}, never accepted",
            index,
            what
        );
        let original = original.unwrap();
        prop_assert!(!seen[index], "message {} {} twice", index, what);
        prop_assert_eq!(*envelope, original.envelope);
        prop_assert_eq!(
            common::first_difference(payload, &original.payload),
            None,
            "payload of message {} {}",
            index,
            what
        );
        seen[index] = true;
    }
    Ok(seen)
}

/// After `take_unsent`: nothing to write, nothing more to take back, both rings free.
fn check_empty(sender: &mut Sender) -> Result<(), TestCaseError> {
    prop_assert!(!sender.has_output(), "output left after take_unsent");
    let mut slices = [IoSlice::new(&[]); 4];
    prop_assert_eq!(
        sender.transmit(&mut slices),
        0,
        "slices offered after take_unsent"
    );
    prop_assert!(
        sender.take_unsent().is_empty(),
        "a second take_unsent found messages"
    );
    for lane in [Lane::Tell, Lane::Ask] {
        prop_assert_eq!(
            sender.ring_bytes_in_use(lane),
            0,
            "{:?} ring still in use",
            lane
        );
    }
    Ok(())
}

/// On a new connection after `take_unsent`: with `fill`, each lane's ring takes exactly as
/// many frames at the threshold as fit in it and the next message streams; then a message
/// above the threshold and every handed-back message go out, and all of them arrive.
fn start_afresh(
    profile: Profile,
    crc32c: bool,
    mut sender: Sender,
    unsent: Vec<Outgoing>,
    fill: bool,
) -> Result<(), TestCaseError> {
    let sender = &mut sender;
    let (_, mut receiver) = profile.connect(crc32c);
    let threshold = profile.threshold();
    let mut expected = HashMap::new();
    let mut next_hash = AFTER_RESET;
    let mut offer = |sender: &mut Sender, kind, key, size| {
        let outgoing = message(next_hash, kind, key, size);
        next_hash += 1;
        expected.insert(outgoing.envelope.type_hash, outgoing.clone());
        sender
            .send(outgoing)
            .map_err(|e| TestCaseError::fail(e.to_string()))
    };

    if fill {
        let trailer = if crc32c { CRC_LEN } else { 0 };
        let fits = BufferConfig::MIN_RING_BUFFER_SIZE / (MESSAGE_HEADER_LEN + threshold + trailer);
        for (kind, key) in [(MessageKind::Tell, 100), (MessageKind::Ask, 101)] {
            for count in 0..fits {
                let route = offer(sender, kind, key, threshold)?;
                prop_assert_eq!(route, Route::Ring, "{:?} frame {} of {}", kind, count, fits);
            }
            let route = offer(sender, kind, key, threshold)?;
            prop_assert_eq!(
                route,
                Route::Stream,
                "{:?} ring took more than {}",
                kind,
                fits
            );
        }
    }
    let route = offer(sender, MessageKind::Tell, 102, threshold + 1)?;
    prop_assert_eq!(route, Route::Stream);

    let mut input = BytesMut::new();
    let mut arrived = Vec::new();
    for message in unsent {
        expected.insert(message.envelope.type_hash, message.clone());
        let mut message = message;
        loop {
            match sender.send(message) {
                Ok(_) => break,
                Err(SendError::Full { message: back }) => {
                    let (written, delivered) =
                        common::pump_once(sender, &mut receiver, &mut input, 64 * KIB);
                    prop_assert!(
                        written > 0,
                        "after the reset, message {} is refused as full with nothing to write \
                         (has_output: {})",
                        back.envelope.type_hash,
                        sender.has_output()
                    );
                    arrived.extend(delivered);
                    message = back;
                }
                Err(error) => return Err(TestCaseError::fail(error.to_string())),
            }
        }
    }
    while sender.has_output() {
        let (written, delivered) = common::pump_once(sender, &mut receiver, &mut input, 64 * KIB);
        prop_assert!(
            written > 0,
            "the sender has output after the reset but offers none; {} messages of {} arrived",
            arrived.len() + delivered.len(),
            expected.len()
        );
        arrived.extend(delivered);
    }

    prop_assert_eq!(arrived.len(), expected.len(), "messages after the reset");
    for message in arrived {
        let hash = message.envelope.type_hash;
        let original = expected.remove(&hash);
        prop_assert!(
            original.is_some(),
            "message {} arrived twice or unsent",
            hash
        );
        let original = original.unwrap();
        prop_assert_eq!(message.envelope, original.envelope);
        prop_assert!(
            message.payload == original.payload,
            "payload of message {}",
            hash
        );
    }
    Ok(())
}

/// A small exchange (about 4 KiB on the wire) that reaches every state a cut can find: ring
/// frames below and at the threshold on both lanes, streams of one and two chunks, messages
/// kept behind a stream of their key, an empty message, a stream held back by the peer's
/// limit of two open streams, and a write in the middle, so that for early cuts some
/// messages are accepted after the cut.
fn fixed_exchange(crc32c: bool) -> Exchange {
    let send = |kind, key, size| Op::Send {
        kind,
        key,
        size: Size::Tiny(size),
    };
    let (tell, ask, reply) = (MessageKind::Tell, MessageKind::Ask, MessageKind::Reply);
    Exchange {
        profile: Profile::Small,
        crc32c,
        ops: vec![
            send(tell, 1, 10),
            send(ask, 2, 600),
            send(tell, 1, 601),
            send(reply, 3, 1100),
            send(tell, 1, 5),
            send(tell, 4, 700),
            Op::Write(30_000),
            send(ask, 2, 0),
            send(tell, 5, 599),
            send(reply, 3, 100),
        ],
        piece_seed: 7,
    }
}

/// Checks every cut point of the fixed exchange, with and without the trailer, doing `then`
/// after the reset (and filling both rings after every 256th cut and the last, if `then` is
/// to fill them: a fill moves half a MiB).
fn every_cut(then: AfterReset) {
    for crc32c in [false, true] {
        let exchange = fixed_exchange(crc32c);
        let whole = exchange.whole_len().unwrap();
        for cut in 0..=whole {
            let then = match then {
                AfterReset::FillRings if cut % 256 != 0 && cut != whole => AfterReset::Send,
                then => then,
            };
            if let Err(error) = exchange.check(cut, then) {
                panic!("crc32c {crc32c}, cut after {cut} of {whole} bytes: {error}");
            }
        }
    }
}

/// Every cut point of the fixed exchange: each accepted message is delivered or handed back,
/// and the sender is left empty.
#[test]
fn every_cut_of_a_small_exchange_accounts_for_every_message() {
    every_cut(AfterReset::Nothing);
}

/// Every cut point of the fixed exchange: after `take_unsent` the sender carries new
/// messages and the handed-back ones on a new connection.
#[test]
fn after_every_cut_of_a_small_exchange_the_sender_starts_afresh() {
    every_cut(AfterReset::FillRings);
}

/// The smallest case of the above: a ring frame accepted and never written, taken back,
/// then one message above the threshold on the emptied sender. It must go out.
#[test]
fn a_stream_goes_out_after_unwritten_ring_frames_are_taken_back() {
    let config = ConnectionConfig::default();
    let mut sender = Sender::new(&config);
    let small = message(0, MessageKind::Tell, 1, 10);
    assert_eq!(sender.send(small.clone()).unwrap(), Route::Ring);
    assert_eq!(sender.take_unsent(), vec![small]);
    assert!(!sender.has_output());

    let threshold = sender.streaming_threshold(Lane::Tell);
    let large = message(1, MessageKind::Tell, 2, threshold + 1);
    assert_eq!(sender.send(large.clone()).unwrap(), Route::Stream);
    let mut receiver = Receiver::new(&config);
    let arrived = common::pump(&mut sender, &mut receiver, 64 * KIB);
    assert_eq!(arrived.len(), 1, "the stream did not go out");
    assert!(arrived[0].payload == large.payload);
}

/// `default` cases, or the value of `PROPTEST_CASES` when it is set.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        (0usize..=64).prop_map(Size::Tiny),
        (-2isize..=2).prop_map(Size::Near),
        any::<u16>().prop_map(Size::Upto),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let kind = prop::sample::select(&[MessageKind::Tell, MessageKind::Ask, MessageKind::Reply][..]);
    prop_oneof![
        3 => (kind, 0u64..4, size()).prop_map(|(kind, key, size)| Op::Send { kind, key, size }),
        1 => any::<u16>().prop_map(Op::Write),
    ]
}

fn exchange() -> impl Strategy<Value = Exchange> {
    let small = prop::collection::vec(op(), 1..=24);
    let ring = prop::collection::vec(op(), 1..=8);
    (
        prop_oneof![
            3 => small.prop_map(|ops| (Profile::Small, ops)),
            1 => ring.prop_map(|ops| (Profile::Ring, ops)),
        ],
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|((profile, ops), crc32c, piece_seed)| Exchange {
            profile,
            crc32c,
            ops,
            piece_seed,
        })
}

/// The cut for `share` (a fraction of 2^32) of an exchange `whole` bytes long: anywhere from
/// the first byte to an eighth past the last.
fn cut_at(whole: usize, share: u32) -> usize {
    ((u64::from(share) * (whole + whole / 8 + 1) as u64) >> 32) as usize
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(128),
        // Shrunk failures are printed; the fixed tests above hold the known cases.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// A random exchange cut at a random point: each accepted message is delivered or handed
    /// back, and the sender is left empty.
    #[test]
    fn a_cut_anywhere_accounts_for_every_message(exchange in exchange(), share in any::<u32>()) {
        let whole = exchange.whole_len()?;
        exchange.check(cut_at(whole, share), AfterReset::Nothing)?;
    }

    /// A random exchange cut at a random point: after `take_unsent` both rings take as many
    /// frames as fit, and the sender carries new messages and the handed-back ones on a new
    /// connection.
    #[test]
    fn after_a_cut_anywhere_the_sender_starts_afresh(
        exchange in exchange(),
        share in any::<u32>(),
    ) {
        let whole = exchange.whole_len()?;
        exchange.check(cut_at(whole, share), AfterReset::FillRings)?;
    }
}
