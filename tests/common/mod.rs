//! Helpers shared by the end-to-end tests: one trait over the three runtimes, so that each
//! scenario is written once and run on tokio, async-std and smol; loopback pairs; payloads that
//! can be checked byte by byte; and bounds on every wait, so that a failure never hangs.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::future::{Future, poll_fn};
use std::net::{SocketAddr, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::pin::{Pin, pin};
use std::sync::mpsc;
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringwire::net::{ConnectError, Connection, Delivery, Inbox, Options, Request, Runtime};
use ringwire::{BufferConfig, ConnectionConfig, Incoming, SendError};

pub(crate) const KIB: usize = 1024;
pub(crate) const MIB: usize = 1024 * KIB;

/// How long any one message may take to arrive before a test fails instead of waiting on.
/// Generous: the bound is there to turn a hang into a failure, not to measure speed.
pub(crate) const RECV_LIMIT: Duration = Duration::from_secs(30);

/// A task of a [`TestRuntime`], awaited for its output.
pub(crate) type Task<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a scenario needs from a runtime beyond what the adapter's [`Runtime`] gives: a way to
/// run a future to completion, tasks with an output, and its TCP listener.
pub(crate) trait TestRuntime: Runtime + Default {
    /// The runtime's name, for messages.
    const NAME: &'static str;
    /// The runtime's TCP listener.
    type Listener: Send + Sync + 'static;

    /// Runs `future` to completion on a runtime of this kind, on the calling thread.
    fn block_on<F: Future>(future: F) -> F::Output;

    /// Runs `future` as a task; awaiting the result gives its output.
    fn spawn_task<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T>;

    /// A listener on an unused loopback port.
    fn listen() -> impl Future<Output = Self::Listener> + Send;

    /// The address the listener is bound to.
    fn local_addr(listener: &Self::Listener) -> SocketAddr;

    /// The adapter's `accept`.
    fn accept(
        listener: &Self::Listener,
        options: Options,
    ) -> impl Future<Output = Result<(Connection, Inbox), ConnectError>> + Send + '_;

    /// The adapter's `connect`.
    fn connect(
        addr: SocketAddr,
        options: Options,
    ) -> impl Future<Output = Result<(Connection, Inbox), ConnectError>> + Send;

    /// The adapter's `wrap` over a socket made with the standard library, so that a test can
    /// set socket options the adapter does not.
    fn wrap_tcp(
        stream: TcpStream,
        options: Options,
    ) -> impl Future<Output = Result<(Connection, Inbox), ConnectError>> + Send;
}

/// The methods whose code is the same for every runtime but for the adapter module it calls.
macro_rules! adapter_methods {
    ($adapter:ident) => {
        async fn listen() -> Self::Listener {
            ringwire::$adapter::listen("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1")
        }

        fn local_addr(listener: &Self::Listener) -> SocketAddr {
            listener.local_addr().expect("bound")
        }

        fn accept(
            listener: &Self::Listener,
            options: Options,
        ) -> impl Future<Output = Result<(Connection, Inbox), ConnectError>> + Send + '_ {
            ringwire::$adapter::accept(listener, options)
        }

        fn connect(
            addr: SocketAddr,
            options: Options,
        ) -> impl Future<Output = Result<(Connection, Inbox), ConnectError>> + Send {
            ringwire::$adapter::connect(addr, options)
        }
    };
}

impl TestRuntime for ringwire::tokio::Tokio {
    const NAME: &'static str = "tokio";
    type Listener = tokio::net::TcpListener;

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(future)
    }

    fn spawn_task<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
        let handle = tokio::spawn(future);
        Box::pin(async move {
            handle
                .await
                .unwrap_or_else(|error| panic::resume_unwind(error.into_panic()))
        })
    }

    adapter_methods!(tokio);

    async fn wrap_tcp(
        stream: TcpStream,
        options: Options,
    ) -> Result<(Connection, Inbox), ConnectError> {
        stream.set_nonblocking(true)?;
        let stream = tokio::net::TcpStream::from_std(stream)?;
        ringwire::tokio::wrap(stream, options).await
    }
}

impl TestRuntime for ringwire::async_std::AsyncStd {
    const NAME: &'static str = "async-std";
    type Listener = async_std::net::TcpListener;

    fn block_on<F: Future>(future: F) -> F::Output {
        async_std::task::block_on(future)
    }

    fn spawn_task<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
        Box::pin(async_std::task::spawn(future))
    }

    adapter_methods!(async_std);

    fn wrap_tcp(
        stream: TcpStream,
        options: Options,
    ) -> impl Future<Output = Result<(Connection, Inbox), ConnectError>> + Send {
        ringwire::async_std::wrap(async_std::net::TcpStream::from(stream), options)
    }
}

impl TestRuntime for ringwire::smol::Smol {
    const NAME: &'static str = "smol";
    type Listener = smol::net::TcpListener;

    fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }

    fn spawn_task<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
        // A smol task is cancelled when its handle is dropped, like the boxed future here.
        Box::pin(smol::spawn(future))
    }

    adapter_methods!(smol);

    async fn wrap_tcp(
        stream: TcpStream,
        options: Options,
    ) -> Result<(Connection, Inbox), ConnectError> {
        let stream = smol::net::TcpStream::try_from(stream)?;
        ringwire::smol::wrap(stream, options).await
    }
}

/// Generates one `#[test]` per runtime for each generic scenario `async fn name<R:
/// TestRuntime>()`, in modules `on_tokio`, `on_async_std` and `on_smol`, each failing if it
/// runs longer than `seconds`.
#[allow(unused_macros)]
macro_rules! on_every_runtime {
    (seconds: $seconds:literal; $($scenario:ident),+ $(,)?) => {
        $crate::common::on_every_runtime!(@one on_tokio, ::ringwire::tokio::Tokio, $seconds;
            $($scenario),+);
        $crate::common::on_every_runtime!(@one on_async_std, ::ringwire::async_std::AsyncStd,
            $seconds; $($scenario),+);
        $crate::common::on_every_runtime!(@one on_smol, ::ringwire::smol::Smol, $seconds;
            $($scenario),+);
    };
    (@one $module:ident, $runtime:ty, $seconds:literal; $($scenario:ident),+) => {
        mod $module {
            $(
                #[test]
                fn $scenario() {
                    $crate::common::run::<$runtime, _>(
                        ::std::time::Duration::from_secs($seconds),
                        super::$scenario::<$runtime>,
                    );
                }
            )+
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_every_runtime;

/// Runs `scenario` on `R` in a thread of its own and fails if it has not finished within
/// `limit`, so that a hang anywhere becomes a failure with a name.
pub(crate) fn run<R: TestRuntime, F: Future<Output = ()>>(
    limit: Duration,
    scenario: impl FnOnce() -> F + Send + 'static,
) {
    in_thread(R::NAME, move || R::block_on(scenario())).wait(limit);
}

/// A thread whose result is awaited with a bound.
#[derive(Debug)]
pub(crate) struct Running<T> {
    name: String,
    done: mpsc::Receiver<thread::Result<T>>,
}

/// Runs `work` in a new thread named `name`.
pub(crate) fn in_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Running<T> {
    let (done, receiver) = mpsc::channel();
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = done.send(panic::catch_unwind(AssertUnwindSafe(work)));
        })
        .expect("spawn a thread");
    Running {
        name: name.to_owned(),
        done: receiver,
    }
}

impl<T> Running<T> {
    /// The thread's result; its panic is passed on, and a thread still running after `limit`
    /// fails the test (the thread is left behind: there is no safe way to stop it).
    pub(crate) fn wait(self, limit: Duration) -> T {
        match self.done.recv_timeout(limit) {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => panic::resume_unwind(panic),
            Err(_) => panic!("{} did not finish within {limit:?}", self.name),
        }
    }
}

/// `future`'s output, or `None` if it takes longer than `limit`.
pub(crate) async fn try_within<R: TestRuntime, F: Future>(
    limit: Duration,
    future: F,
) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut timer = R::default().sleep_until(Instant::now() + limit);
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// `future`'s output; fails the test, saying what it waited for, after `limit`.
pub(crate) async fn within<R: TestRuntime, F: Future>(
    limit: Duration,
    what: &str,
    future: F,
) -> F::Output {
    match try_within::<R, F>(limit, future).await {
        Some(output) => output,
        None => panic!("{what}: nothing within {limit:?} on {}", R::NAME),
    }
}

/// Both lanes with a ring of `ring_size` bytes; every other setting at its default.
pub(crate) fn options(ring_size: usize) -> Options {
    let buffer = BufferConfig::new(ring_size).expect("a valid ring size");
    Options {
        config: ConnectionConfig::builder()
            .tell_buffer_config(buffer)
            .ask_buffer_config(buffer)
            .build()
            .expect("a valid configuration"),
        ..Options::default()
    }
}

/// One end of a connection.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) conn: Connection,
    pub(crate) inbox: Inbox,
}

impl From<(Connection, Inbox)> for Peer {
    fn from((conn, inbox): (Connection, Inbox)) -> Self {
        Self { conn, inbox }
    }
}

/// A client and a server connected over loopback TCP on `R`.
pub(crate) async fn pair<R: TestRuntime>(client: Options, server: Options) -> (Peer, Peer) {
    let listener = R::listen().await;
    let addr = R::local_addr(&listener);
    let accepted = R::spawn_task(async move { R::accept(&listener, server).await });
    let client = within::<R, _>(RECV_LIMIT, "connect", R::connect(addr, client))
        .await
        .expect("the client connects");
    let server = within::<R, _>(RECV_LIMIT, "accept", accepted)
        .await
        .expect("the server accepts");
    (client.into(), server.into())
}

/// Closes `closing` gracefully and waits until both ends know it: every accepted message is
/// written first, and the other end's inbox ends.
pub(crate) async fn close<R: TestRuntime>(closing: &Peer, other: &Peer) {
    within::<R, _>(RECV_LIMIT, "graceful close", closing.conn.close())
        .await
        .unwrap_or_else(|error| panic!("a clean close on {}: {error}", R::NAME));
    assert!(!closing.conn.is_open(), "closed on {}", R::NAME);
    while let Some(delivery) = within::<R, _>(RECV_LIMIT, "inbox end", other.inbox.recv()).await {
        drop(delivery);
    }
    assert!(!other.conn.is_open(), "the peer closed too on {}", R::NAME);
}

/// The next delivery; fails if the connection ends first or nothing comes in time.
pub(crate) async fn recv<R: TestRuntime>(inbox: &Inbox) -> Delivery {
    within::<R, _>(RECV_LIMIT, "waiting for a message", inbox.recv())
        .await
        .unwrap_or_else(|| panic!("the connection ended early on {}", R::NAME))
}

/// The next delivery, which must be a tell.
pub(crate) async fn recv_tell<R: TestRuntime>(inbox: &Inbox) -> Incoming {
    match recv::<R>(inbox).await {
        Delivery::Tell(message) => message,
        other => panic!("expected a tell, got {other:?}"),
    }
}

/// The next delivery, which must be an ask.
pub(crate) async fn recv_ask<R: TestRuntime>(inbox: &Inbox) -> Request {
    match recv::<R>(inbox).await {
        Delivery::Ask(request) => request,
        other => panic!("expected an ask, got {other:?}"),
    }
}

/// What an echo server saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Echoed {
    pub(crate) tells: usize,
    pub(crate) asks: usize,
    pub(crate) bytes: usize,
}

/// Echoes every tell back to its key and answers every ask with its own payload, until the
/// connection ends. Asks count when they arrive, answered or cancelled by the asker.
pub(crate) async fn echo(peer: Peer) -> Echoed {
    let mut echoed = Echoed::default();
    while let Some(delivery) = peer.inbox.recv().await {
        match delivery {
            Delivery::Tell(message) => {
                echoed.tells += 1;
                echoed.bytes += message.payload.len();
                let envelope = message.envelope;
                peer.conn
                    .tell(envelope.key, envelope.type_hash, message.payload)
                    .await
                    .expect("echo a tell");
            }
            Delivery::Ask(request) => {
                echoed.asks += 1;
                echoed.bytes += request.message.payload.len();
                let type_hash = request.message.envelope.type_hash;
                let payload = request.message.payload.clone();
                match request.reply(type_hash, payload).await {
                    // The asker gave up; the reply is not needed.
                    Ok(_) | Err(SendError::NoSuchAsk { .. }) => {}
                    Err(error) => panic!("reply: {error}"),
                }
            }
            other => panic!("unexpected delivery {other:?}"),
        }
    }
    echoed
}

/// `len` bytes of a pseudo-random sequence chosen by `seed`: different seeds and lengths give
/// different bytes, so a message mixed up with another, cut or shifted is caught.
pub(crate) fn payload(seed: u64, len: usize) -> Bytes {
    // splitmix64, one word at a time: fast enough for megabytes in a debug build.
    let mut state = seed ^ (len as u64).rotate_left(32);
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut word = state;
        word = (word ^ (word >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        word = (word ^ (word >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        bytes.extend_from_slice(&(word ^ (word >> 31)).to_le_bytes());
    }
    bytes.truncate(len);
    bytes.into()
}

/// Fails unless `actual` and `expected` are the same bytes, naming the first difference
/// rather than printing megabytes.
pub(crate) fn assert_same_bytes(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    if actual == expected {
        return;
    }
    if let Some(at) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!(
            "{what}: bytes differ first at offset {at} of {}",
            expected.len()
        );
    }
}
