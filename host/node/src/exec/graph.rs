//! A job's vertices for an offline run: file sources read to their end, the
//! stages as rVertices, and sinks, joined by the streams they name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::{Counters, RunError, VertexSummary};
use crate::plan::{Operator, Plan, SinkSpec, SinkTarget, SourceOrigin, SourceSpec};
use crate::rstream::{END, Entry};
use crate::source::{RowError, SourceReader};
use crate::vertex::{self, CtiGen, DeadLetter, Resume, Vertex};
use crate::wasm::Runtime;

/// Entries of one stream with their seqs.
pub(super) type Entries = Vec<(u64, Entry)>;

/// A file source read to its end, making the entries a node's file source makes.
pub(super) struct FileSource {
    pub(super) spec: SourceSpec,
    reader: SourceReader,
    cti: CtiGen,
    /// The next seq of its stream.
    seq: u64,
    rows: u64,
    pub(super) rejected: Vec<RowError>,
    pub(super) late: Vec<DeadLetter>,
    finished: bool,
    pub(super) counters: Arc<Counters>,
}

impl FileSource {
    /// The entries the next chunk of the file makes; after the last chunk
    /// the end marker; then `None`.
    pub(super) fn next(&mut self) -> Result<Option<Entries>, RunError> {
        if self.finished {
            return Ok(None);
        }
        let entries = match self.reader.next_chunk()? {
            Some(chunk) => {
                let line = self.reader.line();
                let p = chunk
                    .punctuate(&self.spec, &mut self.cti, line)
                    .map_err(|error| RunError::Row {
                        source_name: self.spec.name.clone(),
                        error,
                    })?;
                self.rows += p.rows;
                let dead = (p.rejected.len() + p.late.len()) as u64;
                self.counters
                    .rows_in
                    .fetch_add(p.rows + dead, Ordering::Relaxed);
                self.counters.rows_out.fetch_add(p.rows, Ordering::Relaxed);
                self.rejected.extend(p.rejected);
                self.late.extend(p.late);
                p.entries
            }
            None => {
                self.finished = true;
                vec![Entry::Cti(END)]
            }
        };
        let first = self.seq;
        self.seq += entries.len() as u64;
        Ok(Some((first..).zip(entries).collect()))
    }

    fn summary(&self) -> VertexSummary {
        let dead = (self.rejected.len() + self.late.len()) as u64;
        VertexSummary {
            role: "source",
            name: self.spec.name.clone(),
            module: None,
            rows_in: self.rows + dead,
            rows_out: self.rows,
            dead,
        }
    }
}

/// A stage: the rVertex, and the dead-letter batches it wrote.
pub(super) struct Stage {
    pub(super) vertex: Box<Vertex>,
    /// The component's path and short module version (UDF stages).
    module: Option<(String, String)>,
    pub(super) dead: Vec<RecordBatch>,
}

/// A sink writing JSON lines, as a node's sink does.
pub(super) struct Sink {
    out: Box<dyn Write + Send>,
    interval: bool,
    /// The columns it writes (all when `None`).
    columns: Option<Vec<usize>>,
    rows: u64,
    target: String,
    /// For a file: where it is written, and the name it gets at the end.
    partial: Option<(PathBuf, PathBuf)>,
    finished: bool,
    /// The canonical order's held rows (ordered sinks).
    order: Option<crate::sink::Ordered>,
}

/// A stage or a sink: what consumes streams.
pub(super) enum Consumer {
    Stage(Stage),
    Sink(Sink),
}

impl Consumer {
    /// Consumes entry `seq` of input `input`; returns the entries it writes
    /// to its output stream.
    pub(super) fn on_entry(
        &mut self,
        input: usize,
        seq: u64,
        entry: Entry,
        counters: &Counters,
    ) -> Result<Entries, RunError> {
        match self {
            Consumer::Stage(stage) => {
                let fx = stage.vertex.on_entry(input, seq, entry)?;
                for (_, dead) in fx.dead {
                    if let Entry::Batch { batch, .. } = dead {
                        stage.dead.push(batch);
                    }
                }
                let (rows_in, rows_out, _) = stage.vertex.counts();
                counters.rows_in.store(rows_in, Ordering::Relaxed);
                counters.rows_out.store(rows_out, Ordering::Relaxed);
                Ok(fx.output)
            }
            Consumer::Sink(sink) => {
                let io = |error| RunError::Output {
                    path: sink.target.clone(),
                    error,
                };
                let rows = match (entry, &mut sink.order) {
                    (Entry::Batch { batch, .. }, Some(order)) => {
                        let columns = sink.columns.as_deref();
                        order
                            .push(seq, &batch, columns, sink.interval)
                            .map_err(io)?;
                        0
                    }
                    (Entry::Batch { batch, .. }, None) => {
                        let columns = sink.columns.as_deref();
                        crate::sink::write_projected(&mut sink.out, &batch, columns, sink.interval)
                            .map_err(io)?;
                        batch.num_rows() as u64
                    }
                    (Entry::Cti(t), order) => {
                        sink.finished |= t == END;
                        match order {
                            Some(order) => order.release(seq, t, &mut sink.out).map_err(io)?,
                            None => 0,
                        }
                    }
                };
                sink.rows += rows;
                counters.rows_in.fetch_add(rows, Ordering::Relaxed);
                counters.rows_out.fetch_add(rows, Ordering::Relaxed);
                Ok(Vec::new())
            }
        }
    }

    fn label(&self) -> String {
        match self {
            Consumer::Stage(s) if s.module.is_some() => format!("stage {}", s.vertex.name()),
            Consumer::Stage(s) => format!("union {}", s.vertex.name()),
            Consumer::Sink(s) => format!("sink {}", s.target),
        }
    }
}

/// A consumer and where it sits: the stream it writes and its counters.
pub(super) struct Node {
    pub(super) consumer: Consumer,
    /// The stream it writes (stages).
    pub(super) output: Option<String>,
    pub(super) counters: Arc<Counters>,
}

/// The job's vertices: sources, then stages and sinks in plan order.
pub(super) struct Graph {
    pub(super) sources: Vec<FileSource>,
    pub(super) nodes: Vec<Node>,
    /// For each stream, its consumers: (node, input index).
    pub(super) consumers: HashMap<String, Vec<(usize, usize)>>,
}

/// A stage's view for the summary and dead letters.
pub(super) struct StageView<'a> {
    pub(super) component: &'a str,
    pub(super) dead: &'a [RecordBatch],
}

impl Graph {
    /// Opens the sources and sinks and builds the stages of `plan`.
    pub(super) fn build(
        plan: &Plan,
        runtime: &Arc<Runtime>,
        batch_size: usize,
    ) -> Result<Graph, RunError> {
        let mut graph = Graph {
            sources: Vec::new(),
            nodes: Vec::new(),
            consumers: HashMap::new(),
        };
        let mut schemas: HashMap<String, SchemaRef> = HashMap::new();
        for spec in &plan.sources {
            if let SourceOrigin::Stream(stream) = &spec.origin {
                return Err(RunError::Unsupported(format!(
                    "source `{}` reads the ingest stream `{stream}`, which only a node has; `weir run` reads files (give the source a `path`, or submit the job to a node with `weir job submit`)",
                    spec.name
                )));
            }
            // A followed file is read to its current end: offline, that is
            // the whole input.
            let reader = SourceReader::open(spec, batch_size)?;
            schemas.insert(spec.name.clone(), reader.schema());
            graph.sources.push(FileSource {
                spec: spec.clone(),
                reader,
                cti: CtiGen::new(spec.cti),
                seq: 0,
                rows: 0,
                rejected: Vec::new(),
                late: Vec::new(),
                finished: false,
                counters: Arc::default(),
            });
        }
        for spec in &plan.stages {
            let mut inputs = Vec::with_capacity(spec.inputs.len());
            for name in &spec.inputs {
                let schema = schemas.get(name).ok_or_else(|| {
                    RunError::Unsupported(format!(
                        "stage `{}`: input `{name}` is not a source or an earlier stage",
                        spec.name
                    ))
                })?;
                inputs.push((name.as_str(), schema));
            }
            let temporal =
                match &spec.operator {
                    Operator::Temporal(t) => Some((t.make)().map_err(|e| {
                        RunError::Unsupported(format!("stage `{}`: {e}", spec.name))
                    })?),
                    _ => None,
                };
            // A temporal operator's inputs (a join's) may differ; it names them.
            let input = match &temporal {
                Some(op) => op.input_schemas()[0].clone(),
                None => crate::schema::merged_input(&spec.name, &inputs)
                    .map_err(RunError::Unsupported)?,
            };
            let (operator, module) = match &spec.operator {
                Operator::Udf(udf) => {
                    let stage = crate::wasm::stage(runtime, &spec.name, udf, input.clone())?;
                    let module = (
                        stage.module().path.clone(),
                        stage.module().version.short().to_string(),
                    );
                    (vertex::Operator::Udf(Box::new(stage)), Some(module))
                }
                Operator::Union => (vertex::Operator::Union, None),
                Operator::Temporal(_) => match temporal {
                    Some(op) => (vertex::Operator::Temporal(op), None),
                    None => unreachable!("made above"),
                },
            };
            let n = spec.inputs.len();
            let vertex = Vertex::load(
                &spec.name,
                operator,
                input,
                n,
                spec.recovery,
                Resume::Fresh(vec![0; n]),
            )?
            // Offline keeps no snapshots: a failed run runs again from the start.
            .without_snapshots();
            schemas.insert(spec.name.clone(), vertex.output_schema());
            graph.add(
                &spec.inputs,
                Consumer::Stage(Stage {
                    vertex: Box::new(vertex),
                    module,
                    dead: Vec::new(),
                }),
                Some(spec.name.clone()),
            );
        }
        for (i, spec) in plan.sinks.iter().enumerate() {
            let columns = match (&spec.columns, schemas.get(&spec.input)) {
                (Some(names), Some(schema)) => Some(
                    crate::sink::projection(schema, names)
                        .map_err(|e| RunError::Unsupported(format!("sinks[{i}]: {e}")))?,
                ),
                _ => None,
            };
            let mut sink = open_sink(spec)?;
            sink.columns = columns;
            graph.add(
                std::slice::from_ref(&spec.input),
                Consumer::Sink(sink),
                None,
            );
        }
        Ok(graph)
    }

    fn add(&mut self, inputs: &[String], consumer: Consumer, output: Option<String>) {
        let index = self.nodes.len();
        for (i, name) in inputs.iter().enumerate() {
            self.consumers
                .entry(name.clone())
                .or_default()
                .push((index, i));
        }
        self.nodes.push(Node {
            consumer,
            output,
            counters: Arc::default(),
        });
    }

    /// Progress labels and counters, in plan order.
    pub(super) fn labels(&self) -> Vec<(String, Arc<Counters>)> {
        let sources = self
            .sources
            .iter()
            .map(|s| (format!("source {}", s.spec.name), s.counters.clone()));
        let nodes = self
            .nodes
            .iter()
            .map(|n| (n.consumer.label(), n.counters.clone()));
        sources.chain(nodes).collect()
    }

    /// Checks that the end marker reached every vertex, and closes the sinks
    /// (a file sink gets its final name).
    pub(super) fn finish(&mut self) -> Result<(), RunError> {
        for node in &mut self.nodes {
            match &mut node.consumer {
                Consumer::Stage(stage) if !stage.vertex.position().finished => {
                    return Err(RunError::Unsupported(format!(
                        "stage `{}` did not receive the end of its inputs",
                        stage.vertex.name()
                    )));
                }
                Consumer::Stage(_) => {}
                Consumer::Sink(sink) => {
                    let io = |error| RunError::Output {
                        path: sink.target.clone(),
                        error,
                    };
                    if !sink.finished {
                        return Err(io(std::io::Error::other(
                            "the sink did not receive the end of its input",
                        )));
                    }
                    sink.out.flush().map_err(io)?;
                    if let Some((tmp, fin)) = sink.partial.take() {
                        std::fs::rename(&tmp, &fin).map_err(io)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The stages, in plan order.
    pub(super) fn stages(&self) -> impl Iterator<Item = StageView<'_>> {
        self.nodes.iter().filter_map(|n| match &n.consumer {
            Consumer::Stage(s) => Some(StageView {
                component: s.module.as_ref().map_or("", |m| m.0.as_str()),
                dead: &s.dead,
            }),
            Consumer::Sink(_) => None,
        })
    }

    /// Counts per vertex: sources, stages, sinks.
    pub(super) fn summary(&self) -> Vec<VertexSummary> {
        let mut out: Vec<VertexSummary> = self.sources.iter().map(FileSource::summary).collect();
        for node in &self.nodes {
            out.push(match &node.consumer {
                Consumer::Stage(s) => {
                    let (rows_in, rows_out, dead) = s.vertex.counts();
                    VertexSummary {
                        role: s.vertex.role(),
                        name: s.vertex.name().to_string(),
                        module: s.module.as_ref().map(|m| m.1.clone()),
                        rows_in,
                        rows_out,
                        dead,
                    }
                }
                Consumer::Sink(s) => VertexSummary {
                    role: "sink",
                    name: s.target.clone(),
                    module: None,
                    rows_in: s.rows,
                    rows_out: s.rows,
                    dead: 0,
                },
            });
        }
        out
    }
}

fn open_sink(spec: &SinkSpec) -> Result<Sink, RunError> {
    let sink = |out: Box<dyn Write + Send>, target: String, partial| Sink {
        out,
        interval: spec.interval,
        columns: None,
        rows: 0,
        target,
        partial,
        finished: false,
        order: spec.ordered.then(crate::sink::Ordered::new),
    };
    match &spec.target {
        SinkTarget::Stdout => Ok(sink(
            Box::new(BufWriter::new(std::io::stdout())),
            "stdout".into(),
            None,
        )),
        SinkTarget::Discard => Ok(sink(Box::new(std::io::sink()), "discard".into(), None)),
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
                return Ok(sink(
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
            Ok(sink(
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
