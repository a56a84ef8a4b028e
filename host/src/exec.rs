//! Runs a finite job to completion in one process (`weir run`).
//!
//! Every stage has one input, consumed in order, so outputs do not depend on
//! how stages are scheduled: `threads = 1` runs the DAG depth-first on the
//! calling thread, more threads run each source, stage and sink on its own
//! thread joined by bounded channels. Both give byte-identical output.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::plan::{ErrorPolicy, Operator, Plan, SinkTarget};
use crate::sink::write_jsonl;
use crate::source::{RowError, SourceError, SourceReader};
use crate::stage::{DeadRow, StageError, UdfStage};
use crate::vertex::CtiGen;
use crate::wasm::Runtime;

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
    /// A stage failed.
    #[error(transparent)]
    Stage(Box<StageError>),
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

/// Counts of one vertex for the summary.
#[derive(Debug, Clone)]
pub struct VertexSummary {
    /// `source`, `stage` or `sink`.
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

enum Vertex {
    Stage {
        stage: Box<UdfStage>,
        dead: Vec<DeadRow>,
    },
    Sink {
        out: Box<dyn Write + Send>,
        interval: bool,
        rows: u64,
        target: String,
        partial: Option<(PathBuf, PathBuf)>,
    },
}

impl Vertex {
    /// Consumes one batch; returns what to pass downstream.
    fn push(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>, RunError> {
        match self {
            Vertex::Stage { stage, dead } => Ok(Some(stage.process_all(batch, dead)?)),
            Vertex::Sink {
                out,
                interval,
                rows,
                target,
                ..
            } => {
                write_jsonl(out, batch, *interval).map_err(|error| RunError::Output {
                    path: target.clone(),
                    error,
                })?;
                *rows += batch.num_rows() as u64;
                Ok(None)
            }
        }
    }

    fn finish(&mut self) -> Result<(), RunError> {
        if let Vertex::Sink {
            out,
            target,
            partial,
            ..
        } = self
        {
            let io = |error| RunError::Output {
                path: target.clone(),
                error,
            };
            out.flush().map_err(io)?;
            if let Some((tmp, fin)) = partial.take() {
                std::fs::rename(&tmp, &fin).map_err(io)?;
            }
        }
        Ok(())
    }
}

struct Graph {
    /// Vertices: stages in plan order, then sinks in plan order.
    vertices: Vec<Vertex>,
    /// For each stream, the vertices that consume it.
    consumers: HashMap<String, Vec<usize>>,
    /// Output stream of each vertex (stages only).
    outputs: Vec<Option<String>>,
    counters: Vec<Arc<Counters>>,
    names: Vec<(String, &'static str)>,
}

/// An opened sink: the writer, its name, and (for files) the partial and final paths.
type OpenSink = (Box<dyn Write + Send>, String, Option<(PathBuf, PathBuf)>);

fn open_sink(target: &SinkTarget) -> Result<OpenSink, RunError> {
    match target {
        SinkTarget::Stdout => Ok((
            Box::new(BufWriter::new(std::io::stdout())),
            "stdout".into(),
            None,
        )),
        SinkTarget::Discard => Ok((Box::new(std::io::sink()), "discard".into(), None)),
        SinkTarget::File(path) => {
            let name = path.display().to_string();
            let io = |error| RunError::Output {
                path: name.clone(),
                error,
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let target = sink_target(path).map_err(io)?;
            if std::fs::metadata(&target).is_ok_and(|m| !m.is_file()) {
                // A device, a pipe or a socket: written in place, never replaced.
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(io)?;
                return Ok((
                    Box::new(BufWriter::with_capacity(1 << 20, file)),
                    name,
                    None,
                ));
            }
            // Written beside the target under a name of its own and renamed
            // at the end, so a failed run never leaves a file that looks
            // complete.
            let mut tmp_name = target.file_name().unwrap_or_default().to_os_string();
            tmp_name.push(".partial");
            let tmp = target.with_file_name(tmp_name);
            let file = File::create(&tmp).map_err(io)?;
            Ok((
                Box::new(BufWriter::with_capacity(1 << 20, file)),
                name,
                Some((tmp, target)),
            ))
        }
    }
}

/// The file a sink at `path` writes: `path`, or what a symbolic link there
/// points to (the link stays a link).
fn sink_target(path: &Path) -> std::io::Result<PathBuf> {
    let mut target = path.to_path_buf();
    // A chain of links ends within a few steps, or it is a loop.
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&target)?;
                target = match target.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(target),
        }
    }
    Err(std::io::Error::other(format!(
        "{} is a loop of symbolic links",
        path.display()
    )))
}

fn build(
    plan: &Plan,
    runtime: &Arc<Runtime>,
    schemas: &mut HashMap<String, SchemaRef>,
) -> Result<Graph, RunError> {
    let mut g = Graph {
        vertices: Vec::new(),
        consumers: HashMap::new(),
        outputs: Vec::new(),
        counters: Vec::new(),
        names: Vec::new(),
    };
    for spec in &plan.stages {
        let [input_name] = spec.inputs.as_slice() else {
            return Err(RunError::Unsupported(format!(
                "stage `{}` has {} inputs; `weir run` runs single-input stages, so submit this job to a node (`weir job submit`)",
                spec.name,
                spec.inputs.len()
            )));
        };
        let input = schemas.get(input_name).cloned().ok_or_else(|| {
            RunError::from(StageError::Mismatch {
                stage: spec.name.clone(),
                module: "-".into(),
                message: format!("input `{input_name}` has no schema"),
            })
        })?;
        let Operator::Udf(udf) = &spec.operator else {
            return Err(RunError::Unsupported(format!(
                "stage `{}` is a union; `weir run` runs UDF stages, so submit this job to a node (`weir job submit`)",
                spec.name
            )));
        };
        let stage = UdfStage::new(runtime, &spec.name, udf, input)?;
        schemas.insert(spec.name.clone(), stage.output_schema());
        g.consumers
            .entry(input_name.clone())
            .or_default()
            .push(g.vertices.len());
        g.vertices.push(Vertex::Stage {
            stage: Box::new(stage),
            dead: Vec::new(),
        });
        g.outputs.push(Some(spec.name.clone()));
        g.names.push((spec.name.clone(), "stage"));
        g.counters.push(Arc::default());
    }
    for spec in &plan.sinks {
        let (out, target, partial) = open_sink(&spec.target)?;
        g.consumers
            .entry(spec.input.clone())
            .or_default()
            .push(g.vertices.len());
        g.names.push((target.clone(), "sink"));
        g.vertices.push(Vertex::Sink {
            out,
            interval: spec.interval,
            rows: 0,
            target,
            partial,
        });
        g.outputs.push(None);
        g.counters.push(Arc::default());
    }
    Ok(g)
}

struct SourceResult {
    rows: u64,
    rejected: Vec<RowError>,
    /// Events that started before a CTI (by the source's policy).
    late: Vec<crate::vertex::DeadLetter>,
}

/// Runs `plan` to completion.
pub fn run(plan: &Plan, runtime: &Arc<Runtime>, options: &RunOptions) -> Result<Summary, RunError> {
    let started = Instant::now();
    let batch_size = options.batch_size.unwrap_or(plan.batch_size).max(1);
    let mut readers = Vec::new();
    let mut schemas = HashMap::new();
    for spec in &plan.sources {
        if spec.origin != (crate::plan::SourceOrigin::File { follow: false }) {
            return Err(RunError::Unsupported(format!(
                "source `{}` is continuous (an ingest stream or a followed file); `weir run` reads files to their end, so submit this job to a node (`weir job submit`)",
                spec.name
            )));
        }
        let reader = SourceReader::open(spec, batch_size)?;
        schemas.insert(spec.name.clone(), reader.schema());
        readers.push(reader);
    }
    let mut graph = build(plan, runtime, &mut schemas)?;
    let source_counters: Vec<Arc<Counters>> = plan.sources.iter().map(|_| Arc::default()).collect();
    let progress = options
        .progress
        .then(|| Progress::start(plan, &graph, &source_counters));
    let result = if options.threads <= 1 {
        run_sequential(plan, readers, &mut graph, &source_counters)
    } else {
        run_threaded(plan, readers, &mut graph, &source_counters)
    };
    drop(progress);
    let sources = result?;

    // Dead letters: sources first, then stages, each in its own order.
    let mut dead_lines = Vec::new();
    for (spec, res) in plan.sources.iter().zip(&sources) {
        for e in &res.rejected {
            dead_lines.push(serde_json::json!({
                "source": spec.name, "file": e.file, "line": e.line, "column": e.column,
                "error": e.message, "raw": e.raw,
            }));
        }
        for d in &res.late {
            let row: serde_json::Value =
                serde_json::from_str(&d.row).unwrap_or(serde_json::Value::Null);
            dead_lines.push(serde_json::json!({
                "source": spec.name, "line": d.input_seq, "error": d.error, "row": row,
            }));
        }
    }
    let mut vertices: Vec<VertexSummary> = plan
        .sources
        .iter()
        .zip(&sources)
        .map(|(s, r)| VertexSummary {
            role: "source",
            name: s.name.clone(),
            module: None,
            rows_in: r.rows + (r.rejected.len() + r.late.len()) as u64,
            rows_out: r.rows,
            dead: (r.rejected.len() + r.late.len()) as u64,
        })
        .collect();
    for v in &mut graph.vertices {
        v.finish()?;
        match v {
            Vertex::Stage { stage, dead } => {
                for d in dead.iter() {
                    let row: serde_json::Value =
                        serde_json::from_str(&d.row).unwrap_or(serde_json::Value::Null);
                    dead_lines.push(serde_json::json!({
                        "stage": stage.name(), "component": stage.module().path, "module": stage.module().version.hex(),
                        "position": d.position, "error": d.error, "row": row,
                    }));
                }
                vertices.push(VertexSummary {
                    role: "stage",
                    name: stage.name().to_string(),
                    module: Some(stage.module().version.short().to_string()),
                    rows_in: stage.stats.rows_in,
                    rows_out: stage.stats.rows_out,
                    dead: stage.stats.dead,
                });
            }
            Vertex::Sink { rows, target, .. } => vertices.push(VertexSummary {
                role: "sink",
                name: target.clone(),
                module: None,
                rows_in: *rows,
                rows_out: *rows,
                dead: 0,
            }),
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
        vertices,
        dead_letters,
        dead_letter_path: plan.dead_letter.clone(),
        elapsed: started.elapsed(),
    })
}

/// Reads a source to its end. Its CTI policy applies as on a node: events
/// that start before the CTI the events before them make are late, and go
/// to the dead letters, whatever the batch size.
fn read_source(
    reader: &mut SourceReader,
    spec: &crate::plan::SourceSpec,
    counters: &Counters,
    mut emit: impl FnMut(RecordBatch) -> Result<(), RunError>,
) -> Result<SourceResult, RunError> {
    let mut result = SourceResult {
        rows: 0,
        rejected: Vec::new(),
        late: Vec::new(),
    };
    let mut cti = CtiGen::new(spec.cti);
    while let Some(chunk) = reader.next_chunk()? {
        if let Some(first) = chunk.rejected.first()
            && spec.on_error == ErrorPolicy::Fail
        {
            return Err(RunError::Row {
                source_name: spec.name.clone(),
                error: Box::new(first.clone()),
            });
        }
        result.rejected.extend(chunk.rejected);
        let (batch, late, _) = cti.on_batch(&chunk.batch, &spec.name, reader.line() as i64);
        result.late.extend(late);
        let rows = batch.num_rows() as u64;
        result.rows += rows;
        counters.rows_out.fetch_add(rows, Ordering::Relaxed);
        if rows > 0 {
            emit(batch)?;
        }
    }
    Ok(result)
}

fn run_sequential(
    plan: &Plan,
    readers: Vec<SourceReader>,
    graph: &mut Graph,
    counters: &[Arc<Counters>],
) -> Result<Vec<SourceResult>, RunError> {
    fn push(graph: &mut Graph, stream: &str, batch: &RecordBatch) -> Result<(), RunError> {
        let consumers = graph.consumers.get(stream).cloned().unwrap_or_default();
        for v in consumers {
            graph.counters[v]
                .rows_in
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            if let Some(out) = graph.vertices[v].push(batch)? {
                graph.counters[v]
                    .rows_out
                    .fetch_add(out.num_rows() as u64, Ordering::Relaxed);
                if out.num_rows() > 0
                    && let Some(name) = graph.outputs[v].clone()
                {
                    push(graph, &name, &out)?;
                }
            }
        }
        Ok(())
    }
    let mut results = Vec::new();
    for ((mut reader, spec), c) in readers.into_iter().zip(&plan.sources).zip(counters) {
        results.push(read_source(&mut reader, spec, c, |batch| {
            push(graph, &spec.name, &batch)
        })?);
    }
    Ok(results)
}

/// Batches in flight per edge: enough to keep threads busy, bounded for memory.
const CHANNEL_DEPTH: usize = 4;

fn run_threaded(
    plan: &Plan,
    readers: Vec<SourceReader>,
    graph: &mut Graph,
    counters: &[Arc<Counters>],
) -> Result<Vec<SourceResult>, RunError> {
    let n = graph.vertices.len();
    let mut senders: Vec<Option<SyncSender<RecordBatch>>> = Vec::with_capacity(n);
    let mut receivers: Vec<Option<Receiver<RecordBatch>>> = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = sync_channel(CHANNEL_DEPTH);
        senders.push(Some(tx));
        receivers.push(Some(rx));
    }
    let downstream = |stream: &str,
                      senders: &[Option<SyncSender<RecordBatch>>]|
     -> Vec<SyncSender<RecordBatch>> {
        graph
            .consumers
            .get(stream)
            .map(|vs| vs.iter().filter_map(|&v| senders[v].clone()).collect())
            .unwrap_or_default()
    };
    let source_outs: Vec<_> = plan
        .sources
        .iter()
        .map(|s| downstream(&s.name, &senders))
        .collect();
    let vertex_outs: Vec<_> = graph
        .outputs
        .iter()
        .map(|o| {
            o.as_deref()
                .map(|s| downstream(s, &senders))
                .unwrap_or_default()
        })
        .collect();
    drop(senders);
    let vertices = std::mem::take(&mut graph.vertices);
    let vertex_counters = graph.counters.clone();
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (i, ((mut vertex, outs), c)) in vertices
            .into_iter()
            .zip(vertex_outs)
            .zip(vertex_counters)
            .enumerate()
        {
            let Some(rx) = receivers[i].take() else {
                continue;
            };
            handles.push(scope.spawn(move || -> (Vertex, Result<(), RunError>) {
                for batch in rx {
                    c.rows_in
                        .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    match vertex.push(&batch) {
                        Ok(Some(out)) => {
                            c.rows_out
                                .fetch_add(out.num_rows() as u64, Ordering::Relaxed);
                            if out.num_rows() > 0 {
                                for tx in &outs {
                                    // A closed receiver means a downstream vertex failed; its error is reported.
                                    let _ = tx.send(out.clone());
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => return (vertex, Err(e)),
                    }
                }
                (vertex, Ok(()))
            }));
        }
        let mut source_handles = Vec::new();
        for (((mut reader, spec), outs), c) in readers
            .into_iter()
            .zip(&plan.sources)
            .zip(source_outs)
            .zip(counters)
        {
            source_handles.push(scope.spawn(move || {
                read_source(&mut reader, spec, c, |batch| {
                    for tx in &outs {
                        let _ = tx.send(batch.clone());
                    }
                    Ok(())
                })
            }));
        }
        let mut first_error = None;
        let mut results = Vec::new();
        for h in source_handles {
            match h.join() {
                Ok(Ok(r)) => results.push(r),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(RunError::Output {
                        path: "source thread".into(),
                        error: std::io::Error::other("panicked"),
                    });
                }
            }
        }
        for h in handles {
            match h.join() {
                Ok((vertex, result)) => {
                    graph.vertices.push(vertex);
                    if let Err(e) = result {
                        // Stage errors come before the source errors they cause.
                        first_error = Some(match first_error {
                            Some(prev @ RunError::Stage(_)) => prev,
                            _ => e,
                        });
                    }
                }
                Err(_) => {
                    first_error.get_or_insert(RunError::Output {
                        path: "vertex thread".into(),
                        error: std::io::Error::other("panicked"),
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(results),
        }
    })
}

struct Progress {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(plan: &Plan, graph: &Graph, sources: &[Arc<Counters>]) -> Self {
        use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {prefix:<32} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let mut bars = Vec::new();
        for (spec, c) in plan.sources.iter().zip(sources) {
            let bar = multi.add(
                ProgressBar::new_spinner()
                    .with_style(style.clone())
                    .with_prefix(format!("source {}", spec.name)),
            );
            bars.push((bar, c.clone()));
        }
        for ((name, role), c) in graph.names.iter().zip(&graph.counters) {
            let bar = multi.add(
                ProgressBar::new_spinner()
                    .with_style(style.clone())
                    .with_prefix(format!("{role} {name}")),
            );
            bars.push((bar, c.clone()));
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                for (bar, c) in &bars {
                    let rows_in = c.rows_in.load(Ordering::Relaxed);
                    let rows_out = c.rows_out.load(Ordering::Relaxed);
                    bar.set_message(format!(
                        "in {rows_in:>10}  out {rows_out:>10}  {:>10.0} ev/s",
                        rows_in.max(rows_out) as f64 / secs
                    ));
                    bar.tick();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            for (bar, _) in &bars {
                bar.finish_and_clear();
            }
        });
        Progress {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
