//! `weir udf replay` on a real node: a candidate version runs next to the
//! stage's running one over the input the stage really saw, from its latest
//! checkpoint's state, and the rows that differ are reported; the job itself
//! is left as it was.

use std::path::Path;
use std::time::{Duration, Instant};

use weir::testkit::udf_component;

use super::node::{Node, cluster, ok, write};
use super::patch::{chunk_text, ingest, start_checkpointing, version_of};
use super::stderr;

/// A node running job `tally` (reducer `tally_v1`) with a checkpoint every
/// fourth CTI, fed `chunks` chunks of 100 sales (a CTI every 50 rows).
fn tally_job(d: &Path, chunks: usize) -> Node {
    let node = start_checkpointing(d, "tally_v1", 4, "");
    for k in 0..chunks {
        ok(&ingest(&node.addr, d, k, None));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = || {
        std::fs::read_to_string(d.join("out/tally.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    while lines() < chunks * 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(lines(), chunks * 100, "the job wrote every row");
    node
}

/// A workspace in `d` holding copies of the `udfs/` crates `crates`, built
/// against this repository's SDK with `udfs/`'s lock file.
fn udf_workspace_copy(d: &Path, crates: &[&str]) -> std::path::PathBuf {
    let udfs = weir::testkit::repo_root().join("udfs");
    let root = d.join("udf-work");
    let copy = |from: &Path, to: &Path| {
        let status = std::process::Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .expect("cp");
        assert!(status.success(), "copying {}", from.display());
    };
    std::fs::create_dir_all(&root).expect("workspace dir");
    for c in crates {
        copy(&udfs.join(c).join("."), &root.join(c));
        let _ = std::fs::remove_dir_all(root.join(c).join("target"));
    }
    std::fs::copy(udfs.join("Cargo.lock"), root.join("Cargo.lock")).expect("lock file");
    let manifest = std::fs::read_to_string(udfs.join("Cargo.toml")).expect("udfs manifest");
    let start = manifest.find("members = [").expect("members");
    let end = start + manifest[start..].find(']').expect("end of members") + 1;
    let members: Vec<String> = crates.iter().map(|c| format!("\"{c}\"")).collect();
    let manifest = format!(
        "{}members = [{}]{}",
        &manifest[..start],
        members.join(", "),
        &manifest[end..]
    )
    .replace(
        "path = \"../sdk\"",
        &format!(
            "path = \"{}\"",
            weir::testkit::repo_root().join("sdk").display()
        ),
    );
    std::fs::write(root.join("Cargo.toml"), manifest).expect("manifest");
    root
}

fn replay(node: &Node, d: &Path, component: &str, extra: &[&str]) -> std::process::Output {
    let file = udf_component(component).display().to_string();
    let mut args = vec![
        "udf", "replay", "--job", "tally", "--stage", "tally", &file, "--json",
    ];
    args.extend_from_slice(extra);
    node.weir(d, &args)
}

fn report(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("the report is JSON")
}

#[test]
fn replay_compares_a_candidate_with_the_running_version_from_its_checkpoint() {
    let dir = cluster();
    let d = dir.path();
    let node = tally_job(d, 5);
    let written = std::fs::read_to_string(d.join("out/tally.jsonl")).expect("output");

    // The running version itself: the same rows, from the same state.
    let same = report(&replay(&node, d, "tally_v1", &[]));
    let rows = same["rows"].as_u64().expect("rows");
    let checkpoint = same["checkpoint"].as_u64().expect("checkpoint");
    assert!(checkpoint > 0, "the stage checkpointed: {same}");
    assert!(rows > 0 && rows < 500, "from the checkpoint on: {same}");
    assert_eq!(same["running_rows"].as_u64(), Some(rows), "{same}");
    assert_eq!(same["candidate_rows"].as_u64(), Some(rows), "{same}");
    assert_eq!(same["differ"].as_u64(), Some(0), "{same}");
    assert_eq!(
        same["running"].as_str(),
        Some(version_of("tally_v1").as_str())
    );
    let totals = |line: &str| -> (String, i64, i64) {
        let v: serde_json::Value = serde_json::from_str(line).expect("row");
        (
            v["user"].as_str().unwrap_or_default().to_string(),
            v["count"].as_i64().unwrap_or(-1),
            v["total"].as_i64().unwrap_or(-1),
        )
    };

    // Version 2 counts amounts three times: every row differs, and the
    // sample shows both versions' rows.
    let v2 = report(&replay(&node, d, "tally_v2", &[]));
    assert_eq!(v2["rows"].as_u64(), Some(rows), "{v2}");
    assert_eq!(v2["differ"].as_u64(), Some(rows), "{v2}");
    let sample = &v2["samples"][0];
    let (running, candidate) = (
        sample[1].as_str().expect("running row"),
        sample[2].as_str().expect("candidate row"),
    );
    assert!(running.contains("\"version\":\"v1\""), "{running}");
    assert!(candidate.contains("\"version\":\"v2\""), "{candidate}");
    let (user, count, total) = totals(running);
    let (c_user, c_count, c_total) = totals(candidate);
    assert_eq!((&user, count), (&c_user, c_count), "one key, one count");
    assert!(c_total > total, "{running} / {candidate}");
    // The running side's rows are rows the job wrote, carrying the totals
    // of the checkpoint's state (from empty state a count would restart at
    // 1; after 400 sales each of the seven users has more than 50).
    assert!(
        written
            .lines()
            .any(|l| totals(l) == (user.clone(), count, total)),
        "{running} is a row the job wrote"
    );
    assert!(
        count > 50,
        "the replay starts from the checkpoint's state: {running}"
    );

    // Before the checkpoint there is no state to start from.
    let out = replay(&node, d, "tally_v1", &["--from", "0"]);
    assert!(
        !out.status.success(),
        "a replay before the checkpoint is refused"
    );
    assert!(
        stderr(&out).contains(&format!(
            "the stage's state is kept as of input seq {checkpoint} (its latest checkpoint)"
        )),
        "{}",
        stderr(&out)
    );

    // Nothing of the job changed: no new version, no new output.
    let history = ok(&node.weir(
        d,
        &[
            "udf", "history", "--job", "tally", "--stage", "tally", "--json",
        ],
    ));
    let versions: serde_json::Value = serde_json::from_str(&history).expect("JSON");
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(
        std::fs::read_to_string(d.join("out/tally.jsonl")).expect("output"),
        written
    );

    // `weir udf dev --once --yes` on the crate of version 2 (a copy, so the
    // components other tests read stay untouched): it builds, runs the
    // crate's tests, shows the replay and deploys; the stage switches at its
    // next CTI.
    let crate_dir = udf_workspace_copy(d, &["tally_common", "tally_v2"]).join("tally_v2");
    let out = node.weir(
        d,
        &[
            "udf",
            "dev",
            "--job",
            "tally",
            "--stage",
            "tally",
            &crate_dir.display().to_string(),
            "--once",
            "--yes",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}\n{}", stderr(&out));
    assert!(said.contains("tests passed"), "{said}");
    assert!(
        said.contains(&format!("{rows} output rows differ")),
        "{said}"
    );
    write(d, "chunk-5.jsonl", &chunk_text(5, None));
    ok(&node.weir(d, &["ingest", "sales", "chunk-5.jsonl"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let v2 = version_of("tally_v2");
    loop {
        let history = ok(&node.weir(
            d,
            &[
                "udf", "history", "--job", "tally", "--stage", "tally", "--json",
            ],
        ));
        if history.contains(&v2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "version 2 never took effect: {history}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    node.stop();
}
