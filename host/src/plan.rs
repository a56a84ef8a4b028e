//! The physical plan of a job: sources, stages and sinks wired by stream name.
//!
//! A job file compiles to a [`Plan`], and so will the query language: a plan is
//! a DAG of named streams, each produced by a source or a stage and consumed by
//! stages and sinks. Stages hold an [`Operator`]; UDF stages are the first kind,
//! and built-in operators (projections, windows, joins) are added beside them.

use std::path::PathBuf;

use crate::schema::Field;
use crate::wasm::Limits;
pub use crate::wasm::bindings::ParamValue;

/// What to do with a row that cannot be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Stop the job with an error naming the row.
    Fail,
    /// Send the row to the job's dead-letter output and go on.
    DeadLetter,
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

/// A finite file source.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The stream it produces.
    pub name: String,
    /// File format.
    pub format: SourceFormat,
    /// The file.
    pub path: PathBuf,
    /// The declared columns, in order.
    pub fields: Vec<Field>,
    /// The int64 column holding each event's start time (microseconds).
    pub event_time: String,
    /// An int64 column holding the end time; without it events are points (`end = start + 1`).
    pub end_time: Option<String>,
    /// Malformed rows: fail or dead-letter.
    pub on_error: ErrorPolicy,
}

/// A stage parameter.
#[derive(Debug, Clone)]
pub struct ParamValueSpec {
    /// Name.
    pub name: String,
    /// Value.
    pub value: ParamValue,
}

/// The kind of a UDF stage (the world its component must export).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// Filter, map, flat-map.
    Processor,
    /// Keyed, stateful.
    Reducer,
    /// Adds one computed column.
    Scalar,
}

/// A stage running a UDF component.
#[derive(Debug, Clone)]
pub struct UdfSpec {
    /// Its kind.
    pub kind: StageKind,
    /// The component file.
    pub component: PathBuf,
    /// Parameters passed to `init`.
    pub params: Vec<ParamValueSpec>,
    /// Key column (reducers).
    pub key: Option<String>,
    /// Name of the added column (scalar stages).
    pub output: Option<String>,
    /// Trapping rows: fail or dead-letter.
    pub on_trap: ErrorPolicy,
    /// Sandbox limits.
    pub limits: Limits,
}

/// What a stage does.
#[derive(Debug, Clone)]
pub enum Operator {
    /// Runs a UDF.
    Udf(UdfSpec),
}

/// One stage: reads a stream, produces the stream of its own name.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// Stage (and output stream) name.
    pub name: String,
    /// Input stream.
    pub input: String,
    /// The operator.
    pub operator: Operator,
}

/// Where a sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// A JSONL file.
    File(PathBuf),
    /// Standard output, JSONL.
    Stdout,
}

/// A sink.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The stream it writes.
    pub input: String,
    /// Where.
    pub target: SinkTarget,
    /// Whether each line carries the event interval as `_start`/`_end`.
    pub interval: bool,
}

/// A whole job.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Job name.
    pub name: String,
    /// Rows per batch read from sources.
    pub batch_size: usize,
    /// Sources.
    pub sources: Vec<SourceSpec>,
    /// Stages, in an order where every stage comes after its input.
    pub stages: Vec<StageSpec>,
    /// Sinks.
    pub sinks: Vec<SinkSpec>,
    /// Dead-letter output (JSONL).
    pub dead_letter: PathBuf,
}
