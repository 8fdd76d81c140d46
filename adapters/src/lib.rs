//! Async drivers of ringwire for tokio, async-std and smol.
//!
//! The sans-IO [`ringwire_core::Connection`] decides everything; this crate only moves its
//! bytes. One driver task per connection owns the transport: it writes the connection's output
//! with vectored writes (short writes are the core's business), reads input into it, wakes it
//! at its deadlines and hands what arrives to an [`Inbox`]. Senders share the connection behind
//! a mutex that is never held across an await.
//!
//! ```text
//!   Connection (handles, any task)            Inbox (one receiver)
//!        | tell / ask / reply                      ^  Delivery::Tell, Delivery::Ask
//!        v                                         |
//!   [ Mutex<ringwire_core::Connection> ] <--- driver task ---> transport (TCP, TLS, ...)
//! ```
//!
//! The driver is written once, over `futures-io` byte streams and a two-method [`Runtime`];
//! each runtime's module is the thin layer that supplies a task, a timer and its TCP types.

mod connection;
mod driver;
mod inbox;
mod runtime;

/// `connect`, `accept` and `listen` of a runtime's layer: the same code in every runtime, over
/// the `TcpStream`, `TcpListener`, `ToSocketAddrs` and `wrap` of the module that invokes it.
#[cfg(any(feature = "tokio", feature = "async-std", feature = "smol"))]
macro_rules! tcp_entry_points {
    () => {
        /// Connects over TCP to `addr`, with `TCP_NODELAY`, and completes the handshake.
        ///
        /// # Errors
        ///
        /// The connect's I/O error, or the handshake's failure.
        pub async fn connect(
            addr: impl ToSocketAddrs,
            options: Options,
        ) -> Result<(Connection, Inbox), ConnectError> {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            wrap(stream, options).await
        }

        /// Accepts the next TCP connection on `listener`, sets `TCP_NODELAY`, and completes
        /// the handshake.
        ///
        /// # Errors
        ///
        /// The accept's I/O error, or the handshake's failure.
        pub async fn accept(
            listener: &TcpListener,
            options: Options,
        ) -> Result<(Connection, Inbox), ConnectError> {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            wrap(stream, options).await
        }

        /// Binds a TCP listener, for [`accept`].
        ///
        /// # Errors
        ///
        /// The bind's I/O error.
        pub async fn listen(addr: impl ToSocketAddrs) -> std::io::Result<TcpListener> {
            TcpListener::bind(addr).await
        }
    };
}

#[cfg(feature = "async-std")]
pub mod async_std;
#[cfg(feature = "smol")]
pub mod smol;
#[cfg(feature = "tokio")]
pub mod tokio;

use std::sync::Arc;

use futures_io::{AsyncRead, AsyncWrite};
use futures_util::future::{self, Either};

pub use connection::{
    AskFailed, CloseError, ConnectError, Connection, Delivery, Inbox, Options, Request,
};
pub use runtime::{Runtime, Sleep};

/// Starts a connection over `stream` on `runtime`: spawns its driver, and returns once the
/// handshake is done.
///
/// This is what each runtime's `connect`, `accept` and `wrap` call; use it directly for a
/// runtime this crate does not know, or for a byte stream it does not wrap (TLS, pipes).
///
/// # Errors
///
/// [`ConnectError::Timeout`] if the peer does not complete the handshake within
/// [`Options::handshake_timeout`]; [`ConnectError::Failed`] if the handshake fails (a peer
/// that is not ringwire, a version mismatch) or the transport does.
pub async fn start<S, R>(
    runtime: Arc<R>,
    stream: S,
    options: Options,
) -> Result<(Connection, Inbox), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
{
    let (shared, connection, inbox) = connection::Shared::new(&options);
    let close_timeout = options.config.close_timeout();
    let driver = driver::Driver::new(stream, runtime.clone(), shared, close_timeout);
    runtime.spawn(Box::pin(driver));

    let deadline = std::time::Instant::now() + options.handshake_timeout;
    let connected = Box::pin(connection.wait_connected());
    let outcome = match future::select(connected, runtime.sleep_until(deadline)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(ConnectError::Timeout(options.handshake_timeout)),
    };
    match outcome {
        Ok(()) => Ok((connection, inbox)),
        Err(error) => {
            connection.abort();
            Err(error)
        }
    }
}
