//! Configuration: the one place where buffer sizes and limits are chosen.
//!
//! The streaming threshold is never configured on its own. It is derived from the
//! [`BufferConfig`] of the lane that carries the message, so a message can never be too large
//! for its ring and still be sent to it.

use std::time::Duration;

use crate::frame::{CRC_LEN, MESSAGE_HEADER_LEN};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Room kept in every ring buffer for frame headers: the streaming threshold is the ring size
/// minus this.
pub const HEADER_HEADROOM: usize = KIB;

// The headroom must hold what a ring frame adds to its payload (header and CRC32C trailer),
// or a message exactly at the threshold would not fit into an empty ring.
const _: () = assert!(MESSAGE_HEADER_LEN + CRC_LEN <= HEADER_HEADROOM);

/// Size of one lane's ring buffer, and with it the lane's streaming threshold.
///
/// A message whose payload is at most [`streaming_threshold`](Self::streaming_threshold) bytes
/// is copied into the ring as one frame; a larger one is sent as a chunked stream.
///
/// ```
/// use ringwire_core::BufferConfig;
///
/// let config = BufferConfig::new(512 * 1024)?;
/// assert_eq!(config.ring_buffer_size(), 512 * 1024);
/// assert_eq!(config.streaming_threshold(), 511 * 1024);
/// # Ok::<(), ringwire_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferConfig {
    ring_buffer_size: usize,
}

impl BufferConfig {
    /// The smallest ring buffer accepted: 256 KiB.
    pub const MIN_RING_BUFFER_SIZE: usize = 256 * KIB;
    /// The largest ring buffer accepted: 10 MiB.
    pub const MAX_RING_BUFFER_SIZE: usize = 10 * MIB;

    /// A ring buffer of `ring_buffer_size` bytes.
    ///
    /// # Errors
    ///
    /// [`ConfigError::RingBufferTooSmall`] below [`MIN_RING_BUFFER_SIZE`](Self::MIN_RING_BUFFER_SIZE),
    /// [`ConfigError::RingBufferTooLarge`] above [`MAX_RING_BUFFER_SIZE`](Self::MAX_RING_BUFFER_SIZE).
    pub const fn new(ring_buffer_size: usize) -> Result<Self, ConfigError> {
        if ring_buffer_size < Self::MIN_RING_BUFFER_SIZE {
            return Err(ConfigError::RingBufferTooSmall {
                size: ring_buffer_size,
                min: Self::MIN_RING_BUFFER_SIZE,
            });
        }
        if ring_buffer_size > Self::MAX_RING_BUFFER_SIZE {
            return Err(ConfigError::RingBufferTooLarge {
                size: ring_buffer_size,
                max: Self::MAX_RING_BUFFER_SIZE,
            });
        }
        Ok(Self { ring_buffer_size })
    }

    /// Capacity of the ring buffer in bytes, headers included.
    pub const fn ring_buffer_size(&self) -> usize {
        self.ring_buffer_size
    }

    /// The largest payload that goes through the ring: the ring size less
    /// [`HEADER_HEADROOM`]. Computed on every call, never stored.
    pub const fn streaming_threshold(&self) -> usize {
        self.ring_buffer_size - HEADER_HEADROOM
    }
}

impl Default for BufferConfig {
    /// 1 MiB.
    fn default() -> Self {
        Self {
            ring_buffer_size: MIB,
        }
    }
}

/// A configuration value outside its bounds. Each variant names the value and the bound; fix
/// the value and build the configuration again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The ring buffer is smaller than the minimum.
    #[error("ring buffer size {size} is below the minimum of {min} bytes")]
    RingBufferTooSmall {
        /// The size asked for.
        size: usize,
        /// The minimum, [`BufferConfig::MIN_RING_BUFFER_SIZE`].
        min: usize,
    },
    /// The ring buffer is larger than the maximum.
    #[error("ring buffer size {size} is above the maximum of {max} bytes")]
    RingBufferTooLarge {
        /// The size asked for.
        size: usize,
        /// The maximum, [`BufferConfig::MAX_RING_BUFFER_SIZE`].
        max: usize,
    },
    /// A numeric limit is outside its range.
    #[error("{name} = {value} is outside the accepted range {min}..={max}")]
    OutOfRange {
        /// The setting, as named by its builder method.
        name: &'static str,
        /// The value asked for.
        value: u64,
        /// The smallest accepted value.
        min: u64,
        /// The largest accepted value.
        max: u64,
    },
    /// The reassembly budget could never hold one message of the largest accepted size.
    #[error(
        "reassembly budget of {budget} bytes is below max_message_size of {max_message_size} \
         bytes; raise the budget or lower the message limit"
    )]
    BudgetBelowMessageSize {
        /// The reassembly budget asked for.
        budget: u64,
        /// The largest message size asked for.
        max_message_size: u64,
    },
    /// A duration is outside its range.
    #[error("{name} = {value:?} is outside the accepted range {min:?}..={max:?}")]
    DurationOutOfRange {
        /// The setting, as named by its builder method.
        name: &'static str,
        /// The duration asked for.
        value: Duration,
        /// The shortest accepted duration.
        min: Duration,
        /// The longest accepted duration.
        max: Duration,
    },
}

/// What a receiver accepts. Each side of a connection enforces its own limits on input and
/// tells them to the peer, whose sender keeps within them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReceiveLimits {
    /// Largest message payload accepted, by either route.
    pub max_message_size: u64,
    /// Largest payload accepted in a single ring frame.
    pub max_frame_payload: u64,
    /// Streams that may be open (begun, not complete) at once.
    pub max_inbound_streams: u32,
    /// Bytes reserved at once by all streams being reassembled.
    pub reassembly_budget: u64,
}

/// Everything a connection needs to know: one [`BufferConfig`] per lane, the receive limits,
/// the bounds of the send queue and how long a graceful close may take. Build one with
/// [`ConnectionConfig::builder`].
///
/// ```
/// use ringwire_core::{BufferConfig, ConnectionConfig};
///
/// let config = ConnectionConfig::builder()
///     .tell_buffer_config(BufferConfig::new(256 * 1024)?)
///     .max_message_size(16 * 1024 * 1024)
///     .build()?;
/// assert_eq!(config.tell_buffer_config().streaming_threshold(), 255 * 1024);
/// # Ok::<(), ringwire_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionConfig {
    tell_buffer_config: BufferConfig,
    ask_buffer_config: BufferConfig,
    max_message_size: u64,
    max_inbound_streams: u32,
    reassembly_budget: u64,
    chunk_size: usize,
    max_queued_stream_bytes: u64,
    max_queued_streams: usize,
    close_timeout: Duration,
}

impl ConnectionConfig {
    /// Default largest message: 64 MiB.
    pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 * MIB as u64;
    /// Default number of inbound streams open at once.
    pub const DEFAULT_MAX_INBOUND_STREAMS: u32 = 64;
    /// Default reassembly budget: 128 MiB, room for two messages of the default largest size.
    pub const DEFAULT_REASSEMBLY_BUDGET: u64 = 128 * MIB as u64;
    /// Default size of one stream chunk: 64 KiB.
    pub const DEFAULT_CHUNK_SIZE: usize = 64 * KIB;
    /// Default bound on payload bytes waiting in the stream queue: 16 MiB.
    pub const DEFAULT_MAX_QUEUED_STREAM_BYTES: u64 = 16 * MIB as u64;
    /// Default bound on the number of messages waiting in the stream queue.
    pub const DEFAULT_MAX_QUEUED_STREAMS: usize = 1024;
    /// Default time a graceful close may take: 10 seconds.
    pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

    /// A builder starting from the defaults.
    pub fn builder() -> ConnectionConfigBuilder {
        ConnectionConfigBuilder {
            config: Self::default(),
        }
    }

    /// Ring buffer, and so streaming threshold, of the tell lane. Default 1 MiB.
    pub fn tell_buffer_config(&self) -> BufferConfig {
        self.tell_buffer_config
    }

    /// Ring buffer, and so streaming threshold, of the ask lane (asks and their replies).
    /// Default 256 KiB.
    pub fn ask_buffer_config(&self) -> BufferConfig {
        self.ask_buffer_config
    }

    /// Largest message accepted for sending and receiving. Default 64 MiB.
    pub fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// Inbound streams that may be open at once. Default 64.
    pub fn max_inbound_streams(&self) -> u32 {
        self.max_inbound_streams
    }

    /// Bytes that all inbound streams being reassembled may reserve together. Default 128 MiB.
    pub fn reassembly_budget(&self) -> u64 {
        self.reassembly_budget
    }

    /// Payload bytes in one stream chunk. Default 64 KiB.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Payload bytes that may wait in the stream queue before sends are refused. Default 16 MiB.
    ///
    /// A single message larger than this is still accepted when the stream queue is empty,
    /// so that every message up to [`max_message_size`](Self::max_message_size) can be sent.
    pub fn max_queued_stream_bytes(&self) -> u64 {
        self.max_queued_stream_bytes
    }

    /// Messages that may wait in the stream queue before sends are refused. Default 1024.
    pub fn max_queued_streams(&self) -> usize {
        self.max_queued_streams
    }

    /// How long a graceful close may take, from the moment this side starts closing (its own
    /// `close`, or the peer's `CLOSE` arriving) until both `CLOSE` frames have crossed. Past
    /// it, the connection gives up as if the transport were lost: accepted messages not
    /// completely written are handed back and pending asks fail. Default 10 seconds.
    ///
    /// This bounds a close whose peer stopped reading or never answers; a peer that reads
    /// slowly but steadily still needs the time to take every accepted message.
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// The limits this side enforces on input, as told to the peer.
    pub fn receive_limits(&self) -> ReceiveLimits {
        let largest_ring = self
            .tell_buffer_config
            .streaming_threshold()
            .max(self.ask_buffer_config.streaming_threshold());
        ReceiveLimits {
            max_message_size: self.max_message_size,
            max_frame_payload: (largest_ring as u64).min(self.max_message_size),
            max_inbound_streams: self.max_inbound_streams,
            reassembly_budget: self.reassembly_budget,
        }
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            tell_buffer_config: BufferConfig::default(),
            ask_buffer_config: BufferConfig {
                ring_buffer_size: 256 * KIB,
            },
            max_message_size: Self::DEFAULT_MAX_MESSAGE_SIZE,
            max_inbound_streams: Self::DEFAULT_MAX_INBOUND_STREAMS,
            reassembly_budget: Self::DEFAULT_REASSEMBLY_BUDGET,
            chunk_size: Self::DEFAULT_CHUNK_SIZE,
            max_queued_stream_bytes: Self::DEFAULT_MAX_QUEUED_STREAM_BYTES,
            max_queued_streams: Self::DEFAULT_MAX_QUEUED_STREAMS,
            close_timeout: Self::DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

/// Builds a [`ConnectionConfig`]; [`build`](Self::build) checks every value.
#[derive(Clone, Debug)]
pub struct ConnectionConfigBuilder {
    config: ConnectionConfig,
}

impl ConnectionConfigBuilder {
    /// Smallest accepted chunk size.
    pub const MIN_CHUNK_SIZE: usize = KIB;
    /// Largest accepted chunk size.
    pub const MAX_CHUNK_SIZE: usize = 16 * MIB;
    /// Largest accepted message size: 4 GiB.
    pub const MAX_MESSAGE_SIZE_LIMIT: u64 = 4 * 1024 * MIB as u64;
    /// Shortest accepted close timeout: 1 millisecond.
    pub const MIN_CLOSE_TIMEOUT: Duration = Duration::from_millis(1);
    /// Longest accepted close timeout: one day. The bound keeps a deadline computed from any
    /// `Instant` representable.
    pub const MAX_CLOSE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

    /// Ring buffer of the tell lane.
    pub fn tell_buffer_config(mut self, config: BufferConfig) -> Self {
        self.config.tell_buffer_config = config;
        self
    }

    /// Ring buffer of the ask lane.
    pub fn ask_buffer_config(mut self, config: BufferConfig) -> Self {
        self.config.ask_buffer_config = config;
        self
    }

    /// Largest message, 1 byte to 4 GiB.
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Inbound streams open at once, 1 to 65 536.
    pub fn max_inbound_streams(mut self, streams: u32) -> Self {
        self.config.max_inbound_streams = streams;
        self
    }

    /// Reassembly budget in bytes, at least the largest message size.
    pub fn reassembly_budget(mut self, bytes: u64) -> Self {
        self.config.reassembly_budget = bytes;
        self
    }

    /// Stream chunk payload size, 1 KiB to 16 MiB.
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.config.chunk_size = bytes;
        self
    }

    /// Bound on payload bytes in the stream queue, at least one chunk.
    pub fn max_queued_stream_bytes(mut self, bytes: u64) -> Self {
        self.config.max_queued_stream_bytes = bytes;
        self
    }

    /// Bound on messages in the stream queue, 1 to 1 048 576.
    pub fn max_queued_streams(mut self, streams: usize) -> Self {
        self.config.max_queued_streams = streams;
        self
    }

    /// Time a graceful close may take before the connection gives up, 1 ms to one day; see
    /// [`ConnectionConfig::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// Checks every value and returns the configuration.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] or [`ConfigError::DurationOutOfRange`] naming the first
    /// value outside its range, or [`ConfigError::BudgetBelowMessageSize`].
    pub fn build(self) -> Result<ConnectionConfig, ConfigError> {
        let c = self.config;
        check_range(
            "max_message_size",
            c.max_message_size,
            1,
            Self::MAX_MESSAGE_SIZE_LIMIT,
        )?;
        check_range(
            "max_inbound_streams",
            c.max_inbound_streams.into(),
            1,
            65_536,
        )?;
        check_range(
            "chunk_size",
            c.chunk_size as u64,
            Self::MIN_CHUNK_SIZE as u64,
            Self::MAX_CHUNK_SIZE as u64,
        )?;
        check_range(
            "max_queued_stream_bytes",
            c.max_queued_stream_bytes,
            c.chunk_size as u64,
            u64::MAX,
        )?;
        check_range(
            "max_queued_streams",
            c.max_queued_streams as u64,
            1,
            1 << 20,
        )?;
        if !(Self::MIN_CLOSE_TIMEOUT..=Self::MAX_CLOSE_TIMEOUT).contains(&c.close_timeout) {
            return Err(ConfigError::DurationOutOfRange {
                name: "close_timeout",
                value: c.close_timeout,
                min: Self::MIN_CLOSE_TIMEOUT,
                max: Self::MAX_CLOSE_TIMEOUT,
            });
        }
        if c.reassembly_budget < c.max_message_size {
            return Err(ConfigError::BudgetBelowMessageSize {
                budget: c.reassembly_budget,
                max_message_size: c.max_message_size,
            });
        }
        Ok(c)
    }
}

fn check_range(name: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        })
    }
}
