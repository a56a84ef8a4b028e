//! `weir udf logs`: what a stage's UDF logged and printed lately.

use super::*;

impl Jobs {
    /// The lines stage `stage` of job `job` kept, numbered `from` or later
    /// (JSON lines), the seq after them, and whether the stage ended
    /// (finished or failed) so no more will come.
    pub fn udf_logs(&self, job: &str, stage: &str, from: u64) -> Result<(String, u64, bool)> {
        // A UDF stage (a union has no logs), then its vertex's status.
        self.udf_stage(job, stage)?;
        let status = self.stage_status(job, stage)?;
        let (buffer, ended) = {
            let s = lock(&status);
            (s.logs.clone(), s.state == "finished" || s.state == "failed")
        };
        let buffer = lock(&buffer);
        Ok((buffer.since(from), buffer.next, ended))
    }
}
