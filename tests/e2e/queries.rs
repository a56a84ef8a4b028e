//! Query scripts end to end: the golden queries under `queries/` run with
//! `weir run` and write their expected output, the paper's example writes
//! on a node (inputs from `weir ingest`) what it writes offline, and bad
//! scripts are refused with file, line and column.

use std::path::{Path, PathBuf};

use weir::testkit::{repo_root, udf_component};

use super::jobs::wait_finished;
use super::node::{Node, cluster, ok};
use super::{stderr, weir};

/// `dir`/`name` copied into `to`.
fn copy(dir: &Path, name: &str, to: &Path) {
    std::fs::copy(dir.join(name), to.join(name)).unwrap_or_else(|e| panic!("copying {name}: {e}"));
}

/// The golden queries: `queries/NAME.wsql`, reading `queries/inputs/`,
/// writing `out/NAME.jsonl`, expected in `queries/expected/NAME.jsonl`.
fn goldens() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(repo_root().join("queries"))
        .expect("queries/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wsql"))
        .collect();
    all.sort();
    all
}

/// A golden query's name: its file's stem.
fn golden_name(script: &Path) -> String {
    script
        .file_stem()
        .expect("name")
        .to_string_lossy()
        .into_owned()
}

/// A directory holding golden query `name`, its inputs, and `components/`
/// (the UDF components built from `udfs/`).
fn golden_dir(name: &str) -> tempfile::TempDir {
    let queries = repo_root().join("queries");
    let dir = cluster();
    let d = dir.path();
    std::fs::create_dir_all(d.join("inputs")).expect("inputs dir");
    for input in std::fs::read_dir(queries.join("inputs")).expect("inputs") {
        let input = input.expect("input").file_name();
        copy(
            &queries.join("inputs"),
            &input.to_string_lossy(),
            &d.join("inputs"),
        );
    }
    copy(&queries, &format!("{name}.wsql"), d);
    let components = udf_component("bot_filter");
    std::os::unix::fs::symlink(components.parent().expect("dir"), d.join("components"))
        .expect("components link");
    dir
}

/// Golden query `name`'s outputs in `d` (`out/NAME.jsonl` and
/// `out/NAME.X.jsonl`) compared with `queries/expected/`; `how` says how
/// it ran.
fn check_golden(name: &str, d: &Path, how: &str) {
    let queries = repo_root().join("queries");
    let mut outputs = 0;
    for e in std::fs::read_dir(queries.join("expected")).expect("expected/") {
        let file = e.expect("entry").file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(name) else {
            continue;
        };
        if !(rest == ".jsonl" || rest.starts_with('.') && rest[1..].split('.').count() == 2) {
            continue;
        }
        outputs += 1;
        let got = std::fs::read_to_string(d.join("out").join(&file))
            .unwrap_or_else(|e| panic!("{name} ({how}): no output {file}: {e}"));
        let want = std::fs::read_to_string(queries.join("expected").join(&file)).expect("expected");
        assert_eq!(
            got, want,
            "{name} ({how}): out/{file} differs from queries/expected/{file}"
        );
    }
    assert!(outputs > 0, "{name}: nothing expected");
}

/// The parallelisms every golden query runs at: its output must not depend
/// on how many rVertices its keyed stages run as.
const PARALLELISMS: [&str; 3] = ["1", "2", "4"];

#[test]
fn golden_queries_write_their_expected_output() {
    let all = goldens();
    assert!(all.len() >= 5, "golden queries: {all:?}");
    for script in all {
        let name = golden_name(&script);
        for n in PARALLELISMS {
            let dir = golden_dir(&name);
            let d = dir.path();
            let script = format!("{name}.wsql");
            let out = weir(&["run", &script, "--quiet", "--parallelism", n], d);
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            check_golden(&name, d, &format!("weir run --parallelism {n}"));
        }
    }
}

/// A keyed stage at parallelism 4 runs as 4 rVertices, fed by a
/// hash-partitioned exchange and merged by CTI, and `weir explain` says so.
#[test]
fn explain_shows_a_parallel_stage_its_partitioning_and_its_merge() {
    let dir = golden_dir("tumbling_count");
    let d = dir.path();
    let out = weir(&["explain", "tumbling_count.wsql", "--parallelism", "4"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "stage PerUser <- PerUser__1: parallelism 4, partitioned: PerUser__1 by hash(user)",
        "exchange PerUser__in0p0 .. PerUser__in0p3 (one rStream per partition), copies PerUser__p0 .. PerUser__p3, merged by CTI into PerUser",
        "in canonical order",
    ] {
        assert!(plan.contains(want), "no `{want}` in:\n{plan}");
    }
    let one = weir(&["explain", "tumbling_count.wsql"], d);
    let one = String::from_utf8_lossy(&one.stdout).into_owned();
    assert!(
        one.contains("parallelism 1, no partitioning") && !one.contains("exchange"),
        "{one}"
    );
}

/// `WITH REPLICATE k` asks for k instances of each of a query's
/// rVertices (in a cluster): `weir explain` says so for every stage the
/// query made, and `weir run` on one node writes the same output.
#[test]
fn explain_shows_a_replicated_query_and_one_node_runs_it_once() {
    let dir = golden_dir("tumbling_count");
    let d = dir.path();
    let text = std::fs::read_to_string(d.join("tumbling_count.wsql")).expect("script");
    let replicated = text.replace("TUMBLING(10s);", "TUMBLING(10s) WITH REPLICATE 2;");
    assert_ne!(text, replicated);
    std::fs::write(d.join("replicated.wsql"), &replicated).expect("script");
    let out = weir(&["explain", "replicated.wsql", "--parallelism", "2"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    let replicated = plan
        .lines()
        .filter(|l| l.contains("replicated: 2 instances of each rVertex"))
        .count();
    assert!(
        replicated >= 2,
        "the aggregate's stages are replicated:\n{plan}"
    );
    let out = weir(&["explain", "tumbling_count.wsql"], d);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("replicated"));
    let out = weir(&["run", "replicated.wsql", "--quiet"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    check_golden("tumbling_count", d, "replicated, on one node");
}

/// A reducer splits by its key, a processor (when asked) by all its
/// columns, and an aggregate without group keys into partial copies and a
/// final merge; `weir explain` shows each.
#[test]
fn explain_shows_split_reducers_processors_and_global_aggregates() {
    for (name, wants) in [
        (
            "process_reduce",
            &[
                "stage Humans <- Sales: parallelism 2, partitioned: Sales by hash(_start, _end, ts, user, ip, agent, channel, eur)",
                "stage Totals <- Humans: parallelism 3, partitioned: Humans by hash(channel)",
                "reducer keyed by `channel`",
                "copies Totals__p0 .. Totals__p2, merged by CTI into Totals",
            ][..],
        ),
        (
            "global_count",
            &[
                "stage Total__1 <- Clicks: parallelism 3, partitioned: Clicks by hash(_start, _end, ts, user, url, amount, price)",
                "partial accumulators of COUNT AS count(*)",
                "stage Total <- Total__1: parallelism 1",
                "merge the partial accumulators, finish COUNT AS count(*)",
            ][..],
        ),
    ] {
        let dir = golden_dir(name);
        let d = dir.path();
        let out = weir(
            &["explain", &format!("{name}.wsql"), "--parallelism", "3"],
            d,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let plan = String::from_utf8_lossy(&out.stdout).into_owned();
        for want in wants {
            assert!(plan.contains(want), "{name}: no `{want}` in:\n{plan}");
        }
    }
}

/// Every golden query as a continuous job on a node, its inputs ingested
/// into the node's streams of their names, writes the expected output too.
#[test]
fn golden_queries_write_their_expected_output_on_a_node() {
    for script in goldens() {
        let name = golden_name(&script);
        let dir = golden_dir(&name);
        let d = dir.path();
        let text = std::fs::read_to_string(&script).expect("script");
        let inputs: Vec<(String, String)> = weir_sql::parse("golden", &text)
            .expect("parses")
            .into_iter()
            .filter_map(|s| match s {
                weir_sql::Statement::Input(i) => Some((i.name, i.path)),
                _ => None,
            })
            .collect();
        for n in PARALLELISMS {
            let data = format!("data{n}");
            let node = Node::start(d, &data).expect("node starts");
            let script = format!("{name}.wsql");
            ok(&node.weir(d, &["job", "submit", &script, "--parallelism", n]));
            for (stream, path) in &inputs {
                ok(&node.weir(d, &["ingest", stream, path]));
            }
            for (stream, _) in &inputs {
                ok(&node.weir(d, &["stream", "close", stream]));
            }
            wait_finished(&node, d, &name);
            check_golden(&name, d, &format!("on a node, parallelism {n}"));
            node.stop();
            std::fs::remove_dir_all(d.join("out")).expect("outputs go");
        }
    }
}

#[test]
fn the_papers_script_writes_on_a_node_what_it_writes_offline() {
    let example = repo_root().join("examples/alerts");
    let dir = cluster();
    let d = dir.path();
    for f in ["alerts.wsql", "process.jsonl", "alert.jsonl"] {
        copy(&example, f, d);
    }
    let offline = tempfile::tempdir().expect("tempdir");
    for f in ["alerts.wsql", "process.jsonl", "alert.jsonl"] {
        copy(&example, f, offline.path());
    }
    let out = weir(&["run", "alerts.wsql", "--quiet"], offline.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let want =
        std::fs::read_to_string(offline.path().join("counts.jsonl")).expect("offline output");
    assert!(want.lines().count() > 20, "{want}");

    let node = Node::start(d, "data").expect("node starts");
    // The job creates its input streams from the script's schemas.
    ok(&node.weir(d, &["job", "submit", "alerts.wsql"]));
    ok(&node.weir(d, &["ingest", "Process", "process.jsonl"]));
    ok(&node.weir(d, &["ingest", "Alert", "alert.jsonl"]));
    for s in ["Process", "Alert"] {
        ok(&node.weir(d, &["stream", "close", s]));
    }
    wait_finished(&node, d, "alerts");
    let got = std::fs::read_to_string(d.join("counts.jsonl")).expect("node output");
    assert_eq!(got, want, "the node wrote what weir run wrote");
    node.stop();
}

#[test]
fn bad_scripts_are_refused_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let inputs = "P = INPUT \"p.jsonl\" SCHEMA (id long, user string, ts long) EVENTTIME ts;\n";
    let cases = [
        (
            "syntax",
            format!("{inputs}X = SELECT id FROM P WHERE;\n"),
            "syntax.wsql:2:27: Expected: an expression, found: `;`",
        ),
        (
            "stream",
            format!("{inputs}X = SELECT id FROM Q;\n"),
            "stream.wsql:2:20: no stream `Q` is defined before this statement",
        ),
        (
            "column",
            format!("{inputs}X = SELECT usr FROM P;\n"),
            "column.wsql:2:12: column 'usr' not found (possible column P.user)",
        ),
        (
            "types",
            format!("{inputs}X = SELECT id FROM P WHERE id > 3 AND id;\n"),
            "types.wsql:2:1: expressions have incompatible types",
        ),
        (
            "window",
            format!("{inputs}X = SELECT user, COUNT(*) AS n FROM P;\n"),
            "window.wsql:2:1: an aggregate over a stream needs a window",
        ),
        (
            "eventtime",
            "P = INPUT \"p.jsonl\" SCHEMA (id long, ts long);\n".to_string(),
            "eventtime.wsql:1:46: expected `EVENTTIME column`",
        ),
        (
            "cycle",
            format!("{inputs}X = SELECT id FROM Y;\nY = SELECT id FROM X;\n"),
            "cycle.wsql:2:20: no stream `Y` is defined before this statement",
        ),
        (
            "unsplittable",
            format!("{inputs}X = SELECT id FROM P WHERE id > 2 WITH PARALLELISM 4;\n"),
            "unsplittable.wsql:2:35: WITH PARALLELISM 4: this query has no stage to split",
        ),
        (
            "replicate_zero",
            format!("{inputs}X = SELECT id FROM P WHERE id > 2 WITH REPLICATE 0;\n"),
            "replicate_zero.wsql:2:50: replicate 0: expected a whole number from 1 to 8",
        ),
        (
            "replicate_twice",
            format!(
                "{inputs}X = SELECT id FROM P WHERE id > 2 WITH REPLICATE 2 WITH REPLICATE 3;\n"
            ),
            "replicate_twice.wsql:2:52: a query has one replicate clause",
        ),
        (
            "zero",
            format!("SET PARALLELISM 0;\n{inputs}"),
            "zero.wsql:1:17: parallelism 0: expected a whole number from 1 to 256",
        ),
        (
            "unordered",
            format!("{inputs}X = SELECT id FROM P ORDER BY id;\n"),
            "unordered.wsql:2:1: ORDER BY without LIMIT",
        ),
        (
            "unlimited",
            format!("{inputs}X = SELECT id FROM P LIMIT 3;\n"),
            "unlimited.wsql:2:1: LIMIT without ORDER BY keeps arbitrary rows",
        ),
        (
            "twice",
            format!("SET PARALLELISM 2;\n{inputs}SET PARALLELISM 4;\n"),
            "twice.wsql:3:1: the parallelism is already set at line 1",
        ),
    ];
    for (name, text, want) in cases {
        std::fs::write(d.join(format!("{name}.wsql")), text).expect("script");
        let out = weir(&["run", &format!("{name}.wsql")], d);
        assert!(!out.status.success(), "{name} is refused");
        let said = stderr(&out);
        assert!(said.contains(want), "{name}: {said}");
        let out = weir(&["explain", &format!("{name}.wsql")], d);
        assert!(
            !out.status.success() && stderr(&out).contains(want),
            "explain {name}: {}",
            stderr(&out)
        );
    }
}

/// A job file's stages run as one vertex each: asking for more is refused,
/// not ignored.
#[test]
fn a_job_file_with_a_parallelism_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("job.toml"), "name = \"j\"\n").expect("job");
    let out = weir(&["run", "job.toml", "--parallelism", "2"], d);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("parallelism 2: a job file's stages run as one vertex each"),
        "{}",
        stderr(&out)
    );
}

/// The paper's script (a temporal join, then hopping windows) with a Wasm
/// scalar function and a Wasm aggregate, on a node killed with `kill -9`
/// after every other ingest, restarted from its checkpoints (the
/// aggregate's accumulators among them): it writes exactly what `weir run`
/// writes.
#[test]
fn a_windowed_join_script_with_a_udf_survives_kill_9_exactly_once() {
    let example = repo_root().join("examples/alerts");
    // The paper's script with a Wasm scalar function after the join.
    let script = std::fs::read_to_string(example.join("alerts.wsql"))
        .expect("script")
        .replace(
            "AlertWithUserID =",
            &format!(
                "Band = COMPONENT \"{}\";\nMid = COMPONENT \"{}\";\nAlertWithUserID =",
                udf_component("price_band").display(),
                udf_component("median").display()
            ),
        )
        .replace(
            "Process.UserID AS UserID\n",
            "Process.UserID AS UserID,\n        Band(CAST(Alert.ProcessID - 100 AS double) * 9.5) AS band,\n        CAST(Alert.ProcessID AS double) AS pid\n",
        )
        .replace(
            "SELECT UserID, COUNT(*)",
            "SELECT UserID, band, Mid(pid) AS median_pid, COUNT(*)",
        );
    // A global aggregate too: at parallelism 2 a partial phase per copy
    // and a final merge, both restored from checkpoints after each crash.
    let script = format!(
        "{script}Overall = SELECT Mid(pid) AS median_pid, COUNT(*) AS alerts, SUM(pid) AS pids\n    \
         FROM AlertWithUserID WITH HOPPING(10s, 5s);\nOUTPUT Overall TO \"overall.jsonl\" WITH INTERVAL;\n"
    );
    assert!(script.contains("AS band") && script.contains("UserID, band, Mid(pid)"));
    let offline = tempfile::tempdir().expect("tempdir");
    for f in ["process.jsonl", "alert.jsonl"] {
        copy(&example, f, offline.path());
    }
    std::fs::write(offline.path().join("alerts.wsql"), &script).expect("script");
    let out = weir(&["run", "alerts.wsql", "--quiet"], offline.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let want = std::fs::read_to_string(offline.path().join("counts.jsonl")).expect("offline");
    let overall = std::fs::read_to_string(offline.path().join("overall.jsonl")).expect("offline");
    assert!(overall.lines().count() > 5, "{overall}");

    assert!(
        ["\"low\"", "\"mid\"", "\"high\""]
            .iter()
            .filter(|b| want.contains(*b))
            .count()
            >= 2,
        "the UDF's bands vary: {want}"
    );
    assert!(
        want.contains("\"median_pid\":1"),
        "the aggregate's medians are written: {want}"
    );

    let dir = cluster();
    let d = dir.path();
    std::fs::write(d.join("alerts.wsql"), &script).expect("script");
    // Both inputs cut into chunks of 6 s of event time.
    let chunks = |file: &str| -> Vec<String> {
        let mut parts = vec![String::new(); 10];
        for line in std::fs::read_to_string(example.join(file))
            .expect("input")
            .lines()
        {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let k = (v["ts"].as_i64().expect("ts") / 6_000_000) as usize;
            parts[k.min(9)].push_str(line);
            parts[k.min(9)].push('\n');
        }
        parts
    };
    let (process, alert) = (chunks("process.jsonl"), chunks("alert.jsonl"));
    let mut node = Node::start(d, "data").expect("node starts");
    // The join and the windows run as two rVertices each on the node, one
    // offline: the output must not change.
    ok(&node.weir(d, &["job", "submit", "alerts.wsql", "--parallelism", "2"]));
    for k in 0..10 {
        for (stream, parts) in [("Process", &process), ("Alert", &alert)] {
            if parts[k].is_empty() {
                continue;
            }
            let file = format!("{stream}-{k}.jsonl");
            std::fs::write(d.join(&file), &parts[k]).expect("chunk");
            ok(&node.weir(d, &["ingest", stream, &file]));
        }
        if k % 2 == 1 {
            // Killed while its vertices work through what was just ingested.
            node.kill9();
            node = Node::start(d, "data").expect("node restarts");
        }
    }
    for s in ["Process", "Alert"] {
        ok(&node.weir(d, &["stream", "close", s]));
    }
    wait_finished(&node, d, "alerts");
    let got = std::fs::read_to_string(d.join("counts.jsonl")).expect("node output");
    assert_eq!(
        got, want,
        "after five kill -9, the node wrote what weir run wrote"
    );
    let got = std::fs::read_to_string(d.join("overall.jsonl")).expect("node output");
    assert_eq!(
        got, overall,
        "the split global aggregate wrote what weir run wrote"
    );
    node.stop();
}

/// `weir explain` names a user-defined aggregate's component file and
/// module version where the windowed aggregate computes it.
#[test]
fn explain_names_a_user_aggregate_and_its_module_version() {
    let dir = golden_dir("user_aggregate");
    let d = dir.path();
    let out = weir(&["explain", "user_aggregate.wsql"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    let module = weir(&["udf", "inspect", "components/median.wasm"], d);
    let inspected = String::from_utf8_lossy(&module.stdout).into_owned();
    let short = plan
        .split("MedianOf (components/median.wasm module ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no module version of MedianOf in:\n{plan}"));
    assert!(
        short.len() >= 12 && inspected.contains(short),
        "module {short} is the one `weir udf inspect` shows:\n{inspected}"
    );
}
