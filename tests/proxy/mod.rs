//! A fault-injecting TCP proxy on loopback, for end-to-end tests of what a real network does to
//! a connection: delay, limited bandwidth, writes split into small pieces, one direction
//! stalled, and a cut after a chosen number of bytes.
//!
//! It runs on plain threads with blocking `std::net` sockets, so that it works the same under
//! every runtime the connection under test uses. It accepts one connection, opens one to the
//! upstream address, and moves bytes with one thread per direction. Its sockets have small
//! kernel buffers, so that what is in flight stays small and back-pressure reaches the ends
//! quickly.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// Kernel send and receive buffers of the proxy's sockets (Linux doubles what is asked).
pub(crate) const SOCKET_BUFFER: usize = 64 * 1024;
/// Bytes read from one side at once.
const READ_SIZE: usize = 16 * 1024;

/// Which way bytes go through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// From the client that connected to the proxy, to the upstream server.
    ToServer,
    /// From the server back to the client.
    ToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Self::ToServer => 0,
            Self::ToClient => 1,
        }
    }
}

/// What the proxy does to the bytes of one direction. The default forwards them untouched.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Faults {
    /// Waited before forwarding each read.
    pub(crate) delay: Duration,
    /// Bandwidth limit, in bytes per second.
    pub(crate) bytes_per_second: Option<u64>,
    /// Each read is forwarded as writes of a random size from 1 to this many bytes.
    pub(crate) max_piece: Option<usize>,
    /// After this many bytes in this direction, the whole connection is cut: both sockets are
    /// shut down in both directions, and nothing more is forwarded either way.
    pub(crate) cut_after: Option<u64>,
    /// Seed of the random piece sizes.
    pub(crate) seed: u64,
}

/// State shared by the proxy's handle and its threads.
#[derive(Debug, Default)]
struct Shared {
    /// Per direction: whether forwarding is stalled.
    stalled: Mutex<[bool; 2]>,
    /// Per direction: bytes forwarded.
    forwarded: [AtomicU64; 2],
    /// Whether the connection was cut (by a fault or after an error), and both sockets.
    cut: Mutex<Cut>,
    /// Notified when a stall ends or the connection is cut.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Cut {
    done: bool,
    sockets: Vec<TcpStream>,
}

impl Shared {
    fn lock_cut(&self) -> MutexGuard<'_, Cut> {
        self.cut
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Shuts every socket down both ways; the ends see their connection end mid-stream.
    fn cut(&self) {
        let mut cut = self.lock_cut();
        cut.done = true;
        for socket in &cut.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
        drop(cut);
        self.changed.notify_all();
    }

    fn is_cut(&self) -> bool {
        self.lock_cut().done
    }

    /// Blocks while `direction` is stalled. Returns false if the connection was cut.
    fn wait_unstalled(&self, direction: Direction) -> bool {
        let mut stalled = self.stalled.lock().expect("stall lock");
        while stalled[direction.index()] {
            if self.is_cut() {
                return false;
            }
            stalled = self
                .changed
                .wait_timeout(stalled, Duration::from_millis(100))
                .expect("stall lock")
                .0;
        }
        !self.is_cut()
    }
}

/// A running proxy. Dropping the handle leaves the proxy's threads to end with the connection.
#[derive(Debug)]
pub(crate) struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// A TCP socket on loopback with small kernel buffers.
fn small_socket() -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket
        .set_recv_buffer_size(SOCKET_BUFFER)
        .expect("SO_RCVBUF");
    socket
        .set_send_buffer_size(SOCKET_BUFFER)
        .expect("SO_SNDBUF");
    socket
}

/// A listener on an unused loopback port whose accepted sockets have small kernel buffers.
pub(crate) fn small_listener() -> TcpListener {
    let socket = small_socket();
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    socket.bind(&any_port.into()).expect("bind 127.0.0.1");
    socket.listen(8).expect("listen");
    socket.into()
}

/// A connection to `addr` from a socket with small kernel buffers and no Nagle delay.
pub(crate) fn small_connect(addr: SocketAddr) -> TcpStream {
    let socket = small_socket();
    socket.connect(&addr.into()).expect("connect");
    socket.set_tcp_nodelay(true).expect("TCP_NODELAY");
    socket.into()
}

impl Proxy {
    /// A proxy in front of `upstream`, applying `to_server` to the client's bytes and
    /// `to_client` to the server's. It accepts one connection.
    pub(crate) fn start(upstream: SocketAddr, to_server: Faults, to_client: Faults) -> Self {
        let listener = small_listener();
        let addr = listener.local_addr().expect("bound");
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        thread::Builder::new()
            .name("proxy accept".into())
            .spawn(move || {
                let Ok((client, _)) = listener.accept() else {
                    return;
                };
                client.set_nodelay(true).expect("TCP_NODELAY");
                let server = small_connect(upstream);
                let mut cut = accepting.lock_cut();
                cut.sockets = vec![
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                ];
                drop(cut);
                let pumps = [
                    (
                        Direction::ToServer,
                        to_server,
                        client.try_clone(),
                        server.try_clone(),
                    ),
                    (
                        Direction::ToClient,
                        to_client,
                        server.try_clone(),
                        client.try_clone(),
                    ),
                ];
                for (direction, faults, from, to) in pumps {
                    let shared = accepting.clone();
                    let (from, to) = (from.expect("clone"), to.expect("clone"));
                    thread::Builder::new()
                        .name(format!("proxy {direction:?}"))
                        .spawn(move || pump(&shared, direction, faults, from, to))
                        .expect("spawn a proxy thread");
                }
            })
            .expect("spawn the proxy");
        Self { addr, shared }
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding `direction`: the proxy stops reading that side, and the sender's
    /// writes back up once the small kernel buffers are full.
    pub(crate) fn stall(&self, direction: Direction) {
        self.shared.stalled.lock().expect("stall lock")[direction.index()] = true;
    }

    /// Forwards `direction` again.
    pub(crate) fn resume(&self, direction: Direction) {
        self.shared.stalled.lock().expect("stall lock")[direction.index()] = false;
        self.shared.changed.notify_all();
    }

    /// Bytes forwarded in `direction` so far.
    pub(crate) fn forwarded(&self, direction: Direction) -> u64 {
        self.shared.forwarded[direction.index()].load(Ordering::SeqCst)
    }

    /// Whether the connection has been cut.
    pub(crate) fn is_cut(&self) -> bool {
        self.shared.is_cut()
    }
}

/// A small xorshift generator: reproducible piece sizes without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// Moves bytes one way until either side ends, applying `faults`.
fn pump(shared: &Shared, direction: Direction, faults: Faults, mut from: TcpStream, to: TcpStream) {
    let outcome = forward(shared, direction, faults, &mut from, &to);
    match outcome {
        // The sender finished cleanly: pass the end on, and let the other direction go on.
        Ok(true) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        // A cut, or an error on either side: the whole connection goes.
        Ok(false) | Err(_) => shared.cut(),
    }
}

/// Returns `Ok(true)` at a clean end of input, `Ok(false)` when the connection is cut.
fn forward(
    shared: &Shared,
    direction: Direction,
    faults: Faults,
    from: &mut TcpStream,
    mut to: &TcpStream,
) -> io::Result<bool> {
    let counter = &shared.forwarded[direction.index()];
    let mut rng = Rng(faults.seed | 1);
    let mut buffer = vec![0; READ_SIZE];
    let mut throttle_start: Option<Instant> = None;
    loop {
        if !shared.wait_unstalled(direction) {
            return Ok(false);
        }
        let read = from.read(&mut buffer)?;
        if read == 0 {
            return Ok(true);
        }
        if !faults.delay.is_zero() {
            thread::sleep(faults.delay);
        }
        let mut at = 0;
        while at < read {
            let mut piece = match faults.max_piece {
                Some(max) => (1 + rng.below(max)).min(read - at),
                None => read - at,
            };
            let done = counter.load(Ordering::SeqCst);
            let cut_here = faults
                .cut_after
                .is_some_and(|cut| done + piece as u64 >= cut);
            if let Some(cut) = faults.cut_after.filter(|_| cut_here) {
                piece = (cut - done.min(cut)) as usize;
            }
            if shared.is_cut() {
                return Ok(false);
            }
            to.write_all(&buffer[at..at + piece])?;
            counter.fetch_add(piece as u64, Ordering::SeqCst);
            if cut_here {
                return Ok(false);
            }
            at += piece;

            // Keep to the bandwidth: wait until the bytes so far are due.
            if let Some(rate) = faults.bytes_per_second {
                let start = *throttle_start.get_or_insert_with(Instant::now);
                let due =
                    Duration::from_secs_f64(counter.load(Ordering::SeqCst) as f64 / rate as f64);
                let elapsed = start.elapsed();
                if due > elapsed {
                    thread::sleep(due - elapsed);
                }
            }
        }
    }
}
