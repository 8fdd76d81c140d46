//! Typed messages: values archived with rkyv 0.8, named on the wire by a stable type hash.
//!
//! A payload is only bytes. This module puts a type on it: the sender archives a [`Message`]
//! and stores its [`TYPE_HASH`](Message::TYPE_HASH) in the envelope; the receiver checks that
//! hash, validates the archive, and reads the archived value in place, without deserialising.
//!
//! ```text
//!  sender                                   receiver
//!  ------                                   --------
//!  encode(&value)                           decode::<M>(type_hash, &payload, &mut buffer)
//!    rkyv::to_bytes  -> archive (Bytes)       1. type_hash == M::TYPE_HASH?  else TypeMismatch
//!    M::TYPE_HASH    -> envelope.type_hash    2. payload 16-aligned?         else copy to buffer
//!                                             3. rkyv validation (bytecheck) else InvalidArchive
//!                                             4. Typed<M>: &M::Archived, zero-copy
//! ```
//!
//! # Alignment
//!
//! rkyv reads archived values in place, so the bytes must sit at an address aligned as the
//! archive was laid out: [`ARCHIVE_ALIGNMENT`] (16) bytes, the alignment of the
//! [`AlignedVec`] that rkyv serialises into. Bytes that arrive from the network are slices of a
//! receive buffer at whatever offset the frame header left them, so they often are not.
//! [`decode`] therefore checks the payload's address: an aligned payload is read where it is,
//! a misaligned one is copied once into a caller-owned [`DecodeBuffer`], whose memory is
//! aligned, and read from there. [`Typed::was_copied`] says which happened.
//!
//! rkyv's `unaligned` feature would remove the copy, but it is a format switch: enabled by any
//! crate in a build, it changes the archived layout for every user of rkyv in that build, and
//! so the bytes on the wire. A transport must not change its users' formats behind their
//! backs, so ringwire keeps rkyv's default (aligned, little-endian) layout and pays one copy of
//! the payload when the address is wrong: a plain copy of the bytes, no more than what a
//! deserialisation would copy anyway, and still without its allocations per field.
//!
//! # Why decoding borrows
//!
//! The workspace forbids `unsafe` code. A value that owned the bytes and handed out the
//! archived view would have to validate the bytes again on every access, or skip validation
//! with rkyv's `unsafe` access. Instead [`decode`] borrows the payload and the
//! [`DecodeBuffer`], validates once, and returns a [`Typed`] view tied to both. Keep the
//! [`Incoming`](crate::Incoming) (or its `Bytes`) while you read, and reuse one
//! `DecodeBuffer` per handler so that misaligned payloads do not allocate each time.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use bytes::Bytes;
use ringwire_core::{Envelope, Outgoing};
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// The rkyv crate this module is built on, so that derives and archived types can name the
/// same version: `#[rkyv(crate = ringwire::typed::rkyv)]`.
pub use rkyv;

/// The alignment, in bytes, that a payload needs to be read in place: that of rkyv's default
/// [`AlignedVec`], which every archive from [`encode`] is laid out for.
pub const ARCHIVE_ALIGNMENT: usize = 16;

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The stable 32-bit hash of a type name: FNV-1a over the name's UTF-8 bytes.
///
/// The name is chosen by the user and written in the code, for example
/// `"my_app::Summary"`, so the hash is the same on every machine, compiler and build, and
/// stays the same when the type is moved or renamed in the source. It is deliberately not
/// derived from [`std::any::type_name`] or [`TypeId`](std::any::TypeId): neither is stable
/// across compiler versions, and a sender and receiver built by different compilers would
/// disagree on every hash.
///
/// # Panics
///
/// If the name hashes to 0, which on the wire means "untyped bytes". When used for a
/// [`Message::TYPE_HASH`], as intended, this is a compile-time error: pick another name.
///
/// ```
/// use ringwire::typed::type_hash;
///
/// const SUMMARY: u32 = type_hash("my_app::Summary");
/// assert_eq!(type_hash(""), 0x811c_9dc5); // the FNV-1a offset basis
/// assert_ne!(SUMMARY, type_hash("my_app::Summary2"));
/// ```
pub const fn type_hash(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let mut hash = FNV_OFFSET_BASIS;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u32;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    assert!(
        hash != 0,
        "this type name hashes to 0, which means untyped bytes: choose another name"
    );
    hash
}

/// A type that travels as an rkyv archive, with a stable name and type hash.
///
/// Derive rkyv's `Archive`, `Serialize` and `Deserialize`, then name the type. The name must
/// be unique among the types that share a connection, and must not change once messages of
/// this type are in flight: the hash of the name is what the receiver checks. To rename a
/// type later and stay compatible, keep the old [`TYPE_HASH`](Self::TYPE_HASH) by setting it
/// to `type_hash("the::old::Name")`.
///
/// Two different names collide with a chance of about one in four billion per pair; a
/// collision is caught by validation in most cases, but not all, so do not reuse a name for a
/// different layout.
///
/// ```
/// use ringwire::typed::{self, DecodeBuffer, Message};
/// use rkyv::{Archive, Deserialize, Serialize};
///
/// #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
/// struct Ping {
///     sequence: u64,
/// }
///
/// impl Message for Ping {
///     const TYPE_NAME: &'static str = "example::Ping";
/// }
///
/// let (type_hash, payload) = typed::encode(&Ping { sequence: 7 })?;
/// assert_eq!(type_hash, Ping::TYPE_HASH);
///
/// let mut buffer = DecodeBuffer::new();
/// let ping = typed::decode::<Ping>(type_hash, &payload, &mut buffer)?;
/// assert_eq!(ping.sequence, 7); // read in place from the archive
/// assert_eq!(ping.deserialize()?, Ping { sequence: 7 });
/// # Ok::<(), ringwire::typed::TypedError>(())
/// ```
pub trait Message:
    Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + Deserialize<Self, HighDeserializer<rancor::Error>>,
    > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + Sized
{
    /// The type's stable name, for example `"my_app::Summary"`. Reported in errors.
    const TYPE_NAME: &'static str;

    /// The hash carried in [`Envelope::type_hash`]: [`type_hash`] of
    /// [`TYPE_NAME`](Self::TYPE_NAME) unless overridden. Never 0.
    const TYPE_HASH: u32 = type_hash(Self::TYPE_NAME);
}

/// Archives `message` and returns its type hash and the archived bytes, ready to go into an
/// [`Outgoing`] whose envelope carries the hash. See [`outgoing`] for both at once.
///
/// The bytes are rkyv's buffer itself, not a copy, so they start 16-aligned.
///
/// # Errors
///
/// [`TypedError::Encode`] if rkyv cannot archive the value.
pub fn encode<M: Message>(message: &M) -> Result<(u32, Bytes), TypedError> {
    let type_hash = const { checked_hash::<M>() };
    let archive =
        rkyv::to_bytes::<rancor::Error>(message).map_err(|source| TypedError::Encode {
            type_name: M::TYPE_NAME,
            source,
        })?;
    Ok((type_hash, Bytes::from_owner(archive)))
}

/// Archives `message` into an [`Outgoing`] with `envelope`, whose
/// [`type_hash`](Envelope::type_hash) is set to the message's.
///
/// # Errors
///
/// [`TypedError::Encode`] if rkyv cannot archive the value.
pub fn outgoing<M: Message>(mut envelope: Envelope, message: &M) -> Result<Outgoing, TypedError> {
    let (type_hash, payload) = encode(message)?;
    envelope.type_hash = type_hash;
    Ok(Outgoing::new(envelope, payload))
}

/// Checks that a payload is an `M`, validates it, and returns zero-copy access to it.
///
/// `type_hash` is the envelope's. The payload is read in place if it is 16-aligned and copied
/// into `buffer` otherwise (see the [module docs](self) for why); either way it is validated
/// exactly once, here.
///
/// # Errors
///
/// [`TypedError::TypeMismatch`] if `type_hash` is not `M`'s; [`TypedError::InvalidArchive`] if
/// the bytes are not a valid archive of `M`. Malformed input never panics.
pub fn decode<'a, M: Message>(
    type_hash: u32,
    payload: &'a [u8],
    buffer: &'a mut DecodeBuffer,
) -> Result<Typed<'a, M>, TypedError> {
    let expected = const { checked_hash::<M>() };
    if type_hash != expected {
        return Err(TypedError::TypeMismatch {
            type_name: M::TYPE_NAME,
            expected,
            found: type_hash,
        });
    }

    // rkyv checks every pointer's alignment against the buffer's address: read in place only
    // when the start is aligned as the archive was written, else copy to aligned memory.
    let was_copied = payload.as_ptr().addr() % ARCHIVE_ALIGNMENT != 0;
    let bytes: &'a [u8] = if was_copied {
        buffer.bytes.clear();
        buffer.bytes.extend_from_slice(payload);
        let buffer: &'a DecodeBuffer = buffer;
        &buffer.bytes
    } else {
        payload
    };

    let archived = rkyv::access::<M::Archived, rancor::Error>(bytes).map_err(|source| {
        TypedError::InvalidArchive {
            type_name: M::TYPE_NAME,
            source,
        }
    })?;
    Ok(Typed {
        archived,
        was_copied,
        message: PhantomData,
    })
}

/// Checks, validates and deserialises a payload into an owned `M`, for when zero-copy access
/// is not wanted. Allocates an aligned copy only if the payload is misaligned.
///
/// # Errors
///
/// As [`decode`], and [`TypedError::Deserialize`] if the owned value cannot be built.
pub fn decode_owned<M: Message>(type_hash: u32, payload: &[u8]) -> Result<M, TypedError> {
    let mut buffer = DecodeBuffer::new();
    decode::<M>(type_hash, payload, &mut buffer)?.deserialize()
}

const fn checked_hash<M: Message>() -> u32 {
    assert!(
        M::TYPE_HASH != 0,
        "Message::TYPE_HASH is 0, which means untyped bytes: choose another hash"
    );
    M::TYPE_HASH
}

/// A validated, zero-copy view of an archived `M`, returned by [`decode`].
///
/// Dereferences to `M::Archived`, the archived form that rkyv's derive generates (for a
/// `struct Summary`, `ArchivedSummary`): its fields are read straight from the payload bytes.
/// The view borrows the payload and the [`DecodeBuffer`] it was decoded with.
pub struct Typed<'a, M: Message> {
    archived: &'a M::Archived,
    was_copied: bool,
    message: PhantomData<fn() -> M>,
}

impl<'a, M: Message> Typed<'a, M> {
    /// The archived value, with the lifetime of the payload rather than of this view.
    pub fn archived(&self) -> &'a M::Archived {
        self.archived
    }

    /// Whether the payload was misaligned and had to be copied into the [`DecodeBuffer`]
    /// before it could be read; `false` means it is read where it arrived.
    pub fn was_copied(&self) -> bool {
        self.was_copied
    }

    /// Builds an owned `M` from the archive.
    ///
    /// # Errors
    ///
    /// [`TypedError::Deserialize`] if rkyv cannot build the value; for plain data types
    /// (numbers, strings, vectors, structs of them) this does not happen once the archive is
    /// valid.
    pub fn deserialize(&self) -> Result<M, TypedError> {
        rkyv::deserialize::<M, rancor::Error>(self.archived).map_err(|source| {
            TypedError::Deserialize {
                type_name: M::TYPE_NAME,
                source,
            }
        })
    }
}

impl<M: Message> Deref for Typed<'_, M> {
    type Target = M::Archived;

    fn deref(&self) -> &M::Archived {
        self.archived
    }
}

impl<M: Message> Clone for Typed<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Message> Copy for Typed<'_, M> {}

impl<M: Message> fmt::Debug for Typed<'_, M> {
    // The archived value is payload: like `Incoming`, print only what it is, never its content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Typed")
            .field("type_name", &M::TYPE_NAME)
            .field("was_copied", &self.was_copied)
            .finish_non_exhaustive()
    }
}

/// Aligned memory that [`decode`] copies a misaligned payload into.
///
/// It grows to the largest misaligned payload decoded with it and keeps that capacity, so one
/// buffer reused per handler allocates only until it has seen the largest message; the
/// receiver's `max_message_size` bounds it. Drop it to give the memory back.
#[derive(Default)]
pub struct DecodeBuffer {
    bytes: AlignedVec<ARCHIVE_ALIGNMENT>,
}

impl DecodeBuffer {
    /// An empty buffer; it allocates on the first misaligned payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer that can take a misaligned payload of `capacity` bytes without allocating.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: AlignedVec::with_capacity(capacity),
        }
    }

    /// How many bytes it holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

impl fmt::Debug for DecodeBuffer {
    // The contents are the last copied payload: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodeBuffer")
            .field("capacity", &self.bytes.capacity())
            .finish_non_exhaustive()
    }
}

/// Why a typed message could not be encoded or decoded.
///
/// [`TypeMismatch`](Self::TypeMismatch) is usually the application's own mistake (decoding as
/// the wrong type); [`InvalidArchive`](Self::InvalidArchive) is the peer's (bytes that are not
/// what their hash claims).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedError {
    /// The envelope's type hash is not the one of the type asked for. Dispatch on
    /// [`Envelope::type_hash`] before decoding (0 means untyped bytes, which are not a typed
    /// message at all); if the hash should have matched, check that both sides give the type
    /// the same [`Message::TYPE_NAME`].
    #[error(
        "payload type hash {found:#010x} is not {type_name} ({expected:#010x}): \
         dispatch on the envelope's type hash, or give the type the same name on both sides"
    )]
    TypeMismatch {
        /// The name of the type asked for.
        type_name: &'static str,
        /// That type's hash.
        expected: u32,
        /// The hash the envelope carried.
        found: u32,
    },

    /// The payload carries the right type hash but is not a valid archive of the type: the
    /// peer sent damaged bytes, or a different layout under the same name (a changed struct
    /// deployed on one side only). Drop the message; if it repeats, check that both sides run
    /// the same definition of the type, and give a changed layout a new name.
    #[error(
        "payload is not a valid archive of {type_name}: drop it, and check both sides run \
         the same definition of the type"
    )]
    InvalidArchive {
        /// The name of the type asked for.
        type_name: &'static str,
        /// What rkyv's validation found. Detailed in debug builds; rkyv keeps only the fact
        /// of failure in release builds.
        #[source]
        source: rancor::Error,
    },

    /// rkyv could not archive the value; nothing was produced and nothing was sent. With
    /// rkyv's default 32-bit offsets an archive must stay under 2 GiB; otherwise look at the
    /// source for a custom `Serialize` or `with` wrapper that failed.
    #[error("could not archive {type_name}: nothing was sent")]
    Encode {
        /// The name of the type being encoded.
        type_name: &'static str,
        /// rkyv's error.
        #[source]
        source: rancor::Error,
    },

    /// The archive is valid but rkyv could not build an owned value from it, which in
    /// practice only custom `Deserialize` implementations and shared pointers can cause.
    /// Read the value in place through [`Typed`] instead, or fix the implementation named in
    /// the source.
    #[error("could not deserialise a valid archive of {type_name}: read it in place instead")]
    Deserialize {
        /// The name of the type being built.
        type_name: &'static str,
        /// rkyv's error.
        #[source]
        source: rancor::Error,
    },
}
