//! Ingest in a cluster of real `weir node` processes: each stream is held by
//! two members, an ingest sent to any member is acknowledged once both have
//! it durable, and losing the primary's member with its disk mid-ingest
//! loses no acknowledged event and stores none twice; a job reading the
//! stream, spread over the members, writes what `weir run` writes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::cluster::{id_at, until};
use super::cluster_jobs::{job_status, three, vertices};
use super::node::{Node, cluster, ok};
use super::{stderr, weir};

/// The holders of stream `name` in a status, the primary first, and
/// whether every one is ready.
fn holders(s: &Value, name: &str) -> (Vec<u64>, bool) {
    let Some(stream) = s["streams"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == name))
    else {
        return (Vec::new(), false);
    };
    let list = |k: &str| -> Vec<u64> {
        stream[k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    let (holders, ready) = (list("holders"), list("ready"));
    let all = holders.iter().all(|h| ready.contains(h));
    (holders, all)
}

/// Each event's line, as a count: what a stream read or an input file holds.
fn events(lines: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        let (Some(user), Some(ts)) = (v["user"].as_str(), v["ts"].as_i64()) else {
            continue;
        };
        let key = format!("{user} {ts} {} {}", v["ip"], v["agent"]);
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

fn ingest(d: &Path, node: &Node, part: usize) -> String {
    ok(&node.weir(d, &["ingest", "Clicks", &format!("part-{part}.jsonl")]))
}

/// The click-fraud script at parallelism 6 over three members, its input
/// ingested in ten requests through the members other than the victim:
/// the stream's primary's member, or (`source`) the member running the
/// job's source of the stream. Once the stream is collected below what the
/// source's backed-up snapshot needs, mid-ingest, the victim is killed
/// with `kill -9` and its data directory deleted. A ready holder is the
/// primary, a third member becomes a holder, the source resumes on a
/// survivor from its backup's snapshot, and the rest is ingested through
/// the survivors: the job reads every event once and its output is byte
/// for byte what `weir run` writes.
fn lose_a_member_mid_ingest(source: bool) {
    let dir = cluster();
    let d = dir.path();
    super::scripts::click_fraud_script(d);
    // Every event the job reads, written out too: each must be there once.
    let script = std::fs::read_to_string(d.join("clickfraud.wsql")).expect("script");
    let script = script + "OUTPUT Clicks TO \"out/clicks.jsonl\";\n";
    std::fs::write(d.join("clickfraud.wsql"), script).expect("script");
    let out = weir(&["run", "clickfraud.wsql", "--quiet"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = std::fs::read_to_string(d.join("out/flagged.jsonl")).expect("output");
    std::fs::remove_file(d.join("out/flagged.jsonl")).expect("clean");
    let input = std::fs::read_to_string(d.join("data/clicks.jsonl")).expect("clicks");
    let lines: Vec<&str> = input.lines().collect();
    for (i, part) in lines.chunks(lines.len().div_ceil(10)).enumerate() {
        std::fs::write(d.join(format!("part-{i}.jsonl")), part.join("\n") + "\n").expect("part");
    }

    let mut nodes = three(d);
    // The script's input becomes a stream of the cluster, held by two members.
    let out = ok(&nodes[1].weir(
        d,
        &["job", "submit", "clickfraud.wsql", "--parallelism", "6"],
    ));
    assert!(out.contains("submitted to the cluster"), "{out}");
    let s = until(d, &nodes[0], "the input held by two members", |s| {
        let (h, ready) = holders(s, "Clicks");
        h.len() == 2 && ready
    });
    let (before, _) = holders(&s, "Clicks");
    let lost_id = match source {
        false => before[0],
        true => {
            let s = until(d, &nodes[0], "the job's source running", |s| {
                vertices(s, "clickfraud")
                    .iter()
                    .any(|(_, v, _)| v == "Clicks")
            });
            let on = vertices(&s, "clickfraud");
            on.iter()
                .find(|(_, v, _)| v == "Clicks")
                .expect("the source")
                .0
        }
    };
    let victim = nodes
        .iter()
        .position(|n| id_at(&s, &n.addr) == lost_id)
        .expect("the victim's node");
    let via = |nodes: &[Node], i: usize| (victim + 1 + i % 2) % nodes.len();
    for part in 0..5 {
        let answer = ingest(d, &nodes[via(&nodes, part)], part);
        assert!(answer.contains("stored durably"), "{answer}");
    }
    // Ingest the same part again: stored once.
    let again = ingest(d, &nodes[via(&nodes, 1)], 4);
    assert!(again.contains("already stored"), "{again}");
    // The job reads on and its sources' snapshots are backed up: every
    // member collects the stream below what they need before the loss.
    until(d, &nodes[0], "the stream collected before the loss", |s| {
        let point = s["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == "Clicks");
        point.is_some_and(|p| p["low"].as_u64() > Some(0))
    });
    // One request in flight as the victim dies: the client and the
    // member it asked carry it to the primary, new or not.
    let survivor = via(&nodes, 0);
    let inflight = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "ingest",
            "Clicks",
            "part-5.jsonl",
            "--node",
            &nodes[survivor].addr,
        ])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ingest");
    let lost = nodes.remove(victim);
    let lost_addr = lost.addr.clone();
    lost.kill9();
    std::fs::remove_dir_all(d.join(["d1", "d2", "d3"][victim])).expect("delete its disk");
    let out = inflight.wait_with_output().expect("the in-flight ingest");
    assert!(out.status.success(), "in flight: {}", stderr(&out));
    // A lost primary's place goes to the other holder; the third member
    // holds a copy once it has caught up (from the collection point).
    let s = until(d, &nodes[0], "two ready holders among the survivors", |s| {
        let (h, ready) = holders(s, "Clicks");
        h.len() == 2 && ready && !h.contains(&lost_id)
    });
    let (after, _) = holders(&s, "Clicks");
    if lost_id == before[0] {
        assert_eq!(after[0], before[1], "{before:?} -> {after:?}");
    }
    assert!(nodes.iter().all(|n| n.addr != lost_addr));
    for part in 6..10 {
        let answer = ingest(d, &nodes[part % 2], part);
        assert!(answer.contains("stored durably"), "{answer}");
    }
    ok(&nodes[0].weir(d, &["stream", "close", "Clicks"]));
    let status = job_status(d, &nodes[0], "clickfraud", |s| s["state"] != "running");
    assert_eq!(status["state"], "finished", "{status}");
    let got = std::fs::read_to_string(d.join("out/flagged.jsonl")).expect("output");
    assert!(
        got == want,
        "the output after losing member {lost_id} (the source's: {source}) differs from weir run's:\n{got}\n---\n{want}"
    );
    // The job read every event once.
    let read = std::fs::read_to_string(d.join("out/clicks.jsonl")).expect("the events read");
    assert!(
        events(&read) == events(&input),
        "the job reads each event once"
    );
    // The stream is collected below what the job's backed-up sources
    // still need: listed through either survivor, it no longer starts at
    // seq 0, and reading from there is refused.
    until(d, &nodes[0], "the stream collected", |_| {
        nodes
            .iter()
            .all(|n| collected_from(&ok(&n.weir(d, &["stream", "list"])), "Clicks") > 0)
    });
    let early = nodes[1].weir(d, &["stream", "read", "Clicks", "--from", "0"]);
    assert!(
        !early.status.success() && stderr(&early).contains("garbage-collected"),
        "{}",
        stderr(&early)
    );
}

/// The stream's primary's member lost with its disk mid-ingest.
#[test]
fn ingest_survives_the_loss_of_the_primarys_member_with_its_disk() {
    lose_a_member_mid_ingest(false);
}

/// The member running the job's source of the stream lost with its disk
/// mid-ingest, after the stream was collected: the source resumes from its
/// backup's snapshot, which the collection never passes.
#[test]
fn a_collected_streams_source_survives_the_loss_of_its_member_with_its_disk() {
    lose_a_member_mid_ingest(true);
}

/// Where stream `name` begins in a `weir stream list`.
fn collected_from(list: &str, name: &str) -> u64 {
    list.lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}\t")))
        .filter_map(|rest| rest.strip_prefix("seq ")?.split("..").next()?.parse().ok())
        .next()
        .unwrap_or(0)
}

/// A stream created through one member is the cluster's: created again
/// with the same columns through another it is the same stream, with
/// others it is refused naming both. Ingest through any member, reads
/// through any other.
#[test]
fn streams_are_the_clusters_and_a_second_definition_is_refused() {
    let dir = cluster();
    let d = dir.path();
    let nodes = three(d);
    let create = |node: &Node, columns: &str| {
        node.weir(
            d,
            &[
                "stream",
                "create",
                "clicks",
                "--columns",
                columns,
                "--time",
                "ts",
            ],
        )
    };
    let first = ok(&create(&nodes[0], "user:utf8,ts:int64"));
    assert!(first.contains("held by members"), "{first}");
    let again = ok(&create(&nodes[2], "user:utf8,ts:int64"));
    assert!(again.contains("already in the cluster"), "{again}");
    let other = create(&nodes[1], "user:utf8,n:int64,ts:int64");
    assert!(
        !other.status.success() && stderr(&other).contains("already in the cluster with columns"),
        "{}",
        stderr(&other)
    );
    // Ingested through one member, read through another.
    std::fs::write(d.join("a.jsonl"), "{\"user\":\"u1\",\"ts\":5}\n").expect("a");
    let stored = ok(&nodes[1].weir(d, &["ingest", "clicks", "a.jsonl"]));
    assert!(stored.contains("1 events stored durably"), "{stored}");
    let read = ok(&nodes[2].weir(d, &["stream", "read", "clicks", "--from", "0"]));
    assert!(read.contains("\"user\":\"u1\""), "{read}");
    // Every member lists it as its primary holds it, holder or not.
    for node in &nodes {
        let list = ok(&node.weir(d, &["stream", "list"]));
        assert!(
            list.lines()
                .any(|l| l.starts_with("clicks\t") && l.contains("seq 0..1")),
            "{}: {list}",
            node.addr
        );
    }
    // A batch that does not decode, sent to the other holder as if by the
    // primary, is refused naming the stream and the member.
    let s = until(d, &nodes[0], "the stream's holders", |s| {
        holders(s, "clicks").0.len() == 2
    });
    let (held, _) = holders(&s, "clicks");
    let other = nodes
        .iter()
        .find(|n| id_at(&s, &n.addr) == held[1])
        .expect("the other holder");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use weir::net::{CertDir, Client, Request, Response};
        let as_node = CertDir::with_identity(&d.join("certs"), Some("node".into()));
        let client = Client::connect(other.addr.parse().expect("address"), &as_node)
            .await
            .expect("connects");
        let request = Request::Replicate {
            stream: "clicks".into(),
            primary: held[0],
            records: Vec::new(),
            evicted: Vec::new(),
        };
        let body = [16, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 255, 255, 255, 255];
        match client
            .answer(&request, Some(&body))
            .await
            .expect("an answer")
        {
            Response::Error { message } => assert!(
                message.contains(&format!("a batch of `clicks` from member {}", held[0])),
                "{message}"
            ),
            other => panic!("expected an error, got {other:?}"),
        }
        client.close().await;
    });
    let read = ok(&nodes[0].weir(d, &["stream", "read", "clicks", "--from", "0"]));
    assert_eq!(events(&read).len(), 1, "{read}");
    // Bad rows are refused at the primary with file, line and column.
    std::fs::write(d.join("bad.jsonl"), "{\"user\":\"u1\",\"ts\":\"x\"}\n").expect("bad");
    let bad = nodes[0].weir(d, &["ingest", "clicks", "bad.jsonl"]);
    assert!(
        !bad.status.success() && stderr(&bad).contains("bad.jsonl:1"),
        "{}",
        stderr(&bad)
    );
    // Six producers at once through the three members: the primary writes
    // the requests waiting for the stream's turn together, each once, with
    // its own seqs; one sent again is stored once.
    let mut want = events(&read);
    for p in 0..6 {
        let rows: String = (0..200)
            .map(|i| format!("{{\"user\":\"p{p}-{i}\",\"ts\":{}}}\n", 10 + i))
            .collect();
        want.extend(events(&rows));
        std::fs::write(d.join(format!("p{p}.jsonl")), rows).expect("part");
    }
    let at_once: Vec<_> = (0..6)
        .map(|p| {
            Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(["ingest", "clicks", &format!("p{p}.jsonl")])
                .args(["--node", &nodes[p % 3].addr])
                .current_dir(d)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn ingest")
        })
        .collect();
    for producer in at_once {
        let out = producer.wait_with_output().expect("an ingest");
        let answer = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && answer.contains("200 events stored durably"),
            "{answer}{}",
            stderr(&out)
        );
    }
    let again = ok(&nodes[2].weir(d, &["ingest", "clicks", "p4.jsonl"]));
    assert!(again.contains("already stored"), "{again}");
    for node in &nodes {
        let read = ok(&node.weir(d, &["stream", "read", "clicks", "--from", "0"]));
        assert!(events(&read) == want, "{}: each event once", node.addr);
    }
}
