//! Reading chunk data straight into a stream's buffer (`Receiver::chunk_space`): the message
//! is the same as through the input buffer, CRC32C still catches corruption, the space
//! never reaches past its chunk, and a space given up leaves the receiver as it was.

mod common;

use bytes::BytesMut;
use common::{handshake_pair, payload, wire_of};
use ringwire_core::{
    BufferConfig, ConnectionConfig, Envelope, Incoming, Outgoing, ProtocolError, Receiver, Route,
};

fn config() -> ConnectionConfig {
    ConnectionConfig::builder()
        .tell_buffer_config(BufferConfig::new(256 * 1024).unwrap())
        .build()
        .unwrap()
}

/// Reads `wire` the way an adapter does: straight into the chunk's space whenever the
/// receiver offers one (at most `direct` bytes a read), otherwise `small` bytes at a time into
/// the input buffer. Returns the messages and how many bytes went each way.
fn read_split(
    receiver: &mut Receiver,
    wire: &[u8],
    direct: usize,
    small: usize,
) -> Result<(Vec<Incoming>, usize, usize), ProtocolError> {
    let mut input = BytesMut::new();
    let mut messages = Vec::new();
    let (mut at, mut direct_bytes, mut input_bytes) = (0, 0, 0);
    loop {
        while let Some(message) = receiver.decode(&mut input)? {
            messages.push(message);
        }
        if at == wire.len() {
            assert!(input.is_empty(), "bytes left over after the last frame");
            return Ok((messages, direct_bytes, input_bytes));
        }
        if let Some(mut space) = receiver.chunk_space(&input, direct) {
            assert!(space.len() <= direct);
            let read = space.len().min(wire.len() - at);
            space[..read].copy_from_slice(&wire[at..at + read]);
            space.fill(read);
            at += read;
            direct_bytes += read;
        } else {
            let read = small.min(wire.len() - at);
            input.extend_from_slice(&wire[at..at + read]);
            at += read;
            input_bytes += read;
        }
    }
}

#[test]
fn a_stream_read_into_its_own_buffer_arrives_whole_with_and_without_trailers() {
    let config = config();
    for crc32c in [false, true] {
        for (direct, small) in [(usize::MAX, 64), (1000, 7), (1, 1), (65_536, 4096)] {
            let (mut sender, mut receiver) = handshake_pair(&config, crc32c);
            let len = 5 * config.chunk_size() + 123;
            let sent = payload(len, 9);
            let route = sender
                .send(Outgoing::new(Envelope::tell(4), sent.clone()))
                .unwrap();
            assert_eq!(route, Route::Stream);
            let small_message = payload(300, 2);
            sender
                .send(Outgoing::new(Envelope::tell(5), small_message.clone()))
                .unwrap();
            let wire = wire_of(&mut sender);

            let (messages, direct_bytes, input_bytes) =
                read_split(&mut receiver, &wire, direct, small).unwrap();
            let case = format!("crc32c {crc32c}, direct {direct}, small {small}");
            assert_eq!(messages.len(), 2, "{case}");
            let stream = messages.iter().find(|m| m.envelope.key == 4).unwrap();
            assert_eq!(stream.payload, sent, "{case}");
            assert_eq!(stream.route, Route::Stream, "{case}");
            let ring = messages.iter().find(|m| m.envelope.key == 5).unwrap();
            assert_eq!(ring.payload, small_message, "{case}");
            assert_eq!(direct_bytes + input_bytes, wire.len(), "{case}");
            // With small reads into the input buffer, most of the data goes straight in.
            if small < 4096 {
                assert!(direct_bytes > len * 9 / 10, "{case}: {direct_bytes} direct");
            }
            assert_eq!(receiver.metrics().reassembly_bytes_in_use, 0, "{case}");
        }
    }
}

#[test]
fn no_space_is_offered_outside_chunk_data_or_while_input_is_waiting() {
    let config = config();
    let (mut sender, mut receiver) = handshake_pair(&config, false);
    sender
        .send(Outgoing::new(
            Envelope::tell(1),
            payload(5 * config.chunk_size(), 1),
        ))
        .unwrap();
    let wire = wire_of(&mut sender);
    let mut input = BytesMut::new();
    assert!(
        receiver.chunk_space(&input, usize::MAX).is_none(),
        "before any frame"
    );

    // The begin frame, the first chunk's header and one data byte.
    let head = ringwire_core::BEGIN_FRAME_LEN + ringwire_core::CHUNK_HEADER_LEN;
    input.extend_from_slice(&wire[..head + 1]);
    assert!(receiver.decode(&mut input).unwrap().is_none());
    assert!(input.is_empty(), "the data byte went into the stream");
    let space = receiver.chunk_space(&input, usize::MAX).unwrap();
    assert_eq!(
        space.len(),
        config.chunk_size() - 1,
        "the rest of this chunk only"
    );
    drop(space);

    input.extend_from_slice(&wire[head + 1..head + 2]);
    assert!(
        receiver.chunk_space(&input, usize::MAX).is_none(),
        "input waits"
    );
    assert!(
        receiver.chunk_space(&BytesMut::new(), 0).is_none(),
        "no room asked"
    );
}

#[test]
fn a_space_dropped_unfilled_or_part_filled_leaves_no_trace() {
    let config = config();
    let (mut sender, mut receiver) = handshake_pair(&config, true);
    let sent = payload(5 * config.chunk_size() + 1, 4);
    let route = sender
        .send(Outgoing::new(Envelope::tell(1), sent.clone()))
        .unwrap();
    assert_eq!(route, Route::Stream);
    let wire = wire_of(&mut sender);

    let mut input = BytesMut::new();
    let mut at = 0;
    let mut messages = Vec::new();
    let mut round = 0;
    while at < wire.len() {
        round += 1;
        match receiver.chunk_space(&input, usize::MAX) {
            // Every third offer is given up: filled with garbage and dropped.
            Some(space) if round % 3 == 0 => space.fill(0),
            Some(mut space) if round % 3 == 1 => {
                space.iter_mut().for_each(|byte| *byte = 0xee);
                drop(space);
            }
            Some(mut space) => {
                // Part of the room, as a short read gives.
                let read = (space.len() / 2).max(1).min(wire.len() - at);
                space[..read].copy_from_slice(&wire[at..at + read]);
                space.fill(read);
                at += read;
            }
            None => {
                let read = 40.min(wire.len() - at);
                input.extend_from_slice(&wire[at..at + read]);
                at += read;
            }
        }
        while let Some(message) = receiver.decode(&mut input).unwrap() {
            messages.push(message);
        }
    }
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].payload, sent);
}

#[test]
fn corruption_read_into_the_space_is_a_checksum_error() {
    let config = config();
    let (mut sender, _) = handshake_pair(&config, true);
    sender
        .send(Outgoing::new(
            Envelope::tell(1),
            payload(5 * config.chunk_size(), 6),
        ))
        .unwrap();
    let mut wire = wire_of(&mut sender);
    // A byte in the middle of the first chunk's data.
    let at = ringwire_core::BEGIN_FRAME_LEN
        + ringwire_core::CRC_LEN
        + ringwire_core::CHUNK_HEADER_LEN
        + config.chunk_size() / 2;
    wire[at] ^= 1;

    let (_, mut receiver) = handshake_pair(&config, true);
    let outcome = read_split(&mut receiver, &wire, usize::MAX, 64);
    assert!(
        matches!(
            outcome,
            Err(ProtocolError::ChecksumMismatch { code: 0x03, .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(receiver.metrics().reassembly_bytes_in_use, 0);
    assert!(receiver.chunk_space(&BytesMut::new(), usize::MAX).is_none());
}
