//! Turning a job record into its vertices: streams created, snapshots,
//! timelines and queued changes loaded, and a thread started per vertex.

use super::*;

impl Jobs {
    /// Compiles a job record into vertex tasks, creating its streams and
    /// loading each vertex's snapshot.
    pub(super) fn build(
        &self,
        record: &JobRecord,
        create: bool,
    ) -> Result<Vec<(Task, VertexStatus)>> {
        let plan: Plan = self.record_plan(record)?;
        let streams = &self.inner.streams;
        let prefix = record.prefix();
        let mut schemas: HashMap<String, (u64, SchemaRef)> = HashMap::new();
        let mut tasks = Vec::new();
        let dead_fields = dead_fields();
        // A vertex's output stream and its dead-letter stream: (output id, output name, dead id).
        let job_stream = |name: &str, schema: &SchemaRef| -> Result<(u64, String, u64)> {
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
                        &record.starts,
                    )?;

                    schemas.insert(spec.name.clone(), (output, schema));
                    tasks.push((
                        Task::Vertex {
                            vertex: Box::new(vertex),
                            inputs: vec![info.id],
                            output,
                            dead,
                            logs: None,
                            key,
                        },
                        status,
                    ));
                }
                SourceOrigin::File { .. } | SourceOrigin::Nexmark { .. } => {
                    let nexmark = matches!(spec.origin, SourceOrigin::Nexmark { .. });
                    if !nexmark {
                        self.inner
                            .files
                            .check(&spec.path)
                            .map_err(|e| err!(Job, "{at}: {e}"))?;
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
                        inputs: vec![if nexmark {
                            ("nexmark".to_string(), at_pos.line)
                        } else {
                            (spec.path.display().to_string(), at_pos.offset)
                        }],
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
                        .map_err(|e| err!(Job, "job `{}` sinks[{i}]: {e}", plan.name))?;
                    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
                        bail!(
                            Job,
                            "job `{}` sinks[{i}]: {} is not a regular file; a sink on a node writes exactly once by truncating its file to what was synced, so it needs one",
                            plan.name,
                            path.display()
                        );
                    }
                    Some(path.clone())
                }
                SinkTarget::Discard => None,
                SinkTarget::Stdout => bail!(
                    Job,
                    "job `{}` sinks[{i}]: a job on a node cannot write to stdout; give `path` (or read its stream with `weir stream read`)",
                    plan.name
                ),
            };
            let (input, schema) = schemas
                .get(&spec.input)
                .with_context(|| format!("sinks[{i}]: no stream `{}`", spec.input))?;
            let columns = match &spec.columns {
                None => None,
                Some(names) => Some(
                    crate::sink::projection(schema, names)
                        .map_err(|e| err!(Job, "job `{}` sinks[{i}]: {e}", plan.name))?,
                ),
            };
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
                vertex: Some(format!("sink{i}")),
                state: "starting".into(),
                inputs: vec![(record.stream(&spec.input), at.next)],
                rows_in: at.rows,
                rows_out: at.rows,
                ..VertexStatus::default()
            };
            let shared = record
                .shared
                .as_ref()
                .is_some_and(|s| s.contains(&format!("sink{i}")));
            tasks.push((
                Task::Sink {
                    shared,
                    input: *input,
                    path,
                    interval: spec.interval,
                    columns,
                    ordered: spec.ordered,
                    key,
                    at,
                },
                status,
            ));
        }
        if let Some(only) = &record.only {
            tasks = placed::keep_placed(&plan, tasks, only);
        }
        // A follower starts stopped: it reads on once its member has seen
        // that no change to its stage waits (after a restart too, so it
        // never reads past where it said it stopped).
        for (_, status) in &mut tasks {
            status.hold = record.follows.iter().flatten().any(|v| *v == status.name);
        }
        Ok(tasks)
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn stage_task(
        &self,
        record: &JobRecord,
        prefix: &str,
        spec: &StageSpec,
        schemas: &HashMap<String, (u64, SchemaRef)>,
        job_stream: &dyn Fn(&str, &SchemaRef) -> Result<(u64, String, u64)>,
    ) -> Result<(Task, VertexStatus, u64, SchemaRef)> {
        let streams = &self.inner.streams;
        let at = format!("job `{}` stage `{}`", record.name, spec.name);
        let mut inputs = Vec::new();
        let mut read = Vec::new();
        for name in &spec.inputs {
            let (id, schema) = schemas
                .get(name)
                .with_context(|| format!("{at}: no stream `{name}`"))?;
            read.push((name.as_str(), schema));
            inputs.push((*id, record.stream(name)));
        }
        let temporal = match &spec.operator {
            Operator::Temporal(t) => Some((t.make)().map_err(|e| err!(Job, "{at}: {e}"))?),
            _ => None,
        };
        // A temporal operator's inputs (a join's) may differ; it names them.
        let input_schema = match &temporal {
            Some(op) => op.input_schemas()[0].clone(),
            None => crate::schema::merged_input(&spec.name, &read)
                .map_err(|e| err!(Job, "job `{}` {e}", record.name))?,
        };
        let key = format!("{SNAPSHOTS}{prefix}/{}", spec.name);
        let snapshot: Option<VertexSnapshot> = stored(streams, &key)?;
        // Placed, a stage with no snapshot reads its inputs (streams of
        // the job) from their first entry: one collected here already
        // would make it skip what it never read, and write a different
        // stream than its earlier instance did.
        let placed_here = |o: &std::collections::BTreeSet<String>| o.contains(&spec.name);
        if snapshot.is_none() && record.only.as_ref().is_some_and(placed_here) {
            for (id, name) in &inputs {
                let low = streams.positions(*id).map_or(0, |p| p.2);
                if low > 0 {
                    bail!(
                        Job,
                        "{at}: starts with no snapshot, but this member's copy of its input `{name}` begins at seq {low}, not 0"
                    );
                }
            }
        }
        let mut patching = None;
        let operator = match &spec.operator {
            Operator::Union => vertex::Operator::Union,
            Operator::Temporal(_) => match temporal {
                Some(op) => vertex::Operator::Temporal(op),
                None => unreachable!("made above"),
            },
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
                let mut load = self.stage_loader(&spec.name, udf, &input_schema);
                let stage = load(&version).with_context(|| at.clone())?;
                patching = Some((timeline, load));
                vertex::Operator::Udf(Box::new(stage))
            }
        };
        let output_schema = match &operator {
            vertex::Operator::Udf(stage) => stage.output_schema(),
            vertex::Operator::Temporal(op) => op.output_schema(),
            _ => input_schema.clone(),
        };
        let (output, out_name, dead) = job_stream(&spec.name, &output_schema)?;
        // What a UDF logs, numbered, kept for `weir udf logs` (a validation
        // makes no stream: its output id is 0).
        let logs = match (&spec.operator, output) {
            (Operator::Udf(_), 1..) => Some(streams.create(&logs_stream(&out_name), &[])?.id),
            _ => None,
        };
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
            &BTreeMap::new(),
        )?;
        vertex.capture_logs();
        if let Some((timeline, load)) = patching {
            vertex = vertex.with_patching(timeline, load)?;
            // What it wrote before a crash (or, moved here, what its
            // member had sent) was made without the changes still queued.
            let next = |id| streams.positions(id).map_or(0, |p| p.0);
            vertex.hold_requests_below(next(output), next(dead));
            // Placed: readers on other members may have read more of it,
            // from an instance elsewhere; their member says how far.
            if record.only.is_some() {
                vertex.await_copies();
            }
            // Changes accepted before a restart, not yet in the timeline.
            for request in self.with_queue(&queue_key(&key), |q| Ok(q.waiting.clone()))? {
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
                logs,
                key,
            },
            status,
            output,
            output_schema,
        ))
    }

    /// Builds UDF stage `name` of `udf` over `input_schema` at any module
    /// version of the node's registry, for its vertex's patches.
    pub(super) fn stage_loader(
        &self,
        name: &str,
        udf: &UdfSpec,
        input_schema: &SchemaRef,
    ) -> vertex::StageLoader {
        let runtime = self.inner.runtime.clone();
        let (store, origin) = (
            self.inner.streams.clone(),
            udf.component.display().to_string(),
        );
        let (name, udf, schema) = (name.to_string(), udf.clone(), input_schema.clone());
        Box::new(move |version: &str| {
            let module = load_module(&runtime, &store, version, &origin).map_err(|e| {
                crate::stage::StageError::Mismatch {
                    stage: name.clone(),
                    module: version.chars().take(12).collect(),
                    message: format!("{e:#}"),
                }
            })?;
            crate::wasm::stage_with_module(&runtime, &name, &udf, module, schema.clone())
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn vertex(
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
        starts: &BTreeMap<String, u64>,
    ) -> Result<(Vertex, VertexStatus)> {
        let streams = &self.inner.streams;
        let resume = match snapshot {
            Some(snapshot) => {
                let state = match recovery {
                    crate::plan::Recovery::Checkpoint { .. } => load_state(streams, key)?,
                    crate::plan::Recovery::Replay { .. } => KeyedState::new(),
                };
                vertex::Resume::Snapshot(Box::new(snapshot), state)
            }
            // A new vertex starts at what its inputs still hold; in a
            // cluster, each instance of a new source where the stream's
            // collection point was when the job was submitted.
            None => vertex::Resume::Fresh(
                inputs
                    .iter()
                    .map(|(id, name)| match starts.get(name) {
                        Some(start) => *start,
                        None => streams.positions(*id).map_or(0, |p| p.2),
                    })
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
            rewrites_below: streams.positions(output.0).map_or(0, |p| p.0),
            run: RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ..VertexStatus::default()
        };
        Ok((vertex, status))
    }

    /// Records that `reader` needs `stream` from `pos` on, and collects what no
    /// reader needs. Called only after the snapshot holding `pos` was queued,
    /// so the collection is never durable before the snapshot is.
    pub(super) fn reader_at(&self, stream: u64, reader: &str, pos: u64) {
        self.move_reader(stream, reader, pos, true);
    }

    /// [`Jobs::reader_at`], or nothing when `reader` holds no position of
    /// `stream` and `create` is false.
    pub(super) fn move_reader(&self, stream: u64, reader: &str, pos: u64, create: bool) {
        let low = {
            let mut readers = lock(&self.inner.readers);
            let list = readers.entry(stream).or_default();
            match list.get_mut(reader) {
                Some(at) => *at = pos,
                None if create => {
                    list.insert(reader.to_string(), pos);
                }
                None => return,
            }
            list.values().copied().min().unwrap_or(0)
        };
        // A tail behind the slowest reader stays, for `udf deploy --shadow`.
        let low = low.saturating_sub(SHADOW_TAIL);
        if self.is_whole(stream) || lock(&self.inner.from_start).contains(&stream) {
            return;
        }
        if let Err(e) = self.inner.streams.gc(stream, low) {
            tracing::warn!("collecting stream #{stream} below {low}: {e}");
        }
    }

    /// Registers the readers of a job's vertices at their snapshots' positions.
    fn hold_local(&self, tasks: &[(Task, VertexStatus)]) {
        for (stream, key, pos) in task_reads(tasks) {
            self.reader_at(stream, key, pos);
        }
    }

    pub(super) fn start(&self, record: JobRecord, tasks: Vec<(Task, VertexStatus)>) {
        // Register every reader before any vertex runs and collects.
        if record.only.is_some() {
            let replicas = self.set_replicas(&record);
            let backs = record.backs.clone().unwrap_or_default();
            let held = replicas
                .and_then(|()| self.hold_placed(&record.prefix(), &tasks))
                .and_then(|()| {
                    self.hold_resumes(&record, &backs, &std::collections::BTreeSet::new())
                });
            if let Err(e) = held {
                tracing::error!("job `{}`: registering its readers: {e:#}", record.name);
            }
        } else {
            self.hold_local(&tasks);
        }
        let names = self.task_names(&record, &tasks);
        // Listed before its vertices run: a copy of a placed job that
        // switches at once finds its job, and records the switch.
        let mut running = lock(&self.inner.running);
        let threads = self.spawn(tasks, names);
        let vertices = threads.iter().map(|t| t.status.clone()).collect();
        running.insert(
            record.name.clone(),
            Running {
                record,
                stop: Arc::new(AtomicBool::new(false)),
                threads,
                vertices,
            },
        );
    }

    /// The plan's names of `tasks` (a placed job's, in plan order), else
    /// the names their statuses carry.
    pub(super) fn task_names(
        &self,
        record: &JobRecord,
        tasks: &[(Task, VertexStatus)],
    ) -> Vec<String> {
        if let Some(only) = &record.only
            && let Ok(plan) = self.record_plan(record)
        {
            let names: Vec<String> = placed::plan_vertices(&plan)
                .into_iter()
                .map(|v| v.name)
                .filter(|v| only.contains(v))
                .collect();
            if names.len() == tasks.len() {
                return names;
            }
        }
        tasks.iter().map(|(_, s)| s.name.clone()).collect()
    }

    /// Starts a thread per task, each with its own stop flag.
    pub(super) fn spawn(
        &self,
        tasks: Vec<(Task, VertexStatus)>,
        names: Vec<String>,
    ) -> Vec<VertexThread> {
        let mut threads = Vec::new();
        for ((task, status), vertex) in tasks.into_iter().zip(names) {
            let shared: Shared = Arc::new(Mutex::new(status));
            let jobs = self.clone();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let name = lock(&shared).name.clone();
            let status = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("weir-{name}"))
                .spawn(move || {
                    let stop = flag;
                    lock(&shared).state = "running".into();
                    // A bug that panics fails the vertex, saying so, instead of
                    // leaving it shown as running.
                    let run = std::panic::AssertUnwindSafe(|| match task {
                        Task::Vertex {
                            vertex,
                            inputs,
                            output,
                            dead,
                            logs,
                            key,
                        } => jobs.run_vertex(
                            *vertex,
                            &inputs,
                            (output, dead, logs),
                            &key,
                            &stop,
                            &shared,
                        ),
                        Task::File {
                            spec,
                            batch_size,
                            output,
                            dead,
                            key,
                            at,
                        } => {
                            let run = match spec.origin {
                                SourceOrigin::Nexmark { .. } => Jobs::run_nexmark,
                                _ => Jobs::run_file,
                            };
                            run(
                                &jobs, &spec, batch_size, output, dead, &key, *at, &stop, &shared,
                            )
                        }
                        Task::Sink {
                            input,
                            path,
                            interval,
                            columns,
                            ordered,
                            key,
                            at,
                            shared: together,
                        } => jobs.run_sink(
                            input,
                            (path.as_deref(), together),
                            (interval, columns.as_deref(), ordered),
                            &key,
                            at,
                            &stop,
                            &shared,
                        ),
                    });
                    let result = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(err!(Job, "the vertex's thread panicked: {what}"))
                    });
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
                Ok(handle) => threads.push(VertexThread {
                    vertex,
                    stop,
                    status,
                    handle,
                }),
                Err(e) => tracing::error!("cannot start a vertex thread: {e}"),
            }
        }
        threads
    }
}

/// What each task reads: `(stream, reader key, position in its snapshot)`.
pub(super) fn task_reads(tasks: &[(Task, VertexStatus)]) -> Vec<(u64, &str, u64)> {
    let mut reads = Vec::new();
    for (task, _) in tasks {
        match task {
            Task::Vertex {
                vertex,
                inputs,
                key,
                ..
            } => {
                for (stream, pos) in inputs.iter().zip(&vertex.position().inputs) {
                    reads.push((*stream, key.as_str(), *pos));
                }
            }
            Task::Sink { input, key, at, .. } => reads.push((*input, key.as_str(), at.next)),
            Task::File { .. } => {}
        }
    }
    reads
}

/// Runs of vertices started in this process, numbered.
static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RedbStorage;

    /// A stream kept from its start is not collected as its readers move
    /// on (a vertex reading it may start over elsewhere); let be, it is
    /// collected below them again.
    #[test]
    fn a_stream_kept_from_its_start_is_not_collected_as_its_readers_move() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = RedbStorage::open(&dir.path().join("node.redb")).expect("redb");
        let streams = Streams::open(Arc::new(storage)).expect("streams");
        let jobs = Jobs::new(
            streams.clone(),
            Runtime::new(None).expect("runtime"),
            FileAccess::default(),
        );
        let id = streams.create("j@1.s", &[]).expect("a stream").id;
        for seq in 0..(SHADOW_TAIL + 100) {
            streams.write(id, seq, vec![1]).expect("written");
        }
        streams
            .commit_meta(Vec::new())
            .expect("commit")
            .wait()
            .expect("durable");
        let low = || streams.positions(id).map_or(0, |p| p.2);
        jobs.keep_from_start([id].into());
        jobs.reader_at(id, "reader", SHADOW_TAIL + 100);
        assert_eq!(low(), 0, "kept from its start");
        jobs.keep_from_start(Default::default());
        jobs.reader_at(id, "reader", SHADOW_TAIL + 100);
        assert_eq!(low(), 100, "collected below the reader's tail");
    }
}
