//! A hostile peer cannot make a receiver allocate what it merely claims: heap use follows the
//! bytes that arrive, and stays within the configured reassembly budget whatever the input.
//!
//! dhat counts every allocation of the process, and only one profiler may exist at a time, so
//! this file holds a single test. Hostile frames are built into one small reused buffer and
//! their data is sliced from a static array, so that the test's own allocations stay out of
//! the way of what is measured.

use bytes::BytesMut;
use ringwire_core::{ConnectionConfig, ProtocolError, ReceiveLimits, Receiver};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The receiver's reassembly budget, and its largest message.
const BUDGET: u64 = 4 * MIB;
/// Data of chunks, sliced as needed.
static DATA: [u8; 64 * 1024] = [0x5a; 64 * 1024];

/// Heap the measured receiver may hold beyond the bytes it was actually sent, and beyond the
/// budget when it is full:
///
/// - the input buffer, reserved before the baseline at 128 KiB and holding one frame at a
///   time (a 24-byte chunk header and at most 64 KiB of data); should it ever grow, that
///   growth is at most another 128 KiB;
/// - the stream table: at most 64 entries of an id, an envelope, a length and a `Vec`
///   header, under 100 bytes each, in a hash table that doubles: under 32 KiB;
/// - the error and the receiver's own fields: bytes.
///
/// 256 KiB covers those with room to spare and is still 1/16 of the budget, so a receiver
/// that allocated anything in proportion to a claim would be caught.
const OVERHEAD: u64 = 256 * KIB;

/// Appends one frame header to `out`.
fn header(out: &mut BytesMut, kind: u8, body_len: u32) {
    out.extend_from_slice(&[kind, 0, 0, 0]);
    out.extend_from_slice(&body_len.to_le_bytes());
}

/// Appends a `STREAM_BEGIN` claiming `total_len` bytes.
fn begin(out: &mut BytesMut, stream_id: u64, total_len: u64) {
    header(out, 0x02, 36);
    out.extend_from_slice(&stream_id.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&total_len.to_le_bytes());
}

/// Appends a `STREAM_CHUNK` of `len` bytes at `offset`.
fn chunk(out: &mut BytesMut, stream_id: u64, offset: u64, len: usize) {
    header(out, 0x03, 16 + len as u32);
    out.extend_from_slice(&stream_id.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&DATA[..len]);
}

/// Decodes everything in `input` (one call takes all it can while no message completes);
/// returns the error, if any. No message may complete.
fn feed(receiver: &mut Receiver, input: &mut BytesMut) -> Option<ProtocolError> {
    match receiver.decode(input) {
        Ok(None) => None,
        Ok(Some(message)) => panic!("a message completed: {message:?}"),
        Err(error) => Some(error),
    }
}

fn small() -> ReceiveLimits {
    ReceiveLimits {
        max_message_size: BUDGET,
        max_frame_payload: 255 * KIB,
        max_inbound_streams: 64,
        reassembly_budget: BUDGET,
    }
}

/// Bytes allocated now beyond `base`, and the peak beyond it so far.
fn heap_since(base: &dhat::HeapStats) -> (u64, u64) {
    let now = dhat::HeapStats::get();
    (
        (now.curr_bytes - base.curr_bytes) as u64,
        (now.max_bytes - base.curr_bytes) as u64,
    )
}

#[test]
fn hostile_claims_cost_bytes_received_not_bytes_claimed() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut input = BytesMut::with_capacity(128 * 1024);
    let base = dhat::HeapStats::get();

    // A stream claiming 64 MiB (the default largest message) that sends 10 bytes costs a
    // table entry and a 10-byte buffer, not 64 MiB.
    let mut receiver = Receiver::new(&ConnectionConfig::default());
    begin(&mut input, 0, 64 * MIB);
    chunk(&mut input, 0, 0, 10);
    assert_eq!(feed(&mut receiver, &mut input), None);
    assert_eq!(receiver.metrics().reassembly_bytes_in_use, 64 * MIB);
    let (held, peak) = heap_since(&base);
    assert!(
        held <= 4 * KIB,
        "64 MiB claimed, 10 bytes sent: {held} bytes held"
    );
    assert!(
        peak <= 4 * KIB,
        "64 MiB claimed, 10 bytes sent: {peak} bytes at peak"
    );
    drop(receiver);

    // Claims far past the limit, each on a fresh receiver since the first error is final.
    for claimed in [1 << 63, u64::MAX, BUDGET + 1] {
        let mut receiver = Receiver::with_limits(small());
        begin(&mut input, 0, claimed);
        let error = feed(&mut receiver, &mut input);
        assert!(
            matches!(error, Some(ProtocolError::MessageTooLarge { .. })),
            "{error:?}"
        );
        input.clear();
    }
    // A ring frame claiming 4 GiB, header only.
    let mut receiver = Receiver::with_limits(small());
    header(&mut input, 0x01, u32::MAX);
    assert!(feed(&mut receiver, &mut input).is_some());
    input.clear();
    let (_, peak) = heap_since(&base);
    assert!(peak <= 4 * KIB, "refused claims: {peak} bytes at peak");

    // As many streams as allowed, together claiming the whole budget, each sent 10 bytes;
    // then a flood of begins past the limit.
    let mut receiver = Receiver::with_limits(small());
    let streams = u64::from(small().max_inbound_streams);
    for id in 0..streams {
        begin(&mut input, id, BUDGET / streams);
        chunk(&mut input, id, 0, 10);
        assert_eq!(feed(&mut receiver, &mut input), None);
    }
    assert_eq!(receiver.metrics().reassembly_bytes_in_use, BUDGET);
    let (held, _) = heap_since(&base);
    assert!(
        held <= OVERHEAD,
        "{streams} streams of 10 bytes hold {held} bytes"
    );
    for id in streams..streams + 1000 {
        begin(&mut input, id, 1);
    }
    let error = feed(&mut receiver, &mut input);
    assert!(
        matches!(error, Some(ProtocolError::TooManyStreams { limit: 64 })),
        "{error:?}"
    );
    input.clear();
    drop(receiver);

    // Four streams that really fill the budget, interleaved chunk by chunk, each short of its
    // last byte, and then one more begin: the budget is the ceiling, whatever else happens.
    let mut receiver = Receiver::with_limits(small());
    let total = BUDGET / 4;
    let piece = DATA.len() as u64;
    let mut offset = 0;
    while offset < total - 1 {
        let len = piece.min(total - 1 - offset) as usize;
        for id in 0..4 {
            if offset == 0 {
                begin(&mut input, id, total);
            }
            chunk(&mut input, id, offset, len);
            assert_eq!(feed(&mut receiver, &mut input), None);
        }
        offset += len as u64;
    }
    begin(&mut input, 4, 1);
    let error = feed(&mut receiver, &mut input);
    assert!(
        matches!(
            error,
            Some(ProtocolError::ReassemblyBudgetExceeded { requested: 1, .. })
        ),
        "{error:?}"
    );
    let (held, peak) = heap_since(&base);
    // What is left is the emptied stream table, which keeps its few slots.
    assert!(
        held <= 4 * KIB,
        "a failed receiver frees its partial messages: {held} held"
    );
    assert!(
        peak <= BUDGET + OVERHEAD,
        "peak {peak} bytes, budget {BUDGET} + overhead {OVERHEAD}"
    );
    eprintln!("peak heap over the budget-filling run: {peak} bytes (budget {BUDGET})");
}
