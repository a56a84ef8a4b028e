//! `weir bench recovery`: a cluster of local `weir node` processes runs a
//! paced Nexmark query; mid-run one member (not the coordinator's) is
//! killed with SIGKILL. Measures, from the kill, how long until every
//! vertex it ran reports running on a survivor (detection, the move to its
//! backup, the restore from the backup's snapshot) and until each has
//! written past the position it had reached before the kill (the replay of
//! what it had done since that snapshot): the time to output resuming.
//! With `--drain`, the member is drained (`weir node drain`) instead, and
//! the same two times are measured from the drain. Both also measure what
//! the member's readers see: the longest time the vertices on the other
//! members read nothing new of what the member's vertices write, from the
//! kill (or drain) until the vertices resumed and [`AFTER`] more, against
//! the longest such time over [`AFTER`] before it. A drain also measures
//! how long until `weir node drain` would return: the member runs and
//! backs up nothing (every vertex it ran or backed up has a backup that
//! holds a snapshot), and it is safe to stop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use super::bench::{Killed, cluster_scratch, spawn_node};
use crate::jobs::VertexStatus;
use crate::net::{CertDir, Client, Request, Response};

/// `weir bench recovery`.
#[derive(Debug, Args)]
pub struct RecoveryArgs {
    /// The query: the script `QUERY.wsql` of the queries' directory.
    #[arg(long, default_value = "q5")]
    query: String,
    /// rVertices per keyed stage.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=256))]
    parallelism: u32,
    /// Events per second the paced input generates.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// When the member is killed, after the submit.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    kill_after: Duration,
    /// The nodes' `--heartbeat-timeout`.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    heartbeat_timeout: Duration,
    /// Runs, each on a fresh cluster of three.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
    /// The queries' directory.
    #[arg(long, default_value = "examples/nexmark")]
    queries: PathBuf,
    /// Drain the member instead of killing it.
    #[arg(long)]
    drain: bool,
    /// Take the member that runs the job's sink (the coordinator's, too),
    /// so that the output file's own pause shows.
    #[arg(long)]
    sink: bool,
    /// Every query stage replicated this many times (`WITH REPLICATE K`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=3))]
    replicate: Option<u32>,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One kill (or drain).
#[derive(Debug, Serialize)]
struct Round {
    member: u64,
    vertices: usize,
    /// From the kill to every vertex of the member running elsewhere.
    moved_ms: f64,
    /// From the kill to every one of them past where it stood.
    resumed_ms: f64,
    /// The longest time the vertices on the other members read nothing
    /// new of the member's vertices' streams, from the kill until
    /// [`AFTER`] after the vertices resumed.
    stall_ms: f64,
    /// The same over [`AFTER`] before the kill.
    stall_before_ms: f64,
    /// The longest time the job's output file did not grow, over the same
    /// span as `stall_ms`.
    output_stall_ms: f64,
    /// The same over [`AFTER`] before the kill.
    output_stall_before_ms: f64,
    /// Whether the member ran the job's sink.
    sink: bool,
    /// The vertex that was last to write past where it stood.
    last: String,
    /// A drain: from the drain until the member runs and backs up nothing.
    safe_ms: Option<f64>,
    /// A kill: from the kill until every vertex would resume at once if
    /// its member were lost too (a backup holds a snapshot of it).
    protected_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    query: String,
    /// Instances of each query stage's vertices.
    replicate: u32,
    /// `kill -9` or `drain`.
    how: &'static str,
    parallelism: u32,
    rate: u64,
    heartbeat_timeout_ms: u128,
    rounds: Vec<Round>,
    moved_ms_median: f64,
    resumed_ms_median: f64,
    resumed_ms_max: f64,
    stall_ms_median: f64,
    stall_ms_max: f64,
    stall_before_ms_median: f64,
    output_stall_ms_median: f64,
    output_stall_ms_max: f64,
    /// A drain: from the drain until the member is safe to stop.
    safe_ms_median: Option<f64>,
    /// A kill: from the kill until every vertex is protected again.
    protected_ms_median: Option<f64>,
}

/// How long any one wait may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(120);
/// How long the readers are watched before the kill, and after the
/// vertices resumed.
const AFTER: Duration = Duration::from_millis(1500);

/// Runs `weir bench recovery`.
pub fn recovery(args: RecoveryArgs) -> anyhow::Result<()> {
    let (work, _clean) = cluster_scratch("recovery")?;
    // Long enough to outlast the kill and the recovery several times over.
    let events = args.rate * (args.kill_after.as_secs() + 20);
    let params = format!("events => {events}, rate => {}, pace => 1", args.rate);
    let script = super::spread::script(&args.queries, &args.query, &work, &params, args.replicate)?;
    let runtime = super::cluster::runtime()?;
    let certs = CertDir::new(&work.join("certs"));
    let mut rounds = Vec::new();
    let how = if args.drain { "drain" } else { "kill -9" };
    for round in 1..=args.rounds {
        let measured = one_round(&args, &work, &script, round, &certs, &runtime)?;
        if !args.json {
            eprintln!(
                "round {round}: {how} of member {}{} ({} vertices): all running elsewhere after {:.0} ms, all past where they stood after {:.0} ms (the last: {}); their readers elsewhere read nothing new for at most {:.0} ms (before: {:.0} ms); the output file did not grow for at most {:.0} ms (before: {:.0} ms)",
                measured.member,
                if measured.sink {
                    ", which ran the sink"
                } else {
                    ""
                },
                measured.vertices,
                measured.moved_ms,
                measured.resumed_ms,
                measured.last,
                measured.stall_ms,
                measured.stall_before_ms,
                measured.output_stall_ms,
                measured.output_stall_before_ms
            );
            if let Some(safe) = measured.safe_ms {
                eprintln!("round {round}: the drained member is safe to stop after {safe:.0} ms");
            }
            if let Some(ms) = measured.protected_ms {
                eprintln!(
                    "round {round}: every vertex is protected against another loss after {ms:.0} ms"
                );
            }
        }
        rounds.push(measured);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let resumed: Vec<f64> = rounds.iter().map(|r| r.resumed_ms).collect();
    let stalls: Vec<f64> = rounds.iter().map(|r| r.stall_ms).collect();
    let output_stalls: Vec<f64> = rounds.iter().map(|r| r.output_stall_ms).collect();
    let report = Report {
        query: args.query.clone(),
        replicate: args.replicate.unwrap_or(1),
        how,
        parallelism: args.parallelism,
        rate: args.rate,
        heartbeat_timeout_ms: args.heartbeat_timeout.as_millis(),
        moved_ms_median: median(rounds.iter().map(|r| r.moved_ms).collect()),
        resumed_ms_median: median(resumed.clone()),
        resumed_ms_max: resumed.iter().copied().fold(0.0, f64::max),
        stall_ms_median: median(stalls.clone()),
        stall_ms_max: stalls.iter().copied().fold(0.0, f64::max),
        stall_before_ms_median: median(rounds.iter().map(|r| r.stall_before_ms).collect()),
        output_stall_ms_median: median(output_stalls.clone()),
        output_stall_ms_max: output_stalls.iter().copied().fold(0.0, f64::max),
        safe_ms_median: args
            .drain
            .then(|| median(rounds.iter().filter_map(|r| r.safe_ms).collect())),
        protected_ms_median: (!args.drain)
            .then(|| median(rounds.iter().filter_map(|r| r.protected_ms).collect())),
        rounds,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}{} at parallelism {}, {} events/s, heartbeat timeout {} ms, {} rounds of {how}: the member's vertices run elsewhere after {:.0} ms and write past where they stood after {:.0} ms (median), {:.0} ms (max); their readers elsewhere read nothing new for at most {:.0} ms (median), {:.0} ms (max), against {:.0} ms before; the output file did not grow for at most {:.0} ms (median), {:.0} ms (max)",
            report.query,
            match report.replicate {
                1 => String::new(),
                k => format!(" (every stage replicated {k}×)"),
            },
            report.parallelism,
            report.rate,
            report.heartbeat_timeout_ms,
            report.rounds.len(),
            report.moved_ms_median,
            report.resumed_ms_median,
            report.resumed_ms_max,
            report.stall_ms_median,
            report.stall_ms_max,
            report.stall_before_ms_median,
            report.output_stall_ms_median,
            report.output_stall_ms_max
        );
        if let Some(ms) = report.protected_ms_median {
            println!(
                "every vertex is protected against another loss (its backup holds a snapshot of it) after {ms:.0} ms (median)"
            );
        }
        if let Some(safe) = report.safe_ms_median {
            println!(
                "the drained member runs and backs up nothing (safe to stop) after {safe:.0} ms (median)"
            );
        }
    }
    Ok(())
}

fn one_round(
    args: &RecoveryArgs,
    work: &std::path::Path,
    script: &std::path::Path,
    round: u32,
    certs: &CertDir,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Round> {
    let timeout = humantime::format_duration(args.heartbeat_timeout).to_string();
    let mut nodes: Vec<(Killed, String)> = Vec::new();
    for i in 1..=3 {
        let data = format!("r{round}-d{i}");
        let mut a = vec!["--data", data.as_str(), "--listen", "127.0.0.1:0"];
        a.extend(["--files", ".", "--heartbeat-timeout", timeout.as_str()]);
        let seed = nodes.first().map(|(_, addr)| addr.clone());
        if let Some(seed) = &seed {
            a.extend(["--join", seed.as_str()]);
        }
        nodes.push(spawn_node(work, &a)?);
    }
    let addrs: Vec<String> = nodes.iter().map(|(_, a)| a.clone()).collect();
    let status = runtime.block_on(super::failover::settled(certs, &addrs, |s| {
        s.members.iter().filter(|m| m.health == "up").count() == 3
    }))?;
    let submit = std::process::Command::new(std::env::current_exe()?)
        .args(["job", "submit"])
        .arg(script)
        .args(["--parallelism", &args.parallelism.to_string()])
        .args(["--node", &addrs[0], "--certs", "certs"])
        .current_dir(work)
        .output()?;
    if !submit.status.success() {
        bail!(
            "weir job submit: {}",
            String::from_utf8_lossy(&submit.stderr)
        );
    }
    std::thread::sleep(args.kill_after);
    let coordinator = status.coordinator.context("a coordinator")?;
    // A sink's status names its file.
    let sink_of = |addr: &str| {
        runtime
            .block_on(progress(certs, addr, &args.query))
            .is_ok_and(|p| p.keys().any(|v| v.ends_with(".jsonl")))
    };
    let victim = match args.sink {
        true => status.members.iter().find(|m| sink_of(&m.addr)),
        false => status.members.iter().find(|m| m.id != coordinator),
    }
    .context("a member to take")?;
    let sink = sink_of(&victim.addr);
    let file = work.join(format!("out/{}.jsonl", args.query));
    let length = || std::fs::metadata(&file).map_or(0, |m| m.len());
    let at = nodes
        .iter()
        .position(|(_, a)| *a == victim.addr)
        .context("the member's node")?;
    let survivors: Vec<String> = addrs
        .iter()
        .filter(|a| **a != victim.addr)
        .cloned()
        .collect();
    let query = args.query.clone();
    runtime.block_on(async {
        let mut clients = Vec::new();
        for addr in &survivors {
            clients.push(Client::connect(addr.parse()?, certs).await?);
        }
        let writers: BTreeSet<String> = progress(certs, &victim.addr, &query)
            .await?
            .into_keys()
            .collect();
        let mut before_stall = Stall::new(read_from(&clients, &writers, &query).await);
        let mut output_before = Stall::new(length());
        let watched = Instant::now();
        while watched.elapsed() < AFTER {
            before_stall.see(read_from(&clients, &writers, &query).await);
            output_before.see(length());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = progress(certs, &victim.addr, &query).await?;
        if before.is_empty() {
            bail!("member {} runs no vertex of the job", victim.id);
        }
        let mut stall = Stall::new(read_from(&clients, &writers, &query).await);
        let mut output = Stall::new(length());
        let killed = Instant::now();
        if args.drain {
            let request = Request::Cluster(weir_net::cluster::ClusterRequest::Drain {
                member: victim.id.to_string(),
            });
            match clients[0].call(&request, None).await? {
                Response::Cluster(weir_net::cluster::ClusterResponse::Draining { .. }) => {}
                other => bail!("the drain was answered {other:?}"),
            }
        } else {
            nodes[at].0.0.kill()?;
        }
        // Meanwhile: when every vertex is protected again.
        let protection = (!args.drain).then(|| {
            let (addr, certs) = (survivors[0].clone(), certs.clone());
            let (names, member) = (before.keys().cloned().collect(), victim.id);
            tokio::spawn(async move { protected_again(addr, certs, member, names, killed).await })
        });
        let mut moved = None;
        // The vertex that was last to write past where it stood.
        let mut last = String::new();
        while killed.elapsed() < PATIENCE {
            let mut now = BTreeMap::new();
            for client in &clients {
                now.extend(local(client, &query).await.unwrap_or_default());
            }
            stall.see(read_from(&clients, &writers, &query).await);
            output.see(length());
            let here = |v: &String| now.get(v);
            if moved.is_none() && before.keys().all(|v| here(v).is_some()) {
                moved = Some(killed.elapsed());
            }
            let behind: Vec<&String> = before
                .iter()
                .filter(|(v, (_, pos))| {
                    !here(v).is_some_and(|(state, p)| state == "finished" || p > pos)
                })
                .map(|(v, _)| v)
                .collect();
            if let [v] = behind.as_slice() {
                last = (*v).clone();
            }
            let past = behind.is_empty();
            if let (Some(moved), true) = (moved, past) {
                let resumed = killed.elapsed();
                while killed.elapsed() < resumed + AFTER {
                    stall.see(read_from(&clients, &writers, &query).await);
                    output.see(length());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let safe_ms = match args.drain {
                    true => Some(safe_to_stop(&clients[0], victim.id, killed).await?),
                    false => None,
                };
                let protected_ms = match protection {
                    Some(task) => Some(task.await??),
                    None => None,
                };
                for client in clients {
                    client.close().await;
                }
                return Ok(Round {
                    member: victim.id,
                    vertices: before.len(),
                    moved_ms: moved.as_secs_f64() * 1e3,
                    resumed_ms: resumed.as_secs_f64() * 1e3,
                    stall_ms: stall.longest.as_secs_f64() * 1e3,
                    stall_before_ms: before_stall.longest.as_secs_f64() * 1e3,
                    output_stall_ms: output.longest.as_secs_f64() * 1e3,
                    output_stall_before_ms: output_before.longest.as_secs_f64() * 1e3,
                    sink,
                    last,
                    safe_ms,
                    protected_ms,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        bail!(
            "round {round}: member {}'s vertices did not resume within {PATIENCE:?}",
            victim.id
        )
    })
}

/// Milliseconds from `killed` until the vertices of the job are protected
/// again after member `member` was killed, as the cluster's status at
/// `addr` says: the member is declared lost, every vertex it ran (by its
/// status name, `names`) runs on another member, and every running vertex
/// would resume at once if its member were lost now (its backup holds a
/// snapshot of it). Polled every 100 ms, out of the way of the recovery
/// it measures.
async fn protected_again(
    addr: String,
    certs: CertDir,
    member: u64,
    names: BTreeSet<String>,
    killed: Instant,
) -> anyhow::Result<f64> {
    let client = Client::connect(addr.parse()?, &certs).await?;
    while killed.elapsed() < PATIENCE {
        let status = super::members::cluster_status(&client).await?;
        let lost = status
            .members
            .iter()
            .any(|m| m.id == member && m.health != "up");
        let protected: BTreeSet<&String> = status
            .members
            .iter()
            .filter(|m| m.health == "up")
            .flat_map(|m| &m.vertices)
            .filter(|v| v.protected == Some(true))
            .map(|v| &v.vertex)
            .collect();
        if lost
            && names.iter().all(|n| protected.contains(n))
            && super::members::unprotected(&status) == 0
        {
            client.close().await;
            return Ok(killed.elapsed().as_secs_f64() * 1e3);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "the job's vertices were not all protected again {PATIENCE:?} after member {member} was killed"
    )
}

/// Milliseconds from `drained` until drained member `member` runs and
/// backs up nothing, as the cluster's status through `client` says.
async fn safe_to_stop(client: &Client, member: u64, drained: Instant) -> anyhow::Result<f64> {
    while drained.elapsed() < PATIENCE {
        let status = super::members::cluster_status(client).await?;
        let empty = status
            .members
            .iter()
            .find(|m| m.id == member)
            .is_some_and(|m| m.placed == 0 && m.backs == 0 && m.vertices.is_empty());
        if empty {
            return Ok(drained.elapsed().as_secs_f64() * 1e3);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("drained member {member} still runs or backs up vertices after {PATIENCE:?}")
}

/// Per vertex the member at `addr` runs of `job`: its state and how far it
/// wrote (a sink: read).
async fn progress(
    certs: &CertDir,
    addr: &str,
    job: &str,
) -> anyhow::Result<BTreeMap<String, (String, u64)>> {
    let client = Client::connect(addr.parse()?, certs).await?;
    let answer = local(&client, job).await;
    client.close().await;
    answer
}

/// The longest time a count did not grow.
struct Stall {
    last: u64,
    since: Instant,
    longest: Duration,
}

impl Stall {
    fn new(now: u64) -> Stall {
        Stall {
            last: now,
            since: Instant::now(),
            longest: Duration::ZERO,
        }
    }

    fn see(&mut self, now: u64) {
        if now > self.last {
            self.last = now;
            self.since = Instant::now();
        }
        self.longest = self.longest.max(self.since.elapsed());
    }
}

/// How far the vertices on the members `clients` ask have read the
/// streams of the vertices named `writers`: per reader and stream, the most
/// any member says, summed.
async fn read_from(clients: &[Client], writers: &BTreeSet<String>, job: &str) -> u64 {
    let request = Request::JobStatus {
        name: Some(job.to_string()),
        local: true,
    };
    let mut read: BTreeMap<(String, String), u64> = BTreeMap::new();
    for client in clients {
        let Ok(Response::Jobs(list)) = client.call(&request, None).await else {
            continue;
        };
        for v in list.iter().flat_map(|s| s.vertices.iter()) {
            if writers.contains(&v.name) {
                continue;
            }
            for (stream, at) in &v.inputs {
                let writer = stream.rsplit('.').next().unwrap_or_default();
                if writers.contains(writer) {
                    let most = read.entry((v.name.clone(), stream.clone())).or_default();
                    *most = (*most).max(*at);
                }
            }
        }
    }
    read.values().sum()
}

async fn local(client: &Client, job: &str) -> anyhow::Result<BTreeMap<String, (String, u64)>> {
    let request = Request::JobStatus {
        name: Some(job.to_string()),
        local: true,
    };
    let list = match client.call(&request, None).await? {
        Response::Jobs(list) => list,
        other => bail!("a member answered {other:?}"),
    };
    let reached = |v: &VertexStatus| match &v.output {
        Some((_, at)) => *at,
        None => v.inputs.first().map_or(0, |(_, at)| *at),
    };
    Ok(list
        .iter()
        .flat_map(|s| s.vertices.iter())
        .filter(|v| v.state == "running" || v.state == "finished")
        .map(|v| (v.name.clone(), (v.state.clone(), reached(v))))
        .collect())
}
