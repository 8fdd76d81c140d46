//! The one-way latency of small tells on an idle connection, and while a 64 MiB tell streams
//! on the same connection.
//!
//! One tokio connection over 127.0.0.1 with the default configuration (64 KiB chunks, a
//! 1 MiB tell ring). A plain thread sends 64 B tells on key A with `try_tell`, one about every
//! `INTERVAL`; each carries the time it was sent, and a task on the server's `Inbox` notes when
//! it arrives, so both instants come from one clock in one process. In the busy phase, a
//! 64 MiB tell on key B is accepted first, and small tells are sent until it has arrived whole;
//! only those sent before its arrival count as sent while it was in flight, and the table says
//! how many of the phase's messages that was. The stream's throughput over the phase gives the
//! time one chunk takes on the wire, which is what a small message may wait for behind it.
//! Idle and busy phases alternate in rounds, each going first in every other round.
//!
//! The whole measurement runs in four setups, each on a new connection, so that what the
//! kernel and the scheduler add can be told apart from what the connection itself does:
//!
//! 1. socket buffers as the kernel sizes them, and the inbox read by a task on the same
//!    runtime as the connections' drivers: what an application gets by default;
//! 2. the client's `SO_SNDBUF` and the server's `SO_RCVBUF` set small, so that little of the
//!    stream can wait in the kernel ahead of a small message;
//! 3. small buffers, and the inbox read on a thread of its own (a current-thread runtime), so
//!    that the reading task never waits for a busy worker of the drivers' runtime;
//! 4. socket buffers as the kernel sizes them, with `TCP_NOTSENT_LOWAT` on the client's
//!    socket (`LOWAT`), so that little of the stream waits unsent in the client's kernel:
//!    what is left is the server's receive buffer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwire::net::{Connection, Delivery, Inbox, Options, SocketBuffers};
use ringwire::{Incoming, Route};

use crate::stats::{self, Summary};
use crate::{KIB, MIB, Result};

/// `TCP_NOTSENT_LOWAT` of the client's socket in setup 4.
const LOWAT: u32 = 16 * 1024;

const KEY_SMALL: u64 = 1;
const KEY_LARGE: u64 = 2;
const SMALL: usize = 64;
const LARGE: usize = 64 * MIB;
/// The pause between two small tells. A thread's sleep lasts somewhat longer than asked, so
/// the actual spacing, which the table reports, is larger.
const INTERVAL: Duration = Duration::from_micros(50);
/// Rounds of one idle and one busy phase.
const ROUNDS: usize = 12;
/// Small tells in an idle phase.
const IDLE_MESSAGES: usize = 500;
/// Asked for both socket buffers on the stream's way in the setups with small buffers;
/// Linux doubles it.
const SMALL_SOCKET_BUFFER: usize = 64 * KIB;
/// Longest wait for a message to arrive before the run fails.
const ARRIVAL_LIMIT: Duration = Duration::from_secs(30);

/// What the server's inbox task reports, timed against the shared `base` instant.
enum Arrival {
    Small { sent: Duration, at: Duration },
    Large { at: Duration, message: Incoming },
}

/// The samples of one phase kind, over every round.
#[derive(Default)]
struct Phase {
    latencies: Vec<Duration>,
    /// Small tells sent in the phase, and of those, sent while the large tell was in flight.
    sent: usize,
    during: usize,
    /// Time the phase spent sending, for the actual spacing of its messages.
    sending: Duration,
}

pub(crate) fn run() -> Result<()> {
    let runtime = crate::runtime()?;
    println!(
        "one-way latency of {SMALL} B tells on key A, tokio (2 workers), 127.0.0.1, default \
         configuration;\n{ROUNDS} rounds of an idle phase ({IDLE_MESSAGES} tells) and a busy \
         phase (tells while a {} tell streams on key B)",
        stats::bytes(LARGE)
    );
    let mut setups = vec![
        Setup {
            small_buffers: false,
            reader: Reader::SameRuntime,
            lowat: None,
        },
        Setup {
            small_buffers: true,
            reader: Reader::SameRuntime,
            lowat: None,
        },
        Setup {
            small_buffers: true,
            reader: Reader::OwnThread,
            lowat: None,
        },
    ];
    // `TCP_NOTSENT_LOWAT` is set through socket2, which offers it on Linux and Android.
    if cfg!(any(target_os = "linux", target_os = "android")) {
        setups.push(Setup {
            small_buffers: false,
            reader: Reader::SameRuntime,
            lowat: Some(LOWAT),
        });
    }
    for (index, setup) in setups.into_iter().enumerate() {
        measure(&runtime, index + 1, setup)?;
    }
    Ok(())
}

/// How a connection of the measurement is set up.
#[derive(Clone, Copy, Debug)]
struct Setup {
    /// `SMALL_SOCKET_BUFFER` asked for the client's `SO_SNDBUF` and the server's `SO_RCVBUF`;
    /// otherwise the kernel sizes them, growing them with the traffic.
    small_buffers: bool,
    reader: Reader,
    /// `TCP_NOTSENT_LOWAT` of the client's socket.
    lowat: Option<u32>,
}

/// Where the server's inbox is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    /// A task on the runtime that also runs the connections' drivers.
    SameRuntime,
    /// A current-thread runtime on a thread of its own.
    OwnThread,
}

impl Setup {
    fn describe(self) -> String {
        let buffers = if self.small_buffers {
            format!(
                "socket buffers set small ({} asked for the client's SO_SNDBUF and the \
                 server's SO_RCVBUF)",
                stats::bytes(SMALL_SOCKET_BUFFER)
            )
        } else {
            "socket buffers sized by the kernel".to_owned()
        };
        let reader = match self.reader {
            Reader::SameRuntime => "inbox read by a task on the drivers' runtime",
            Reader::OwnThread => "inbox read on a thread of its own",
        };
        match self.lowat {
            Some(lowat) => format!(
                "{buffers}, client's TCP_NOTSENT_LOWAT {}; {reader}",
                stats::bytes(lowat as usize)
            ),
            None => format!("{buffers}; {reader}"),
        }
    }
}

/// Runs every round on a new connection set up as `setup` and prints the table.
fn measure(runtime: &tokio::runtime::Runtime, number: usize, setup: Setup) -> Result<()> {
    let (client, client_inbox, server_inbox) =
        runtime.block_on(connect(setup.small_buffers, setup.lowat))?;
    let chunk = Options::default().config.chunk_size();

    let base = Instant::now();
    let (arrivals, arrived) = mpsc::channel();
    let large_done = Arc::new(AtomicBool::new(false));
    let reading = receive(server_inbox, base, arrivals, large_done.clone());
    let reader = match setup.reader {
        Reader::SameRuntime => {
            runtime.spawn(reading);
            None
        }
        Reader::OwnThread => {
            let own = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Some(thread::spawn(move || own.block_on(reading)))
        }
    };
    let large = Bytes::from(vec![0x5a; LARGE]);

    // Not counted: lets the connection and the reader settle.
    idle_phase(&client, base, &arrived, &mut Phase::default())?;

    let mut idle = Phase::default();
    let mut busy = Phase::default();
    let mut streaming = Duration::ZERO;
    for round in 0..ROUNDS {
        let idle_first = round % 2 == 0;
        if idle_first {
            idle_phase(&client, base, &arrived, &mut idle)?;
        }
        large_done.store(false, Ordering::Release);
        let started = base.elapsed();
        let route = client.try_tell(KEY_LARGE, 0, large.clone())?;
        if route != Route::Stream {
            return Err(format!("the {LARGE}-byte tell went by {route:?}").into());
        }
        let sending = Instant::now();
        let sent = pace(&client, base, |_| large_done.load(Ordering::Acquire))?;
        busy.sending += sending.elapsed();
        let large_at = collect(&arrived, sent, true, &mut busy)?;
        streaming += large_at.ok_or("the large tell did not arrive")? - started;
        if !idle_first {
            idle_phase(&client, base, &arrived, &mut idle)?;
        }
    }

    // The server's inbox ends with the connection, and its reader with it.
    if let Err(error) = runtime.block_on(client.close()) {
        eprintln!("ringwire close: {error}");
    }
    drop(client_inbox);
    if let Some(reader) = reader {
        reader.join().map_err(|_| "the inbox thread panicked")?;
    }

    let throughput = (ROUNDS * LARGE) as f64 / streaming.as_secs_f64();
    let chunk_time = Duration::from_secs_f64(chunk as f64 / throughput);
    println!("\n{number}. {}", setup.describe());
    report(&mut idle, &mut busy, throughput, chunk, chunk_time)
}

fn report(
    idle: &mut Phase,
    busy: &mut Phase,
    throughput: f64,
    chunk: usize,
    chunk_time: Duration,
) -> Result<()> {
    let idle_summary = Summary::of(&mut idle.latencies).ok_or("no idle samples")?;
    let busy_summary = Summary::of(&mut busy.latencies).ok_or("no busy samples")?;
    println!("{}", stats::header());
    println!("{}", stats::row("(a) idle connection", &idle_summary));
    let behind = format!("(b) behind a {} stream", stats::bytes(LARGE));
    println!("{}", stats::row(&behind, &busy_summary));
    println!();
    for (name, phase) in [("idle", &*idle), ("busy", &*busy)] {
        println!(
            "{name}: {} tells sent, one every {} on average",
            phase.sent,
            stats::micros(phase.sending / phase.sent.max(1) as u32)
        );
    }
    println!(
        "busy: {} of the {} were sent while the large tell was in flight (only those count \
         in (b))",
        busy.during, busy.sent
    );
    println!(
        "stream throughput during (b): {:.2} GiB/s; one {} chunk takes {}",
        throughput / (1u64 << 30) as f64,
        stats::bytes(chunk),
        stats::micros(chunk_time)
    );
    let bound = idle_summary.p99 + 2 * chunk_time;
    println!(
        "p99(b) {} <= p99(a) + 2 chunk times = {}: {}",
        stats::micros(busy_summary.p99),
        stats::micros(bound),
        stats::verdict(busy_summary.p99 <= bound)
    );
    Ok(())
}

/// A client and the server's end of one connection, with default options, and small socket
/// buffers on the stream's way if `small_buffers`: the client's send buffer and the server's
/// receive buffer, set through `Options::socket_buffers`.
async fn connect(small_buffers: bool, lowat: Option<u32>) -> Result<(Connection, Inbox, Inbox)> {
    let with_buffers = |socket_buffers| Options {
        socket_buffers,
        ..Options::default()
    };
    let (client_options, server_options) = if small_buffers {
        (
            with_buffers(SocketBuffers {
                send: Some(SMALL_SOCKET_BUFFER),
                recv: None,
            }),
            with_buffers(SocketBuffers {
                send: None,
                recv: Some(SMALL_SOCKET_BUFFER),
            }),
        )
    } else {
        (Options::default(), Options::default())
    };
    let listener = ringwire::tokio::listen(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let server =
        tokio::spawn(async move { ringwire::tokio::accept(&listener, server_options).await });

    let (client, client_inbox) = match lowat {
        None => ringwire::tokio::connect(addr, client_options).await?,
        Some(lowat) => {
            // `connect` sets no `TCP_NOTSENT_LOWAT`: the socket is made here and wrapped.
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            set_notsent_lowat(&stream, lowat)?;
            ringwire::tokio::wrap(stream, client_options).await?
        }
    };
    // The server's `Connection` handle may go: its inbox keeps the connection open.
    let (_server, server_inbox) = server.await??;
    Ok((client, client_inbox, server_inbox))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_notsent_lowat(stream: &tokio::net::TcpStream, lowat: u32) -> std::io::Result<()> {
    socket2::SockRef::from(stream).set_tcp_notsent_lowat(lowat)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_notsent_lowat(_: &tokio::net::TcpStream, _: u32) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Notes when each tell arrives, until the connection ends.
async fn receive(
    inbox: Inbox,
    base: Instant,
    arrivals: mpsc::Sender<Arrival>,
    large_done: Arc<AtomicBool>,
) {
    while let Some(delivery) = inbox.recv().await {
        let at = base.elapsed();
        let Delivery::Tell(message) = delivery else {
            continue;
        };
        let arrival = if message.envelope.key == KEY_LARGE {
            large_done.store(true, Ordering::Release);
            // Handed over whole, so that freeing 64 MiB does not delay the next arrivals.
            Arrival::Large { at, message }
        } else {
            let Some(sent) = message.payload.first_chunk::<8>() else {
                continue;
            };
            Arrival::Small {
                sent: Duration::from_nanos(u64::from_le_bytes(*sent)),
                at,
            }
        };
        if arrivals.send(arrival).is_err() {
            return;
        }
    }
}

/// Sends small tells, one about every `INTERVAL`, each carrying the time it was sent measured
/// from `base`, until `done` says so; returns how many it sent.
fn pace(client: &Connection, base: Instant, mut done: impl FnMut(usize) -> bool) -> Result<usize> {
    let mut sent = 0;
    while !done(sent) {
        thread::sleep(INTERVAL);
        let mut payload = [0u8; SMALL];
        let at = base.elapsed();
        payload[..8].copy_from_slice(&(at.as_nanos() as u64).to_le_bytes());
        let route = client.try_tell(KEY_SMALL, 0, Bytes::copy_from_slice(&payload))?;
        if route != Route::Ring {
            return Err(format!("a {SMALL}-byte tell went by {route:?}").into());
        }
        sent += 1;
    }
    Ok(sent)
}

/// An idle phase: `IDLE_MESSAGES` small tells with nothing else on the connection.
fn idle_phase(
    client: &Connection,
    base: Instant,
    arrived: &mpsc::Receiver<Arrival>,
    idle: &mut Phase,
) -> Result<()> {
    let sending = Instant::now();
    let sent = pace(client, base, |count| count == IDLE_MESSAGES)?;
    idle.sending += sending.elapsed();
    collect(arrived, sent, false, idle)?;
    Ok(())
}

/// Waits for the arrival of the `sent` small tells, and of the large tell if `expect_large`,
/// and adds the phase's samples to `phase`. A small tell counts only if it was sent before the
/// large one arrived. Returns when the large tell arrived.
fn collect(
    arrived: &mpsc::Receiver<Arrival>,
    sent: usize,
    expect_large: bool,
    phase: &mut Phase,
) -> Result<Option<Duration>> {
    let mut smalls = Vec::with_capacity(sent);
    let mut large_at = None;
    while smalls.len() < sent || (expect_large && large_at.is_none()) {
        match arrived.recv_timeout(ARRIVAL_LIMIT)? {
            Arrival::Small { sent, at } => smalls.push((sent, at)),
            Arrival::Large { at, message } => {
                if message.payload.len() != LARGE {
                    return Err(format!(
                        "the large tell arrived with {} bytes",
                        message.payload.len()
                    )
                    .into());
                }
                large_at = Some(at);
            }
        }
    }
    let in_flight_until = large_at.unwrap_or(Duration::MAX);
    phase.sent += sent;
    for (sent_at, at) in smalls {
        if sent_at < in_flight_until {
            phase.during += 1;
            phase.latencies.push(at.saturating_sub(sent_at));
        }
    }
    Ok(large_at)
}
