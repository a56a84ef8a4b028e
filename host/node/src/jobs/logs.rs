//! `weir udf logs`: what a stage's UDF logged and printed lately.

use super::*;

impl Jobs {
    /// The lines stage `stage` of job `job` kept, numbered `from` or later
    /// (JSON lines), the seq after them, and whether the stage ended
    /// (finished or failed) so no more will come.
    pub fn udf_logs(&self, job: &str, stage: &str, from: u64) -> Result<(String, u64, bool)> {
        let (record, _, _) = self.udf_stage(job, stage)?;
        let status = lock(&self.inner.running)
            .get(&record.name)
            .and_then(|r| {
                r.vertices
                    .iter()
                    .find(|v| {
                        let v = lock(v);
                        v.role == "stage" && v.name == stage
                    })
                    .cloned()
            })
            .with_context(|| format!("job `{job}` runs no stage `{stage}` on this node"))?;
        let (buffer, ended) = {
            let s = lock(&status);
            (s.logs.clone(), s.state == "finished" || s.state == "failed")
        };
        let buffer = lock(&buffer);
        Ok((buffer.since(from), buffer.next, ended))
    }
}
