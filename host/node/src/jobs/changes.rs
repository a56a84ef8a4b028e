//! Changes to the stages of a job the cluster runs (`weir udf deploy`,
//! `weir udf rollback`, `weir job filter add|remove`): a member that runs a
//! copy of the stage checks the change against it ([`Jobs::check_change`])
//! before it is written to the coordinator's metadata; then every member
//! makes each written change, in order, to the copies it runs
//! ([`Jobs::take_change`]). Each copy switches at a CTI of its own input and
//! records where in its timeline, as on one node, so a replay repeats it.
//!
//! A member records, per copy, how many of the job's changes the copy has
//! taken, in the same transaction as the queued request: after a crash it
//! neither loses a change nor makes one twice.

use weir_cluster::jobs::{CopyTimeline, PatchRequest, StageChange};
use weir_core::patch::extends;

use super::copies::copies;
use super::patching::short;
use super::*;

/// How long a rollback asked of a copy waits for a change queued for it
/// (a deploy just asked, made at the copy's next CTI) before it is checked.
const QUEUED_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A change as a user asks for it, before it is checked.
#[derive(Clone)]
pub enum Asked {
    /// A module's bytes, and where they came from (for errors).
    Deploy {
        /// The file it was read from.
        origin: String,
        /// The component.
        bytes: Vec<u8>,
    },
    /// Back to the version named by this prefix, or the one before.
    Rollback {
        /// A version prefix.
        to: Option<String>,
    },
    /// A runtime filter to add.
    FilterAdd(String),
    /// A runtime filter to remove.
    FilterRemove(String),
}

/// Test hook: a file naming a copy whose followers here are handed a
/// timeline with a switch where they have already read past (as if their
/// vertex had made one there), so that they fail as a diverged follower
/// does.
pub const DIVERGE_FILE_ENV: &str = "WEIR_TEST_DIVERGE_FILE";

/// Hands follower `copy` (its thread's `status`) a timeline it cannot
/// take, if the [`DIVERGE_FILE_ENV`] file names it.
fn diverge(copy: &str, status: &Shared) {
    let Some(path) = std::env::var_os(DIVERGE_FILE_ENV) else {
        return;
    };
    let named = std::fs::read_to_string(path).is_ok_and(|t| t.trim() == copy);
    let mut s = lock(status);
    if named && s.state == "running" && s.ctis > 0 {
        s.follow = Some(vec![weir_core::patch::Patch {
            position: 0,
            ctis: 0,
            version: String::new(),
            change: Change::FilterRemove("the test hook's".into()),
            at_ms: 0,
        }]);
    }
}

/// What a member tells the coordinator about the followers it runs.
#[derive(Debug, Default)]
pub struct Followed {
    /// Where each follower stopped for a change: (copy, the change's
    /// index, CTIs written).
    pub stopped: Vec<(String, usize, u64)>,
    /// The followers that failed (could not follow their vertex), with why.
    pub failed: Vec<(String, String)>,
}

/// Where a member records how many of a job's cluster changes a copy took.
pub(super) fn taken_key(record: &JobRecord, copy: &str) -> String {
    format!("{CHANGES}{}/{copy}", record.prefix())
}

impl Jobs {
    /// The copies of stage `stage` in the plan of `record`: the stage's
    /// rVertices, or the stage itself.
    pub fn stage_copies(&self, record: &JobRecord, stage: &str) -> Result<Vec<String>> {
        let plan = self.record_plan(record)?;
        if !plan.stages.iter().any(|s| s.name == stage) {
            let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
            bail!(
                Patch,
                "job `{}` has no stage `{stage}` (its stages: {})",
                record.name,
                names.join(", ")
            );
        }
        Ok(copies(&plan, stage).unwrap_or_else(|| vec![stage.to_string()]))
    }

    /// Checks `asked` against copy `copy` of a stage of `job`, which runs
    /// here; returns the change as the cluster records it, and the version
    /// the copy runs. A deployed module is stored here, for the other
    /// members to fetch.
    pub fn check_change(
        &self,
        job: &str,
        copy: &str,
        asked: Asked,
        written: usize,
    ) -> Result<(StageChange, String)> {
        let from = self.check_running(job, copy, "change refused")?.module;
        let change = match asked {
            Asked::Deploy { origin, bytes } => {
                let module = self
                    .inner
                    .runtime
                    .load(&origin, &bytes)
                    .with_context(|| format!("deploy to job `{job}` stage `{copy}` refused"))?;
                self.check_patch(job, copy, &module, None)?;
                let version = module.version.hex().to_string();
                self.inner
                    .streams
                    .commit_meta(vec![put(&format!("{MODULE_PREFIX}{version}"), bytes)])?
                    .wait()?;
                StageChange::Deploy { version }
            }
            Asked::Rollback { to } => {
                // Checked against the changes queued for the copy too: a
                // rollback asked just after a deploy returns from it, even
                // where the copy (behind, or moved) has not made it yet.
                self.await_queued(job, copy, written)?;
                let (record, _) = self.running_plan(job)?;
                let queued = queue_key(&stage_key(&record, copy));
                let mut timeline = self.timeline(job, copy)?;
                self.with_queue(&queued, |q| {
                    for r in q.waiting.iter().filter(|r| r.change.is_module()) {
                        timeline.patches.push(weir_core::patch::Patch {
                            position: 0,
                            ctis: 0,
                            version: r.version.clone(),
                            change: r.change.clone(),
                            at_ms: r.at_ms,
                        });
                    }
                    Ok(())
                })?;
                self.rollback_target_in(job, copy, to.as_deref(), &timeline)?;
                StageChange::Rollback { to }
            }
            Asked::FilterAdd(expr) => match self.filter_change(job, copy, &expr, true)? {
                Change::FilterAdd(text) => StageChange::FilterAdd { text },
                other => bail!(Patch, "adding a filter made {other:?}"),
            },
            Asked::FilterRemove(expr) => match self.filter_change(job, copy, &expr, false)? {
                Change::FilterRemove(text) => StageChange::FilterRemove { text },
                other => bail!(Patch, "removing a filter made {other:?}"),
            },
        };
        Ok((change, from.unwrap_or_default()))
    }

    /// Waits, up to [`QUEUED_WAIT`], until copy `copy` of `job` has made
    /// the changes queued for it, and, placed, taken (made or queued) the
    /// first `written` of the cluster's changes to the job. One that has
    /// not taken them by then (it is starting, or moving) is refused:
    /// checked without them, a change could be refused for what they
    /// make, or let through against it.
    fn await_queued(&self, job: &str, copy: &str, written: usize) -> Result<()> {
        let (record, _) = self.running_plan(job)?;
        let queued = queue_key(&stage_key(&record, copy));
        let taken = || -> Result<bool> {
            if record.only.is_none() {
                return Ok(true);
            }
            let n: u64 = stored(&self.inner.streams, &taken_key(&record, copy))?.unwrap_or(0);
            Ok(n >= written as u64)
        };
        let deadline = std::time::Instant::now() + QUEUED_WAIT;
        while (self.with_queue(&queued, |q| Ok(!q.waiting.is_empty()))? || !taken()?)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !taken()? {
            bail!(
                Patch,
                "stage `{copy}` of job `{job}` has not yet taken the cluster's {written} earlier changes to the job after {QUEUED_WAIT:?} (it is starting or moving); retry in a moment"
            );
        }
        Ok(())
    }

    /// Makes the changes of `job` (`patches`, in the order they were
    /// written) to the copies of their stages that run here and have not
    /// taken them, up to the first one that is not `ready` (its module is
    /// not here yet); returns how many it went through.
    ///
    /// The followers here (replicas and duplicates of a vertex on another
    /// member) take none: they follow the vertex ([`Jobs::follow_changes`]).
    /// A copy with followers takes a change once `held` says where every
    /// follower stopped for it (`None`: not all have yet), at a CTI past
    /// all of them.
    pub fn take_changes(
        &self,
        job: &str,
        patches: &[PatchRequest],
        ready: impl Fn(&PatchRequest) -> bool,
        held: impl Fn(&str, usize) -> Option<u64>,
    ) -> Result<usize> {
        let (record, plan) = self.running_plan(job)?;
        let mut here = record.only.clone().unwrap_or_default();
        here.retain(|c| !record.follows.iter().flatten().any(|f| f == c));
        // Per copy: the index past the last change before this one that
        // was to reach it (changes to other stages pass it by).
        let mut since: HashMap<String, u64> = HashMap::new();
        for (index, patch) in patches.iter().enumerate() {
            if !ready(patch) {
                return Ok(index);
            }
            for copy in targets(&plan, patch).iter().filter(|c| here.contains(*c)) {
                let first = since.insert(copy.clone(), index as u64 + 1).unwrap_or(0);
                let at = (index, first);
                if !self.take_change(&record, copy, at, patch, &held)? {
                    return Ok(index);
                }
            }
        }
        Ok(patches.len())
    }

    /// Tells vertex `vertex` of placed job `job` how far the other
    /// members' copies of its output and dead letters hold them, or that
    /// one has not said (`None`): it makes no change below, or none yet.
    pub fn copies_hold(&self, job: &str, vertex: &str, at: Option<(u64, u64)>) {
        if let Ok(status) = self.stage_status(job, vertex) {
            lock(&status).copies = Some(at);
        }
    }

    /// Makes the followers of placed job `job` that run here go on with
    /// what the vertices they follow recorded (`kept`, by copy): each takes
    /// the switches recorded past its own, and stops reading while one of
    /// the job's changes (`patches`) to its stage waits. Returns where each
    /// stopped follower stands: (copy, the change's index, CTIs written),
    /// and the followers that failed, with why.
    pub fn follow_changes(
        &self,
        job: &str,
        patches: &[PatchRequest],
        kept: &BTreeMap<String, CopyTimeline>,
    ) -> Result<Followed> {
        let Some(record) = lock(&self.inner.running).get(job).map(|r| r.record.clone()) else {
            return Ok(Followed::default());
        };
        // The plan, read once there are changes to look through.
        let mut plan = None;
        let mut told = Followed::default();
        for copy in record.follows.iter().flatten() {
            let Ok(status) = self.stage_status(job, copy) else {
                continue;
            };
            let recorded = kept.get(copy).cloned().unwrap_or_default();
            let mut waits = None;
            for (i, patch) in patches.iter().enumerate().skip(recorded.taken as usize) {
                if plan.is_none() {
                    plan = Some(self.record_plan(&record)?);
                }
                if plan
                    .as_ref()
                    .is_some_and(|p| targets(p, patch).contains(copy))
                {
                    waits = Some(i);
                    break;
                }
            }
            diverge(copy, &status);
            // One follower that cannot follow stops; the others go on.
            let adopted = match self.follow_timeline(&record, copy, &recorded, &status) {
                Ok(adopted) => adopted,
                Err(e) => {
                    tracing::error!(
                        job,
                        copy,
                        "the follower cannot take its vertex's switches: {e:#}"
                    );
                    false
                }
            };
            let mut s = lock(&status);
            // A follower that finished or failed reads no more: where it
            // ended is where it stopped.
            let ended = s.state == "finished" || s.state == "failed";
            if s.state == "failed" {
                let why = s.error.clone().unwrap_or_default();
                told.failed.push((copy.clone(), why));
            }
            s.hold = (waits.is_some() || !adopted) && !ended;
            let at = if ended { Some(s.ctis) } else { s.held };
            if let (Some(index), Some(ctis)) = (waits, at) {
                told.stopped.push((copy.clone(), index, ctis));
            }
        }
        // A follower that became the vertex while a module it is to switch
        // to was not here yet.
        let follows = record.follows.clone().unwrap_or_default();
        for vertex in record
            .only
            .iter()
            .flatten()
            .filter(|v| !follows.contains(*v))
        {
            let Ok(status) = self.stage_status(job, vertex) else {
                continue;
            };
            if lock(&status).hold {
                self.take_over(&record, vertex, kept, &status)?;
            }
        }
        Ok(told)
    }

    /// Has follower `copy` of placed job `record` take the switches
    /// `recorded` holds past the timeline stored here: stored first (with
    /// the count of the job's changes they cover), so a restart makes them
    /// at the same positions, then handed to its thread. `false`: a module
    /// they switch to is not here yet (the follower waits for it).
    pub(super) fn follow_timeline(
        &self,
        record: &JobRecord,
        copy: &str,
        recorded: &CopyTimeline,
        status: &Shared,
    ) -> Result<bool> {
        for patch in &recorded.patches {
            if !patch.version.is_empty() && self.module(&patch.version)?.is_none() {
                return Ok(false);
            }
        }
        let key = stage_key(record, copy);
        let streams = &self.inner.streams;
        let Some(mut timeline) = stored::<Timeline>(streams, &timeline_key(&key))? else {
            // A copy whose timeline was never stored starts from the
            // recorded one when it starts ([`Jobs::adopt_timelines`]).
            if recorded.patches.is_empty() {
                self.count_taken(record, copy, recorded.taken)?;
            } else {
                let kept = BTreeMap::from([(copy.to_string(), recorded.clone())]);
                self.adopt_timelines(record, &kept)?;
                lock(status).follow = Some(recorded.patches.clone());
            }
            return Ok(true);
        };
        if extends(&timeline.patches, &recorded.patches) {
            self.count_taken(record, copy, recorded.taken)?;
            return Ok(true);
        }
        if !extends(&recorded.patches, &timeline.patches) {
            bail!(
                Patch,
                "follower `{copy}` of job `{}`: its patch timeline here ({} changes) differs from the one its vertex recorded ({} changes)",
                record.name,
                timeline.patches.len(),
                recorded.patches.len()
            );
        }
        timeline.patches.clone_from(&recorded.patches);
        let ops = vec![
            put(&timeline_key(&key), postcard::to_allocvec(&timeline)?),
            put(
                &taken_key(record, copy),
                postcard::to_allocvec(&recorded.taken)?,
            ),
        ];
        streams.commit_meta(ops)?.wait()?;
        tracing::info!(
            job = %record.name,
            copy,
            to = timeline.patches.len(),
            "the follower takes the switches its vertex recorded"
        );
        lock(status).follow = Some(timeline.patches);
        Ok(true)
    }

    /// Has follower `vertex` of placed job `record`, which became the
    /// vertex, take every switch its vertex recorded (`kept`, by copy)
    /// before it reads on; it stays stopped while a module for one is not
    /// here yet (its member's next look takes it over then).
    pub(super) fn take_over(
        &self,
        record: &JobRecord,
        vertex: &str,
        kept: &BTreeMap<String, CopyTimeline>,
        status: &Shared,
    ) -> Result<()> {
        let recorded = kept.get(vertex).cloned().unwrap_or_default();
        let adopted = self.follow_timeline(record, vertex, &recorded, status)?;
        lock(status).hold = !adopted;
        Ok(())
    }

    /// Counts a change copy `copy` of placed job `record` passes over as
    /// taken (`mark`), here and with the coordinator.
    fn pass_over(&self, record: &JobRecord, copy: &str, mark: Op) -> Result<()> {
        self.inner.streams.commit_meta(vec![mark])?.wait()?;
        self.keep_taken(&stage_key(record, copy), &[], &AtomicBool::new(false))?;
        Ok(())
    }

    /// Counts `taken` of the job's changes as taken by follower `copy` of
    /// placed job `record` when it had counted fewer: the changes its
    /// vertex refused or passed over, which it takes no switch for.
    fn count_taken(&self, record: &JobRecord, copy: &str, taken: u64) -> Result<()> {
        let key = taken_key(record, copy);
        let streams = &self.inner.streams;
        if stored::<u64>(streams, &key)?.unwrap_or(0) < taken {
            streams
                .commit_meta(vec![put(&key, postcard::to_allocvec(&taken)?)])?
                .wait()?;
        }
        Ok(())
    }

    /// Makes change `index` (`patch`) to copy `copy` of job `record`,
    /// unless it took it already; `false` when it must wait (a rollback
    /// resolves its version from the copy's timeline once the changes
    /// queued before it are in it).
    fn take_change(
        &self,
        record: &JobRecord,
        copy: &str,
        (index, since): (usize, u64),
        patch: &PatchRequest,
        held: &impl Fn(&str, usize) -> Option<u64>,
    ) -> Result<bool> {
        let job = record.name.as_str();
        let key = taken_key(record, copy);
        let taken: u64 = stored(&self.inner.streams, &key)?.unwrap_or(0);
        if taken > index as u64 {
            return Ok(true);
        }
        if taken < since {
            bail!(
                Patch,
                "stage `{copy}` of job `{job}` has taken {taken} of the cluster's changes, not {since}"
            );
        }
        let mark = put(&key, postcard::to_allocvec(&(index as u64 + 1))?);
        let queued = queue_key(&stage_key(record, copy));
        if matches!(patch.change, StageChange::Rollback { .. })
            && self.with_queue(&queued, |q| Ok(!q.waiting.is_empty()))?
        {
            return Ok(false);
        }
        if lock(self.stage_status(job, copy)?.as_ref()).state == "finished" {
            tracing::warn!(job, stage = %copy, "cluster change {index} came after the copy finished");
            self.pass_over(record, copy, mark)?;
            return Ok(true);
        }
        // A copy that resumed behind switches its timeline records (it
        // makes them as it reads on) is checked against the version it
        // runs once it made them, not the one it runs meanwhile: a
        // rollback checked before was refused as `already runs it`.
        let made = lock(self.stage_status(job, copy)?.as_ref()).patches;
        if made < self.timeline(job, copy)?.patches.len() as u64 {
            return Ok(false);
        }
        let resolved = match &patch.change {
            StageChange::Deploy { version } => Ok((version.clone(), Change::Deploy)),
            StageChange::Rollback { to } => self
                .rollback_target(job, copy, to.as_deref())
                .map(|v| (v, Change::Rollback)),
            StageChange::FilterAdd { text } => Ok((String::new(), Change::FilterAdd(text.clone()))),
            StageChange::FilterRemove { text } => {
                Ok((String::new(), Change::FilterRemove(text.clone())))
            }
        };
        let (version, change) = match resolved {
            Ok(v) => v,
            Err(e) => {
                // Checked on another copy before it was written; this copy
                // cannot take it (its timeline differs): passed over, and
                // said so.
                tracing::error!(job, stage = %copy, "cluster change {index} passed over: {e:#}");
                self.pass_over(record, copy, mark)?;
                return Ok(true);
            }
        };
        // Past every follower's stop: none of them has read where the
        // switch is made.
        let Some(past) = held(copy, index) else {
            return Ok(false);
        };
        if past > 0 && lock(self.stage_status(job, copy)?.as_ref()).ctis < past {
            return Ok(false);
        }
        tracing::info!(
            job,
            stage = %copy,
            change = %change.describe(),
            version = short(&version),
            "cluster change {index}: queued for the next CTI"
        );
        if self.stuck(job, copy)?.is_some() {
            // A copy that failed on a batch takes it there and resumes.
            self.patch(job, copy, version, change)?;
            self.inner.streams.commit_meta(vec![mark])?.wait()?;
        } else {
            self.schedule_with(job, copy, version, change, vec![mark])?;
        }
        Ok(true)
    }
}

/// The copies of `plan` that change `patch` is made to.
fn targets(plan: &Plan, patch: &PatchRequest) -> Vec<String> {
    copies(plan, &patch.stage).unwrap_or_else(|| vec![patch.stage.clone()])
}
