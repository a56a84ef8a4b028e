//! `weir bench failover`: a cluster of local `weir node` processes whose
//! coordinator's node is killed with SIGKILL, round after round; measures
//! how long the survivors take to elect a new coordinator and to declare the
//! dead member lost (heartbeat timeout included), then restarts the dead
//! node on its data directory and address and waits until it is back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use super::bench::{Killed, cluster_scratch, spawn_node};
use crate::net::{CertDir, Client, Request, Response};
use weir_net::cluster::{ClusterRequest, ClusterResponse, ClusterStatus};

/// `weir bench failover`.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(3..=9))]
    members: u32,
    /// The nodes' `--heartbeat-timeout`.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    heartbeat_timeout: Duration,
    /// Coordinator kills.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One kill.
#[derive(Debug, Serialize)]
struct Round {
    killed: u64,
    /// From the kill to a survivor naming another coordinator.
    elected_ms: f64,
    /// From the kill to the new coordinator declaring the member lost.
    lost_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    members: u32,
    heartbeat_timeout_ms: u128,
    rounds: Vec<Round>,
    elected_ms_median: f64,
    lost_ms_median: f64,
    lost_ms_max: f64,
}

/// How long any one wait may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `weir bench failover`.
pub fn failover(args: FailoverArgs) -> anyhow::Result<()> {
    let (work, _clean) = cluster_scratch("failover")?;
    let timeout = humantime::format_duration(args.heartbeat_timeout).to_string();
    let start = |data: &str, listen: &str, join: Option<&str>| {
        let mut a = vec!["--data", data, "--listen", listen];
        a.extend(["--heartbeat-timeout", timeout.as_str()]);
        if let Some(seed) = join {
            a.extend(["--join", seed]);
        }
        spawn_node(&work, &a)
    };
    // By address: the node process and its data directory.
    let mut nodes: BTreeMap<String, (Killed, String)> = BTreeMap::new();
    let (first, seed) = start("d1", "127.0.0.1:0", None)?;
    nodes.insert(seed.clone(), (first, "d1".into()));
    for i in 2..=args.members {
        let data = format!("d{i}");
        let (node, addr) = start(&data, "127.0.0.1:0", Some(&seed))?;
        nodes.insert(addr, (node, data));
    }
    let runtime = super::cluster::runtime()?;
    let certs = CertDir::new(&work.join("certs"));
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let all_up = |s: &ClusterStatus| {
            s.coordinator.is_some()
                && s.members
                    .iter()
                    .filter(|m| m.health == "up" && m.voter)
                    .count()
                    == args.members as usize
        };
        let addrs: Vec<String> = nodes.keys().cloned().collect();
        let status = runtime.block_on(settled(&certs, &addrs, all_up))?;
        let coordinator = status.coordinator.context("a coordinator")?;
        let dead_addr = status
            .members
            .iter()
            .find(|m| m.id == coordinator)
            .map(|m| m.addr.clone())
            .context("the coordinator's address")?;
        let survivor = addrs
            .iter()
            .find(|a| **a != dead_addr)
            .context("a survivor")?
            .clone();
        let (mut dead, data) = nodes.remove(&dead_addr).context("the coordinator's node")?;
        let measured = runtime.block_on(async {
            // Connected beforehand: the measurement holds no handshake.
            let client = Client::connect(survivor.parse()?, &certs).await?;
            let killed = Instant::now();
            dead.0.kill()?;
            let mut elected = None;
            while killed.elapsed() < PATIENCE {
                let s = status_of(&client).await?;
                if elected.is_none() && s.coordinator.is_some_and(|c| c != coordinator) {
                    elected = Some(killed.elapsed());
                }
                let lost = s
                    .members
                    .iter()
                    .any(|m| m.id == coordinator && m.health == "lost");
                if let (Some(elected), true) = (elected, lost) {
                    client.close().await;
                    return Ok::<_, anyhow::Error>(Round {
                        killed: coordinator,
                        elected_ms: elected.as_secs_f64() * 1e3,
                        lost_ms: killed.elapsed().as_secs_f64() * 1e3,
                    });
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            bail!(
                "round {}: member {coordinator} was not declared lost within {PATIENCE:?}",
                round + 1
            )
        })?;
        if !args.json {
            eprintln!(
                "round {}: killed member {}: new coordinator after {:.0} ms, member lost after {:.0} ms",
                round + 1,
                measured.killed,
                measured.elected_ms,
                measured.lost_ms
            );
        }
        rounds.push(measured);
        let _ = dead.0.wait();
        drop(dead);
        let (node, addr) = start(&data, &dead_addr, None)?;
        nodes.insert(addr, (node, data));
    }
    let report = summary(&args, rounds);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} members, heartbeat timeout {} ms, {} rounds: new coordinator after {:.0} ms (median), dead member lost after {:.0} ms (median), {:.0} ms (max)",
            report.members,
            report.heartbeat_timeout_ms,
            report.rounds.len(),
            report.elected_ms_median,
            report.lost_ms_median,
            report.lost_ms_max
        );
    }
    Ok(())
}

fn summary(args: &FailoverArgs, rounds: Vec<Round>) -> Report {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let lost: Vec<f64> = rounds.iter().map(|r| r.lost_ms).collect();
    Report {
        members: args.members,
        heartbeat_timeout_ms: args.heartbeat_timeout.as_millis(),
        elected_ms_median: median(rounds.iter().map(|r| r.elected_ms).collect()),
        lost_ms_median: median(lost.clone()),
        lost_ms_max: lost.iter().copied().fold(0.0, f64::max),
        rounds,
    }
}

/// The member's own view (not the coordinator's, which a dead coordinator
/// would not give).
pub(super) async fn status_of(client: &Client) -> anyhow::Result<ClusterStatus> {
    let own = ClusterRequest::Forwarded(Box::new(ClusterRequest::Status));
    match client.call(&Request::Cluster(own), None).await? {
        Response::Cluster(ClusterResponse::Status(s)) => Ok(s),
        other => bail!("a member answered {other:?}"),
    }
}

/// Polls until the coordinator's status satisfies `done` and every member
/// names the same coordinator.
pub(super) async fn settled(
    certs: &CertDir,
    addrs: &[String],
    done: impl Fn(&ClusterStatus) -> bool,
) -> anyhow::Result<ClusterStatus> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let status = wait(certs, &addrs[0], &done).await?;
        let mut agreed = true;
        for addr in addrs {
            let client = Client::connect(addr.parse()?, certs).await?;
            let own = status_of(&client).await?;
            client.close().await;
            agreed &= own.coordinator == status.coordinator;
        }
        if agreed {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the members did not agree on a coordinator within {PATIENCE:?}")
}

/// Polls the member at `addr` until its status satisfies `done`.
async fn wait(
    certs: &CertDir,
    addr: &str,
    done: &impl Fn(&ClusterStatus) -> bool,
) -> anyhow::Result<ClusterStatus> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Ok(client) = Client::connect(addr.parse()?, certs).await {
            while Instant::now() < deadline {
                match status_of(&client).await {
                    Ok(s) if done(&s) => {
                        client.close().await;
                        return Ok(s);
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Err(_) => break,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the cluster at {addr} did not settle within {PATIENCE:?}")
}
