//! `weir udf logs` on the wire: what a stage's UDF logged, then (with
//! `--follow`) what it logs next; for a stage another member of the
//! cluster runs, passed on from that member.

use std::time::Duration;

use weir_cluster::metadata::NodeId;

use super::read::send_lines;
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

    /// The member that runs vertex `vertex` of `job`, when the cluster runs
    /// the job over more than one member and places it on another.
    pub(super) fn placed_elsewhere(&self, job: &str, vertex: &str) -> Option<NodeId> {
        let cluster = self.cluster.get()?;
        let metadata = cluster.metadata();
        let member = *metadata.jobs.get(job)?.placement.get(vertex)?;
        (metadata.standing() > 1 && member != cluster.id()).then_some(member)
    }

    /// Asks member `member` `request` and sends its answer on, as it comes
    /// (a followed log streams until either side ends).
    pub(super) async fn pass_stream(
        &self,
        mut send: quinn::SendStream,
        member: NodeId,
        request: &Request,
    ) -> Result<()> {
        let passed = async {
            let cluster = self.cluster.get().context("this node left its cluster")?;
            let (client, _) = self.connect_member(&cluster.metadata(), member).await?;
            let recv = client.request(request, None).await;
            Ok::<_, NodeError>((client, recv?))
        }
        .await;
        match passed {
            Ok((client, mut recv)) => {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let read = tokio::select! {
                        read = recv.read(&mut buf) => read,
                        // The reader went away: so does the member's stream.
                        _ = send.stopped() => break,
                    };
                    match read.map_err(|e| err!(Request, "member {member}'s answer: {e}"))? {
                        Some(n) => send
                            .write_all(&buf[..n])
                            .await
                            .context("passing a member's answer on")?,
                        None => break,
                    }
                }
                client.close().await;
            }
            Err(e) => send_error(&mut send, &e).await?,
        }
        send.finish()?;
        let _ = send.stopped().await;
        Ok(())
    }
}
