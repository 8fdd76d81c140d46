//! The tokio layer: a task and a timer from tokio, and its TCP types bridged to `futures-io`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::{ConnectError, Connection, Inbox, Options, Runtime, Sleep};

/// tokio as a [`Runtime`]: tasks on the current runtime, tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        tokio::spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// Connects over TCP to `addr` and completes the handshake.
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

/// Accepts the next TCP connection on `listener` and completes the handshake.
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

/// Runs a connection over any tokio byte stream (TLS included) and completes the handshake.
///
/// # Errors
///
/// The handshake's failure.
pub async fn wrap<S>(stream: S, options: Options) -> Result<(Connection, Inbox), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    crate::start(Arc::new(Tokio), stream.compat(), options).await
}

/// Binds a TCP listener, for symmetry with [`accept`].
///
/// # Errors
///
/// The bind's I/O error.
pub async fn listen(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
