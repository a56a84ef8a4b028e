//! `weir cluster status`: the members, their health and vertices, and the
//! coordinator, as the coordinator sees them.

use anyhow::bail;

use super::cluster::{Connect, connect, runtime};
use crate::net::{Request, Response};

/// Prints the cluster's status as a table, or as JSON.
pub fn status(json: bool, c: &Connect) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let client = connect(c).await?;
        let request = Request::Cluster(weir_net::cluster::ClusterRequest::Status);
        let status = match client.call(&request, None).await? {
            Response::Cluster(weir_net::cluster::ClusterResponse::Status(s)) => s,
            other => bail!("the node answered {other:?}"),
        };
        client.close().await;
        if json {
            println!("{}", serde_json::to_string(&status)?);
        } else {
            print_cluster(&status);
        }
        Ok(())
    })
}

fn print_cluster(status: &weir_net::cluster::ClusterStatus) {
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
        println!(
            "{:<6} {:<24} {:<9} {:<6} {heard}",
            m.id, m.addr, m.health, voter
        );
        for v in &m.vertices {
            println!(
                "         {}/{}  {}  lag {}",
                v.job, v.vertex, v.state, v.lag
            );
        }
    }
}
