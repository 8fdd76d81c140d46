//! The three runtimes behind one trait: how each runs the client and the server's tasks, how
//! it makes its loopback connections, and which stream each entry runs over.

use std::future::Future;
use std::io;

use futures_util::future;
use ringwire::net::{ConnectError, Connection, Inbox, Options};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

use crate::Case;
use crate::entries::{
    Done, Ldc, Ringwire, Writer, over_futures_io, over_tokio_io, serve_ldc, serve_ringwire,
};

/// What the benchmark needs from a runtime: a way to run the client, tasks for the server,
/// loopback connections, and each entry's client and server built on them.
pub(crate) trait BenchRuntime {
    /// The runtime's name, in the group names.
    const NAME: &'static str;
    /// The client's side of the `raw` entry.
    type Raw: Writer;
    /// The client's side of the `ldc` entry.
    type Ldc: Writer;
    /// The client's side of the `handwritten` entry.
    type Handwritten: Writer;

    /// Runs `future` to completion on the calling thread.
    fn block_on<F: Future>(&self, future: F) -> F::Output;

    /// Runs `task` on the runtime's executor until it completes.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);

    /// A ringwire connection over loopback: the client's connection and inbox, and the
    /// server's inbox.
    async fn ringwire_pair(&self) -> Result<(Connection, Inbox, Inbox), ConnectError>;

    /// The `ringwire` entry's client, its server's task spawned.
    async fn ringwire(&self, case: &Case, done: Done) -> io::Result<Ringwire> {
        let (connection, client_inbox, server_inbox) =
            self.ringwire_pair().await.map_err(io::Error::other)?;
        self.spawn(serve_ringwire(server_inbox, case.size, case.batch, done));
        Ok(Ringwire::new(connection, client_inbox))
    }

    /// The `raw` entry's client, its server's task spawned.
    async fn raw(&self, case: &Case, done: Done) -> io::Result<Self::Raw>;

    /// The `ldc` entry's client, its server's task spawned.
    async fn ldc(&self, case: &Case, done: Done) -> io::Result<Self::Ldc>;

    /// The `handwritten` entry's client, its server's task spawned.
    async fn handwritten(&self, case: &Case, done: Done) -> io::Result<Self::Handwritten>;
}

/// `ringwire_pair` of a runtime: the same code over each adapter module.
macro_rules! ringwire_pair {
    ($adapter:ident) => {
        async fn ringwire_pair(&self) -> Result<(Connection, Inbox, Inbox), ConnectError> {
            let listener = ringwire::$adapter::listen("127.0.0.1:0").await?;
            let address = listener.local_addr()?;
            // The server's handle may go: its inbox keeps the connection open.
            let ((_server, server_inbox), (client, client_inbox)) = future::try_join(
                ringwire::$adapter::accept(&listener, Options::default()),
                ringwire::$adapter::connect(address, Options::default()),
            )
            .await?;
            Ok((client, client_inbox, server_inbox))
        }
    };
}

/// `tcp_pair` of a runtime, for the entries other than ringwire (whose `connect` and `accept`
/// set `TCP_NODELAY` themselves): the same code over each runtime's TCP types.
macro_rules! tcp_pair {
    ($($net:ident)::+) => {
        /// A client and a server TCP stream joined over loopback, both with `TCP_NODELAY`.
        async fn tcp_pair() -> io::Result<($($net)::+::TcpStream, $($net)::+::TcpStream)> {
            let listener = $($net)::+::TcpListener::bind("127.0.0.1:0").await?;
            let address = listener.local_addr()?;
            let ((server, _), client) = future::try_join(
                listener.accept(),
                $($net)::+::TcpStream::connect(address),
            )
            .await?;
            client.set_nodelay(true)?;
            server.set_nodelay(true)?;
            Ok((client, server))
        }
    };
}

/// tokio's multi-threaded runtime, with as many workers as cores.
pub(crate) struct Tokio(tokio::runtime::Runtime);

impl Tokio {
    pub(crate) fn new() -> Self {
        Self(tokio::runtime::Runtime::new().expect("a tokio runtime"))
    }

    tcp_pair!(tokio::net);
}

impl BenchRuntime for Tokio {
    const NAME: &'static str = "tokio";
    type Raw = over_tokio_io::Raw<tokio::net::TcpStream>;
    type Ldc = Ldc<tokio::net::TcpStream>;
    type Handwritten = over_tokio_io::Handwritten<tokio::net::TcpStream>;

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.spawn(task);
    }

    ringwire_pair!(tokio);

    async fn raw(&self, case: &Case, done: Done) -> io::Result<Self::Raw> {
        let (client, server) = Self::tcp_pair().await?;
        self.spawn(over_tokio_io::serve_raw(
            server,
            case.size * case.batch,
            done,
        ));
        Ok(over_tokio_io::Raw(client))
    }

    async fn ldc(&self, case: &Case, done: Done) -> io::Result<Self::Ldc> {
        let (client, server) = Self::tcp_pair().await?;
        self.spawn(serve_ldc(server, case.size, case.batch, done));
        Ok(Ldc::new(client))
    }

    async fn handwritten(&self, case: &Case, done: Done) -> io::Result<Self::Handwritten> {
        let (client, server) = Self::tcp_pair().await?;
        self.spawn(over_tokio_io::serve_handwritten(
            server, case.size, case.batch, done,
        ));
        Ok(over_tokio_io::Handwritten::new(client))
    }
}

/// The entries of a runtime whose streams are `futures-io` ones: the same code for async-std
/// and smol but for the runtime's type, its stream type and its `tcp_pair`.
macro_rules! futures_io_entries {
    ($stream:ty) => {
        type Raw = over_futures_io::Raw<$stream>;
        type Ldc = Ldc<Compat<$stream>>;
        type Handwritten = over_futures_io::Handwritten<$stream>;

        async fn raw(&self, case: &Case, done: Done) -> io::Result<Self::Raw> {
            let (client, server) = Self::tcp_pair().await?;
            self.spawn(over_futures_io::serve_raw(
                server,
                case.size * case.batch,
                done,
            ));
            Ok(over_futures_io::Raw(client))
        }

        async fn ldc(&self, case: &Case, done: Done) -> io::Result<Self::Ldc> {
            let (client, server) = Self::tcp_pair().await?;
            self.spawn(serve_ldc(server.compat(), case.size, case.batch, done));
            Ok(Ldc::new(client.compat_write()))
        }

        async fn handwritten(&self, case: &Case, done: Done) -> io::Result<Self::Handwritten> {
            let (client, server) = Self::tcp_pair().await?;
            self.spawn(over_futures_io::serve_handwritten(
                server, case.size, case.batch, done,
            ));
            Ok(over_futures_io::Handwritten::new(client))
        }
    };
}

/// async-std's global executor.
pub(crate) struct AsyncStd;

impl AsyncStd {
    tcp_pair!(async_std::net);
}

impl BenchRuntime for AsyncStd {
    const NAME: &'static str = "async-std";

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        async_std::task::block_on(future)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        // Dropping the handle detaches the task.
        drop(async_std::task::spawn(task));
    }

    ringwire_pair!(async_std);
    futures_io_entries!(async_std::net::TcpStream);
}

/// smol's global executor.
pub(crate) struct Smol;

impl Smol {
    tcp_pair!(smol::net);
}

impl BenchRuntime for Smol {
    const NAME: &'static str = "smol";

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        smol::block_on(future)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(task).detach();
    }

    ringwire_pair!(smol);
    futures_io_entries!(smol::net::TcpStream);
}
