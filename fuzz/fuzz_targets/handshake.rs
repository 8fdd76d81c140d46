//! Fuzz target: arbitrary bytes as the peer's first bytes on a connection.
//!
//! `Hello::decode` sees every prefix of the input in turn: it waits (`Ok(None)`) until it
//! has seen enough, then either fails for good or decodes the same `HELLO` from every longer
//! prefix; a `HELLO` of the base length (body of 40 bytes) encodes back to the same 48 bytes but
//! for the feature bits this version ignores.
//! Then a `Connection` in its handshaking state takes the same bytes, split arbitrarily,
//! through `handle_input`: no panic, and it connects exactly when the `HELLO` decodes and
//! negotiates.

#![no_main]

use std::time::Instant;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringwire_core::{
    ConnectionConfig, ConnectionState, Event, FRAME_HEADER_LEN, HELLO_FRAME_LEN, Hello,
};

/// The largest `HELLO` a receiver accepts: the header and a body of 1024 bytes.
const MAX_HELLO_LEN: usize = FRAME_HEADER_LEN + 1024;

fuzz_target!(|input: &[u8]| {
    let [flags, seed, wire @ ..] = input else {
        return;
    };
    let decoded = check_prefixes(wire);
    check_connection(wire, *flags, *seed, decoded);
});

/// Decodes every prefix of `wire` and returns what the whole of it decodes to.
fn check_prefixes(wire: &[u8]) -> Option<Hello> {
    let mut failed = false;
    let mut done: Option<(Hello, usize)> = None;
    for end in 0..=wire.len().min(MAX_HELLO_LEN + 8) {
        let result = Hello::decode(&wire[..end]);
        match (&result, failed, done) {
            (Err(_), _, None) => failed = true,
            (Ok(None), false, None) => {}
            (Ok(Some(found)), false, None) => done = Some(*found),
            (Ok(Some(found)), false, Some(first)) => assert_eq!(*found, first),
            _ => panic!("prefix of {end} bytes: {result:?} after failed={failed}, done={done:?}"),
        }
    }
    let (hello, len) = done?;
    assert!(len <= MAX_HELLO_LEN && len <= wire.len());
    if len == HELLO_FRAME_LEN {
        // Feature bits this version does not know are ignored, so they do not come back.
        let mut expected = [0u8; HELLO_FRAME_LEN];
        expected.copy_from_slice(&wire[..HELLO_FRAME_LEN]);
        expected[44] &= 1;
        expected[45..48].fill(0);
        assert_eq!(hello.encode(), expected, "{hello:?} encodes to other bytes");
    }
    Some(hello)
}

/// Feeds `wire` to a connection in the handshaking state, in pieces drawn from `seed`.
fn check_connection(wire: &[u8], flags: u8, seed: u8, decoded: Option<Hello>) {
    let config = ConnectionConfig::default();
    let ours = Hello::new(config.receive_limits(), flags & 1 != 0);
    let mut connection = ringwire_core::Connection::new(config, flags & 1 != 0);
    let now = Instant::now();
    let mut input = BytesMut::new();
    let mut rest = wire;
    let mut state = u32::from(seed) | 0x100;
    let mut failed = false;
    while !rest.is_empty() && !failed {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let take = ((state >> 16) as usize % 64 + 1).min(rest.len());
        input.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        failed = connection.handle_input(&mut input, now).is_err();

        // Write some output now and then, as a driver would.
        if flags & 2 != 0 {
            let mut out = Vec::new();
            connection.transmit_into(&mut out, (state >> 8) as usize % 100);
        }
    }
    if failed {
        assert_eq!(connection.state(), ConnectionState::Closed);
    }

    let connected = std::iter::from_fn(|| connection.poll_event())
        .any(|event| matches!(event, Event::Connected(_)));
    let agrees = decoded.is_some_and(|peer| ours.negotiate(&peer).is_ok());
    assert_eq!(
        connected, agrees,
        "connected {connected}, hello {decoded:?}"
    );
}
