//! Load on every runtime: 64 tasks share one connection through clones of its handle and
//! send, for a bounded time, messages of 0 B to 5 MiB (most under 1 KiB) to 8 shared keys,
//! mixing `tell` (waits for room), `try_tell` (hands the message back when full) and asks the
//! server answers. Every message is accounted for by name: the server checks its bytes and,
//! per sender task and key, that sequence numbers only grow; at the end what was accepted is
//! exactly what arrived, and what was handed back never arrived.
//!
//! A second scenario cuts the server's socket in the middle of the load. Every accepted
//! message then arrived, or came back from `take_unsent`, or was completely written and lost
//! in flight, which docs/DESIGN.md says is not reported ("What delivered or reported can
//! promise"). The last kind is counted on its own and bounded by what the kernel buffers
//! between the two ends can hold.

mod common;
mod load;
mod proxy;

use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{MIB, Peer, RECV_LIMIT, TestRuntime, in_thread, options, pair, within};
use load::{
    Accepted, Id, Kind, LARGEST, RING, TASKS, THRESHOLD, accepted_by_sender, join_senders,
    start_load, totals,
};
use proxy::{small_connect, small_listener};
use ringwire::net::CloseError;
use ringwire::{AskError, FRAME_HEADER_LEN, MESSAGE_HEADER_LEN, MessageKind, Route};
use socket2::SockRef;

common::on_every_runtime!(seconds: 60; load_is_accounted_for_exactly, load_survives_a_cut);

/// How long the tasks send in the scenario without a cut.
const LOAD_TIME: Duration = Duration::from_millis(1500);
/// When the server's socket is cut, after the tasks started.
const CUT_AFTER: Duration = Duration::from_millis(750);

/// Without a cut: every accepted message arrives exactly once, whole, in order per task and
/// key; what `try_tell` handed back never arrives; both ends' counters agree.
async fn load_is_accounted_for_exactly<R: TestRuntime>() {
    let (client, server) = pair::<R>(options(RING), options(RING)).await;
    let started = Instant::now();
    let (receiving, senders) = start_load::<R>(&client, server, started + LOAD_TIME);
    let sent = join_senders::<R>(senders).await;
    let sending_time = started.elapsed();
    within::<R, _>(RECV_LIMIT, "graceful close", client.conn.close())
        .await
        .expect("a clean close");
    let received = within::<R, _>(RECV_LIMIT, "the server's end", receiving).await;

    for (task, sent) in sent.iter().enumerate() {
        assert!(!sent.stopped_by_loss, "task {task} saw the connection end");
        assert!(
            sent.asks_failed.is_empty(),
            "task {task}: {:?}",
            sent.asks_failed
        );
    }
    // Exactly the accepted messages arrived, each once and in its task's order per key: the
    // server saw strictly growing numbers, and here the lists are equal.
    let accepted = accepted_by_sender(&sent);
    assert_eq!(
        received.by_sender.len(),
        accepted.len(),
        "task-and-key pairs"
    );
    for (sender, messages) in &accepted {
        let expected: Vec<(u32, Kind)> = messages.iter().map(|m| (m.id.seq, m.kind)).collect();
        let arrived = received.arrived_from(*sender);
        if arrived != expected {
            let at = arrived.iter().zip(&expected).position(|(a, e)| a != e);
            panic!(
                "task {} key {}: {} accepted, {} arrived, first difference at {at:?}",
                sender.0,
                sender.1,
                expected.len(),
                arrived.len()
            );
        }
    }

    let totals = totals(&sent);
    assert_eq!(received.messages, totals.accepted);
    assert_eq!(received.bytes, totals.accepted_bytes);
    assert_eq!(totals.asks_answered, totals.asks);
    assert_eq!(received.replies_not_sent, 0);
    assert_eq!((totals.smallest, totals.largest), (0, LARGEST), "the edges");

    // Both ends' counters say the same: the client's sends are the server's arrivals, and the
    // server's replies the client's.
    let client_metrics = client.conn.metrics();
    let server_metrics = received.metrics;
    let send = client_metrics.send;
    assert_eq!(send.ring_sends + send.streaming_sends, totals.accepted);
    assert_eq!(
        send.ring_bytes + send.streaming_bytes,
        totals.accepted_bytes
    );
    let arrivals = server_metrics.receive;
    assert_eq!(
        arrivals.ring_messages + arrivals.stream_messages,
        totals.accepted
    );
    assert_eq!(
        arrivals.ring_bytes + arrivals.streaming_bytes,
        totals.accepted_bytes
    );
    let replies = server_metrics.send;
    let replies_in = client_metrics.receive;
    assert_eq!(replies.ring_sends + replies.streaming_sends, totals.asks);
    assert_eq!(
        replies_in.ring_messages + replies_in.stream_messages,
        totals.asks
    );
    assert_eq!(
        replies_in.ring_bytes + replies_in.streaming_bytes,
        replies.ring_bytes + replies.streaming_bytes
    );
    assert_eq!(client_metrics.asks.sent, totals.asks);
    assert_eq!(client_metrics.asks.answered, totals.asks);
    // Every hand-back was a refusal; `tell` waiting for room adds refusals of its own.
    assert!(send.backpressure_refusals >= totals.handed_back);

    eprintln!(
        "{}: {TASKS} tasks for {sending_time:.2?}: {} messages accepted ({} tells, {} asks \
         answered), {:.1} MiB, sizes {} B to {} B; {} of {} try_tells handed back; {} ring \
         and {} streamed ({} of them behind a stream of their key, {} for a full ring); \
         reply bytes {}; {} refusals",
        R::NAME,
        totals.accepted,
        totals.tells,
        totals.asks_answered,
        totals.accepted_bytes as f64 / MIB as f64,
        totals.smallest,
        totals.largest,
        totals.handed_back,
        totals.try_tells,
        send.ring_sends,
        send.streaming_sends,
        send.ordered_behind_stream,
        send.streaming_fallbacks,
        replies.ring_bytes + replies.streaming_bytes,
        send.backpressure_refusals,
    );
}

/// A client and a server on `R` over loopback sockets with small kernel buffers; a second
/// handle on the server's socket, to cut it with; and the kernel buffer room between the
/// two ends (the client's send buffer and the server's receive buffer, as the kernel reports
/// them).
async fn small_buffer_pair<R: TestRuntime>() -> (Peer, Peer, TcpStream, usize) {
    let listener = small_listener();
    let addr = listener.local_addr().expect("bound");
    let accepted = in_thread("accept", move || listener.accept().expect("accept").0);
    let client_socket = small_connect(addr);
    let server_socket = accepted.wait(RECV_LIMIT);
    server_socket.set_nodelay(true).expect("TCP_NODELAY");
    let cut = server_socket.try_clone().expect("a second handle");
    let sent = SockRef::from(&client_socket).send_buffer_size();
    let received = SockRef::from(&server_socket).recv_buffer_size();
    let kernel_room = sent.expect("SO_SNDBUF") + received.expect("SO_RCVBUF");

    let server = R::spawn_task(R::wrap_tcp(server_socket, options(RING)));
    let client = R::wrap_tcp(client_socket, options(RING));
    let client = within::<R, _>(RECV_LIMIT, "client handshake", client)
        .await
        .expect("the client connects");
    let server = within::<R, _>(RECV_LIMIT, "server handshake", server)
        .await
        .expect("the server accepts");
    (client.into(), server.into(), cut, kernel_room)
}

/// The least a message that was completely written and then lost still occupied of what was
/// in flight: its last frame. A ring message is one frame, header and payload; a stream's
/// last frame is at least a frame header. An ask's route is not reported, so it counts as a
/// stream.
fn last_frame_len(message: &Accepted) -> usize {
    match message.route {
        Some(Route::Ring) => MESSAGE_HEADER_LEN + message.len,
        _ => FRAME_HEADER_LEN,
    }
}

/// The server's socket is shut down in the middle of the load. Every accepted message is
/// then in exactly one of: arrived, handed back by `take_unsent`, or lost in flight
/// (completely written, not arrived; documented as not reported). Per task and key they
/// come in that order, and what was lost in flight fits in the buffers between the ends.
async fn load_survives_a_cut<R: TestRuntime>() {
    let (client, server, cut, kernel_room) = small_buffer_pair::<R>().await;
    let started = Instant::now();
    // The time bound is only a safety net: the cut ends every task.
    let (receiving, senders) = start_load::<R>(&client, server, started + RECV_LIMIT);
    R::default().sleep_until(started + CUT_AFTER).await;
    cut.shutdown(Shutdown::Both)
        .expect("shut the server's socket down");
    let sent = join_senders::<R>(senders).await;
    let stopped_after = started.elapsed();
    let end = within::<R, _>(RECV_LIMIT, "the client's inbox end", client.inbox.recv()).await;
    assert!(end.is_none(), "the server sends no tells");
    let received = within::<R, _>(RECV_LIMIT, "the server's end", receiving).await;
    let unsent = client.conn.take_unsent();
    let closed = within::<R, _>(RECV_LIMIT, "close after the cut", client.conn.close()).await;
    assert!(matches!(closed, Err(CloseError::Failed(_))), "{closed:?}");

    for (task, sent) in sent.iter().enumerate() {
        assert!(
            sent.stopped_by_loss,
            "task {task} was still sending at the cut"
        );
        for (id, error) in &sent.asks_failed {
            assert_eq!(*error, AskError::ConnectionLost, "ask {id:?}");
        }
        for &id in &sent.asks_answered {
            assert!(
                received.has_arrived(id),
                "ask {id:?} answered, never arrived"
            );
        }
    }

    // What came back is whole, and was accepted.
    let accepted = accepted_by_sender(&sent);
    let mut unsent_by_sender: HashMap<(u32, u64), Vec<(u32, Kind)>> = HashMap::new();
    for message in &unsent {
        let id = Id::from_envelope(&message.envelope);
        let kind = match message.envelope.kind {
            MessageKind::Tell => Kind::Tell,
            MessageKind::Ask => Kind::Ask,
            MessageKind::Reply => panic!("the client sends no replies"),
        };
        id.check(kind, &message.payload);
        unsent_by_sender
            .entry((id.task, id.key))
            .or_default()
            .push((id.seq, kind));
    }
    let failed_asks: Vec<Id> = sent
        .iter()
        .flat_map(|task| task.asks_failed.iter().map(|(id, _)| *id))
        .collect();

    // Per task and key, the accepted messages split into what arrived (a prefix: a message
    // arrives only after the earlier ones of its key), what was lost in flight, and what
    // came back (a suffix: a message is completely written only after the earlier ones).
    let mut in_flight: Vec<Accepted> = Vec::new();
    let mut arrived_count = 0;
    let mut unsent_count = 0;
    for (sender, messages) in &accepted {
        let seqs: Vec<(u32, Kind)> = messages.iter().map(|m| (m.id.seq, m.kind)).collect();
        let arrived = received.arrived_from(*sender);
        let mut back = unsent_by_sender.remove(sender).unwrap_or_default();
        back.sort_unstable_by_key(|&(seq, _)| seq);
        let (task, key) = sender;
        assert!(
            seqs.starts_with(arrived),
            "task {task} key {key}: arrived {arrived:?} is not a prefix of accepted"
        );
        assert!(
            seqs.ends_with(&back),
            "task {task} key {key}: unsent {back:?} is not a suffix of accepted"
        );
        assert!(
            arrived.len() + back.len() <= seqs.len(),
            "task {task} key {key}: a message both arrived and came back"
        );
        arrived_count += arrived.len();
        unsent_count += back.len();
        let lost = &messages[arrived.len()..messages.len() - back.len()];
        in_flight.extend(lost);
        // An ask that did not arrive cannot have been answered.
        for message in &messages[arrived.len()..] {
            if message.kind == Kind::Ask {
                assert!(failed_asks.contains(&message.id), "ask {message:?}");
            }
        }
    }
    assert!(
        unsent_by_sender.is_empty(),
        "unsent messages never accepted: {unsent_by_sender:?}"
    );
    let arrived_total: usize = received.by_sender.values().map(Vec::len).sum();
    assert_eq!(arrived_count, arrived_total, "an arrival never accepted");

    // Lost in flight: completely written, so each one's last frame was between the client's
    // socket and the server's connection: in the two kernel buffers, or the one partial
    // frame the server had read but not decoded (at most a ring frame of the threshold).
    let in_flight_last_frames: usize = in_flight.iter().map(last_frame_len).sum();
    let room = kernel_room + MESSAGE_HEADER_LEN + THRESHOLD;
    assert!(
        in_flight_last_frames <= room,
        "{} messages lost in flight with {in_flight_last_frames} bytes of last frames; at \
         most {room} fit",
        in_flight.len()
    );
    assert!(received.messages > 0, "the cut came after some arrivals");
    assert!(
        !unsent.is_empty(),
        "the cut came while messages were queued"
    );

    let totals = totals(&sent);
    assert_eq!(
        totals.accepted as usize,
        arrived_count + unsent_count + in_flight.len()
    );
    let in_flight_asks = in_flight.iter().filter(|m| m.kind == Kind::Ask).count();
    eprintln!(
        "{}: cut at {CUT_AFTER:?}, all {TASKS} tasks stopped by {stopped_after:.2?}: {} \
         accepted ({:.1} MiB) = {arrived_count} arrived + {unsent_count} handed back unsent \
         + {} lost in flight ({in_flight_asks} of them asks; last frames {} B of {room} B \
         room); {} handed back at the call; asks: {} answered, {} failed, {} replies not \
         sent",
        R::NAME,
        totals.accepted,
        totals.accepted_bytes as f64 / MIB as f64,
        in_flight.len(),
        in_flight_last_frames,
        totals.handed_back,
        totals.asks_answered,
        failed_asks.len(),
        received.replies_not_sent,
    );
}
