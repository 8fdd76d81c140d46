//! Smoke test: mixed sizes through one sender and receiver, byte stream cut in odd pieces.

use bytes::{Bytes, BytesMut};
use ringwire_core::*;

#[test]
fn mixed_sizes_round_trip() {
    let config = ConnectionConfig::builder()
        .tell_buffer_config(BufferConfig::new(256 * 1024).unwrap())
        .build()
        .unwrap();
    let mut s = Sender::new(&config);
    let mut r = Receiver::new(&config);
    let sizes = [
        0usize,
        1,
        100,
        255 * 1024 - 1,
        255 * 1024,
        255 * 1024 + 1,
        300 * 1024,
        5 << 20,
        10,
        0,
    ];
    let mut sent = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let payload: Bytes = (0..n)
            .map(|j| (j * 31 + i) as u8)
            .collect::<Vec<_>>()
            .into();
        let key = (i % 3) as u64;
        let route = s
            .send(Outgoing::new(Envelope::tell(key), payload.clone()))
            .unwrap();
        sent.push((key, payload, route));
    }
    let mut wire = Vec::new();
    let mut input = BytesMut::new();
    let mut got = Vec::new();
    loop {
        wire.clear();
        let n = s.transmit_into(&mut wire, 7777);
        input.extend_from_slice(&wire);
        while let Some(m) = r.decode(&mut input).unwrap() {
            got.push(m);
        }
        if n == 0 {
            break;
        }
    }
    assert_eq!(got.len(), sent.len());
    for key in 0..3u64 {
        let a: Vec<_> = sent
            .iter()
            .filter(|m| m.0 == key)
            .map(|m| m.1.clone())
            .collect();
        let b: Vec<_> = got
            .iter()
            .filter(|m| m.envelope.key == key)
            .map(|m| m.payload.clone())
            .collect();
        assert_eq!(a, b);
    }
    println!(
        "{:?}",
        sent.iter().map(|m| (m.1.len(), m.2)).collect::<Vec<_>>()
    );
    assert_eq!(r.metrics().reassembly_bytes_in_use, 0);
    assert!(!s.has_output());
}
