//! Continuous jobs on a node: each source, stage and sink of a submitted job
//! runs as a vertex on its own thread, reading and writing rStreams, and
//! resumes after a crash from its latest durable snapshot.
//!
//! Exactly once, on one node: every write (entries, snapshots, sink and file
//! positions) goes through one committer in order, so what survives a crash is
//! a prefix of what was written. A vertex resumed from its snapshot rewrites
//! the entries it wrote after it; the rStream dedups those that survived and
//! stores those that were lost. A file sink records `(next seq, file length)`
//! after each fsync and truncates the file to that length on restart. A file
//! source records its read position in the same transaction as the entries it
//! made from what it read.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::access::FileAccess;
use crate::filter::Filter;
use crate::patch::{Change, Queue, Requested, Timeline};
use crate::plan::UdfSpec;
use crate::plan::{
    ErrorPolicy, Operator, Plan, SinkTarget, SourceFormat, SourceOrigin, SourceSpec, StageSpec,
};
use crate::rstream::{END, Entry, Streams};
use crate::schema::{describe, event_schema, user_fields};
use crate::source::SourceReader;
use crate::stage::UdfStage;
use crate::store::Op;
use crate::vertex::{
    self, CtiGen, DeadLetter, Effects, Vertex, VertexSnapshot, dead_batch, dead_fields,
};
use crate::wasm::Runtime;
use crate::wasm::instance::KeyedState;

/// Entries a vertex reads per input per round.
const READ_CHUNK: usize = 64;
/// How long an idle vertex waits for input before checking whether to stop.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// The most bytes a file source reads per round (more when a line is longer).
const FILE_CHUNK: usize = 4 << 20;
/// The longest line a file source takes.
const MAX_LINE: usize = 1 << 30;

/// A job as the node stores it: the job file's text and where it was, with the
/// module version of each component it names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job name.
    pub name: String,
    /// Incarnation: a job submitted again after a cancel gets a new id and new streams.
    pub id: u64,
    /// The job file's path (anchors relative paths).
    pub path: PathBuf,
    /// The job file's text.
    pub text: String,
    /// Component path (as resolved from the job file) → module version.
    pub modules: BTreeMap<PathBuf, String>,
}

impl JobRecord {
    /// The prefix of the job's stream names.
    pub fn prefix(&self) -> String {
        format!("{}@{}", self.name, self.id)
    }

    /// The full name of the job's stream `name` (a source's or stage's output).
    pub fn stream(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix())
    }
}

/// One vertex's state, as `weir job status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VertexStatus {
    /// Name (the sink's file for sinks).
    pub name: String,
    /// `source`, `stage` or `sink`.
    pub role: String,
    /// `starting`, `running`, `finished` or `failed`.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Per input: stream and next seq to read.
    pub inputs: Vec<(String, u64)>,
    /// Output stream and next seq to write.
    pub output: Option<(String, u64)>,
    /// Rows in.
    pub rows_in: u64,
    /// Rows out.
    pub rows_out: u64,
    /// Rows dead-lettered.
    pub dead: u64,
    /// Latest snapshot number.
    pub snapshot: u64,
    /// Module version (UDF stages).
    pub module: Option<String>,
    /// Patch timeline entries applied (UDF stages).
    #[serde(default)]
    pub patches: u64,
    /// A patch is scheduled for the next CTI.
    #[serde(default)]
    pub pending: bool,
    /// Why the last scheduled patch was not applied.
    #[serde(default)]
    pub refused: Option<String>,
    /// Where a UDF stage stopped when its UDF failed: (input position of the
    /// batch it failed on, CTIs written). A patch or filter recorded there
    /// resumes it.
    #[serde(default)]
    pub stuck_at: Option<(u64, u64)>,
    /// Runtime filters in effect (UDF stages).
    #[serde(default)]
    pub filters: Vec<String>,
    /// Input rows runtime filters dropped (counted in `rows_in`).
    #[serde(default)]
    pub filtered: u64,
    /// Requests accepted (durably queued), not yet handed to the vertex.
    #[serde(skip)]
    requests: Vec<Requested>,
    /// A followed file's source was asked to end at the file's end.
    #[serde(default)]
    pub ending: bool,
    /// What became of the latest requests the vertex settled: taken into
    /// the timeline (`None`) or refused (why), by request id.
    #[serde(skip)]
    outcomes: BTreeMap<u64, Option<String>>,
}

/// A job's state, as `weir job status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    /// Name.
    pub name: String,
    /// Incarnation.
    pub id: u64,
    /// `running`, `finished` or `failed`.
    pub state: String,
    /// Its vertices: sources, stages, sinks.
    pub vertices: Vec<VertexStatus>,
}

type Shared = Arc<Mutex<VertexStatus>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Running {
    record: JobRecord,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    vertices: Vec<Shared>,
}

struct Inner {
    streams: Streams,
    runtime: Arc<Runtime>,
    running: Mutex<BTreeMap<String, Running>>,
    /// Per stream: each reader's position in its latest durable snapshot.
    readers: Mutex<HashMap<u64, HashMap<String, u64>>>,
    /// Where job files may read and write.
    files: FileAccess,
    /// Per UDF stage (by queue key): its accepted changes waiting for a CTI,
    /// as last queued for storage. Every change to a queue is made here
    /// and queued for commit under this lock, so commits keep its order.
    queues: Mutex<HashMap<String, Queue>>,
}

/// The jobs of a node.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

const JOB_PREFIX: &str = "job/";
/// Per job prefix: vertex snapshots, sink positions, followed-file positions.
const SNAPSHOTS: &str = "snap/";
const SINKS: &str = "sink/";
const FILES: &str = "file/";
const PATCHES: &str = "patch/";
/// Per job prefix: each UDF stage's queue of accepted, not yet applied changes.
const QUEUES: &str = "queue/";
const MODULE_PREFIX: &str = "module/";
const NEXT_ID: &str = "jobs/next-id";

/// What a vertex thread does.
enum Task {
    Vertex {
        vertex: Box<Vertex>,
        inputs: Vec<u64>,
        output: u64,
        dead: u64,
        key: String,
    },
    File {
        spec: SourceSpec,
        batch_size: usize,
        output: u64,
        dead: u64,
        key: String,
        at: Box<FilePosition>,
    },
    Sink {
        input: u64,
        /// `None`: a discard sink.
        path: Option<PathBuf>,
        interval: bool,
        key: String,
        at: SinkPosition,
    },
}

/// A file source's durable position, written with the entries it made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FilePosition {
    /// Bytes consumed.
    pub offset: u64,
    /// Lines consumed.
    pub line: u64,
    /// Next output seq.
    pub output: u64,
    /// Next dead-letter seq.
    pub dead: u64,
    /// CTI generation.
    pub cti: CtiGen,
    /// The end marker was written.
    pub finished: bool,
    /// Rows written.
    pub rows: u64,
    /// Rows dead-lettered.
    pub rejected: u64,
}

/// A file sink's durable position: every entry below `next` is in the first
/// `len` bytes of the file, fsynced.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct SinkPosition {
    /// Next input seq to write.
    pub next: u64,
    /// File length.
    pub len: u64,
    /// Rows written.
    pub rows: u64,
    /// The end marker was read.
    pub finished: bool,
}

impl Jobs {
    /// The jobs of a node with these streams, whose file sources and sinks
    /// stay within `files`; call [`Jobs::resume`] to start them.
    pub fn new(streams: Streams, runtime: Arc<Runtime>, files: FileAccess) -> Jobs {
        Jobs {
            inner: Arc::new(Inner {
                streams,
                runtime,
                files,
                running: Mutex::new(BTreeMap::new()),
                readers: Mutex::new(HashMap::new()),
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts every stored job from its snapshots (after a restart).
    pub fn resume(&self) -> anyhow::Result<()> {
        for (key, value) in self.inner.streams.meta_prefix(JOB_PREFIX)? {
            let record: JobRecord = serde_json::from_slice(&value)
                .with_context(|| format!("job record {key} does not decode"))?;
            self.build_and_start(record);
        }
        Ok(())
    }

    /// Starts a stored job from its snapshots; one that cannot start stays
    /// listed as failed, with the reason.
    fn build_and_start(&self, record: JobRecord) {
        let name = record.name.clone();
        match self.build(&record, true) {
            Ok(tasks) => self.start(record, tasks),
            Err(e) => {
                tracing::error!("job `{name}` cannot resume: {e:#}");
                let failed = VertexStatus {
                    name: name.clone(),
                    role: "job".into(),
                    state: "failed".into(),
                    error: Some(format!("{e:#}")),
                    ..VertexStatus::default()
                };
                lock(&self.inner.running).insert(
                    name,
                    Running {
                        record,
                        stop: Arc::default(),
                        threads: Vec::new(),
                        vertices: vec![Arc::new(Mutex::new(failed))],
                    },
                );
            }
        }
    }

    /// Validates and starts a job. `modules` are the bytes of the components
    /// the job file names, by resolved path.
    pub fn submit(
        &self,
        path: &Path,
        text: &str,
        modules: Vec<(PathBuf, Vec<u8>)>,
    ) -> anyhow::Result<JobStatus> {
        let plan = crate::job::parse_with(path, text, false)?;
        if let Some(r) = lock(&self.inner.running).get(&plan.name) {
            bail!(
                "job `{}` is already on this node (id {}); cancel it first with `weir job cancel {}`",
                plan.name,
                r.record.id,
                plan.name
            );
        }
        let streams = &self.inner.streams;
        let mut versions = BTreeMap::new();
        let mut ops = Vec::new();
        for (component, bytes) in modules {
            // Refuses what is not a loadable component; keeps it compiled for `build`.
            let module = self
                .inner
                .runtime
                .load(&component.display().to_string(), &bytes)?;
            let version = module.version.hex().to_string();
            ops.push(put(&format!("{MODULE_PREFIX}{version}"), bytes));
            versions.insert(component, version);
        }
        for stage in &plan.stages {
            if let Operator::Udf(udf) = &stage.operator
                && !versions.contains_key(&udf.component)
            {
                bail!(
                    "stage `{}`: component {} was not sent with the job",
                    stage.name,
                    udf.component.display()
                );
            }
        }
        let id = streams
            .meta(NEXT_ID)?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1);
        let record = JobRecord {
            name: plan.name.clone(),
            id,
            path: path.to_path_buf(),
            text: text.to_string(),
            modules: versions,
        };
        // Validate everything before anything is stored or created, so a
        // refused job leaves the node as it was.
        self.build(&record, false)?;
        ops.push(put(NEXT_ID, (id + 1).to_string().into_bytes()));
        streams.commit_meta(ops)?.wait()?;
        let tasks = self.build(&record, true)?;
        streams
            .commit_meta(vec![put(
                &format!("{JOB_PREFIX}{}", record.name),
                serde_json::to_vec(&record)?,
            )])?
            .wait()?;
        let name = record.name.clone();
        self.start(record, tasks);
        self.status(Some(&name))?
            .pop()
            .context("the job vanished as it started")
    }

    /// Ends the followed file of source `source` of job `job`: the source
    /// reads the file to its end as it is then, writes the end CTI and
    /// finishes. The request is durable before this returns.
    pub fn end_source(&self, job: &str, source: &str) -> anyhow::Result<String> {
        let (record, plan) = self.running_plan(job)?;
        let spec = named(&plan.sources, |s| &s.name, source, job, "source")?;
        match &spec.origin {
            SourceOrigin::File { follow: true } => {}
            SourceOrigin::File { follow: false } => {
                bail!("source `{source}` of job `{job}` reads a plain file, which ends by itself")
            }
            _ => bail!(
                "source `{source}` of job `{job}` reads an ingest stream; end it with `weir stream close`"
            ),
        }
        let key = format!("{FILES}{}/{source}", record.prefix());
        self.inner
            .streams
            .commit_meta(vec![put(&ending_key(&key), Vec::new())])?
            .wait()?;
        if let Some(running) = lock(&self.inner.running).get(job) {
            for v in &running.vertices {
                let mut v = lock(v);
                if v.role == "source" && v.name == source {
                    v.ending = true;
                }
            }
        }
        Ok(format!(
            "source `{source}` of job `{job}` ends at the end of {}; the job finishes once all its inputs have ended",
            spec.path.display()
        ))
    }

    /// Stops a job and forgets it; its streams are collected.
    pub fn cancel(&self, name: &str) -> anyhow::Result<String> {
        let running = lock(&self.inner.running).remove(name);
        let Some(running) = running else {
            bail!("no job `{name}` on this node (jobs: {})", self.names());
        };
        running.stop.store(true, Ordering::Relaxed);
        for t in running.threads {
            let _ = t.join();
        }
        let streams = &self.inner.streams;
        let prefix = running.record.prefix();
        let mut ops = vec![Op::DeleteMeta {
            key: format!("{JOB_PREFIX}{name}"),
        }];
        for kind in [SNAPSHOTS, SINKS, FILES, PATCHES, QUEUES] {
            let key = format!("{kind}{prefix}/");
            for (k, _) in streams.meta_prefix(&key)? {
                if kind == SNAPSHOTS {
                    ops.push(Op::ClearState { owner: k.clone() });
                }
                ops.push(Op::DeleteMeta { key: k });
            }
        }
        streams.commit_meta(ops)?.wait()?;
        let queued = format!("{QUEUES}{prefix}/");
        lock(&self.inner.queues).retain(|key, _| !key.starts_with(&queued));
        let (reader_part, stream_part) = (format!("/{prefix}/"), running.record.stream(""));
        for list in lock(&self.inner.readers).values_mut() {
            list.retain(|reader, _| !reader.contains(&reader_part));
        }
        for info in streams.list() {
            if info.name.starts_with(&stream_part) {
                let (next, ..) = streams.positions(info.id).unwrap_or_default();
                streams.gc(info.id, next)?;
            }
        }
        Ok(format!(
            "job `{name}` cancelled; its streams were collected"
        ))
    }

    /// Deploys component `bytes` (named `origin` in messages) to stage
    /// `stage` of job `job`: validates it against the stage (world, imports,
    /// instantiation, `init` with the stage's parameters, input columns, and
    /// the same output columns as the running version), optionally shadows it
    /// on recent input, stores it in the registry and switches the stage at its
    /// next CTI. A refused module leaves the job untouched.
    pub fn deploy(
        &self,
        job: &str,
        stage: &str,
        origin: &str,
        bytes: Vec<u8>,
        shadow: Option<u64>,
    ) -> anyhow::Result<PatchReport> {
        let module = self
            .inner
            .runtime
            .load(origin, &bytes)
            .with_context(|| format!("deploy to job `{job}` stage `{stage}` refused"))?;
        let shadow = self.check_patch(job, stage, &module, shadow)?;
        let version = module.version.hex().to_string();
        self.inner
            .streams
            .commit_meta(vec![put(&format!("{MODULE_PREFIX}{version}"), bytes)])?
            .wait()?;
        let mut report = self.patch(job, stage, version, Change::Deploy)?;
        report.shadow = shadow;
        Ok(report)
    }

    /// Returns stage `stage` of job `job` to an earlier version: `to` (a
    /// prefix of a version in its history), or the version before the current one.
    pub fn rollback(
        &self,
        job: &str,
        stage: &str,
        to: Option<&str>,
    ) -> anyhow::Result<PatchReport> {
        let timeline = self.timeline(job, stage)?;
        let n = timeline.patches.len();
        let target = match to {
            Some(prefix) => {
                let matching: Vec<&str> = timeline
                    .versions()
                    .into_iter()
                    .filter(|v| v.starts_with(&prefix.to_ascii_lowercase()))
                    .collect();
                match matching.as_slice() {
                    [one] => one.to_string(),
                    [] => bail!(
                        "stage `{stage}` of job `{job}` never ran a version {prefix}; its versions: {}",
                        short_list(&timeline.versions())
                    ),
                    _ => bail!(
                        "version prefix {prefix} is ambiguous in stage `{stage}`: {}",
                        short_list(&matching)
                    ),
                }
            }
            None => timeline
                .previous(n)
                .with_context(|| {
                    format!(
                        "stage `{stage}` of job `{job}` runs its first version {}; there is nothing to roll back to",
                        short(timeline.version_after(n))
                    )
                })?
                .to_string(),
        };
        let module = load_module(&self.inner.runtime, &self.inner.streams, &target, stage)?;
        self.check_patch(job, stage, &module, None)?;
        self.patch(job, stage, target, Change::Rollback)
    }

    /// Adds a runtime filter to stage `stage` of job `job`: from the stage's
    /// next CTI on, the input rows `expr` matches are dropped before the UDF
    /// (recorded in the stage's timeline, so replay drops the same rows).
    pub fn filter_add(&self, job: &str, stage: &str, expr: &str) -> anyhow::Result<PatchReport> {
        let (filter, active) = self.check_filter(job, stage, expr)?;
        if let Some((same, _)) = active.iter().find(|(_, a)| a.same(&filter)) {
            bail!("stage `{stage}` of job `{job}` already has filter `{same}`");
        }
        self.patch(
            job,
            stage,
            String::new(),
            Change::FilterAdd(filter.text().to_string()),
        )
    }

    /// Removes runtime filter `expr` from stage `stage` of job `job`, from
    /// the stage's next CTI on.
    pub fn filter_remove(&self, job: &str, stage: &str, expr: &str) -> anyhow::Result<PatchReport> {
        let (filter, active) = self.check_filter(job, stage, expr)?;
        // The filter as it was added: that text is what the timeline removes.
        let Some((text, _)) = active.iter().find(|(_, a)| a.same(&filter)) else {
            let texts: Vec<String> = active.iter().map(|(t, _)| t.clone()).collect();
            bail!(
                "stage `{stage}` of job `{job}` has no filter `{}`; its filters: {}",
                filter.text(),
                crate::filter::describe(&texts, "none")
            );
        };
        self.patch(
            job,
            stage,
            String::new(),
            Change::FilterRemove(text.clone()),
        )
    }

    /// Parses `expr` against the stage's input and returns it with the
    /// filters in effect (text as added, and parsed), if the stage can take
    /// a change.
    fn check_filter(
        &self,
        job: &str,
        stage: &str,
        expr: &str,
    ) -> anyhow::Result<(Filter, Vec<(String, Filter)>)> {
        let (record, spec, _) = self.udf_stage(job, stage)?;
        self.check_running(job, stage, "filter refused")?;
        let input = self.inner.streams.info(&record.stream(&spec.inputs[0]))?;
        let schema = event_schema(&input.fields());
        let filter = Filter::parse(expr, &schema)
            .with_context(|| format!("filter refused for job `{job}` stage `{stage}`"))?;
        // In effect once the changes already queued are made.
        let timeline = self.timeline(job, stage)?;
        let applied = timeline
            .filters(timeline.patches.len())
            .into_iter()
            .map(str::to_string)
            .collect();
        let queue_key = queue_key(&stage_key(&record, stage));
        let texts = self.with_queue(&queue_key, |q| q.filters_after(applied))?;
        let mut active = Vec::new();
        for text in texts {
            let parsed = Filter::parse(&text, &schema)?;
            active.push((text, parsed));
        }
        Ok((filter, active))
    }

    /// The status of stage `stage` of `job`, if it can take a change: the
    /// job has neither finished nor failed.
    fn check_running(&self, job: &str, stage: &str, refused: &str) -> anyhow::Result<VertexStatus> {
        let status = lock(self.stage_status(job, stage)?.as_ref()).clone();
        match status.state.as_str() {
            "finished" => bail!("{refused}: the job has finished"),
            // A UDF stage that failed on a batch can resume past it with a fix.
            "failed" if status.stuck_at.is_some() => Ok(status),
            "failed" => bail!(
                "{refused}: the stage failed ({}); cancel and resubmit the job",
                status.error.clone().unwrap_or_default()
            ),
            _ => Ok(status),
        }
    }

    /// Every version stage `stage` of job `job` ran, with the input position
    /// where each took effect.
    pub fn history(&self, job: &str, stage: &str) -> anyhow::Result<Vec<HistoryEntry>> {
        let timeline = self.timeline(job, stage)?;
        let mut out = vec![HistoryEntry {
            version: timeline.original.clone(),
            position: 0,
            ctis: 0,
            why: "submitted with the job".into(),
            at_ms: 0,
            current: false,
        }];
        for p in &timeline.patches {
            out.push(HistoryEntry {
                version: p.version.clone(),
                position: p.position,
                ctis: p.ctis,
                why: p.change.describe(),
                at_ms: p.at_ms,
                current: false,
            });
        }
        if let Some(last) = out.last_mut() {
            last.current = true;
        }
        Ok(out)
    }

    /// The durable timeline of a UDF stage of a job on this node.
    fn timeline(&self, job: &str, stage: &str) -> anyhow::Result<Timeline> {
        let (record, _, udf) = self.udf_stage(job, stage)?;
        let original = record
            .modules
            .get(&udf.component)
            .with_context(|| format!("job `{job}` recorded no module for stage `{stage}`"))?;
        Ok(
            stored(&self.inner.streams, &stage_timeline_key(&record, stage))?
                .unwrap_or_else(|| Timeline::new(original)),
        )
    }

    /// The record of `job`, its stage `stage` and that stage's UDF.
    fn udf_stage(&self, job: &str, stage: &str) -> anyhow::Result<(JobRecord, StageSpec, UdfSpec)> {
        let (record, plan) = self.running_plan(job)?;
        let spec = named(&plan.stages, |s| &s.name, stage, job, "stage")?;
        match &spec.operator {
            Operator::Udf(udf) => Ok((record, spec.clone(), udf.clone())),
            Operator::Union => {
                bail!("stage `{stage}` of job `{job}` is a union; it runs no UDF to patch")
            }
        }
    }

    /// The record of running job `job` and its plan.
    fn running_plan(&self, job: &str) -> anyhow::Result<(JobRecord, Plan)> {
        let record = lock(&self.inner.running)
            .get(job)
            .map(|r| r.record.clone())
            .with_context(|| format!("no job `{job}` on this node (jobs: {})", self.names()))?;
        let plan = crate::job::parse_with(&record.path, &record.text, false)?;
        Ok((record, plan))
    }

    /// The shared status of the vertex of stage `stage` of `job`.
    fn stage_status(&self, job: &str, stage: &str) -> anyhow::Result<Shared> {
        lock(&self.inner.running)
            .get(job)
            .and_then(|r| {
                r.vertices
                    .iter()
                    .find(|v| {
                        let v = lock(v);
                        v.role == "stage" && v.name == stage
                    })
                    .cloned()
            })
            .with_context(|| format!("job `{job}` runs no stage `{stage}` on this node"))
    }

    /// Checks `module` against the running stage; with `shadow`, runs it and
    /// the running version on the stage's last `shadow` input rows.
    fn check_patch(
        &self,
        job: &str,
        stage: &str,
        module: &crate::wasm::Module,
        shadow: Option<u64>,
    ) -> anyhow::Result<Option<ShadowReport>> {
        let refused = || {
            format!(
                "module {} refused for job `{job}` stage `{stage}`",
                module.version
            )
        };
        let (record, spec, udf) = self.udf_stage(job, stage)?;
        let status = self.check_running(job, stage, &refused())?;
        if status
            .module
            .as_deref()
            .is_some_and(|m| module.version.hex().starts_with(m))
        {
            bail!("{}: the stage already runs it", refused());
        }
        let streams = &self.inner.streams;
        let input = streams.info(&record.stream(&spec.inputs[0]))?;
        let input_schema = event_schema(&input.fields());
        let new = UdfStage::with_module(
            &self.inner.runtime,
            stage,
            &udf,
            module.clone(),
            input_schema.clone(),
        )
        .with_context(refused)?;
        let output = streams.info(&record.stream(stage))?.fields();
        let writes = user_fields(&new.output_schema());
        let same = |a: &[crate::schema::Field], b: &[crate::schema::Field]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.name == y.name && x.ty == y.ty && x.nullable == y.nullable)
        };
        if !same(&writes, &output) {
            bail!(
                "{}: it writes {} but the stage's output stream has {}; stages and sinks downstream read those columns, so a patch must keep them (submit a new job to change them)",
                refused(),
                describe(&writes),
                describe(&output)
            );
        }
        let Some(rows) = shadow else {
            return Ok(None);
        };
        let current = status.module.as_deref().unwrap_or_default();
        let timeline = self.timeline(job, stage)?;
        let running = timeline
            .versions()
            .into_iter()
            .find(|v| v.starts_with(current))
            .map(str::to_string)
            .with_context(refused)?;
        let old_module = load_module(&self.inner.runtime, streams, &running, stage)?;
        let mut old = UdfStage::with_module(
            &self.inner.runtime,
            stage,
            &udf,
            old_module,
            input_schema.clone(),
        )?;
        // Both see what the stage sees: the rows its runtime filters keep.
        let mut filters = Vec::new();
        for text in timeline.filters(timeline.patches.len()) {
            filters.push(crate::filter::Filter::parse(text, &input_schema)?);
        }
        old.set_filters(filters.clone());
        let mut new = new;
        new.set_filters(filters);
        let report = shadow_run(streams, input.id, rows, old, new)
            .with_context(|| format!("shadow run of module {} failed", module.version))?;
        Ok(Some(report))
    }

    /// Hands a switch to `version` to the stage's vertex and waits (a few
    /// seconds at most) until it took effect at a CTI and is durable.
    fn patch(
        &self,
        job: &str,
        stage: &str,
        version: String,
        change: Change,
    ) -> anyhow::Result<PatchReport> {
        let shared = self.stage_status(job, stage)?;
        let stuck = {
            let s = lock(&shared);
            s.stuck_at.filter(|_| s.state == "failed")
        };
        if let Some(at) = stuck {
            return self.unstick(job, stage, version, change, at);
        }
        let scheduled = std::time::Instant::now();
        let describe_change = change.describe();
        let (record, _, _) = self.udf_stage(job, stage)?;
        let request = self.enqueue(&queue_key(&stage_key(&record, stage)), &version, &change)?;
        let id = request.id;
        let (before, from) = {
            let mut s = lock(&shared);
            s.requests.push(request);
            (s.patches, s.module.clone().unwrap_or_default())
        };
        let mut report = PatchReport {
            job: job.to_string(),
            stage: stage.to_string(),
            from,
            to: version.clone(),
            change: describe_change.clone(),
            applied: None,
            switch_us: 0,
            shadow: None,
        };
        wait_status(&shared, |s| {
            if let Some(Some(why)) = s.outcomes.get(&id) {
                if change.is_module() {
                    bail!(
                        "the stage could not switch to module {}: {why}",
                        short(&version)
                    );
                }
                bail!("the stage could not make the change ({describe_change}): {why}");
            }
            if s.state == "failed" {
                bail!("the stage failed: {}", s.error.clone().unwrap_or_default());
            }
            Ok(s.outcomes.contains_key(&id))
        })?;
        // Anything queued before this barrier is durable once it is.
        self.inner.streams.commit_meta(Vec::new())?.wait()?;
        report.switch_us = scheduled.elapsed().as_micros() as u64;
        let timeline = self.timeline(job, stage)?;
        if let Some(p) = timeline.patches.get(before as usize..).and_then(|ps| {
            ps.iter()
                .find(|p| p.change == change && (!change.is_module() || p.version == version))
        }) {
            report.applied = Some((p.position, p.ctis));
            report.to.clone_from(&p.version);
        }
        Ok(report)
    }

    /// Makes `change` to a stage that failed on the batch at `at` (input
    /// position, CTIs written): records it in the timeline at that position,
    /// then restarts the job from its snapshots, so the stage replays up to
    /// the batch and runs it with the change (a fixed module, or a filter
    /// dropping the poison rows). Nothing the stage wrote is lost or doubled:
    /// the replay rewrites the same entries up to there.
    fn unstick(
        &self,
        job: &str,
        stage: &str,
        version: String,
        change: Change,
        at: (u64, u64),
    ) -> anyhow::Result<PatchReport> {
        let started = std::time::Instant::now();
        let (record, _, _) = self.udf_stage(job, stage)?;
        let key = stage_timeline_key(&record, stage);
        let mut timeline = self.timeline(job, stage)?;
        let n = timeline.patches.len();
        let from = timeline.version_after(n).to_string();
        let version = if change.is_module() {
            version
        } else {
            from.clone()
        };
        if let Some(last) = timeline.patches.last().filter(|p| p.position > at.0) {
            bail!(
                "stage `{stage}` failed at input position {} but its timeline already has a change at {}",
                at.0,
                last.position
            );
        }
        let describe_change = change.describe();
        timeline.patches.push(crate::patch::Patch {
            position: at.0,
            ctis: at.1,
            version: version.clone(),
            change,
            at_ms: crate::patch::now_ms(),
        });
        self.inner
            .streams
            .commit_meta(vec![put(&key, postcard::to_allocvec(&timeline)?)])?
            .wait()?;
        tracing::info!(
            job,
            stage,
            position = at.0,
            "{describe_change}: resuming the failed stage"
        );
        self.restart(job)?;
        // Wait until the stage is past the batch it failed on, or fails again.
        let shared = self.stage_status(job, stage)?;
        wait_status(&shared, |s| {
            if s.state == "failed" {
                bail!(
                    "{describe_change} recorded at input position {} of stage `{stage}` and the job restarted, but the stage failed again: {}",
                    at.0,
                    s.error.clone().unwrap_or_default()
                );
            }
            Ok(s.rows_in > at.0 || s.state == "finished")
        })?;
        Ok(PatchReport {
            job: job.to_string(),
            stage: stage.to_string(),
            from: short(&from).to_string(),
            to: version,
            change: describe_change,
            applied: Some(at),
            switch_us: started.elapsed().as_micros() as u64,
            shadow: None,
        })
    }

    /// Calls `f` with the queue at `queue_key` (read from storage the first time).
    fn with_queue<T>(&self, queue_key: &str, f: impl FnOnce(&Queue) -> T) -> anyhow::Result<T> {
        let mut queues = lock(&self.inner.queues);
        if !queues.contains_key(queue_key) {
            let stored: Queue = stored(&self.inner.streams, queue_key)?.unwrap_or_default();
            queues.insert(queue_key.to_string(), stored);
        }
        Ok(f(&queues[queue_key]))
    }

    /// Appends a change to the queue at `queue_key` and returns once the
    /// queue holding it is durable: an accepted change survives a crash.
    fn enqueue(
        &self,
        queue_key: &str,
        version: &str,
        change: &Change,
    ) -> anyhow::Result<Requested> {
        self.with_queue(queue_key, |_| ())?;
        let (request, ticket) = {
            let mut queues = lock(&self.inner.queues);
            let queue = queues.entry(queue_key.to_string()).or_default();
            let id = queue.push(version.to_string(), change.clone());
            let request = queue
                .waiting
                .last()
                .cloned()
                .with_context(|| format!("request {id} vanished from queue {queue_key}"))?;
            let ticket = self
                .inner
                .streams
                .commit_meta(vec![put(queue_key, postcard::to_allocvec(queue)?)])?;
            (request, ticket)
        };
        ticket.wait()?;
        Ok(request)
    }

    /// Stops a job's threads and starts it again from its snapshots, as a
    /// node restart does.
    fn restart(&self, job: &str) -> anyhow::Result<()> {
        let running = lock(&self.inner.running).remove(job);
        let Some(running) = running else {
            bail!("no job `{job}` on this node (jobs: {})", self.names());
        };
        running.stop.store(true, Ordering::Relaxed);
        for t in running.threads {
            let _ = t.join();
        }
        self.build_and_start(running.record);
        Ok(())
    }

    /// Stops every job's threads (node shutdown); they resume on the next start.
    pub fn stop_all(&self) {
        let mut running = lock(&self.inner.running);
        for r in running.values() {
            r.stop.store(true, Ordering::Relaxed);
        }
        for r in running.values_mut() {
            for t in r.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    fn names(&self) -> String {
        let running = lock(&self.inner.running);
        if running.is_empty() {
            "none".into()
        } else {
            running.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// The status of one job, or of all.
    pub fn status(&self, name: Option<&str>) -> anyhow::Result<Vec<JobStatus>> {
        let running = lock(&self.inner.running);
        if let Some(name) = name
            && !running.contains_key(name)
        {
            drop(running);
            bail!("no job `{name}` on this node (jobs: {})", self.names());
        }
        Ok(running
            .values()
            .filter(|r| name.is_none_or(|n| n == r.record.name))
            .map(|r| {
                let vertices: Vec<VertexStatus> =
                    r.vertices.iter().map(|v| lock(v).clone()).collect();
                let state = if vertices.iter().any(|v| v.state == "failed") {
                    "failed"
                } else if vertices.iter().all(|v| v.state == "finished") {
                    "finished"
                } else {
                    "running"
                };
                JobStatus {
                    name: r.record.name.clone(),
                    id: r.record.id,
                    state: state.into(),
                    vertices,
                }
            })
            .collect())
    }

    /// Compiles a job record into vertex tasks, creating its streams and
    /// loading each vertex's snapshot.
    fn build(&self, record: &JobRecord, create: bool) -> anyhow::Result<Vec<(Task, VertexStatus)>> {
        let plan: Plan = crate::job::parse_with(&record.path, &record.text, false)?;
        let streams = &self.inner.streams;
        let prefix = record.prefix();
        let mut schemas: HashMap<String, (u64, SchemaRef)> = HashMap::new();
        let mut tasks = Vec::new();
        let dead_fields = dead_fields();
        // A vertex's output stream and its dead-letter stream: (output id, output name, dead id).
        let job_stream = |name: &str, schema: &SchemaRef| -> anyhow::Result<(u64, String, u64)> {
            let full = record.stream(name);
            if !create {
                // Validation only: stream ids start at 1, so 0 names nothing.
                return Ok((0, full, 0));
            }
            let output = streams.create(&full, &user_fields(schema))?.id;
            let dead = streams.create(&format!("{full}.dead"), &dead_fields)?.id;
            Ok((output, full, dead))
        };
        for (i, spec) in plan.sources.iter().enumerate() {
            let at = format!("job `{}` sources[{i}] `{}`", plan.name, spec.name);
            match &spec.origin {
                SourceOrigin::Stream(stream) => {
                    let info = streams.info(stream).with_context(|| at.clone())?;
                    let schema = event_schema(&info.fields());
                    let (output, out_name, dead) = job_stream(&spec.name, &schema)?;
                    let key = format!("{SNAPSHOTS}{prefix}/{}", spec.name);
                    let generator = CtiGen::new(spec.cti);
                    let (vertex, status) = self.vertex(
                        &spec.name,
                        "source",
                        vertex::Operator::Source(generator),
                        schema.clone(),
                        &[(info.id, info.name.clone())],
                        (output, out_name),
                        &key,
                        stored(streams, &key)?,
                        Default::default(),
                    )?;
                    schemas.insert(spec.name.clone(), (output, schema));
                    tasks.push((
                        Task::Vertex {
                            vertex: Box::new(vertex),
                            inputs: vec![info.id],
                            output,
                            dead,
                            key,
                        },
                        status,
                    ));
                }
                SourceOrigin::File { .. } => {
                    self.inner
                        .files
                        .check(&spec.path)
                        .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
                    if spec.format != SourceFormat::Jsonl {
                        bail!(
                            "{at}: a job on a node reads JSONL files (CSV files run with `weir run`)"
                        );
                    }
                    let schema = event_schema(&spec.fields);
                    let (output, out_name, dead) = job_stream(&spec.name, &schema)?;
                    let key = format!("{FILES}{prefix}/{}", spec.name);
                    let at_pos = stored(streams, &key)?.unwrap_or_else(|| FilePosition {
                        cti: CtiGen::new(spec.cti),
                        ..FilePosition::default()
                    });
                    let status = VertexStatus {
                        name: spec.name.clone(),
                        role: "source".into(),
                        state: "starting".into(),
                        inputs: vec![(spec.path.display().to_string(), at_pos.offset)],
                        output: Some((out_name, at_pos.output)),
                        rows_in: at_pos.rows + at_pos.rejected,
                        rows_out: at_pos.rows,
                        dead: at_pos.rejected,
                        ending: streams.meta(&ending_key(&key))?.is_some(),
                        ..VertexStatus::default()
                    };
                    schemas.insert(spec.name.clone(), (output, schema));
                    tasks.push((
                        Task::File {
                            spec: spec.clone(),
                            batch_size: plan.batch_size,
                            output,
                            dead,
                            key,
                            at: Box::new(at_pos),
                        },
                        status,
                    ));
                }
            }
        }
        for spec in &plan.stages {
            let (task, status, output, schema) =
                self.stage_task(record, &prefix, spec, &schemas, &job_stream)?;
            schemas.insert(spec.name.clone(), (output, schema));
            tasks.push((task, status));
        }
        for (i, spec) in plan.sinks.iter().enumerate() {
            let path = match &spec.target {
                SinkTarget::File(path) => {
                    self.inner
                        .files
                        .check(path)
                        .map_err(|e| anyhow::anyhow!("job `{}` sinks[{i}]: {e}", plan.name))?;
                    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
                        bail!(
                            "job `{}` sinks[{i}]: {} is not a regular file; a sink on a node writes exactly once by truncating its file to what was synced, so it needs one",
                            plan.name,
                            path.display()
                        );
                    }
                    Some(path.clone())
                }
                SinkTarget::Discard => None,
                SinkTarget::Stdout => bail!(
                    "job `{}` sinks[{i}]: a job on a node cannot write to stdout; give `path` (or read its stream with `weir stream read`)",
                    plan.name
                ),
            };
            let (input, _) = schemas
                .get(&spec.input)
                .with_context(|| format!("sinks[{i}]: no stream `{}`", spec.input))?;
            let key = format!("{SINKS}{prefix}/{i}");
            let at = stored(streams, &key)?.unwrap_or_else(|| SinkPosition {
                next: streams.positions(*input).map_or(0, |p| p.2),
                ..SinkPosition::default()
            });
            let status = VertexStatus {
                name: path
                    .as_ref()
                    .map_or("discard".into(), |p| p.display().to_string()),
                role: "sink".into(),
                state: "starting".into(),
                inputs: vec![(record.stream(&spec.input), at.next)],
                rows_in: at.rows,
                rows_out: at.rows,
                ..VertexStatus::default()
            };
            tasks.push((
                Task::Sink {
                    input: *input,
                    path,
                    interval: spec.interval,
                    key,
                    at,
                },
                status,
            ));
        }
        Ok(tasks)
    }

    #[allow(clippy::type_complexity)]
    fn stage_task(
        &self,
        record: &JobRecord,
        prefix: &str,
        spec: &StageSpec,
        schemas: &HashMap<String, (u64, SchemaRef)>,
        job_stream: &dyn Fn(&str, &SchemaRef) -> anyhow::Result<(u64, String, u64)>,
    ) -> anyhow::Result<(Task, VertexStatus, u64, SchemaRef)> {
        let streams = &self.inner.streams;
        let at = format!("job `{}` stage `{}`", record.name, spec.name);
        let mut inputs = Vec::new();
        let mut input_schema: Option<SchemaRef> = None;
        for name in &spec.inputs {
            let (id, schema) = schemas
                .get(name)
                .with_context(|| format!("{at}: no stream `{name}`"))?;
            if let Some(first) = &input_schema
                && first.fields() != schema.fields()
            {
                bail!(
                    "{at}: inputs `{}` ({}) and `{name}` ({}) have different columns; merged inputs need the same",
                    spec.inputs[0],
                    describe(&user_fields(first)),
                    describe(&user_fields(schema))
                );
            }
            input_schema = Some(schema.clone());
            inputs.push((*id, record.stream(name)));
        }
        let input_schema = input_schema.with_context(|| format!("{at}: no inputs"))?;
        let key = format!("{SNAPSHOTS}{prefix}/{}", spec.name);
        let snapshot: Option<VertexSnapshot> = stored(streams, &key)?;
        let mut patching = None;
        let operator = match &spec.operator {
            Operator::Union => vertex::Operator::Union,
            Operator::Udf(udf) => {
                let original = record.modules.get(&udf.component).with_context(|| {
                    format!("{at}: no module recorded for {}", udf.component.display())
                })?;
                let timeline: Timeline = stored(streams, &timeline_key(&key))?
                    .unwrap_or_else(|| Timeline::new(original));
                // The version its snapshot was taken with; the timeline's
                // later entries apply as the vertex replays past them.
                let version = match snapshot.as_ref().and_then(|s| s.module.as_deref()) {
                    None => original.clone(),
                    Some(short) => timeline
                        .versions()
                        .into_iter()
                        .find(|v| v.starts_with(short))
                        .with_context(|| {
                            format!("{at}: the snapshot's module {short} is not in the stage's patch timeline")
                        })?
                        .to_string(),
                };
                let runtime = self.inner.runtime.clone();
                let (store, origin) = (streams.clone(), udf.component.display().to_string());
                let (name, udf, schema) = (spec.name.clone(), udf.clone(), input_schema.clone());
                let mut load: vertex::StageLoader = Box::new(move |version: &str| {
                    let module = load_module(&runtime, &store, version, &origin).map_err(|e| {
                        crate::stage::StageError::Mismatch {
                            stage: name.clone(),
                            module: version.chars().take(12).collect(),
                            message: format!("{e:#}"),
                        }
                    })?;
                    UdfStage::with_module(&runtime, &name, &udf, module, schema.clone())
                });
                let stage = load(&version).with_context(|| at.clone())?;
                patching = Some((timeline, load));
                vertex::Operator::Udf(Box::new(stage))
            }
        };
        let output_schema = match &operator {
            vertex::Operator::Udf(stage) => stage.output_schema(),
            _ => input_schema.clone(),
        };
        let (output, out_name, dead) = job_stream(&spec.name, &output_schema)?;
        let (mut vertex, status) = self.vertex(
            &spec.name,
            "stage",
            operator,
            input_schema,
            &inputs,
            (output, out_name),
            &key,
            snapshot,
            spec.recovery,
        )?;
        if let Some((timeline, load)) = patching {
            vertex = vertex.with_patching(timeline, load)?;
            // Changes accepted before a restart, not yet in the timeline.
            for request in self.with_queue(&queue_key(&key), |q| q.waiting.clone())? {
                vertex.schedule(request);
            }
        }
        let input_ids = inputs.iter().map(|(id, _)| *id).collect();
        Ok((
            Task::Vertex {
                vertex: Box::new(vertex),
                inputs: input_ids,
                output,
                dead,
                key,
            },
            status,
            output,
            output_schema,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn vertex(
        &self,
        name: &str,
        role: &str,
        operator: vertex::Operator,
        input_schema: SchemaRef,
        inputs: &[(u64, String)],
        output: (u64, String),
        key: &str,
        snapshot: Option<VertexSnapshot>,
        recovery: crate::plan::Recovery,
    ) -> anyhow::Result<(Vertex, VertexStatus)> {
        let streams = &self.inner.streams;
        let resume = match snapshot {
            Some(snapshot) => {
                let state = match recovery {
                    crate::plan::Recovery::Checkpoint { .. } => load_state(streams, key)?,
                    crate::plan::Recovery::Replay { .. } => KeyedState::new(),
                };
                vertex::Resume::Snapshot(Box::new(snapshot), state)
            }
            // A new vertex starts at what its inputs still hold.
            None => vertex::Resume::Fresh(
                inputs
                    .iter()
                    .map(|(id, _)| streams.positions(*id).map_or(0, |p| p.2))
                    .collect(),
            ),
        };
        let vertex = Vertex::load(name, operator, input_schema, inputs.len(), recovery, resume)?;
        let at = vertex.position();
        let status = VertexStatus {
            name: name.to_string(),
            role: role.to_string(),
            state: "starting".into(),
            inputs: inputs
                .iter()
                .zip(&at.inputs)
                .map(|((_, n), p)| (n.clone(), *p))
                .collect(),
            output: Some((output.1, at.output)),
            snapshot: at.id,
            module: at.module.clone(),
            ..VertexStatus::default()
        };
        Ok((vertex, status))
    }

    /// Records that `reader` needs `stream` from `pos` on, and collects what no
    /// reader needs. Called only after the snapshot holding `pos` was queued,
    /// so the collection is never durable before the snapshot is.
    fn reader_at(&self, stream: u64, reader: &str, pos: u64) {
        let low = {
            let mut readers = lock(&self.inner.readers);
            let list = readers.entry(stream).or_default();
            list.insert(reader.to_string(), pos);
            list.values().copied().min().unwrap_or(0)
        };
        // A tail behind the slowest reader stays, for `udf deploy --shadow`.
        let low = low.saturating_sub(SHADOW_TAIL);
        if let Err(e) = self.inner.streams.gc(stream, low) {
            tracing::warn!("collecting stream #{stream} below {low}: {e}");
        }
    }

    fn start(&self, record: JobRecord, tasks: Vec<(Task, VertexStatus)>) {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut vertices = Vec::new();
        // Register every reader before any vertex runs and collects.
        for (task, _) in &tasks {
            match task {
                Task::Vertex {
                    vertex,
                    inputs,
                    key,
                    ..
                } => {
                    for (stream, pos) in inputs.iter().zip(&vertex.position().inputs) {
                        self.reader_at(*stream, key, *pos);
                    }
                }
                Task::Sink { input, key, at, .. } => self.reader_at(*input, key, at.next),
                Task::File { .. } => {}
            }
        }
        for (task, status) in tasks {
            let shared: Shared = Arc::new(Mutex::new(status));
            vertices.push(shared.clone());
            let jobs = self.clone();
            let stop = stop.clone();
            let name = lock(&shared).name.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("weir-{name}"))
                .spawn(move || {
                    lock(&shared).state = "running".into();
                    let result = match task {
                        Task::Vertex {
                            vertex,
                            inputs,
                            output,
                            dead,
                            key,
                        } => jobs.run_vertex(*vertex, &inputs, output, dead, &key, &stop, &shared),
                        Task::File {
                            spec,
                            batch_size,
                            output,
                            dead,
                            key,
                            at,
                        } => jobs
                            .run_file(&spec, batch_size, output, dead, &key, *at, &stop, &shared),
                        Task::Sink {
                            input,
                            path,
                            interval,
                            key,
                            at,
                        } => jobs.run_sink(
                            input,
                            path.as_deref(),
                            interval,
                            &key,
                            at,
                            &stop,
                            &shared,
                        ),
                    };
                    let mut s = lock(&shared);
                    match result {
                        Ok(true) => s.state = "finished".into(),
                        Ok(false) => s.state = "stopped".into(),
                        Err(e) => {
                            tracing::error!("vertex `{}` failed: {e:#}", s.name);
                            s.state = "failed".into();
                            s.error = Some(format!("{e:#}"));
                        }
                    }
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!("cannot start a vertex thread: {e}"),
            }
        }
        lock(&self.inner.running).insert(
            record.name.clone(),
            Running {
                record,
                stop,
                threads,
                vertices,
            },
        );
    }

    /// Runs a vertex until it finishes (`true`) or is stopped (`false`).
    #[allow(clippy::too_many_arguments)]
    fn run_vertex(
        &self,
        mut vertex: Vertex,
        inputs: &[u64],
        output: u64,
        dead: u64,
        key: &str,
        stop: &AtomicBool,
        status: &Shared,
    ) -> anyhow::Result<bool> {
        let streams = &self.inner.streams;
        loop {
            for request in std::mem::take(&mut lock(status).requests) {
                vertex.schedule(request);
            }
            // What status shows comes from the vertex, loaded from its
            // snapshot: a finished job shows its counts after a restart too.
            publish(&vertex, status);
            if let Some(finished) = halt(vertex.position().finished, stop) {
                return Ok(finished);
            }
            let mut progressed = false;
            for (i, &stream) in inputs.iter().enumerate() {
                let from = vertex.position().inputs[i];
                for (seq, bytes) in streams.read_written(stream, from, READ_CHUNK)? {
                    let entry = Entry::decode(&bytes).map_err(|e| {
                        anyhow::anyhow!("vertex `{}`: input {i} seq {seq}: {e}", vertex.name())
                    })?;
                    let mut fx = match vertex.on_entry(i, seq, entry) {
                        Ok(fx) => fx,
                        Err(e) => {
                            lock(status).stuck_at = vertex.stuck_at(&e);
                            return Err(e.into());
                        }
                    };
                    let settled = std::mem::take(&mut fx.settled);
                    self.apply(fx, &settled, output, dead, key, inputs)?;
                    if !settled.is_empty() {
                        let mut s = lock(status);
                        s.outcomes.extend(settled);
                        while s.outcomes.len() > MAX_OUTCOMES {
                            s.outcomes.pop_first();
                        }
                    }
                    progressed = true;
                }
            }
            publish(&vertex, status);
            if !progressed {
                let wanted: Vec<(u64, u64)> = inputs
                    .iter()
                    .zip(&vertex.position().inputs)
                    .map(|(s, p)| (*s, *p))
                    .collect();
                streams.wait_any(&wanted, true, IDLE_WAIT);
            }
        }
    }

    fn apply(
        &self,
        fx: Effects,
        settled: &[(u64, Option<String>)],
        output: u64,
        dead: u64,
        key: &str,
        inputs: &[u64],
    ) -> anyhow::Result<()> {
        let streams = &self.inner.streams;
        let mut ops = Vec::new();
        if let Some(timeline) = &fx.timeline {
            // Before the entries: some of them ran on the new version.
            ops.push(put(&timeline_key(key), postcard::to_allocvec(timeline)?));
        }
        if settled.is_empty() {
            if !ops.is_empty() {
                streams.commit_meta(ops)?;
            }
        } else {
            // The requests leave the queue in the commit that records them
            // in the timeline: a crash keeps one or the other, never both.
            let ids: Vec<u64> = settled.iter().map(|(id, _)| *id).collect();
            let queue_key = queue_key(key);
            let mut queues = lock(&self.inner.queues);
            let queue = queues.entry(queue_key.clone()).or_default();
            queue.settle(&ids);
            ops.push(put(&queue_key, postcard::to_allocvec(queue)?));
            streams.commit_meta(ops)?;
        }
        for (stream, entries) in [(output, fx.output), (dead, fx.dead)] {
            for (seq, entry) in entries {
                let bytes = entry.encode().map_err(anyhow::Error::msg)?;
                streams.write(stream, seq, bytes)?;
            }
        }
        if let Some(mut snapshot) = fx.snapshot {
            let mut ops = Vec::with_capacity(2);
            let changes = std::mem::take(&mut snapshot.state);
            if !changes.is_empty() {
                ops.push(Op::State {
                    owner: key.to_string(),
                    changes,
                });
            }
            ops.push(put(key, postcard::to_allocvec(&snapshot)?));
            streams.commit_meta(ops)?;
            for (stream, pos) in inputs.iter().zip(&snapshot.inputs) {
                self.reader_at(*stream, key, *pos);
            }
        }
        Ok(())
    }

    /// Follows a JSONL file: reads complete lines from the recorded offset and
    /// writes their batches and CTIs with the new offset in one transaction.
    #[allow(clippy::too_many_arguments)]
    fn run_file(
        &self,
        spec: &SourceSpec,
        batch_size: usize,
        output: u64,
        dead: u64,
        key: &str,
        mut at: FilePosition,
        stop: &AtomicBool,
        status: &Shared,
    ) -> anyhow::Result<bool> {
        let streams = &self.inner.streams;
        let mut buf = Vec::new();
        loop {
            if let Some(finished) = halt(at.finished, stop) {
                return Ok(finished);
            }
            // A followed file reads as a plain one once its end was asked
            // for: what it holds then is the rest of its input.
            let follow =
                matches!(spec.origin, SourceOrigin::File { follow: true }) && !lock(status).ending;
            buf.clear();
            let len = match File::open(&spec.path) {
                Ok(mut file) => {
                    let len = file.metadata()?.len();
                    if len < at.offset {
                        bail!(
                            "source `{}`: {} is {len} bytes, shorter than the {} bytes already read; a followed file may only grow",
                            spec.name,
                            spec.path.display(),
                            at.offset
                        );
                    }
                    file.seek(SeekFrom::Start(at.offset))?;
                    // At least one whole line, however long, unless the
                    // file ends first.
                    loop {
                        let before = buf.len();
                        (&mut file).take(FILE_CHUNK as u64).read_to_end(&mut buf)?;
                        if buf.len() == before || buf[before..].contains(&b'\n') {
                            break;
                        }
                        if buf.len() > MAX_LINE {
                            bail!(
                                "source `{}`: {} line {} is longer than {} MiB",
                                spec.name,
                                spec.path.display(),
                                at.line + 1,
                                MAX_LINE >> 20
                            );
                        }
                    }
                    len
                }
                Err(e) if follow && e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "source `{}`: cannot read {}",
                            spec.name,
                            spec.path.display()
                        )
                    });
                }
            };
            let at_end = at.offset + buf.len() as u64 >= len;
            // Only complete lines, except a last line without newline at the
            // end of a file that is not followed.
            let take = match buf.iter().rposition(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if !follow && at_end => buf.len(),
                None => 0,
            };
            buf.truncate(take);
            if buf.is_empty() {
                if !follow && at_end {
                    let end = Entry::Cti(END).encode().map_err(anyhow::Error::msg)?;
                    at.output += 1;
                    at.finished = true;
                    streams.append_at(
                        vec![(output, at.output - 1, vec![end])],
                        vec![put(key, postcard::to_allocvec(&at)?)],
                    )?;
                    continue;
                }
                std::thread::sleep(IDLE_WAIT);
                continue;
            }
            let mut reader = SourceReader::from_reader(
                spec,
                batch_size,
                Box::new(std::io::Cursor::new(std::mem::take(&mut buf))),
            )?
            .after_lines(at.line);
            let mut entries = Vec::new();
            let mut letters = Vec::new();
            while let Some(chunk) = reader.next_chunk()? {
                for e in chunk.rejected {
                    if spec.on_error == ErrorPolicy::Fail {
                        bail!("source `{}`: {e}", spec.name);
                    }
                    letters.push(DeadLetter {
                        start: 0,
                        input_seq: e.line as i64,
                        module: "-".into(),
                        error: e.to_string(),
                        row: e.raw.clone(),
                    });
                }
                let (on_time, late, cti) =
                    at.cti
                        .on_batch(&chunk.batch, &spec.name, reader.line() as i64);
                letters.extend(late);
                at.rows += on_time.num_rows() as u64;
                if on_time.num_rows() > 0 {
                    entries.push(
                        Entry::Batch {
                            producer: format!("source `{}`", spec.name),
                            batch: on_time,
                        }
                        .encode()
                        .map_err(anyhow::Error::msg)?,
                    );
                }
                if let Some(t) = cti {
                    entries.push(Entry::Cti(t).encode().map_err(anyhow::Error::msg)?);
                }
            }
            at.offset += take as u64;
            at.line = reader.line();
            at.rejected += letters.len() as u64;
            let dead_entries = if letters.is_empty() {
                Vec::new()
            } else {
                vec![
                    Entry::Batch {
                        producer: format!("source `{}`", spec.name),
                        batch: dead_batch(&spec.name, &letters),
                    }
                    .encode()
                    .map_err(anyhow::Error::msg)?,
                ]
            };
            let (out_at, dead_at) = (at.output, at.dead);
            at.output += entries.len() as u64;
            at.dead += dead_entries.len() as u64;
            streams.append_at(
                vec![(output, out_at, entries), (dead, dead_at, dead_entries)],
                vec![put(key, postcard::to_allocvec(&at)?)],
            )?;
            let mut s = lock(status);
            s.inputs[0].1 = at.offset;
            if let Some(o) = s.output.as_mut() {
                o.1 = at.output;
            }
            s.rows_in = at.rows + at.rejected;
            s.rows_out = at.rows;
            s.dead = at.rejected;
        }
    }

    /// Writes a stream's events to a JSONL file exactly once: after each round
    /// the file is fsynced and `(next seq, length)` recorded; a restart
    /// truncates the file to the recorded length and goes on from there.
    #[allow(clippy::too_many_arguments)]
    fn run_sink(
        &self,
        input: u64,
        path: Option<&Path>,
        interval: bool,
        key: &str,
        mut at: SinkPosition,
        stop: &AtomicBool,
        status: &Shared,
    ) -> anyhow::Result<bool> {
        let streams = &self.inner.streams;
        let mut file = match path {
            Some(path) => Some(open_sink_file(path, at.len)?),
            None => None,
        };
        let mut buf = Vec::new();
        loop {
            if let Some(finished) = halt(at.finished, stop) {
                return Ok(finished);
            }
            let entries = streams.read(input, at.next, READ_CHUNK * 4)?;
            if entries.is_empty() {
                streams.wait_for(input, at.next, IDLE_WAIT);
                continue;
            }
            buf.clear();
            for (seq, bytes) in entries {
                match Entry::decode(&bytes)
                    .map_err(|e| anyhow::anyhow!("sink input seq {seq}: {e}"))?
                {
                    Entry::Batch { batch, .. } => {
                        crate::sink::write_jsonl(&mut buf, &batch, interval)?;
                        at.rows += batch.num_rows() as u64;
                    }
                    Entry::Cti(t) => at.finished |= t == END,
                }
                at.next = seq + 1;
            }
            if let (Some(file), Some(path)) = (file.as_mut(), path) {
                file.write_all(&buf)
                    .and_then(|()| file.sync_data())
                    .with_context(|| format!("sink: cannot write {}", path.display()))?;
                at.len += buf.len() as u64;
            }
            streams.commit_meta(vec![put(key, postcard::to_allocvec(&at)?)])?;
            self.reader_at(input, key, at.next);
            let mut s = lock(status);
            s.inputs[0].1 = at.next;
            s.rows_in = at.rows;
            s.rows_out = at.rows;
        }
    }
}

/// Opens a node sink's file at its synced length `len`: what was written
/// after the last recorded sync is cut off (it is written again).
fn open_sink_file(path: &Path, len: u64) -> anyhow::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("sink: cannot create {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("sink: cannot open {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!(
            "sink {}: not a regular file; a sink on a node needs one",
            path.display()
        );
    }
    let found = meta.len();
    if found < len {
        bail!(
            "sink {}: the file has {found} bytes but {len} were written and synced; it was changed outside Weir",
            path.display()
        );
    }
    file.set_len(len)?;
    file.seek(SeekFrom::Start(len))?;
    file.sync_all()?;
    Ok(file)
}

/// The item of `items` called `name` (a `kind` of job `job`), or an error
/// listing the ones there are.
fn named<'a, T>(
    items: &'a [T],
    name_of: impl Fn(&T) -> &String,
    name: &str,
    job: &str,
    kind: &str,
) -> anyhow::Result<&'a T> {
    items.iter().find(|i| name_of(i) == name).with_context(|| {
        format!(
            "job `{job}` has no {kind} `{name}`; its {kind}s: {}",
            items
                .iter()
                .map(|i| name_of(i).as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Shows the vertex's positions, counts and patches in its status.
fn publish(vertex: &Vertex, status: &Shared) {
    let at = vertex.position();
    let (rows_in, rows_out, dead_rows) = vertex.counts();
    let mut s = lock(status);
    for (slot, pos) in s.inputs.iter_mut().zip(&at.inputs) {
        slot.1 = *pos;
    }
    if let Some(o) = s.output.as_mut() {
        o.1 = at.output;
    }
    s.rows_in = rows_in;
    s.rows_out = rows_out;
    s.dead = dead_rows;
    s.snapshot = at.id;
    s.patches = at.patches;
    s.module.clone_from(&at.module);
    s.filters = vertex.filter_texts();
    (s.pending, s.refused) = vertex.patch_state();
    s.filtered = vertex.filtered();
}

/// Whether a vertex loop ends: `Some(true)` finished, `Some(false)` stopped.
fn halt(finished: bool, stop: &AtomicBool) -> Option<bool> {
    if finished {
        Some(true)
    } else if stop.load(Ordering::Relaxed) {
        Some(false)
    } else {
        None
    }
}

/// A position or snapshot stored under `key`, if there is one.
fn stored<T: serde::de::DeserializeOwned>(
    streams: &Streams,
    key: &str,
) -> anyhow::Result<Option<T>> {
    match streams.meta(key)? {
        Some(bytes) => Ok(Some(
            postcard::from_bytes(&bytes).with_context(|| format!("{key} does not decode"))?,
        )),
        None => Ok(None),
    }
}

/// Entries of a stream kept behind its slowest reader, so that a shadow run
/// (`weir udf deploy --shadow N`) has recent input even when the stage is
/// caught up.
const SHADOW_TAIL: u64 = 256;

/// How long a deploy waits for the stage's next CTI.
const PATCH_WAIT: Duration = Duration::from_secs(5);
/// How many settled requests a vertex's status remembers.
const MAX_OUTCOMES: usize = 64;

/// What a deploy or rollback did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchReport {
    /// The job.
    pub job: String,
    /// The stage.
    pub stage: String,
    /// The version it ran (short).
    pub from: String,
    /// The version it runs now (full SHA-256 hex).
    pub to: String,
    /// What changed (`deploy`, `rollback`, `filter added: ...`).
    pub change: String,
    /// Where it took effect: (input position, CTIs written); `None` when the
    /// stage had no CTI within the wait, so the switch is still scheduled.
    pub applied: Option<(u64, u64)>,
    /// Microseconds from handing the switch to the stage to its timeline
    /// entry being durable (waiting for the next CTI included).
    pub switch_us: u64,
    /// The shadow run, if one was asked for.
    pub shadow: Option<ShadowReport>,
}

/// The new version beside the running one on recent input rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShadowReport {
    /// Input rows asked for.
    pub asked: u64,
    /// Input rows both versions ran on (at most those the input stream
    /// still holds).
    pub rows: u64,
    /// Output rows of the running version.
    pub old_rows: u64,
    /// Output rows of the new version.
    pub new_rows: u64,
    /// Output rows that differ (by position, plus the difference in count).
    pub differ: u64,
}

/// One version in a stage's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Module version (SHA-256 hex).
    pub version: String,
    /// Input position where it took effect.
    pub position: u64,
    /// CTIs the vertex had written then.
    pub ctis: u64,
    /// Why.
    pub why: String,
    /// When (Unix milliseconds; 0 for the job's own version).
    pub at_ms: u64,
    /// It is the version in use.
    pub current: bool,
}

/// The first 12 hex digits of a version.
fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

fn short_list(versions: &[&str]) -> String {
    versions
        .iter()
        .map(|v| short(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `old` and `new` on the last `rows` rows of `stream` (fresh state for
/// both) and counts the output rows that differ.
fn shadow_run(
    streams: &Streams,
    stream: u64,
    rows: u64,
    mut old: UdfStage,
    mut new: UdfStage,
) -> anyhow::Result<ShadowReport> {
    // Only what the stream still holds: collected entries are gone.
    let (next, _, low) = streams.positions(stream).unwrap_or_default();
    let mut batches = Vec::new();
    let mut have = 0u64;
    let mut seq = next;
    while seq > low && have < rows {
        let from = seq.saturating_sub(64).max(low);
        let entries = streams.read_written(stream, from, (seq - from) as usize)?;
        for (_, bytes) in entries.into_iter().rev() {
            if let Entry::Batch { batch, .. } = Entry::decode(&bytes).map_err(anyhow::Error::msg)? {
                have += batch.num_rows() as u64;
                batches.push(batch);
            }
        }
        if from == seq {
            break;
        }
        seq = from;
    }
    batches.reverse();
    let mut report = ShadowReport {
        asked: rows,
        ..ShadowReport::default()
    };
    let skip = have.saturating_sub(rows);
    let mut skipped = 0u64;
    for batch in batches {
        let batch = if skipped < skip {
            let cut = (skip - skipped).min(batch.num_rows() as u64);
            skipped += cut;
            batch.slice(cut as usize, batch.num_rows() - cut as usize)
        } else {
            batch
        };
        if batch.num_rows() == 0 {
            continue;
        }
        report.rows += batch.num_rows() as u64;
        let (mut dead_old, mut dead_new) = (Vec::new(), Vec::new());
        let a = old.process_all(&batch, &mut dead_old)?;
        let b = new.process_all(&batch, &mut dead_new)?;
        report.old_rows += a.num_rows() as u64;
        report.new_rows += b.num_rows() as u64;
        let (a, b) = (crate::stage::row_json(&a), crate::stage::row_json(&b));
        let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
        report.differ += a.iter().zip(&b).filter(|(x, y)| x != y).count() as u64
            + a.len().abs_diff(b.len()) as u64;
    }
    Ok(report)
}

/// A module of the node's registry (compiled once, kept by the runtime).
fn load_module(
    runtime: &Runtime,
    streams: &Streams,
    version: &str,
    origin: &str,
) -> anyhow::Result<crate::wasm::Module> {
    if let Some(module) = runtime.cached(version) {
        return Ok(module);
    }
    let bytes = streams
        .meta(&format!("{MODULE_PREFIX}{version}"))?
        .with_context(|| format!("module {version} is not stored on this node"))?;
    Ok(runtime.load(origin, &bytes)?)
}

/// Where the patch timeline of the vertex whose snapshot key is `key` lives.
fn timeline_key(key: &str) -> String {
    format!("{PATCHES}{}", key.strip_prefix(SNAPSHOTS).unwrap_or(key))
}

/// Where the request to end the followed file with position key `key` lives.
fn ending_key(key: &str) -> String {
    format!("{key}#end")
}

/// Where the queue of accepted changes of the vertex with snapshot key `key` lives.
fn queue_key(key: &str) -> String {
    format!("{QUEUES}{}", key.strip_prefix(SNAPSHOTS).unwrap_or(key))
}

/// The snapshot key of stage `stage` of the job `record`.
fn stage_key(record: &JobRecord, stage: &str) -> String {
    format!("{SNAPSHOTS}{}/{stage}", record.prefix())
}

/// Polls a vertex's status (every millisecond, for `PATCH_WAIT` at most)
/// until `done` says so or fails.
fn wait_status(
    shared: &Shared,
    mut done: impl FnMut(&VertexStatus) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + PATCH_WAIT;
    while std::time::Instant::now() < deadline {
        if done(&lock(shared))? {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Where the patch timeline of stage `stage` of the job `record` lives.
fn stage_timeline_key(record: &JobRecord, stage: &str) -> String {
    timeline_key(&stage_key(record, stage))
}

/// The keyed state a vertex checkpointed under `owner`.
fn load_state(streams: &Streams, owner: &str) -> anyhow::Result<KeyedState> {
    let mut state = KeyedState::new();
    let mut bad = None;
    streams.scan_state(owner, &mut |key, value| {
        if bad.is_some() {
            return;
        }
        match crate::wasm::instance::decode_entry(value) {
            Ok(names) => {
                state.insert(key.to_vec(), names);
            }
            Err(e) => {
                bad = Some(format!(
                    "{owner}: the state of key {key:02x?} does not decode: {e}"
                ))
            }
        }
    })?;
    match bad {
        Some(message) => Err(anyhow::anyhow!(message)),
        None => Ok(state),
    }
}

fn put(key: &str, value: Vec<u8>) -> Op {
    Op::PutMeta {
        key: key.to_string(),
        value,
    }
}
