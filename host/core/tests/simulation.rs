//! A deterministic simulation of a job's vertices (FoundationDB-style): the
//! core's rVertices run over a simulated store on a schedule drawn from a
//! seed, crash at arbitrary points (what was not durable is lost: every write
//! goes through one ordered log, and a crash keeps a prefix of it), restart
//! from their latest durable snapshots, and must write exactly what an
//! uninterrupted run writes, at the same seqs. A failure prints its seed.
//!
//! `WEIR_SIM_SEEDS` sets how many seeds run (default 64); `WEIR_SIM_SEED`
//! runs one.

use std::time::Instant;

use weir_core::entry::Entry;

mod sim;

use sim::*;

#[test]
fn crashes_at_any_point_leave_the_output_of_an_uninterrupted_run() {
    let seeds = seeds();
    let started = Instant::now();
    let mut total_crashes = 0;
    for &seed in &seeds {
        let inputs = inputs_of(seed);
        let (expected, _) = run(&inputs, 0, false)
            .unwrap_or_else(|e| panic!("seed {seed}: the uninterrupted run failed: {e}"));
        assert!(
            !expected[RESULT].is_empty(),
            "seed {seed}: the job writes a result"
        );
        let window_rows: usize = expected[WINDOWS]
            .values()
            .map(|b| match Entry::decode(b) {
                Ok(Entry::Batch { batch, .. }) => batch.num_rows(),
                _ => 0,
            })
            .sum();
        assert!(window_rows > 0, "seed {seed}: the timers emit windows");
        let (got, crashes) =
            run(&inputs, seed, true).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        total_crashes += crashes;
        for (s, (a, b)) in expected.iter().zip(&got).enumerate() {
            assert!(
                a == b,
                "seed {seed} (rerun with WEIR_SIM_SEED={seed}): stream {s} differs from the uninterrupted run after {crashes} crashes: {} entries against {}",
                a.len(),
                b.len()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} seeds, {total_crashes} crashes in {secs:.2} s ({:.0} crashes/s)",
        seeds.len(),
        total_crashes as f64 / secs.max(1e-9)
    );
    assert!(total_crashes > 0, "the schedule crashes");
}
