//! `weir udf replay`: a candidate version run next to a stage's running one
//! over the input the stage really saw (its input stream's stored entries),
//! both starting from the stage's state at one position (its latest
//! checkpoint, or later), and the rows they write compared. The running
//! side follows the stage's patch timeline, as the job did; the candidate
//! takes over the state as a deploy would (with its `migrate`). Nothing of
//! the job changes.

use std::collections::VecDeque;

use super::*;
use crate::plan::Recovery;
use crate::stage::row_json;
use crate::vertex::Operator as VertexOperator;

/// How many differing rows a report shows.
const SAMPLES: usize = 5;

/// Input entries read at once.
const CHUNK: usize = 256;

/// One input of a replayed stage: its stream, where the kept state
/// stands, and the seqs replayed.
#[derive(Clone)]
struct ReplayRange {
    input: String,
    stream: u64,
    checkpoint: u64,
    from: u64,
    to: u64,
}

/// The output rows of the two sides, compared in order as they come.
#[derive(Default)]
struct Comparison {
    running: VecDeque<String>,
    candidate: VecDeque<String>,
    compared: u64,
}

impl Comparison {
    fn push(&mut self, side: usize, batch: &arrow_array::RecordBatch) {
        let lines = row_json(batch);
        let queue = if side == 0 {
            &mut self.running
        } else {
            &mut self.candidate
        };
        queue.extend(lines.lines().map(str::to_string));
    }

    /// Compares the rows both sides have written so far.
    fn settle(&mut self, report: &mut ReplayReport) {
        while let (Some(a), Some(b)) = (self.running.front(), self.candidate.front()) {
            if a != b {
                report.differ += 1;
                if report.samples.len() < SAMPLES {
                    report
                        .samples
                        .push((self.compared, Some(a.clone()), Some(b.clone())));
                }
            }
            self.running.pop_front();
            self.candidate.pop_front();
            self.compared += 1;
        }
    }

    /// The rows only one side wrote.
    fn finish(mut self, report: &mut ReplayReport) {
        self.settle(report);
        let rest = self.running.len().max(self.candidate.len());
        for i in 0..rest {
            report.differ += 1;
            if report.samples.len() < SAMPLES {
                report.samples.push((
                    self.compared + i as u64,
                    self.running.get(i).cloned(),
                    self.candidate.get(i).cloned(),
                ));
            }
        }
    }
}

impl Jobs {
    /// Replays stage `stage` of job `job` with the component `bytes` (named
    /// `origin`) next to the version that ran, over input seqs `from..to`
    /// (default: from the stage's latest checkpoint to what its input holds).
    pub fn replay(
        &self,
        job: &str,
        stage: &str,
        origin: &str,
        bytes: Vec<u8>,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<ReplayReport> {
        let at = format!("replay of job `{job}` stage `{stage}`");
        let module = self
            .inner
            .runtime
            .load(origin, &bytes)
            .with_context(|| at.clone())?;
        let (record, spec, udf) = self.udf_stage(job, stage)?;
        let streams = &self.inner.streams;
        let key = stage_key(&record, stage);
        // The checkpoint is read before the inputs' ends: a running stage
        // checkpoints only what its inputs already hold, so the ends read
        // after it are at or past it.
        let (snapshot, state) = match spec.recovery {
            Recovery::Checkpoint { .. } => self.checkpoint_of(&key)?,
            // Replay recovery keeps no state: the stage rebuilds it from the
            // input its oldest kept marker names, and so does a replay.
            Recovery::Replay { .. } => (stored(streams, &key)?, KeyedState::new()),
        };
        let mut inputs = Vec::new();
        for name in &spec.inputs {
            let info = streams.info(&record.stream(name))?;
            let (next, _, low) = streams.positions(info.id).unwrap_or_default();
            inputs.push((name.as_str(), info, next, low));
        }
        let input_schema = event_schema(&inputs[0].1.fields());
        let timeline = self.timeline(job, stage)?;
        let version = match snapshot.as_ref().and_then(|s| s.module.as_deref()) {
            None => timeline
                .versions()
                .first()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            Some(short) => timeline
                .versions()
                .into_iter()
                .find(|v| v.starts_with(short))
                .with_context(|| {
                    format!("{at}: the checkpoint's module {short} is not in the stage's timeline")
                })?
                .to_string(),
        };
        // Per input: where the kept state stands, and where the replay
        // starts and ends.
        let mut ranges = Vec::new();
        for (i, (name, info, next, low)) in inputs.iter().enumerate() {
            let checkpoint = snapshot.as_ref().map_or(*low, |s| s.inputs[i]);
            ranges.push(ReplayRange {
                input: name.to_string(),
                stream: info.id,
                checkpoint,
                from: checkpoint,
                to: *next,
            });
        }
        if inputs.len() > 1 && (from.is_some() || to.is_some()) {
            bail!(
                Patch,
                "{at}: `--from` and `--to` are seqs of one input, and the stage merges {} ({}); a replay of it runs from its latest checkpoint to what each input holds",
                inputs.len(),
                spec.inputs.join(", ")
            );
        }
        if let [range] = ranges.as_mut_slice() {
            let (checkpoint, next) = (range.checkpoint, range.to);
            let from = from.unwrap_or(checkpoint);
            let to = to.unwrap_or(next);
            if from < checkpoint {
                bail!(
                    Patch,
                    "{at}: the stage's state is kept as of input seq {checkpoint} (its latest checkpoint), so a replay starts there or later, not at {from}"
                );
            }
            if to > next || from > to {
                bail!(
                    Patch,
                    "{at}: input seqs {from}..{to} are not a range of what the input `{}` holds ({checkpoint}..{next})",
                    spec.inputs[0]
                );
            }
            (range.from, range.to) = (from, to);
        }
        let resume = match snapshot {
            Some(s) => vertex::Resume::Snapshot(Box::new(s), state),
            None => vertex::Resume::Fresh(ranges.iter().map(|r| r.checkpoint).collect()),
        };
        let mut load = self.stage_loader(stage, &udf, &input_schema);
        let first = load(&version).with_context(|| at.clone())?;
        let mut running = Vertex::load(
            stage,
            VertexOperator::Udf(Box::new(first)),
            input_schema.clone(),
            ranges.len(),
            spec.recovery,
            resume,
        )?
        .with_patching(timeline.clone(), load)?;
        // The running side alone up to `from`: the state the candidate starts from.
        let before: Vec<ReplayRange> = ranges
            .iter()
            .map(|r| ReplayRange {
                from: r.checkpoint,
                to: r.from,
                ..r.clone()
            })
            .collect();
        self.feed(&before, &mut [&mut running], &mut |_, _| {})?;
        let (mut fork, state) = running
            .fork_point()
            .with_context(|| format!("{at}: the stage runs no UDF"))?;
        let running_module = running
            .udf_module()
            .with_context(|| format!("{at}: the stage runs no UDF"))?
            .version
            .clone();
        let mut candidate = crate::wasm::stage_with_module(
            &self.inner.runtime,
            stage,
            &udf,
            module.clone(),
            input_schema.clone(),
        )
        .with_context(|| at.clone())?;
        let mut filters = Vec::new();
        for text in running.filter_texts() {
            filters.push(crate::filter::Filter::parse(&text, &input_schema)?);
        }
        candidate.set_filters(filters);
        candidate.restore(fork.stage.take().unwrap_or_default(), state);
        candidate
            .migrate(&running_module)
            .with_context(|| at.clone())?;
        fork.module = None;
        let mut candidate = Vertex::load(
            stage,
            VertexOperator::Udf(Box::new(candidate)),
            input_schema,
            ranges.len(),
            spec.recovery,
            vertex::Resume::Snapshot(Box::new(fork), KeyedState::new()),
        )?;
        let mut report = ReplayReport {
            job: job.to_string(),
            stage: stage.to_string(),
            running: running_module.hex().to_string(),
            candidate: module.version.hex().to_string(),
            from: ranges[0].from,
            to: ranges[0].to,
            checkpoint: ranges[0].checkpoint,
            inputs: ranges
                .iter()
                .map(|r| (r.input.clone(), r.checkpoint, r.from, r.to))
                .collect(),
            ..ReplayReport::default()
        };
        let mut comparison = Comparison::default();
        let (rows, ctis) = self.feed(
            &ranges,
            &mut [&mut running, &mut candidate],
            &mut |side, fx| {
                for (_, entry) in &fx.output {
                    if let Entry::Batch { batch, .. } = entry {
                        comparison.push(side, batch);
                        if side == 0 {
                            report.running_rows += batch.num_rows() as u64;
                        } else {
                            report.candidate_rows += batch.num_rows() as u64;
                        }
                    }
                }
                for (_, entry) in &fx.dead {
                    if let Entry::Batch { batch, .. } = entry {
                        let n = batch.num_rows() as u64;
                        if side == 0 {
                            report.dead.0 += n;
                        } else {
                            report.dead.1 += n;
                        }
                    }
                }
                // Compared as they come: memory is bounded by how far the
                // two sides' outputs drift apart.
                comparison.settle(&mut report);
            },
        )?;
        (report.rows, report.ctis) = (rows, ctis);
        comparison.finish(&mut report);
        Ok(report)
    }

    /// Feeds each input's seqs `from..to` (a chunk of each in turn; the
    /// vertex merges them by CTI, so the order between inputs does not
    /// change what it writes) to every vertex of `sides`, handing each
    /// one's effects to `seen` with its index; returns the rows and CTIs
    /// fed.
    fn feed(
        &self,
        ranges: &[ReplayRange],
        sides: &mut [&mut Vertex],
        seen: &mut dyn FnMut(usize, &Effects),
    ) -> Result<(u64, u64)> {
        let (mut rows, mut ctis) = (0u64, 0u64);
        let mut at: Vec<u64> = ranges.iter().map(|r| r.from).collect();
        while ranges.iter().zip(&at).any(|(r, seq)| *seq < r.to) {
            for (input, range) in ranges.iter().enumerate() {
                let seq = at[input];
                if seq >= range.to {
                    continue;
                }
                let n = ((range.to - seq) as usize).min(CHUNK);
                let entries = self.inner.streams.read_written(range.stream, seq, n)?;
                if entries.is_empty() {
                    bail!(
                        Patch,
                        "seq {seq} of input `{}` is no longer stored",
                        range.input
                    );
                }
                for (s, bytes) in entries {
                    if s >= range.to {
                        break;
                    }
                    let entry = Entry::decode(&bytes).map_err(NodeError::encoding)?;
                    match &entry {
                        Entry::Batch { batch, .. } => rows += batch.num_rows() as u64,
                        Entry::Cti(_) => ctis += 1,
                    }
                    for (i, side) in sides.iter_mut().enumerate() {
                        let fx = side.on_entry(input, s, entry.clone())?;
                        seen(i, &fx);
                    }
                    at[input] = s + 1;
                }
            }
        }
        Ok((rows, ctis))
    }

    /// The stage's latest checkpoint and the keyed state it goes with, read
    /// until both are of one commit.
    fn checkpoint_of(&self, key: &str) -> Result<(Option<VertexSnapshot>, KeyedState)> {
        for _ in 0..16 {
            let before: Option<VertexSnapshot> = stored(&self.inner.streams, key)?;
            let state = load_state(&self.inner.streams, key)?;
            let after: Option<VertexSnapshot> = stored(&self.inner.streams, key)?;
            if before.as_ref().map(|s| s.id) == after.as_ref().map(|s| s.id) {
                return Ok((after, state));
            }
        }
        bail!(
            Patch,
            "the stage checkpoints faster than its state can be read; try again"
        )
    }
}
