//! The smol layer: a task and a timer from smol, and its TCP types.

use std::future::Future;
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

tcp_entry_points!();

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
