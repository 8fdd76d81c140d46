//! The driver task: moves bytes between the transport and the sans-IO connection, wakes it
//! at its deadlines, and hands what arrives to the user.

use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};
use ringwire_core::{AskError, ConnectionState, Event};
use tracing::{debug, warn};

use crate::connection::{Delivery, Request, Shared, Why};
use crate::runtime::{Runtime, Sleep};

/// Bytes read from the transport at once.
const READ_SIZE: usize = 64 * 1024;
/// Bytes read into the input buffer right after a chunk's data, enough for the next frame's
/// header and some small frames behind it.
const TAIL_SIZE: usize = 1024;
/// Output up to this size is copied out and written without holding the connection's lock;
/// larger output (stream chunks) is written in place, to save copying it.
const COPY_OUT_LIMIT: usize = 64 * 1024;
/// Rounds of writing and reading in one poll before the driver yields to other tasks.
const POLL_BUDGET: usize = 8;
/// Slices offered to one vectored write.
const MAX_SLICES: usize = 64;

/// The future that drives one connection until it is closed or lost.
pub(crate) struct Driver<S, R> {
    io: S,
    runtime: Arc<R>,
    shared: Arc<Shared>,
    /// Input not yet taken by the connection.
    input: BytesMut,
    /// Where reads land before they join `input`.
    read_buf: Box<[u8]>,
    /// Small output copied out of the connection, to be written without its lock.
    write_buf: Vec<u8>,
    /// The last read ended a chunk's data: read little next, up to the next frame's header.
    after_chunk: bool,
    sleep: Option<(Instant, Sleep)>,
    /// The transport has been shut down after a clean close.
    shut_down: bool,
    /// The connection's close timeout, to say how long a close that timed out waited.
    close_timeout: Duration,
    /// Deliveries taken from the connection and not yet handed to the inbox; kept for its
    /// allocation.
    deliveries: Vec<Delivery>,
}

impl<S, R> Driver<S, R>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
{
    pub(crate) fn new(
        io: S,
        runtime: Arc<R>,
        shared: Arc<Shared>,
        close_timeout: Duration,
    ) -> Self {
        Self {
            io,
            runtime,
            shared,
            input: BytesMut::with_capacity(READ_SIZE),
            read_buf: vec![0; READ_SIZE].into_boxed_slice(),
            write_buf: Vec::with_capacity(COPY_OUT_LIMIT),
            after_chunk: false,
            sleep: None,
            shut_down: false,
            close_timeout,
            deliveries: Vec::new(),
        }
    }

    /// Writes as much output as the transport takes now. Returns whether any was written.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut wrote = false;
        let mut blocked = false;
        let mut state = self.shared.lock();
        loop {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = state.conn.transmit(&mut slices);
            if count == 0 {
                break;
            }
            let offered: usize = slices[..count].iter().map(|slice| slice.len()).sum();
            let result = if offered <= COPY_OUT_LIMIT {
                // Small output is copied out, so that senders can go on while it is written.
                // Only appends happen to the output meanwhile (this task alone writes, and
                // alone fails the connection once it is open), so what was offered is still
                // the front of the output when the write is reported below.
                self.write_buf.clear();
                for slice in &slices[..count] {
                    self.write_buf.extend_from_slice(slice);
                }
                drop(state);
                let result = Pin::new(&mut self.io).poll_write(cx, &self.write_buf);
                state = self.shared.lock();
                result
            } else {
                // Stream chunks are written in place, with the lock held for this one
                // non-blocking write, never across an await.
                Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count])
            };
            match result {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(written)) => {
                    // A connection given up during the write (a failed handshake) has
                    // nothing left to account for.
                    if state.conn.state() != ConnectionState::Closed {
                        state.conn.advance(written);
                    }
                    wrote = true;
                }
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => {
                    blocked = true;
                    break;
                }
            }
        }
        drop(state);
        if wrote {
            self.shared.space.notify(usize::MAX);
        }
        // Flush once everything is handed over (a TLS stream holds records until then). Not
        // after a blocked write: some transports drop the write's wake-up when flushed.
        if !blocked {
            if let Poll::Ready(Err(error)) = Pin::new(&mut self.io).poll_flush(cx) {
                return Err(error);
            }
        }
        Ok(wrote)
    }

    /// Reads what the transport has and feeds it to the connection. Returns whether anything
    /// was read; reading pauses while the inbox holds more than its bound.
    ///
    /// Inside a chunk, with no input waiting, the read goes straight into the stream's buffer
    /// (and the bytes after the chunk, where the transport reads vectored, into a short tail),
    /// so stream data is copied once less. Right after such a read the next read is short,
    /// so that it stops near the next frame's header instead of taking most of the next
    /// chunk into the input buffer.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        if self.shared.inbox.over_bound() {
            return Ok(false);
        }
        let mut guard = self.shared.lock();
        let tail = &mut self.read_buf[..TAIL_SIZE];
        let direct = read_into_chunk(&mut guard.conn, &self.input, &mut self.io, tail, cx);
        let (mut guard, tail_read) = match direct {
            Some((result, tail_read)) => {
                self.after_chunk = tail_read == 0;
                if bytes_read(result)?.is_none() {
                    return Ok(false);
                }
                (guard, tail_read)
            }
            None => {
                drop(guard);
                let limit = if self.after_chunk {
                    TAIL_SIZE
                } else {
                    READ_SIZE
                };
                let result = Pin::new(&mut self.io).poll_read(cx, &mut self.read_buf[..limit]);
                self.after_chunk = false;
                let Some(read) = bytes_read(result)? else {
                    return Ok(false);
                };
                // Locked again only when there is input for the connection.
                (self.shared.lock(), read)
            }
        };
        self.input.extend_from_slice(&self.read_buf[..tail_read]);
        if let Err(error) = guard.conn.handle_input(&mut self.input, Instant::now()) {
            warn!(%error, "closing the connection");
            guard.why = Some(Why::Failed(error.to_string()));
        }
        Ok(true)
    }

    /// Fires the connection's timer when due and arms the next one.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let next = self.shared.lock().conn.poll_timeout();
        let Some(deadline) = next else {
            self.sleep = None;
            return false;
        };
        if self.sleep.as_ref().is_none_or(|(at, _)| *at != deadline) {
            self.sleep = Some((deadline, self.runtime.sleep_until(deadline)));
        }
        let (_, sleep) = self.sleep.as_mut().expect("armed above");
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.sleep = None;
        self.shared.lock().conn.handle_timeout(Instant::now());
        true
    }

    /// Hands the connection's events to the user. Returns whether the connection is closed.
    ///
    /// The events are taken under one lock; what goes to the user's tasks (the news that the
    /// handshake is done, then the deliveries, in one batch) is handed over after it is
    /// released.
    fn dispatch(&mut self) -> bool {
        let mut closed = false;
        let mut connected = false;
        {
            let mut state = self.shared.lock();
            while let Some(event) = state.conn.poll_event() {
                match event {
                    Event::Connected(agreed) => {
                        debug!(version = agreed.version, "connected");
                        connected = true;
                    }
                    Event::Tell(message) => self.deliveries.push(Delivery::Tell(message)),
                    Event::Ask(message) => {
                        let request = Request::new(message, self.shared.clone());
                        self.deliveries.push(Delivery::Ask(request));
                    }
                    Event::Reply(message) => {
                        let id = message.envelope.correlation_id;
                        if let Some(waiter) = state.asks.remove(&id) {
                            let _ = waiter.send(Ok(message));
                        }
                    }
                    Event::AskFailed {
                        correlation_id,
                        error,
                    } => {
                        if let Some(waiter) = state.asks.remove(&correlation_id) {
                            let _ = waiter.send(Err(error));
                        }
                    }
                    Event::AskCancelled { correlation_id } => {
                        debug!(correlation_id, "peer cancelled its ask");
                    }
                    Event::Unsent(messages) => {
                        warn!(
                            count = messages.len(),
                            "connection lost with messages unsent"
                        );
                        state.unsent.extend(messages);
                    }
                    Event::CloseTimedOut => {
                        warn!("the peer did not complete the close in time; giving up");
                        if state.why.is_none() {
                            state.why = Some(Why::CloseTimedOut(self.close_timeout));
                        }
                    }
                    Event::Closed { clean } => {
                        if state.why.is_none() {
                            state.why = Some(if clean { Why::Closed } else { Why::Lost });
                        }
                        for (_, waiter) in state.asks.drain() {
                            let _ = waiter.send(Err(AskError::ConnectionLost));
                        }
                        closed = true;
                    }
                    _ => {}
                }
            }
        }
        // Outside the lock: a request the inbox no longer takes is dropped there, and takes
        // the lock to refuse itself. The handshake completes before anything is delivered.
        if connected {
            self.shared.connected.notify(usize::MAX);
        }
        self.shared.inbox.push_all(&mut self.deliveries);
        closed
    }

    /// Marks the connection lost after a transport error.
    fn lose(&mut self, error: &io::Error) {
        let mut state = self.shared.lock();
        if state.why.is_none() {
            debug!(%error, "transport failed");
            state.why = Some(Why::Failed(error.to_string()));
        }
        state.conn.handle_connection_lost();
    }
}

/// How many bytes a read took, or `None` while it waits. The end of the stream is an error:
/// a connection ends with a `CLOSE`, not with the transport's end.
fn bytes_read(result: Poll<io::Result<usize>>) -> io::Result<Option<usize>> {
    match result {
        Poll::Ready(Ok(0)) => Err(io::ErrorKind::UnexpectedEof.into()),
        Poll::Ready(Ok(read)) => Ok(Some(read)),
        Poll::Ready(Err(error)) => Err(error),
        Poll::Pending => Ok(None),
    }
}

/// Reads into the space the connection offers for the rest of a chunk's data, and what
/// follows into `tail`, if the connection offers one. Returns the read's result and how many
/// bytes went into `tail`.
fn read_into_chunk<S: AsyncRead + Unpin>(
    conn: &mut ringwire_core::Connection,
    input: &BytesMut,
    io: &mut S,
    tail: &mut [u8],
    cx: &mut Context<'_>,
) -> Option<(Poll<io::Result<usize>>, usize)> {
    let mut space = conn.chunk_space(input, READ_SIZE)?;
    let room = space.len();
    let mut buffers = [IoSliceMut::new(&mut space), IoSliceMut::new(tail)];
    let result = Pin::new(io).poll_read_vectored(cx, &mut buffers);
    let read = match &result {
        Poll::Ready(Ok(read)) => *read,
        _ => 0,
    };
    space.fill(read.min(room));
    Some((result, read.saturating_sub(room)))
}

impl<S, R> Future for Driver<S, R>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        {
            let mut state = this.shared.lock();
            if !state
                .driver_waker
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
            {
                state.driver_waker = Some(cx.waker().clone());
            }
        }
        for _ in 0..POLL_BUDGET {
            if this.shut_down {
                return Poll::Ready(());
            }
            let mut progress = false;
            match this.poll_write(cx) {
                Ok(wrote) => progress |= wrote,
                Err(error) => this.lose(&error),
            }
            match this.poll_read(cx) {
                Ok(read) => progress |= read,
                Err(error) => this.lose(&error),
            }
            progress |= this.poll_timer(cx);
            if this.dispatch() {
                this.shared.finish();
                // Best effort: tell the peer's transport we are done.
                let _ = Pin::new(&mut this.io).poll_close(cx);
                this.shut_down = true;
                continue;
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Still busy: let the tasks this round woke (the inbox's reader, waiting senders) run
        // before going on, rather than feeding them more while they wait for a thread.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
