//! An in-memory connection for property tests: a sender and a receiver joined by a buffer,
//! with a ledger of what was sent that every arrival is checked against.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use ringwire_core::{
    Envelope, Incoming, MessageKind, Outgoing, Receiver, Route, SendError, Sender,
};

use crate::common;

/// A sender and a receiver joined in memory, with what has been sent and what has arrived.
pub(crate) struct Link {
    pub(crate) sender: Sender,
    pub(crate) receiver: Receiver,
    pub(crate) input: BytesMut,
    /// Accepted messages in the order they were accepted, with the route each took. A
    /// message's index is also its type hash, so that it can be recognised on arrival.
    pub(crate) sent: Vec<(Outgoing, Route)>,
    arrived: Vec<bool>,
    last_per_key: HashMap<u64, usize>,
}

impl Link {
    pub(crate) fn new(sender: Sender, receiver: Receiver) -> Self {
        Self {
            sender,
            receiver,
            input: BytesMut::new(),
            sent: Vec::new(),
            arrived: Vec::new(),
            last_per_key: HashMap::new(),
        }
    }

    /// Indices of the accepted messages that have not arrived.
    pub(crate) fn missing(&self) -> Vec<usize> {
        (0..self.sent.len())
            .filter(|&index| !self.arrived[index])
            .collect()
    }

    /// Writes at most `max` bytes, checks what arrives and the receiver's limits; returns the
    /// bytes written.
    pub(crate) fn write(&mut self, max: usize) -> Result<usize, TestCaseError> {
        let (written, delivered) =
            common::pump_once(&mut self.sender, &mut self.receiver, &mut self.input, max);
        let limits = *self.receiver.limits();
        prop_assert!(self.receiver.metrics().reassembly_bytes_in_use <= limits.reassembly_budget);
        prop_assert!(self.receiver.open_streams() <= limits.max_inbound_streams as usize);
        for message in delivered {
            self.arrive(message)?;
        }
        Ok(written)
    }

    fn arrive(&mut self, message: Incoming) -> Result<(), TestCaseError> {
        let index = message.envelope.type_hash as usize;
        prop_assert!(
            index < self.sent.len(),
            "message {} was never accepted",
            index
        );
        prop_assert!(!self.arrived[index], "message {} arrived twice", index);
        let (sent, route) = &self.sent[index];
        prop_assert_eq!(message.envelope, sent.envelope);
        prop_assert_eq!(message.route, *route, "route of message {}", index);
        prop_assert_eq!(
            common::first_difference(&message.payload, &sent.payload),
            None,
            "payload of message {}",
            index
        );
        let key = message.envelope.key;
        if let Some(&previous) = self.last_per_key.get(&key) {
            prop_assert!(
                previous < index,
                "message {} of key {} arrived after message {}",
                index,
                key,
                previous
            );
        }
        self.last_per_key.insert(key, index);
        self.arrived[index] = true;
        Ok(())
    }

    /// Sends a message, writing output and trying again for as long as the sender refuses it
    /// as full. Returns how many times it was refused.
    pub(crate) fn send(
        &mut self,
        kind: MessageKind,
        key: u64,
        size: usize,
    ) -> Result<u64, TestCaseError> {
        let index = self.sent.len();
        let envelope = Envelope {
            kind,
            key,
            type_hash: index as u32,
            correlation_id: if kind == MessageKind::Tell {
                0
            } else {
                index as u64 + 1
            },
        };
        let payload: Bytes = common::large_payload(size, index as u64);
        let mut message = Outgoing::new(envelope, payload.clone());
        let mut refusals = 0;
        let route = loop {
            match self.sender.send(message) {
                Ok(route) => break route,
                Err(SendError::Full { message: back }) => {
                    prop_assert!(back.envelope == envelope && back.payload == payload);
                    prop_assert!(self.sender.has_output(), "refused with nothing to write");
                    refusals += 1;
                    prop_assert!(refusals < 10_000, "no progress after {} refusals", refusals);
                    self.write(64 * 1024)?;
                    message = back;
                }
                Err(other) => return Err(TestCaseError::fail(other.to_string())),
            }
        };
        self.sent.push((Outgoing::new(envelope, payload), route));
        self.arrived.push(false);
        Ok(refusals)
    }
}
