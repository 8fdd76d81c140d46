//! Routing over real loopback TCP on every runtime: the streaming threshold follows the
//! connection's buffers (scenario 4), the size ladder arrives whole (scenario 7), also through
//! small socket buffers, and on a 256 KiB connection every message from 300 KiB to 5 MiB
//! streams (scenario 9).

mod common;

use common::{KIB, MIB, TestRuntime, assert_same_bytes, close, options, pair, payload, recv_tell};
use ringwire::net::{Options, SocketBuffers};
use ringwire::{Lane, Route};

common::on_every_runtime!(
    seconds: 60;
    dynamic_threshold,
    size_ladder,
    size_ladder_through_small_socket_buffers,
    large_messages_stream
);

/// Scenario 4: 300 KiB streams on a 256 KiB connection and takes the ring on a 1 MiB one.
async fn dynamic_threshold<R: TestRuntime>() {
    let message = payload(4, 300 * KIB);
    for (ring_size, expected) in [(256 * KIB, Route::Stream), (MIB, Route::Ring)] {
        let (client, server) = pair::<R>(options(ring_size), options(ring_size)).await;
        let threshold = ring_size - KIB;
        assert_eq!(client.conn.streaming_threshold(Lane::Tell), threshold);
        assert_eq!(server.conn.streaming_threshold(Lane::Tell), threshold);

        let route = client.conn.tell(4, 0, message.clone()).await.expect("sent");
        assert_eq!(route, expected, "300 KiB on a {ring_size}-byte ring");
        let arrived = recv_tell::<R>(&server.inbox).await;
        assert_eq!(arrived.route, expected, "as received");
        assert_eq!(arrived.envelope.key, 4);
        assert_same_bytes(&arrived.payload, &message, "300 KiB");

        // Exactly one send, counted under the route it took.
        let sent = client.conn.metrics().send;
        let by_stream = u64::from(expected == Route::Stream);
        assert_eq!(
            (sent.streaming_sends, sent.ring_sends),
            (by_stream, 1 - by_stream)
        );
        close::<R>(&client, &server).await;
    }
}

/// Scenario 7: 1 KiB to 5 MiB, sent back to back to one key on a default connection (1 MiB
/// tell ring), all arrive whole and in order; those above the threshold stream.
async fn size_ladder<R: TestRuntime>() {
    ladder::<R>(Options::default()).await;
}

/// The ladder again, with 16 KiB asked for every socket buffer of both ends: connect and
/// accept set them, and a 5 MiB stream goes through in pieces far smaller than its chunks.
async fn size_ladder_through_small_socket_buffers<R: TestRuntime>() {
    ladder::<R>(Options {
        socket_buffers: SocketBuffers::both(16 * KIB),
        ..Options::default()
    })
    .await;
}

async fn ladder<R: TestRuntime>(options: Options) {
    const LADDER_KIB: [usize; 9] = [1, 10, 100, 250, 300, 500, 1024, 2048, 5120];
    let (client, server) = pair::<R>(options.clone(), options).await;
    let threshold = client.conn.streaming_threshold(Lane::Tell);
    assert_eq!(threshold, MIB - KIB);

    let messages: Vec<_> = LADDER_KIB
        .iter()
        .map(|&kib| payload(kib as u64, kib * KIB))
        .collect();
    for message in &messages {
        let route = client.conn.tell(7, 0, message.clone()).await.expect("sent");
        // Below the threshold the ring may be full and the message fall back to a stream;
        // above it there is only one way.
        if message.len() > threshold {
            assert_eq!(route, Route::Stream, "{} bytes", message.len());
        }
    }

    for (kib, message) in LADDER_KIB.iter().zip(&messages) {
        let arrived = recv_tell::<R>(&server.inbox).await;
        assert_same_bytes(&arrived.payload, message, &format!("{kib} KiB"));
        if message.len() > threshold {
            assert_eq!(arrived.route, Route::Stream, "{kib} KiB as received");
        }
    }
    close::<R>(&client, &server).await;
}

/// Scenario 9: on a 256 KiB connection every message from 300 KiB to 5 MiB streams, and
/// arrives whole.
async fn large_messages_stream<R: TestRuntime>() {
    const SIZES_KIB: [usize; 8] = [300, 384, 512, 1024, 2048, 3072, 4096, 5120];
    let (client, server) = pair::<R>(options(256 * KIB), options(256 * KIB)).await;

    let messages: Vec<_> = SIZES_KIB
        .iter()
        .map(|&kib| payload(9 + kib as u64, kib * KIB))
        .collect();
    for message in &messages {
        let route = client.conn.tell(9, 0, message.clone()).await.expect("sent");
        assert_eq!(route, Route::Stream, "{} bytes", message.len());
    }
    for (kib, message) in SIZES_KIB.iter().zip(&messages) {
        let arrived = recv_tell::<R>(&server.inbox).await;
        assert_eq!(arrived.route, Route::Stream, "{kib} KiB as received");
        assert_same_bytes(&arrived.payload, message, &format!("{kib} KiB"));
    }

    let count = SIZES_KIB.len() as u64;
    let sent = client.conn.metrics().send;
    assert_eq!((sent.streaming_sends, sent.ring_sends), (count, 0));
    let received = server.conn.metrics().receive;
    assert_eq!(
        (received.stream_messages, received.ring_messages),
        (count, 0)
    );
    close::<R>(&client, &server).await;
}
