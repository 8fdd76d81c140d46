//! Throughput of ringwire's routing by derived threshold, against a router with a fixed
//! constant threshold, on the same mixed workload in memory.
//!
//! Both move messages from core `Sender`s to core `Receiver`s through an in-memory buffer:
//! `transmit` into vectored slices, a copy of the slices onto the end of the receiver's input,
//! `advance`, and `decode` until nothing more comes out.
//!
//! - **derived**: one `Sender`/`Receiver` pair with one `ConnectionConfig`. Every message goes
//!   to `Sender::send`, which compares its size with the threshold derived from the lane's
//!   `BufferConfig` and picks the ring or a stream.
//! - **fixed**: the old design's router, a constant threshold chosen apart from any ring size.
//!   The router compares each message's size with the constant itself and hands it to one of
//!   two pairs: messages at or under the constant to a "ring" pair, larger ones to a "stream"
//!   pair. It drains whichever pairs have output.
//!
//! The core has no way to force a route, so each pair of the fixed router is configured so
//! that its own derived threshold agrees with the constant: both have the same `BufferConfig`
//! as the derived router, whose threshold is the constant. Every message therefore takes the
//! same route under both routers, which the run checks on every send, and what differs is the
//! routing machinery alone: one sender deciding, against a constant compare in front of two
//! senders, two receivers and two input buffers. Keeping the ring sizes equal also keeps the
//! memory the rings cycle through equal, which would otherwise differ in cache behaviour for
//! reasons that have nothing to do with routing.
//!
//! Two configurations: 256 KiB rings with the constant at 255 KiB, and 1 MiB rings with the
//! constant at 1023 KiB, the value the old system hard-coded.

use std::hint::black_box;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ringwire::{BufferConfig, ConnectionConfig, Envelope, Outgoing, Receiver, Route, Sender};

use crate::stats;
use crate::{KIB, Result};

/// The size ladder, in KiB; one message of each per pass, each after a batch of small ones.
const LADDER_KIB: [usize; 9] = [1, 10, 100, 250, 300, 500, 1024, 2048, 5120];
/// Sizes of the small messages, cycled through.
const SMALL_SIZES: [usize; 4] = [64, 256, 1024, 64];
/// Small messages sent before each ladder message and drained together. Their frames fit in
/// the smallest ring many times over, so none falls back to streaming.
const SMALL_BATCH: usize = 100;
/// Batches in a small pass.
const SMALL_ONLY_BATCHES: usize = 10;
/// Rounds of the two routers taking turns, each going first in every other round.
const ROUNDS: usize = 30;
/// Passes of each router before measuring.
const WARM_UP_PASSES: usize = 5;
/// About how long one router's share of a round lasts.
const ROUND_TIME: Duration = Duration::from_millis(40);
/// Slices offered to `transmit`: more than a sender plans at once.
const SLICES: usize = 64;
/// The target: the derived router's throughput at least this share of the fixed router's.
const TARGET_RATIO: f64 = 0.9;

pub(crate) fn run() -> Result<()> {
    println!(
        "in memory, core Sender -> Receiver; {ROUNDS} rounds, the two routers alternating; \
         rates are medians over rounds (min .. max)\n\
         mixed pass: for each of {LADDER_KIB:?} KiB, {SMALL_BATCH} small tells \
         ({SMALL_SIZES:?} B) then the ladder tell, each batch drained before the next\n\
         small pass: {SMALL_ONLY_BATCHES} batches of {SMALL_BATCH} tells of {} B, each drained \
         before the next\n",
        SMALL_SIZES[0]
    );
    for ring in [256 * KIB, 1024 * KIB] {
        let buffer = BufferConfig::new(ring)?;
        let threshold = buffer.streaming_threshold();
        println!(
            "{} rings: derived threshold {}, fixed constant {}",
            stats::bytes(ring),
            stats::bytes(threshold),
            stats::bytes(threshold)
        );
        compare(buffer, "mixed", &Workload::mixed(threshold))?;
        compare(buffer, "small", &Workload::small(threshold))?;
        println!();
    }
    Ok(())
}

/// Both routers on `workload` under `buffer`, side by side.
fn compare(buffer: BufferConfig, name: &str, workload: &Workload) -> Result<()> {
    let config = ConnectionConfig::builder()
        .tell_buffer_config(buffer)
        .build()?;
    let mut derived = Derived {
        pair: Pair::new(&config),
    };
    let mut fixed = Fixed {
        constant: buffer.streaming_threshold(),
        ring: Pair::new(&config),
        stream: Pair::new(&config),
    };

    // Warm up both, then size a round's share from the time a few passes take.
    for _ in 0..WARM_UP_PASSES {
        workload.pass(&mut derived)?;
        workload.pass(&mut fixed)?;
    }
    let started = Instant::now();
    for _ in 0..WARM_UP_PASSES {
        workload.pass(&mut derived)?;
    }
    let per_pass = started.elapsed() / WARM_UP_PASSES as u32;
    let passes = (ROUND_TIME.as_secs_f64() / per_pass.as_secs_f64()).ceil() as usize;
    let passes = passes.max(1);

    let mut derived_rates = Vec::with_capacity(ROUNDS);
    let mut fixed_rates = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let derived_first = round % 2 == 0;
        if derived_first {
            derived_rates.push(workload.passes_per_second(&mut derived, passes)?);
        }
        fixed_rates.push(workload.passes_per_second(&mut fixed, passes)?);
        if !derived_first {
            derived_rates.push(workload.passes_per_second(&mut derived, passes)?);
        }
    }

    let derived_median = median(&mut derived_rates);
    let fixed_median = median(&mut fixed_rates);
    let ratio = derived_median / fixed_median;
    println!(
        "  {name} pass: {} messages, {} of payload; {passes} passes per round",
        workload.messages,
        stats::bytes(workload.bytes)
    );
    for (router, rates, median) in [
        (
            "derived threshold (ringwire)",
            &derived_rates,
            derived_median,
        ),
        ("fixed constant, two pairs", &fixed_rates, fixed_median),
    ] {
        println!(
            "    {router:<30} {:>7.2} GiB/s {:>7.2} M msg/s  ({:.2} .. {:.2} GiB/s)",
            workload.gib(median),
            workload.mega_messages(median),
            workload.gib(rates[0]),
            workload.gib(rates[rates.len() - 1])
        );
    }
    println!(
        "    derived / fixed: {ratio:.3}; target within 10% (>= {TARGET_RATIO}): {}",
        stats::verdict(ratio >= TARGET_RATIO)
    );
    Ok(())
}

/// The median of `rates`, which it sorts.
fn median(rates: &mut [f64]) -> f64 {
    rates.sort_unstable_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// A way to route messages and move them across.
trait Router {
    /// Accepts one message and says which route it took.
    fn send(&mut self, message: Outgoing) -> Result<Route>;
    /// Moves every output byte to the receivers; returns the messages that came out.
    fn drain(&mut self) -> Result<usize>;
}

/// Routing by the threshold the sender derives from its configuration.
struct Derived {
    pair: Pair,
}

impl Router for Derived {
    fn send(&mut self, message: Outgoing) -> Result<Route> {
        self.pair.send(message)
    }

    fn drain(&mut self) -> Result<usize> {
        self.pair.drain()
    }
}

/// Routing by a constant, in front of one pair per route.
struct Fixed {
    constant: usize,
    ring: Pair,
    stream: Pair,
}

impl Router for Fixed {
    fn send(&mut self, message: Outgoing) -> Result<Route> {
        if message.payload.len() <= self.constant {
            self.ring.send(message)
        } else {
            self.stream.send(message)
        }
    }

    fn drain(&mut self) -> Result<usize> {
        let mut received = 0;
        for pair in [&mut self.ring, &mut self.stream] {
            if pair.sender.has_output() {
                received += pair.drain()?;
            }
        }
        Ok(received)
    }
}

/// A sender and a receiver joined by an in-memory buffer.
struct Pair {
    sender: Sender,
    receiver: Receiver,
    input: BytesMut,
}

impl Pair {
    fn new(config: &ConnectionConfig) -> Self {
        // Room for two chunks, or a whole ring frame, which is decoded only once all of it
        // is in.
        let threshold = config.tell_buffer_config().streaming_threshold();
        let capacity = (2 * config.chunk_size()).max(threshold) + 2 * KIB;
        Self {
            sender: Sender::new(config),
            receiver: Receiver::new(config),
            input: BytesMut::with_capacity(capacity),
        }
    }

    fn send(&mut self, message: Outgoing) -> Result<Route> {
        Ok(self.sender.send(message)?)
    }

    fn drain(&mut self) -> Result<usize> {
        let mut received = 0;
        loop {
            let mut slices = [IoSlice::new(&[]); SLICES];
            let count = self.sender.transmit(&mut slices);
            if count == 0 {
                return Ok(received);
            }
            let mut written = 0;
            for slice in &slices[..count] {
                self.input.extend_from_slice(slice);
                written += slice.len();
            }
            self.sender.advance(written);
            while let Some(message) = self.receiver.decode(&mut self.input)? {
                black_box(&message);
                received += 1;
            }
            // Takes back the room of decoded frames once their payloads are dropped.
            self.input.reserve(written);
        }
    }
}

/// The messages of one pass, in order, with the route each must take.
struct Workload {
    /// Messages sent before each drain.
    steps: Vec<Vec<(Outgoing, Route)>>,
    /// Messages per pass.
    messages: usize,
    /// Payload bytes per pass.
    bytes: usize,
}

impl Workload {
    /// The mixed pass for a threshold of `threshold` bytes: the ladder, each rung after a
    /// batch of small messages.
    fn mixed(threshold: usize) -> Self {
        let small: Vec<Bytes> = SMALL_SIZES.iter().map(|&size| payload(size)).collect();
        let mut steps = Vec::new();
        for (index, kib) in LADDER_KIB.into_iter().enumerate() {
            steps.push(small_batch(&small, threshold));
            let size = kib * KIB;
            let message = Outgoing::new(Envelope::tell(index as u64), payload(size));
            steps.push(vec![(message, route(size, threshold))]);
        }
        Self::of(steps)
    }

    /// The small pass: batches of the smallest size only, where the routing decision is the
    /// largest share of the work per message.
    fn small(threshold: usize) -> Self {
        let small = [payload(SMALL_SIZES[0])];
        let steps = (0..SMALL_ONLY_BATCHES)
            .map(|_| small_batch(&small, threshold))
            .collect();
        Self::of(steps)
    }

    fn of(steps: Vec<Vec<(Outgoing, Route)>>) -> Self {
        let messages = steps.iter().map(Vec::len).sum();
        let bytes = steps
            .iter()
            .flatten()
            .map(|(message, _)| message.payload.len())
            .sum();
        Self {
            steps,
            messages,
            bytes,
        }
    }

    /// Sends every message once through `router`, checking each route and that every message
    /// comes out.
    fn pass(&self, router: &mut impl Router) -> Result<()> {
        for step in &self.steps {
            for (message, expected) in step {
                let route = router.send(message.clone())?;
                if route != *expected {
                    return Err(format!(
                        "a {}-byte message went by {route:?}, not {expected:?}",
                        message.payload.len()
                    )
                    .into());
                }
            }
            let received = router.drain()?;
            if received != step.len() {
                return Err(format!("{received} of {} messages came out", step.len()).into());
            }
        }
        Ok(())
    }

    /// Runs `passes` passes and returns how many passes went per second.
    fn passes_per_second(&self, router: &mut impl Router, passes: usize) -> Result<f64> {
        let started = Instant::now();
        for _ in 0..passes {
            self.pass(router)?;
        }
        Ok(passes as f64 / started.elapsed().as_secs_f64())
    }

    /// Payload GiB per second at `passes_per_second`.
    fn gib(&self, passes_per_second: f64) -> f64 {
        passes_per_second * self.bytes as f64 / (1u64 << 30) as f64
    }

    /// Millions of messages per second at `passes_per_second`.
    fn mega_messages(&self, passes_per_second: f64) -> f64 {
        passes_per_second * self.messages as f64 / 1e6
    }
}

/// `SMALL_BATCH` messages cycling through `payloads`, each to its own key, as many actors
/// would be, with the route each must take under `threshold`.
fn small_batch(payloads: &[Bytes], threshold: usize) -> Vec<(Outgoing, Route)> {
    (0..SMALL_BATCH)
        .map(|i| {
            let bytes = payloads[i % payloads.len()].clone();
            let route = route(bytes.len(), threshold);
            (Outgoing::new(Envelope::tell(100 + i as u64), bytes), route)
        })
        .collect()
}

/// The route a payload of `size` bytes takes under `threshold`: at or under it by ring,
/// above by stream.
fn route(size: usize, threshold: usize) -> Route {
    if size <= threshold {
        Route::Ring
    } else {
        Route::Stream
    }
}

/// `size` bytes of a counting pattern.
fn payload(size: usize) -> Bytes {
    Bytes::from((0..size).map(|i| i as u8).collect::<Vec<u8>>())
}
