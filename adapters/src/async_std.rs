//! The async-std layer: a task and a timer from async-std, and its TCP types.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream, ToSocketAddrs};
use futures_io::{AsyncRead, AsyncWrite};

use crate::{ConnectError, Connection, Inbox, Options, Runtime, Sleep};

/// async-std as a [`Runtime`].
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        async_std::task::spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(async_std::task::sleep(
            deadline.saturating_duration_since(Instant::now()),
        ))
    }
}

tcp_entry_points!();

/// Runs a connection over any async-std byte stream (TLS included) and completes the
/// handshake.
///
/// # Errors
///
/// The handshake's failure.
pub async fn wrap<S>(stream: S, options: Options) -> Result<(Connection, Inbox), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    crate::start(Arc::new(AsyncStd), stream, options).await
}
