//! The little a driver needs from an async runtime: a task and a timer.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// A future that completes at a point in time.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What each runtime's layer provides; everything else is shared.
pub trait Runtime: Send + Sync + 'static {
    /// Runs `future` as a task of its own until it completes.
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>);

    /// A future that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Sleep;
}
