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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Context, NodeError, Result, bail, err};
use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::access::FileAccess;
use crate::filter::Filter;
use crate::patch::{Change, Queue, Requested, Timeline};
use crate::plan::UdfSpec;
use crate::plan::{Operator, Plan, SinkTarget, SourceFormat, SourceOrigin, SourceSpec, StageSpec};
use crate::rstream::{END, Entry, Streams};
use crate::schema::{describe, event_schema, user_fields};
use crate::source::{RowError, SourceReader, csv_header, whole_rows};
use crate::stage::UdfStage;
use crate::store::{Op, StateChanges};
use crate::vertex::{self, CtiGen, Effects, Vertex, VertexSnapshot, dead_batch, dead_fields};
use crate::wasm::Runtime;
use crate::wasm::instance::KeyedState;

mod backup;
mod build;
mod changes;
mod copies;
mod deltas;
mod filters;
mod generate;
mod keys;
mod logs;
mod patching;
mod placed;
mod record;
mod replay;
mod resumes;
mod threads;
mod timelines;

pub use keys::is_log;
use keys::*;

pub use backup::{Asker, Stored};
pub use changes::{Asked, Followed};
use copies::Pending;
pub use copies::merge_shadows;
use patching::load_module;
pub use placed::{PlanVertex, Writing};
pub use record::JobRecord;
pub use timelines::Keeper;
pub use weir_net::status::{HistoryEntry, PatchReport, ReplayReport, ShadowReport};

/// How many settled requests a vertex's status remembers.
const MAX_OUTCOMES: usize = 64;

/// Entries a vertex reads per input per round.
const READ_CHUNK: usize = 64;
/// How long an idle vertex waits for input before checking whether to stop.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// The most bytes a file source reads per round (more when a line is longer).
const FILE_CHUNK: usize = 4 << 20;
/// The longest line a file source takes.
const MAX_LINE: usize = 1 << 30;

pub use weir_net::status::{BackupSent, JobStatus, VertexStatus};

type Shared = Arc<Mutex<VertexStatus>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Running {
    record: JobRecord,
    /// Set when the whole job stops here.
    stop: Arc<AtomicBool>,
    threads: Vec<VertexThread>,
    vertices: Vec<Shared>,
}

/// The thread of one vertex, stopped on its own when the vertex moves to
/// another member.
struct VertexThread {
    /// The plan's name of the vertex ([`placed::PlanVertex::name`]).
    vertex: String,
    stop: Arc<AtomicBool>,
    status: Shared,
    handle: JoinHandle<()>,
}

impl Running {
    /// Takes out the threads (and statuses) of the vertices `stays` does
    /// not keep, to be halted.
    fn take_leaving(&mut self, stays: impl Fn(&str) -> bool) -> Vec<VertexThread> {
        let (leaving, staying): (Vec<VertexThread>, Vec<VertexThread>) =
            std::mem::take(&mut self.threads)
                .into_iter()
                .partition(|t| !stays(&t.vertex));
        self.threads = staying;
        self.vertices
            .retain(|v| !leaving.iter().any(|t| Arc::ptr_eq(&t.status, v)));
        leaving
    }

    /// Stops every vertex thread and waits until each has.
    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        halt_threads(std::mem::take(&mut self.threads));
    }
}

/// Stops `threads` and waits until each has.
fn halt_threads(threads: Vec<VertexThread>) {
    for t in &threads {
        t.stop.store(true, Ordering::Relaxed);
    }
    for t in threads {
        let _ = t.handle.join();
    }
}

struct Inner {
    streams: Streams,
    runtime: Arc<Runtime>,
    running: Mutex<BTreeMap<String, Running>>,
    /// Per stream: each reader's position in its latest durable snapshot.
    readers: Mutex<HashMap<u64, HashMap<String, u64>>>,
    /// Per snapshot key of a placed job's vertex here: its input streams,
    /// kept from the positions of the snapshots its backups hold.
    backed: Mutex<HashMap<String, backup::Backed>>,
    /// Snapshot keys of the vertices here that run as replicas: their
    /// inputs are kept from their own latest snapshots instead.
    replicas: Mutex<std::collections::HashSet<String>>,
    /// Streams kept whole: this member's copies of the cluster's ingest
    /// streams, which any member may have to read from their start.
    whole: Mutex<std::collections::HashSet<u64>>,
    /// Job streams no reader here collects yet ([`Jobs::keep_from_start`]).
    from_start: Mutex<std::collections::HashSet<u64>>,
    /// Where job files may read and write.
    files: FileAccess,
    /// Per UDF stage (by queue key): its accepted changes waiting for a CTI,
    /// as last queued for storage. Every change to a queue is made here
    /// and queued for commit under this lock, so commits keep its order.
    queues: Mutex<HashMap<String, Queue>>,
    /// Records the timelines of placed jobs' copies with the coordinator.
    keeper: std::sync::OnceLock<Arc<dyn Keeper>>,
    /// Per vertex this member backs up (by its resume reader): the job
    /// streams it reads, from its job's plan, read once.
    backed_reads: Mutex<HashMap<String, Vec<String>>>,
    /// Per placed job (by its streams' prefix, `name@id`): its plan's
    /// vertices, built once (the scheduler asks on every placement change).
    plan_vertices: Mutex<HashMap<String, Vec<placed::PlanVertex>>>,
    /// Per snapshot key of a vertex here that has a backup: the keys its
    /// snapshots changed since one its backup may hold.
    changed: Mutex<HashMap<String, deltas::Changed>>,
    /// Per snapshot key of a vertex here: what its backup was sent last.
    sent: Mutex<HashMap<String, BackupSent>>,
    /// Held while a backup is stored, while placed vertices start here, and
    /// while a member that was declared lost empties copies: no store
    /// lands under a vertex that started, or on a copy emptied under it.
    stores: Mutex<()>,
    /// Until when the member's lease runs, in nanoseconds since `epoch`
    /// (`u64::MAX`: a node outside a cluster needs none; 0: it holds none,
    /// and may have been declared lost). Each write checks it, so a vertex
    /// stops on time even when the task that looks at the lease runs late.
    lease_until: AtomicU64,
    /// How much of the lease must be left for a sink to write its file:
    /// a write that passed the check lands before the lease ends even if
    /// its thread waits this long for a core.
    file_margin: AtomicU64,
    epoch: std::time::Instant,
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
/// Per copy of a stage of a job the cluster runs: how many of the job's
/// cluster changes it took.
const CHANGES: &str = "change/";
const MODULE_PREFIX: &str = "module/";
const NEXT_ID: &str = "jobs/next-id";

/// What a vertex thread does.
enum Task {
    Vertex {
        vertex: Box<Vertex>,
        inputs: Vec<u64>,
        output: u64,
        dead: u64,
        /// A UDF stage's log stream.
        logs: Option<u64>,
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
        /// The columns it writes (all when `None`).
        columns: Option<Vec<usize>>,
        /// Writes in the canonical order.
        ordered: bool,
        key: String,
        at: SinkPosition,
        /// Another instance writes the file too: it is not cut back.
        shared: bool,
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
/// `len` bytes of the file, fsynced. An ordered sink re-reads from `next`
/// (its first entry with a row still held) and skips what `released` says
/// it wrote.
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
    /// An ordered sink's last release.
    pub released: Option<crate::sink::Released>,
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
                backed: Mutex::new(HashMap::new()),
                replicas: Mutex::new(std::collections::HashSet::new()),
                whole: Mutex::default(),
                from_start: Mutex::default(),
                queues: Mutex::new(HashMap::new()),
                keeper: std::sync::OnceLock::new(),
                backed_reads: Mutex::default(),
                plan_vertices: Mutex::default(),
                changed: Mutex::default(),
                sent: Mutex::default(),
                stores: Mutex::default(),
                lease_until: AtomicU64::new(u64::MAX),
                file_margin: AtomicU64::new(0),
                epoch: std::time::Instant::now(),
            }),
        }
    }

    /// Starts every stored job from its snapshots (after a restart).
    pub fn resume(&self) -> Result<()> {
        for (key, value) in self.inner.streams.meta_prefix(JOB_PREFIX)? {
            let record: JobRecord = serde_json::from_slice(&value)
                .with_context(|| format!("job record {key} does not decode"))?;
            self.build_and_start(record);
        }
        Ok(())
    }

    /// Starts a stored job from its snapshots; one that cannot start stays
    /// listed as failed, with the reason.
    pub(super) fn build_and_start(&self, record: JobRecord) {
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
        parallelism: usize,
    ) -> Result<JobStatus> {
        let (mut record, mut ops) = self.check_job(path, text, modules, parallelism)?;
        let streams = &self.inner.streams;
        record.id = streams
            .meta(NEXT_ID)?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1);
        // Validate everything before anything is stored or created, so a
        // refused job leaves the node as it was.
        self.build(&record, false)?;
        ops.push(put(NEXT_ID, (record.id + 1).to_string().into_bytes()));
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

    /// Checks a submitted job: its components load, its plan compiles, it
    /// is not running here already and its inputs exist. Returns its record
    /// (id 0) and the writes that store its modules.
    pub(super) fn check_job(
        &self,
        path: &Path,
        text: &str,
        modules: Vec<(PathBuf, Vec<u8>)>,
        parallelism: usize,
    ) -> Result<(JobRecord, Vec<Op>)> {
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
        let plan = self.plan_of(path, text, &versions, parallelism)?;
        if let Some(r) = lock(&self.inner.running).get(&plan.name) {
            bail!(
                Job,
                "job `{}` is already on this node (id {}); cancel it first with `weir job cancel {}`",
                plan.name,
                r.record.id,
                plan.name
            );
        }
        if path.extension().is_some_and(|e| e == "wsql") {
            self.script_inputs(&plan)?;
        }
        for stage in &plan.stages {
            if let Operator::Udf(udf) = &stage.operator
                && !versions.contains_key(&udf.component)
            {
                bail!(
                    Job,
                    "stage `{}`: component {} was not sent with the job",
                    stage.name,
                    udf.component.display()
                );
            }
        }
        let record = JobRecord {
            name: plan.name.clone(),
            id: 0,
            path: path.to_path_buf(),
            text: text.to_string(),
            modules: versions,
            parallelism,
            only: None,
            backs: None,
            replicas: None,
            follows: None,
            shared: None,
            starts: BTreeMap::new(),
        };
        Ok((record, ops))
    }

    /// The plan of a job record, with the module versions it names.
    pub(super) fn record_plan(&self, record: &JobRecord) -> Result<Plan> {
        self.plan_of(
            &record.path,
            &record.text,
            &record.modules,
            record.parallelism,
        )
    }

    /// The plan of a job file or script; `modules` (component path →
    /// version) are the modules sent with it, which a script's components
    /// are loaded from.
    pub(super) fn plan_of(
        &self,
        path: &Path,
        text: &str,
        modules: &BTreeMap<PathBuf, String>,
        parallelism: usize,
    ) -> Result<Plan> {
        let streams = self.inner.streams.clone();
        let components =
            crate::components::WasmComponents::with(self.inner.runtime.clone(), |runtime, path| {
                let version = modules.get(path).ok_or_else(|| {
                    format!("component {} was not sent with the job", path.display())
                })?;
                patching::load_module(runtime, &streams, version, &path.display().to_string())
                    .map_err(|e| format!("{e:#}"))
            });
        let plan = crate::job::parse_with(path, text, false, &components, parallelism)?;
        // Parallel stages become their exchange, copies and merge here:
        // each partition and copy is a vertex with an rStream of its own.
        weir_core::parallel::expand(plan).map_err(|e| err!(Job, "{e}"))
    }

    /// A script's inputs are the node's streams of their names: each is
    /// created with the script's columns and event time if the node has
    /// none, and must have those columns if it has.
    fn script_inputs(&self, plan: &Plan) -> Result<()> {
        let streams = &self.inner.streams;
        for source in &plan.sources {
            let SourceOrigin::Stream(name) = &source.origin else {
                continue;
            };
            if source.event_unit != crate::plan::TimeUnit::Micros {
                bail!(
                    Job,
                    "input `{name}`: a node's streams keep time in microseconds; drop the unit after EVENTTIME"
                );
            }
            match streams.info(name) {
                Ok(info) => {
                    let have = crate::schema::describe(&info.fields());
                    let want = crate::schema::describe(&source.fields);
                    if have != want {
                        bail!(
                            Job,
                            "input `{name}`: the node's stream has columns {have}, the script declares {want}"
                        );
                    }
                }
                Err(_) => {
                    streams.create_with_time(
                        name,
                        &source.fields,
                        Some(&source.event_time),
                        source.end_time.as_deref(),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Ends source `source` of job `job`: a followed file is read to its
    /// end as it is then, a Nexmark input stops where it stands; then the
    /// source writes the end CTI and finishes. The request is durable before this returns.
    pub fn end_source(&self, job: &str, source: &str) -> Result<String> {
        let (record, plan) = self.running_plan(job)?;
        let spec = named(&plan.sources, |s| &s.name, source, job, "source")?;
        let what = match &spec.origin {
            SourceOrigin::File { follow: true } => {
                format!("at the end of {}", spec.path.display())
            }
            SourceOrigin::Nexmark { .. } => "with the events generated so far".to_string(),
            SourceOrigin::File { follow: false } => {
                bail!(
                    Job,
                    "source `{source}` of job `{job}` reads a plain file, which ends by itself"
                )
            }
            _ => bail!(
                Job,
                "source `{source}` of job `{job}` reads an ingest stream; end it with `weir stream close`"
            ),
        };
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
            "source `{source}` of job `{job}` ends {what}; the job finishes once all its inputs have ended"
        ))
    }

    /// Stops a job and forgets it; its streams are collected.
    pub fn cancel(&self, name: &str) -> Result<String> {
        let running = lock(&self.inner.running).remove(name);
        let Some(mut running) = running else {
            bail!(Job, "no job `{name}` on this node (jobs: {})", self.names());
        };
        running.halt();
        let streams = &self.inner.streams;
        let prefix = running.record.prefix();
        let mut ops = vec![Op::DeleteMeta {
            key: format!("{JOB_PREFIX}{name}"),
        }];
        for kind in [SNAPSHOTS, SINKS, FILES, PATCHES, QUEUES, CHANGES] {
            let key = format!("{kind}{prefix}/");
            for (k, _) in streams.meta_prefix(&key)? {
                if kind == SNAPSHOTS {
                    ops.push(Op::ClearState { owner: k.clone() });
                }
                ops.push(Op::DeleteMeta { key: k });
            }
        }
        streams.commit_meta(ops)?.wait()?;
        self.unhold_placed(&prefix);
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

    /// Stops a job's threads and starts it again from its snapshots, as a
    /// node restart does.
    fn restart(&self, job: &str) -> Result<()> {
        let running = lock(&self.inner.running).remove(job);
        let Some(mut running) = running else {
            bail!(Job, "no job `{job}` on this node (jobs: {})", self.names());
        };
        running.halt();
        self.build_and_start(running.record);
        Ok(())
    }

    /// Stops every job's threads (node shutdown); they resume on the next start.
    pub fn stop_all(&self) {
        let mut running = lock(&self.inner.running);
        for r in running.values() {
            r.stop.store(true, Ordering::Relaxed);
            for t in &r.threads {
                t.stop.store(true, Ordering::Relaxed);
            }
        }
        for r in running.values_mut() {
            r.halt();
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
    pub fn status(&self, name: Option<&str>) -> Result<Vec<JobStatus>> {
        let running = lock(&self.inner.running);
        if let Some(name) = name
            && !running.contains_key(name)
        {
            drop(running);
            bail!(Job, "no job `{name}` on this node (jobs: {})", self.names());
        }
        Ok(running
            .values()
            .filter(|r| name.is_none_or(|n| n == r.record.name))
            .map(|r| {
                let vertices: Vec<VertexStatus> = r
                    .vertices
                    .iter()
                    .map(|v| {
                        let mut v = lock(v).clone();
                        v.lag = self.lag(&v.inputs);
                        v.backup = self.backup_sent(&format!("{}/{}", r.record.prefix(), v.name));
                        v
                    })
                    .collect();
                JobStatus {
                    name: r.record.name.clone(),
                    id: r.record.id,
                    state: job_state(&vertices).into(),
                    vertices,
                }
            })
            .collect())
    }
}

/// A job's state from its vertices' states.
pub fn job_state(vertices: &[VertexStatus]) -> &'static str {
    if vertices.iter().any(|v| v.state == "failed") {
        "failed"
    } else if vertices.iter().all(|v| v.state == "finished") {
        "finished"
    } else {
        "running"
    }
}

/// The item of `items` called `name` (a `kind` of job `job`), or an error
/// listing the ones there are.
fn named<'a, T>(
    items: &'a [T],
    name_of: impl Fn(&T) -> &String,
    name: &str,
    job: &str,
    kind: &str,
) -> Result<&'a T> {
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

/// Entries of a stream kept behind its slowest reader, so that a shadow run
/// (`weir udf deploy --shadow N`) has recent input even when the stage is
/// caught up.
const SHADOW_TAIL: u64 = 256;

impl Jobs {
    /// Entries written to `inputs` (stream, next seq read) not yet read.
    fn lag(&self, inputs: &[(String, u64)]) -> u64 {
        let streams = &self.inner.streams;
        inputs
            .iter()
            .filter_map(|(name, at)| {
                let info = streams.info(name).ok()?;
                let (next, _, _) = streams.positions(info.id)?;
                Some(next.saturating_sub(*at))
            })
            .sum()
    }
}

/// How many of a stage's latest log lines are kept.
const KEPT_LOGS: u64 = 2_000;
