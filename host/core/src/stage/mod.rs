//! A UDF stage: Arrow batches in, a component call per batch, Arrow batches out.
//!
//! On a trap or an error value the stage re-instantiates the component and
//! replays the batch one row at a time to find the rows to blame, so the result
//! is the same whatever the batch size: those rows fail the job or go to the
//! dead-letter output, and the others go on.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use arrow_select::concat::concat_batches;

use crate::filter::Filter;
use crate::plan::{ErrorPolicy, StageKind, UdfSpec};
use crate::schema::{
    ColumnType, Field, column_index, describe, event_schema, read_columns, type_name, user_fields,
};
use crate::select::Selection;
use crate::udf::{
    Call, CallError, CallFailure, KeyGroups, KeyedState, MAX_SHOWN, ModuleId, OutputColumn, Udf,
    UdfOutput, clip,
};

mod call;
mod timers;

use call::InputLayout;
pub use timers::TIMERS_PER_CALL;

/// Why a stage could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The component was refused.
    #[error("stage `{stage}`: {reason}")]
    Load {
        /// Stage name.
        stage: String,
        /// Why (said in full here, so not also a source).
        reason: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The component does not fit the stage.
    #[error("stage `{stage}` (module {module}): {message}")]
    Mismatch {
        /// Stage name.
        stage: String,
        /// Module version.
        module: String,
        /// What does not fit.
        message: String,
    },
    /// A row made the UDF trap or fail under policy `fail`.
    #[error("stage `{stage}` (module {module}) {error} at input position {position}; row: {row}")]
    Row {
        /// Stage name.
        stage: String,
        /// Module version.
        module: String,
        /// 0-based position of the row in the stage's input.
        position: u64,
        /// The failure.
        error: CallError,
        /// The row, as JSON (cut to its first KiB).
        row: String,
    },
    /// The UDF trapped on a batch under policy `rollback`: nothing of the
    /// batch was applied; the vertex returns the stage to its previous version.
    #[error("stage `{stage}` (module {module}) {error} on the batch at input position {position}")]
    Trapped {
        /// Stage name.
        stage: String,
        /// Module version.
        module: String,
        /// First input position of the batch.
        position: u64,
        /// The failure.
        error: CallError,
    },
    /// A timer's `on-cti` call failed under policy `fail`.
    #[error(
        "stage `{stage}` (module {module}) {error} firing the timer at {at} of key {key} as CTI {cti} passed"
    )]
    Timer {
        /// Stage name.
        stage: String,
        /// Module version.
        module: String,
        /// The CTI passing.
        cti: i64,
        /// The timer's key, as JSON.
        key: String,
        /// The timer's time.
        at: i64,
        /// The failure.
        error: Box<CallError>,
    },
    /// The UDF returned output that breaks the contract.
    #[error(
        "stage `{stage}` (module {module}) returned malformed output for input positions {first}..{last}: {message}"
    )]
    Output {
        /// Stage name.
        stage: String,
        /// Module version.
        module: String,
        /// First input position of the batch.
        first: u64,
        /// One past the last.
        last: u64,
        /// What is malformed.
        message: String,
    },
}

/// A row sent to the dead-letter output.
#[derive(Debug, Clone)]
pub struct DeadRow {
    /// Input position in the stage.
    pub position: u64,
    /// The event's start time.
    pub start: i64,
    /// The failure.
    pub error: String,
    /// The row as JSON.
    pub row: String,
}

/// One line a UDF logged or printed, and the call it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UdfLog {
    /// The line's number among all the stage has logged. Calls are
    /// deterministic, so a call replayed after a crash logs its lines under
    /// the same numbers again: a runtime that keeps them writes each once.
    pub seq: u64,
    /// The module version that ran the call (short).
    pub module: String,
    /// The input position of the call's first row (for a timer call, the
    /// stage's position as the CTI passed).
    pub position: u64,
    /// The CTI whose timers the call fired, for a timer call.
    pub cti: Option<i64>,
    /// The line: `[Level] message` from the `log` import, `[stdout] ...` or
    /// `[stderr] ...`.
    pub line: String,
}

/// A stage's part of a vertex snapshot.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StageCheckpoint {
    /// Input rows consumed (positions of the next row).
    pub position: u64,
    /// Counts so far.
    pub stats: StageStats,
    /// The segment the input position is in, when a call already started it.
    pub segment: Option<Segment>,
}

/// A segment of a stage's input in progress: where it began, and the clock
/// and random state its next call carries on with.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    /// The input position it began at.
    pub at: u64,
    /// The event time its clocks read.
    pub clock: i64,
    /// The random generator's state.
    pub random: u64,
}

/// Running counts of a stage.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct StageStats {
    /// Rows read.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Rows dead-lettered.
    pub dead: u64,
    /// Rows dropped by runtime filters before the UDF (counted in `rows_in`).
    pub filtered: u64,
    /// Calls that trapped or returned an error (each batch or timer call
    /// that failed, before the rows or timers to blame were found, and
    /// each of those calls that failed too).
    pub traps: u64,
    /// Fuel the stage's calls consumed, over every instance and version.
    pub fuel: u64,
    /// Lines the UDF logged or printed: the number the next one gets.
    pub logs: u64,
}

/// A running UDF stage.
pub struct UdfStage {
    name: String,
    spec: UdfSpec,
    udf: Box<dyn Udf>,
    reads: Vec<Field>,
    /// Where the stage's columns are in batches of the last batch's schema
    /// (at first the declared input's).
    layout: InputLayout,
    writes: Vec<Field>,
    output_schema: SchemaRef,
    /// Where each column of `output_schema` comes from: `Some(k)` is the
    /// `k`th written column, `None` the input column of the same name.
    output_plan: Vec<Option<usize>>,
    key_column: Option<(usize, ColumnType)>,
    /// Runtime filters in effect: rows any of them matches skip the UDF.
    filters: Vec<Filter>,
    position: u64,
    /// Where the current segment of the input began (see [`SEGMENT_ROWS`]).
    segment_at: u64,
    /// The UDF was called in the current segment: later calls in it carry
    /// on its clock and random sequence.
    seeded: bool,
    /// Log lines kept for the runtime, when it asked for them.
    logs: Option<Vec<UdfLog>>,
    /// The fuel the current instance had consumed at the last call's end.
    fuel_seen: u64,
    /// Counts so far.
    pub stats: StageStats,
}

/// The input of a UDF stage is cut into segments at every multiple of this
/// many rows (by input position). Clocks read the start of a segment's first
/// event and random numbers restart at every segment, so what a UDF sees
/// depends neither on how its input arrives in batches nor on where its CTIs
/// fall: a batch never spans two segments ([`UdfStage::pieces`]), the calls
/// within one segment carry on where the one before stopped, and a snapshot
/// taken inside a segment keeps its clock and random state. A patch starts a
/// segment: the new module is a new instance.
pub const SEGMENT_ROWS: u64 = 1024;

impl std::fmt::Debug for UdfStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdfStage")
            .field("name", &self.name)
            .finish()
    }
}

impl UdfStage {
    /// A stage of `spec` named `name` running `udf` over input of
    /// `input_schema`, checked against what the UDF reads.
    pub fn new(
        name: &str,
        spec: &UdfSpec,
        udf: Box<dyn Udf>,
        input_schema: SchemaRef,
    ) -> Result<Self, StageError> {
        let module = udf.module().clone();
        let mismatch = |module: &ModuleId, message: String| StageError::Mismatch {
            stage: name.to_string(),
            module: module.version.to_string(),
            message,
        };
        let signature = udf.signature().clone();
        let (mut reads, mut writes, passthrough) =
            (signature.reads, signature.writes, signature.passthrough);
        if !spec.args.is_empty() {
            // A call binds input columns to the arguments by position.
            if spec.args.len() != reads.len() {
                return Err(mismatch(
                    &module,
                    format!(
                        "the function takes {} argument(s) ({}) but is given {}",
                        reads.len(),
                        describe(&reads),
                        spec.args.len()
                    ),
                ));
            }
            for (field, column) in reads.iter_mut().zip(&spec.args) {
                field.name = column.clone();
            }
        }
        if spec.kind == StageKind::Scalar
            && let Some(out) = writes.first_mut()
        {
            // A scalar's result is named by the stage's `output`.
            out.name = spec.output.clone().unwrap_or_else(|| name.to_string());
        }
        let input_fields = user_fields(&input_schema);
        for field in &reads {
            match input_fields.iter().find(|f| f.name == field.name) {
                None => {
                    return Err(mismatch(
                        &module,
                        format!(
                            "the UDF reads column `{}` ({}) but its input has no such column; the input has: {}",
                            field.name,
                            type_name(field.ty),
                            describe(&input_fields)
                        ),
                    ));
                }
                Some(f) if f.ty != field.ty => {
                    return Err(mismatch(
                        &module,
                        format!(
                            "the UDF reads column `{}` as {} but the input's `{}` is {}",
                            field.name,
                            type_name(field.ty),
                            f.name,
                            type_name(f.ty)
                        ),
                    ));
                }
                Some(f) if f.nullable && !field.nullable => {
                    return Err(mismatch(
                        &module,
                        format!(
                            "the input's column `{}` may be null but the UDF reads it as non-null (declare the field as Option<_>)",
                            f.name
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        let key_column = match &spec.key {
            None => None,
            Some(key) => {
                let idx = input_schema.index_of(key).map_err(|_| {
                    mismatch(
                        &module,
                        format!(
                            "key column `{key}` is not in the input; it has: {}",
                            describe(&input_fields)
                        ),
                    )
                })?;
                let field = input_schema.field(idx);
                let ty = crate::schema::column_type(field.data_type())
                    .filter(|t| {
                        matches!(t, ColumnType::Utf8 | ColumnType::Int64) && !field.is_nullable()
                    })
                    .ok_or_else(|| {
                        mismatch(
                            &module,
                            format!("key column `{key}` must be a non-null utf8 or int64 column"),
                        )
                    })?;
                Some((idx, ty))
            }
        };
        let output_fields: Vec<Field> = if passthrough {
            let mut fields = input_fields.clone();
            for w in &writes {
                match fields.iter_mut().find(|f| f.name == w.name) {
                    Some(f) => *f = w.clone(),
                    None => fields.push(w.clone()),
                }
            }
            fields
        } else {
            writes.clone()
        };
        if udf.timed() && passthrough {
            return Err(mismatch(
                &module,
                "a timed reducer cannot pass its input's columns through: the rows it emits as a CTI passes have no input row".into(),
            ));
        }
        let output_schema = event_schema(&output_fields);
        // Each output column is a written one (by its index in `writes`) or,
        // for the interval and a filter's columns, carried over from the input.
        let output_plan: Vec<Option<usize>> = output_schema
            .fields()
            .iter()
            .map(|f| writes.iter().position(|w| w.name == *f.name()))
            .collect();
        let layout = InputLayout::of(&input_schema, &reads, &output_schema, &output_plan)
            .map_err(|message| mismatch(&module, message))?;
        Ok(UdfStage {
            name: name.to_string(),
            spec: spec.clone(),
            udf,
            reads,
            layout,
            writes,
            output_schema,
            output_plan,
            key_column,
            filters: Vec::new(),
            position: 0,
            segment_at: 0,
            seeded: false,
            logs: None,
            fuel_seen: 0,
            stats: StageStats::default(),
        })
    }

    /// The schema of the stage's output stream.
    pub fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The module version this stage runs.
    pub fn module(&self) -> &ModuleId {
        self.udf.module()
    }

    /// What a snapshot must hold to resume this stage, besides its keyed
    /// state: its input position and counts.
    pub fn checkpoint(&self) -> StageCheckpoint {
        StageCheckpoint {
            position: self.position,
            stats: self.stats,
            segment: self.seeded.then(|| {
                let (clock, random) = self.udf.segment();
                Segment {
                    at: self.segment_at,
                    clock,
                    random,
                }
            }),
        }
    }

    /// The keyed state changed since the last call (see
    /// [`crate::udf::KeyedStore::take_delta`]).
    pub fn take_delta(&mut self) -> crate::udf::StateChanges {
        self.udf.state().take_delta()
    }

    /// Takes over from `old`, the stage's previous version, at a patch: its
    /// input position, counts and host-owned keyed state (with the keys
    /// changed since the last checkpoint, which the next one must write).
    pub fn adopt(&mut self, old: &mut UdfStage) {
        self.position = old.position;
        self.segment_at = old.position;
        self.seeded = false;
        self.stats = old.stats;
        self.fuel_seen = self.udf.usage().fuel;
        self.filters = std::mem::take(&mut old.filters);
        self.logs = old.logs.take();
        *self.udf.state() = std::mem::take(old.udf.state());
    }

    /// Calls that trapped or returned an error ([`StageStats::traps`]), and
    /// what the stage's calls used: their fuel over every instance, and its
    /// instance's memory now.
    pub fn usage(&self) -> (u64, crate::udf::Usage) {
        let mut usage = self.udf.usage();
        usage.fuel = self.stats.fuel;
        (self.stats.traps, usage)
    }

    /// Keeps what the UDF logs and prints from now on, for
    /// [`UdfStage::take_logs`], which the runtime calls after each input
    /// entry.
    pub fn capture_logs(&mut self) {
        self.logs.get_or_insert_with(Default::default);
    }

    /// The lines kept since the last call.
    pub fn take_logs(&mut self) -> Vec<UdfLog> {
        self.logs.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// After each call: counts the fuel it consumed and logs the lines the
    /// UDF wrote, numbering them.
    pub(crate) fn after_call(&mut self, position: u64, cti: Option<i64>) {
        let fuel = self.udf.usage().fuel;
        // A fresh instance (after a trap or a restore) counts from zero.
        self.stats.fuel += fuel.saturating_sub(self.fuel_seen);
        self.fuel_seen = fuel;
        let lines = self.udf.drain_logs();
        if lines.is_empty() {
            return;
        }
        let module = self.udf.module().version.to_string();
        for line in lines {
            let seq = self.stats.logs;
            self.stats.logs += 1;
            match cti {
                None => {
                    tracing::info!(target: "weir::udf", stage = %self.name, %module, position, seq, "{line}")
                }
                Some(cti) => {
                    tracing::info!(target: "weir::udf", stage = %self.name, %module, position, cti, seq, "{line}")
                }
            }
            if let Some(kept) = self.logs.as_mut() {
                kept.push(UdfLog {
                    seq,
                    module: module.clone(),
                    position,
                    cti,
                    line,
                });
            }
        }
    }

    /// Runs the module's `migrate` (a `migrating-reducer`; others have
    /// none) over the keyed state it adopted from version `from`.
    pub fn migrate(&mut self, from: &crate::udf::ModuleVersion) -> Result<(), StageError> {
        if !self.udf.migrates() {
            return Ok(());
        }
        let keys = self.udf.state().get().len();
        self.udf
            .migrate(from.hex(), self.position)
            .map_err(|e| StageError::Mismatch {
                stage: self.name.clone(),
                module: self.udf.module().version.to_string(),
                message: format!(
                    "its migrate of the state module {from} left ({keys} keys) failed, so it did not take over: {e}"
                ),
            })?;
        tracing::info!(stage = %self.name, module = %self.udf.module().version, keys, "migrated the state module {from} left");
        Ok(())
    }

    /// Sets the runtime filters in effect from the next batch on.
    pub fn set_filters(&mut self, filters: Vec<Filter>) {
        self.filters = filters;
    }

    /// The runtime filters in effect.
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    /// The runtime filters in effect, to change.
    pub fn filters_mut(&mut self) -> &mut Vec<Filter> {
        &mut self.filters
    }

    /// The input position: rows consumed.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// A copy of its keyed state (timers included).
    pub fn keyed_state(&mut self) -> KeyedState {
        self.udf.state().get().clone()
    }

    /// Stops tracking keyed-state changes made so far (nothing persists them).
    pub fn forget_delta(&mut self) {
        self.udf.state().forget_delta();
    }

    /// Resumes from a checkpoint and the keyed state as of that checkpoint
    /// (on a freshly initialised stage).
    pub fn restore(&mut self, checkpoint: StageCheckpoint, state: KeyedState) {
        self.position = checkpoint.position;
        self.stats = checkpoint.stats;
        self.fuel_seen = self.udf.usage().fuel;
        self.udf.state().set(state);
        match checkpoint.segment {
            Some(s) => {
                self.segment_at = s.at;
                self.seeded = true;
                self.udf.resume_segment(s.clock, s.random);
            }
            None => self.cut(),
        }
    }

    /// The next row starts a segment.
    fn cut(&mut self) {
        self.segment_at = self.position;
        self.seeded = false;
    }

    /// How to cut a batch of `rows` rows, arriving at the stage's position,
    /// so that no piece spans two segments: `(offset, length)` of each piece,
    /// to [`UdfStage::process`] in order.
    pub fn pieces(&self, rows: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let (mut at, mut offset) = (self.position, 0usize);
        while offset < rows {
            let room = (SEGMENT_ROWS - at % SEGMENT_ROWS) as usize;
            let len = room.min(rows - offset);
            out.push((offset, len));
            offset += len;
            at += len as u64;
        }
        out
    }
}

/// One row (with interval) as a JSON object, for messages and dead letters.
pub fn row_json(row: &RecordBatch) -> String {
    let mut out = Vec::new();
    if crate::sink::write_jsonl(&mut out, row, true).is_err() {
        return "<unprintable>".into();
    }
    String::from_utf8_lossy(&out).trim_end().to_string()
}
