//! The main demo: for each runtime, a server and a client on 127.0.0.1 exchange the size
//! ladder from 1 KiB to 5 MiB, the 122 KiB trading summary among them as a typed message, with
//! 256 KiB and then 1 MiB buffers. Each message is an ask; the server answers with the route it
//! arrived by and a checksum of what it received, so the client can say whether it arrived
//! intact. Prints a table per run and the connection's metrics.
//!
//! Run with `cargo run --release --example loopback`.

use std::error::Error;
use std::future::Future;
use std::time::{Duration, Instant};

use ringwire::net::{Connection, Delivery, Inbox, Options};
use ringwire::typed::{self, DecodeBuffer, Message};
use ringwire::{BufferConfig, ConnectionConfig, Lane, Route};
use rkyv::{Archive, Deserialize, Serialize};

const KIB: usize = 1024;
/// The ladder, in KiB. 122 KiB is sent as the typed summary.
const LADDER_KIB: [usize; 11] = [1, 10, 100, 122, 250, 300, 500, 1024, 2048, 4096, 5120];
const SUMMARY_KIB: usize = 122;
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The message that once fell between a 16 KiB ring and a 1 MiB threshold and vanished.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Summary {
    id: String,
    pnl: f64,
    trade_count: u64,
    win_rate: f64,
    data: Vec<u8>,
}

impl Message for Summary {
    const TYPE_NAME: &'static str = "loopback::Summary";
}

/// One line of the table.
struct Row {
    size: usize,
    route: Route,
    intact: bool,
    elapsed: Duration,
}

fn main() -> Result<()> {
    for ring_kib in [256, 1024] {
        let buffer = BufferConfig::new(ring_kib * KIB)?;
        let config = ConnectionConfig::builder()
            .tell_buffer_config(buffer)
            .ask_buffer_config(buffer)
            .build()?;
        let options = Options {
            config,
            ..Options::default()
        };
        println!(
            "\n== {ring_kib} KiB ring buffers, streaming threshold {} bytes ==",
            buffer.streaming_threshold()
        );
        run("tokio", on_tokio(options.clone()))?;
        run("async-std", on_async_std(options.clone()))?;
        run("smol", on_smol(options))?;
    }
    Ok(())
}

/// Prints one runtime's table and metrics.
fn run(runtime: &str, outcome: Result<(Vec<Row>, ringwire::Metrics)>) -> Result<()> {
    let (rows, metrics) = outcome?;
    println!("\n{runtime}");
    println!(
        "{:>10}  {:>6}  {:>9}  {:>10}",
        "size", "route", "delivered", "round trip"
    );
    for row in &rows {
        let size = if row.size / KIB == SUMMARY_KIB {
            format!("{} KiB*", row.size / KIB)
        } else {
            format!("{} KiB", row.size / KIB)
        };
        println!(
            "{size:>10}  {:>6}  {:>9}  {:>10.2?}",
            format!("{:?}", row.route).to_lowercase(),
            if row.intact { "yes" } else { "NO" },
            row.elapsed
        );
    }
    let send = metrics.send;
    let asks = metrics.asks;
    println!(
        "* the typed 122 KiB summary. client: {} ring sends, {} streamed, {} fallbacks, {} \
         refusals; asks {} sent, {} answered, {} expired, {} late",
        send.ring_sends,
        send.streaming_sends,
        send.streaming_fallbacks,
        send.backpressure_refusals,
        asks.sent,
        asks.answered,
        asks.expired,
        asks.late_replies
    );
    if rows.iter().any(|row| !row.intact) {
        return Err(format!("{runtime}: a message did not arrive intact").into());
    }
    Ok(())
}

/// The client side, the same on every runtime: the ladder as asks, one after the other.
async fn client(connection: &Connection) -> Result<(Vec<Row>, ringwire::Metrics)> {
    let threshold = connection.streaming_threshold(Lane::Ask);
    let mut rows = Vec::new();
    for (key, size_kib) in LADDER_KIB.into_iter().enumerate() {
        let (type_hash, payload) = if size_kib == SUMMARY_KIB {
            typed::encode(&summary(SUMMARY_KIB * KIB))?
        } else {
            (0, (0..size_kib * KIB).map(|i| (i % 251) as u8).collect())
        };
        let started = Instant::now();
        let reply = connection
            .ask(key as u64, type_hash, payload.clone(), ASK_TIMEOUT)
            .await?;
        let elapsed = started.elapsed();
        let answer = &reply.payload[..];
        let route = if answer.first() == Some(&0) {
            Route::Ring
        } else {
            Route::Stream
        };
        let expected_route = if payload.len() <= threshold {
            Route::Ring
        } else {
            Route::Stream
        };
        let intact = answer.len() == 5
            && answer[1..] == crc32c::crc32c(&payload).to_le_bytes()
            && route == expected_route;
        rows.push(Row {
            size: payload.len(),
            route,
            intact,
            elapsed,
        });
    }
    Ok((rows, connection.metrics()))
}

/// The server side: answers each ask with its route and a checksum; checks the summary field
/// by field.
async fn serve(inbox: Inbox) {
    let mut buffer = DecodeBuffer::new();
    while let Some(delivery) = inbox.recv().await {
        let Delivery::Ask(request) = delivery else {
            continue;
        };
        let message = &request.message;
        let route = match message.route {
            Route::Ring => 0u8,
            Route::Stream => 1,
        };
        let mut crc = crc32c::crc32c(&message.payload);
        if message.envelope.type_hash == Summary::TYPE_HASH {
            let expected = summary(SUMMARY_KIB * KIB);
            let intact =
                typed::decode::<Summary>(message.envelope.type_hash, &message.payload, &mut buffer)
                    .is_ok_and(|got| {
                        got.id == expected.id
                            && got.pnl == expected.pnl
                            && got.trade_count == expected.trade_count
                            && got.win_rate == expected.win_rate
                            && got.data[..] == expected.data[..]
                    });
            if !intact {
                crc = !crc;
            }
        }
        let mut answer = vec![route];
        answer.extend_from_slice(&crc.to_le_bytes());
        let _ = request.reply(0, answer).await;
    }
}

fn summary(size: usize) -> Summary {
    Summary {
        id: "desk-7/2026-12-03".into(),
        pnl: 1_234_567.89,
        trade_count: 4_812,
        win_rate: 0.5731,
        // Whatever is left of `size` after the other fields goes to the data.
        data: (0..size - 64).map(|i| (i * 7 % 256) as u8).collect(),
    }
}

/// Runs a client and a server of one runtime and returns the client's rows.
async fn exchange<C, S>(connect: C, accept: S) -> Result<(Vec<Row>, ringwire::Metrics)>
where
    C: Future<Output = Result<(Connection, Inbox)>>,
    S: Future<Output = Result<()>>,
{
    let client = async {
        let (connection, _inbox) = connect.await?;
        let outcome = client(&connection).await;
        let closed = connection.close().await;
        let measured = outcome?;
        closed?;
        Ok(measured)
    };
    let (outcome, served) = futures_util::future::join(client, accept).await;
    served?;
    outcome
}

fn on_tokio(options: Options) -> Result<(Vec<Row>, ringwire::Metrics)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = ringwire::tokio::listen("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = async {
            let (_connection, inbox) = ringwire::tokio::accept(&listener, options.clone()).await?;
            tokio::spawn(serve(inbox)).await?;
            Ok(())
        };
        let connect = async { Ok(ringwire::tokio::connect(addr, options.clone()).await?) };
        exchange(connect, accept).await
    })
}

fn on_async_std(options: Options) -> Result<(Vec<Row>, ringwire::Metrics)> {
    async_std::task::block_on(async {
        let listener = ringwire::async_std::listen("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = async {
            let (_connection, inbox) =
                ringwire::async_std::accept(&listener, options.clone()).await?;
            async_std::task::spawn(serve(inbox)).await;
            Ok(())
        };
        let connect = async { Ok(ringwire::async_std::connect(addr, options.clone()).await?) };
        exchange(connect, accept).await
    })
}

fn on_smol(options: Options) -> Result<(Vec<Row>, ringwire::Metrics)> {
    smol::block_on(async {
        let listener = ringwire::smol::listen("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = async {
            let (_connection, inbox) = ringwire::smol::accept(&listener, options.clone()).await?;
            smol::spawn(serve(inbox)).await;
            Ok(())
        };
        let connect = async { Ok(ringwire::smol::connect(addr, options.clone()).await?) };
        exchange(connect, accept).await
    })
}
