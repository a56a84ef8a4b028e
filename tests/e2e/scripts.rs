//! User code in query scripts: the click-fraud script (a Wasm processor,
//! windowed counts, a threshold) offline and on a node, and each kind of
//! wrong use of a component refused with its place.

use std::collections::BTreeMap;
use std::path::Path;

use weir::testkit::{repo_root, udf_component};

use super::jobs::wait_finished;
use super::node::{Node, cluster, ok};
use super::{stderr, weir};

/// The click-fraud script in `d`, its component path pointing at the
/// component built from `udfs/`, with its input in `data/`.
pub(super) fn click_fraud_script(d: &Path) {
    let example = repo_root().join("examples/click-fraud");
    let text = std::fs::read_to_string(example.join("clickfraud.wsql")).expect("script");
    let text = text.replace(
        "../../udfs/target/wasm32-wasip2/release/bot_filter.wasm",
        &udf_component("bot_filter").display().to_string(),
    );
    std::fs::write(d.join("clickfraud.wsql"), text).expect("script");
    std::fs::create_dir_all(d.join("data")).expect("data dir");
    std::fs::copy(
        example.join("data/clicks.jsonl"),
        d.join("data/clicks.jsonl"),
    )
    .expect("clicks");
}

/// What the script must flag, computed from the clicks directly: per user
/// and 5-second window, the clicks that are not bots' (agent naming a
/// crawler, IP in 10.66.), when more than 8.
fn flagged_by_hand() -> BTreeMap<(i64, String), i64> {
    let text = std::fs::read_to_string(repo_root().join("examples/click-fraud/data/clicks.jsonl"))
        .expect("clicks");
    let mut counts: BTreeMap<(i64, String), i64> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let agent = v["agent"].as_str().expect("agent").to_ascii_lowercase();
        let bot = ["bot", "crawler", "spider", "headless"]
            .iter()
            .any(|m| agent.contains(m));
        if bot || v["ip"].as_str().expect("ip").starts_with("10.66.") {
            continue;
        }
        let ts = v["ts"].as_i64().expect("ts");
        let user = v["user"].as_str().expect("user").to_string();
        *counts
            .entry((ts - ts.rem_euclid(5_000_000), user))
            .or_default() += 1;
    }
    counts.retain(|_, n| *n > 8);
    counts
}

#[test]
fn the_click_fraud_script_flags_what_the_rule_says_offline_and_on_a_node() {
    let dir = cluster();
    let d = dir.path();
    click_fraud_script(d);
    let out = weir(&["run", "clickfraud.wsql", "--quiet"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    let offline = std::fs::read_to_string(d.join("out/flagged.jsonl")).expect("output");
    let got: BTreeMap<(i64, String), i64> = offline
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            assert_eq!(
                v["_end"].as_i64(),
                v["_start"].as_i64().map(|s| s + 5_000_000)
            );
            (
                (
                    v["_start"].as_i64().expect("start"),
                    v["user"].as_str().expect("user").to_string(),
                ),
                v["clicks"].as_i64().expect("clicks"),
            )
        })
        .collect();
    let want = flagged_by_hand();
    assert!(!want.is_empty());
    assert_eq!(got, want, "flagged users and windows");
    for fraudster in ["u007", "u023", "u042"] {
        assert!(
            got.keys().any(|(_, u)| u == fraudster),
            "{fraudster} is flagged"
        );
    }

    std::fs::remove_dir_all(d.join("out")).expect("clean");
    let node = Node::start(d, "data-node").expect("node starts");
    ok(&node.weir(d, &["job", "submit", "clickfraud.wsql"]));
    ok(&node.weir(d, &["ingest", "Clicks", "data/clicks.jsonl"]));
    ok(&node.weir(d, &["stream", "close", "Clicks"]));
    wait_finished(&node, d, "clickfraud");
    let online = std::fs::read_to_string(d.join("out/flagged.jsonl")).expect("node output");
    assert_eq!(online, offline, "the node wrote what weir run wrote");
    node.stop();
}

#[test]
fn wrong_uses_of_components_are_refused_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let component = |name: &str| udf_component(name).display().to_string();
    let head = format!(
        "P = INPUT \"p.jsonl\" SCHEMA (user string, eur double, ts long) EVENTTIME ts;\n\
         Sum = COMPONENT \"{}\";\n\
         Band = COMPONENT \"{}\";\n\
         Bots = COMPONENT \"{}\" WITH (blocked_prefix = '10.');\n\
         Mid = COMPONENT \"{}\";\n",
        component("running_sum"),
        component("price_band"),
        component("bot_filter"),
        component("median"),
    );
    std::fs::write(d.join("p.jsonl"), "").expect("input");
    std::fs::write(d.join("notwasm.wasm"), "not a component").expect("file");
    let cases: [(&str, String, &[&str]); 16] = [
        (
            "world",
            format!("{head}X = PROCESS P USING Sum;\n"),
            &[
                "world.wsql:6:21: `Sum` exports the `reducer` world; PROCESS runs a processor (run a reducer with `REDUCE P ON key USING Sum`)",
            ],
        ),
        (
            "scalar_world",
            format!("{head}X = REDUCE P ON user USING Band;\n"),
            &["scalar_world.wsql:6:28: `Band` exports the `scalar` world; REDUCE runs a reducer"],
        ),
        (
            "signature",
            format!("{head}X = SELECT Band(user) AS b FROM P;\n"),
            &[
                "signature.wsql:6:12: ",
                "coercion from Utf8 to the signature Exact(Float64) failed",
                "band(Float64)",
            ],
        ),
        (
            "arity",
            format!("{head}X = SELECT b FROM (SELECT Band(eur, eur) AS b FROM P);\n"),
            &["arity.wsql:6:27: ", "band(Float64, Float64)"],
        ),
        (
            "columns",
            format!("{head}X = PROCESS P USING Bots;\n"),
            &[
                "columns.wsql:6:1: stage `X` (module ",
                "the UDF reads column `agent` (utf8) but its input has no such column",
            ],
        ),
        (
            "unknown",
            format!("{head}X = PROCESS P USING Bot;\n"),
            &[
                "unknown.wsql:6:21: no component `Bot` is declared before this statement (did you mean `Bots`?)",
            ],
        ),
        (
            "aggregate_world",
            format!("{head}X = PROCESS P USING Mid;\n"),
            &[
                "aggregate_world.wsql:6:21: `Mid` exports the `aggregate` world; PROCESS runs a processor (call an aggregate in a windowed query: `SELECT key, Mid(...) AS x FROM P WITH TUMBLING(d)`)",
            ],
        ),
        (
            "aggregate_window",
            format!("{head}X = SELECT user, Mid(eur) AS m FROM P;\n"),
            &["aggregate_window.wsql:6:1: an aggregate over a stream needs a window"],
        ),
        (
            "aggregate_signature",
            format!("{head}X = SELECT user, Mid(user) AS m FROM P WITH TUMBLING(1s);\n"),
            &[
                "aggregate_signature.wsql:6:",
                "coercion from Utf8 to the signature Exact(Float64) failed",
            ],
        ),
        (
            "aggregate_distinct",
            format!("{head}X = SELECT user, Mid(DISTINCT eur) AS m FROM P WITH TUMBLING(1s);\n"),
            &[
                "aggregate_distinct.wsql:6:1: ",
                "DISTINCT applies to the built-in aggregates, not to a component",
            ],
        ),
        (
            "builtin_name",
            format!("{head}Median = COMPONENT \"{}\";\n", component("median")),
            &[
                "builtin_name.wsql:6:1: `Median` is the name of a built-in function; give the component another name",
            ],
        ),
        (
            "reduce_parallelism",
            format!("{head}X = REDUCE P ON user USING Sum WITH PARALLELISM 300;\n"),
            &[
                "reduce_parallelism.wsql:6:49: parallelism 300: expected a whole number from 1 to 256",
            ],
        ),
        (
            "process_replicate",
            format!("{head}X = PROCESS P USING Bots WITH REPLICATE 9;\n"),
            &["process_replicate.wsql:6:41: replicate 9: expected a whole number from 1 to 8"],
        ),
        (
            "reduce_replicate_twice",
            format!(
                "{head}X = REDUCE P ON user USING Sum WITH REPLICATE 2 WITH PARALLELISM 2 WITH REPLICATE 2;\n"
            ),
            &["reduce_replicate_twice.wsql:6:68: a statement has one replicate clause"],
        ),
        (
            "clause_order",
            format!(
                "{head}X = PROCESS P USING Bots WITH PARALLELISM 2 WITH (blocked_prefix = '1');\n"
            ),
            &["clause_order.wsql:6:45: expected `;`, found `WITH`"],
        ),
        (
            "file",
            format!("{head}W = COMPONENT \"notwasm.wasm\";\n"),
            &["file.wsql:6:1: component `W`: notwasm.wasm is not a WebAssembly component"],
        ),
    ];
    for (name, text, want) in cases {
        std::fs::write(d.join(format!("{name}.wsql")), &text).expect("script");
        let out = weir(&["run", &format!("{name}.wsql")], d);
        assert!(!out.status.success(), "{name} is refused");
        let said = stderr(&out);
        for want in want {
            assert!(said.contains(want), "{name}: {said}");
        }
        let out = weir(&["explain", &format!("{name}.wsql")], d);
        assert!(
            !out.status.success() && stderr(&out).contains(want[0]),
            "explain {name}: {}",
            stderr(&out)
        );
    }
}

/// A user-defined aggregate that traps inside a window stops the job with
/// the vertex, the input position, the component's file and module version,
/// and the panic's message; no output is written for the failed window.
#[test]
fn a_trapping_aggregate_says_vertex_seq_module_and_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("p.jsonl"),
        "{\"user\":\"a\",\"v\":1,\"ts\":1}\n{\"user\":\"b\",\"v\":-3,\"ts\":3000}\n{\"user\":\"b\",\"v\":1,\"ts\":2000000}\n",
    )
    .expect("input");
    let component = udf_component("panic_aggregate");
    std::fs::write(
        d.join("t.wsql"),
        format!(
            "P = INPUT \"p.jsonl\" SCHEMA (user string, v long, ts long) EVENTTIME ts;\n\
             Total = COMPONENT \"{}\";\n\
             X = SELECT user, Total(v) AS total FROM P WITH TUMBLING(1s);\n\
             OUTPUT X TO \"x.jsonl\";\n",
            component.display()
        ),
    )
    .expect("script");
    let out = weir(&["run", "t.wsql"], d);
    assert!(!out.status.success(), "the trap fails the job");
    let said = stderr(&out);
    for want in [
        "vertex `X`: input 0 seq 0: Total (",
        "panic_aggregate.wasm module ",
        "trapped: wasm trap",
        "panicked at adversarial/panic_aggregate/src/lib.rs",
        "negative value -3",
    ] {
        assert!(said.contains(want), "{want}: {said}");
    }
    let written = std::fs::read_to_string(d.join("x.jsonl")).unwrap_or_default();
    assert!(
        written.is_empty(),
        "no window went out before the trap: {written}"
    );
}

/// The `median` component through the runtime's aggregate world: rows of
/// one group split over two accumulators in one `accumulate` call, joined
/// by `merge`, give what one accumulator of all the rows gives, and
/// `finish` returns one value per accumulator (null for a fresh one).
#[test]
fn an_aggregate_component_accumulates_merges_and_finishes_in_batches() {
    use arrow_array::{Array, Float64Array, Int64Array, RecordBatch};
    use weir::temporal::UserAggregate;
    let cache = tempfile::tempdir().expect("tempdir");
    let runtime = std::sync::Arc::new(
        weir::wasm::Runtime::new(Some(cache.path().to_path_buf())).expect("runtime"),
    );
    let module = runtime
        .load_file(&udf_component("median"))
        .expect("median loads");
    let mut median =
        weir::wasm::AggregateInstance::new(&runtime, &module, "median", &[], Default::default())
            .expect("instance");
    let values = [5.0, 1.0, 4.0, 9.0, 2.0];
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("_start", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("_end", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("v", arrow_schema::DataType::Float64, true),
    ]));
    let args = RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(Int64Array::from_iter_values(0..5)),
            std::sync::Arc::new(Int64Array::from_iter_values(1..6)),
            std::sync::Arc::new(Float64Array::from(values.to_vec())),
        ],
    )
    .expect("batch");
    // Accumulators 0 and 1 split the rows; 2 gets them all; 3 none.
    let fresh = vec![Vec::new(); 4];
    let accs = median
        .accumulate(&fresh, &args, &[0, 1, 0, 1, 0])
        .expect("accumulate");
    assert_eq!(accs.len(), 4);
    let all = median
        .accumulate(&accs, &args, &[2, 2, 2, 2, 2])
        .expect("accumulate");
    let merged = median.merge(&all[..1], &all[1..2]).expect("merge");
    let out = median
        .finish(&[merged[0].clone(), all[2].clone(), all[3].clone()])
        .expect("finish");
    let out = out
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("float64 result");
    assert_eq!(
        (out.value(0), out.value(1)),
        (4.0, 4.0),
        "median of 1 2 4 5 9"
    );
    assert!(out.is_null(2), "a fresh accumulator has no median");
    // Bytes that are not an accumulator are an error that names the module.
    let e = median
        .finish(&[vec![0xFF; 3]])
        .expect_err("not an accumulator");
    assert!(
        e.contains(&format!("module {}", module.version.short())) && e.contains("does not decode"),
        "{e}"
    );
}
