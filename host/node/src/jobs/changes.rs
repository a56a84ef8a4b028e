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

use weir_cluster::jobs::{PatchRequest, StageChange};

use super::copies::copies;
use super::patching::short;
use super::*;

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
                self.rollback_target(job, copy, to.as_deref())?;
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

    /// Makes the changes of `job` (`patches`, in the order they were
    /// written) to the copies of their stages that run here and have not
    /// taken them, up to the first one that is not `ready` (its module is
    /// not here yet); returns how many it went through.
    pub fn take_changes(
        &self,
        job: &str,
        patches: &[PatchRequest],
        ready: impl Fn(&PatchRequest) -> bool,
    ) -> Result<usize> {
        let (record, plan) = self.running_plan(job)?;
        let here = record.only.clone().unwrap_or_default();
        for (index, patch) in patches.iter().enumerate() {
            if !ready(patch) {
                return Ok(index);
            }
            let targets = copies(&plan, &patch.stage).unwrap_or_else(|| vec![patch.stage.clone()]);
            for copy in targets.iter().filter(|c| here.contains(*c)) {
                if !self.take_change(&record, copy, index, patch)? {
                    return Ok(index);
                }
            }
        }
        Ok(patches.len())
    }

    /// Makes change `index` (`patch`) to copy `copy` of job `record`,
    /// unless it took it already; `false` when it must wait (a rollback
    /// resolves its version from the copy's timeline once the changes
    /// queued before it are in it).
    fn take_change(
        &self,
        record: &JobRecord,
        copy: &str,
        index: usize,
        patch: &PatchRequest,
    ) -> Result<bool> {
        let job = record.name.as_str();
        let key = taken_key(record, copy);
        let taken: u64 = stored(&self.inner.streams, &key)?.unwrap_or(0);
        if taken > index as u64 {
            return Ok(true);
        }
        if taken < index as u64 {
            bail!(
                Patch,
                "stage `{copy}` of job `{job}` has taken {taken} of the cluster's changes, not {index}"
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
            self.inner.streams.commit_meta(vec![mark])?.wait()?;
            return Ok(true);
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
                self.inner.streams.commit_meta(vec![mark])?.wait()?;
                return Ok(true);
            }
        };
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
