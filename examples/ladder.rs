//! Sends the size ladder through a `Sender` and a `Receiver` in memory, with 256 KiB and
//! 1 MiB buffer configs, and prints the route each message took and whether it arrived
//! intact. The loopback TCP demo over every runtime replaces this once the adapters land.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ringwire::{BufferConfig, ConnectionConfig, Envelope, Lane, Outgoing, Receiver, Sender};

const KIB: usize = 1024;
const LADDER_KIB: [usize; 10] = [1, 10, 100, 122, 250, 300, 500, 1024, 2048, 5120];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for ring_size in [256 * KIB, 1024 * KIB] {
        let buffer = BufferConfig::new(ring_size)?;
        let config = ConnectionConfig::builder()
            .tell_buffer_config(buffer)
            .build()?;
        let mut sender = Sender::new(&config);
        let mut receiver = Receiver::new(&config);
        println!(
            "\nring buffer {} KiB, streaming threshold {} bytes",
            ring_size / KIB,
            sender.streaming_threshold(Lane::Tell)
        );
        println!(
            "{:>9}  {:>6}  {:>9}  {:>10}",
            "size", "route", "delivered", "time"
        );

        for (key, size_kib) in LADDER_KIB.into_iter().enumerate() {
            let payload: Bytes = (0..size_kib * KIB).map(|i| (i % 251) as u8).collect();
            let started = Instant::now();
            let route = sender.send(Outgoing::new(Envelope::tell(key as u64), payload.clone()))?;
            let mut input = BytesMut::new();
            let mut wire = Vec::new();
            let mut delivered = None;
            while sender.transmit_into(&mut wire, usize::MAX) > 0 {
                input.extend_from_slice(&wire);
                wire.clear();
                while let Some(message) = receiver.decode(&mut input)? {
                    delivered = Some(message);
                }
            }
            let elapsed = started.elapsed();
            let intact = delivered.is_some_and(|m| m.payload == payload && m.route == route);
            println!(
                "{:>6} KiB  {:>6}  {:>9}  {:>8.2?}",
                size_kib,
                format!("{route:?}").to_lowercase(),
                if intact { "yes" } else { "NO" },
                elapsed
            );
            if !intact {
                return Err(format!("{size_kib} KiB message did not arrive intact").into());
            }
        }
        let sent = sender.metrics();
        let received = receiver.metrics();
        println!(
            "sender: {} ring, {} streamed, {} fallbacks, {} refused; receiver: {} ring, {} \
             streamed, {} bytes still reserved",
            sent.ring_sends,
            sent.streaming_sends,
            sent.streaming_fallbacks,
            sent.backpressure_refusals,
            received.ring_messages,
            received.stream_messages,
            received.reassembly_bytes_in_use
        );
    }
    Ok(())
}
