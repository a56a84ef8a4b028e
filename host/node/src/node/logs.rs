//! `weir udf logs` on the wire: what a stage's UDF logged, then (with
//! `--follow`) what it logs next.

use std::time::Duration;

use super::*;

impl Node {
    /// Sends what a stage's UDF logged lately; with `follow`, then what it
    /// logs next, until the stage ends or the reader goes away.
    pub(super) async fn udf_logs(
        &self,
        mut send: quinn::SendStream,
        job: String,
        stage: String,
        follow: bool,
    ) -> Result<()> {
        let mut from = 0;
        loop {
            let jobs = self.jobs.clone();
            let (j, s) = (job.clone(), stage.clone());
            let got = tokio::task::spawn_blocking(move || jobs.udf_logs(&j, &s, from)).await?;
            let (text, next, ended) = match got {
                Ok(got) => got,
                Err(e) => {
                    send_error(&mut send, &e).await?;
                    break;
                }
            };
            send_lines(&mut send, text.as_bytes()).await?;
            from = next;
            if !follow || ended {
                write_msg(&mut send, &Response::End).await?;
                break;
            }
            tokio::select! {
                // A reader that went away ends the follow.
                _ = send.stopped() => break,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        send.finish()?;
        let _ = send.stopped().await;
        Ok(())
    }
}
