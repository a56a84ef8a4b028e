//! `weir bench cluster`: one Nexmark query as a continuous job on one local
//! node and on a cluster of local nodes (its vertices placed over them, the
//! streams between members pulled over QUIC); prints the time from submit
//! to the job's end, events per second and the CPU time of all node
//! processes per event, and checks both write the same bytes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use super::bench::{Killed, cluster_scratch, count, cpu_seconds, spawn_node};
use crate::net::{CertDir, Client, Request, Response};

/// `weir bench cluster`.
#[derive(Debug, Args)]
pub struct SpreadArgs {
    /// The query: the script `QUERY.wsql` of the queries' directory.
    #[arg(long, default_value = "q5")]
    query: String,
    /// Events over the three streams together: a count, or with K, M or G.
    #[arg(long, default_value = "1M", value_parser = count)]
    events: u64,
    /// rVertices per keyed stage.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=256))]
    parallelism: u32,
    /// Nodes in the cluster run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=9))]
    members: u32,
    /// The queries' directory.
    #[arg(long, default_value = "examples/nexmark")]
    queries: PathBuf,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One run.
#[derive(Debug, Serialize)]
struct Run {
    nodes: u32,
    seconds: f64,
    events_per_s: f64,
    cpu_seconds: f64,
    cpu_us_per_event: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    query: String,
    events: u64,
    parallelism: u32,
    runs: Vec<Run>,
    /// The cluster's CPU per event over the single node's.
    cpu_ratio: f64,
    /// The cluster's time over the single node's.
    time_ratio: f64,
    same_output: bool,
}

/// How long a run may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(1800);

/// Runs `weir bench cluster`.
pub fn spread(args: SpreadArgs) -> anyhow::Result<()> {
    let (work, _clean) = cluster_scratch("bench-cluster")?;
    let size = format!("events => {}, rate => 10000, pace => 0", args.events);
    let script = script(&args.queries, &args.query, &work, &size)?;
    let mut runs = Vec::new();
    let mut outputs = Vec::new();
    for nodes in [1, args.members] {
        let (run, output) = one_run(&args, &work, &script, nodes)?;
        if !args.json {
            println!(
                "{} node(s): {:.2} s, {:.0} events/s, {:.2} CPU-s, {:.2} CPU-µs per event",
                run.nodes, run.seconds, run.events_per_s, run.cpu_seconds, run.cpu_us_per_event
            );
        }
        runs.push(run);
        outputs.push(output);
    }
    let same_output = outputs.windows(2).all(|w| w[0] == w[1]);
    let report = Report {
        query: args.query.clone(),
        events: args.events,
        parallelism: args.parallelism,
        cpu_ratio: runs[1].cpu_us_per_event / runs[0].cpu_us_per_event.max(f64::MIN_POSITIVE),
        time_ratio: runs[1].seconds / runs[0].seconds.max(f64::MIN_POSITIVE),
        runs,
        same_output,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} nodes / 1: time x{:.2}, CPU per event x{:.2}; output {}",
            args.members,
            report.time_ratio,
            report.cpu_ratio,
            if same_output { "identical" } else { "DIFFERS" }
        );
    }
    if !same_output {
        bail!("the cluster's output differs from the single node's");
    }
    Ok(())
}

/// The script of `query` in `queries` with its inputs' parameters set to
/// `params` and its component paths made absolute; written into `work`.
pub(super) fn script(
    queries: &Path,
    query: &str,
    work: &Path,
    params: &str,
) -> anyhow::Result<PathBuf> {
    let dir = std::fs::canonicalize(queries)
        .with_context(|| format!("the queries' directory {}", queries.display()))?;
    let file = dir.join(format!("{query}.wsql"));
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let size = "events => 1000000, rate => 10000";
    if !text.contains(size) {
        bail!("{}: no `{size}` to set the size with", file.display());
    }
    let text = text
        .replace(size, params)
        .replace("\"../", &format!("\"{}/../", dir.display()));
    let path = work.join(format!("{query}.wsql"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs the job on `nodes` fresh nodes; returns the run and its output.
fn one_run(
    args: &SpreadArgs,
    work: &Path,
    script: &Path,
    nodes: u32,
) -> anyhow::Result<(Run, Vec<u8>)> {
    let mut started: Vec<(Killed, String)> = Vec::new();
    for i in 1..=nodes {
        let data = format!("n{nodes}-d{i}");
        let mut a = vec![
            "--data",
            data.as_str(),
            "--listen",
            "127.0.0.1:0",
            "--files",
            ".",
        ];
        let seed = started.first().map(|(_, addr)| addr.clone());
        if let Some(seed) = &seed {
            a.extend(["--join", seed.as_str()]);
        }
        started.push(spawn_node(work, &a)?);
    }
    let certs = CertDir::new(&work.join("certs"));
    let addrs: Vec<String> = started.iter().map(|(_, a)| a.clone()).collect();
    let runtime = super::cluster::runtime()?;
    runtime.block_on(super::failover::settled(&certs, &addrs, |s| {
        s.members.iter().filter(|m| m.health == "up").count() == nodes as usize
    }))?;
    let output = work.join(format!("out/{}.jsonl", args.query));
    let _ = std::fs::remove_file(&output);
    let submit = std::process::Command::new(std::env::current_exe()?)
        .args(["job", "submit"])
        .arg(script)
        .args(["--parallelism", &args.parallelism.to_string()])
        .args(["--node", &addrs[0], "--certs", "certs"])
        .current_dir(work)
        .output()?;
    let begun = Instant::now();
    if !submit.status.success() {
        bail!(
            "weir job submit: {}",
            String::from_utf8_lossy(&submit.stderr)
        );
    }
    runtime.block_on(finished(&certs, &addrs[0], &args.query))?;
    let seconds = begun.elapsed().as_secs_f64();
    let mut cpu = 0.0;
    for (node, _) in &started {
        cpu += cpu_seconds(Some(node.0.id()))?;
    }
    drop(started);
    let bytes = std::fs::read(&output).with_context(|| format!("{}", output.display()))?;
    let events = args.events as f64;
    Ok((
        Run {
            nodes,
            seconds,
            events_per_s: events / seconds,
            cpu_seconds: cpu,
            cpu_us_per_event: cpu * 1e6 / events,
        },
        bytes,
    ))
}

/// Polls the job's status through the node at `addr` until it finished.
async fn finished(certs: &CertDir, addr: &str, job: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    let client = Client::connect(addr.parse()?, certs).await?;
    let request = Request::JobStatus {
        name: Some(job.to_string()),
        local: false,
    };
    while Instant::now() < deadline {
        if let Response::Jobs(list) = client.call(&request, None).await?
            && let Some(status) = list.first()
        {
            match status.state.as_str() {
                "finished" => {
                    client.close().await;
                    return Ok(());
                }
                "failed" => bail!("job `{job}` failed: {:?}", status.vertices),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("job `{job}` did not finish within {PATIENCE:?}")
}
