//! A Nexmark input on a node: the built-in generator's events written to the
//! source's stream, paced to the wall clock at the input's rate (or as fast
//! as the job takes them), with the next event number as the durable
//! position. Each event is a function of the seed and its number, so a
//! restart from the position writes the same events and the same output.

use std::time::Instant;

use super::threads::halt;
use super::*;
use crate::source::nexmark::Generated;

/// How long a paced generator waits at most before it looks again at what
/// is due and whether it should stop.
const PACE_WAIT: Duration = Duration::from_millis(50);
/// A paced generator's batches per second of its rate.
const STEPS_PER_SECOND: u64 = 100;
/// How long it waits at least: what is due meanwhile goes in one transaction.
const PACE_TICK: Duration = Duration::from_millis(10);

impl Jobs {
    /// Generates a Nexmark input's events from `at` on until every event is
    /// written (`true`) or the vertex is stopped (`false`). Ending the job
    /// ends the input where it stands.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_nexmark(
        &self,
        spec: &SourceSpec,
        batch_size: usize,
        output: u64,
        dead: u64,
        key: &str,
        mut at: FilePosition,
        stop: &AtomicBool,
        status: &Shared,
    ) -> Result<bool> {
        let SourceOrigin::Nexmark { paced, .. } = spec.origin else {
            bail!(Job, "source `{}` is not a Nexmark input", spec.name);
        };
        let mut generated = Generated::of(spec)
            .map_err(|e| err!(Job, "{e}"))?
            .ok_or_else(|| err!(Job, "source `{}` is not a Nexmark input", spec.name))?;
        generated.skip_to(at.line);
        let rate = generated.config().rate.max(1) as u128;
        // At most a batch of rows: a step's events hold fewer rows.
        let step = (rate as u64 / STEPS_PER_SECOND).clamp(1, batch_size.max(1) as u64);
        let schema = event_schema(&spec.fields);
        // When event 0 was due: the position's events were due already.
        let due_from = Instant::now()
            .checked_sub(Duration::from_micros(
                (at.line as u128 * 1_000_000 / rate).min(u64::MAX as u128) as u64,
            ))
            .unwrap_or_else(Instant::now);
        loop {
            if let Some(finished) = halt(at.finished, stop) {
                return Ok(finished);
            }
            if !self.wait_lease(stop) {
                return Ok(false);
            }
            if generated.done() || lock(status).ending {
                let end = Entry::Cti(END).encode().map_err(NodeError::encoding)?;
                at.output += 1;
                at.finished = true;
                self.inner.streams.append_at(
                    vec![(output, at.output - 1, vec![end])],
                    vec![put(key, postcard::to_allocvec(&at)?)],
                )?;
                continue;
            }
            // Paced, a batch holds the events of one step of the input's
            // rate, written once all of them are due: its bounds depend on
            // the event numbers only, so a copy of the vertex resumed from an
            // older position (its backup's, on another member) writes the
            // same entries again.
            let limit = if paced {
                let due = due_from.elapsed().as_micros() * rate / 1_000_000;
                let due = u64::try_from(due).unwrap_or(u64::MAX);
                let boundary = (generated.position() / step + 1) * step;
                if due >= boundary.min(generated.config().events) {
                    boundary
                } else {
                    generated.position()
                }
            } else {
                u64::MAX
            };
            if limit <= generated.position() {
                // The next event is not due yet.
                let wait = (generated.position() as u128 + 1) * 1_000_000 / rate;
                let wait = Duration::from_micros(wait.min(u64::MAX as u128) as u64)
                    .saturating_sub(due_from.elapsed());
                std::thread::sleep(wait.clamp(PACE_TICK, PACE_WAIT));
                continue;
            }
            // One transaction holds about a batch of rows (or what is due).
            let mut chunks = Vec::new();
            if let Some(chunk) = generated.next_before(&schema, batch_size, limit) {
                chunks.push((chunk, generated.position()));
            }
            self.write_chunks(spec, chunks, (output, dead, key), &mut at, status)?;
        }
    }
}
