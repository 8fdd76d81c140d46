//! What a real network does to a connection, on every runtime, through a fault-injecting
//! loopback proxy (tests/proxy): a reader that stops reading, a connection cut in the middle of
//! a 5 MiB frame in either direction, writes split into small pieces under delay and limited
//! bandwidth, and a client that speaks no ringwire at all.
//!
//! Every wait is bounded; a tell that must be seen waiting is raced against a timer, which is
//! an observation with a bound, not a sleep that orders anything.

mod common;
mod proxy;

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    KIB, MIB, Peer, RECV_LIMIT, TestRuntime, assert_same_bytes, echo, in_thread, payload,
    recv_tell, try_within, within,
};
use proxy::{Direction, Faults, Proxy, small_connect, small_listener};
use ringwire::net::{AskFailed, ConnectError, Delivery, Options};
use ringwire::{AskError, BufferConfig, ConnectionConfig, MessageKind, Route};

common::on_every_runtime!(
    seconds: 30;
    stalled_reader_holds_tells_back_within_the_queue_bounds,
    stalled_link_holds_tells_back_until_resumed,
    cut_inside_a_5_mib_ask_towards_the_server,
    cut_inside_a_5_mib_reply_towards_the_client,
    split_delayed_throttled_exchange_arrives_in_order,
    garbage_client_is_refused_by_the_server,
);

/// Ring of both lanes: the smallest allowed, so that a few hundred KiB already stream.
const RING: usize = 256 * KIB;
/// Bound on payload bytes waiting in the sender's stream queue.
const STREAM_QUEUE: u64 = MIB as u64;
/// Far more than anything in these tests takes when the connection moves.
const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// Small rings and a small stream queue, with an inbox bound of `inbox_bytes`.
fn small_options(inbox_bytes: usize) -> Options {
    let ring = BufferConfig::new(RING).expect("a valid ring");
    Options {
        config: ConnectionConfig::builder()
            .tell_buffer_config(ring)
            .ask_buffer_config(ring)
            .max_queued_stream_bytes(STREAM_QUEUE)
            .build()
            .expect("a valid configuration"),
        inbox_bytes,
        ..Options::default()
    }
}

/// A client and a server on `R`, both with small kernel socket buffers, connected through a
/// proxy applying `to_server` and `to_client`.
async fn pair_via_proxy<R: TestRuntime>(
    to_server: Faults,
    to_client: Faults,
    client: Options,
    server: Options,
) -> (Peer, Peer, Proxy) {
    let listener = small_listener();
    let proxy = Proxy::start(listener.local_addr().expect("bound"), to_server, to_client);
    let client_socket = small_connect(proxy.addr());
    let accepted = in_thread("accept", move || listener.accept().expect("accept").0);
    let server_socket = accepted.wait(RECV_LIMIT);
    server_socket.set_nodelay(true).expect("TCP_NODELAY");

    let server = R::spawn_task(R::wrap_tcp(server_socket, server));
    let client = within::<R, _>(
        RECV_LIMIT,
        "client handshake",
        R::wrap_tcp(client_socket, client),
    )
    .await
    .expect("the client connects");
    let server = within::<R, _>(RECV_LIMIT, "server handshake", server)
        .await
        .expect("the server accepts");
    (client.into(), server.into(), proxy)
}

/// The messages of a test: `(key, seed, len)`, payload `payload(seed, len)`.
fn plan(count: usize, sizes: &[usize], keys: u64) -> Vec<(u64, u64, usize)> {
    (0..count)
        .map(|i| (i as u64 % keys, i as u64, sizes[i % sizes.len()]))
        .collect()
}

/// Checks arrivals one by one against `plan`: each key's messages in the order sent, byte
/// for byte.
struct InOrder {
    expected: HashMap<u64, VecDeque<(u64, usize)>>,
    left: usize,
}

impl InOrder {
    fn new(plan: &[(u64, u64, usize)]) -> Self {
        let mut expected: HashMap<u64, VecDeque<(u64, usize)>> = HashMap::new();
        for &(key, seed, len) in plan {
            expected.entry(key).or_default().push_back((seed, len));
        }
        Self {
            expected,
            left: plan.len(),
        }
    }

    fn arrived(&mut self, key: u64, data: &Bytes) {
        let (seed, len) = self
            .expected
            .get_mut(&key)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| panic!("an unexpected message for key {key}"));
        assert_same_bytes(
            data,
            &payload(seed, len),
            &format!("message {seed} of key {key}"),
        );
        self.left -= 1;
    }
}

/// The sum of payload bytes of a metrics snapshot, by either route.
fn sent_bytes(peer: &Peer) -> u64 {
    let send = peer.conn.metrics().send;
    send.ring_bytes + send.streaming_bytes
}

fn received_bytes(peer: &Peer) -> u64 {
    let receive = peer.conn.metrics().receive;
    receive.ring_bytes + receive.streaming_bytes
}

/// Sizes of the stalled tests' messages: ring frames and streams, 16 MiB over 200 tells.
const STALL_SIZES: [usize; 5] = [100, 10 * KIB, 100 * KIB, 300 * KIB, 3 * KIB];
const STALL_LARGEST: u64 = 300 * KIB as u64;

/// Tells the messages of `plan` in order until one of them waits for room; returns its
/// index. Fails if every tell is accepted, or one is refused.
async fn tell_until_one_waits<R: TestRuntime>(client: &Peer, plan: &[(u64, u64, usize)]) -> usize {
    /// A tell pending this long is waiting for room, not being slow.
    const WAITING: Duration = Duration::from_millis(500);
    for (next, &(key, seed, len)) in plan.iter().enumerate() {
        let tell = client.conn.tell(key, 0, payload(seed, len));
        // Dropping a tell that was not accepted leaves it unsent: it is told again later.
        match try_within::<R, _>(WAITING, tell).await {
            Some(accepted) => {
                accepted.expect("a tell is accepted, never refused");
            }
            None => return next,
        }
    }
    panic!("all {} tells were accepted with nothing moving", plan.len());
}

/// Reads every message of `plan` from `peer`'s inbox, checking order and bytes.
fn spawn_reader<R: TestRuntime>(peer: Peer, plan: &[(u64, u64, usize)]) -> common::Task<Peer> {
    let plan = plan.to_vec();
    R::spawn_task(async move {
        let mut check = InOrder::new(&plan);
        while check.left > 0 {
            let message = recv_tell::<R>(&peer.inbox).await;
            check.arrived(message.envelope.key, &message.payload);
        }
        peer
    })
}

/// Tells the rest of `plan`, from `next`, each within the bound.
async fn tell_rest<R: TestRuntime>(client: &Peer, plan: &[(u64, u64, usize)], next: usize) {
    for &(key, seed, len) in &plan[next..] {
        let tell = client.conn.tell(key, 0, payload(seed, len));
        within::<R, _>(RECV_LIMIT, "a tell after the resume", tell)
            .await
            .expect("accepted");
    }
}

/// The server stops reading its inbox while the client keeps telling. The client's tells wait
/// (they neither fail nor drop anything), what the client holds stays within its configured
/// queues, and once the server reads again everything arrives in per-key order.
async fn stalled_reader_holds_tells_back_within_the_queue_bounds<R: TestRuntime>() {
    const INBOX: usize = 256 * KIB;
    let plan = plan(200, &STALL_SIZES, 4);
    let total: usize = plan.iter().map(|&(_, _, len)| len).sum();
    let largest = STALL_LARGEST;
    let (client, server, _proxy) = pair_via_proxy::<R>(
        Faults::default(),
        Faults::default(),
        small_options(64 * MIB),
        small_options(INBOX),
    )
    .await;

    // Tell until one tell waits; nobody reads the server's inbox meanwhile.
    let next = tell_until_one_waits::<R>(&client, &plan).await;
    assert!(client.conn.is_open() && server.conn.is_open());

    // The reader really stopped: the server took in at most its inbox bound, plus what one
    // read (64 KiB) can complete once it is crossed.
    let at_server = received_bytes(&server);
    assert!(
        at_server <= (INBOX + 64 * KIB) as u64 + largest,
        "the server took in {at_server} bytes past an inbox bound of {INBOX}"
    );
    // What the client accepted and the server has not is bounded by the client's queues (the
    // tell ring, the stream queue and the one message it may exceed that by) plus what is in
    // flight: kernel buffers of 128 KiB at each of four sockets, the proxy's 16 KiB, the
    // server's 64 KiB read and one partial message in reassembly.
    let accepted = sent_bytes(&client);
    let in_flight = 4 * 128 * KIB as u64 + 80 * KIB as u64 + largest;
    let bound = RING as u64 + STREAM_QUEUE + largest + in_flight;
    assert!(
        accepted - at_server <= bound,
        "the client holds {} bytes, more than {bound}",
        accepted - at_server
    );
    assert!(client.conn.metrics().send.backpressure_refusals > 0);
    eprintln!(
        "{}: a tell waited at message {next}; server took {at_server} bytes, {} in between",
        R::NAME,
        accepted - at_server
    );
    assert!(next < plan.len() / 2, "waited only at message {next}");

    // The server reads again; the tell that was waiting and all the rest go through.
    let reader = spawn_reader::<R>(server, &plan);
    tell_rest::<R>(&client, &plan, next).await;
    let server = within::<R, _>(RECV_LIMIT, "every message", reader).await;
    assert_eq!(received_bytes(&server), total as u64);
    common::close::<R>(&client, &server).await;
}

/// The proxy stops forwarding towards the server while the server reads on: the same
/// back-pressure from the network rather than from the application, and the same recovery.
async fn stalled_link_holds_tells_back_until_resumed<R: TestRuntime>() {
    let plan = plan(200, &STALL_SIZES, 4);
    let total: usize = plan.iter().map(|&(_, _, len)| len).sum();
    let (client, server, proxy) = pair_via_proxy::<R>(
        Faults::default(),
        Faults::default(),
        small_options(64 * MIB),
        small_options(64 * MIB),
    )
    .await;
    let reader = spawn_reader::<R>(server, &plan);

    proxy.stall(Direction::ToServer);
    let next = tell_until_one_waits::<R>(&client, &plan).await;
    assert!(client.conn.is_open());
    // What left the client and did not pass the proxy is held in the client's queues, the
    // client's send buffer and the proxy's receive buffer (128 KiB each), and at most one
    // read (16 KiB) that was under way when the stall began.
    let accepted = sent_bytes(&client);
    let passed = proxy.forwarded(Direction::ToServer);
    let bound = RING as u64 + STREAM_QUEUE + STALL_LARGEST + 2 * 128 * KIB as u64 + 16 * KIB as u64;
    assert!(
        accepted.saturating_sub(passed) <= bound,
        "{accepted} bytes accepted, {passed} passed the proxy: more than {bound} held"
    );
    assert!(next < plan.len() / 2, "waited only at message {next}");
    eprintln!(
        "{}: link stalled, a tell waited at message {next}; {} bytes held",
        R::NAME,
        accepted.saturating_sub(passed)
    );

    proxy.resume(Direction::ToServer);
    tell_rest::<R>(&client, &plan, next).await;
    let server = within::<R, _>(RECV_LIMIT, "every message", reader).await;
    assert_eq!(received_bytes(&server), total as u64);
    common::close::<R>(&client, &server).await;
}

/// After a cut: `peer`'s inbox ends, it is no longer open, and `take_unsent` hands back
/// exactly `expected` (kind and bytes), once.
async fn assert_ended<R: TestRuntime>(peer: &Peer, expected: Option<(MessageKind, &Bytes)>) {
    let end = within::<R, _>(RECV_LIMIT, "the inbox's end", peer.inbox.recv()).await;
    assert!(end.is_none(), "nothing more arrives after a cut");
    assert!(!peer.conn.is_open());
    let unsent = peer.conn.take_unsent();
    match expected {
        None => assert!(unsent.is_empty(), "{unsent:?}"),
        Some((kind, data)) => {
            assert_eq!(unsent.len(), 1, "{unsent:?}");
            assert_eq!(unsent[0].envelope.kind, kind);
            assert_same_bytes(&unsent[0].payload, data, "the unsent message");
        }
    }
    assert!(peer.conn.take_unsent().is_empty(), "taken once");
}

/// The proxy cuts the connection 1 MiB into a 5 MiB ask on its way to the server.
async fn cut_inside_a_5_mib_ask_towards_the_server<R: TestRuntime>() {
    let cut = Faults {
        cut_after: Some(MIB as u64),
        ..Faults::default()
    };
    let (client, server, proxy) = pair_via_proxy::<R>(
        cut,
        Faults::default(),
        small_options(MIB),
        small_options(MIB),
    )
    .await;
    let request = payload(1, 5 * MIB);

    let ask = client.conn.ask(3, 0, request.clone(), ASK_TIMEOUT);
    let outcome = within::<R, _>(RECV_LIMIT, "the ask's outcome", ask).await;
    assert!(
        matches!(outcome, Err(AskFailed::NoReply(AskError::ConnectionLost))),
        "{outcome:?}"
    );
    assert!(proxy.is_cut());
    assert_eq!(proxy.forwarded(Direction::ToServer), MIB as u64);
    assert_ended::<R>(&client, Some((MessageKind::Ask, &request))).await;
    assert_ended::<R>(&server, None).await;
    assert_eq!(server.conn.metrics().receive.reassembly_bytes_in_use, 0);
}

/// The proxy cuts the connection 1 MiB into a 5 MiB reply on its way to the client.
async fn cut_inside_a_5_mib_reply_towards_the_client<R: TestRuntime>() {
    let cut = Faults {
        cut_after: Some(MIB as u64),
        ..Faults::default()
    };
    let (client, server, proxy) = pair_via_proxy::<R>(
        Faults::default(),
        cut,
        small_options(MIB),
        small_options(MIB),
    )
    .await;
    let reply = payload(2, 5 * MIB);

    let answering = reply.clone();
    let server = R::spawn_task(async move {
        let Some(Delivery::Ask(request)) = server.inbox.recv().await else {
            panic!("expected an ask");
        };
        let route = request.reply(0, answering).await.expect("reply accepted");
        assert_eq!(route, Route::Stream);
        server
    });
    let ask = client
        .conn
        .ask(4, 0, Bytes::from_static(b"send 5 MiB"), ASK_TIMEOUT);
    let outcome = within::<R, _>(RECV_LIMIT, "the ask's outcome", ask).await;
    assert!(
        matches!(outcome, Err(AskFailed::NoReply(AskError::ConnectionLost))),
        "{outcome:?}"
    );
    assert!(proxy.is_cut());
    assert_eq!(proxy.forwarded(Direction::ToClient), MIB as u64);
    let server = within::<R, _>(RECV_LIMIT, "the server's reply", server).await;
    assert_ended::<R>(&client, None).await;
    assert_eq!(client.conn.metrics().receive.reassembly_bytes_in_use, 0);
    assert_ended::<R>(&server, Some((MessageKind::Reply, &reply))).await;
}

/// Both directions split into pieces of 1 to 1500 bytes, delayed and throttled: a mixed-size
/// exchange of tells and asks is echoed back intact and in per-key order.
async fn split_delayed_throttled_exchange_arrives_in_order<R: TestRuntime>() {
    let faults = |seed| Faults {
        delay: Duration::from_millis(1),
        bytes_per_second: Some(16 * MIB as u64),
        max_piece: Some(1500),
        seed,
        ..Faults::default()
    };
    let (client, server, proxy) = pair_via_proxy::<R>(
        faults(7),
        faults(11),
        small_options(MIB),
        small_options(MIB),
    )
    .await;
    let echoing = R::spawn_task(echo(server));

    let sizes = [
        0,
        1,
        700,
        20 * KIB,
        RING - KIB,
        RING - KIB + 1,
        600 * KIB,
        5,
    ];
    let plan = plan(24, &sizes, 3);
    let total: usize = plan.iter().map(|&(_, _, len)| len).sum();
    let reader_plan = plan.clone();
    let client_inbox = client.inbox;
    let reader = R::spawn_task(async move {
        let mut check = InOrder::new(&reader_plan);
        while check.left > 0 {
            let message = recv_tell::<R>(&client_inbox).await;
            check.arrived(message.envelope.key, &message.payload);
        }
        client_inbox
    });

    // Tells, with asks of other keys in between that must come back whole too.
    let started = Instant::now();
    for (i, &(key, seed, len)) in plan.iter().enumerate() {
        let tell = client.conn.tell(key, 0, payload(seed, len));
        within::<R, _>(RECV_LIMIT, "a tell", tell)
            .await
            .expect("accepted");
        if i % 8 == 0 {
            let request = payload(1000 + seed, len);
            let ask = client.conn.ask(100 + key, 0, request.clone(), ASK_TIMEOUT);
            let reply = within::<R, _>(RECV_LIMIT, "an ask", ask)
                .await
                .expect("a reply");
            assert_same_bytes(&reply.payload, &request, "the reply");
        }
    }
    let client_inbox = within::<R, _>(RECV_LIMIT, "every echo", reader).await;
    let client = Peer {
        conn: client.conn,
        inbox: client_inbox,
    };
    assert!(proxy.forwarded(Direction::ToServer) >= total as u64);
    assert!(proxy.forwarded(Direction::ToClient) >= total as u64);

    within::<R, _>(RECV_LIMIT, "graceful close", client.conn.close())
        .await
        .expect("a clean close");
    let echoed = within::<R, _>(RECV_LIMIT, "the echo server's end", echoing).await;
    assert_eq!(echoed.tells, plan.len());
    assert_eq!(echoed.asks, plan.len().div_ceil(8));
    let end = within::<R, _>(RECV_LIMIT, "the inbox's end", client.inbox.recv()).await;
    assert!(end.is_none());
    eprintln!(
        "{}: exchange of {total} bytes took {:?}",
        R::NAME,
        started.elapsed()
    );
}

/// A client that writes bytes which are not ringwire is refused by the server's handshake as
/// soon as they arrive, well within the handshake timeout. (A server that is not ringwire is
/// the client-side case, in tests/e2e_failures.rs.)
async fn garbage_client_is_refused_by_the_server<R: TestRuntime>() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let garbage: [&'static [u8]; 3] = [
        &[0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03],
        // Looks like a HELLO header, with a body length no HELLO has.
        &[0x10, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
        // A HELLO header with the wrong magic.
        &[0x10, 0, 0, 0, 40, 0, 0, 0, b'H', b'T', b'T', b'P'],
    ];
    for bytes in garbage {
        let listener = R::listen().await;
        let addr: SocketAddr = R::local_addr(&listener);
        let writer = in_thread("garbage client", move || {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream.write_all(bytes).expect("written");
            // Held open until the server hangs up, so only the bytes can fail the handshake.
            stream.set_read_timeout(Some(RECV_LIMIT)).expect("timeout");
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stream, &mut sink);
        });
        let options = Options {
            handshake_timeout: TIMEOUT,
            ..Options::default()
        };
        let started = Instant::now();
        let outcome = within::<R, _>(RECV_LIMIT, "accept", R::accept(&listener, options)).await;
        let elapsed = started.elapsed();
        match outcome {
            Err(ConnectError::Failed(why)) => assert!(why.contains("handshake"), "{why}"),
            other => panic!("{bytes:02x?}: expected a failed handshake, got {other:?}"),
        }
        assert!(elapsed < TIMEOUT, "{bytes:02x?}: took {elapsed:?}");
        writer.wait(RECV_LIMIT);
    }
}
