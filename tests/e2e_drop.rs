//! A connection nobody can use any more closes: once every handle and the inbox of one side
//! are dropped, that side closes gracefully and the peer sees the end, on every runtime.

mod common;

use std::time::Duration;

use common::{MIB, TestRuntime, pair, payload, recv_tell, within};
use ringwire::net::Options;

common::on_every_runtime!(seconds: 30; dropping_every_handle_closes_gracefully);

async fn dropping_every_handle_closes_gracefully<R: TestRuntime>() {
    let (client, server) = pair::<R>(Options::default(), Options::default()).await;

    // A tell accepted just before the drop still arrives: the close drains it first.
    let message = payload(7, 2 * MIB);
    client
        .conn
        .tell(1, 0, message.clone())
        .await
        .expect("accepted");
    let spare = client.conn.clone();
    drop(client);
    assert!(spare.is_open(), "a clone keeps the connection open");
    drop(spare);

    let arrived = recv_tell::<R>(&server.inbox).await;
    assert_eq!(arrived.payload, message);
    let end = within::<R, _>(
        Duration::from_secs(10),
        "the end of the inbox",
        server.inbox.recv(),
    )
    .await;
    assert!(end.is_none(), "the inbox ends once the peer has closed");
    assert!(!server.conn.is_open());
    assert!(server.conn.take_unsent().is_empty());
}
