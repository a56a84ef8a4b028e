//! Parallel component stages on a real node: a script's `REDUCE` running as
//! several rVertices, patched and filtered by its stage name while it runs
//! and across `kill -9`. Each copy keeps a timeline of its own; the expected
//! output is computed from the input, the partition each key hashes to and
//! each copy's history, so every row must come from the version and filters
//! in effect at its position in its copy's input, exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use weir::testkit::udf_component;

use super::filters::{filter_args, test_filter_drops};
use super::jobs::wait_finished;
use super::node::{Node, cluster, ok, write};
use super::patch::{CHUNK, Entry, change_during, expected_at, ingest, output, patch_during, sale};
use super::stderr;

const COPIES: usize = 2;

/// Each copy's history: `(version, input position, why)` per entry.
type Histories = BTreeMap<String, Vec<Entry>>;

fn histories(node: &Node, d: &Path) -> Histories {
    let out = ok(&node.weir(
        d,
        &[
            "udf", "history", "--job", "tally", "--stage", "tally", "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("history is JSON");
    let mut all = Histories::new();
    for h in v.as_array().expect("a list") {
        all.entry(h["copy"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push((
                h["version"].as_str().unwrap_or_default().to_string(),
                h["position"].as_u64().unwrap_or(u64::MAX),
                h["why"].as_str().unwrap_or_default().to_string(),
            ));
    }
    all
}

/// The copy that runs each of the first `rows` sales, by the engine's own
/// partition function over the key column.
fn copies_of(rows: usize) -> Vec<usize> {
    let users: Vec<String> = (0..rows).map(|i| sale(i).0).collect();
    let schema = Arc::new(Schema::new(vec![Field::new("user", DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(users))])
        .expect("a batch of keys");
    weir::temporal::partitions(&batch, &[0], COPIES)
}

#[test]
fn a_change_to_a_parallel_reduce_reaches_every_copy_across_kill_9() {
    let dir = cluster();
    let d = dir.path();
    write(
        d,
        "tally.wsql",
        &format!(
            "sales = INPUT \"sales.jsonl\" SCHEMA (ts long, user string, amount long) EVENTTIME ts;\n\
             TallyV1 = COMPONENT \"{}\" WITH (factor = 3, poison = 777);\n\
             tally = REDUCE sales ON user USING TallyV1 WITH PARALLELISM {COPIES};\n\
             OUTPUT tally TO \"out/tally.jsonl\";\n",
            udf_component("tally_v1").display()
        ),
    );
    let mut node = Node::start(d, "data").expect("node starts");
    ok(&node.weir(d, &["job", "submit", "tally.wsql"]));
    let feed = |node: &Node, k: usize| {
        let out = ingest(&node.addr, d, k, None);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    feed(&node, 0);
    let v2 = udf_component("tally_v2").display().to_string();
    let text = ok(&patch_during(&node, d, &["deploy", &v2], || feed(&node, 1)));
    assert!(
        text.contains(&format!("stage `tally` runs as {COPIES} rVertices")),
        "{text}"
    );
    for j in 0..COPIES {
        assert!(
            text.contains(&format!("stage `tally__p{j}`: module ")),
            "copy {j} switched: {text}"
        );
    }
    let filter = filter_args(&["add", "user = 'u3' AND amount < 50"]);
    ok(&change_during(&node, d, &filter, || feed(&node, 2)));
    // A change to a name that is neither the stage nor a copy is refused.
    let out = node.weir(
        d,
        &["udf", "replay", &v2, "--job", "tally", "--stage", "tally"],
    );
    assert!(
        !out.status.success()
            && stderr(&out)
                .contains("runs as 2 rVertices (tally__p0 .. tally__p1); name one of them"),
        "{}",
        stderr(&out)
    );

    let before = histories(&node, d);
    node.kill9();
    node = Node::start(d, "data").expect("node restarts after kill -9");
    assert_eq!(
        histories(&node, d),
        before,
        "the copies' timelines are durable"
    );
    feed(&node, 3);
    ok(&node.weir(d, &["stream", "close", "sales"]));
    wait_finished(&node, d, "tally");

    let h = histories(&node, d);
    let names: Vec<&str> = h.keys().map(String::as_str).collect();
    assert_eq!(names, ["tally__p0", "tally__p1"], "{h:?}");
    for (copy, entries) in &h {
        let whys: Vec<&str> = entries.iter().map(|e| e.2.as_str()).collect();
        assert_eq!(
            whys,
            [
                "submitted with the job",
                "deploy",
                "filter added: user = 'u3' AND amount < 50"
            ],
            "{copy}: {entries:?}"
        );
    }
    let rows = 4 * CHUNK;
    let copy = copies_of(rows);
    assert!(
        (0..COPIES).all(|j| copy.contains(&j)),
        "every copy gets keys"
    );
    let mut seen = [0u64; COPIES];
    let at: Vec<(&[Entry], u64)> = copy
        .iter()
        .map(|&j| {
            let position = seen[j];
            seen[j] += 1;
            (h[&format!("tally__p{j}")].as_slice(), position)
        })
        .collect();
    let want = expected_at(rows, &[], &|i| at[i], &test_filter_drops);
    let got = output(d);
    if let Some(i) = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i)) {
        panic!(
            "output row {i} is {:?} but the copies' histories {h:?} make it {:?} ({} rows written, {} expected)",
            got.get(i),
            want.get(i),
            got.len(),
            want.len()
        );
    }
}
