//! One execution path: every example job, run offline (`weir run`) and on a
//! node over the same input, writes the same bytes, whatever the batch size
//! and thread count offline.

use std::path::Path;

use weir::testkit::{repo_root, udf_component};

use super::jobs::wait_finished;
use super::node::{Node, cluster, ok, write};
use super::{stderr, weir};

/// Copies example `name` (its job file and data) into `dir`, with its
/// components named by absolute path; returns the job file's text.
fn example(name: &str, dir: &Path) -> String {
    let from = repo_root().join("examples").join(name);
    let data = from.join("data");
    if data.is_dir() {
        std::fs::create_dir_all(dir.join("data")).expect("mkdir");
        for entry in std::fs::read_dir(&data).expect("data dir") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.join("data").join(entry.file_name())).expect("copy");
        }
    }
    let mut text = std::fs::read_to_string(from.join("job.toml")).expect("job file");
    for udf in [
        "bot_filter",
        "user_stats",
        "to_eur",
        "price_band",
        "running_sum",
    ] {
        text = text.replace(
            &format!("../../udfs/target/wasm32-wasip2/release/{udf}.wasm"),
            &udf_component(udf).display().to_string(),
        );
    }
    text
}

/// The live example's job with its two ingest streams replaced by followed
/// files: a union merged by CTI and a checkpointed reducer.
fn live_over_files(dir: &Path) -> String {
    let text = example("click-fraud-live", dir);
    let clicks =
        std::fs::read_to_string(repo_root().join("examples/click-fraud/data/clicks.jsonl"))
            .expect("clicks");
    let (mut web, mut app) = (Vec::new(), Vec::new());
    for (i, line) in clicks.lines().enumerate() {
        let to = if i % 2 == 1 { &mut web } else { &mut app };
        to.push(line);
    }
    for (name, lines) in [("web", web), ("app", app)] {
        write(dir, &format!("{name}.jsonl"), &out_of_order(&lines));
    }
    let file = |name: &str| {
        format!(
            "path = \"{name}.jsonl\"\nfollow = true\nevent_time = \"ts\"\nschema = {{ ts = \"int64\", user = \"utf8\", ip = \"utf8\", agent = \"utf8\", ad = \"utf8\" }}"
        )
    };
    assert!(text.contains("checkpoint_every") && text.contains("kind = \"union\""));
    text.replace("stream = \"clicks_web\"", &file("web"))
        .replace("stream = \"clicks_app\"", &file("app"))
}

/// `lines` (in time order, ~40 ms apart) with some moved later: every 97th
/// by 10 lines (within the live example's CTI lag of 1 s, so the merge puts
/// it back in order), every 211th by 60 (late: a dead letter).
fn out_of_order(lines: &[&str]) -> String {
    let mut keyed: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let moved = match i {
                _ if i % 211 == 5 => 60,
                _ if i % 97 == 3 => 10,
                _ => 0,
            };
            (2 * (i + moved) + usize::from(moved > 0), *line)
        })
        .collect();
    keyed.sort_by_key(|(key, _)| *key);
    keyed.iter().map(|(_, line)| format!("{line}\n")).collect()
}

/// The paths of the job's file sinks.
fn sinks(text: &str) -> Vec<String> {
    let job: toml::Value = toml::from_str(text).expect("job file parses");
    job["sinks"]
        .as_array()
        .expect("sinks")
        .iter()
        .filter_map(|s| s.get("path").and_then(|p| p.as_str()).map(str::to_string))
        .collect()
}

/// The job file without its stdout sinks (a node has no terminal).
fn without_stdout(text: &str) -> String {
    text.split("[[sinks]]")
        .filter(|part| !part.contains("stdout = true"))
        .collect::<Vec<_>>()
        .join("[[sinks]]")
}

fn read(dir: &Path, path: &str) -> String {
    std::fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The example's job file, written into `dir` with what it reads.
fn job_in(name: &str, dir: &Path) -> String {
    match name {
        "click-fraud-live" => live_over_files(dir),
        _ => example(name, dir),
    }
}

#[test]
fn every_example_writes_the_same_bytes_offline_and_on_a_node() {
    for name in ["click-fraud", "bids", "click-fraud-live"] {
        // Offline, at several batch sizes and thread counts.
        let mut offline: Option<Vec<String>> = None;
        for (batch, threads) in [("1024", "2"), ("7", "1"), ("333", "3")] {
            let dir = tempfile::tempdir().expect("tempdir");
            let text = job_in(name, dir.path());
            write(dir.path(), "job.toml", &text);
            let args = [
                "run",
                "job.toml",
                "--quiet",
                "--batch-size",
                batch,
                "--threads",
                threads,
            ];
            let out = weir(&args, dir.path());
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            let outputs: Vec<String> = sinks(&text).iter().map(|p| read(dir.path(), p)).collect();
            assert!(
                outputs.iter().all(|o| o.lines().count() > 10),
                "{name}: every sink has output"
            );
            match &offline {
                None => offline = Some(outputs),
                Some(first) => assert!(
                    *first == outputs,
                    "{name}: batch size {batch} with {threads} threads writes other bytes"
                ),
            }
        }
        let offline = offline.expect("ran offline");
        let late_offline = (name == "click-fraud-live").then(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            write(dir.path(), "job.toml", &job_in(name, dir.path()));
            let out = weir(&["run", "job.toml", "--quiet"], dir.path());
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            read(dir.path(), "fraud.dead-letter.jsonl").lines().count()
        });

        // On a node: submitted, its followed files ended, run to the end.
        let dir = cluster();
        let d = dir.path();
        let text = job_in(name, d);
        write(d, "job.toml", &without_stdout(&text));
        let node = Node::start(d, "node-data").expect("node starts");
        ok(&node.weir(d, &["job", "submit", "job.toml"]));
        if name == "click-fraud-live" {
            for source in ["web", "app"] {
                let args = ["job", "end-source", "--job", "fraud", "--source", source];
                ok(&node.weir(d, &args));
            }
        }
        let job: toml::Value = toml::from_str(&text).expect("job");
        wait_finished(&node, d, job["name"].as_str().expect("name"));
        for (path, a) in sinks(&text).iter().zip(&offline) {
            let b = read(d, path);
            let differ = a.lines().zip(b.lines()).position(|(x, y)| x != y);
            assert!(
                *a == b,
                "{name}: {path} differs offline and on a node (first at line {differ:?}; {} and {} lines)",
                a.lines().count(),
                b.lines().count()
            );
        }
        if let Some(late) = late_offline {
            // The same events are late on the node: its sources' dead letters.
            let mut late_online = 0;
            for source in ["web", "app"] {
                let stream = format!("fraud@1.{source}.dead");
                late_online += ok(&node.weir(d, &["stream", "read", &stream]))
                    .lines()
                    .count();
            }
            assert!(late > 0, "the input has late events");
            assert_eq!(late_online, late, "late events offline and on a node");
        }
    }
}

#[test]
fn weir_run_refuses_what_only_a_node_has_and_unions_of_different_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let text = example("click-fraud-live", d);
    write(d, "job.toml", &text);
    let out = weir(&["run", "job.toml", "--quiet"], d);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("source `web` reads the ingest stream `clicks_web`, which only a node has"),
        "{e}"
    );
    assert!(!d.join("out").exists(), "nothing written");

    // A union of inputs whose columns differ names both.
    let text = live_over_files(d).replacen(
        "schema = { ts = \"int64\", user = \"utf8\", ip = \"utf8\", agent = \"utf8\", ad = \"utf8\" }",
        "schema = { ts = \"int64\", user = \"utf8\" }",
        1,
    );
    write(d, "job.toml", &text);
    let e = stderr(&weir(&["run", "job.toml", "--quiet"], d));
    assert!(
        e.contains("stage `all`: inputs `web` (") && e.contains("have different columns"),
        "{e}"
    );
}
