//! `weir cluster status`: the members, their health and vertices, and the
//! coordinator, as the coordinator sees them.

use std::time::{Duration, Instant};

use anyhow::bail;
use weir_net::cluster::{ClusterRequest, ClusterResponse, ClusterStatus};

use super::cluster::{Connect, connect, runtime};
use crate::net::{Client, Request, Response};

/// The cluster's status as the node `client` is connected to answers it.
pub(super) async fn cluster_status(client: &Client) -> anyhow::Result<ClusterStatus> {
    let request = Request::Cluster(ClusterRequest::Status);
    match client.call(&request, None).await? {
        Response::Cluster(ClusterResponse::Status(s)) => Ok(s),
        other => bail!("the node answered {other:?}"),
    }
}

/// Prints the cluster's status as a table, or as JSON.
pub fn status(json: bool, c: &Connect) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let client = connect(c).await?;
        let status = cluster_status(&client).await?;
        client.close().await;
        if json {
            println!("{}", serde_json::to_string(&status)?);
        } else {
            print_cluster(&status);
        }
        Ok(())
    })
}

/// `weir node drain MEMBER`: asks the coordinator to drain the member,
/// then waits (at most `wait`) until nothing is placed on it, it backs
/// nothing up and it runs no vertex, printing what is left as it goes.
pub fn drain(member: &str, wait: Duration, c: &Connect) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let client = connect(c).await?;
        let request = Request::Cluster(ClusterRequest::Drain {
            member: member.to_string(),
        });
        let started = Instant::now();
        let id = loop {
            match client.call(&request, None).await? {
                Response::Cluster(ClusterResponse::Draining { id }) => break id,
                // An election is under way: the drain is retried.
                Response::Cluster(ClusterResponse::NoCoordinator)
                    if started.elapsed() < Duration::from_secs(10) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Response::Cluster(ClusterResponse::NoCoordinator) => {
                    bail!("the cluster has no coordinator to drain member `{member}`")
                }
                other => bail!("the node answered {other:?}"),
            }
        };
        println!("member {id}: draining");
        let deadline = Instant::now() + wait;
        let mut said = None;
        loop {
            let status = cluster_status(&client).await?;
            let Some(m) = status.members.iter().find(|m| m.id == id) else {
                bail!("member {id} left the cluster while draining");
            };
            if !m.draining {
                bail!("member {id} started again and takes work again: drain it again");
            }
            let left = (m.placed, m.backs, m.vertices.len());
            if left == (0, 0, 0) {
                println!(
                    "member {id}: drained in {:.1} s; it runs and backs up nothing: safe to stop",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            if said != Some(left) {
                println!(
                    "member {id}: {} vertices placed, {} backed up, {} running",
                    left.0, left.1, left.2
                );
                said = Some(left);
            }
            if Instant::now() >= deadline {
                if wait.is_zero() {
                    break;
                }
                bail!(
                    "member {id} still has {} vertices placed, backs up {} and runs {} after {} s; its vertices move once their backups hold a snapshot, and it backs vertices up until their new backups hold one (see `weir cluster status`)",
                    left.0,
                    left.1,
                    left.2,
                    wait.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        client.close().await;
        Ok(())
    })
}

/// How many running vertices no other member could resume at once (see
/// `VertexLoad::protected`).
pub(super) fn unprotected(status: &ClusterStatus) -> usize {
    status
        .members
        .iter()
        .filter(|m| m.health == "up")
        .flat_map(|m| &m.vertices)
        .filter(|v| v.state == "running" && v.protected == Some(false))
        .count()
}

fn print_cluster(status: &ClusterStatus) {
    match status.coordinator {
        Some(id) => println!("coordinator: member {id} (term {})", status.term),
        None => println!(
            "coordinator: none elected (member {} answered)",
            status.answered_by
        ),
    }
    println!(
        "{:<6} {:<24} {:<9} {:<6} HEARD",
        "MEMBER", "ADDRESS", "HEALTH", "VOTER"
    );
    for m in &status.members {
        let heard = m
            .heard_ms
            .map_or_else(|| "-".to_string(), |ms| format!("{ms} ms ago"));
        let voter = if m.voter { "yes" } else { "no" };
        let health = if m.draining {
            format!("{} (draining)", m.health)
        } else {
            m.health.clone()
        };
        println!(
            "{:<6} {:<24} {:<9} {:<6} {heard}",
            m.id, m.addr, health, voter
        );
        for v in &m.vertices {
            let replica = if v.replica { " (replica)" } else { "" };
            let backup = match (v.backup, v.protected) {
                (Some(b), Some(false)) => format!("  backup {b} (no snapshot yet)"),
                (Some(b), _) => format!("  backup {b}"),
                (None, _) => String::new(),
            };
            // A sink is named as the submit's answer names it, with its file.
            let name = match &v.plan {
                Some(plan) => format!("{plan} ({})", v.vertex),
                None => v.vertex.clone(),
            };
            println!(
                "         {}/{name}{replica}  {}  lag {}{backup}",
                v.job, v.state, v.lag
            );
        }
    }
    let exposed = unprotected(status);
    if exposed > 0 {
        println!(
            "running vertices that a loss of their member now would leave waiting (no other member holds a snapshot of them yet): {exposed}"
        );
    }
    if !status.streams.is_empty() {
        println!("{:<24} HOLDERS (primary first)", "STREAM");
    }
    for s in &status.streams {
        let holders: Vec<String> = s
            .holders
            .iter()
            .map(|h| match s.ready.contains(h) {
                true => h.to_string(),
                false => format!("{h} (catching up)"),
            })
            .collect();
        let collected = match s.low {
            0 => String::new(),
            low => format!("  (collected below seq {low})"),
        };
        println!("{:<24} {}{collected}", s.name, holders.join(", "));
    }
}
