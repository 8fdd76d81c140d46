//! The queue between the driver and the inbox's reader: deliveries go in by the batch, under
//! one lock and with one wake-up, and come out one at a time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use event_listener::Event as Notify;

use crate::connection::Delivery;

/// Deliveries the driver has handed over and the reader has not taken yet, counted in
/// payload bytes against the inbox bound.
#[derive(Debug)]
pub(crate) struct InboxQueue {
    items: Mutex<Items>,
    /// Deliveries the reader has taken from `items` in one go, to hand out one at a time
    /// without contending with the driver for `items`. Always locked before `items`.
    taken: Mutex<VecDeque<Delivery>>,
    /// Notified when deliveries arrive and when the queue closes.
    ready: Notify,
    /// Payload bytes in `items`.
    bytes: AtomicUsize,
    bound: usize,
}

#[derive(Debug, Default)]
struct Items {
    queue: VecDeque<Delivery>,
    /// No more deliveries will come: the connection is over.
    closed: bool,
    /// The reader is gone: deliveries are dropped on arrival.
    discarding: bool,
}

impl InboxQueue {
    /// An empty queue whose reading side pauses above `bound` payload bytes.
    pub(crate) fn new(bound: usize) -> Self {
        Self {
            items: Mutex::new(Items::default()),
            taken: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            bytes: AtomicUsize::new(0),
            bound,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Items> {
        lock(&self.items)
    }

    /// Whether more payload bytes wait than the bound allows: the driver stops reading.
    pub(crate) fn over_bound(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) > self.bound
    }

    /// Hands over every delivery in `batch`, in order, and empties it. With no reader left
    /// they are dropped, after the lock is released (an unanswered request refuses itself).
    pub(crate) fn push_all(&self, batch: &mut Vec<Delivery>) {
        if batch.is_empty() {
            return;
        }
        let mut items = self.lock();
        if items.discarding {
            drop(items);
            tracing::debug!(count = batch.len(), "inbox dropped; deliveries discarded");
            batch.clear();
            return;
        }
        let bytes: usize = batch.iter().map(Delivery::payload_len).sum();
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        items.queue.extend(batch.drain(..));
        drop(items);
        self.ready.notify(usize::MAX);
    }

    /// The next delivery, and whether taking it brought the queue back under its bound from
    /// above it; `None` once the queue is closed and empty. Cancel safe: a delivery is taken
    /// only when this returns it.
    pub(crate) async fn pop(&self) -> Option<(Delivery, bool)> {
        loop {
            if let Some(next) = self.try_pop() {
                return next;
            }
            // Listen before looking again, so that a push in between is not missed.
            let listener = self.ready.listen();
            if let Some(next) = self.try_pop() {
                return next;
            }
            listener.await;
        }
    }

    /// `None` while there is nothing to take yet.
    fn try_pop(&self) -> Option<Option<(Delivery, bool)>> {
        let mut taken = lock(&self.taken);
        if taken.is_empty() {
            let mut items = self.lock();
            if items.queue.is_empty() {
                return items.closed.then_some(None);
            }
            // Take the whole batch; the driver goes on filling the emptied queue.
            std::mem::swap(&mut *taken, &mut items.queue);
        }
        let delivery = taken.pop_front()?;
        drop(taken);
        let before = self
            .bytes
            .fetch_sub(delivery.payload_len(), Ordering::Relaxed);
        Some(Some((delivery, before > self.bound)))
    }

    /// No more deliveries will come; the reader gets what is queued, then `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify(usize::MAX);
    }

    /// The reader is gone: drops what is queued and whatever comes later, so that none of it
    /// counts against the bound (reading would stop, for replies too).
    pub(crate) fn discard(&self) {
        let queued = {
            let mut taken = lock(&self.taken);
            let mut items = self.lock();
            items.discarding = true;
            let mut queued = std::mem::take(&mut *taken);
            queued.append(&mut items.queue);
            queued
        };
        let bytes: usize = queued.iter().map(Delivery::payload_len).sum();
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        drop(queued);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here can panic while a lock is held; carry on rather than fail the inbox.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
