//! The rVertex core: what one parallel instance of a stage does with the
//! entries of its input rStreams, written sans-IO.
//!
//! A vertex is `load(snapshot)` then `execute()`: the runtime feeds it input
//! entries (`on_entry`) and writes what it returns at the sequence numbers it
//! assigns. Its outputs are a pure function of (snapshot, input entries), so a
//! vertex restarted from a snapshot rewrites exactly the entries it wrote
//! before, which the rStream dedups. Snapshots are taken at CTI boundaries.

use std::collections::VecDeque;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::entry::{END, Entry};
use crate::merge::{Merge, Merged};
use crate::patch::{Change, Patch, Requested, Timeline, now_ms};
use crate::plan::{CtiPolicy, Recovery};
use crate::schema::{ColumnType, Field, event_schema};
use crate::stage::{DeadRow, StageCheckpoint, StageError, UdfStage};
use crate::udf::KeyedState;
use crate::udf::StateChanges;
use temporal::temporal_error;

mod checkpoint;
mod cti;
mod dead;
mod patching;
mod temporal;
mod udf;

pub use cti::CtiGen;
use dead::dead_letters;
pub use dead::{DeadLetter, dead_batch, dead_fields};

/// Why a vertex stopped.
#[derive(Debug, thiserror::Error)]
pub enum VertexError {
    /// The UDF stage failed.
    #[error(transparent)]
    Stage(Box<StageError>),
    /// The UDF trapped and the stage's policy had nowhere to go.
    #[error("vertex `{vertex}`: {message}")]
    Trapped {
        /// The vertex.
        vertex: String,
        /// What trapped, where, and why it could not be handled.
        message: String,
    },
    /// A timeline recorded by another instance of the vertex does not go
    /// on from this one's, or switches where this one has passed.
    #[error("vertex `{vertex}`: {message}")]
    Diverged {
        /// The vertex.
        vertex: String,
        /// Which switch, and where each instance stands.
        message: String,
    },
    /// The inputs broke the stream contract.
    #[error("vertex `{vertex}`: {message}")]
    Input {
        /// The vertex.
        vertex: String,
        /// What is wrong, with input and seq.
        message: String,
    },
}

/// What a vertex does between its inputs and its output.
pub enum Operator {
    /// Punctuates a source's events with CTIs by a policy; late events are dead letters.
    Source(CtiGen),
    /// Runs a UDF.
    Udf(Box<UdfStage>),
    /// Passes merged events through.
    Union,
    /// A built-in temporal operator (windows, joins, expressions).
    Temporal(Box<dyn crate::temporal::TemporalOp>),
}

/// A snapshot of a vertex: everything needed to resume it exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VertexSnapshot {
    /// Snapshot number, increasing.
    pub id: u64,
    /// Next seq to read, per input.
    pub inputs: Vec<u64>,
    /// Next seq to write on the output stream.
    pub output: u64,
    /// Next seq to write on the dead-letter stream.
    pub dead: u64,
    /// The last CTI written.
    pub cti: Option<i64>,
    /// The end marker was written.
    pub finished: bool,
    /// Module version in use (UDF stages).
    pub module: Option<String>,
    /// Entries of the patch timeline applied (UDF stages).
    pub patches: u64,
    /// CTIs written since the start (drives the checkpoint cadence).
    pub ctis: u64,
    /// The UDF stage's position, counts and keyed state.
    pub stage: Option<StageCheckpoint>,
    /// CTI generation (sources).
    pub source: Option<CtiGen>,
    /// Merge state (several inputs): pending entries encoded, CTIs per input,
    /// release points, last CTI emitted.
    pub merge: Option<MergeState>,
    /// Rows read and written (sources and unions).
    pub rows: (u64, u64),
    /// Keyed-state changes since the previous snapshot (checkpoint recovery
    /// of a UDF stage). Persisted beside the snapshot, atomically with it,
    /// not in it: a checkpoint writes what changed, never the whole state.
    #[serde(skip)]
    pub state: StateChanges,
}

/// A merge's part of a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MergeState {
    /// Per input: pending `(seq, encoded batch)` (bytes serialized as one
    /// run, not value by value).
    pub pending: Vec<Vec<(u64, serde_bytes::ByteBuf)>>,
    /// Per input: the latest CTI.
    pub ctis: Vec<Option<i64>>,
    /// Release points not yet reached.
    pub points: Vec<i64>,
    /// The last CTI the merge emitted.
    pub emitted: Option<i64>,
}

/// What one input entry made the vertex write.
#[derive(Debug, Default)]
pub struct Effects {
    /// Output entries with their seq.
    pub output: Vec<(u64, Entry)>,
    /// Dead-letter entries with their seq.
    pub dead: Vec<(u64, Entry)>,
    /// A snapshot to persist (after the entries above).
    pub snapshot: Option<VertexSnapshot>,
    /// The patch timeline, when this entry appended to it: persist it before
    /// the entries above, since some of them ran on the new version.
    pub timeline: Option<Timeline>,
    /// Requested changes this entry settled, in order: taken into the
    /// timeline (`None`) or refused (why). Persist with the timeline.
    pub settled: Vec<(u64, Option<String>)>,
}

/// Builds the stage at a module version (full SHA-256 hex), for a patch.
pub type StageLoader = Box<dyn FnMut(&str) -> Result<UdfStage, StageError> + Send>;

/// A UDF vertex's hot patching: its timeline, and how to build a version.
struct Patching {
    timeline: Timeline,
    load: StageLoader,
    /// Requests accepted, applied in order at the vertex's next CTI.
    pending: VecDeque<Requested>,
    /// Why the last live request could not be applied.
    refused: Option<String>,
    /// The output and dead-letter seqs below which its streams, or the
    /// copies other members made of them, held entries: no live request
    /// is applied while it writes those again (the run that wrote them had
    /// not taken it there, or the timeline would say so).
    written: (u64, u64),
    /// The timeline index from which a queued request may be found made
    /// already ([`Vertex::supersede`]).
    next_match: usize,
    /// Requests found made already: settled at the next CTI.
    superseded: Vec<u64>,
    /// Set while the host has not said how far the other members' copies
    /// of its output hold it ([`Vertex::copies_hold`]): no live request is
    /// applied until it has.
    gated: bool,
}

impl Patching {
    /// No live request below output seq `output` or dead-letter seq `dead`
    /// (nor below any earlier hold).
    fn hold_below(&mut self, output: u64, dead: u64) {
        self.written = (self.written.0.max(output), self.written.1.max(dead));
    }
}

/// One rVertex.
pub struct Vertex {
    name: String,
    producer: String,
    operator: Operator,
    merge: Option<Merge>,
    schema: SchemaRef,
    recovery: Recovery,
    at: VertexSnapshot,
    /// Replay strategy: positions-only snapshots of the last `window` CTIs.
    markers: VecDeque<VertexSnapshot>,
    patching: Option<Patching>,
    /// Snapshots are taken (else a run that never restores, offline: state
    /// changes are dropped at each checkpoint instead of encoded).
    snapshots: bool,
    /// The latest CTI of its input it has read since it was loaded (not
    /// snapshotted: its progress in event time, for the straggler check).
    read_cti: Option<i64>,
}

impl std::fmt::Debug for Vertex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vertex")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Where a vertex starts.
#[derive(Debug)]
pub enum Resume {
    /// From the start, at these input positions.
    Fresh(Vec<u64>),
    /// From a snapshot and the keyed state persisted with it.
    Snapshot(Box<VertexSnapshot>, KeyedState),
}

impl Vertex {
    /// A vertex named `name` over `inputs` inputs, whose input events have
    /// `input_schema`, started as `resume` says.
    pub fn load(
        name: &str,
        mut operator: Operator,
        input_schema: SchemaRef,
        inputs: usize,
        recovery: Recovery,
        resume: Resume,
    ) -> Result<Vertex, VertexError> {
        let producer = match &operator {
            Operator::Udf(stage) => format!("stage `{name}` module {}", stage.module().version),
            Operator::Source(_) => format!("source `{name}`"),
            Operator::Union => format!("union `{name}`"),
            Operator::Temporal(_) => format!("operator `{name}`"),
        };
        let input_error = |message: String| VertexError::Input {
            vertex: name.to_string(),
            message,
        };
        let (mut at, state) = match resume {
            Resume::Fresh(start) => (
                VertexSnapshot {
                    inputs: start,
                    ..VertexSnapshot::default()
                },
                KeyedState::new(),
            ),
            Resume::Snapshot(snapshot, state) => (*snapshot, state),
        };
        if at.inputs.len() != inputs {
            return Err(input_error(format!(
                "the snapshot has {} input positions but the stage has {inputs} inputs",
                at.inputs.len()
            )));
        }
        match &mut operator {
            Operator::Udf(stage) => {
                let running = stage.module().version.to_string();
                if let Some(recorded) = &at.module
                    && *recorded != running
                {
                    return Err(input_error(format!(
                        "snapshot {} was taken with module {recorded} but the stage now runs {running}",
                        at.id
                    )));
                }
                at.module = Some(running);
                if let Some(checkpoint) = at.stage.take() {
                    stage.restore(checkpoint, state);
                }
            }
            Operator::Source(generator) => {
                // The job file's policy holds; the snapshot gives the progress.
                if let Some(saved) = at.source.take() {
                    *generator = CtiGen {
                        policy: generator.policy,
                        ..saved
                    };
                }
            }
            Operator::Union => {}
            Operator::Temporal(op) => op.restore(&state).map_err(|e| {
                input_error(format!("snapshot {}: the operator's state: {e}", at.id))
            })?,
        }
        // A temporal operator of several inputs (a join) reads them apart.
        let apart = match &operator {
            Operator::Temporal(op) if inputs > 1 => Some(op.input_schemas()),
            _ => None,
        };
        let merge = if inputs > 1 {
            Some(match at.merge.take() {
                None => Merge::new(input_schema.clone(), inputs),
                Some(m) => {
                    let mut pending = Vec::with_capacity(m.pending.len());
                    for list in m.pending {
                        let mut batches = Vec::with_capacity(list.len());
                        for (seq, bytes) in list {
                            match Entry::decode(&bytes).map_err(&input_error)? {
                                Entry::Batch { batch, .. } => batches.push((seq, batch)),
                                Entry::Cti(_) => {
                                    return Err(input_error(
                                        "the snapshot's merge state holds a CTI as a batch".into(),
                                    ));
                                }
                            }
                        }
                        pending.push(batches);
                    }
                    Merge::restore(input_schema.clone(), pending, m.ctis, m.points, m.emitted)
                }
            })
            .map(|m| match apart {
                Some(schemas) => m.apart(schemas),
                None => m,
            })
        } else {
            None
        };
        Ok(Vertex {
            name: name.to_string(),
            producer,
            operator,
            merge,
            schema: input_schema,
            recovery,
            at,
            markers: VecDeque::new(),
            snapshots: true,
            patching: None,
            read_cti: None,
        })
    }

    /// The latest CTI of its input the vertex has read since it was loaded:
    /// how far it has come in event time. The copies of a parallel stage
    /// read the same CTIs, so this compares them whatever their share of
    /// the events (the CTIs they write depend on their operator).
    pub fn read_cti(&self) -> Option<i64> {
        self.read_cti
    }

    /// The vertex's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it is: input positions, output seq and so on.
    pub fn position(&self) -> &VertexSnapshot {
        &self.at
    }

    /// Where a UDF stage stopped when `error` was a failure of its UDF (not
    /// of its inputs): the input position of the batch it failed on, and the
    /// CTIs written. A change recorded there can resume it.
    pub fn stuck_at(&self, error: &VertexError) -> Option<(u64, u64)> {
        match (&self.operator, error) {
            (Operator::Udf(stage), VertexError::Stage(_) | VertexError::Trapped { .. }) => {
                Some((stage.position(), self.at.ctis))
            }
            _ => None,
        }
    }

    /// Counts: rows in, rows out, rows dead-lettered.
    pub fn counts(&self) -> (u64, u64, u64) {
        match &self.operator {
            Operator::Udf(stage) => (stage.stats.rows_in, stage.stats.rows_out, stage.stats.dead),
            _ => (self.at.rows.0, self.at.rows.1, 0),
        }
    }

    /// The schema of its output events.
    pub fn output_schema(&self) -> SchemaRef {
        match &self.operator {
            Operator::Udf(stage) => stage.output_schema(),
            Operator::Temporal(op) => op.output_schema(),
            _ => self.schema.clone(),
        }
    }

    /// Consumes entry `seq` of input `input`; returns what to write.
    pub fn on_entry(
        &mut self,
        input: usize,
        seq: u64,
        entry: Entry,
    ) -> Result<Effects, VertexError> {
        let expected = self.at.inputs.get(input).copied();
        if expected != Some(seq) {
            return Err(VertexError::Input {
                vertex: self.name.clone(),
                message: format!("input {input} delivered seq {seq} where {expected:?} was next"),
            });
        }
        self.at.inputs[input] = seq + 1;
        let mut fx = Effects::default();
        if self.at.finished {
            return Ok(fx);
        }
        let ctis_before = self.at.ctis;
        match self.merge.as_mut() {
            None => match entry {
                Entry::Batch { batch, .. } => self.on_batch(0, seq, batch, &mut fx)?,
                Entry::Cti(t) => self.on_cti(seq, t, &mut fx)?,
            },
            Some(merge) => {
                let merged = match entry {
                    Entry::Batch { batch, .. } => merge.push_batch(input, seq, batch),
                    Entry::Cti(t) => merge.push_cti(input, seq, t),
                };
                merged.map_err(|e| VertexError::Input {
                    vertex: self.name.clone(),
                    message: format!("{e} (input {input}, seq {seq})"),
                })?;
                let ready = merge.ready();
                for m in ready {
                    match m {
                        Merged::Batch(batch) => self.on_batch(0, seq, batch, &mut fx)?,
                        Merged::Input(i, batch) => self.on_batch(i, seq, batch, &mut fx)?,
                        Merged::Cti(t) => self.on_cti(seq, t, &mut fx)?,
                    }
                }
            }
        }
        self.boundary(ctis_before, &mut fx);
        Ok(fx)
    }

    /// Writes `batch` as this vertex's output, unless it is empty.
    fn emit_batch(&mut self, fx: &mut Effects, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            let producer = self.producer.clone();
            self.emit(fx, Entry::Batch { producer, batch });
        }
    }

    fn emit(&mut self, fx: &mut Effects, entry: Entry) {
        fx.output.push((self.at.output, entry));
        self.at.output += 1;
    }

    fn emit_dead(&mut self, fx: &mut Effects, rows: &[DeadLetter]) {
        if rows.is_empty() {
            return;
        }
        fx.dead.push((
            self.at.dead,
            Entry::Batch {
                producer: self.producer.clone(),
                batch: dead_batch(&self.name, rows),
            },
        ));
        self.at.dead += 1;
    }

    fn on_batch(
        &mut self,
        input: usize,
        seq: u64,
        batch: RecordBatch,
        fx: &mut Effects,
    ) -> Result<(), VertexError> {
        let rows_in = batch.num_rows() as u64;
        let (out, cti) = match &mut self.operator {
            Operator::Udf(stage) => {
                // Never one call across two segments of the stage's input.
                let pieces = stage.pieces(batch.num_rows());
                let schema = stage.output_schema();
                let mut outs = Vec::with_capacity(pieces.len());
                for (offset, len) in pieces {
                    outs.push(self.udf_batch(seq, &batch.slice(offset, len), fx)?);
                }
                let out = match outs.len() {
                    1 => outs.pop().unwrap_or_else(|| RecordBatch::new_empty(schema)),
                    _ => arrow_select::concat::concat_batches(&schema, &outs).map_err(|e| {
                        VertexError::Input {
                            vertex: self.name.clone(),
                            message: format!("input seq {seq}: joining the stage's output: {e}"),
                        }
                    })?,
                };
                (out, None)
            }
            Operator::Source(generator) => {
                let (on_time, late, cti) = generator.on_batch(&batch, &self.name, seq as i64);
                self.emit_dead(fx, &late);
                self.at.rows.0 += rows_in;
                (on_time, cti)
            }
            Operator::Union => {
                self.at.rows.0 += rows_in;
                (batch, None)
            }
            Operator::Temporal(op) => {
                self.at.rows.0 += rows_in;
                let out = op
                    .on_batch(input, &batch)
                    .map_err(|e| temporal_error(&self.name, input, seq, e))?;
                (
                    out.unwrap_or_else(|| RecordBatch::new_empty(op.output_schema())),
                    None,
                )
            }
        };
        if !matches!(self.operator, Operator::Udf(_)) {
            self.at.rows.1 += out.num_rows() as u64;
        }
        self.emit_batch(fx, out);
        if let Some(t) = cti {
            self.write_cti(t, fx);
        }
        Ok(())
    }

    fn on_cti(&mut self, seq: u64, t: i64, fx: &mut Effects) -> Result<(), VertexError> {
        self.read_cti = self.read_cti.max(Some(t));
        let t = match &mut self.operator {
            Operator::Source(generator) => match generator.on_cti(t) {
                Some(t) => t,
                None => return Ok(()),
            },
            _ => t,
        };
        if self.at.cti.is_some_and(|c| t <= c) {
            return Ok(());
        }
        if let Operator::Temporal(_) = &self.operator {
            return self.temporal_cti(seq, t, fx);
        }
        if let Some(out) = self.udf_cti(seq, t, fx)?
            && out.num_rows() > 0
        {
            let producer = self.producer.clone();
            self.emit(
                fx,
                Entry::Batch {
                    producer,
                    batch: out,
                },
            );
        }
        self.write_cti(t, fx);
        Ok(())
    }

    fn write_cti(&mut self, t: i64, fx: &mut Effects) {
        self.emit(fx, Entry::Cti(t));
        self.at.cti = Some(t);
        self.at.ctis += 1;
        if t == END {
            self.at.finished = true;
        }
        self.apply_pending(fx);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Pending batches are written as byte runs now; snapshots that wrote
    /// them value by value read back the same.
    #[test]
    fn merge_bytes_read_back_in_either_form() {
        let old: Vec<Vec<(u64, Vec<u8>)>> = vec![vec![(3, vec![1, 2, 250])], vec![]];
        let bytes = postcard::to_allocvec(&old).unwrap();
        let new: Vec<Vec<(u64, serde_bytes::ByteBuf)>> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(new[0][0].1.as_slice(), &[1, 2, 250]);
        assert_eq!(postcard::to_allocvec(&new).unwrap(), bytes);
    }
    use crate::merge::tests::{batch, input_strategy, schema};

    pub(super) fn vertex(
        inputs: usize,
        recovery: Recovery,
        snapshot: Option<VertexSnapshot>,
    ) -> Vertex {
        let operator = if inputs == 1 {
            Operator::Source(CtiGen::new(CtiPolicy::Lag(2)))
        } else {
            Operator::Union
        };
        Vertex::load(
            "v",
            operator,
            schema(),
            inputs,
            recovery,
            match snapshot {
                Some(s) => Resume::Snapshot(Box::new(s), KeyedState::new()),
                None => Resume::Fresh(vec![0; inputs]),
            },
        )
        .unwrap()
    }

    fn entry(inputs: &[Vec<Result<Vec<i64>, i64>>], i: usize, k: usize) -> Entry {
        match &inputs[i][k] {
            Ok(starts) => Entry::Batch {
                producer: "test".into(),
                batch: batch(starts, (i * 100 + k) as i64),
            },
            Err(cti) => Entry::Cti(*cti),
        }
    }

    /// Feeds every input entry from the vertex's positions on, picking inputs
    /// in the order `picks` gives, until `limit` entries were fed. Every write
    /// goes to `out`, which must hold the same value at a seq written twice.
    /// Returns the latest snapshot.
    pub(super) fn feed(
        v: &mut Vertex,
        inputs: &[Vec<Result<Vec<i64>, i64>>],
        picks: &mut dyn Iterator<Item = usize>,
        limit: usize,
        out: &mut BTreeMap<u64, Vec<u8>>,
    ) -> Result<Option<VertexSnapshot>, String> {
        let mut snapshot = None;
        for _ in 0..limit {
            let open: Vec<usize> = (0..inputs.len())
                .filter(|&i| (v.position().inputs[i] as usize) < inputs[i].len())
                .collect();
            if open.is_empty() {
                break;
            }
            let i = open[picks.next().unwrap_or(0) % open.len()];
            let k = v.position().inputs[i];
            let fx = v
                .on_entry(i, k, entry(inputs, i, k as usize))
                .map_err(|e| e.to_string())?;
            for (seq, e) in fx.output {
                let bytes = e.encode()?;
                if let Some(previous) = out.insert(seq, bytes.clone())
                    && previous != bytes
                {
                    return Err(format!("seq {seq} rewritten with a different value"));
                }
            }
            if let Some(s) = fx.snapshot {
                snapshot = Some(s);
            }
        }
        Ok(snapshot)
    }

    proptest! {
        /// A vertex that crashes at any point, reloads its latest snapshot and
        /// replays its inputs (in another interleaving) writes exactly what an
        /// uninterrupted vertex writes, at the same seqs.
        #[test]
        fn crash_and_replay_from_the_latest_snapshot_rewrites_the_same_entries(
            inputs in prop::collection::vec(input_strategy(), 1..4),
            every in 1u64..4,
            window in 0u64..3,
            replay in any::<bool>(),
            cut in 0usize..30,
            picks in prop::collection::vec(0usize..4, 0..64),
        ) {
            let recovery = if replay {
                Recovery::Replay { window }
            } else {
                Recovery::Checkpoint { every }
            };
            let mut whole = vertex(inputs.len(), recovery, None);
            let mut expected = BTreeMap::new();
            feed(&mut whole, &inputs, &mut (0..inputs.len()).cycle(), usize::MAX, &mut expected)
                .map_err(TestCaseError::fail)?;

            let mut order = picks.iter().copied().chain(std::iter::repeat(1));
            let mut first = vertex(inputs.len(), recovery, None);
            let mut got = BTreeMap::new();
            let snapshot = feed(&mut first, &inputs, &mut order, cut, &mut got)
                .map_err(TestCaseError::fail)?;
            let snapshot = snapshot
                .map(|s| postcard::from_bytes(&postcard::to_allocvec(&s).unwrap()).unwrap());
            let mut second = vertex(inputs.len(), recovery, snapshot);
            feed(&mut second, &inputs, &mut order, usize::MAX, &mut got)
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(expected, got);
        }
    }

    #[test]
    fn late_events_do_not_depend_on_how_the_input_is_cut() {
        let starts: Vec<i64> = (0..200).map(|i| (i * 37 % 23) + i / 2).collect();
        for policy in [CtiPolicy::Lag(0), CtiPolicy::Lag(5), CtiPolicy::Every(7)] {
            let late_with = |size: usize| {
                let mut generator = CtiGen::new(policy);
                let mut late = Vec::new();
                let mut last_cti = None;
                for (k, chunk) in starts.chunks(size).enumerate() {
                    let (_, dead, cti) = generator.on_batch(&batch(chunk, 0), "s", k as i64);
                    late.extend(dead.iter().map(|d| d.start));
                    last_cti = cti.or(last_cti);
                }
                (late, last_cti)
            };
            let one = late_with(1);
            assert!(!one.0.is_empty(), "{policy:?}: the input has late events");
            for size in [2, 3, 7, 64, 200] {
                assert_eq!(late_with(size), one, "{policy:?}, batches of {size}");
            }
        }
    }

    #[test]
    fn a_source_dead_letters_late_events_and_punctuates_by_policy() {
        let mut v = vertex(1, Recovery::Checkpoint { every: 1 }, None);
        let fx = v
            .on_entry(
                0,
                0,
                Entry::Batch {
                    producer: "ingest".into(),
                    batch: batch(&[10, 14, 12], 0),
                },
            )
            .unwrap();
        assert!(
            matches!(fx.output.last(), Some((1, Entry::Cti(12)))),
            "{fx:?}"
        );
        assert!(fx.snapshot.is_some(), "a snapshot at the CTI boundary");
        let fx = v
            .on_entry(
                0,
                1,
                Entry::Batch {
                    producer: "ingest".into(),
                    batch: batch(&[11, 20], 1),
                },
            )
            .unwrap();
        let Some((0, Entry::Batch { batch: dead, .. })) = fx.dead.first() else {
            panic!("the late event is a dead letter: {fx:?}");
        };
        let error = dead.column(5).as_string::<i32>().value(0);
        assert!(
            error.contains("late event") && error.contains("CTI 12"),
            "{error}"
        );
        assert_eq!(v.counts(), (5, 4, 0));
    }
}
