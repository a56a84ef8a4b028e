//! Nexmark inputs in scripts: `INPUT NEXMARK BID (...)` generates the stream
//! by the built-in generator; what a query computes over it is checked
//! against the generator's own rows, at parallelism 1 and 2.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use weir_nexmark::{Config, Generator, Kind};

use super::node::{Node, cluster, write};
use super::{stderr, weir};

const EVENTS: u64 = 200_000;
const RATE: u64 = 10_000;

fn script() -> String {
    format!(
        "Bid = INPUT NEXMARK BID (events => {EVENTS}, rate => {RATE}, seed => 7);\n\
         Person = INPUT NEXMARK PERSON (events => {EVENTS}, rate => {RATE}, seed => 7);\n\
         PerChannel = SELECT channel, COUNT(*) AS n, MAX(price) AS top FROM Bid WITH TUMBLING(2s);\n\
         OUTPUT PerChannel TO \"per_channel.jsonl\" WITH INTERVAL;\n\
         Oregon = SELECT id, name, city FROM Person WHERE state = 'OR';\n\
         OUTPUT Oregon TO \"oregon.jsonl\";\n"
    )
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn a_nexmark_script_computes_over_the_generators_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("q.wsql"), script()).expect("script");
    let generator = Generator::new(Config {
        events: EVENTS,
        rate: RATE,
        seed: 7,
        ..Config::default()
    })
    .expect("config");
    let bids = generator.batch(Kind::Bid, 0..EVENTS);
    let channels = bids
        .column_by_name("channel")
        .expect("channel")
        .as_string::<i32>();
    let prices = bids
        .column_by_name("price")
        .expect("price")
        .as_primitive::<Int64Type>();
    let times = bids
        .column_by_name("date_time")
        .expect("time")
        .as_primitive::<Int64Type>();
    let mut want: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
    for r in 0..bids.num_rows() {
        let w = times.value(r) / 2_000_000 * 2_000_000;
        let g = want
            .entry((w, channels.value(r).to_string()))
            .or_insert((0, i64::MIN));
        g.0 += 1;
        g.1 = g.1.max(prices.value(r));
    }
    let people = generator.batch(Kind::Person, 0..EVENTS);
    let states = people
        .column_by_name("state")
        .expect("state")
        .as_string::<i32>();
    let oregon = (0..people.num_rows())
        .filter(|&r| states.value(r) == "OR")
        .count();

    let mut first: Option<(String, String)> = None;
    for parallelism in ["1", "2"] {
        let out = weir(
            &["run", "q.wsql", "--quiet", "--parallelism", parallelism],
            d,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let mut got: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
        for v in lines(&d.join("per_channel.jsonl")) {
            assert_eq!(
                v["_end"].as_i64(),
                v["_start"].as_i64().map(|s| s + 2_000_000)
            );
            got.insert(
                (
                    v["_start"].as_i64().expect("start"),
                    v["channel"].as_str().expect("channel").to_string(),
                ),
                (v["n"].as_i64().expect("n"), v["top"].as_i64().expect("top")),
            );
        }
        assert_eq!(got.len(), want.len(), "parallelism {parallelism}");
        assert!(
            got == want,
            "parallelism {parallelism}: the counts per channel and window"
        );
        let people_out = lines(&d.join("oregon.jsonl"));
        assert_eq!(people_out.len(), oregon, "parallelism {parallelism}");
        let bytes = (
            std::fs::read_to_string(d.join("per_channel.jsonl")).expect("out"),
            std::fs::read_to_string(d.join("oregon.jsonl")).expect("out"),
        );
        match &first {
            None => first = Some(bytes),
            Some(f) => assert!(*f == bytes, "parallelism 2 writes the bytes 1 does"),
        }
    }
}

#[test]
fn bad_nexmark_inputs_are_refused_with_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let tail = "Q = SELECT price FROM Bid;\nOUTPUT Q TO \"q.jsonl\";\n";
    for (name, input, want) in [
        (
            "stream",
            "Bid = INPUT NEXMARK BIDS;\n",
            "stream.wsql:1:21: `BIDS` is not a Nexmark stream (PERSON, AUCTION or BID) (did you mean `BID`?)",
        ),
        (
            "param",
            "Bid = INPUT NEXMARK BID (evnts => 10);\n",
            "param.wsql:1:26: `evnts` is not a Nexmark parameter (events, rate, seed, out_of_order) (did you mean `events`?)",
        ),
        (
            "twice",
            "Bid = INPUT NEXMARK BID (seed => 1, seed => 2);\n",
            "twice.wsql:1:37: parameter `seed` is given twice",
        ),
        (
            "rate",
            "Bid = INPUT NEXMARK BID (rate => 0);\n",
            "rate.wsql:1:1: nexmark: rate must be at least 1",
        ),
        (
            "number",
            "Bid = INPUT NEXMARK BID (events => 'many');\n",
            "number.wsql:1:36: `events` takes a whole number",
        ),
    ] {
        std::fs::write(d.join(format!("{name}.wsql")), format!("{input}{tail}")).expect("script");
        let out = weir(&["run", &format!("{name}.wsql")], d);
        assert!(!out.status.success(), "{name} is refused");
        assert!(stderr(&out).contains(want), "{name}: {}", stderr(&out));
    }
    // A node's jobs read their inputs from streams: a generated input is
    // refused at submission, saying so.
    let dir = cluster();
    let d = dir.path();
    write(d, "q.wsql", &script());
    let node = Node::start(d, "data").expect("node starts");
    let out = node.weir(d, &["job", "submit", "q.wsql"]);
    assert!(
        !out.status.success()
            && stderr(&out).contains("a Nexmark input is generated by `weir run`"),
        "{}",
        stderr(&out)
    );
    node.stop();
}
