//! Hot patching on a real node: `weir udf deploy / history / rollback` while a
//! job runs, switches at recorded input positions, `kill -9` around patches,
//! refused modules and trap rollback (runtime filters are in filters.rs). Every row of the output says which
//! module version made it, and the expected output is computed from the
//! input and the stage's history, so each row must have been produced by the
//! version in effect at its input position, exactly once.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use weir::testkit::udf_component;
use weir::wasm::ModuleVersion;

use super::filters::{filter_args, test_filter_drops};
use super::jobs::{Rng, crash_seed, wait_finished};
use super::node::{Node, cluster, ok, write};
use super::stderr;

pub(super) const CHUNK: usize = 100;

/// One entry of a stage's history: version, input position, why.
pub(super) type Entry = (String, u64, String);
/// The amount that makes `tally_v3` trap.
pub(super) const POISON: i64 = 777;

/// Sale `i`: users cycle through seven, amounts 1..=100 (never the poison).
pub(super) fn sale(i: usize) -> (String, i64) {
    (format!("u{}", i % 7), ((i * 37) % 100) as i64 + 1)
}

pub(super) fn chunk_text(k: usize, poison_at: Option<usize>) -> String {
    (k * CHUNK..(k + 1) * CHUNK)
        .map(|i| {
            let (user, mut amount) = sale(i);
            if poison_at == Some(i) {
                amount = POISON;
            }
            format!(
                "{{\"ts\":{},\"user\":\"{user}\",\"amount\":{amount}}}\n",
                1_700_000_000_000_000u64 + i as u64 * 1_000
            )
        })
        .collect()
}

/// A node with stream `sales` and job `tally` (reducer `tally_v1`, params
/// `factor = 3`, `poison`, and `extra` job-file lines) running on it.
pub(super) fn start(d: &Path, extra: &str) -> Node {
    start_with(d, "tally_v1", extra)
}

/// Like [`start`], with the job's stage running `component` first.
pub(super) fn start_with(d: &Path, component: &str, extra: &str) -> Node {
    start_checkpointing(d, component, 2, extra)
}

/// Like [`start_with`], the stage checkpointing every `every` CTIs.
pub(super) fn start_checkpointing(d: &Path, component: &str, every: u64, extra: &str) -> Node {
    let node = Node::start(d, "data").expect("node starts");
    ok(&node.weir(
        d,
        &[
            "stream",
            "create",
            "sales",
            "--columns",
            "ts:int64,user:utf8,amount:int64",
            "--time",
            "ts",
        ],
    ));
    write(
        d,
        "job.toml",
        &format!(
            r#"name = "tally"

[[sources]]
name = "sales"
stream = "sales"
cti_every = 50

[[stages]]
name = "tally"
input = "sales"
kind = "reducer"
key = "user"
component = "{}"
params = {{ factor = 3, poison = {POISON} }}
checkpoint_every = {every}
{extra}

[[sinks]]
input = "tally"
path = "out/tally.jsonl"
"#,
            udf_component(component).display()
        ),
    );
    ok(&node.weir(d, &["job", "submit", "job.toml"]));
    node
}

pub(super) fn ingest(addr: &str, d: &Path, k: usize, poison_at: Option<usize>) -> Output {
    let file = format!("chunk-{k}.jsonl");
    write(d, &file, &chunk_text(k, poison_at));
    super::weir(&["ingest", "sales", &file, "--node", addr], d)
}

/// `weir udf ARGS` for stage `tally` of job `tally`, run beside `during`
/// (the next ingest, whose CTIs give the patch its switch point).
pub(super) fn patch_during(node: &Node, d: &Path, args: &[&str], during: impl FnOnce()) -> Output {
    let mut all = vec!["udf"];
    all.extend_from_slice(args);
    change_during(node, d, &all, during)
}

/// `weir ARGS` (a change to stage `tally` of job `tally`), run beside `during`.
pub(super) fn change_during(node: &Node, d: &Path, args: &[&str], during: impl FnOnce()) -> Output {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--job", "tally", "--stage", "tally", "--node", &node.addr]);
    let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    let dir = d.to_path_buf();
    let cli = std::thread::spawn(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        super::weir(&args, &dir)
    });
    // The input comes once the node has validated the patch and scheduled it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cli.is_finished() && std::time::Instant::now() < deadline {
        let status = ok(&node.weir(d, &["job", "status", "tally", "--json"]));
        if status.contains("\"pending\": true") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    during();
    cli.join().expect("udf thread")
}

/// `(version, input position)` of every entry of the stage's history.
pub(super) fn history(node: &Node, d: &Path) -> Vec<(String, u64, String)> {
    let out = ok(&node.weir(
        d,
        &[
            "udf", "history", "--job", "tally", "--stage", "tally", "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("history is JSON");
    v.as_array()
        .expect("a list")
        .iter()
        .map(|h| {
            (
                h["version"].as_str().unwrap_or_default().to_string(),
                h["position"].as_u64().unwrap_or(u64::MAX),
                h["why"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub(super) fn version_of(name: &str) -> String {
    let bytes = std::fs::read(udf_component(name)).expect("component");
    ModuleVersion::of(&bytes).hex().to_string()
}

/// The output the job must write for `rows` input rows when each version of
/// the history ran from its position on, and each runtime filter dropped the
/// rows it matches (`drops(filter, user, amount)`) while it was in effect:
/// `(user, count, total, version)`.
pub(super) fn expected(
    rows: usize,
    poisons: &[usize],
    history: &[(String, u64, String)],
    drops: &dyn Fn(&str, &str, i64) -> bool,
) -> Vec<(String, i64, i64, String)> {
    expected_at(rows, poisons, &|i| (history, i as u64), drops)
}

/// Like [`expected`], where `at(i)` gives the history of the vertex that
/// ran input row `i` and the row's position in that vertex's input (a
/// parallel stage's copies each have their own).
pub(super) fn expected_at<'h>(
    rows: usize,
    poisons: &[usize],
    at: &dyn Fn(usize) -> (&'h [Entry], u64),
    drops: &dyn Fn(&str, &str, i64) -> bool,
) -> Vec<(String, i64, i64, String)> {
    let label: HashMap<String, &str> = ["tally_v1", "tally_v2", "tally_v3", "tally_v4"]
        .iter()
        .map(|n| (version_of(n), &n[6..]))
        .collect();
    let mut totals: HashMap<String, (i64, i64)> = HashMap::new();
    let mut out = Vec::new();
    for i in 0..rows {
        let (history, position) = at(i);
        let version = history
            .iter()
            .rfind(|h| h.1 <= position)
            .map(|h| label[&h.0])
            .expect("a version from position 0");
        let (user, mut amount) = sale(i);
        if poisons.contains(&i) {
            amount = POISON;
        }
        let mut active: Vec<&str> = Vec::new();
        for h in history.iter().filter(|h| h.1 <= position) {
            if let Some(f) = h.2.strip_prefix("filter added: ") {
                active.push(f);
            } else if let Some(f) = h.2.strip_prefix("filter removed: ") {
                active.retain(|a| *a != f);
            }
        }
        if active.iter().any(|f| drops(f, &user, amount)) {
            continue;
        }
        let t = totals.entry(user.clone()).or_default();
        t.0 += 1;
        t.1 += if version == "v2" { amount * 3 } else { amount };
        out.push((user, t.0, t.1, version.to_string()));
    }
    out
}

pub(super) fn output(d: &Path) -> Vec<(String, i64, i64, String)> {
    let text = std::fs::read_to_string(d.join("out/tally.jsonl")).expect("sink file");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            (
                v["user"].as_str().unwrap_or_default().to_string(),
                v["count"].as_i64().unwrap_or(-1),
                v["total"].as_i64().unwrap_or(-1),
                v["version"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

pub(super) fn assert_output(d: &Path, rows: usize, poisons: &[usize], h: &[(String, u64, String)]) {
    assert_filtered_output(d, rows, poisons, h, &|f, _, _| {
        panic!("no filter expected: {f}")
    });
}

pub(super) fn assert_filtered_output(
    d: &Path,
    rows: usize,
    poisons: &[usize],
    h: &[(String, u64, String)],
    drops: &dyn Fn(&str, &str, i64) -> bool,
) {
    let want = expected(rows, poisons, h, drops);
    let got = output(d);
    if let Some(i) = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i)) {
        panic!(
            "output row {i} is {:?} but the history {h:?} makes it {:?} ({} rows written, {} expected)",
            got.get(i),
            want.get(i),
            got.len(),
            want.len()
        );
    }
}

pub(super) fn position_in(text: &str) -> u64 {
    text.split("in effect from input position ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no switch position in: {text}"))
}

#[test]
fn deploys_and_rollbacks_switch_at_recorded_positions_across_kill_9s() {
    let seed = crash_seed("patch crash test");
    let mut rng = Rng(seed);
    let dir = cluster();
    let d = dir.path();
    let mut node = start(d, "");
    let v2 = udf_component("tally_v2").display().to_string();
    let h1 = version_of("tally_v1");
    let chunks = 16;
    let mut reported = Vec::new();
    for k in 0..chunks {
        let addr = node.addr.clone();
        let feed = || {
            let out = ingest(&addr, d, k, None);
            assert!(out.status.success(), "seed {seed}: {}", stderr(&out));
        };
        let patch: Option<Vec<&str>> = match k {
            3 => Some(vec!["deploy", &v2]),
            6 => Some(vec!["rollback"]),
            9 => Some(vec!["deploy", &v2]),
            12 => Some(vec!["rollback", "--to", &h1[..10]]),
            _ => None,
        };
        match patch {
            Some(args) => {
                let out = patch_during(&node, d, &args, feed);
                let text = ok(&out);
                let position = position_in(&text);
                assert!(
                    position >= (k * CHUNK) as u64 && position <= ((k + 1) * CHUNK) as u64,
                    "seed {seed}: the patch during chunk {k} took effect at {position}: {text}"
                );
                reported.push(position);
            }
            None => feed(),
        }
        // Kill right after every patch, and at random otherwise (often while
        // the job still works through what was just ingested).
        if patch_happened(k) || rng.below(3) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(rng.below(80)));
            node.kill9();
            node = Node::start(d, "data").expect("node restarts after kill -9");
            // Sometimes again, while it replays.
            if rng.below(2) == 0 {
                std::thread::sleep(std::time::Duration::from_millis(rng.below(150)));
                node.kill9();
                node = Node::start(d, "data").expect("node restarts after kill -9");
            }
            let h = history(&node, d);
            let positions: Vec<u64> = h.iter().skip(1).map(|e| e.1).collect();
            assert_eq!(
                positions, reported,
                "seed {seed}: every acknowledged patch survives the crash"
            );
        }
    }
    ok(&node.weir(d, &["stream", "close", "sales"]));
    wait_finished(&node, d, "tally");
    let h = history(&node, d);
    let versions: Vec<&str> = h.iter().map(|e| e.0.as_str()).collect();
    let h2 = version_of("tally_v2");
    assert_eq!(
        versions,
        vec![&h1, &h2, &h1, &h2, &h1],
        "seed {seed}: {h:?}"
    );
    assert_eq!(
        h.iter().map(|e| e.2.as_str()).collect::<Vec<_>>(),
        vec![
            "submitted with the job",
            "deploy",
            "rollback",
            "deploy",
            "rollback"
        ]
    );
    assert_output(d, chunks * CHUNK, &[], &h);
    let text = ok(&node.weir(d, &["udf", "history", "--job", "tally", "--stage", "tally"]));
    assert!(
        text.contains(&h1[..12]) && text.contains("* ") && text.contains("rollback"),
        "{text}"
    );
}

fn patch_happened(k: usize) -> bool {
    matches!(k, 3 | 6 | 9 | 12)
}

#[test]
fn a_refused_module_leaves_the_running_job_untouched() {
    let dir = cluster();
    let d = dir.path();
    let node = start(d, "");
    let out = ingest(&node.addr, d, 0, None);
    assert!(out.status.success(), "{}", stderr(&out));
    write(d, "not-wasm.wasm", "hello");
    let deploy = |file: &str, stage: &str| {
        node.weir(
            d,
            &["udf", "deploy", "--job", "tally", "--stage", stage, file],
        )
    };
    let cases = [
        (
            udf_component("forbidden_import").display().to_string(),
            "tally",
            "imports `wasi:filesystem",
        ),
        (
            udf_component("bot_filter").display().to_string(),
            "tally",
            "the stage is a reducer but",
        ),
        (
            udf_component("user_stats").display().to_string(),
            "tally",
            "but its input has no such column",
        ),
        (
            "not-wasm.wasm".to_string(),
            "tally",
            "is not a WebAssembly component",
        ),
        (
            udf_component("tally_v1").display().to_string(),
            "tally",
            "already runs it",
        ),
        (
            udf_component("tally_v2").display().to_string(),
            "nope",
            "has no stage `nope`",
        ),
    ];
    for (file, stage, says) in cases {
        let out = deploy(&file, stage);
        let text = stderr(&out);
        assert!(!out.status.success(), "{file} was accepted");
        assert!(text.contains(says), "deploying {file}: {text}");
    }
    let out = node.weir(
        d,
        &["udf", "rollback", "--job", "tally", "--stage", "tally"],
    );
    assert!(
        stderr(&out).contains("nothing to roll back to"),
        "{}",
        stderr(&out)
    );
    let h = history(&node, d);
    assert_eq!(h.len(), 1, "nothing was patched: {h:?}");
    let out = ingest(&node.addr, d, 1, None);
    assert!(out.status.success(), "{}", stderr(&out));
    ok(&node.weir(d, &["stream", "close", "sales"]));
    wait_finished(&node, d, "tally");
    assert_output(d, 2 * CHUNK, &[], &h);
}

#[test]
fn init_refusing_the_stage_parameters_is_a_refusal() {
    let dir = cluster();
    let d = dir.path();
    // A second stage whose parameters version 2 refuses (factor 0).
    let node = start(
        d,
        r#"
[[stages]]
name = "strict"
input = "sales"
kind = "reducer"
key = "user"
component = "TALLY"
params = { factor = 0 }
"#
        .replace("TALLY", &udf_component("tally_v1").display().to_string())
        .as_str(),
    );
    let out = node.weir(
        d,
        &[
            "udf",
            "deploy",
            "--job",
            "tally",
            "--stage",
            "strict",
            &udf_component("tally_v2").display().to_string(),
        ],
    );
    let text = stderr(&out);
    assert!(!out.status.success(), "accepted");
    assert!(
        text.contains("refused its parameters in init")
            && text.contains("factor must be at least 1"),
        "{text}"
    );
    let status = ok(&node.weir(d, &["job", "status", "tally", "--json"]));
    assert!(status.contains("\"running\""), "{status}");
}

#[test]
fn a_trapping_version_is_rolled_back_at_the_trapping_batch() {
    let dir = cluster();
    let d = dir.path();
    let mut node = start(d, "on_trap = \"rollback\"");
    let poison = 3 * CHUNK + 42;
    for k in 0..2 {
        let out = ingest(&node.addr, d, k, None);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let v3 = udf_component("tally_v3").display().to_string();
    let addr = node.addr.clone();
    let text = ok(&patch_during(
        &node,
        d,
        &["deploy", &v3, "--shadow", "150"],
        || {
            let out = ingest(&addr, d, 2, None);
            assert!(out.status.success(), "{}", stderr(&out));
        },
    ));
    // Every output row names its version, so the shadow run sees all differ.
    let shadowed = text
        .split("shadow run on the last ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no shadow report: {text}"));
    assert!(shadowed > 0 && shadowed <= 150, "{text}");
    assert!(
        text.contains(&format!("{shadowed} output rows differ (running version wrote {shadowed}, new version {shadowed})")),
        "{text}"
    );
    let deployed = position_in(&text);
    for k in 3..5 {
        let out = ingest(&node.addr, d, k, Some(poison));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Replay across both patches after a crash.
    node.kill9();
    node = Node::start(d, "data").expect("node restarts");
    ok(&node.weir(d, &["stream", "close", "sales"]));
    wait_finished(&node, d, "tally");
    let h = history(&node, d);
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!(
        (h[1].0.as_str(), h[1].1),
        (version_of("tally_v3").as_str(), deployed)
    );
    assert_eq!(h[2].0, version_of("tally_v1"));
    assert!(
        h[2].2.contains("rollback on trap") && h[2].2.contains("poison amount 777"),
        "{h:?}"
    );
    // The trapping batch (the chunk holding the poison row) reran on version 1.
    assert_eq!(h[2].1, (3 * CHUNK) as u64, "{h:?}");
    assert_output(d, 5 * CHUNK, &[poison], &h);
}

#[test]
fn a_version_with_migrate_converts_the_state_it_takes_over() {
    let dir = cluster();
    let d = dir.path();
    let mut node = start(d, "");
    let feed = |addr: &str, k: usize| {
        let out = ingest(addr, d, k, None);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    feed(&node.addr, 0);
    feed(&node.addr, 1);
    // tally_v4 keeps its state in another layout and exports `migrate`.
    let v4 = udf_component("tally_v4").display().to_string();
    let inspect = ok(&super::weir(&["udf", "inspect", &v4], d));
    assert!(inspect.contains("weir:udf/migrating-reducer"), "{inspect}");
    let addr = node.addr.clone();
    let text = ok(&patch_during(&node, d, &["deploy", &v4], || feed(&addr, 2)));
    let at = position_in(&text);
    // The replay after the crash switches and migrates again, at the same row.
    node.kill9();
    node = Node::start(d, "data").expect("node restarts after kill -9");
    feed(&node.addr, 3);
    ok(&node.weir(d, &["stream", "close", "sales"]));
    wait_finished(&node, d, "tally");
    let h = history(&node, d);
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(
        (h[1].0.as_str(), h[1].1),
        (version_of("tally_v4").as_str(), at)
    );
    // Counts and totals carry on across the switch: the state was converted.
    assert_output(d, 4 * CHUNK, &[], &h);
}

#[test]
fn a_failing_migrate_refuses_the_switch_and_keeps_the_state() {
    let dir = cluster();
    let d = dir.path();
    let node = start(d, "");
    let out = ingest(&node.addr, d, 0, None);
    assert!(out.status.success(), "{}", stderr(&out));
    // A refund (between chunks 0 and 1 in event time) makes u1's total
    // negative, which tally_v4's migration refuses.
    write(
        d,
        "refund.jsonl",
        "{\"ts\":1700000000099500,\"user\":\"u1\",\"amount\":-100000}\n",
    );
    let out = super::weir(
        &["ingest", "sales", "refund.jsonl", "--node", &node.addr],
        d,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v4 = udf_component("tally_v4").display().to_string();
    let addr = node.addr.clone();
    let out = patch_during(&node, d, &["deploy", &v4], || {
        let out = ingest(&addr, d, 1, None);
        assert!(out.status.success(), "{}", stderr(&out));
    });
    let e = stderr(&out);
    assert!(
        !out.status.success()
            && e.contains("could not switch")
            && e.contains("migrate")
            && e.contains("user `u1` has a negative total"),
        "{e}"
    );
    let status = ok(&node.weir(d, &["job", "status", "tally"]));
    assert!(
        status.contains("patch refused") && status.contains("(0 patches)"),
        "{status}"
    );
    ok(&node.weir(d, &["stream", "close", "sales"]));
    wait_finished(&node, d, "tally");
    assert_eq!(history(&node, d).len(), 1);
    // Version 1 ran on, on the state as it was: every row is v1's, and u1's
    // count and total carry the refund.
    let rows = output(d);
    assert_eq!(rows.len(), 2 * CHUNK + 1);
    assert!(rows.iter().all(|r| r.3 == "v1"), "{rows:?}");
    let u1: Vec<_> = rows.iter().filter(|r| r.0 == "u1").collect();
    let (count, total) = (u1.len() as i64, u1.last().map_or(0, |r| r.2));
    let want: i64 = (0..2 * CHUNK)
        .map(sale)
        .filter(|(u, _)| u == "u1")
        .map(|(_, a)| a)
        .sum::<i64>()
        - 100_000;
    assert_eq!((u1.last().map(|r| r.1), total), (Some(count), want));
}

#[test]
fn changes_accepted_without_input_are_durable_and_all_apply_in_order() {
    let dir = cluster();
    let d = dir.path();
    let mut node = start(d, "");
    let feed = |addr: &str, k: usize| {
        let out = ingest(addr, d, k, None);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    feed(&node.addr, 0);
    let first = ok(&change_during(
        &node,
        d,
        &filter_args(&["add", "amount = 777"]),
        || feed(&node.addr, 1),
    ));
    let added_at = position_in(&first);

    // No input arrives: each change is accepted, queued and acknowledged.
    let v2 = udf_component("tally_v2").display().to_string();
    for args in [
        filter_args(&["remove", "amount = 777"]),
        filter_args(&["add", "user = 'u3' AND amount < 50"]),
        vec!["udf", "deploy", &v2],
    ] {
        let mut all = args.clone();
        all.extend_from_slice(&["--job", "tally", "--stage", "tally"]);
        let text = ok(&node.weir(d, &all));
        assert!(text.contains("queued durably"), "{args:?}: {text}");
    }
    // A change that contradicts the queue is refused at once.
    let out = node.weir(
        d,
        &[
            "job",
            "filter",
            "remove",
            "amount = 777",
            "--job",
            "tally",
            "--stage",
            "tally",
        ],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("has no filter `amount = 777`"),
        "{}",
        stderr(&out)
    );
    node.kill9();
    node = Node::start(d, "data").expect("node restarts after kill -9");
    feed(&node.addr, 2);
    ok(&node.weir(d, &["stream", "close", "sales"]));
    wait_finished(&node, d, "tally");

    let h = history(&node, d);
    let whys: Vec<&str> = h.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        whys,
        [
            "submitted with the job",
            "filter added: amount = 777",
            "filter removed: amount = 777",
            "filter added: user = 'u3' AND amount < 50",
            "deploy",
        ],
        "every accepted change, in the order accepted: {h:?}"
    );
    assert_eq!(h[1].1, added_at);
    // The queued ones take effect together at the first CTI after the restart.
    let at = h[2].1;
    assert!((2 * CHUNK as u64..=3 * CHUNK as u64).contains(&at), "{h:?}");
    assert!(h[3].1 == at && h[4].1 == at, "{h:?}");
    assert_eq!(h[4].0, version_of("tally_v2"));
    assert_filtered_output(d, 3 * CHUNK, &[], &h, &test_filter_drops);
}
