//! Failures over real TCP on every runtime: a peer that dies in the middle of a 5 MiB message,
//! a peer that is not ringwire, a peer that never answers, and nobody listening. Each must end
//! in the documented typed error, promptly, and never hang.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    MIB, Peer, RECV_LIMIT, Running, TestRuntime, assert_same_bytes, in_thread, payload, within,
};
use ringwire::net::{AskFailed, ConnectError, Options};
use ringwire::{AskError, ConnectionConfig, HELLO_FRAME_LEN, MessageKind, Route, SendError};
use socket2::{Domain, Socket, Type};

common::on_every_runtime!(
    seconds: 30;
    peer_killed_during_ask,
    peer_killed_during_tell,
    http_server_fails_the_handshake,
    silent_server_times_out,
    closed_port_is_an_io_error,
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

/// A peer that completes the handshake (its `HELLO` comes from the sans-IO core), reads
/// `KILL_AFTER` bytes and drops its socket with more unread: the connection dies in the middle
/// of whatever is being sent. Returns the bytes it read.
fn dying_peer() -> (SocketAddr, Running<usize>) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    // Set before `listen`, so that accepted sockets inherit it.
    socket
        .set_recv_buffer_size(SOCKET_BUFFER)
        .expect("SO_RCVBUF");
    socket.bind(&loopback()).expect("bind 127.0.0.1");
    socket.listen(1).expect("listen");
    let listener = TcpListener::from(socket);
    let addr = listener.local_addr().expect("bound");

    let running = in_thread("dying peer", move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(RECV_LIMIT)).expect("timeout");
        let mut hello = Vec::new();
        let mut core = ringwire::Connection::new(ConnectionConfig::default(), false);
        while core.transmit_into(&mut hello, usize::MAX) > 0 {}
        stream.write_all(&hello).expect("HELLO written");

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

/// A client on `R` connected to a [`dying_peer`] through a socket with a small send buffer.
async fn connect_to_dying_peer<R: TestRuntime>() -> (Peer, Running<usize>) {
    let (addr, peer) = dying_peer();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket
        .set_send_buffer_size(SOCKET_BUFFER)
        .expect("SO_SNDBUF");
    socket.connect(&addr.into()).expect("connect");
    socket.set_tcp_nodelay(true).expect("TCP_NODELAY");
    let started = R::wrap_tcp(TcpStream::from(socket), Options::default());
    let connected = within::<R, _>(RECV_LIMIT, "handshake", started).await;
    (connected.expect("the handshake completes").into(), peer)
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
