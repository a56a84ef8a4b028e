//! Runs a finite job to completion in one process (`weir run`).
//!
//! Offline is a node with in-memory rStreams and sources that end: the
//! stages are the same rVertices a node runs ([`crate::vertex::Vertex`], with
//! the merge by CTI, unions, CTI policies and snapshots at CTI boundaries),
//! the file sources make the same entries ([`crate::source::Chunk::punctuate`])
//! and the sinks write the same lines ([`crate::sink::write_jsonl`]). A run
//! ends when every source is exhausted and its end marker has drained through
//! every vertex. Each vertex's output is a function of its input entries
//! alone, so `threads = 1` (the DAG depth-first on the calling thread) and
//! more threads (each source, stage and sink on its own thread, joined by
//! bounded channels) write the same bytes, and so does a node.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;

use crate::plan::Plan;
use crate::source::{RowError, SourceError};
use crate::stage::StageError;
use crate::vertex::VertexError;
use crate::wasm::Runtime;

mod drive;
mod graph;
mod progress;

use graph::Graph;

/// How to run a job.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overrides the job's batch size.
    pub batch_size: Option<usize>,
    /// 1: everything on the calling thread; more: a thread per source, stage and sink.
    pub threads: usize,
    /// Show live progress on stderr.
    pub progress: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch_size: None,
            threads: 2,
            progress: false,
        }
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A source could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A malformed row under policy `fail`.
    #[error("source `{source_name}`: {error}")]
    Row {
        /// The source.
        source_name: String,
        /// The row.
        error: Box<RowError>,
    },
    /// A stage could not be built.
    #[error(transparent)]
    Stage(Box<StageError>),
    /// A vertex failed.
    #[error(transparent)]
    Vertex(Box<VertexError>),
    /// The job needs what only a node runs.
    #[error("{0}")]
    Unsupported(String),
    /// An output could not be written.
    #[error("cannot write {path}: {error}")]
    Output {
        /// The output.
        path: String,
        /// The cause.
        error: std::io::Error,
    },
}

impl From<StageError> for RunError {
    fn from(e: StageError) -> Self {
        RunError::Stage(Box::new(e))
    }
}

impl From<VertexError> for RunError {
    fn from(e: VertexError) -> Self {
        RunError::Vertex(Box::new(e))
    }
}

/// Counts of one vertex for the summary.
#[derive(Debug, Clone)]
pub struct VertexSummary {
    /// `source`, `stage`, `union` or `sink`.
    pub role: &'static str,
    /// Name (the sink's target for sinks).
    pub name: String,
    /// Module version, for stages.
    pub module: Option<String>,
    /// Rows in.
    pub rows_in: u64,
    /// Rows out.
    pub rows_out: u64,
    /// Rows rejected or dead-lettered.
    pub dead: u64,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Per vertex, in plan order: sources, stages, sinks.
    pub vertices: Vec<VertexSummary>,
    /// Dead-letter rows written.
    pub dead_letters: u64,
    /// Where they are.
    pub dead_letter_path: PathBuf,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<7} {:<28} {:>12} {:>12} {:>9}  module",
            "vertex", "name", "rows in", "rows out", "dead"
        )?;
        for v in &self.vertices {
            writeln!(
                f,
                "{:<7} {:<28} {:>12} {:>12} {:>9}  {}",
                v.role,
                v.name,
                v.rows_in,
                v.rows_out,
                v.dead,
                v.module.as_deref().unwrap_or("")
            )?;
        }
        if self.dead_letters > 0 {
            writeln!(
                f,
                "{} dead-lettered rows in {}",
                self.dead_letters,
                self.dead_letter_path.display()
            )?;
        }
        write!(f, "finished in {:.2?}", self.elapsed)
    }
}

/// Live counters a progress display reads.
#[derive(Debug, Default)]
pub struct Counters {
    /// Rows in.
    pub rows_in: AtomicU64,
    /// Rows out.
    pub rows_out: AtomicU64,
}

/// Runs `plan` to completion.
pub fn run(plan: &Plan, runtime: &Arc<Runtime>, options: &RunOptions) -> Result<Summary, RunError> {
    let started = Instant::now();
    let batch_size = options.batch_size.unwrap_or(plan.batch_size).max(1);
    let plan = &weir_core::parallel::expand(plan.clone()).map_err(RunError::Unsupported)?;
    let mut graph = Graph::build(plan, runtime, batch_size)?;
    let progress = options
        .progress
        .then(|| progress::Progress::start(&graph.labels()));
    let result = if options.threads <= 1 {
        drive::sequential(&mut graph)
    } else {
        drive::threaded(&mut graph)
    };
    drop(progress);
    result?;
    graph.finish()?;

    // Dead letters: sources first, then stages, each in its own order.
    let mut dead_lines = Vec::new();
    for source in &graph.sources {
        let name = &source.spec.name;
        for e in &source.rejected {
            dead_lines.push(rejected_line(name, e));
        }
        for d in &source.late {
            dead_lines.push(serde_json::json!({
                "source": name, "line": d.input_seq, "error": d.error, "row": json_or_null(&d.row),
            }));
        }
    }
    for stage in graph.stages() {
        for batch in stage.dead {
            stage_lines(stage.component, batch, &mut dead_lines);
        }
    }
    let dead_letters = dead_lines.len() as u64;
    if dead_letters > 0 {
        let path = plan.dead_letter.display().to_string();
        let io = |error| RunError::Output {
            path: path.clone(),
            error,
        };
        let mut out = BufWriter::new(File::create(&plan.dead_letter).map_err(io)?);
        for line in &dead_lines {
            serde_json::to_writer(&mut out, line).map_err(|e| io(e.into()))?;
            out.write_all(b"\n").map_err(io)?;
        }
        out.flush().map_err(io)?;
    }
    Ok(Summary {
        vertices: graph.summary(),
        dead_letters,
        dead_letter_path: plan.dead_letter.clone(),
        elapsed: started.elapsed(),
    })
}

fn json_or_null(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

/// A malformed source row as a line of the dead-letter file.
fn rejected_line(source: &str, e: &RowError) -> serde_json::Value {
    serde_json::json!({
        "source": source, "file": e.file, "line": e.line, "column": e.column,
        "error": e.message, "raw": e.raw,
    })
}

/// A stage's dead-letter rows (the columns of [`crate::vertex::dead_fields`])
/// as lines of the dead-letter file.
fn stage_lines(component: &str, batch: &RecordBatch, lines: &mut Vec<serde_json::Value>) {
    let text = |name: &str| batch.column_by_name(name).map(|c| c.as_string::<i32>());
    let (Some(vertex), Some(module), Some(error), Some(row), Some(seq)) = (
        text("vertex"),
        text("module"),
        text("error"),
        text("row"),
        batch
            .column_by_name("input_seq")
            .map(|c| c.as_primitive::<Int64Type>()),
    ) else {
        return;
    };
    for r in 0..batch.num_rows() {
        lines.push(serde_json::json!({
            "stage": vertex.value(r), "component": component, "module": module.value(r),
            "input_seq": seq.value(r), "error": error.value(r), "row": json_or_null(row.value(r)),
        }));
    }
}
