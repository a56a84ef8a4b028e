//! `weir udf logs`: what a stage's UDF logged and printed lately, read from
//! the stage's log stream.

use super::*;

impl Jobs {
    /// The lines stage `stage` of job `job` logged, numbered `from` or later
    /// and among the latest [`KEPT_LOGS`] (JSON lines), the number after
    /// them, and whether the stage ended (finished or failed) so no more
    /// will come.
    pub fn udf_logs(&self, job: &str, stage: &str, from: u64) -> Result<(String, u64, bool)> {
        // A UDF stage (a union has no logs), then its vertex's status.
        let (record, _, _) = self.udf_stage(job, stage)?;
        let status = self.stage_status(job, stage)?;
        let ended = {
            let s = lock(&status);
            s.state == "finished" || s.state == "failed"
        };
        let streams = &self.inner.streams;
        let info = streams.info(&logs_stream(&record.stream(stage)))?;
        let (next, _, low) = streams.positions(info.id).unwrap_or_default();
        let mut seq = from.max(low).max(next.saturating_sub(KEPT_LOGS));
        let mut text = String::new();
        while seq < next {
            let lines = streams.read_written(info.id, seq, (next - seq) as usize)?;
            let Some(&(last, _)) = lines.last() else {
                break;
            };
            for (_, line) in lines {
                text.push_str(&String::from_utf8_lossy(&line));
                text.push('\n');
            }
            seq = last + 1;
        }
        Ok((text, seq, ended))
    }
}
