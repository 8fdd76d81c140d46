//! The inbox bound over real TCP on every runtime: a reader slower than its peer pauses reading
//! and resumes it, and an inbox the application dropped, empty or full, does not stop the
//! connection reading.

mod common;

use std::time::{Duration, Instant};

use common::{
    KIB, MIB, Peer, TestRuntime, assert_same_bytes, close, pair, payload, recv_ask, recv_tell,
};
use ringwire::net::Options;

common::on_every_runtime!(seconds: 30; slow_reader_resumes, dropped_inbox_keeps_reading, full_inbox_dropped_resumes_reading);

/// Bound on the client's inbox: well under what the server sends it.
const INBOX_BYTES: usize = MIB;
/// Tells to the client, 12 MiB in all.
const TELLS: usize = 6;
const TELL_LEN: usize = 2 * MIB;
/// Far longer than a reply takes when the connection reads.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

fn small_inbox() -> Options {
    Options {
        inbox_bytes: INBOX_BYTES,
        ..Options::default()
    }
}

/// The server tells the client `TELLS` messages while the client is not reading, then answers
/// one ask. Returns the server when it has answered.
fn spawn_server<R: TestRuntime>(server: Peer) -> common::Task<Peer> {
    R::spawn_task(async move {
        for i in 0..TELLS {
            let message = payload(i as u64, TELL_LEN);
            server.conn.tell(1, 0, message).await.expect("sent");
        }
        let request = recv_ask::<R>(&server.inbox).await;
        request.reply(0, &b"pong"[..]).await.expect("replied");
        server
    })
}

/// Reading pauses while the inbox holds more than its bound and resumes as it is read: every
/// tell arrives whole and in order, and the connection still answers afterwards.
async fn slow_reader_resumes<R: TestRuntime>() {
    let (client, server) = pair::<R>(small_inbox(), Options::default()).await;
    let answering = spawn_server::<R>(server);

    for i in 0..TELLS {
        let arrived = recv_tell::<R>(&client.inbox).await;
        assert_same_bytes(&arrived.payload, &payload(i as u64, TELL_LEN), "tell");
    }
    let reply = client.conn.ask(1, 0, &b"ping"[..], ASK_TIMEOUT).await;
    assert_eq!(&reply.expect("a reply").payload[..], b"pong");

    let server = answering.await;
    close::<R>(&client, &server).await;
}

/// An application that only sends and asks may drop its inbox: what arrives for it is
/// discarded, and nothing is left waiting in it, so the bound must not stop reading. Replies do
/// not go through the inbox, so the ask below needs the connection to keep reading.
async fn dropped_inbox_keeps_reading<R: TestRuntime>() {
    let (client, server) = pair::<R>(small_inbox(), Options::default()).await;
    let Peer { conn, inbox } = client;
    drop(inbox);
    let answering = spawn_server::<R>(server);

    let reply = conn.ask(1, 0, &b"ping"[..], ASK_TIMEOUT).await;
    let reply = reply.unwrap_or_else(|error| {
        panic!(
            "no reply on {} after {} KiB of tells to a dropped inbox with a {} KiB bound: {error}",
            R::NAME,
            TELLS * TELL_LEN / KIB,
            INBOX_BYTES / KIB
        )
    });
    assert_eq!(&reply.payload[..], b"pong");
    drop(answering);
}

/// An inbox dropped while it holds more than its bound: what it held is discarded and the
/// connection reads again, so the ask below, behind the rest of the tells, gets its reply.
async fn full_inbox_dropped_resumes_reading<R: TestRuntime>() {
    let (client, server) = pair::<R>(small_inbox(), Options::default()).await;
    let answering = spawn_server::<R>(server);

    // One 2 MiB tell in the inbox is past its 1 MiB bound: reading has paused.
    let deadline = Instant::now() + ASK_TIMEOUT;
    while client.conn.metrics().receive.stream_messages == 0 {
        assert!(Instant::now() < deadline, "no tell arrived on {}", R::NAME);
        R::default()
            .sleep_until(Instant::now() + Duration::from_millis(5))
            .await;
    }
    let Peer { conn, inbox } = client;
    drop(inbox);

    let reply = conn.ask(1, 0, &b"ping"[..], ASK_TIMEOUT).await;
    let reply = reply.unwrap_or_else(|error| {
        panic!(
            "no reply on {} after dropping an inbox over its bound: {error}",
            R::NAME
        )
    });
    assert_eq!(&reply.payload[..], b"pong");
    drop(answering);
}
