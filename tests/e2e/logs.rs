//! `weir udf logs` on a real node: what a stage's UDF printed, each line
//! with the module version and input position of its call, and `--follow`
//! showing lines as they come until the stage ends.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::testkit::udf_component;

use super::node::{Node, cluster, ok, write};
use super::patch::version_of;
use super::stderr;

fn items(from: i64, to: i64) -> String {
    (from..to)
        .map(|i| format!("{{\"ts\":{},\"id\":{i}}}\n", 1_000 + i))
        .collect()
}

fn wait_lines(d: &Path, n: usize) {
    wait_file_lines(d, "out/items.jsonl", n);
}

fn wait_file_lines(d: &Path, file: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = || {
        std::fs::read_to_string(d.join(file))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    while lines() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(lines(), n, "the job wrote every row of {file}");
}

#[test]
fn udf_logs_show_what_the_udf_printed_with_version_and_position() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    ok(&node.weir(
        d,
        &[
            "stream",
            "create",
            "items",
            "--columns",
            "ts:int64,id:int64",
            "--time",
            "ts",
        ],
    ));
    write(
        d,
        "job.toml",
        &format!(
            r#"name = "echo"

[[sources]]
name = "items"
stream = "items"

[[stages]]
name = "echo"
input = "items"
kind = "processor"
component = "{}"

[[stages]]
name = "double"
input = "items"
kind = "processor"
component = "{}"
on_trap = "dead-letter"

[[sinks]]
input = "echo"
path = "out/items.jsonl"

[[sinks]]
input = "double"
path = "out/doubled.jsonl"
"#,
            udf_component("chatty").display(),
            udf_component("panic_on_row").display()
        ),
    );
    ok(&node.weir(d, &["job", "submit", "job.toml"]));
    write(d, "a.jsonl", &items(0, 150));
    ok(&node.weir(d, &["ingest", "items", "a.jsonl"]));
    wait_lines(d, 150);
    wait_file_lines(d, "out/doubled.jsonl", 149);

    // `weir udf list`: per stage its version, counts, failed calls and usage.
    let list = ok(&node.weir(d, &["udf", "list", "--job", "echo", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&list).expect("JSON");
    let stage = |name: &str| {
        list.as_array()
            .and_then(|l| l.iter().find(|s| s["stage"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("stage {name} listed: {list}"))
    };
    let (echo, double) = (stage("echo"), stage("double"));
    assert_eq!(
        echo["module"].as_str(),
        Some(&version_of("chatty")[..12]),
        "{echo}"
    );
    assert_eq!(
        (echo["rows_in"].as_u64(), echo["traps"].as_u64()),
        (Some(150), Some(0)),
        "{echo}"
    );
    assert!(echo["fuel"].as_u64().unwrap_or(0) > 0, "{echo}");
    assert!(echo["memory"].as_u64().unwrap_or(0) >= 65536, "{echo}");
    assert_eq!(echo["lag"].as_u64(), Some(0), "{echo}");
    // One poison row: the batch's call and the row's own call trapped.
    assert_eq!(
        (double["dead"].as_u64(), double["traps"].as_u64()),
        (Some(1), Some(2)),
        "{double}"
    );
    let table = ok(&node.weir(d, &["udf", "list"]));
    assert!(
        table.contains("double") && table.contains("rows/s"),
        "{table}"
    );

    let module = version_of("chatty")[..12].to_string();
    let text = ok(&node.weir(d, &["udf", "logs", "--job", "echo", "--stage", "echo"]));
    assert!(
        text.contains(&format!("module {module} position 0: [stdout] row 0 ")),
        "{text}"
    );
    assert!(
        text.contains(&format!("module {module} position 0: [stderr] at row 100")),
        "the batch of 150 rows is one call at position 0: {text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("[stdout] row")).count(),
        150,
        "{text}"
    );

    let json = ok(&node.weir(
        d,
        &["udf", "logs", "--job", "echo", "--stage", "echo", "--json"],
    ));
    let seqs: Vec<u64> = json
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["seq"].as_u64().expect("seq")
        })
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());

    // --follow shows the lines of a later call and ends with the stage.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "udf", "logs", "--job", "echo", "--stage", "echo", "--follow", "--node", &node.addr,
        ])
        .current_dir(d)
        .env("WEIR_CACHE_DIR", d.join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir udf logs --follow");
    write(d, "b.jsonl", &items(150, 160));
    ok(&node.weir(d, &["ingest", "items", "b.jsonl"]));
    wait_lines(d, 160);
    ok(&node.weir(d, &["stream", "close", "items"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while follow.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = follow.try_wait().expect("wait");
    if status.is_none() {
        let _ = follow.kill();
    }
    let mut out = String::new();
    follow
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(
        status.is_some_and(|s| s.success()),
        "--follow ends with the stage: {out}"
    );
    assert!(
        out.contains(&format!("module {module} position 150: [stdout] row 150 ")),
        "{out}"
    );

    // An unknown stage is refused, naming it.
    let out = node.weir(d, &["udf", "logs", "--job", "echo", "--stage", "nope"]);
    assert!(
        !out.status.success() && stderr(&out).contains("nope"),
        "{}",
        stderr(&out)
    );
    node.stop();
}

/// What a UDF logged, its failed calls and its fuel outlive the node: after
/// `kill -9` the stage replays the input after its checkpoint, and the
/// lines, traps and fuel of those calls count once, not again.
#[test]
fn udf_logs_and_counters_survive_kill_9_once_each() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    ok(&node.weir(
        d,
        &[
            "stream",
            "create",
            "items",
            "--columns",
            "ts:int64,id:int64",
            "--time",
            "ts",
        ],
    ));
    write(
        d,
        "job.toml",
        &format!(
            r#"name = "echo"

[[sources]]
name = "items"
stream = "items"
cti_every = 100

[[stages]]
name = "echo"
input = "items"
kind = "processor"
component = "{}"

[[stages]]
name = "double"
input = "items"
kind = "processor"
component = "{}"
on_trap = "dead-letter"

[[sinks]]
input = "echo"
path = "out/items.jsonl"

[[sinks]]
input = "double"
path = "out/doubled.jsonl"
"#,
            udf_component("chatty").display(),
            udf_component("panic_on_row").display()
        ),
    );
    ok(&node.weir(d, &["job", "submit", "job.toml"]));
    // A CTI after 100 rows checkpoints both stages, after the poison row
    // (id 13) trapped; the 50 rows after it are replayed after the crash.
    write(d, "a.jsonl", &items(0, 100));
    ok(&node.weir(d, &["ingest", "items", "a.jsonl"]));
    write(d, "b.jsonl", &items(100, 150));
    ok(&node.weir(d, &["ingest", "items", "b.jsonl"]));
    wait_lines(d, 150);
    wait_file_lines(d, "out/doubled.jsonl", 149);
    let usage = |node: &Node| {
        let list = ok(&node.weir(d, &["udf", "list", "--job", "echo", "--json"]));
        let list: serde_json::Value = serde_json::from_str(&list).expect("JSON");
        let of = |name: &str, field: &str| {
            list.as_array()
                .and_then(|l| l.iter().find(|s| s["stage"] == name))
                .and_then(|s| s[field].as_u64())
                .unwrap_or(0)
        };
        (
            of("echo", "rows_in"),
            of("double", "rows_in"),
            of("double", "traps"),
            of("echo", "fuel"),
        )
    };
    let before = usage(&node);
    assert_eq!((before.0, before.1, before.2), (150, 150, 2), "{before:?}");
    let logs = |node: &Node| {
        ok(&node.weir(
            d,
            &["udf", "logs", "--job", "echo", "--stage", "echo", "--json"],
        ))
    };
    let lines = logs(&node);
    assert_eq!(
        lines.lines().filter(|l| l.contains("[stdout] row")).count(),
        150,
        "{lines}"
    );

    node.kill9();
    let node = Node::start(d, "data").expect("node restarts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let after = usage(&node);
        if (after.0, after.1) == (150, 150) || Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        (after.0, after.1, after.2),
        (before.0, before.1, before.2),
        "rows and traps count each call once"
    );
    // A replayed call runs on a fresh instance, whose first call costs a
    // little more than on a warm one; counted twice, the 50 rows after the
    // checkpoint would add a third.
    assert!(
        after.3.abs_diff(before.3) < before.3 / 20,
        "fuel counts each call once: {} then {}",
        before.3,
        after.3
    );
    let again = logs(&node);
    assert_eq!(again, lines, "the same lines, each once, after kill -9");
    let seqs: Vec<u64> = again
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["seq"].as_u64().expect("seq")
        })
        .collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    node.stop();
}
