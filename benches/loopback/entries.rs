//! Each entry's client (a [`Writer`]) and server task, over any stream of the right kind:
//! ringwire's connection, tokio-util's length-delimited codec over tokio's I/O traits, and
//! the raw and hand-written entries over tokio's and futures-io's.

use std::hint::black_box;
use std::io;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ringwire::net::{Connection, Delivery, Inbox};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::{KIB, MIB};

/// The key of every ringwire message: one ordered flow, like the other entries' one stream.
const KEY: u64 = 1;

/// Bytes the raw receiver reads at once, as many as ringwire's driver does.
const READ_SIZE: usize = 64 * KIB;

/// The frame limit of the length-delimited codec and of the hand-written reader: above the
/// largest payload measured.
const MAX_FRAME: usize = 8 * MIB;

/// What the server's task tells the client after each batch: it is all in, or what failed.
pub(crate) type Report = io::Result<()>;

/// Where the server's task sends its reports.
pub(crate) type Done = async_channel::Sender<Report>;

/// Reports the outcome of one batch, `Ok(false)` meaning that the client closed the
/// connection between batches. Returns whether the server's task should go on.
pub(crate) async fn report(done: &Done, outcome: io::Result<bool>) -> bool {
    match outcome {
        Ok(true) => done.send(Ok(())).await.is_ok(),
        Ok(false) => false,
        Err(error) => {
            // The client may be gone already; then there is nobody left to tell.
            let _ = done.send(Err(error)).await;
            false
        }
    }
}

/// Checks that a received message has the size that was sent.
pub(crate) fn check_size(received: usize, expected: usize) -> io::Result<()> {
    if received == expected {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("received a {received}-byte message, expected {expected} bytes"),
        ))
    }
}

/// The client's side of one entry.
pub(crate) trait Writer: Sized {
    /// Sends `batch` copies of `payload`, and flushes whatever the entry buffers.
    async fn write_batch(&mut self, payload: &Bytes, batch: usize) -> io::Result<()>;

    /// Ends the connection; the server's task then ends too. Dropping closes a socket.
    async fn finish(self) {}
}

/// The client's ringwire connection. Its inbox is kept so that the connection stays as it
/// would in an application that also receives.
pub(crate) struct Ringwire {
    connection: Connection,
    _inbox: Inbox,
}

impl Ringwire {
    pub(crate) fn new(connection: Connection, inbox: Inbox) -> Self {
        Self {
            connection,
            _inbox: inbox,
        }
    }
}

impl Writer for Ringwire {
    async fn write_batch(&mut self, payload: &Bytes, batch: usize) -> io::Result<()> {
        for _ in 0..batch {
            self.connection
                .tell(KEY, 0, payload.clone())
                .await
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    async fn finish(self) {
        // Which route the messages took is part of what was measured: a burst that fills the
        // ring goes on as streams.
        let sent = self.connection.metrics().send;
        eprintln!(
            "ringwire sent {} messages by the ring, {} as streams ({} of them because the \
             ring was full)",
            sent.ring_sends, sent.streaming_sends, sent.streaming_fallbacks
        );
        if let Err(error) = self.connection.close().await {
            eprintln!("ringwire close: {error}");
        }
    }
}

/// The server's task for ringwire: `Inbox::recv` until each batch is in.
pub(crate) async fn serve_ringwire(inbox: Inbox, size: usize, batch: usize, done: Done) {
    loop {
        let outcome = receive_ringwire(&inbox, size, batch).await;
        if !report(&done, outcome).await {
            return;
        }
    }
}

async fn receive_ringwire(inbox: &Inbox, size: usize, batch: usize) -> io::Result<bool> {
    for received in 0..batch {
        match inbox.recv().await {
            None if received == 0 => return Ok(false),
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
            Some(Delivery::Tell(message)) => {
                check_size(message.payload.len(), size)?;
                black_box(&message);
            }
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the client only tells",
                ));
            }
        }
    }
    Ok(true)
}

/// The length-delimited codec both ends use.
fn length_delimited() -> tokio_util::codec::length_delimited::Builder {
    let mut builder = LengthDelimitedCodec::builder();
    builder.max_frame_length(MAX_FRAME);
    builder
}

/// The client's tokio-util framing: every message fed, one flush per batch, as a user who
/// sends batches writes it (`send` would flush, so write, once per message).
pub(crate) struct Ldc<W>(FramedWrite<W, LengthDelimitedCodec>);

impl<W: tokio::io::AsyncWrite + Unpin> Ldc<W> {
    pub(crate) fn new(stream: W) -> Self {
        Self(length_delimited().new_write(stream))
    }
}

impl<W: tokio::io::AsyncWrite + Unpin> Writer for Ldc<W> {
    async fn write_batch(&mut self, payload: &Bytes, batch: usize) -> io::Result<()> {
        for _ in 0..batch {
            self.0.feed(payload.clone()).await?;
        }
        SinkExt::<Bytes>::flush(&mut self.0).await
    }
}

/// The server's task for the tokio-util framing: `FramedRead::next` until each batch is in.
pub(crate) async fn serve_ldc<R>(stream: R, size: usize, batch: usize, done: Done)
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut frames = length_delimited().new_read(stream);
    loop {
        let outcome = receive_ldc(&mut frames, size, batch).await;
        if !report(&done, outcome).await {
            return;
        }
    }
}

async fn receive_ldc<R>(
    frames: &mut FramedRead<R, LengthDelimitedCodec>,
    size: usize,
    batch: usize,
) -> io::Result<bool>
where
    R: tokio::io::AsyncRead + Unpin,
{
    for received in 0..batch {
        match frames.next().await {
            None if received == 0 => return Ok(false),
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
            Some(frame) => {
                let frame = frame?;
                check_size(frame.len(), size)?;
                black_box(&frame);
            }
        }
    }
    Ok(true)
}

/// The raw and hand-written entries, written once and compiled over each family of I/O
/// traits: tokio's for tokio, futures-io's (with futures-util's buffers) for async-std and
/// smol. Both families name their traits, extension methods and buffers alike.
macro_rules! byte_stream_entries {
    ($module:ident, $($io:ident)::+) => {
        pub(crate) mod $module {
            use std::hint::black_box;
            use std::io;

            use bytes::Bytes;
            use $($io)::+::{
                AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
                BufWriter,
            };

            use super::{Done, MAX_FRAME, READ_SIZE, Writer, check_size, report};

            /// The client's raw stream: every payload written whole, no framing.
            pub(crate) struct Raw<W>(pub(crate) W);

            impl<W: AsyncWrite + Unpin> Writer for Raw<W> {
                async fn write_batch(&mut self, payload: &Bytes, batch: usize) -> io::Result<()> {
                    for _ in 0..batch {
                        self.0.write_all(payload).await?;
                    }
                    Ok(())
                }
            }

            /// The server's task for the raw stream: reads until each batch's bytes are in.
            pub(crate) async fn serve_raw<R>(mut stream: R, batch_bytes: usize, done: Done)
            where
                R: AsyncRead + Unpin,
            {
                let mut buffer = vec![0; READ_SIZE];
                loop {
                    let outcome = receive_raw(&mut stream, &mut buffer, batch_bytes).await;
                    if !report(&done, outcome).await {
                        return;
                    }
                }
            }

            async fn receive_raw<R>(
                stream: &mut R,
                buffer: &mut [u8],
                batch_bytes: usize,
            ) -> io::Result<bool>
            where
                R: AsyncRead + Unpin,
            {
                let mut received = 0;
                while received < batch_bytes {
                    let read = stream.read(buffer).await?;
                    if read == 0 {
                        if received == 0 {
                            return Ok(false);
                        }
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    black_box(&buffer[..read]);
                    received += read;
                }
                // The client waits for this report before it sends again, so more bytes than
                // one batch would mean the two sides disagree on the batch.
                check_size(received, batch_bytes)?;
                Ok(true)
            }

            /// The client's hand-written framing: a `u32` length, then the payload, into a
            /// `BufWriter` flushed once per batch.
            pub(crate) struct Handwritten<W>(BufWriter<W>);

            impl<W: AsyncWrite> Handwritten<W> {
                pub(crate) fn new(stream: W) -> Self {
                    Self(BufWriter::new(stream))
                }
            }

            impl<W: AsyncWrite + Unpin> Writer for Handwritten<W> {
                async fn write_batch(&mut self, payload: &Bytes, batch: usize) -> io::Result<()> {
                    let length = u32::try_from(payload.len())
                        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                    for _ in 0..batch {
                        self.0.write_all(&length.to_be_bytes()).await?;
                        self.0.write_all(payload).await?;
                    }
                    self.0.flush().await
                }
            }

            /// The server's task for the hand-written framing: a `BufReader`, and one `Vec`
            /// that every payload is read into.
            pub(crate) async fn serve_handwritten<R>(
                stream: R,
                size: usize,
                batch: usize,
                done: Done,
            ) where
                R: AsyncRead + Unpin,
            {
                let mut reader = BufReader::new(stream);
                let mut payload = Vec::new();
                loop {
                    let outcome = receive_handwritten(&mut reader, &mut payload, size, batch).await;
                    if !report(&done, outcome).await {
                        return;
                    }
                }
            }

            async fn receive_handwritten<R>(
                reader: &mut BufReader<R>,
                payload: &mut Vec<u8>,
                size: usize,
                batch: usize,
            ) -> io::Result<bool>
            where
                R: AsyncRead + Unpin,
            {
                if reader.fill_buf().await?.is_empty() {
                    return Ok(false);
                }
                for _ in 0..batch {
                    let mut header = [0; 4];
                    reader.read_exact(&mut header).await?;
                    let length = u32::from_be_bytes(header) as usize;
                    // Checked before the buffer grows, as a reader of untrusted input must.
                    if length > MAX_FRAME {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("a {length}-byte frame is over the limit"),
                        ));
                    }
                    payload.resize(length, 0);
                    reader.read_exact(payload).await?;
                    check_size(length, size)?;
                    black_box(&payload);
                }
                Ok(true)
            }
        }
    };
}

byte_stream_entries!(over_tokio_io, tokio::io);
byte_stream_entries!(over_futures_io, futures_util::io);
