//! Jobs in a cluster: a submitted job is checked on the member it was sent
//! to, the coordinator places its vertices, and each member runs the ones
//! placed on it ([`JobRecord::only`]), with every job stream created on
//! every member that runs a vertex of the job: a stream written elsewhere
//! is a local copy its reader fills from the writer's member.

use std::collections::BTreeSet;

use weir_cluster::jobs::CopyTimeline;

use super::*;

/// One vertex of a job's plan and the job streams it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanVertex {
    /// Its name: a source's or stage's name (also the name of the stream
    /// it writes), `sink{i}` for the job's i-th sink.
    pub name: String,
    /// The job streams it reads (by the name of the vertex that writes them).
    pub reads: Vec<String>,
    /// Whether it writes a job stream of its name (all but sinks do).
    pub writes: bool,
    /// The ingest stream it reads (a source of one).
    pub ingest: Option<String>,
    /// The instances of it a cluster runs on different members (its
    /// stage's `replicate`; 1 for sources and sinks).
    pub replicate: usize,
}

/// The vertices of `plan`, in the order [`Jobs::build`] makes their tasks.
pub(super) fn plan_vertices(plan: &Plan) -> Vec<PlanVertex> {
    let sources = plan.sources.iter().map(|s| PlanVertex {
        name: s.name.clone(),
        reads: Vec::new(),
        writes: true,
        ingest: match &s.origin {
            SourceOrigin::Stream(stream) => Some(stream.clone()),
            _ => None,
        },
        replicate: 1,
    });
    let stages = plan.stages.iter().map(|s| PlanVertex {
        name: s.name.clone(),
        reads: s.inputs.clone(),
        writes: true,
        ingest: None,
        replicate: s.replicate,
    });
    let sinks = plan.sinks.iter().enumerate().map(|(i, s)| PlanVertex {
        name: format!("sink{i}"),
        reads: vec![s.input.clone()],
        writes: false,
        ingest: None,
        replicate: 1,
    });
    sources.chain(stages).chain(sinks).collect()
}

/// Keeps the tasks of the vertices `only` names (tasks in plan order).
pub(super) fn keep_placed(
    plan: &Plan,
    tasks: Vec<(Task, VertexStatus)>,
    only: &BTreeSet<String>,
) -> Vec<(Task, VertexStatus)> {
    tasks
        .into_iter()
        .zip(plan_vertices(plan))
        .filter(|(_, v)| only.contains(&v.name))
        .map(|(t, _)| t)
        .collect()
}

impl Jobs {
    /// The vertices this node runs, with their lag, as its heartbeat
    /// reports them to the coordinator.
    pub fn loads(&self) -> Vec<weir_net::cluster::VertexLoad> {
        let Ok(jobs) = self.status(None) else {
            return Vec::new();
        };
        jobs.into_iter()
            .flat_map(|job| {
                job.vertices
                    .into_iter()
                    .map(move |v| weir_net::cluster::VertexLoad {
                        job: job.name.clone(),
                        vertex: v.name,
                        plan: v.vertex,
                        state: v.state,
                        lag: v.lag,
                        replica: false,
                        read_cti: v.read_cti,
                        backup: None,
                        protected: None,
                    })
            })
            .collect()
    }

    /// Checks a job submitted to the cluster through this node and stores
    /// its modules; returns its record (id 0) and its vertices, for the
    /// coordinator to place.
    pub fn prepare(
        &self,
        path: &Path,
        text: &str,
        modules: Vec<(PathBuf, Vec<u8>)>,
        parallelism: usize,
    ) -> Result<(JobRecord, Vec<PlanVertex>)> {
        let plan = self.plan_of(path, text, &BTreeMap::new(), parallelism);
        if let Ok(plan) = &plan
            && let Some(s) = plan
                .sources
                .iter()
                .find(|s| matches!(s.origin, SourceOrigin::File { follow: true }))
        {
            bail!(
                Job,
                "job `{}` input `{}` follows a file: in a cluster, a copy of the input resumed on another member must read the same batches again; ingest the file into a stream (`weir stream create`, `weir ingest`) and read that, or run the job on a single node",
                plan.name,
                s.name
            );
        }
        let (record, ops) = self.check_job(path, text, modules, parallelism)?;
        self.build(&record, false)?;
        self.inner.streams.commit_meta(ops)?.wait()?;
        let plan = self.record_plan(&record)?;
        Ok((record, plan_vertices(&plan)))
    }

    /// The vertices of a job record's plan (a placed job's, built once
    /// per incarnation: the plan does not change with its placement).
    pub fn vertices_of(&self, record: &JobRecord) -> Result<Vec<PlanVertex>> {
        let key = record.prefix();
        if record.id != 0
            && let Some(v) = lock(&self.inner.plan_vertices).get(&key)
        {
            return Ok(v.clone());
        }
        let vertices = plan_vertices(&self.record_plan(record)?);
        if record.id != 0 {
            lock(&self.inner.plan_vertices).insert(key, vertices.clone());
        }
        Ok(vertices)
    }

    /// Starts the vertices of a placed job that run here (`record.only`),
    /// its copies with the timelines the coordinator recorded (`kept`).
    pub fn start_placed(
        &self,
        record: JobRecord,
        kept: &BTreeMap<String, CopyTimeline>,
    ) -> Result<()> {
        // A backup stored meanwhile would change the snapshots the
        // vertices start from as they are read.
        let _stores = lock(&self.inner.stores);
        self.adopt_timelines(&record, kept)?;
        self.build_and_start(record);
        Ok(())
    }

    /// The placed jobs this node runs: name → (id, its vertices here,
    /// the vertices it backs up).
    pub fn placed(&self) -> BTreeMap<String, (u64, BTreeSet<String>, BTreeSet<String>)> {
        lock(&self.inner.running)
            .iter()
            .filter_map(|(name, r)| {
                let only = r.record.only.clone()?;
                let backs = r.record.backs.clone().unwrap_or_default();
                Some((name.clone(), (r.record.id, only, backs)))
            })
            .collect()
    }

    /// Whether vertex `vertex` of placed job `name` runs here.
    pub fn runs_vertex(&self, name: &str, vertex: &str) -> bool {
        lock(&self.inner.running)
            .get(name)
            .is_some_and(|r| r.threads.iter().any(|t| t.vertex == vertex))
    }

    /// Whether incarnation `id` of job `name` runs here.
    pub fn runs(&self, name: &str, id: u64) -> bool {
        lock(&self.inner.running)
            .get(name)
            .is_some_and(|r| r.record.id == id && !r.stop.load(Ordering::Relaxed))
    }

    /// Whether job stream `stream` (`NAME@ID.VERTEX`, or its dead letters
    /// or log) is written here: an instance of its vertex (the vertex, a
    /// replica or a duplicate) runs here.
    pub fn writes_here(&self, stream: &str) -> bool {
        let Some((name, id, vertex)) = super::backup::job_stream(stream) else {
            return false;
        };
        lock(&self.inner.running).get(name).is_some_and(|r| {
            r.record.id == id && r.record.only.as_ref().is_some_and(|o| o.contains(vertex))
        })
    }

    /// Makes the vertices of placed job `record.name` that run here those
    /// of `record.only`, and those backed up here those of `record.backs`,
    /// leaving the vertices that stay running: those that leave stop
    /// (their holds go), the new ones start from their snapshots, copies
    /// with the timelines the coordinator recorded (`kept`).
    pub fn replace_placed(
        &self,
        record: JobRecord,
        kept: &BTreeMap<String, CopyTimeline>,
    ) -> Result<()> {
        // A backup being stored lands before a vertex moved here starts
        // from it, or finds the vertex no longer backed up here: never
        // under the running vertex, nor between the reads of its snapshot.
        let _stores = lock(&self.inner.stores);
        let name = record.name.clone();
        let new = record.only.clone().unwrap_or_default();
        // A replica whose vertex moved here keeps its inputs for its backup.
        self.set_replicas(&record)?;
        let (leaving, old, handed) = {
            let mut running = lock(&self.inner.running);
            let Some(r) = running
                .get_mut(&name)
                .filter(|r| r.record.id == record.id && r.record.only.is_some())
            else {
                bail!(Job, "job `{name}` (id {}) does not run here", record.id);
            };
            let old = r.record.only.clone().unwrap_or_default();
            let leaving = r.take_leaving(|v| new.contains(v));
            // A vertex that became a follower stops until its member has
            // seen what it is to follow; a follower that became the vertex
            // takes what its vertex recorded first (below), then makes
            // changes itself.
            let follows = record.follows.clone().unwrap_or_default();
            let followed = r
                .record
                .follows
                .replace(follows.clone())
                .unwrap_or_default();
            let mut handed = Vec::new();
            for t in &r.threads {
                match (follows.contains(&t.vertex), followed.contains(&t.vertex)) {
                    (true, false) => lock(&t.status).hold = true,
                    (false, true) => handed.push((t.vertex.clone(), t.status.clone())),
                    _ => {}
                }
            }
            r.record.backs = record.backs.clone();
            r.record.shared = record.shared.clone();
            let was = r
                .record
                .replicas
                .replace(record.replicas.clone().unwrap_or_default());
            let now = record.replicas.clone().unwrap_or_default();
            let promoted: Vec<&String> = was
                .iter()
                .flatten()
                .filter(|v| new.contains(*v) && !now.contains(*v))
                .collect();
            if !promoted.is_empty() {
                tracing::info!(
                    job = %name,
                    "{} replicas here are now the vertices (their member went), running on: {}",
                    promoted.len(),
                    promoted.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            r.record.only = Some(old.intersection(&new).cloned().collect());
            (leaving, old, handed)
        };
        halt_threads(leaving);
        // A follower that became the vertex reads on once it has taken
        // every switch its vertex recorded (its member's next look, when a
        // module for one is not here yet).
        for (vertex, status) in handed {
            self.take_over(&record, &vertex, kept, &status)?;
        }
        // The vertices about to start here from the snapshots stored here
        // keep their inputs held until they hold them themselves.
        let backs = record.backs.clone().unwrap_or_default();
        self.keep_resumes(&record, &backs.union(&new).cloned().collect());
        let mut keys = BTreeSet::new();
        let left: BTreeSet<String> = old.difference(&new).cloned().collect();
        self.hold_resumes(&record, &backs, &left)?;
        for vertex in &left {
            if let Some(key) = self.vertex_keys(&record, vertex)?.0.pop() {
                keys.insert(key);
            }
        }
        self.unhold_vertices(&keys);
        let added: BTreeSet<String> = new.difference(&old).cloned().collect();
        let (stayed, left) = (old.intersection(&new).count(), old.difference(&new).count());
        if !added.is_empty() || left > 0 {
            tracing::info!(
                job = %name,
                "vertices moved: {stayed} here run on, {} start here, {left} stopped here",
                added.len()
            );
        }
        let settled = backs.difference(&new).cloned().collect();
        if added.is_empty() {
            self.keep_resumes(&record, &settled);
            return Ok(());
        }
        // What the vertices that stay write is no copy.
        let plan = self.record_plan(&record)?;
        let mut written = BTreeSet::new();
        for v in plan_vertices(&plan) {
            if v.writes && old.contains(&v.name) && new.contains(&v.name) {
                written.insert(self.inner.streams.info(&record.stream(&v.name))?.id);
            }
        }
        let mut part = record.clone();
        part.only = Some(added.clone());
        self.adopt_timelines(&part, kept)?;
        let tasks = self.build(&part, true)?;
        self.hold_added(&tasks, written)?;
        self.keep_resumes(&record, &settled);
        let names = self.task_names(&part, &tasks);
        let mut running = lock(&self.inner.running);
        // The job stopped here meanwhile: nothing starts.
        if let Some(r) = running.get_mut(&name).filter(|r| r.record.id == record.id) {
            // Among the job's vertices here before they run: one that
            // switches at once records the switch (see `keep_timeline`).
            r.record.only = Some(new);
            let threads = self.spawn(tasks, names);
            r.vertices.extend(threads.iter().map(|t| t.status.clone()));
            r.threads.extend(threads);
        }
        Ok(())
    }

    /// Keeps backups from being stored until dropped (see
    /// [`Jobs::stop_all_but`]), as starting vertices here does.
    pub fn hold_stores(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.inner.stores)
    }

    /// Stops the instances of placed job `name` here of the vertices
    /// `keep` does not name, holds and snapshots kept, and the backups
    /// stored here: the next look at the placement starts what runs and
    /// what is backed up here now.
    pub fn stop_all_but(&self, name: &str, keep: &BTreeSet<&str>) {
        let leaving = {
            let mut running = lock(&self.inner.running);
            let Some(r) = running.get_mut(name) else {
                return;
            };
            let leaving = r.take_leaving(|v| keep.contains(v));
            if let Some(only) = &mut r.record.only {
                only.retain(|v| keep.contains(v.as_str()));
            }
            r.record.backs = Some(BTreeSet::new());
            leaving
        };
        halt_threads(leaving);
    }

    /// Stops the vertices of job `name` here without forgetting their
    /// snapshots (the coordinator placed them anew).
    pub fn stop_placed(&self, name: &str) {
        let running = lock(&self.inner.running).remove(name);
        if let Some(mut running) = running {
            running.halt();
            self.unhold_placed(&running.record.prefix());
        }
    }

    /// The bytes of module `version`, if this node stores it.
    pub fn module(&self, version: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .inner
            .streams
            .meta(&format!("{MODULE_PREFIX}{version}"))?)
    }

    /// Stores module bytes fetched from another member as `version`, once
    /// they prove to be that version (and a loadable component, compiled
    /// here once).
    pub fn store_module(&self, version: &str, bytes: Vec<u8>, from: &str) -> Result<()> {
        let module = self.inner.runtime.load(from, &bytes)?;
        let got = module.version.hex().to_string();
        if got != version {
            bail!(
                Job,
                "module {} from {from} has version {}: its bytes are not the module asked for",
                patching::short(version),
                patching::short(&got)
            );
        }
        self.inner
            .streams
            .commit_meta(vec![put(&format!("{MODULE_PREFIX}{version}"), bytes)])?
            .wait()?;
        Ok(())
    }

    /// Records that `reader` (a member's copy) needs `stream` from `pos` on:
    /// nothing it lacks is collected.
    pub fn hold(&self, stream: u64, reader: &str, pos: u64) {
        self.reader_at(stream, reader, pos);
    }

    /// Moves the hold of `reader` (a member's copy pulling `stream` from
    /// here) to `pos` as it acknowledges entries, if it still holds the
    /// stream: a copy whose hold was forgotten (its member no longer
    /// pulls the stream from here) gets none back from a pull still open.
    pub fn acknowledged(&self, stream: u64, reader: &str, pos: u64) {
        self.move_reader(stream, reader, pos, false);
    }

    /// Forgets the other members' holds on `stream` (`pull/…` and
    /// `backup/…` copies, `writer/…` holds for a replica) not in `keep`:
    /// members that no longer read it, whose vertices moved, or no longer
    /// run the vertex this member runs a replica of, hold nothing back.
    pub fn keep_copies(&self, stream: u64, keep: &BTreeSet<String>) {
        if let Some(list) = lock(&self.inner.readers).get_mut(&stream) {
            list.retain(|reader, _| !for_other_members(reader) || keep.contains(reader));
        }
    }

    /// How far the readers here need cluster ingest stream `stream`, if
    /// any reads it: a source from its backed-up snapshot, a backup from
    /// the snapshot it stored. Holds kept for other members' copies count
    /// not: those members report their own readers.
    pub fn needs(&self, stream: u64) -> Option<u64> {
        lock(&self.inner.readers).get(&stream).and_then(|r| {
            r.iter()
                .filter(|(reader, _)| !for_other_members(reader))
                .map(|(_, pos)| *pos)
                .min()
        })
    }

    /// The state, lag and input streams of each vertex of job `job`
    /// running here, by its plan name (a sink's status names its file
    /// instead).
    pub fn vertex_lags(&self, job: &str) -> Vec<(String, String, u64, Vec<String>)> {
        let running = lock(&self.inner.running);
        let Some(r) = running.get(job) else {
            return Vec::new();
        };
        r.threads
            .iter()
            .map(|t| {
                let s = lock(&t.status);
                let inputs = s.inputs.iter().map(|(name, _)| name.clone()).collect();
                (
                    t.vertex.clone(),
                    s.state.clone(),
                    self.lag(&s.inputs),
                    inputs,
                )
            })
            .collect()
    }

    /// Each vertex of job `job` running here that writes a stream (by its
    /// plan name): the seq it writes next, the seq below which it writes
    /// again what its stream held when it started, the streams it reads,
    /// and which run of it this is (one started again is another).
    pub fn writing(&self, job: &str) -> Vec<Writing> {
        let running = lock(&self.inner.running);
        let Some(r) = running.get(job) else {
            return Vec::new();
        };
        r.threads
            .iter()
            .filter_map(|t| {
                let s = lock(&t.status);
                let (_, next) = s.output.as_ref()?;
                Some(Writing {
                    vertex: t.vertex.clone(),
                    next: *next,
                    rewrites_below: s.rewrites_below,
                    reads: s.inputs.iter().map(|(name, _)| name.clone()).collect(),
                    run: s.run,
                })
            })
            .collect()
    }

    /// Keeps the streams `ids` from being collected here, whatever their
    /// readers here hold (those of placed jobs read by a vertex the cluster
    /// counts no snapshot of), and lets the others be.
    pub fn keep_from_start(&self, ids: std::collections::HashSet<u64>) {
        *lock(&self.inner.from_start) = ids;
    }

    /// Forgets every reader's hold on `stream` here: it was emptied, and
    /// what reads it from now on begins where its snapshot says.
    pub fn forget_readers(&self, stream: u64) {
        lock(&self.inner.readers).remove(&stream);
    }

    /// Like [`Jobs::hold`], but keeps a lower position `reader` holds.
    pub fn hold_from(&self, stream: u64, reader: &str, pos: u64) {
        let held = lock(&self.inner.readers)
            .get(&stream)
            .and_then(|r| r.get(reader).copied());
        self.reader_at(stream, reader, held.map_or(pos, |h| h.min(pos)));
    }
}

/// Whether `reader` holds a stream here for a copy on another member (its
/// pull, a backup's copy, a writer's replicas) rather than for a reader here.
pub(super) fn for_other_members(reader: &str) -> bool {
    reader.starts_with("pull/") || reader.starts_with("backup/") || reader.starts_with("writer/")
}

/// A vertex running here that writes a stream ([`Jobs::writing`]).
#[derive(Debug, Clone)]
pub struct Writing {
    /// Its plan name.
    pub vertex: String,
    /// The seq it writes next.
    pub next: u64,
    /// Below this seq it writes again what its stream held when it started.
    pub rewrites_below: u64,
    /// The streams it reads (full names).
    pub reads: Vec<String>,
    /// Which run of it this is.
    pub run: u64,
}
