//! The heap of a sender whose peer has stopped reading, against the bound its configuration
//! promises.
//!
//! The peer is a plain thread on a blocking socket: it writes a ringwire `HELLO` (made by the
//! sans-IO core) so that the client's handshake completes, then never reads a byte. It
//! allocates nothing after its socket is set up, so every byte the counting allocator sees
//! grow from then on is the sending side's: the client's connection and the sender tasks.
//!
//! The client, on tokio with the default configuration, runs `SENDERS` tasks for `LOAD`, each
//! sending a fixed mix of sizes from 64 B to 2 MiB: `try_tell` up to `TRY_TELL_MAX`, with a
//! short sleep when it is refused, and `tell` under a `TELL_TIMEOUT` above. Each payload is a
//! fresh allocation, as an application's would be, and counts as "in hand" until the send
//! returns. Both sockets' kernel buffers are set small and known, so that the bytes the kernel
//! has taken, whose payloads the sender still holds until their stream is complete, are
//! bounded too. A sampler thread reads the heap every `SAMPLE_EVERY`.
//!
//! At the end the peer drops its socket; the connection is lost, the messages it had accepted
//! come back from `take_unsent` and are dropped, and the heap is read once more.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwire::net::{Connection, Options};
use ringwire::{Route, SendError};
use socket2::{Domain, Socket, Type};

use crate::stats;
use crate::{HEAP, KIB, MIB, Result};

const SENDERS: usize = 4;
const LOAD: Duration = Duration::from_secs(3);
/// Payload sizes each sender cycles through, starting at a different place per sender.
const SIZES: [usize; 12] = [
    64,
    64,
    KIB,
    64,
    16 * KIB,
    64,
    122 * KIB,
    KIB,
    MIB,
    64,
    300 * KIB,
    2 * MIB,
];
/// Sizes up to this go by `try_tell`, larger ones by `tell` with a timeout.
const TRY_TELL_MAX: usize = 16 * KIB;
const TELL_TIMEOUT: Duration = Duration::from_millis(20);
/// How long a sender waits after `try_tell` was refused.
const REFUSED_PAUSE: Duration = Duration::from_millis(1);
/// Asked-for `SO_SNDBUF` of the client and `SO_RCVBUF` of the peer; the kernel may double it.
const SOCKET_BUFFER: usize = 256 * KIB;
const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// Samples printed as a time line.
const TIME_LINE_POINTS: usize = 12;
/// Longest wait for the connection to notice that the peer has gone.
const LOSS_LIMIT: Duration = Duration::from_secs(10);

/// What the sender tasks did, summed.
#[derive(Clone, Copy, Debug, Default)]
struct Sends {
    ring: usize,
    stream: usize,
    refused: usize,
    timed_out: usize,
}

/// One reading of the heap.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    heap: usize,
    in_hand: usize,
    /// The connection's own gauge of stream payloads it holds (`stream_bytes_held`).
    held: u64,
}

/// What was read during the load.
#[derive(Debug)]
struct Readings {
    /// Heap in use before the load: the runtime, the connection with its rings, the peer.
    before: usize,
    /// The allocator's high-water mark before and after the load.
    high_water_before: usize,
    high_water: usize,
    /// Heap in use once every sender has stopped.
    at_end: usize,
    samples: Vec<Sample>,
    sends: Sends,
    metrics: ringwire::Metrics,
}

impl Readings {
    /// The largest sampled heap above `before`, less what the senders held at that moment.
    fn held_peak(&self) -> usize {
        self.samples
            .iter()
            .map(|sample| sample.heap.saturating_sub(self.before + sample.in_hand))
            .max()
            .unwrap_or(0)
    }

    /// The largest sampled reading of the connection's gauge of stream payloads held.
    fn gauge_peak(&self) -> u64 {
        self.samples
            .iter()
            .map(|sample| sample.held)
            .max()
            .unwrap_or(0)
    }

    /// The high-water mark reached during the load, if it went above every earlier one.
    fn peak(&self) -> Option<usize> {
        (self.high_water > self.high_water_before).then_some(self.high_water)
    }
}

/// The memory the configuration promises the sending side holds at most above the heap
/// before the load, part by part.
#[derive(Debug)]
struct Bound {
    /// Payload bytes waiting in the stream queue: `max_queued_stream_bytes`.
    queued: usize,
    /// Payload the kernel has taken and the sender still holds, because a stream's payload is
    /// released only once all of it is written: at most both socket buffers, since the peer
    /// reads nothing.
    kernel: usize,
    /// Output planned ahead of the socket: about one chunk, plus the segment that crosses it.
    planned: usize,
    /// Payloads the sender tasks have made and not yet handed over or dropped.
    in_hand: usize,
    /// Both lanes' rings, allocated whole at the handshake: part of the heap before the load.
    rings: usize,
}

impl Bound {
    fn connection(&self) -> usize {
        self.queued + self.kernel + self.planned
    }
}

pub(crate) fn run() -> Result<()> {
    let options = Options::default();
    let config = options.config;
    let runtime = crate::runtime()?;

    let peer = StalledPeer::start(&options)?;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_send_buffer_size(SOCKET_BUFFER)?;
    socket.connect(&peer.addr.into())?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    let send_buffer = socket.send_buffer_size()?;
    let stream = TcpStream::from(socket);
    let (connection, inbox) = runtime.block_on(async {
        let stream = tokio::net::TcpStream::from_std(stream)?;
        let connected: Result<_> = Ok(ringwire::tokio::wrap(stream, options).await?);
        connected
    })?;

    let readings = load(&runtime, &connection)?;

    // The peer goes; the connection is lost and hands back what it had accepted.
    let receive_buffer = peer.receive_buffer;
    peer.stop()?;
    let lost_by = Instant::now() + LOSS_LIMIT;
    while connection.is_open() && Instant::now() < lost_by {
        thread::sleep(Duration::from_millis(10));
    }
    if connection.is_open() {
        return Err("the connection did not notice that the peer was gone".into());
    }
    let unsent = connection.take_unsent();
    let unsent_bytes: usize = unsent.iter().map(|message| message.payload.len()).sum();
    let unsent_count = unsent.len();
    drop(unsent);
    let after_loss = HEAP.allocated();
    drop((connection, inbox));
    drop(runtime);

    let bound = Bound {
        queued: config.max_queued_stream_bytes() as usize,
        kernel: send_buffer + receive_buffer,
        planned: 2 * config.chunk_size(),
        in_hand: SENDERS * SIZES.iter().max().copied().unwrap_or(0),
        rings: config.tell_buffer_config().ring_buffer_size()
            + config.ask_buffer_config().ring_buffer_size(),
    };

    println!(
        "a tokio sender ({SENDERS} tasks, sizes 64 B .. 2 MiB, fresh payloads) for {LOAD:?} \
         against a peer that never reads;\ndefault configuration; heap bytes in use counted by \
         the global allocator, sampled every {SAMPLE_EVERY:?}\n"
    );
    let (sends, metrics) = (readings.sends, readings.metrics.send);
    println!(
        "sends: {} by ring, {} by stream, {} refused (try_tell), {} timed out (tell)",
        sends.ring, sends.stream, sends.refused, sends.timed_out
    );
    println!(
        "connection counters: {} ring sends, {} streamed ({} fallbacks), {} refusals",
        metrics.ring_sends,
        metrics.streaming_sends,
        metrics.streaming_fallbacks,
        metrics.backpressure_refusals
    );
    println!(
        "kernel socket buffers (outside the heap): client SO_SNDBUF {}, peer SO_RCVBUF {}\n",
        stats::bytes(send_buffer),
        stats::bytes(receive_buffer)
    );
    print_time_line(&readings.samples, readings.before);
    print_heap(&readings, after_loss, unsent_count, unsent_bytes);
    print_bound(&readings, &bound);
    Ok(())
}

/// Runs the sender tasks for `LOAD` while a thread samples the heap.
fn load(runtime: &tokio::runtime::Runtime, connection: &Connection) -> Result<Readings> {
    let in_hand = Arc::new(AtomicUsize::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    // Room for every sample, made before the heap is read, so that the sampler does not
    // allocate while it samples.
    let mut samples =
        Vec::with_capacity(2 * (LOAD.as_millis() / SAMPLE_EVERY.as_millis()) as usize);

    let before = HEAP.allocated();
    let high_water_before = HEAP.max_allocated();
    let sampler = {
        let in_hand = in_hand.clone();
        let sampling = sampling.clone();
        let connection = connection.clone();
        thread::spawn(move || {
            let start = Instant::now();
            while sampling.load(Ordering::Acquire) && samples.len() < samples.capacity() {
                samples.push(Sample {
                    at: start.elapsed(),
                    heap: HEAP.allocated(),
                    in_hand: in_hand.load(Ordering::Relaxed),
                    held: connection.metrics().send.stream_bytes_held,
                });
                thread::sleep(SAMPLE_EVERY);
            }
            samples
        })
    };

    let deadline = Instant::now() + LOAD;
    let sends = runtime.block_on(async {
        let tasks: Vec<_> = (0..SENDERS)
            .map(|index| {
                let sending = send_for(connection.clone(), index, deadline, in_hand.clone());
                tokio::spawn(sending)
            })
            .collect();
        let mut sends = Sends::default();
        for task in tasks {
            let done = task.await??;
            sends.ring += done.ring;
            sends.stream += done.stream;
            sends.refused += done.refused;
            sends.timed_out += done.timed_out;
        }
        let sends: Result<_> = Ok(sends);
        sends
    })?;

    let at_end = HEAP.allocated();
    sampling.store(false, Ordering::Release);
    let samples = sampler.join().map_err(|_| "the sampler thread panicked")?;
    Ok(Readings {
        before,
        high_water_before,
        high_water: HEAP.max_allocated(),
        at_end,
        samples,
        sends,
        metrics: connection.metrics(),
    })
}

/// Prints the heap before, at the peak, at the end and after the loss.
fn print_heap(readings: &Readings, after_loss: usize, unsent_count: usize, unsent_bytes: usize) {
    let before = readings.before;
    let above = |bytes: usize| {
        if bytes >= before {
            format!("+{}", stats::bytes(bytes - before))
        } else {
            format!("-{}", stats::bytes(before - bytes))
        }
    };
    println!(
        "\n{:<52} {:>12}  {:>12}",
        "heap in use", "bytes", "above before"
    );
    println!(
        "{:<52} {:>12}",
        "before the load (rings already allocated)",
        stats::bytes(before)
    );
    match readings.peak() {
        Some(peak) => println!(
            "{:<52} {:>12}  {:>12}",
            "peak (allocator high-water mark)",
            stats::bytes(peak),
            above(peak)
        ),
        None => println!(
            "{:<52} an earlier peak of the process was higher",
            "peak (allocator high-water mark)"
        ),
    }
    println!(
        "{:<52} {:>12}  {:>12}",
        "peak held by the connection (sampled, less in hand)",
        "",
        format!("+{}", stats::bytes(readings.held_peak()))
    );
    println!(
        "{:<52} {:>12}  {:>12}",
        "peak of the connection's gauge (stream_bytes_held)",
        "",
        stats::bytes(readings.gauge_peak() as usize)
    );
    println!(
        "{:<52} {:>12}  {:>12}",
        "at the end of the load",
        stats::bytes(readings.at_end),
        above(readings.at_end)
    );
    println!(
        "{:<52} {:>12}  {:>12}  ({unsent_count} unsent messages, {} of payload, dropped)",
        "after the peer left",
        stats::bytes(after_loss),
        above(after_loss),
        stats::bytes(unsent_bytes)
    );
}

/// Prints the bound the configuration promises, and whether the readings kept within it.
fn print_bound(readings: &Readings, bound: &Bound) {
    println!("\nthe bound the configuration promises, above the heap before the load:");
    let largest = SIZES.iter().max().copied().unwrap_or(0);
    for (what, bytes) in [
        ("stream queue (max_queued_stream_bytes)", bound.queued),
        (
            "payload taken by the kernel, held until complete",
            bound.kernel,
        ),
        ("output planned ahead (two chunks)", bound.planned),
        ("= the connection's bound", bound.connection()),
    ] {
        println!("  {what:<50} {:>12}", stats::bytes(bytes));
    }
    println!(
        "  {:<50} {:>12}",
        format!(
            "+ payloads in the senders' hands ({SENDERS} x {})",
            stats::bytes(largest)
        ),
        stats::bytes(bound.in_hand)
    );
    println!(
        "  (the rings, {} for both lanes, are allocated whole at the handshake and are in \
         the heap before the load)",
        stats::bytes(bound.rings)
    );
    println!(
        "connection's peak within its bound: {}",
        stats::verdict(readings.held_peak() <= bound.connection())
    );
    println!(
        "connection's gauge of stream payloads within the same bound: {}",
        stats::verdict(readings.gauge_peak() <= bound.connection() as u64)
    );
    if let Some(peak) = readings.peak() {
        let growth = peak.saturating_sub(readings.before);
        println!(
            "overall peak within the connection's bound plus what is in hand: {}",
            stats::verdict(growth <= bound.connection() + bound.in_hand)
        );
    }
}

/// Prints the heap above `before` at evenly spaced samples.
fn print_time_line(samples: &[Sample], before: usize) {
    println!(
        "{:>8} {:>14} {:>14} {:>14}",
        "time", "heap - before", "in hand", "streams held"
    );
    let step = (samples.len() / TIME_LINE_POINTS).max(1);
    for sample in samples.iter().step_by(step) {
        println!(
            "{:>6}ms {:>14} {:>14} {:>14}",
            sample.at.as_millis(),
            stats::bytes(sample.heap.saturating_sub(before)),
            stats::bytes(sample.in_hand),
            stats::bytes(sample.held as usize)
        );
    }
}

/// One sender task: sends its mix of sizes until `deadline`.
async fn send_for(
    connection: Connection,
    index: usize,
    deadline: Instant,
    in_hand: Arc<AtomicUsize>,
) -> Result<Sends> {
    let mut sends = Sends::default();
    let mut turn = index * 5;
    while Instant::now() < deadline {
        let size = SIZES[turn % SIZES.len()];
        turn += 1;
        // Keys repeat, so that some small messages queue behind a stream of their key.
        let key = (index * 4 + turn % 4) as u64;

        in_hand.fetch_add(size, Ordering::Relaxed);
        let payload = Bytes::from(vec![index as u8; size]);
        let outcome = if size <= TRY_TELL_MAX {
            connection.try_tell(key, 0, payload)
        } else {
            match tokio::time::timeout(TELL_TIMEOUT, connection.tell(key, 0, payload)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    in_hand.fetch_sub(size, Ordering::Relaxed);
                    sends.timed_out += 1;
                    continue;
                }
            }
        };
        in_hand.fetch_sub(size, Ordering::Relaxed);
        match outcome {
            Ok(Route::Ring) => sends.ring += 1,
            Ok(Route::Stream) => sends.stream += 1,
            Err(SendError::Full { .. }) => {
                sends.refused += 1;
                tokio::time::sleep(REFUSED_PAUSE).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(sends)
}

/// A peer that answers the handshake and then never reads.
struct StalledPeer {
    addr: SocketAddr,
    /// Its socket's `SO_RCVBUF`, as the kernel reports it.
    receive_buffer: usize,
    /// Dropping it lets the peer go: it drops its socket with everything unread.
    stop: mpsc::Sender<()>,
    thread: thread::JoinHandle<Result<()>>,
}

impl StalledPeer {
    /// Listens on 127.0.0.1; its thread accepts one connection and writes the `HELLO` of
    /// `options`, then holds the socket unread until told to stop.
    fn start(options: &Options) -> Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        // Set before `listen`, so that the accepted socket inherits it.
        socket.set_recv_buffer_size(SOCKET_BUFFER)?;
        let receive_buffer = socket.recv_buffer_size()?;
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
        socket.listen(1)?;
        let listener = TcpListener::from(socket);
        let addr = listener.local_addr()?;

        let mut hello = Vec::new();
        let mut core = ringwire::Connection::new(options.config, options.crc32c);
        while core.transmit_into(&mut hello, usize::MAX) > 0 {}

        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::spawn(move || -> Result<()> {
            let (mut stream, _) = listener.accept()?;
            stream.write_all(&hello)?;
            // Returns once `stop` is dropped; nothing is ever sent on it.
            let _ = stopped.recv();
            drop(stream);
            Ok(())
        });
        Ok(Self {
            addr,
            receive_buffer,
            stop,
            thread,
        })
    }

    /// Lets the peer go, and waits until it has dropped its socket.
    fn stop(self) -> Result<()> {
        drop(self.stop);
        self.thread.join().map_err(|_| "the peer thread panicked")?
    }
}
