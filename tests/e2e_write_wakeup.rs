//! A 3 MiB ask right behind 1, 2 and 5 MiB tells is answered promptly, on every runtime.
//!
//! On smol this stalled until the ask's deadline: the driver flushed the socket after a write
//! that would block, and smol's flush dropped the write's wake-up, so the driver slept with
//! output pending. The bound below is a correctness bound, not a benchmark: the reply must not
//! wait for a timer, and takes well under a second here.

mod common;

use std::time::{Duration, Instant};

use common::{MIB, TestRuntime, assert_same_bytes, close, pair, payload, recv_ask, recv_tell};
use ringwire::net::Options;

common::on_every_runtime!(seconds: 30; ask_behind_large_tells);

const TELLS: [usize; 3] = [MIB, 2 * MIB, 5 * MIB];
const ASK: usize = 3 * MIB;
/// The ask's deadline: a stalled driver would be woken by it and fail the ask with it.
const ASK_TIMEOUT: Duration = Duration::from_secs(20);
/// The reply must come far sooner than that.
const PROMPT: Duration = Duration::from_secs(5);

async fn ask_behind_large_tells<R: TestRuntime>() {
    let (client, server) = pair::<R>(Options::default(), Options::default()).await;

    let answering = R::spawn_task(async move {
        for len in TELLS {
            let told = recv_tell::<R>(&server.inbox).await;
            assert_same_bytes(&told.payload, &payload(len as u64, len), "tell");
        }
        let request = recv_ask::<R>(&server.inbox).await;
        let echo = request.message.payload.clone();
        request.reply(0, echo).await.expect("replied");
        server
    });

    let started = Instant::now();
    for len in TELLS {
        client
            .conn
            .tell(1, 0, payload(len as u64, len))
            .await
            .expect("sent");
    }
    let request = payload(3, ASK);
    let reply = client.conn.ask(1, 0, request.clone(), ASK_TIMEOUT).await;
    let elapsed = started.elapsed();
    let reply = reply.unwrap_or_else(|error| panic!("no reply after {elapsed:?}: {error}"));
    assert!(
        elapsed < PROMPT,
        "the reply took {elapsed:?} on {}",
        R::NAME
    );
    assert_same_bytes(&reply.payload, &request, "reply");

    let server = answering.await;
    close::<R>(&client, &server).await;
}
