//! The generator alone: events per second and per CPU-second for each
//! stream, generating batches of 4,096 events' worth of event numbers on
//! one thread (the rows of other kinds are skipped without drawing).
//!
//! `cargo bench -p weir-nexmark --bench generate` (size: WEIR_BENCH_EVENTS,
//! default 10,000,000). Results go to docs/benchmarks.md.

use weir_nexmark::{Config, Generator, Kind};

fn main() {
    let events: u64 = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let g = Generator::new(Config {
        events,
        ..Config::default()
    })
    .expect("config");
    println!("{events} events, batches of 4,096 event numbers, one thread");
    println!(
        "{:<8} {:>10} {:>10} {:>16} {:>14}",
        "stream", "rows", "seconds", "events/s", "MB/s (Arrow)"
    );
    let mut total = 0.0;
    for kind in [Kind::Person, Kind::Auction, Kind::Bid] {
        let started = std::time::Instant::now();
        let (mut rows, mut bytes) = (0, 0);
        let mut from = 0;
        while from < events {
            let b = g.batch(kind, from..from + 4096);
            rows += b.num_rows();
            bytes += b.get_array_memory_size();
            from += 4096;
        }
        let secs = started.elapsed().as_secs_f64();
        total += secs;
        println!(
            "{:<8} {rows:>10} {secs:>10.3} {:>16.0} {:>14.0}",
            format!("{kind:?}"),
            events as f64 / secs,
            bytes as f64 / secs / 1e6
        );
    }
    println!(
        "all three streams: {:.0} events/s (each event generated once, in its stream)",
        events as f64 / total
    );
}
