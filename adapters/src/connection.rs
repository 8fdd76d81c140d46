//! The user's side: a cheap handle to send with, and an inbox to receive from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event as Notify;
use futures_channel::oneshot;
use ringwire_core::{
    AskError, Connection as Core, ConnectionConfig, ConnectionState, Incoming, Lane, Metrics,
    Outgoing, RefuseCode, Route, SendError,
};

use crate::inbox::InboxQueue;

/// How an adapter connection is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Buffer sizes and limits; the handshake tells the peer the receive limits.
    pub config: ConnectionConfig,
    /// Ask for a CRC32C trailer on every frame (on only if the peer asks too).
    pub crc32c: bool,
    /// Payload bytes that may wait in the [`Inbox`] before the connection stops reading.
    /// Writing goes on regardless, so a slow reader never holds up what this side sends.
    pub inbox_bytes: usize,
    /// How long to wait for the peer's handshake.
    pub handshake_timeout: Duration,
    /// The kernel's buffer sizes for the TCP sockets that `connect` and `accept` make.
    pub socket_buffers: SocketBuffers,
}

/// `SO_SNDBUF` and `SO_RCVBUF` for the TCP sockets that each runtime's `connect` and `accept`
/// make; `wrap` leaves the caller's socket as it is. `None`, the default, keeps the kernel's
/// size, which on Linux grows with the traffic to several MiB.
///
/// Large buffers give the best throughput. Small ones bound how much of a large message can
/// wait in the kernel ahead of a small message sent after it: ringwire orders its own output
/// so that a small message waits for at most about two stream chunks, but what the kernel has
/// already taken goes first. The buffer that matters most is the receiving side's: a stream
/// sent flat out piles up in the reader's receive buffer. docs/BENCHMARKS.md ("head-of-line")
/// measures both. The kernel may round or double the sizes asked for (Linux doubles them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketBuffers {
    /// `SO_SNDBUF`: bytes this side's kernel holds that are not yet acknowledged.
    pub send: Option<usize>,
    /// `SO_RCVBUF`: bytes this side's kernel holds that are not yet read.
    pub recv: Option<usize>,
}

impl SocketBuffers {
    /// Both buffers asked for at `size` bytes.
    pub const fn both(size: usize) -> Self {
        Self {
            send: Some(size),
            recv: Some(size),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            config: ConnectionConfig::default(),
            crc32c: false,
            inbox_bytes: 64 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            socket_buffers: SocketBuffers::default(),
        }
    }
}

/// Why an ask got no reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskFailed {
    /// The ask was not sent; the message is inside.
    #[error(transparent)]
    NotSent(#[from] SendError),
    /// It was sent, and no reply will come.
    #[error(transparent)]
    NoReply(#[from] AskError),
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The transport failed (connect refused, reset, ...).
    #[error("transport error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not complete the handshake in time.
    #[error("no handshake from the peer within {0:?}")]
    Timeout(Duration),
    /// The handshake failed or the connection closed during it; the text says why.
    #[error("connection failed during the handshake: {0}")]
    Failed(String),
}

/// Why a graceful [`Connection::close`] did not end cleanly. Either way the connection is
/// over: accepted messages not completely written are in [`Connection::take_unsent`], and
/// pending asks have failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// The peer did not complete the close within the configured
    /// [`close_timeout`](ConnectionConfig::close_timeout) (it stopped reading, or never
    /// answered with its own close), so the connection was given up. Pending asks failed with
    /// [`AskError::CloseTimedOut`].
    #[error("the peer did not complete the close within {0:?}")]
    TimedOut(Duration),
    /// The connection was lost or failed before the close completed; the text says why.
    /// Pending asks failed with [`AskError::ConnectionLost`].
    #[error("the connection ended before the close completed: {0}")]
    Failed(String),
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    Closed,
    Lost,
    Failed(String),
    /// The graceful close was given up after this long.
    CloseTimedOut(Duration),
}

impl Why {
    /// What [`Connection::close`] says about a connection that ended this way.
    fn close_outcome(&self) -> Result<(), CloseError> {
        match self {
            Self::Closed => Ok(()),
            Self::Lost => Err(CloseError::Failed("the connection was lost".into())),
            Self::Failed(text) => Err(CloseError::Failed(text.clone())),
            Self::CloseTimedOut(timeout) => Err(CloseError::TimedOut(*timeout)),
        }
    }
}

/// State shared by the handles, the inbox and the driver task.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Notified when output was written, so that sends waiting for room try again, and when
    /// the connection ends.
    pub(crate) space: Notify,
    /// Notified when the handshake is done or failed.
    pub(crate) connected: Notify,
    /// What arrived and waits for the [`Inbox`]'s reader.
    pub(crate) inbox: InboxQueue,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) conn: Core,
    pub(crate) driver_waker: Option<Waker>,
    /// Asks awaiting their reply, by correlation id.
    pub(crate) asks: HashMap<u64, oneshot::Sender<Result<Incoming, AskError>>>,
    /// Accepted messages the connection could not write before it was lost.
    pub(crate) unsent: Vec<Outgoing>,
    pub(crate) why: Option<Why>,
}

/// Held by every [`Connection`] handle and by the [`Inbox`]: when the last of them is dropped,
/// nobody can use the connection any more, and it closes gracefully.
#[derive(Debug)]
struct Users {
    shared: Arc<Shared>,
}

impl Drop for Users {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.conn.close("every handle was dropped", Instant::now());
        Shared::wake_driver(&state);
    }
}

impl Shared {
    /// The shared state, the first handle and the inbox.
    pub(crate) fn new(options: &Options) -> (Arc<Self>, Connection, Inbox) {
        let shared = Arc::new(Self {
            state: Mutex::new(State {
                conn: Core::new(options.config, options.crc32c),
                driver_waker: None,
                asks: HashMap::new(),
                unsent: Vec::new(),
                why: None,
            }),
            space: Notify::new(),
            connected: Notify::new(),
            inbox: InboxQueue::new(options.inbox_bytes),
        });
        let users = Arc::new(Users {
            shared: shared.clone(),
        });
        let connection = Connection {
            shared: shared.clone(),
            _users: users.clone(),
        };
        let inbox = Inbox {
            shared: shared.clone(),
            _users: users,
        };
        (shared, connection, inbox)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held leaves state that is still consistent for the
        // connection's own purposes; carry on rather than poison every handle.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn wake_driver(state: &State) {
        if let Some(waker) = &state.driver_waker {
            waker.wake_by_ref();
        }
    }

    /// The connection is over: wake everyone who waits on it.
    pub(crate) fn finish(&self) {
        self.inbox.close();
        self.space.notify(usize::MAX);
        self.connected.notify(usize::MAX);
    }

    fn send(&self, message: Outgoing) -> Result<Route, SendError> {
        let mut state = self.lock();
        let route = match message.envelope.kind {
            ringwire_core::MessageKind::Reply => {
                let envelope = message.envelope;
                state
                    .conn
                    .reply(envelope.correlation_id, envelope.type_hash, message.payload)?
            }
            _ => {
                let envelope = message.envelope;
                state
                    .conn
                    .tell(envelope.key, envelope.type_hash, message.payload)?
            }
        };
        Self::wake_driver(&state);
        Ok(route)
    }

    /// Sends, waiting for room while the send queues are full.
    async fn send_waiting(&self, message: Outgoing) -> Result<Route, SendError> {
        // Listening costs an allocation, so only a send that found no room pays for it.
        let mut message = match self.send(message) {
            Err(SendError::Full { message }) => message,
            other => return other,
        };
        loop {
            // Listen before trying again, so a notification between the two is not missed.
            let listener = self.space.listen();
            match self.send(message) {
                Err(SendError::Full { message: back }) => {
                    message = back;
                    listener.await;
                }
                other => return other,
            }
        }
    }
}

/// A handle to send on a connection. Cheap to clone; any number of tasks may send at once.
///
/// The connection closes gracefully once every handle and its [`Inbox`] are dropped.
#[derive(Clone, Debug)]
pub struct Connection {
    shared: Arc<Shared>,
    _users: Arc<Users>,
}

impl Connection {
    /// Payloads up to this size on `lane` go through the ring; larger ones stream.
    pub fn streaming_threshold(&self, lane: Lane) -> usize {
        self.shared.lock().conn.streaming_threshold(lane)
    }

    /// A snapshot of every counter.
    pub fn metrics(&self) -> Metrics {
        self.shared.lock().conn.metrics()
    }

    /// Whether the connection is still usable.
    pub fn is_open(&self) -> bool {
        self.shared.lock().conn.state() == ConnectionState::Open
    }

    /// Messages accepted before the connection was lost and never completely written. Taking
    /// them empties the list.
    pub fn take_unsent(&self) -> Vec<Outgoing> {
        std::mem::take(&mut self.shared.lock().unsent)
    }

    /// Sends a one-way message to `key`, waiting for room if the send queues are full.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future either leaves the message unsent or lets it go whole: a message is
    /// accepted in one step, and after that it belongs to the connection. Never half a frame.
    ///
    /// # Errors
    ///
    /// [`SendError::TooLarge`] above the peer's limit, [`SendError::NotOpen`] once the
    /// connection is closing or gone; the message is inside the error.
    pub async fn tell(
        &self,
        key: u64,
        type_hash: u32,
        payload: impl Into<Bytes>,
    ) -> Result<Route, SendError> {
        self.shared
            .send_waiting(tell_message(key, type_hash, payload))
            .await
    }

    /// Like [`tell`](Self::tell), but never waits: when the send queues are full the message
    /// comes back in [`SendError::Full`].
    ///
    /// # Errors
    ///
    /// As [`tell`](Self::tell), plus [`SendError::Full`].
    pub fn try_tell(
        &self,
        key: u64,
        type_hash: u32,
        payload: impl Into<Bytes>,
    ) -> Result<Route, SendError> {
        self.shared.send(tell_message(key, type_hash, payload))
    }

    /// Sends a request to `key` and waits for its reply, at most `timeout`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the ask: the peer is told, and a request still being
    /// streamed is aborted between frames. Never half a frame.
    ///
    /// # Errors
    ///
    /// [`AskFailed::NotSent`] if the request was refused before sending;
    /// [`AskFailed::NoReply`] if the deadline passed, the peer refused it, or the connection
    /// closed or was lost first.
    pub async fn ask(
        &self,
        key: u64,
        type_hash: u32,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<Incoming, AskFailed> {
        let deadline = Instant::now() + timeout;
        let mut payload = payload.into();
        let (waiter, reply) = oneshot::channel();
        let mut waiter = Some(waiter);
        let mut listener = None;
        let id = loop {
            let sent = {
                let mut state = self.shared.lock();
                let sent = state.conn.ask(key, type_hash, payload, deadline);
                if let Ok(id) = sent {
                    // Registered under the same lock as the send, so the reply cannot
                    // arrive before anyone waits for it.
                    state.asks.insert(id, waiter.take().expect("taken once"));
                    Shared::wake_driver(&state);
                }
                sent
            };
            match sent {
                Ok(id) => break id,
                Err(SendError::Full { message }) => {
                    payload = message.payload;
                    // As in `tell`: listen only once there was no room, then try again
                    // before waiting, so a notification in between is not missed.
                    match listener.take() {
                        None => listener = Some(self.shared.space.listen()),
                        Some(listening) => {
                            listening.await;
                            listener = Some(self.shared.space.listen());
                        }
                    }
                }
                Err(error) => return Err(error.into()),
            }
        };
        let guard = CancelOnDrop {
            shared: &self.shared,
            id,
        };
        let outcome = reply.await;
        std::mem::forget(guard);
        match outcome {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(AskError::ConnectionLost.into()),
        }
    }

    /// Closes gracefully: new sends are refused, every accepted message is written, and the
    /// peer closes too. Returns once the connection is over: at the latest when the
    /// configured [`close_timeout`](ConnectionConfig::close_timeout) has passed since the
    /// close began, whatever the peer does.
    ///
    /// Called on a connection that is already over, it says how that one ended.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not stop the close, nor its timeout.
    ///
    /// # Errors
    ///
    /// [`CloseError::TimedOut`] if the peer did not complete the close in time,
    /// [`CloseError::Failed`] if the connection was lost or failed first. Accepted messages
    /// not completely written are then in [`take_unsent`](Self::take_unsent).
    pub async fn close(&self) -> Result<(), CloseError> {
        loop {
            let listener = self.shared.space.listen();
            {
                let mut state = self.shared.lock();
                if let Some(why) = &state.why {
                    return why.close_outcome();
                }
                // Once closed, the driver is about to record why; wait for it.
                if state.conn.state() != ConnectionState::Closed {
                    state
                        .conn
                        .close("closed by the application", Instant::now());
                    Shared::wake_driver(&state);
                }
            }
            listener.await;
        }
    }

    /// Gives up the connection at once, as if the transport were lost.
    pub(crate) fn abort(&self) {
        let mut state = self.shared.lock();
        state.conn.handle_connection_lost();
        Shared::wake_driver(&state);
    }

    /// Waits until the handshake is done. Used by the runtime layers.
    pub(crate) async fn wait_connected(&self) -> Result<(), ConnectError> {
        loop {
            let listener = self.shared.connected.listen();
            {
                let state = self.shared.lock();
                match state.conn.state() {
                    ConnectionState::Handshaking => {}
                    ConnectionState::Open => return Ok(()),
                    _ => {
                        let why = match &state.why {
                            Some(Why::Failed(text)) => text.clone(),
                            _ => "the connection closed during the handshake".into(),
                        };
                        return Err(ConnectError::Failed(why));
                    }
                }
            }
            listener.await;
        }
    }
}

fn tell_message(key: u64, type_hash: u32, payload: impl Into<Bytes>) -> Outgoing {
    let envelope = ringwire_core::Envelope {
        type_hash,
        ..ringwire_core::Envelope::tell(key)
    };
    Outgoing::new(envelope, payload)
}

/// Cancels an ask whose future was dropped before its reply came.
struct CancelOnDrop<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state.asks.remove(&self.id).is_some() {
            state.conn.cancel_ask(self.id);
            Shared::wake_driver(&state);
        }
    }
}

/// What arrives on a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Delivery {
    /// A one-way message.
    Tell(Incoming),
    /// A request to answer.
    Ask(Request),
}

impl Delivery {
    pub(crate) fn payload_len(&self) -> usize {
        match self {
            Self::Tell(message) => message.payload.len(),
            Self::Ask(request) => request.message.payload.len(),
        }
    }
}

/// A request from the peer. Answer it with [`reply`](Self::reply) or
/// [`refuse`](Self::refuse); dropped unanswered, it is refused for the asker.
#[derive(Debug)]
pub struct Request {
    /// The request.
    pub message: Incoming,
    shared: Option<Arc<Shared>>,
}

impl Request {
    pub(crate) fn new(message: Incoming, shared: Arc<Shared>) -> Self {
        Self {
            message,
            shared: Some(shared),
        }
    }

    /// Answers the request, waiting for room if the send queues are full.
    ///
    /// # Cancel safety
    ///
    /// As [`Connection::tell`]; a reply dropped before it was accepted leaves the request
    /// open to answer again, but it is consumed here, so the asker's deadline decides.
    ///
    /// # Errors
    ///
    /// [`SendError::NoSuchAsk`] if the asker has cancelled; otherwise as
    /// [`Connection::tell`].
    pub async fn reply(
        mut self,
        type_hash: u32,
        payload: impl Into<Bytes>,
    ) -> Result<Route, SendError> {
        let shared = self.shared.take().expect("present until answered");
        let envelope = ringwire_core::Envelope {
            kind: ringwire_core::MessageKind::Reply,
            type_hash,
            ..self.message.envelope
        };
        shared.send_waiting(Outgoing::new(envelope, payload)).await
    }

    /// Refuses the request: the asker's ask fails with `code` and `reason`.
    pub fn refuse(mut self, code: RefuseCode, reason: &str) {
        if let Some(shared) = self.shared.take() {
            let mut state = shared.lock();
            state
                .conn
                .refuse(self.message.envelope.correlation_id, code, reason);
            Shared::wake_driver(&state);
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            let mut state = shared.lock();
            let id = self.message.envelope.correlation_id;
            state
                .conn
                .refuse(id, RefuseCode::HandlerFailed, "request dropped unanswered");
            Shared::wake_driver(&state);
        }
    }
}

/// Where messages from the peer arrive, in order per key.
///
/// Dropping it discards what is queued and whatever arrives later (unanswered requests are
/// refused), so that reading goes on for replies.
#[derive(Debug)]
pub struct Inbox {
    shared: Arc<Shared>,
    _users: Arc<Users>,
}

impl Inbox {
    /// The next message, or `None` once the connection is over and everything was received.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken only when this returns it.
    pub async fn recv(&self) -> Option<Delivery> {
        let (delivery, was_over_bound) = self.shared.inbox.pop().await?;
        // Reading paused above the bound; let the driver resume.
        if was_over_bound {
            Shared::wake_driver(&self.shared.lock());
        }
        Some(delivery)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.shared.inbox.discard();
        // Reading may have paused for what was queued.
        Shared::wake_driver(&self.shared.lock());
    }
}
