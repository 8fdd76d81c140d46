//! Latency, head-of-line blocking, sender memory and routing parity, each measured side by
//! side with what it is compared to, in one run.
//!
//! Parts, in the order they run (the first because the allocator's high-water mark cannot be
//! reset, so its peak is only meaningful before anything else has allocated more):
//!
//! - `memory`: the heap of a sender whose peer stopped reading, against the bound its
//!   configuration promises.
//! - `ask`: the round trip of a 64 B ask over loopback TCP, against a raw tokio ping-pong.
//! - `head-of-line`: the one-way latency of 64 B tells, on an idle connection and while a
//!   64 MiB tell streams on the same connection.
//! - `parity`: in-memory throughput of a mixed workload routed by ringwire's derived threshold,
//!   against a router with a fixed constant threshold.
//!
//! Each comparison interleaves its contenders in rounds, so that noise from other work on the
//! machine falls on both. `cargo bench --bench latency` runs every part; a part's name as the
//! only argument (`cargo bench --bench latency -- ask`) runs that part alone. `docs/BENCHMARKS.md`
//! says what each part measures and how to read its table.

use std::alloc::System;
use std::error::Error;
use std::process::ExitCode;

use cap::Cap;

mod ask;
mod head_of_line;
mod memory;
mod parity;
mod stats;

/// Counts the bytes in use on the heap, current and peak, for the `memory` part. Its cost, two
/// atomic operations per allocation, falls on every contender of the other parts alike.
#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// What every part returns: a failure stops the run with its text.
type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// One part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Memory,
    Ask,
    HeadOfLine,
    Parity,
}

impl Part {
    /// Every part, in the order they run.
    const ALL: [Self; 4] = [Self::Memory, Self::Ask, Self::HeadOfLine, Self::Parity];

    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Ask => "ask",
            Self::HeadOfLine => "head-of-line",
            Self::Parity => "parity",
        }
    }

    fn run(self) -> Result<()> {
        match self {
            Self::Memory => memory::run(),
            Self::Ask => ask::run(),
            Self::HeadOfLine => head_of_line::run(),
            Self::Parity => parity::run(),
        }
    }
}

fn main() -> ExitCode {
    let mut chosen = None;
    // `cargo bench` passes `--bench`; anything else is the name of one part.
    for arg in std::env::args().skip(1).filter(|arg| arg != "--bench") {
        match Part::ALL.into_iter().find(|part| part.name() == arg) {
            Some(part) if chosen.is_none() => chosen = Some(part),
            _ => {
                let names: Vec<_> = Part::ALL.iter().map(|part| part.name()).collect();
                eprintln!(
                    "usage: cargo bench --bench latency [-- PART]\n\
                     PART is one of: {}; without it, every part runs",
                    names.join(", ")
                );
                return ExitCode::FAILURE;
            }
        }
    }

    let parts = match chosen {
        Some(part) => vec![part],
        None => Part::ALL.to_vec(),
    };
    for part in parts {
        println!("\n==== {} ====", part.name());
        if let Err(error) = part.run() {
            eprintln!("{}: {error}", part.name());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// The runtime every networked part uses: tokio's multi-threaded scheduler on two workers,
/// as a server or client on this machine's two cores would run.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
