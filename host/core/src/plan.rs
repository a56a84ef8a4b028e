//! The physical plan of a job: sources, stages and sinks wired by stream name.
//!
//! A job file compiles to a [`Plan`], and so will the query language: a plan is
//! a DAG of named streams, each produced by a source or a stage and consumed by
//! stages and sinks. Stages hold an [`Operator`]; UDF stages are the first kind,
//! and built-in operators (projections, windows, joins) are added beside them.

use std::path::PathBuf;

use crate::schema::Field;
use crate::udf::Limits;
/// The value of one stage parameter from the job file.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Text(String),
    /// A boolean.
    Flag(bool),
}

/// What to do with a row that cannot be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Stop the job with an error naming the row.
    Fail,
    /// Send the row to the job's dead-letter output and go on.
    DeadLetter,
    /// (UDF traps, on a node) Return the stage to its previous module version
    /// at the trapping batch, record that in the patch timeline, and go on;
    /// with no previous version, as `Fail`.
    Rollback,
}

/// Input file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

/// How a continuous source punctuates its events with CTIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CtiPolicy {
    /// After each batch: CTI = the highest start seen minus this lag (µs).
    Lag(i64),
    /// After every N events: CTI = the highest start seen.
    Every(u64),
}

impl Default for CtiPolicy {
    fn default() -> Self {
        CtiPolicy::Lag(0)
    }
}

/// Where a source's events come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOrigin {
    /// A file read once to its end (`weir run`), or followed as it grows (jobs on a node).
    File {
        /// Keep reading appended lines.
        follow: bool,
    },
    /// A node's ingest stream, written by `weir ingest`.
    Stream(String),
    /// One of Nexmark's streams, generated (`weir_nexmark`).
    Nexmark {
        /// Which stream.
        kind: weir_nexmark::Kind,
        /// What to generate.
        config: weir_nexmark::Config,
        /// On a node, generated in step with the wall clock at the
        /// config's rate (else as fast as the job takes them).
        paced: bool,
    },
}

/// The unit of a source's time column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeUnit {
    /// Microseconds: Weir's own unit.
    #[default]
    Micros,
    /// Milliseconds.
    Millis,
    /// Seconds.
    Seconds,
}

impl TimeUnit {
    /// Parses `us`, `ms` or `s` (or `micros`, `millis`, `seconds`).
    pub fn parse(text: &str) -> Option<TimeUnit> {
        match text {
            "us" | "micros" | "microseconds" => Some(TimeUnit::Micros),
            "ms" | "millis" | "milliseconds" => Some(TimeUnit::Millis),
            "s" | "seconds" => Some(TimeUnit::Seconds),
            _ => None,
        }
    }

    /// Microseconds in one of this unit.
    pub fn micros(self) -> i64 {
        match self {
            TimeUnit::Micros => 1,
            TimeUnit::Millis => 1_000,
            TimeUnit::Seconds => 1_000_000,
        }
    }

    /// The unit's short name.
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Micros => "us",
            TimeUnit::Millis => "ms",
            TimeUnit::Seconds => "s",
        }
    }
}

/// A source: a file or an ingest stream.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The stream it produces.
    pub name: String,
    /// Where its events come from.
    pub origin: SourceOrigin,
    /// File format.
    pub format: SourceFormat,
    /// The file (empty for stream sources).
    pub path: PathBuf,
    /// The declared columns, in order.
    pub fields: Vec<Field>,
    /// The int64 column holding each event's start time.
    pub event_time: String,
    /// The unit of `event_time`'s values (events' intervals are in microseconds).
    pub event_unit: TimeUnit,
    /// An int64 column holding the end time; without it events are points (`end = start + 1`).
    pub end_time: Option<String>,
    /// The unit of `end_time`'s values.
    pub end_unit: TimeUnit,
    /// Malformed rows: fail or dead-letter.
    pub on_error: ErrorPolicy,
    /// CTI generation (continuous jobs).
    pub cti: CtiPolicy,
    /// Refuse input fields (JSONL keys, CSV header columns) the schema does
    /// not declare, instead of ignoring them.
    pub strict: bool,
}

/// A stage parameter.
#[derive(Debug, Clone, PartialEq)]
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
    /// The input columns a scalar function takes as its arguments, in
    /// order (a script's call `f(a, b)`); empty: the columns of the names
    /// the function declares.
    pub args: Vec<String>,
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
    /// Merges its inputs (same columns) in deterministic CTI order.
    Union,
    /// A built-in temporal operator (a query's windows, joins and
    /// expressions), made afresh for each vertex that runs it.
    Temporal(TemporalSpec),
}

/// The most instances of a stage's rVertices `replicate` asks for.
pub const MAX_REPLICATE: usize = 8;

/// How a stage's vertex recovers after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Snapshot state every `every` CTIs; reload the latest and replay from its positions.
    Checkpoint {
        /// CTIs between snapshots.
        every: u64,
    },
    /// Keep no state snapshot: rebuild by replaying the last `window` CTIs of input.
    Replay {
        /// CTIs of input retained and replayed.
        window: u64,
    },
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery::Checkpoint { every: 1 }
    }
}

/// Makes a temporal operator.
pub type MakeTemporal =
    std::sync::Arc<dyn Fn() -> Result<Box<dyn crate::temporal::TemporalOp>, String> + Send + Sync>;

/// A built-in temporal operator of a plan: what it does, and how to make it.
#[derive(Clone)]
pub struct TemporalSpec {
    /// What it does (for `weir explain` and errors).
    pub describe: String,
    /// Makes the operator.
    pub make: MakeTemporal,
}

impl std::fmt::Debug for TemporalSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

/// One stage: reads streams, produces the stream of its own name.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// Stage (and output stream) name.
    pub name: String,
    /// Input streams; several are merged by CTI.
    pub inputs: Vec<String>,
    /// The operator.
    pub operator: Operator,
    /// Recovery strategy (jobs on a node).
    pub recovery: Recovery,
    /// How many rVertices run it ([`crate::parallel::expand`]); a stage
    /// that cannot be split (no `partition`) runs as one whatever this says.
    pub parallelism: usize,
    /// Per input, the key columns that hash-partition the input between the
    /// stage's rVertices; empty when the stage cannot be split.
    pub partition: Vec<PartitionKeys>,
    /// How many instances of each of its rVertices run side by side on
    /// different members of a cluster, writing the same rStream (1: one;
    /// on a single node always one).
    pub replicate: usize,
}

/// How one input of a parallel stage is split between its rVertices.
#[derive(Debug, Clone)]
pub struct PartitionKeys {
    /// The input's columns (interval first).
    pub schema: arrow_schema::SchemaRef,
    /// The key columns (indices into `schema`) whose values pick a row's
    /// rVertex.
    pub columns: Vec<usize>,
}

/// Where a sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// A JSONL file.
    File(PathBuf),
    /// Standard output, JSONL.
    Stdout,
    /// Nowhere: rows are counted and dropped (benchmarks, dry runs).
    Discard,
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
    /// The columns it writes, in this order (all when `None`).
    pub columns: Option<Vec<String>>,
    /// Writes in the canonical order ([`crate::sink::Ordered`]): each CTI
    /// writes the rows that start before it, sorted; otherwise rows are
    /// written as they arrive (job files, whose stages run as one vertex).
    pub ordered: bool,
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
    /// Every Wasm component file the job loads: its UDF stages' and those
    /// that run inside built-in operators (a script's user-defined
    /// aggregates), so a client sends them all with the job.
    pub components: Vec<PathBuf>,
}
