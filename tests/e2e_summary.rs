//! Scenario 6, the production case, on every runtime: a 122 KiB summary message sent as a
//! typed rkyv message over real TCP with 256 KiB buffers on both lanes of both ends, told and
//! asked, and read back field by field through validated zero-copy access.

mod common;

use common::{KIB, TestRuntime, close, options, pair, recv_ask, recv_tell};
use ringwire::typed::{self, DecodeBuffer, Message};
use ringwire::{Incoming, Lane, MessageKind, Route};
use rkyv::{Archive, Deserialize, Serialize};

common::on_every_runtime!(seconds: 30; summary_told, summary_asked);

/// The message that used to vanish: a backtest summary carrying 122 KiB of data.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct BacktestSummary {
    id: String,
    pnl: f64,
    trade_count: u64,
    win_rate: f64,
    data: Vec<u8>,
}

impl Message for BacktestSummary {
    const TYPE_NAME: &'static str = "ringwire_e2e::BacktestSummary";
}

fn production_summary() -> BacktestSummary {
    BacktestSummary {
        id: "strategy-7/2024-Q2/run-0042".to_owned(),
        pnl: 98_765.432_1,
        trade_count: 1_234,
        win_rate: 0.618,
        data: (0..122 * KIB).map(|i| (i * 7 % 256) as u8).collect(),
    }
}

/// Checks the message's type and route, validates it, and compares every field in place.
fn assert_is_summary(message: &Incoming, expected: &BacktestSummary) {
    assert_eq!(message.envelope.type_hash, BacktestSummary::TYPE_HASH);
    // 122 KiB is under the 255 KiB threshold of a 256 KiB ring: one ring frame.
    assert_eq!(message.route, Route::Ring);

    let mut buffer = DecodeBuffer::new();
    let summary =
        typed::decode::<BacktestSummary>(message.envelope.type_hash, &message.payload, &mut buffer)
            .expect("a valid archive of the summary");
    assert_eq!(summary.id.as_str(), expected.id);
    assert_eq!(summary.pnl.to_native().to_bits(), expected.pnl.to_bits());
    assert_eq!(summary.trade_count.to_native(), expected.trade_count);
    assert_eq!(
        summary.win_rate.to_native().to_bits(),
        expected.win_rate.to_bits()
    );
    assert_eq!(summary.data.len(), 122 * KIB);
    assert!(
        summary.data.as_slice() == expected.data.as_slice(),
        "data differs"
    );
}

/// The connection of the production case: 256 KiB rings on both lanes, both ends.
async fn production_pair<R: TestRuntime>() -> (common::Peer, common::Peer) {
    let (client, server) = pair::<R>(options(256 * KIB), options(256 * KIB)).await;
    for end in [&client, &server] {
        for lane in [Lane::Tell, Lane::Ask] {
            assert_eq!(end.conn.streaming_threshold(lane), 255 * KIB, "{lane:?}");
        }
    }
    (client, server)
}

/// Told: the summary takes the ring and arrives intact.
async fn summary_told<R: TestRuntime>() {
    let (client, server) = production_pair::<R>().await;
    let summary = production_summary();

    let (type_hash, archive) = typed::encode(&summary).expect("archived");
    let route = client.conn.tell(6, type_hash, archive).await.expect("sent");
    assert_eq!(route, Route::Ring);

    let arrived = recv_tell::<R>(&server.inbox).await;
    assert_eq!(arrived.envelope.key, 6);
    assert_is_summary(&arrived, &summary);
    close::<R>(&client, &server).await;
}

/// Asked: the server validates the request, rebuilds the value and replies with it; the reply
/// arrives intact too.
async fn summary_asked<R: TestRuntime>() {
    let (client, server) = production_pair::<R>().await;
    let summary = production_summary();

    let answering = R::spawn_task(async move {
        let request = recv_ask::<R>(&server.inbox).await;
        assert_is_summary(&request.message, &production_summary());
        let owned = typed::decode_owned::<BacktestSummary>(
            request.message.envelope.type_hash,
            &request.message.payload,
        )
        .expect("deserialised");
        let (type_hash, archive) = typed::encode(&owned).expect("archived");
        let route = request.reply(type_hash, archive).await.expect("replied");
        assert_eq!(route, Route::Ring);
        server
    });

    let (type_hash, archive) = typed::encode(&summary).expect("archived");
    let reply = client
        .conn
        .ask(6, type_hash, archive, std::time::Duration::from_secs(20))
        .await
        .expect("a reply");
    assert_eq!(reply.envelope.kind, MessageKind::Reply);
    assert_is_summary(&reply, &summary);

    let server = answering.await;
    close::<R>(&client, &server).await;
}
