//! The smol layer: a task and a timer from smol, and its TCP types.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_io::{AsyncRead, AsyncWrite};
use smol::net::{AsyncToSocketAddrs as ToSocketAddrs, TcpListener, TcpStream};

use crate::{ConnectError, Connection, Inbox, Options, Runtime, Sleep};

/// smol as a [`Runtime`]: tasks on the global executor, async-io timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

impl Runtime for Smol {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        smol::spawn(future).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let timer = smol::Timer::at(deadline);
        Box::pin(async move {
            timer.await;
        })
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

/// Runs a connection over any smol byte stream (TLS included) and completes the
/// handshake.
///
/// # Errors
///
/// The handshake's failure.
pub async fn wrap<S>(stream: S, options: Options) -> Result<(Connection, Inbox), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    crate::start(Arc::new(Smol), stream, options).await
}

/// Binds a TCP listener, for symmetry with [`accept`].
///
/// # Errors
///
/// The bind's I/O error.
pub async fn listen(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
