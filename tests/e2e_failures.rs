//! Failures over real TCP on every runtime: a peer that dies in the middle of a 5 MiB message,
//! a peer that is not ringwire, a peer that never answers the handshake or the close, and
//! nobody listening. Each must end in the documented typed error, promptly, and never hang.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    MIB, Peer, RECV_LIMIT, Running, TestRuntime, assert_same_bytes, in_thread, payload, within,
};
use futures_util::future;
use ringwire::net::{AskFailed, CloseError, ConnectError, Options};
use ringwire::{AskError, ConnectionConfig, HELLO_FRAME_LEN, MessageKind, Route, SendError};
use socket2::{Domain, Socket, Type};

common::on_every_runtime!(
    seconds: 30;
    peer_killed_during_ask,
    peer_killed_during_tell,
    http_server_fails_the_handshake,
    silent_server_times_out,
    closed_port_is_an_io_error,
    close_gives_up_on_a_peer_that_never_answers,
);

/// Socket buffers of the peer-killed tests: small, so that only a little of a message can be
/// in flight, and the sender cannot have written all of it when the peer dies.
const SOCKET_BUFFER: usize = 64 * 1024;
/// How much the dying peer reads before it drops its socket.
const KILL_AFTER: usize = MIB;
const MESSAGE_LEN: usize = 5 * MIB;

fn loopback() -> socket2::SockAddr {
    SocketAddr::from(([127, 0, 0, 1], 0)).into()
}

/// A listener on loopback whose accepted sockets have a small receive buffer.
fn small_listener() -> TcpListener {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    // Set before `listen`, so that accepted sockets inherit it.
    socket
        .set_recv_buffer_size(SOCKET_BUFFER)
        .expect("SO_RCVBUF");
    socket.bind(&loopback()).expect("bind 127.0.0.1");
    socket.listen(1).expect("listen");
    TcpListener::from(socket)
}

/// Accepts one connection on `listener` and completes the handshake from the peer's side:
/// its `HELLO` comes from the sans-IO core.
fn accept_and_handshake(listener: &TcpListener) -> TcpStream {
    let (mut stream, _) = listener.accept().expect("accept");
    stream.set_read_timeout(Some(RECV_LIMIT)).expect("timeout");
    let mut hello = Vec::new();
    let mut core = ringwire::Connection::new(ConnectionConfig::default(), false);
    while core.transmit_into(&mut hello, usize::MAX) > 0 {}
    stream.write_all(&hello).expect("HELLO written");
    stream
}

/// A peer that completes the handshake, reads `KILL_AFTER` bytes and drops its socket with
/// more unread: the connection dies in the middle of whatever is being sent. Returns the
/// bytes it read.
fn dying_peer() -> (SocketAddr, Running<usize>) {
    let listener = small_listener();
    let addr = listener.local_addr().expect("bound");

    let running = in_thread("dying peer", move || {
        let mut stream = accept_and_handshake(&listener);
        let mut read = 0;
        let mut buffer = vec![0; 64 * 1024];
        while read < KILL_AFTER {
            match stream.read(&mut buffer).expect("read") {
                0 => panic!("the sender hung up first"),
                n => read += n,
            }
        }
        read
    });
    (addr, running)
}

/// A client on `R` connected to `addr` through a socket with a small send buffer.
async fn connect_small<R: TestRuntime>(addr: SocketAddr, options: Options) -> Peer {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket
        .set_send_buffer_size(SOCKET_BUFFER)
        .expect("SO_SNDBUF");
    socket.connect(&addr.into()).expect("connect");
    socket.set_tcp_nodelay(true).expect("TCP_NODELAY");
    let started = R::wrap_tcp(TcpStream::from(socket), options);
    let connected = within::<R, _>(RECV_LIMIT, "handshake", started).await;
    connected.expect("the handshake completes").into()
}

/// A client on `R` connected to a [`dying_peer`].
async fn connect_to_dying_peer<R: TestRuntime>() -> (Peer, Running<usize>) {
    let (addr, peer) = dying_peer();
    (connect_small::<R>(addr, Options::default()).await, peer)
}

/// After the peer died part way through `message`: the inbox ends, the connection says it is
/// not open, the message comes back whole from `take_unsent`, and new sends are refused with
/// the message handed back.
async fn assert_lost<R: TestRuntime>(
    client: &Peer,
    peer: Running<usize>,
    message: &Bytes,
    kind: MessageKind,
) {
    let end = within::<R, _>(RECV_LIMIT, "the inbox's end", client.inbox.recv()).await;
    assert!(end.is_none(), "nothing arrives from a dead peer");
    assert!(!client.conn.is_open());
    let read = peer.wait(RECV_LIMIT);
    assert!(
        read < message.len(),
        "the peer read {read} bytes: all of it"
    );

    let unsent = client.conn.take_unsent();
    assert_eq!(unsent.len(), 1, "{unsent:?}");
    assert_eq!(unsent[0].envelope.kind, kind);
    assert_same_bytes(&unsent[0].payload, message, "the unsent message");
    assert!(client.conn.take_unsent().is_empty(), "taken once");

    let refused = client.conn.tell(5, 0, Bytes::from_static(b"late")).await;
    match refused {
        Err(SendError::NotOpen { message }) => assert_eq!(&message.payload[..], b"late"),
        other => panic!("expected NotOpen, got {other:?}"),
    }
}

/// A pending 5 MiB ask fails with `ConnectionLost` when the peer dies while it is written.
async fn peer_killed_during_ask<R: TestRuntime>() {
    let (client, peer) = connect_to_dying_peer::<R>().await;
    let request = payload(5, MESSAGE_LEN);

    // The ask's own deadline is far away: the failure must come from the loss, not the clock.
    let ask = client
        .conn
        .ask(5, 0, request.clone(), Duration::from_secs(120));
    let outcome = within::<R, _>(RECV_LIMIT, "the ask's outcome", ask).await;
    let lost = matches!(outcome, Err(AskFailed::NoReply(AskError::ConnectionLost)));
    assert!(lost, "{outcome:?}");
    assert_lost::<R>(&client, peer, &request, MessageKind::Ask).await;
}

/// A 5 MiB tell that was accepted but not completely written comes back from `take_unsent`.
async fn peer_killed_during_tell<R: TestRuntime>() {
    let (client, peer) = connect_to_dying_peer::<R>().await;
    let message = payload(6, MESSAGE_LEN);

    let route = client.conn.tell(5, 0, message.clone()).await;
    assert_eq!(route.expect("accepted"), Route::Stream);
    assert_lost::<R>(&client, peer, &message, MessageKind::Tell).await;
}

/// A server that writes `says` to its first client, whatever it hears, and then reads until
/// the client hangs up. Returns the bytes it read.
fn scripted_server(says: &'static [u8]) -> (SocketAddr, Running<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("bound");
    let running = in_thread("scripted server", move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(RECV_LIMIT)).expect("timeout");
        stream.write_all(says).expect("written");
        let mut read = Vec::new();
        stream.read_to_end(&mut read).expect("the client hangs up");
        read.len()
    });
    (addr, running)
}

/// Connects to `addr` with a handshake timeout of `timeout`; returns the outcome and how long
/// it took.
async fn connect_with_timeout<R: TestRuntime>(
    addr: SocketAddr,
    timeout: Duration,
) -> (Result<Peer, ConnectError>, Duration) {
    let options = Options {
        handshake_timeout: timeout,
        ..Options::default()
    };
    let started = Instant::now();
    let outcome = within::<R, _>(RECV_LIMIT, "connect", R::connect(addr, options)).await;
    (outcome.map(Peer::from), started.elapsed())
}

/// A peer that speaks something else fails the handshake as soon as its first bytes arrive,
/// with a reason, and the client hangs up having written its `HELLO` and nothing more.
async fn http_server_fails_the_handshake<R: TestRuntime>() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let (addr, server) = scripted_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
    );
    let (outcome, elapsed) = connect_with_timeout::<R>(addr, TIMEOUT).await;
    match outcome {
        Err(ConnectError::Failed(why)) => assert!(why.contains("handshake"), "{why}"),
        other => panic!("expected a failed handshake, got {other:?}"),
    }
    assert!(elapsed < TIMEOUT, "took {elapsed:?}");
    assert_eq!(server.wait(RECV_LIMIT), HELLO_FRAME_LEN);
}

/// A peer that accepts and says nothing fails the handshake when its timeout passes, and the
/// client hangs up.
async fn silent_server_times_out<R: TestRuntime>() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let (addr, server) = scripted_server(b"");
    let (outcome, elapsed) = connect_with_timeout::<R>(addr, TIMEOUT).await;
    assert!(
        matches!(outcome, Err(ConnectError::Timeout(TIMEOUT))),
        "{outcome:?}"
    );
    assert!(elapsed >= TIMEOUT, "took {elapsed:?}");
    assert_eq!(server.wait(RECV_LIMIT), HELLO_FRAME_LEN);
}

/// Nobody listening: the connect's own I/O error.
async fn closed_port_is_an_io_error<R: TestRuntime>() {
    // Bound and closed again: nothing listens on this port now.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let outcome = within::<R, _>(RECV_LIMIT, "connect", R::connect(addr, Options::default())).await;
    match outcome {
        Err(ConnectError::Io(error)) => {
            assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

/// A peer that completes the handshake and then neither reads nor writes until it is told to
/// go on; then it reads until the other end hangs up, and returns the bytes it read after its
/// `HELLO` went out.
fn mute_peer() -> (SocketAddr, mpsc::Sender<()>, Running<usize>) {
    let listener = small_listener();
    let addr = listener.local_addr().expect("bound");
    let (go_on, told) = mpsc::channel();
    let running = in_thread("mute peer", move || {
        let mut stream = accept_and_handshake(&listener);
        told.recv_timeout(RECV_LIMIT).expect("told to go on");
        let mut read = Vec::new();
        stream.read_to_end(&mut read).expect("the client hangs up");
        read.len()
    });
    (addr, go_on, running)
}

/// A close whose peer never reads nor answers gives up at the close timeout: `close` returns
/// `TimedOut` no sooner and not much later, the 5 MiB tell it could not write comes back whole,
/// and a pending ask fails with `CloseTimedOut`.
async fn close_gives_up_on_a_peer_that_never_answers<R: TestRuntime>() {
    const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);
    /// Room for a busy machine's scheduling; far below the ask's own timeout.
    const MARGIN: Duration = Duration::from_secs(3);
    let (addr, go_on, peer) = mute_peer();
    let options = Options {
        config: ConnectionConfig::builder()
            .close_timeout(CLOSE_TIMEOUT)
            .build()
            .expect("a valid close timeout"),
        ..Options::default()
    };
    let client = connect_small::<R>(addr, options).await;
    let message = payload(7, MESSAGE_LEN);
    let route = client.conn.tell(5, 0, message.clone()).await;
    assert_eq!(route.expect("accepted"), Route::Stream);

    // The ask is accepted at its first poll, before the close begins.
    let question = Bytes::from_static(b"anyone there?");
    let ask = client
        .conn
        .ask(6, 0, question.clone(), Duration::from_secs(120));
    let closing = async {
        assert_eq!(client.conn.metrics().asks.sent, 1, "the ask went first");
        let started = Instant::now();
        let closed = client.conn.close().await;
        (closed, started.elapsed())
    };
    let both = future::join(ask, closing);
    let (asked, (closed, elapsed)) = within::<R, _>(RECV_LIMIT, "the close", both).await;
    assert_eq!(closed, Err(CloseError::TimedOut(CLOSE_TIMEOUT)));
    assert!(
        elapsed >= CLOSE_TIMEOUT && elapsed < CLOSE_TIMEOUT + MARGIN,
        "the close took {elapsed:?}"
    );
    eprintln!("{}: the close gave up after {elapsed:?}", R::NAME);
    let timed_out = matches!(asked, Err(AskFailed::NoReply(AskError::CloseTimedOut)));
    assert!(timed_out, "{asked:?}");
    assert!(!client.conn.is_open());
    let end = within::<R, _>(RECV_LIMIT, "the inbox's end", client.inbox.recv()).await;
    assert!(end.is_none());

    // The tell comes back whole; so does the ask if it was not written either.
    let mut unsent = client.conn.take_unsent();
    unsent.sort_by_key(|message| std::cmp::Reverse(message.payload.len()));
    assert!(matches!(unsent.len(), 1 | 2), "{unsent:?}");
    assert_eq!(unsent[0].envelope.kind, MessageKind::Tell);
    assert_same_bytes(&unsent[0].payload, &message, "the unsent tell");
    if let Some(ask) = unsent.get(1) {
        assert_eq!(ask.envelope.kind, MessageKind::Ask);
        assert_eq!(ask.payload, question);
    }
    // A second close says the same.
    let again = within::<R, _>(RECV_LIMIT, "a second close", client.conn.close()).await;
    assert_eq!(again, Err(CloseError::TimedOut(CLOSE_TIMEOUT)));

    // The peer, reading at last, gets less than the tell: it was not completely written.
    go_on.send(()).expect("the peer waits");
    let read = peer.wait(RECV_LIMIT);
    assert!(
        read < MESSAGE_LEN,
        "the peer read {read} bytes: all of the tell"
    );
}
