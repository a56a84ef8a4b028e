//! Nexmark on a node: the examples' scripts submitted as continuous jobs
//! generate their inputs on the node (paced to the wall clock, or as fast as
//! the job takes them) and write byte for byte what `weir run` writes, also
//! across a `kill -9` mid-run.

use std::path::Path;
use std::time::Duration;

use weir_nexmark::{Config, Generator, Kind};

use super::jobs::{Rng, crash_seed, wait_finished};
use super::node::{Node, cluster, ok, write};
use super::{stderr, weir};

const EVENTS: u64 = 100_000;

/// `examples/nexmark/{q}.wsql` at `EVENTS` events, `rate` events a second
/// and the given pace, written to `dir`.
fn example(dir: &Path, q: &str, rate: u64, pace: u64) {
    super::nexmark_queries::example(
        dir,
        q,
        &format!("events => {EVENTS}, rate => {rate}, pace => {pace}"),
    );
}

/// What `weir run` writes for the script in `dir`.
fn offline(dir: &Path, q: &str) -> String {
    let out = weir(&["run", &format!("{q}.wsql"), "--quiet"], dir);
    assert!(out.status.success(), "{q}: {}", stderr(&out));
    let path = dir.join(format!("out/{q}.jsonl"));
    let text = std::fs::read_to_string(&path).expect("offline output");
    std::fs::remove_file(&path).expect("remove");
    text
}

/// A job's sources: (events generated so far, rows written, rows
/// dead-lettered) of each.
fn sources(node: &Node, dir: &Path, job: &str) -> Vec<(u64, u64, u64)> {
    let out = ok(&node.weir(dir, &["job", "status", job, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("status is JSON");
    let n = |v: &serde_json::Value| v.as_u64().expect("a count");
    v[0]["vertices"]
        .as_array()
        .expect("vertices")
        .iter()
        .filter(|s| s["role"] == "source")
        .map(|s| (n(&s["inputs"][0][1]), n(&s["rows_out"]), n(&s["dead"])))
        .collect()
}

/// Every example, unpaced on a node at parallelism 2, writes what `weir
/// run` writes at parallelism 1 (q13's side input is the node's stream
/// `Side`, ingested).
#[test]
fn nexmark_jobs_on_a_node_write_what_weir_run_writes() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    let mut queries: Vec<String> = std::fs::read_dir(super::repo_root().join("examples/nexmark"))
        .expect("examples")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            name.strip_suffix(".wsql").map(str::to_string)
        })
        .collect();
    queries.sort();
    assert!(queries.len() >= 25, "{queries:?}");
    for q in &queries {
        example(d, q, 10_000, 0);
        let want = offline(d, q);
        assert!(!want.is_empty(), "{q} has output");
        ok(&node.weir(
            d,
            &["job", "submit", &format!("{q}.wsql"), "--parallelism", "2"],
        ));
        if q == "q13" {
            let csv = std::fs::read_to_string(d.join("side_input.csv")).expect("side input");
            let rows: Vec<String> = csv
                .lines()
                .skip(1)
                .map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    format!("{{\"key\":{},\"value\":\"{}\",\"t\":{}}}", f[0], f[1], f[2])
                })
                .collect();
            write(d, "side.jsonl", &(rows.join("\n") + "\n"));
            ok(&node.weir(d, &["ingest", "Side", "side.jsonl"]));
            ok(&node.weir(d, &["stream", "close", "Side"]));
        }
        wait_finished(&node, d, q);
        let got = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).expect("output");
        assert!(got == want, "{q}: the node writes what `weir run` writes");
    }
    node.stop();
}

/// q5 and q7 paced on a node, killed with SIGKILL mid-run and restarted,
/// write byte for byte what `weir run` writes.
#[test]
fn paced_nexmark_jobs_survive_kill_9_with_identical_output() {
    let seed = crash_seed("paced_nexmark_jobs_survive_kill_9_with_identical_output");
    let mut rng = Rng(seed);
    let dir = cluster();
    let d = dir.path();
    let mut node = Node::start(d, "data").expect("node starts");
    let generator = Generator::new(Config {
        events: EVENTS,
        ..Config::default()
    })
    .expect("generator");
    let bids = generator.batch(Kind::Bid, 0..EVENTS).num_rows() as u64;
    for q in ["q5", "q7"] {
        // 100,000 events at 40,000 a second: 2.5 s of generation.
        example(d, q, 40_000, 1);
        let want = offline(d, q);
        assert!(!want.is_empty(), "{q} has output");
        ok(&node.weir(d, &["job", "submit", &format!("{q}.wsql")]));
        std::thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        let before = sources(&node, d, q)[0].0;
        assert!(
            before < EVENTS,
            "seed {seed}: {q} is paced, not done at the kill"
        );
        node.kill9();
        node = Node::start(d, "data").expect("node restarts after kill -9");
        wait_finished(&node, d, q);
        // Each bid once: none generated again after the restart (it would
        // come late and be dead-lettered, or doubled).
        assert_eq!(
            sources(&node, d, q),
            vec![(EVENTS, bids, 0)],
            "seed {seed}: {q}'s source after the restart"
        );
        let got = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).expect("output");
        assert!(
            got == want,
            "seed {seed}: {q} killed after {before} events writes what `weir run` writes"
        );
    }
    node.stop();
}

/// `weir job end-source` ends a paced input where it stands: the job
/// finishes with the events generated so far, each once.
#[test]
fn ending_a_generated_input_finishes_the_job_where_it_stands() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    // 100,000 events at 1,000 a second: 100 s unless ended.
    example(d, "q0", 1_000, 1);
    ok(&node.weir(d, &["job", "submit", "q0.wsql"]));
    std::thread::sleep(Duration::from_millis(1500));
    let said = ok(&node.weir(d, &["job", "end-source", "--job", "q0", "--source", "Bid"]));
    assert!(
        said.contains("ends with the events generated so far"),
        "{said}"
    );
    wait_finished(&node, d, "q0");
    let [(events, rows, dead)] = sources(&node, d, "q0")[..] else {
        panic!("one source");
    };
    assert!(0 < events && events < EVENTS, "ended after {events} events");
    assert_eq!(dead, 0);
    let generator = Generator::new(Config {
        events: EVENTS,
        rate: 1_000,
        ..Config::default()
    })
    .expect("generator");
    let want = generator.batch(Kind::Bid, 0..events);
    let got = std::fs::read_to_string(d.join("out/q0.jsonl")).expect("output");
    assert_eq!(rows as usize, want.num_rows());
    assert_eq!(got.lines().count(), want.num_rows(), "each bid once");
    node.stop();
}

/// `weir bench nexmark` runs each query of a directory at the asked size,
/// offline and on a node, writes none of their outputs, and reports what it
/// measured; a query or size it cannot run is refused, saying why.
#[test]
fn weir_bench_nexmark_measures_each_query_offline_and_on_a_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let queries = d.join("queries");
    std::fs::create_dir_all(&queries).expect("dir");
    for q in ["q0", "q5"] {
        let text =
            std::fs::read_to_string(super::repo_root().join(format!("examples/nexmark/{q}.wsql")))
                .expect("example");
        write(&queries, &format!("{q}.wsql"), &text);
    }
    let out = weir(
        &[
            "bench", "nexmark", "--dir", "queries", "--events", "20K", "--node", "--json",
        ],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = v.as_array().expect("an array");
    let runs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["query"].as_str().unwrap(), r["mode"].as_str().unwrap()))
        .collect();
    assert_eq!(
        runs,
        [
            ("q0", "offline"),
            ("q0", "node"),
            ("q5", "offline"),
            ("q5", "node")
        ]
    );
    for r in rows {
        assert_eq!(r["events"], 20_000, "{r}");
        let cpu = r["cpu_seconds"].as_f64().unwrap();
        let wall = r["wall_seconds"].as_f64().unwrap();
        assert!(cpu > 0.0 && wall > 0.0, "{r}");
        let rate = r["events_per_cpu_second"].as_f64().unwrap();
        assert!((rate * cpu - 20_000.0).abs() < 1.0, "{r}");
        assert!(r["peak_memory_bytes"].as_u64().unwrap() > 1 << 20, "{r}");
    }
    assert!(
        !queries.join("out").exists(),
        "outputs are discarded, the queries' directory is left as it was"
    );
    let listed: Vec<_> = std::fs::read_dir(&queries).expect("dir").collect();
    assert_eq!(listed.len(), 2, "no script left behind");
    let table = weir(
        &[
            "bench", "nexmark", "--dir", "queries", "--query", "q5", "--events", "5000",
        ],
        d,
    );
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("query      mode"), "{text}");
    assert!(text.contains("q5         offline"), "{text}");
    for (args, want) in [
        (
            vec!["--query", "q9"],
            "no query `q9`: queries/q9.wsql does not exist (queries: q0, q5)",
        ),
        (vec!["--events", "ten"], "`ten` is not a positive count"),
    ] {
        let mut all = vec!["bench", "nexmark", "--dir", "queries"];
        all.extend(args);
        let out = weir(&all, d);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
    }
}
