//! The round trip of a 64 B ask answered with 64 B, against a raw TCP ping-pong of 64 B.
//!
//! Both run on one tokio runtime over 127.0.0.1 with `TCP_NODELAY`, one request in flight at
//! a time. ringwire: `Connection::ask` on the client; on the server, a task that takes each
//! `Delivery::Ask` from its `Inbox` and answers with `Request::reply`. Raw: the client does
//! `write_all` of 64 B then `read_exact` of 64 B; a server task does `read_exact` of 64 B then
//! `write_all` of them back. Each round trip is timed on the client from just before the
//! request to just after its answer is in hand.
//!
//! The comparison runs twice: on tokio's multi-threaded runtime with two workers, as a
//! service on this machine would run, and on its current-thread runtime. A ringwire round
//! trip passes through four tasks (the asking task, the client's driver, the server's driver,
//! the answering task) where the raw one passes through two, so the gap between the two
//! tables shows what handing work between workers costs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwire::net::{Connection, Delivery, Inbox, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::Result;
use crate::stats::{self, Summary};

/// Bytes of each request and each answer.
const SIZE: usize = 64;
/// Round trips of each contender before measuring, to settle connections and caches.
const WARM_UP: usize = 2_000;
/// Measured round trips of each contender: `ROUNDS` rounds of `PER_ROUND`, the two
/// contenders taking turns round by round, each going first in every other round.
const ROUNDS: usize = 20;
const PER_ROUND: usize = 1_000;
/// Far beyond any round trip on loopback; reaching it fails the run.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// The target: ringwire's median round trip at most this many times the raw one.
const TARGET_P50_RATIO: f64 = 1.3;

pub(crate) fn run() -> Result<()> {
    println!(
        "round trip of {SIZE} B answered by {SIZE} B, 127.0.0.1, TCP_NODELAY, one in flight; \
         {WARM_UP} warm-up round trips each,\nthen {ROUNDS} rounds of {PER_ROUND}, the \
         contenders alternating"
    );
    println!("\ntokio multi-threaded runtime, 2 workers");
    crate::runtime()?.block_on(measure())?;
    // On one thread no wake-up crosses threads: the difference from the table above is the
    // cost of handing work between tasks on different workers.
    println!("\ntokio current-thread runtime");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(measure())
}

async fn measure() -> Result<()> {
    let mut ringwire = RingwireClient::start().await?;
    let mut raw = RawClient::start().await?;

    for _ in 0..WARM_UP {
        ringwire.round_trip().await?;
        raw.round_trip().await?;
    }

    let mut ringwire_samples = Vec::with_capacity(ROUNDS * PER_ROUND);
    let mut raw_samples = Vec::with_capacity(ROUNDS * PER_ROUND);
    for round in 0..ROUNDS {
        let ringwire_first = round % 2 == 0;
        if ringwire_first {
            ringwire.measure(PER_ROUND, &mut ringwire_samples).await?;
        }
        raw.measure(PER_ROUND, &mut raw_samples).await?;
        if !ringwire_first {
            ringwire.measure(PER_ROUND, &mut ringwire_samples).await?;
        }
    }

    ringwire.finish().await?;
    raw.finish().await?;

    let ringwire = Summary::of(&mut ringwire_samples).ok_or("no ringwire samples")?;
    let raw = Summary::of(&mut raw_samples).ok_or("no raw samples")?;
    report(&ringwire, &raw);
    Ok(())
}

fn report(ringwire: &Summary, raw: &Summary) {
    println!("{}", stats::header());
    println!("{}", stats::row("ringwire ask / reply", ringwire));
    println!("{}", stats::row("raw TCP write_all/read_exact", raw));
    let p50_ratio = ringwire.p50.as_secs_f64() / raw.p50.as_secs_f64();
    let p99_ratio = ringwire.p99.as_secs_f64() / raw.p99.as_secs_f64();
    println!("ringwire / raw: p50 {p50_ratio:.2}x, p99 {p99_ratio:.2}x");
    println!(
        "target p50 <= {TARGET_P50_RATIO}x raw: {}",
        stats::verdict(p50_ratio <= TARGET_P50_RATIO)
    );
}

/// A ringwire client connected to a server task that answers every ask.
struct RingwireClient {
    connection: Connection,
    /// Kept so that the connection stays open: nothing arrives on it.
    _inbox: Inbox,
    server: JoinHandle<Result<()>>,
    request: Bytes,
}

impl RingwireClient {
    async fn start() -> Result<Self> {
        let listener = ringwire::tokio::listen("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (_connection, inbox) =
                ringwire::tokio::accept(&listener, Options::default()).await?;
            answer_asks(inbox).await
        });
        let (connection, inbox) = ringwire::tokio::connect(addr, Options::default()).await?;
        Ok(Self {
            connection,
            _inbox: inbox,
            server,
            request: Bytes::from(vec![0x11; SIZE]),
        })
    }

    async fn round_trip(&mut self) -> Result<Duration> {
        let started = Instant::now();
        let reply = self
            .connection
            .ask(1, 0, self.request.clone(), ASK_TIMEOUT)
            .await?;
        let elapsed = started.elapsed();
        if reply.payload.len() != SIZE {
            return Err(format!("a reply of {} bytes, not {SIZE}", reply.payload.len()).into());
        }
        Ok(elapsed)
    }

    async fn measure(&mut self, count: usize, samples: &mut Vec<Duration>) -> Result<()> {
        for _ in 0..count {
            samples.push(self.round_trip().await?);
        }
        Ok(())
    }

    /// Closes the connection and waits for the server task, which ends with it.
    async fn finish(self) -> Result<()> {
        if let Err(error) = self.connection.close().await {
            eprintln!("ringwire close: {error}");
        }
        self.server.await?
    }
}

/// Answers every ask with `SIZE` bytes until the connection ends.
async fn answer_asks(inbox: Inbox) -> Result<()> {
    let answer = Bytes::from(vec![0x22; SIZE]);
    while let Some(delivery) = inbox.recv().await {
        match delivery {
            Delivery::Ask(request) => {
                request.reply(0, answer.clone()).await?;
            }
            other => return Err(format!("the server expected only asks: {other:?}").into()),
        }
    }
    Ok(())
}

/// A plain tokio TCP client connected to an echo task of fixed-size messages.
struct RawClient {
    stream: TcpStream,
    server: JoinHandle<Result<()>>,
    request: [u8; SIZE],
    answer: [u8; SIZE],
}

impl RawClient {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            echo(stream).await
        });
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            server,
            request: [0x11; SIZE],
            answer: [0; SIZE],
        })
    }

    async fn round_trip(&mut self) -> Result<Duration> {
        let started = Instant::now();
        self.stream.write_all(&self.request).await?;
        self.stream.read_exact(&mut self.answer).await?;
        Ok(started.elapsed())
    }

    async fn measure(&mut self, count: usize, samples: &mut Vec<Duration>) -> Result<()> {
        for _ in 0..count {
            samples.push(self.round_trip().await?);
        }
        Ok(())
    }

    /// Shuts the connection down and waits for the echo task, which ends at the end of input.
    async fn finish(mut self) -> Result<()> {
        self.stream.shutdown().await?;
        self.server.await?
    }
}

/// Reads `SIZE` bytes and writes them back, until the client shuts its side down.
async fn echo(mut stream: TcpStream) -> Result<()> {
    let mut buffer = [0u8; SIZE];
    loop {
        match stream.read_exact(&mut buffer).await {
            Ok(_) => stream.write_all(&buffer).await?,
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
}
