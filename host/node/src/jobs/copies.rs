//! Changes to a stage that runs as several rVertices: a deploy, rollback or
//! runtime filter named by the stage goes to every copy.
//!
//! A parallel `REDUCE` or `PROCESS` stage `S` runs as copies `S__p0` ..
//! `S__p{n-1}`, each with its own state and patch timeline, merged into a
//! union named `S`. A change to `S` is checked against every copy first
//! (a refusal leaves them all untouched), then queued for all of them
//! before waiting, so each takes it at its next CTI; every copy sees every
//! CTI, so they switch together unless a CTI arrives in between. Each
//! copy's timeline records where it switched, so replay is exact per copy.

use super::*;

/// A switch queued for a stage's vertex, not yet known to have taken effect.
pub(super) struct Pending {
    pub(super) shared: Shared,
    pub(super) id: u64,
    pub(super) before: u64,
    pub(super) change: Change,
    pub(super) version: String,
    pub(super) scheduled: std::time::Instant,
    pub(super) report: PatchReport,
}

/// One copy's part of a change: the copy, the version it switches to, and
/// the change.
type Target = (String, String, Change);

impl Jobs {
    /// The vertices a change to stage `stage` of `job` goes to: the copies
    /// of a stage that runs as several rVertices, or the stage itself.
    pub(super) fn targets(&self, job: &str, stage: &str) -> Result<Vec<String>> {
        let (_, plan) = self.running_plan(job)?;
        Ok(copies(&plan, stage).unwrap_or_else(|| vec![stage.to_string()]))
    }

    /// Makes each target's change: for a stage that runs as one vertex, the
    /// report of its switch; for copies, every switch queued before any is
    /// waited for, and the report lists each copy's.
    pub(super) fn patch_targets(
        &self,
        job: &str,
        stage: &str,
        targets: Vec<Target>,
    ) -> Result<PatchReport> {
        if let [(target, version, change)] = targets.as_slice()
            && target == stage
        {
            return self.patch(job, stage, version.clone(), change.clone());
        }
        let mut stuck = false;
        for (target, _, _) in &targets {
            stuck |= self.stuck(job, target)?.is_some();
        }
        let mut reports = Vec::with_capacity(targets.len());
        if stuck {
            // A failed copy resumes by a restart of the job; one at a time.
            for (target, version, change) in targets {
                reports.push(self.patch(job, &target, version, change)?);
            }
        } else {
            let mut pending = Vec::with_capacity(targets.len());
            for (target, version, change) in targets {
                pending.push(self.schedule(job, &target, version, change)?);
            }
            for p in pending {
                reports.push(self.settle(p)?);
            }
        }
        let first = reports
            .first()
            .cloned()
            .with_context(|| format!("stage `{stage}` of job `{job}` has no copy to change"))?;
        Ok(PatchReport {
            stage: stage.to_string(),
            applied: None,
            switch_us: reports.iter().map(|r| r.switch_us).max().unwrap_or(0),
            shadow: None,
            copies: reports,
            ..first
        })
    }
}

/// The copies of stage `stage` in an expanded plan, if it runs as several
/// rVertices that run a component: the union named `stage` merging
/// `stage__p0` .. `stage__p{n-1}`.
pub(super) fn copies(plan: &Plan, stage: &str) -> Option<Vec<String>> {
    let merge = plan.stages.iter().find(|s| s.name == stage)?;
    if !matches!(merge.operator, Operator::Union) || merge.inputs.len() < 2 {
        return None;
    }
    let all = merge.inputs.iter().enumerate().all(|(j, input)| {
        *input == weir_core::parallel::copy_name(stage, j)
            && plan
                .stages
                .iter()
                .any(|s| s.name == *input && matches!(s.operator, Operator::Udf(_)))
    });
    all.then(|| merge.inputs.clone())
}

/// The shadow runs of every copy as one: rows and differences summed.
impl Jobs {
    /// Runs component `bytes` (named `origin`) next to copy `copy` of a
    /// stage of job `job`, which runs here, on the copy's last `rows`
    /// input rows, after the checks a deploy makes. Changes nothing.
    pub fn shadow_copy(
        &self,
        job: &str,
        copy: &str,
        origin: &str,
        bytes: Vec<u8>,
        rows: u64,
    ) -> Result<Option<ShadowReport>> {
        let module = self
            .inner
            .runtime
            .load(origin, &bytes)
            .with_context(|| format!("deploy to job `{job}` copy `{copy}` refused"))?;
        self.check_patch(job, copy, &module, Some(rows))
    }
}

/// Shadow runs of several copies, summed.
pub fn merge_shadows(runs: Vec<Option<ShadowReport>>) -> Option<ShadowReport> {
    let mut runs = runs.into_iter().flatten();
    let mut all = runs.next()?;
    for r in runs {
        all.asked += r.asked;
        all.rows += r.rows;
        all.old_rows += r.old_rows;
        all.new_rows += r.new_rows;
        all.differ += r.differ;
    }
    Some(all)
}
