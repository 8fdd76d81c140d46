//! Compares moving a message from a ringwire `Sender` to a `Receiver` in memory with
//! tokio-util's length-delimited codec and with a plain memcpy of the same payload bytes, side
//! by side in one criterion group per payload size.
//!
//! The connection uses the default `ConnectionConfig`: a 1 MiB tell `BufferConfig` (streaming
//! threshold 1023 KiB) and 64 KiB stream chunks. So 64 B, 1 KiB and 122 KiB go by the ring
//! (one copy into the ring on send), 1 MiB and 5 MiB by a chunked stream (no copy on send,
//! one copy into the reassembly buffer on receive). Each benchmark asserts the route it means
//! to measure.
//!
//! The ringwire side of each iteration: `Sender::send` of a prebuilt `Bytes` (cloning it is a
//! reference count bump), then until the message is out, `Sender::transmit`, a copy of the
//! vectored slices to the receiver, `Sender::advance`, and `Receiver::decode` until it has
//! nothing more. That copy stands in for the socket, and goes where the adapters' reads go:
//! into the receiver's input `BytesMut`, or, inside a stream chunk, straight into the
//! stream's buffer (`Receiver::chunk_space`), which is zeroed first. Sender, receiver and
//! input buffer live across iterations, so the harness allocates only up front; the
//! reassembly buffer a stream needs on receive is the transport's cost and is measured.
//!
//! Small messages go in batches, reported as messages per second; large ones one per
//! iteration, reported as bytes per second. The memcpy baseline copies the same payloads into
//! a preallocated buffer and reports in the same unit, so the lines of a group compare
//! directly.
//!
//! The `ldc` line does the same batches with tokio-util's `LengthDelimitedCodec`, through its
//! `Encoder` and `Decoder` traits only: every message of the batch is encoded into one
//! `BytesMut` (a 4-byte length, then a copy of the payload), then decoded out of it until it
//! has nothing more (each frame split off without a copy). Its buffer, too, lives across
//! iterations and is reused from its start once drained. Unlike the ringwire line it has no
//! copy standing in for the socket: it is one copy per payload where ringwire's is two.

use std::hint::black_box;
use std::io::IoSlice;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use ringwire::{ConnectionConfig, Envelope, Outgoing, Receiver, Route, Sender};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Slices offered to `transmit` per call: more than the sender ever plans at once.
const SLICES: usize = 64;
/// A read right after a chunk's data takes at most this much, as in the adapters.
const TAIL: usize = 1024;

/// The length-delimited codec's frame limit: above the largest payload measured (its default,
/// 8 MiB, set here so that the benchmark does not depend on it).
const LDC_MAX_FRAME: usize = 8 * MIB;

/// The length-delimited codec's header: a big-endian `u32`.
const LDC_HEADER: usize = 4;

/// One benchmarked payload size.
struct Case {
    name: &'static str,
    size: usize,
    /// Messages per iteration. Above one, throughput is reported in messages.
    batch: usize,
    route: Route,
}

const CASES: [Case; 5] = [
    Case {
        name: "64B",
        size: 64,
        batch: 1000,
        route: Route::Ring,
    },
    // 1000 frames of 1 KiB plus headers would overflow the 1 MiB ring and fall back to
    // streaming; 500 keep the batch on the ring route.
    Case {
        name: "1KiB",
        size: KIB,
        batch: 500,
        route: Route::Ring,
    },
    Case {
        name: "122KiB",
        size: 122 * KIB,
        batch: 1,
        route: Route::Ring,
    },
    Case {
        name: "1MiB",
        size: MIB,
        batch: 1,
        route: Route::Stream,
    },
    Case {
        name: "5MiB",
        size: 5 * MIB,
        batch: 1,
        route: Route::Stream,
    },
];

/// A sender and a receiver joined by an in-memory buffer.
struct Pair {
    sender: Sender,
    receiver: Receiver,
    input: BytesMut,
    /// The last read ended inside or at the end of a chunk's data.
    after_chunk: bool,
}

impl Pair {
    fn new(config: &ConnectionConfig, input_capacity: usize) -> Self {
        Self {
            sender: Sender::new(config),
            receiver: Receiver::new(config),
            input: BytesMut::with_capacity(input_capacity),
            after_chunk: false,
        }
    }

    /// Sends `batch` copies of `payload`, moves every output byte to the receiver and
    /// returns the number of messages that came out.
    fn round_trip(&mut self, payload: &Bytes, batch: usize, route: Route) -> usize {
        for _ in 0..batch {
            let message = Outgoing::new(Envelope::tell(1), payload.clone());
            let sent = self
                .sender
                .send(message)
                .expect("the ring or stream queue has room");
            assert_eq!(sent, route);
        }

        let mut received = 0;
        loop {
            let mut slices = [IoSlice::new(&[]); SLICES];
            let count = self.sender.transmit(&mut slices);
            if count == 0 {
                break;
            }
            let mut written = 0;
            for slice in &slices[..count] {
                let mut rest: &[u8] = slice;
                while !rest.is_empty() {
                    let read = socket_read(
                        &mut self.receiver,
                        &mut self.input,
                        &mut self.after_chunk,
                        rest,
                    );
                    rest = &rest[read..];
                    while let Some(message) = self.receiver.decode(&mut self.input).expect("valid")
                    {
                        black_box(&message);
                        received += 1;
                    }
                }
                written += slice.len();
            }
            self.sender.advance(written);
            // Gets the space of the decoded frames back once their payloads are dropped,
            // without allocating.
            self.input.reserve(written);
        }
        received
    }
}

/// Copies the front of `wire` the way the adapters read a socket, and returns how many bytes
/// it took: straight into the stream's buffer while inside a chunk, otherwise into the input
/// buffer, and only a short read right after a chunk.
fn socket_read(
    receiver: &mut Receiver,
    input: &mut BytesMut,
    after_chunk: &mut bool,
    wire: &[u8],
) -> usize {
    if let Some(mut space) = receiver.chunk_space(input, usize::MAX) {
        let read = space.len().min(wire.len());
        space[..read].copy_from_slice(&wire[..read]);
        space.fill(read);
        *after_chunk = true;
        return read;
    }
    let limit = if *after_chunk { TAIL } else { wire.len() };
    let read = limit.min(wire.len());
    input.extend_from_slice(&wire[..read]);
    *after_chunk = false;
    read
}

/// tokio-util's length-delimited codec with the one buffer it encodes into and decodes from.
struct Ldc {
    codec: LengthDelimitedCodec,
    buffer: BytesMut,
}

impl Ldc {
    /// A codec whose buffer holds one whole batch of `payload_size` frames.
    fn new(payload_size: usize, batch: usize) -> Self {
        Self {
            codec: LengthDelimitedCodec::builder()
                .max_frame_length(LDC_MAX_FRAME)
                .new_codec(),
            buffer: BytesMut::with_capacity(batch * (LDC_HEADER + payload_size)),
        }
    }

    /// Encodes `batch` copies of `payload`, decodes every frame and returns how many came out.
    fn round_trip(&mut self, payload: &Bytes, batch: usize) -> usize {
        for _ in 0..batch {
            self.codec
                .encode(payload.clone(), &mut self.buffer)
                .expect("the payload is under the frame limit");
        }

        let mut received = 0;
        while let Some(frame) = self.codec.decode(&mut self.buffer).expect("valid") {
            black_box(&frame);
            received += 1;
        }
        // As for ringwire's input buffer: once the frames are dropped, the space they held is
        // taken back without allocating.
        self.buffer.reserve(batch * (LDC_HEADER + payload.len()));
        received
    }
}

/// Copies `batch` payloads into `dst` one after the other.
fn memcpy(src: &[u8], dst: &mut [u8], batch: usize) {
    for slot in dst.chunks_exact_mut(src.len()).take(batch) {
        slot.copy_from_slice(black_box(src));
    }
    black_box(dst);
}

fn bench_case(group: &mut BenchmarkGroup<'_, WallTime>, config: &ConnectionConfig, case: &Case) {
    let payload = Bytes::from((0..case.size).map(|i| i as u8).collect::<Vec<u8>>());
    let throughput = if case.batch > 1 {
        Throughput::Elements(case.batch as u64)
    } else {
        Throughput::Bytes(case.size as u64)
    };
    group.throughput(throughput);

    // Sized like an adapter's read buffer: two chunks, or one whole ring frame if larger,
    // since a ring frame is handed out only once all of it is in. A buffer the size of a
    // whole 5 MiB stream would be refilled from its start only when full, so every copy into
    // it would miss the cache, which is the harness's cost, not the transport's.
    let two_chunks = 2 * (config.chunk_size() + KIB);
    let input_capacity = match case.route {
        Route::Ring => two_chunks.max(case.size + 2 * KIB),
        Route::Stream => two_chunks,
    };
    let mut pair = Pair::new(config, input_capacity);
    group.bench_function("ringwire", |b| {
        b.iter(|| {
            let received = pair.round_trip(&payload, case.batch, case.route);
            assert_eq!(received, case.batch);
        });
    });

    let mut ldc = Ldc::new(case.size, case.batch);
    group.bench_function("ldc", |b| {
        b.iter(|| {
            let received = ldc.round_trip(&payload, case.batch);
            assert_eq!(received, case.batch);
        });
    });

    let mut dst = vec![0u8; case.size * case.batch];
    group.bench_function("memcpy", |b| {
        b.iter(|| memcpy(&payload, &mut dst, case.batch));
    });
}

fn transport(c: &mut Criterion) {
    // Default configuration: a 1 MiB tell BufferConfig.
    let config = ConnectionConfig::default();
    assert_eq!(config.tell_buffer_config().ring_buffer_size(), MIB);

    for case in &CASES {
        let mut group = c.benchmark_group(format!("transport/{}", case.name));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        if case.size >= 122 * KIB {
            group.sample_size(20);
        }
        bench_case(&mut group, &config, case);
        group.finish();
    }
}

// What `criterion_group!` and `criterion_main!` would generate, written out because the
// generated function carries no doc comment and the workspace denies missing docs.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    transport(&mut criterion);
    criterion.final_summary();
}
