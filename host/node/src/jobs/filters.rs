//! Runtime filters of a running job's UDF stages: `weir job filter add`
//! and `remove`, checked against the filters in effect once the changes
//! already queued are made.

use super::*;

impl Jobs {
    /// Adds a runtime filter to stage `stage` of job `job`: from the stage's
    /// next CTI on, the input rows `expr` matches are dropped before the UDF
    /// (recorded in the stage's timeline, so replay drops the same rows).
    pub fn filter_add(&self, job: &str, stage: &str, expr: &str) -> Result<PatchReport> {
        self.filter_targets(job, stage, expr, true)
    }

    /// Removes runtime filter `expr` from stage `stage` of job `job`, from
    /// the stage's next CTI on.
    pub fn filter_remove(&self, job: &str, stage: &str, expr: &str) -> Result<PatchReport> {
        self.filter_targets(job, stage, expr, false)
    }

    /// Adds (`add`) or removes filter `expr` on every copy of the stage,
    /// each checked before any changes.
    fn filter_targets(&self, job: &str, stage: &str, expr: &str, add: bool) -> Result<PatchReport> {
        let mut targets = Vec::new();
        for target in self.targets(job, stage)? {
            let change = self.filter_change(job, &target, expr, add)?;
            targets.push((target, String::new(), change));
        }
        self.patch_targets(job, stage, targets)
    }

    /// The change that adds runtime filter `expr` to stage `stage` of `job`
    /// (`add`), or removes it, checked: an added filter must be new, a
    /// removed one in effect (named by the text it was added with).
    pub(super) fn filter_change(
        &self,
        job: &str,
        stage: &str,
        expr: &str,
        add: bool,
    ) -> Result<Change> {
        let (filter, active) = self.check_filter(job, stage, expr)?;
        let found = active.iter().find(|(_, a)| a.same(&filter));
        match (add, found) {
            (true, None) => Ok(Change::FilterAdd(filter.text().to_string())),
            (true, Some((same, _))) => bail!(
                Patch,
                "stage `{stage}` of job `{job}` already has filter `{same}`"
            ),
            (false, Some((text, _))) => Ok(Change::FilterRemove(text.clone())),
            (false, None) => {
                let texts: Vec<String> = active.iter().map(|(t, _)| t.clone()).collect();
                bail!(
                    Patch,
                    "stage `{stage}` of job `{job}` has no filter `{}`; its filters: {}",
                    filter.text(),
                    crate::filter::describe(&texts, "none")
                )
            }
        }
    }

    /// Parses `expr` against the stage's input and returns it with the
    /// filters in effect (text as added, and parsed), if the stage can take
    /// a change.
    pub(super) fn check_filter(
        &self,
        job: &str,
        stage: &str,
        expr: &str,
    ) -> Result<(Filter, Vec<(String, Filter)>)> {
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
        let texts = self.with_queue(&queue_key, |q| Ok(q.filters_after(applied)))?;
        let mut active = Vec::new();
        for text in texts {
            let parsed = Filter::parse(&text, &schema)?;
            active.push((text, parsed));
        }
        Ok((filter, active))
    }
}
