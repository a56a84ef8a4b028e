//! `weir bench ingest`: ingest into a stream of one local node and into a
//! stream of a cluster of local nodes (held by two members: each batch is
//! durable on both before it is acknowledged); prints events per second,
//! the CPU time of all node processes per event and the bytes that crossed
//! the loopback interface per event, and checks that each run stored every
//! event once.

use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use super::bench::{Killed, cluster_scratch, count, cpu_seconds, spawn_node};
use crate::net::{CertDir, Client, Request, Response};
use crate::schema::ColumnSpec;

/// `weir bench ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Events in all: a count, or with K, M or G.
    #[arg(long, default_value = "400K", value_parser = count)]
    events: u64,
    /// Events per ingest request.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Producers sending at once, each its share of the requests in turn
    /// (through the members in turn, in a cluster).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    producers: u32,
    /// Nodes in the cluster run.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=9))]
    members: u32,
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
    input_mb_per_s: f64,
    cpu_us_per_event: f64,
    loopback_bytes_per_event: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    events: u64,
    batch: u64,
    producers: u32,
    runs: Vec<Run>,
    /// The cluster's throughput over the single node's.
    throughput_ratio: f64,
    /// The cluster's CPU per event over the single node's.
    cpu_ratio: f64,
    /// The cluster's loopback bytes per event over the single node's.
    traffic_ratio: f64,
}

/// Runs `weir bench ingest`.
pub fn replicated(args: IngestArgs) -> anyhow::Result<()> {
    let (work, _clean) = cluster_scratch("bench-ingest")?;
    let requests = requests(args.events, args.batch);
    let input: usize = requests.iter().map(Vec::len).sum();
    let mut runs = Vec::new();
    for nodes in [1, args.members] {
        let run = one_run(&args, &work, &requests, input, nodes)?;
        if !args.json {
            println!(
                "{} node(s): {:.2} s, {:.0} events/s ({:.1} MB/s of JSON), {:.2} CPU-µs and {:.0} loopback bytes per event",
                run.nodes,
                run.seconds,
                run.events_per_s,
                run.input_mb_per_s,
                run.cpu_us_per_event,
                run.loopback_bytes_per_event
            );
        }
        runs.push(run);
    }
    let ratio = |a: f64, b: f64| a / b.max(f64::MIN_POSITIVE);
    let report = Report {
        events: args.events,
        batch: args.batch,
        producers: args.producers,
        throughput_ratio: ratio(runs[1].events_per_s, runs[0].events_per_s),
        cpu_ratio: ratio(runs[1].cpu_us_per_event, runs[0].cpu_us_per_event),
        traffic_ratio: ratio(
            runs[1].loopback_bytes_per_event,
            runs[0].loopback_bytes_per_event,
        ),
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} nodes / 1: throughput x{:.2}, CPU per event x{:.2}, loopback bytes per event x{:.2}",
            args.members, report.throughput_ratio, report.cpu_ratio, report.traffic_ratio
        );
    }
    Ok(())
}

/// The requests' JSONL bodies: `events` events in requests of `batch`.
fn requests(events: u64, batch: u64) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    let mut at = 0;
    while at < events {
        let end = (at + batch).min(events);
        let mut body = Vec::new();
        for i in at..end {
            body.extend_from_slice(
                format!(
                    "{{\"user\":\"u{}\",\"amount\":{},\"ts\":{}}}\n",
                    i % 1000,
                    (i * 7919) % 100_000,
                    i * 10
                )
                .as_bytes(),
            );
        }
        all.push(body);
        at = end;
    }
    all
}

/// Bytes sent over the loopback interface so far.
pub(super) fn loopback_bytes() -> anyhow::Result<u64> {
    let path = "/sys/class/net/lo/statistics/tx_bytes";
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path}: `{}`", text.trim()))
}

/// Ingests `requests` into a new stream of `nodes` fresh nodes.
fn one_run(
    args: &IngestArgs,
    work: &std::path::Path,
    requests: &[Vec<u8>],
    input: usize,
    nodes: u32,
) -> anyhow::Result<Run> {
    let mut started: Vec<(Killed, String)> = Vec::new();
    for i in 1..=nodes {
        let data = format!("n{nodes}-d{i}");
        let mut a = vec!["--data", data.as_str(), "--listen", "127.0.0.1:0"];
        let seed = started.first().map(|(_, addr)| addr.clone());
        if let Some(seed) = &seed {
            a.extend(["--join", seed.as_str()]);
        }
        started.push(spawn_node(work, &a)?);
    }
    let certs = CertDir::new(&work.join("certs"));
    let addrs: Vec<String> = started.iter().map(|(_, a)| a.clone()).collect();
    let runtime = super::cluster::runtime()?;
    let (seconds, traffic) = runtime.block_on(async {
        super::failover::settled(&certs, &addrs, |s| {
            s.members.iter().filter(|m| m.health == "up").count() == nodes as usize
        })
        .await?;
        let client = Client::connect(addrs[0].parse()?, &certs).await?;
        let column = |name: &str, ty: &str| ColumnSpec {
            name: name.into(),
            ty: ty.into(),
        };
        let create = Request::CreateStream {
            name: "payments".into(),
            columns: vec![
                column("user", "utf8"),
                column("amount", "int64"),
                column("ts", "int64"),
            ],
            time: "ts".into(),
            end_time: None,
        };
        client.call(&create, None).await?;
        client.close().await;
        let before = loopback_bytes()?;
        let begun = Instant::now();
        let mut tasks = Vec::new();
        for p in 0..args.producers as usize {
            let mine: Vec<Vec<u8>> = requests
                .iter()
                .skip(p)
                .step_by(args.producers as usize)
                .cloned()
                .collect();
            let (certs, addrs) = (certs.clone(), addrs.clone());
            tasks.push(tokio::spawn(async move {
                let addr = &addrs[p % addrs.len()];
                let client = Client::connect(addr.parse()?, &certs).await?;
                let mut entries = 0;
                for (sequence, body) in mine.iter().enumerate() {
                    let request = Request::Ingest {
                        stream: "payments".into(),
                        origin: format!("producer {p}"),
                        producer: Some(format!("p{p}")),
                        sequence: sequence as u64 + 1,
                    };
                    match client.call(&request, Some(body)).await? {
                        Response::Ingested {
                            entries: n,
                            duplicate: false,
                            ..
                        } => entries += n,
                        other => bail!("ingest answered {other:?}"),
                    }
                }
                client.close().await;
                anyhow::Ok(entries)
            }));
        }
        let mut entries = 0;
        for task in tasks {
            entries += task.await??;
        }
        let seconds = begun.elapsed().as_secs_f64();
        let traffic = loopback_bytes()? - before;
        // Every acknowledged entry on every holder (the single node, or
        // the stream's holders in the cluster), none twice.
        let client = Client::connect(addrs[0].parse()?, &certs).await?;
        let status = super::failover::status_of(&client).await?;
        client.close().await;
        let holders: Vec<String> = match status.streams.iter().find(|s| s.name == "payments") {
            Some(s) => s
                .holders
                .iter()
                .filter_map(|h| status.members.iter().find(|m| m.id == *h))
                .map(|m| m.addr.clone())
                .collect(),
            None => vec![addrs[0].clone()],
        };
        // As a member asks: each holder lists its own copy.
        let as_node = CertDir::with_identity(&work.join("certs"), Some("node".into()));
        for addr in &holders {
            let client = Client::connect(addr.parse()?, &as_node).await?;
            let list = client.call(&Request::ListStreams, None).await?;
            client.close().await;
            let Response::Streams(list) = list else {
                bail!("a stream listing answered {list:?}");
            };
            let held = list
                .iter()
                .find(|s| s.name == "payments")
                .map_or(0, |s| s.next);
            if held != entries {
                bail!("the node at {addr} holds {held} entries of `payments`; {entries} were acknowledged");
            }
        }
        anyhow::Ok((seconds, traffic))
    })?;
    let mut cpu = 0.0;
    for (node, _) in &started {
        cpu += cpu_seconds(Some(node.0.id()))?;
    }
    drop(started);
    let events = args.events as f64;
    Ok(Run {
        nodes,
        seconds,
        events_per_s: events / seconds,
        input_mb_per_s: input as f64 / seconds / 1e6,
        cpu_us_per_event: cpu * 1e6 / events,
        loopback_bytes_per_event: traffic as f64 / events,
    })
}
