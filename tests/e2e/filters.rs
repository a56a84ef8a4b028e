//! Runtime filters on a real node (`weir job filter`): poison rows kept from
//! the UDF across `kill -9`s, and a stage failed on a poison row resumed there
//! by a filter.

use super::jobs::wait_finished;
use super::node::{Node, cluster, ok};
use super::patch::*;
use super::stderr;

/// `weir job filter ARGS`.
pub(super) fn filter_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["job", "filter"];
    all.extend_from_slice(args);
    all
}

/// What the test's filters drop.
pub(super) fn test_filter_drops(filter: &str, user: &str, amount: i64) -> bool {
    match filter {
        "amount = 777" => amount == POISON,
        "user = 'u3' AND amount < 50" => user == "u3" && amount < 50,
        other => panic!("unexpected filter `{other}`"),
    }
}

#[test]
fn a_runtime_filter_keeps_poison_rows_from_the_udf_across_kill_9s() {
    let dir = cluster();
    let d = dir.path();
    // tally_v3 fails the job on the poison amount (on_trap = "fail").
    let mut node = start_with(d, "tally_v3", "");
    let poisons = [2 * CHUNK + 17, 4 * CHUNK + 60, 6 * CHUNK + 3];
    let feed = |addr: &str, k: usize| {
        let poison = poisons.iter().copied().find(|p| p / CHUNK == k);
        let out = ingest(addr, d, k, poison);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    feed(&node.addr, 0);

    // Refusals say what is wrong and change nothing.
    let refused = |args: &[&str], want: &str| {
        let mut all = filter_args(args);
        all.extend_from_slice(&["--job", "tally", "--stage", "tally"]);
        let out = node.weir(d, &all);
        let e = stderr(&out);
        assert!(!out.status.success() && e.contains(want), "{args:?}: {e}");
    };
    refused(&["add", "amt = 777"], "no column `amt`");
    refused(
        &["add", "amount = 'x'"],
        "column `amount` is int64 but 'x' is not",
    );
    refused(&["add", "amount = = 1"], "filter `amount = = 1`");
    refused(
        &["remove", "amount = 777"],
        "has no filter `amount = 777`; its filters: none",
    );
    assert_eq!(history(&node, d).len(), 1);

    // Changes switch at a CTI of the input that arrives beside them.
    let mut positions = Vec::new();
    let mut change = |node: &Node, args: &[&str], k: usize| {
        let addr = node.addr.clone();
        let text = ok(&change_during(node, d, &filter_args(args), || {
            feed(&addr, k)
        }));
        let p = position_in(&text);
        assert!(
            p >= (k * CHUNK) as u64 && p <= ((k + 1) * CHUNK) as u64,
            "{args:?} during chunk {k} took effect at {p}: {text}"
        );
        positions.push(p);
    };
    change(&node, &["add", "amount = 777"], 1);
    refused(&["add", "amount=777"], "already has filter `amount = 777`");
    feed(&node.addr, 2);
    node.kill9();
    node = Node::start(d, "data").expect("node restarts after kill -9");
    change(&node, &["add", "user = 'u3' and amount < 50"], 3);
    feed(&node.addr, 4);
    // Removed by another spelling of the same condition, with redundant
    // parentheses.
    change(&node, &["remove", "(user='u3') and ((amount<50))"], 5);
    feed(&node.addr, 6);
    node.kill9();
    node = Node::start(d, "data").expect("node restarts after kill -9");
    feed(&node.addr, 7);

    ok(&node.weir(d, &["stream", "close", "sales"]));
    wait_finished(&node, d, "tally");
    let h = history(&node, d);
    let whys: Vec<&str> = h.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        whys,
        [
            "submitted with the job",
            "filter added: amount = 777",
            "filter added: user = 'u3' AND amount < 50",
            "filter removed: user = 'u3' AND amount < 50",
        ]
    );
    assert_eq!(h.iter().skip(1).map(|e| e.1).collect::<Vec<_>>(), positions);
    assert!(h.iter().all(|e| e.0 == version_of("tally_v3")), "{h:?}");
    let rows = 8 * CHUNK;
    assert_filtered_output(d, rows, &poisons, &h, &test_filter_drops);

    // Status shows the filter in effect and how many rows it dropped.
    let kept = expected(rows, &poisons, &h, &test_filter_drops).len();
    let dropped = rows - kept;
    assert!(
        dropped > poisons.len(),
        "the second filter dropped rows too"
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok(&node.weir(d, &["job", "status", "tally", "--json"])))
            .expect("status is JSON");
    let stage = status[0]["vertices"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["role"] == "stage"))
        .expect("a stage vertex")
        .clone();
    assert_eq!(stage["filtered"].as_u64(), Some(dropped as u64), "{stage}");
    assert_eq!(stage["rows_in"].as_u64(), Some(rows as u64), "{stage}");
    assert_eq!(
        stage["filters"],
        serde_json::json!(["amount = 777"]),
        "{stage}"
    );
    let text = ok(&node.weir(d, &["job", "status", "tally"]));
    assert!(
        text.contains(&format!(
            "filters: `amount = 777` ({dropped} input rows dropped)"
        )),
        "{text}"
    );
}

#[test]
fn a_stage_failed_on_a_poison_row_resumes_there_with_a_filter() {
    let dir = cluster();
    let d = dir.path();
    let mut node = start_with(d, "tally_v3", "");
    let poisons = [CHUNK + 30, 3 * CHUNK + 8];
    let feed = |addr: &str, k: usize| {
        let poison = poisons.iter().copied().find(|p| p / CHUNK == k);
        let out = ingest(addr, d, k, poison);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    feed(&node.addr, 0);
    feed(&node.addr, 1);
    // The stage fails on the poison row (on_trap = "fail").
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let stuck = loop {
        let text = ok(&node.weir(d, &["job", "status", "tally"]));
        if text.contains("stuck at input position") {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "never failed: {text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        stuck.contains("poison amount 777") && stuck.contains("`weir job filter add`"),
        "{stuck}"
    );
    let mut args = filter_args(&["add", "amount = 777"]);
    args.extend_from_slice(&["--job", "tally", "--stage", "tally"]);
    let text = ok(&node.weir(d, &args));
    let at = position_in(&text);
    assert!(
        at > (poisons[0] - CHUNK) as u64 && at <= poisons[0] as u64,
        "resumed at the failed batch: {text}"
    );
    feed(&node.addr, 2);
    feed(&node.addr, 3);
    node.kill9();
    node = Node::start(d, "data").expect("node restarts after kill -9");
    feed(&node.addr, 4);
    ok(&node.weir(d, &["stream", "close", "sales"]));
    wait_finished(&node, d, "tally");
    let h = history(&node, d);
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(
        (h[1].1, h[1].2.as_str()),
        (at, "filter added: amount = 777")
    );
    assert_filtered_output(d, 5 * CHUNK, &poisons, &h, &test_filter_drops);
}
