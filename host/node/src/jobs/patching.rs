//! Changing a running job's UDF stages: deploys, rollbacks and runtime
//! filters, checked first (and optionally shadowed on recent input), queued
//! durably, and taken into the stage's timeline at its next CTI.

use super::*;

impl Jobs {
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
    ) -> Result<PatchReport> {
        let module = self
            .inner
            .runtime
            .load(origin, &bytes)
            .with_context(|| format!("deploy to job `{job}` stage `{stage}` refused"))?;
        let targets = self.targets(job, stage)?;
        let mut shadows = Vec::with_capacity(targets.len());
        for target in &targets {
            shadows.push(self.check_patch(job, target, &module, shadow)?);
        }
        let version = module.version.hex().to_string();
        self.inner
            .streams
            .commit_meta(vec![put(&format!("{MODULE_PREFIX}{version}"), bytes)])?
            .wait()?;
        let targets = targets
            .into_iter()
            .map(|t| (t, version.clone(), Change::Deploy))
            .collect();
        let mut report = self.patch_targets(job, stage, targets)?;
        report.shadow = copies::merge_shadows(shadows);
        Ok(report)
    }

    /// Returns stage `stage` of job `job` to an earlier version: `to` (a
    /// prefix of a version in its history), or the version before the current one.
    pub fn rollback(&self, job: &str, stage: &str, to: Option<&str>) -> Result<PatchReport> {
        let mut targets = Vec::new();
        for target in self.targets(job, stage)? {
            let version = self.rollback_target(job, &target, to)?;
            targets.push((target, version, Change::Rollback));
        }
        self.patch_targets(job, stage, targets)
    }

    /// The version a rollback of stage `stage` (one vertex) returns to,
    /// checked against the stage.
    pub(super) fn rollback_target(
        &self,
        job: &str,
        stage: &str,
        to: Option<&str>,
    ) -> Result<String> {
        let timeline = self.timeline(job, stage)?;
        self.rollback_target_in(job, stage, to, &timeline)
    }

    /// [`Jobs::rollback_target`] after the changes of `timeline`.
    pub(super) fn rollback_target_in(
        &self,
        job: &str,
        stage: &str,
        to: Option<&str>,
        timeline: &Timeline,
    ) -> Result<String> {
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
                    [] => bail!(Patch, "stage `{stage}` of job `{job}` never ran a version {prefix}; its versions: {}",
                        short_list(&timeline.versions())
                    ),
                    _ => bail!(Patch, "version prefix {prefix} is ambiguous in stage `{stage}`: {}",
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
        self.check_patch_after(job, stage, &module, None, Some(timeline.version_after(n)))?;
        Ok(target)
    }

    /// The status of stage `stage` of `job`, if it can take a change: the
    /// job has neither finished nor failed.
    pub(super) fn check_running(
        &self,
        job: &str,
        stage: &str,
        refused: &str,
    ) -> Result<VertexStatus> {
        let status = lock(self.stage_status(job, stage)?.as_ref()).clone();
        match status.state.as_str() {
            "finished" => bail!(Patch, "{refused}: the job has finished"),
            // A UDF stage that failed on a batch can resume past it with a fix.
            "failed" if status.stuck_at.is_some() => Ok(status),
            "failed" => bail!(
                Patch,
                "{refused}: the stage failed ({}); cancel and resubmit the job",
                status.error.clone().unwrap_or_default()
            ),
            _ => Ok(status),
        }
    }

    /// Every version stage `stage` of job `job` ran, with the input position
    /// where each took effect.
    pub fn history(&self, job: &str, stage: &str) -> Result<Vec<HistoryEntry>> {
        let targets = self.targets(job, stage)?;
        let mut out = Vec::new();
        for target in &targets {
            let copy = if *target == stage {
                String::new()
            } else {
                target.clone()
            };
            let timeline = self.timeline(job, target)?;
            let first = out.len();
            out.push(HistoryEntry {
                copy: copy.clone(),
                version: timeline.original.clone(),
                position: 0,
                ctis: 0,
                why: "submitted with the job".into(),
                at_ms: 0,
                current: false,
            });
            for p in &timeline.patches {
                out.push(HistoryEntry {
                    copy: copy.clone(),
                    version: p.version.clone(),
                    position: p.position,
                    ctis: p.ctis,
                    why: p.change.describe(),
                    at_ms: p.at_ms,
                    current: false,
                });
            }
            if let Some(last) = out[first..].last_mut() {
                last.current = true;
            }
        }
        Ok(out)
    }

    /// The durable timeline of a UDF stage of a job on this node.
    pub(super) fn timeline(&self, job: &str, stage: &str) -> Result<Timeline> {
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
    pub(super) fn udf_stage(
        &self,
        job: &str,
        stage: &str,
    ) -> Result<(JobRecord, StageSpec, UdfSpec)> {
        let (record, plan) = self.running_plan(job)?;
        let spec = named(&plan.stages, |s| &s.name, stage, job, "stage")?;
        match &spec.operator {
            Operator::Udf(udf) => Ok((record, spec.clone(), udf.clone())),
            Operator::Union => match copies::copies(&plan, stage) {
                Some(copies) => bail!(
                    Patch,
                    "stage `{stage}` of job `{job}` runs as {} rVertices ({} .. {}); name one of them",
                    copies.len(),
                    copies[0],
                    copies[copies.len() - 1]
                ),
                None => bail!(
                    Patch,
                    "stage `{stage}` of job `{job}` is a union; it runs no UDF to patch"
                ),
            },
            Operator::Temporal(t) => {
                bail!(
                    Patch,
                    "stage `{stage}` of job `{job}` is a built-in operator ({}); it runs no UDF to patch",
                    t.describe
                )
            }
        }
    }

    /// The record of running job `job` and its plan.
    pub(super) fn running_plan(&self, job: &str) -> Result<(JobRecord, Plan)> {
        let record = lock(&self.inner.running)
            .get(job)
            .map(|r| r.record.clone())
            .with_context(|| format!("no job `{job}` on this node (jobs: {})", self.names()))?;
        let plan = self.record_plan(&record)?;
        Ok((record, plan))
    }

    /// The shared status of the vertex of stage `stage` of `job`.
    pub(super) fn stage_status(&self, job: &str, stage: &str) -> Result<Shared> {
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
    pub(super) fn check_patch(
        &self,
        job: &str,
        stage: &str,
        module: &crate::wasm::Module,
        shadow: Option<u64>,
    ) -> Result<Option<ShadowReport>> {
        self.check_patch_after(job, stage, module, shadow, None)
    }

    /// [`Jobs::check_patch`] for a change made after the changes queued
    /// before it, once the stage runs `running` (`None`: what it runs now).
    pub(super) fn check_patch_after(
        &self,
        job: &str,
        stage: &str,
        module: &crate::wasm::Module,
        shadow: Option<u64>,
        running: Option<&str>,
    ) -> Result<Option<ShadowReport>> {
        let refused = || {
            format!(
                "module {} refused for job `{job}` stage `{stage}`",
                module.version
            )
        };
        let (record, spec, udf) = self.udf_stage(job, stage)?;
        let status = self.check_running(job, stage, &refused())?;
        if running
            .or(status.module.as_deref())
            .is_some_and(|m| !m.is_empty() && module.version.hex().starts_with(m))
        {
            bail!(Patch, "{}: the stage already runs it", refused());
        }
        let streams = &self.inner.streams;
        let input = streams.info(&record.stream(&spec.inputs[0]))?;
        let input_schema = event_schema(&input.fields());
        let new = crate::wasm::stage_with_module(
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
                Patch,
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
        let mut old = crate::wasm::stage_with_module(
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
    pub(super) fn patch(
        &self,
        job: &str,
        stage: &str,
        version: String,
        change: Change,
    ) -> Result<PatchReport> {
        if let Some(at) = self.stuck(job, stage)? {
            return self.unstick(job, stage, version, change, at);
        }
        let pending = self.schedule(job, stage, version, change)?;
        self.settle(pending)
    }

    /// Where stage `stage` of `job` failed on a batch (input position, CTIs
    /// written), if it did and a change can resume it there.
    pub(super) fn stuck(&self, job: &str, stage: &str) -> Result<Option<(u64, u64)>> {
        let shared = self.stage_status(job, stage)?;
        let s = lock(&shared);
        Ok(s.stuck_at.filter(|_| s.state == "failed"))
    }

    /// Queues a switch to `version` for the stage's vertex, which takes it
    /// at its next CTI.
    pub(super) fn schedule(
        &self,
        job: &str,
        stage: &str,
        version: String,
        change: Change,
    ) -> Result<Pending> {
        self.schedule_with(job, stage, version, change, Vec::new())
    }

    /// [`Jobs::schedule`], writing `with` in the same transaction as the
    /// queued request.
    pub(super) fn schedule_with(
        &self,
        job: &str,
        stage: &str,
        version: String,
        change: Change,
        with: Vec<Op>,
    ) -> Result<Pending> {
        let shared = self.stage_status(job, stage)?;
        let scheduled = std::time::Instant::now();
        let (record, _, _) = self.udf_stage(job, stage)?;
        let request = self.enqueue(
            &queue_key(&stage_key(&record, stage)),
            &version,
            &change,
            with,
        )?;
        let id = request.id;
        let (before, from) = {
            let mut s = lock(&shared);
            s.requests.push(request);
            (s.patches, s.module.clone().unwrap_or_default())
        };
        let report = PatchReport {
            job: job.to_string(),
            stage: stage.to_string(),
            from,
            to: version.clone(),
            change: change.describe(),
            applied: None,
            switch_us: 0,
            shadow: None,
            copies: Vec::new(),
            finished: false,
        };
        Ok(Pending {
            shared,
            id,
            before,
            change,
            version,
            scheduled,
            report,
        })
    }

    /// Waits (a few seconds at most) until a scheduled switch took effect
    /// at a CTI and is durable.
    pub(super) fn settle(&self, pending: Pending) -> Result<PatchReport> {
        let Pending {
            shared,
            id,
            before,
            change,
            version,
            scheduled,
            mut report,
        } = pending;
        let describe_change = report.change.clone();
        wait_status(&shared, |s| {
            if let Some(Some(why)) = s.outcomes.get(&id) {
                if change.is_module() {
                    bail!(
                        Patch,
                        "the stage could not switch to module {}: {why}",
                        short(&version)
                    );
                }
                bail!(
                    Patch,
                    "the stage could not make the change ({describe_change}): {why}"
                );
            }
            if s.state == "failed" {
                bail!(
                    Patch,
                    "the stage failed: {}",
                    s.error.clone().unwrap_or_default()
                );
            }
            Ok(s.outcomes.contains_key(&id))
        })?;
        // Anything queued before this barrier is durable once it is.
        self.inner.streams.commit_meta(Vec::new())?.wait()?;
        report.switch_us = scheduled.elapsed().as_micros() as u64;
        let timeline = self.timeline(&report.job, &report.stage)?;
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
    pub(super) fn unstick(
        &self,
        job: &str,
        stage: &str,
        version: String,
        change: Change,
        at: (u64, u64),
    ) -> Result<PatchReport> {
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
                Patch,
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
                    Patch,
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
            copies: Vec::new(),
            finished: false,
        })
    }

    /// Calls `f` with the queue at `queue_key`, read from storage the first
    /// time; every change to a queue goes through here, under one lock.
    pub(super) fn with_queue<T>(
        &self,
        queue_key: &str,
        f: impl FnOnce(&mut Queue) -> Result<T>,
    ) -> Result<T> {
        let mut queues = lock(&self.inner.queues);
        let queue = match queues.entry(queue_key.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(stored(&self.inner.streams, queue_key)?.unwrap_or_default())
            }
        };
        f(queue)
    }

    /// Appends a change to the queue at `queue_key` and returns once the
    /// queue holding it is durable: an accepted change survives a crash.
    pub(super) fn enqueue(
        &self,
        queue_key: &str,
        version: &str,
        change: &Change,
        with: Vec<Op>,
    ) -> Result<Requested> {
        let (request, ticket) = self.with_queue(queue_key, |queue| {
            let id = queue.push(version.to_string(), change.clone());
            let request = queue
                .waiting
                .last()
                .cloned()
                .with_context(|| format!("request {id} vanished from queue {queue_key}"))?;
            // Queued for commit under the lock, so commits keep the queue's order.
            let ticket = self.inner.streams.commit_meta(
                std::iter::once(put(queue_key, postcard::to_allocvec(queue)?))
                    .chain(with)
                    .collect(),
            )?;
            Ok((request, ticket))
        })?;
        ticket.wait()?;
        Ok(request)
    }
}

/// How long a deploy waits for the stage's next CTI.
pub(super) const PATCH_WAIT: Duration = Duration::from_secs(5);

/// The first 12 hex digits of a version.
pub(super) fn short(version: &str) -> &str {
    &version[..version.len().min(12)]
}

pub(super) fn short_list(versions: &[&str]) -> String {
    versions
        .iter()
        .map(|v| short(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `old` and `new` on the last `rows` rows of `stream` (fresh state for
/// both) and counts the output rows that differ.
pub(super) fn shadow_run(
    streams: &Streams,
    stream: u64,
    rows: u64,
    mut old: UdfStage,
    mut new: UdfStage,
) -> Result<ShadowReport> {
    // Only what the stream still holds: collected entries are gone, and the
    // stream's reader may collect more while this reads back.
    let (next, _, mut low) = streams.positions(stream).unwrap_or_default();
    let mut batches = Vec::new();
    let mut have = 0u64;
    let mut seq = next;
    while seq > low && have < rows {
        let from = seq.saturating_sub(64).max(low);
        let entries = match streams.read_written(stream, from, (seq - from) as usize) {
            Err(crate::rstream::StreamError::Collected { low: now, .. }) if now > from => {
                low = now;
                continue;
            }
            read => read?,
        };
        for (_, bytes) in entries.into_iter().rev() {
            if let Entry::Batch { batch, .. } =
                Entry::decode(&bytes).map_err(NodeError::encoding)?
            {
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
pub(super) fn load_module(
    runtime: &Runtime,
    streams: &Streams,
    version: &str,
    origin: &str,
) -> Result<crate::wasm::Module> {
    if let Some(module) = runtime.cached(version) {
        return Ok(module);
    }
    let bytes = streams
        .meta(&format!("{MODULE_PREFIX}{version}"))?
        .with_context(|| format!("module {version} is not stored on this node"))?;
    Ok(runtime.load(origin, &bytes)?)
}

/// Polls a vertex's status (every millisecond, for `PATCH_WAIT` at most)
/// until `done` says so or fails.
pub(super) fn wait_status(
    shared: &Shared,
    mut done: impl FnMut(&VertexStatus) -> Result<bool>,
) -> Result<()> {
    let deadline = std::time::Instant::now() + PATCH_WAIT;
    while std::time::Instant::now() < deadline {
        if done(&lock(shared))? {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}
