//! `weir bench cluster`: one Nexmark query as a continuous job on one local
//! node and on a cluster of local nodes (its vertices placed over them, the
//! streams between members pulled over QUIC); prints the time from submit
//! to the job's end, events per second and the CPU time of all node
//! processes per event, and checks both write the same bytes. With
//! `--replicate K`, a third run on the cluster has every query stage
//! replicated K times: the cost of `replicate = K`.

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
    /// Also run the cluster with every query stage replicated this many
    /// times (`WITH REPLICATE K`), up to the members.
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=8))]
    replicate: Option<u32>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One run.
#[derive(Debug, Serialize)]
struct Run {
    nodes: u32,
    /// Instances of each query stage's vertices.
    replicate: u32,
    seconds: f64,
    events_per_s: f64,
    cpu_seconds: f64,
    cpu_us_per_event: f64,
    /// Bytes sent over the loopback interface per event, by everything on
    /// the machine while the job ran.
    loopback_bytes_per_event: f64,
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
    /// With `--replicate`: the replicated cluster's CPU per event over the
    /// cluster's without replicas.
    replicate_cpu_ratio: Option<f64>,
    /// With `--replicate`: its time over the cluster's without replicas.
    replicate_time_ratio: Option<f64>,
    same_output: bool,
}

/// How long a run may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(1800);

/// Runs `weir bench cluster`.
pub fn spread(args: SpreadArgs) -> anyhow::Result<()> {
    let (work, _clean) = cluster_scratch("bench-cluster")?;
    let size = format!("events => {}, rate => 10000, pace => 0", args.events);
    let mut plans = vec![(1, None), (args.members, None)];
    if let Some(k) = args.replicate {
        if k > args.members {
            bail!(
                "--replicate {k}: more instances than the {} members",
                args.members
            );
        }
        plans.push((args.members, Some(k)));
    }
    let mut runs = Vec::new();
    let mut outputs = Vec::new();
    for (nodes, replicate) in plans {
        // The same file for each run: the job's name and output are its.
        let script = script(&args.queries, &args.query, &work, &size, replicate)?;
        let k = replicate.unwrap_or(1);
        let (mut run, output) = one_run(&args, &work, &script, (nodes, k))?;
        run.replicate = k;
        if !args.json {
            println!(
                "{} node(s){}: {:.2} s, {:.0} events/s, {:.2} CPU-s, {:.2} CPU-µs and {:.0} loopback bytes per event",
                run.nodes,
                if run.replicate > 1 {
                    format!(", every stage replicated {}×", run.replicate)
                } else {
                    String::new()
                },
                run.seconds,
                run.events_per_s,
                run.cpu_seconds,
                run.cpu_us_per_event,
                run.loopback_bytes_per_event
            );
        }
        runs.push(run);
        outputs.push(output);
    }
    let same_output = outputs.windows(2).all(|w| w[0] == w[1]);
    let ratio = |a: f64, b: f64| a / b.max(f64::MIN_POSITIVE);
    let report = Report {
        query: args.query.clone(),
        events: args.events,
        parallelism: args.parallelism,
        cpu_ratio: ratio(runs[1].cpu_us_per_event, runs[0].cpu_us_per_event),
        time_ratio: ratio(runs[1].seconds, runs[0].seconds),
        replicate_cpu_ratio: runs
            .get(2)
            .map(|r| ratio(r.cpu_us_per_event, runs[1].cpu_us_per_event)),
        replicate_time_ratio: runs.get(2).map(|r| ratio(r.seconds, runs[1].seconds)),
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
        if let (Some(time), Some(cpu)) = (report.replicate_time_ratio, report.replicate_cpu_ratio) {
            println!(
                "replicated / not, on {} nodes: time x{time:.2}, CPU per event x{cpu:.2}",
                args.members
            );
        }
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
    replicate: Option<u32>,
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
    let mut text = text
        .replace(size, params)
        .replace("\"../", &format!("\"{}/../", dir.display()));
    if let Some(k) = replicate {
        text = replicated(&text, k);
    }
    let path = work.join(format!("{query}.wsql"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `text` with `WITH REPLICATE k` at the end of each query, `PROCESS` and
/// `REDUCE` statement (a statement ends at a line whose code, before any
/// `--` comment, ends with `;`).
fn replicated(text: &str, k: u32) -> String {
    let mut out = String::with_capacity(text.len());
    let mut statement = String::new();
    for line in text.lines() {
        let code = line.split("--").next().unwrap_or_default();
        statement.push_str(code);
        let ends = code.trim_end().ends_with(';');
        let query = ["SELECT", "PROCESS", "REDUCE"].iter().any(|w| {
            statement
                .split_once('=')
                .is_some_and(|(_, rest)| rest.trim_start().to_ascii_uppercase().starts_with(w))
        });
        match (ends, query) {
            (true, true) => {
                let at = code.rfind(';').unwrap_or(line.len());
                out.push_str(&format!(
                    "{} WITH REPLICATE {k}{}",
                    &line[..at],
                    &line[at..]
                ));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
        if ends {
            statement.clear();
        }
    }
    out
}

/// Runs the job on `nodes` fresh nodes; returns the run and its output.
fn one_run(
    args: &SpreadArgs,
    work: &Path,
    script: &Path,
    (nodes, replicate): (u32, u32),
) -> anyhow::Result<(Run, Vec<u8>)> {
    let mut started: Vec<(Killed, String)> = Vec::new();
    for i in 1..=nodes {
        // Each run on fresh data directories.
        let data = format!("n{nodes}-r{replicate}-d{i}");
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
    let traffic = super::replicated::loopback_bytes()?;
    let begun = Instant::now();
    if !submit.status.success() {
        bail!(
            "weir job submit: {}",
            String::from_utf8_lossy(&submit.stderr)
        );
    }
    runtime.block_on(finished(&certs, &addrs[0], &args.query))?;
    let seconds = begun.elapsed().as_secs_f64();
    let traffic = super::replicated::loopback_bytes()? - traffic;
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
            replicate: 1,
            seconds,
            events_per_s: events / seconds,
            cpu_seconds: cpu,
            cpu_us_per_event: cpu * 1e6 / events,
            loopback_bytes_per_event: traffic as f64 / events,
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_query_statement_and_only_those_get_the_replicate_clause() {
        let text = "-- a comment; with a semicolon\n\
                    Bid = INPUT NEXMARK BID (events => 10);\n\
                    Counts = SELECT auction, COUNT(*) AS num\n  FROM Bid WITH HOPPING(10s, 2s); -- per window; each\n\
                    T = REDUCE Counts ON auction USING C;\n\
                    OUTPUT Counts TO \"out/q.jsonl\";\n";
        let got = super::replicated(text, 2);
        assert_eq!(
            got,
            "-- a comment; with a semicolon\n\
             Bid = INPUT NEXMARK BID (events => 10);\n\
             Counts = SELECT auction, COUNT(*) AS num\n  FROM Bid WITH HOPPING(10s, 2s) WITH REPLICATE 2; -- per window; each\n\
             T = REDUCE Counts ON auction USING C WITH REPLICATE 2;\n\
             OUTPUT Counts TO \"out/q.jsonl\";\n"
        );
    }
}
