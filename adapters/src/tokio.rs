//! The tokio layer: a task and a timer from tokio, and its TCP types bridged to `futures-io`.

use std::future::Future;
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

tcp_entry_points!();

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
