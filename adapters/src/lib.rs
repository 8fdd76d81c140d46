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
        /// Connects over TCP to `addr`, with `TCP_NODELAY` and [`Options::socket_buffers`],
        /// and completes the handshake.
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
            $crate::set_socket_buffers(&stream, options.socket_buffers)?;
            wrap(stream, options).await
        }

        /// Accepts the next TCP connection on `listener`, sets `TCP_NODELAY` and
        /// [`Options::socket_buffers`], and completes the handshake.
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
            $crate::set_socket_buffers(&stream, options.socket_buffers)?;
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
    SocketBuffers,
};
pub use runtime::{Runtime, Sleep};

/// Asks the kernel for the socket buffer sizes in `buffers`, on the socket behind `stream`.
#[cfg(any(feature = "tokio", feature = "async-std", feature = "smol"))]
fn set_socket_buffers<'s, S>(stream: &'s S, buffers: SocketBuffers) -> std::io::Result<()>
where
    socket2::SockRef<'s>: From<&'s S>,
{
    let socket = socket2::SockRef::from(stream);
    if let Some(size) = buffers.send {
        socket.set_send_buffer_size(size)?;
    }
    if let Some(size) = buffers.recv {
        socket.set_recv_buffer_size(size)?;
    }
    Ok(())
}

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

#[cfg(all(test, any(feature = "tokio", feature = "async-std", feature = "smol")))]
mod tests {
    use super::{SocketBuffers, set_socket_buffers};

    /// Each size is asked of the kernel, and only the sizes given.
    #[test]
    fn socket_buffers_are_asked_of_the_kernel() -> std::io::Result<()> {
        // Kernels round or double what is asked (Linux doubles it), never halve it.
        fn asked_for(reported: usize, asked: usize) -> bool {
            (asked..=2 * asked).contains(&reported)
        }
        const ASKED: usize = 48 * 1024;

        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let stream = std::net::TcpStream::connect(listener.local_addr()?)?;
        let socket = socket2::SockRef::from(&stream);
        let before = (socket.send_buffer_size()?, socket.recv_buffer_size()?);

        set_socket_buffers(&stream, SocketBuffers::default())?;
        assert_eq!(
            (socket.send_buffer_size()?, socket.recv_buffer_size()?),
            before
        );

        let send_only = SocketBuffers {
            send: Some(ASKED),
            recv: None,
        };
        set_socket_buffers(&stream, send_only)?;
        let send = socket.send_buffer_size()?;
        assert!(asked_for(send, ASKED), "SO_SNDBUF {send} for {ASKED}");
        assert_eq!(socket.recv_buffer_size()?, before.1, "SO_RCVBUF untouched");

        set_socket_buffers(&stream, SocketBuffers::both(ASKED))?;
        let recv = socket.recv_buffer_size()?;
        assert!(asked_for(recv, ASKED), "SO_RCVBUF {recv} for {ASKED}");
        Ok(())
    }
}
