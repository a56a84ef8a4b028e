//! What a node says of its UDF stages: `weir udf list`, `weir udf logs`
//! and `weir udf replay`'s report.

use std::io::Write;

use anyhow::bail;

use super::cluster::{Connect, connect, runtime};
use crate::net::{Request, Response, read_msg};

/// Prints the UDF stages of the node's jobs (of `job` only, if given).
pub fn udf_list(c: &Connect, job: Option<String>, json: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let client = connect(c).await?;
        let answer = client
            .call(
                &Request::JobStatus {
                    name: job,
                    local: false,
                },
                None,
            )
            .await?;
        client.close().await;
        let Response::Jobs(jobs) = answer else {
            bail!("the node answered a status request with something else");
        };
        let stages: Vec<(String, &crate::jobs::VertexStatus)> = jobs
            .iter()
            .flat_map(|j| {
                j.vertices
                    .iter()
                    .filter(|v| v.role == "stage" && v.module.is_some())
                    .map(|v| (j.name.clone(), v))
            })
            .collect();
        if json {
            let list: Vec<serde_json::Value> = stages
                .iter()
                .map(|(job, v)| {
                    serde_json::json!({
                        "job": job, "stage": v.name, "state": v.state, "module": v.module,
                        "lag": v.lag, "rows_per_s": v.rows_per_s, "rows_in": v.rows_in,
                        "rows_out": v.rows_out, "dead": v.dead, "traps": v.traps,
                        "fuel": v.fuel, "memory": v.memory,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(());
        }
        if stages.is_empty() {
            println!("no UDF stages");
            return Ok(());
        }
        println!(
            "{:<12} {:<12} {:<9} {:<12} {:>6} {:>9} {:>10} {:>10} {:>6} {:>6} {:>12} {:>8}",
            "job",
            "stage",
            "state",
            "module",
            "lag",
            "rows/s",
            "rows in",
            "rows out",
            "dead",
            "traps",
            "fuel",
            "memory"
        );
        for (job, v) in stages {
            println!(
                "{:<12} {:<12} {:<9} {:<12} {:>6} {:>9.0} {:>10} {:>10} {:>6} {:>6} {:>12} {:>7}K",
                job,
                v.name,
                v.state,
                v.module.as_deref().unwrap_or("-"),
                v.lag,
                v.rows_per_s,
                v.rows_in,
                v.rows_out,
                v.dead,
                v.traps,
                v.fuel,
                v.memory / 1024
            );
        }
        Ok(())
    })
}

/// Prints what a stage's UDF logged: `module M position P: line` (with
/// `at CTI T` for a timer call), or the node's JSON lines.
pub fn udf_logs(
    c: &Connect,
    job: String,
    stage: String,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let client = connect(c).await?;
        let request = Request::UdfLogs { job, stage, follow };
        let mut recv = client.request(&request, None).await?;
        let stdout = std::io::stdout();
        while let Some(answer) = read_msg::<Response>(&mut recv).await? {
            match answer {
                Response::Lines(text) => {
                    let mut out = stdout.lock();
                    for line in text.lines() {
                        if json {
                            writeln!(out, "{line}")?;
                            continue;
                        }
                        let v: serde_json::Value = serde_json::from_str(line)?;
                        let at = match v["cti"].as_i64() {
                            Some(cti) => format!("position {} at CTI {cti}", v["position"]),
                            None => format!("position {}", v["position"]),
                        };
                        writeln!(
                            out,
                            "module {} {at}: {}",
                            v["module"].as_str().unwrap_or("?"),
                            v["line"].as_str().unwrap_or_default()
                        )?;
                    }
                    out.flush()?;
                }
                Response::End => break,
                Response::Error { message } => bail!("{message}"),
                other => bail!("unexpected answer {other:?}"),
            }
        }
        client.close().await;
        Ok(())
    })
}

/// Sends a replay and prints what it found.
pub fn replay(c: &Connect, request: Request, body: Vec<u8>, json: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let client = connect(c).await?;
        let response = client.call(&request, Some(&body)).await?;
        client.close().await;
        let Response::Replayed(r) = response else {
            anyhow::bail!("the node answered a replay with something else");
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(());
        }
        let short = |v: &str| v[..v.len().min(12)].to_string();
        let over = if r.inputs.len() > 1 {
            let ranges: Vec<String> = r
                .inputs
                .iter()
                .map(|(input, checkpoint, from, to)| {
                    format!("`{input}` seqs {from}..{to} (latest checkpoint at {checkpoint})")
                })
                .collect();
            format!("over inputs {}", ranges.join(", "))
        } else {
            format!(
                "over input seqs {}..{}, from the stage's state at seq {} (latest checkpoint at {})",
                r.from, r.to, r.from, r.checkpoint
            )
        };
        println!(
            "job `{}` stage `{}`: candidate {} next to {} {over} ({} rows, {} CTIs)",
            r.job,
            r.stage,
            short(&r.candidate),
            short(&r.running),
            r.rows,
            r.ctis,
        );
        println!(
            "output rows: running {}, candidate {}; dead letters: running {}, candidate {}",
            r.running_rows, r.candidate_rows, r.dead.0, r.dead.1
        );
        if r.differ == 0 {
            println!("no output row differs");
        } else {
            println!("{} output rows differ; the first {}:", r.differ, r.samples.len());
            for (i, running, candidate) in &r.samples {
                println!("  row {i}:");
                println!("    running:   {}", running.as_deref().unwrap_or("(none)"));
                println!("    candidate: {}", candidate.as_deref().unwrap_or("(none)"));
            }
        }
        Ok(())
    })
}
