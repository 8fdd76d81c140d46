//! One-way throughput over loopback TCP on each runtime: ringwire beside the ways a user would
//! otherwise move the same messages, in one criterion group per runtime and payload size.
//!
//! For each runtime (tokio, async-std, smol) and size, four entries send the same batch of
//! payloads from a client to a server over 127.0.0.1 with `TCP_NODELAY`:
//!
//! - `ringwire`: `connect` and `accept` with the default `Options`, `Connection::tell` of each
//!   message to one key; the server's task loops on `Inbox::recv`.
//! - `raw`: `write_all` of each payload, back to back, with no framing; the server reads into
//!   a 64 KiB buffer until it has the batch's bytes. What any framing adds is measured
//!   against this.
//! - `ldc`: tokio-util's `FramedWrite` and `FramedRead` with `LengthDelimitedCodec`: `feed`
//!   of each message, one `flush` per batch. On async-std and smol the streams are adapted
//!   with `tokio_util::compat`, so the codec is the same.
//! - `handwritten`: a big-endian `u32` length, then the payload, into a `BufWriter` flushed
//!   once per batch; the server reads the length, then `read_exact`s the payload into a
//!   reused `Vec`, through a `BufReader` (tokio's on tokio, futures-util's on the others).
//!
//! One iteration sends one batch and ends when the server's task reports that the whole batch
//! is in: the time runs until the last message has been received, not until it was written.
//! Each entry's connection and server task are set up once, outside the measurement, and
//! closed after it. The client runs on the benchmark's thread (`block_on`); the server's task
//! and ringwire's connection drivers run on the runtime's executor: tokio's multi-threaded
//! runtime with its default worker count, async-std's global executor, and smol's global
//! executor (one thread unless `SMOL_THREADS` says otherwise).
//!
//! Below 122 KiB throughput is reported in messages per second, from 122 KiB in bytes per
//! second. Criterion's filter argument picks a runtime or a size, as in
//! `cargo bench --bench loopback -- loopback/smol/1MiB`.

mod entries;
mod runtimes;

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};

use entries::{Done, Report, Writer};
use runtimes::{AsyncStd, BenchRuntime, Smol, Tokio};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// One benchmarked payload size.
struct Case {
    name: &'static str,
    size: usize,
    /// Messages per iteration: enough that one takes about a millisecond or more, so that the
    /// report at the end of each batch is a small part of it. Sizes that go by ringwire's
    /// 1 MiB ring send no more than it holds: a longer burst overflows it and goes on as
    /// streams, which is another path.
    batch: usize,
}

const CASES: [Case; 5] = [
    Case {
        name: "64B",
        size: 64,
        batch: 5000,
    },
    Case {
        name: "1KiB",
        size: KIB,
        batch: 500,
    },
    // Eight fill the ring; in a trial run, bursts of sixteen overflowed it and nearly half of
    // the messages went as streams.
    Case {
        name: "122KiB",
        size: 122 * KIB,
        batch: 8,
    },
    Case {
        name: "1MiB",
        size: MIB,
        batch: 4,
    },
    Case {
        name: "5MiB",
        size: 5 * MIB,
        batch: 1,
    },
];

impl Case {
    /// Messages per second below 122 KiB, bytes per second from there, as in the core bench.
    fn throughput(&self) -> Throughput {
        if self.size < 122 * KIB {
            Throughput::Elements(self.batch as u64)
        } else {
            Throughput::Bytes((self.size * self.batch) as u64)
        }
    }
}

/// One entry's client and the channel its server's task reports on.
struct Link<W> {
    writer: W,
    done: async_channel::Receiver<Report>,
}

impl<W: Writer> Link<W> {
    /// Sends `iterations` batches, each once the previous one is all in, and returns the time
    /// from the first write to the report that the last batch is in.
    async fn run(&mut self, payload: &Bytes, batch: usize, iterations: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..iterations {
            self.writer
                .write_batch(payload, batch)
                .await
                .expect("the client writes its batch");
            match self.done.recv().await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => panic!("the server failed: {error}"),
                Err(_) => panic!("the server's task ended before the batch was in"),
            }
        }
        start.elapsed()
    }

    /// Closes the connection and waits until the server's task has ended, so that it does
    /// not run on into the next entry.
    async fn finish(self) {
        self.writer.finish().await;
        while self.done.recv().await.is_ok() {}
    }
}

/// Measures one entry. The connection is made the first time criterion runs the entry, so an
/// entry its filter leaves out costs nothing, and is closed after the last sample.
fn bench_entry<R, W, F, Fut>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &R,
    name: &str,
    payload: &Bytes,
    batch: usize,
    connect: F,
) where
    R: BenchRuntime,
    W: Writer,
    F: Fn(Done) -> Fut,
    Fut: Future<Output = io::Result<W>>,
{
    let mut link = None;
    group.bench_function(name, |b| {
        let link = link.get_or_insert_with(|| {
            let (done, reports) = async_channel::bounded(1);
            let writer = runtime
                .block_on(connect(done))
                .expect("a loopback connection");
            Link {
                writer,
                done: reports,
            }
        });
        b.iter_custom(|iterations| runtime.block_on(link.run(payload, batch, iterations)));
    });
    if let Some(link) = link {
        runtime.block_on(link.finish());
    }
}

fn bench_runtime<R: BenchRuntime>(c: &mut Criterion, runtime: &R) {
    for case in &CASES {
        let payload = Bytes::from((0..case.size).map(|i| i as u8).collect::<Vec<u8>>());
        let mut group = c.benchmark_group(format!("loopback/{}/{}", R::NAME, case.name));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(2));
        group.sample_size(10);
        group.throughput(case.throughput());

        bench_entry(
            &mut group,
            runtime,
            "ringwire",
            &payload,
            case.batch,
            |done| runtime.ringwire(case, done),
        );
        bench_entry(&mut group, runtime, "raw", &payload, case.batch, |done| {
            runtime.raw(case, done)
        });
        bench_entry(&mut group, runtime, "ldc", &payload, case.batch, |done| {
            runtime.ldc(case, done)
        });
        bench_entry(
            &mut group,
            runtime,
            "handwritten",
            &payload,
            case.batch,
            |done| runtime.handwritten(case, done),
        );
        group.finish();
    }
}

// What `criterion_group!` and `criterion_main!` would generate, written out because the
// generated function carries no doc comment and the workspace denies missing docs.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_runtime(&mut criterion, &Tokio::new());
    bench_runtime(&mut criterion, &AsyncStd);
    bench_runtime(&mut criterion, &Smol);
    criterion.final_summary();
}
