//! `weir udf replay` on a real node: a candidate version runs next to the
//! stage's running one over the input the stage really saw, from its latest
//! checkpoint's state, and the rows that differ are reported; the job itself
//! is left as it was.

use std::path::Path;
use std::time::{Duration, Instant};

use weir::testkit::udf_component;

use super::node::{Node, cluster, ok, write};
use super::patch::{POISON, chunk_text, ingest, start_checkpointing, version_of};
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

/// A stage that merges two inputs and recovers by replay keeps no state:
/// a replay of it starts where its recovery would (its oldest kept marker,
/// on every input), with empty state, and reads both inputs.
#[test]
fn replay_runs_a_stage_that_merges_inputs_and_recovers_by_replay() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    for stream in ["sales", "more"] {
        ok(&node.weir(
            d,
            &[
                "stream",
                "create",
                stream,
                "--columns",
                "ts:int64,user:utf8,amount:int64",
                "--time",
                "ts",
            ],
        ));
    }
    write(
        d,
        "job.toml",
        &format!(
            r#"name = "tally"

[[sources]]
name = "sales"
stream = "sales"
cti_every = 50

[[sources]]
name = "more"
stream = "more"
cti_every = 50

[[stages]]
name = "tally"
inputs = ["sales", "more"]
kind = "reducer"
key = "user"
component = "{}"
params = {{ factor = 3, poison = {POISON} }}
recovery = "replay"
replay_window = 2

[[sinks]]
input = "tally"
path = "out/tally.jsonl"
"#,
            udf_component("tally_v1").display()
        ),
    );
    ok(&node.weir(d, &["job", "submit", "job.toml"]));
    for k in 0..4 {
        for stream in ["sales", "more"] {
            let file = format!("{stream}-{k}.jsonl");
            write(d, &file, &chunk_text(k, None));
            ok(&node.weir(d, &["ingest", stream, &file]));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = || {
        std::fs::read_to_string(d.join("out/tally.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // The merge holds back the rows after the inputs' last common CTI.
    while lines() < 790 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(lines() >= 790, "the job wrote the rows of both inputs");

    let same = report(&replay(&node, d, "tally_v1", &[]));
    let inputs = same["inputs"].as_array().expect("inputs");
    let names: Vec<&str> = inputs.iter().filter_map(|i| i[0].as_str()).collect();
    assert_eq!(names, ["sales", "more"], "{same}");
    for input in inputs {
        let (checkpoint, from, to) = (input[1].as_u64(), input[2].as_u64(), input[3].as_u64());
        assert_eq!(checkpoint, from, "from the kept marker: {same}");
        assert!(
            from > Some(0) && from < to,
            "a window of each input: {same}"
        );
    }
    let rows = same["rows"].as_u64().expect("rows");
    assert!(
        rows > 100 && rows < 800,
        "both inputs, from the marker: {same}"
    );
    assert_eq!(same["running_rows"].as_u64(), Some(rows), "{same}");
    assert_eq!(same["differ"].as_u64(), Some(0), "{same}");

    let v2 = report(&replay(&node, d, "tally_v2", &[]));
    assert_eq!(v2["differ"].as_u64(), Some(rows), "{v2}");

    let out = replay(&node, d, "tally_v1", &["--from", "0"]);
    assert!(!out.status.success(), "seqs of one input are refused");
    assert!(
        stderr(&out).contains("the stage merges 2 (sales, more)"),
        "{}",
        stderr(&out)
    );
    node.stop();
}

/// On a terminal `weir udf dev` takes one key, no Enter: `q` alone quits
/// (here after a round whose build failed, as after any round).
#[test]
fn dev_on_a_terminal_quits_on_one_key() {
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};

    let dir = cluster();
    let d = dir.path();
    std::fs::create_dir_all(d.join("broken")).expect("crate dir");
    write(d, "broken/Cargo.toml", "this is not a manifest");
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills in two descriptors, each owned once below.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "a pseudo-terminal");
    // SAFETY: both are open descriptors that nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "udf",
            "dev",
            "--job",
            "tally",
            "--stage",
            "tally",
            "broken",
            "--no-test",
        ])
        .current_dir(d)
        .stdin(std::process::Stdio::from(slave))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("weir udf dev starts");
    let mut stdout = child.stdout.take().expect("stdout");
    let (send, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = send.send(text.clone());
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = said
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_default();
        if text.contains("watching") {
            assert!(
                text.contains("r rolls the last deploy back, q quits"),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never watched: {text}");
    }
    let mut master = std::fs::File::from(master);
    master.write_all(b"q").expect("a key");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`q` without Enter did not quit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
