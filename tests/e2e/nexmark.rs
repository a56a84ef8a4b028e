//! Nexmark inputs in scripts: `INPUT NEXMARK BID (...)` generates the stream
//! by the built-in generator; what a query computes over it is checked
//! against the generator's own rows, at parallelism 1 and 2.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use weir_nexmark::{Config, Generator, Kind};

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
            "param.wsql:1:26: `evnts` is not a Nexmark parameter (events, rate, seed, out_of_order, pace) (did you mean `events`?)",
        ),
        (
            "pace",
            "Bid = INPUT NEXMARK BID (pace => 2);\n",
            "pace.wsql:1:34: `pace` is 1 (in step with the wall clock) or 0 (as fast as it can), not 2",
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
    // The clauses the Nexmark queries use: an input's end, a point at a
    // column, a top-N per key, a discarded output.
    let bid = "Bid = INPUT NEXMARK BID;\n";
    let out = "OUTPUT Q TO \"q.jsonl\";\n";
    for (name, script, want) in [
        (
            "end_start",
            "Auction = INPUT NEXMARK AUCTION ENDTIME date_time;\n".to_string(),
            "end_start.wsql:1:41: `date_time` is where events start; ENDTIME names where they end (an auction's `expires`)",
        ),
        (
            "end_name",
            "Auction = INPUT NEXMARK AUCTION ENDTIME expire;\n".to_string(),
            "end_name.wsql:1:41: `expire` is not a column of `Auction` (did you mean `expires`?)",
        ),
        (
            "end_type",
            "Auction = INPUT NEXMARK AUCTION ENDTIME item_name;\n".to_string(),
            "end_type.wsql:1:41: time column `item_name` must be a long (not null)",
        ),
        (
            "point_name",
            format!("{bid}Q = SELECT auction, price FROM Bid WITH POINT AT expires;\n{out}"),
            "point_name.wsql:2:50: WITH POINT AT `expires`: not a column of the query's output (columns: auction, price)",
        ),
        (
            "point_type",
            format!("{bid}Q = SELECT auction, channel FROM Bid WITH POINT AT channel;\n{out}"),
            "point_type.wsql:2:52: WITH POINT AT `channel`: the column is not a long (a time in µs)",
        ),
        (
            "by_name",
            format!(
                "{bid}Q = SELECT auction, price FROM Bid WITH TUMBLING(10s) ORDER BY price DESC LIMIT 1 BY bidder;\n{out}"
            ),
            "by_name.wsql:2:86: LIMIT 1 BY `bidder`: not a column of the rows ranked (columns: auction, price)",
        ),
        (
            "by_order",
            format!(
                "{bid}Q = SELECT auction, price FROM Bid WITH TUMBLING(10s) ORDER BY price DESC LIMIT 1 BY price;\n{out}"
            ),
            "by_order.wsql:2:86: `price` is ranked within (LIMIT BY) and ordered by; within one value the order by it ties",
        ),
        (
            "by_none",
            format!(
                "{bid}Q = SELECT auction, price FROM Bid WITH TUMBLING(10s) ORDER BY price DESC LIMIT 1 BY;\n{out}"
            ),
            "by_none.wsql:2:85: expected a column to rank within, found `;`",
        ),
        (
            "discard",
            format!("{bid}Q = SELECT auction FROM Bid;\nOUTPUT Q TO DISCARDS;\n"),
            "discard.wsql:3:13: expected a quoted path such as \"out.jsonl\", or DISCARD, found `DISCARDS`",
        ),
    ] {
        std::fs::write(d.join(format!("{name}.wsql")), script).expect("script");
        let out = weir(&["run", &format!("{name}.wsql")], d);
        assert!(!out.status.success(), "{name} is refused");
        assert!(stderr(&out).contains(want), "{name}: {}", stderr(&out));
    }
}

/// The queries of `examples/nexmark/` (at 100,000 events) answer what the
/// generator's own bids say, and the same bytes at parallelism 1, 2 and 4.
#[test]
fn the_nexmark_examples_answer_what_the_generators_bids_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let events = 100_000u64;
    let generator = Generator::new(Config {
        events,
        rate: 10_000,
        ..Config::default()
    })
    .expect("config");
    let bids = generator.batch(Kind::Bid, 0..events);
    let long = |name: &str| -> Vec<i64> {
        bids.column_by_name(name)
            .expect("column")
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    };
    let (auctions, bidders, prices, times) = (
        long("auction"),
        long("bidder"),
        long("price"),
        long("date_time"),
    );
    let people = generator.batch(Kind::Person, 0..events);
    let sales = generator.batch(Kind::Auction, 0..events);
    let column = |b: &arrow_array::RecordBatch, name: &str| -> Vec<String> {
        let c = b.column_by_name(name).expect("column");
        match c.data_type() {
            arrow_schema::DataType::Int64 => c
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|v| v.to_string())
                .collect(),
            _ => c
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect(),
        }
    };
    let examples = super::repo_root().join("examples/nexmark");
    for q in ["q0", "q1", "q2", "q3", "q5", "q7", "q8", "q11", "q12"] {
        let text = std::fs::read_to_string(examples.join(format!("{q}.wsql")))
            .expect("example")
            .replace("events => 1000000", &format!("events => {events}"));
        assert!(text.contains(&format!("events => {events}")), "{q}");
        std::fs::write(d.join(format!("{q}.wsql")), &text).expect("script");
        let mut bytes = None;
        for parallelism in ["1", "2", "4"] {
            let out = weir(
                &[
                    "run",
                    &format!("{q}.wsql"),
                    "--quiet",
                    "--parallelism",
                    parallelism,
                ],
                d,
            );
            assert!(out.status.success(), "{q}: {}", stderr(&out));
            let text = std::fs::read_to_string(d.join(format!("out/{q}.jsonl"))).expect("output");
            match &bytes {
                None => bytes = Some(text),
                Some(b) => assert!(
                    *b == text,
                    "{q}: parallelism {parallelism} writes what 1 does"
                ),
            }
        }
        let got = lines(&d.join(format!("out/{q}.jsonl")));
        let field = |v: &serde_json::Value, f: &str| v[f].as_i64().expect("a long");
        match q {
            "q0" => {
                assert_eq!(got.len(), prices.len());
                assert!(
                    got.iter()
                        .zip(&times)
                        .all(|(v, &t)| field(v, "date_time") == t)
                );
            }
            "q1" => {
                assert_eq!(got.len(), prices.len());
                // 0.908 is a decimal literal: the product is a decimal,
                // written as a double within its last bit or two.
                for (v, &p) in got.iter().zip(&prices) {
                    let want = 908.0 * p as f64 / 1000.0;
                    let have = v["price"].as_f64().expect("a number");
                    assert!((have - want).abs() <= want * 1e-15, "price {p}: {have}");
                }
            }
            "q2" => {
                let want: Vec<(i64, i64)> = auctions
                    .iter()
                    .zip(&prices)
                    .filter(|(a, _)| *a % 123 == 0)
                    .map(|(&a, &p)| (a, p))
                    .collect();
                let have: Vec<(i64, i64)> = got
                    .iter()
                    .map(|v| (field(v, "auction"), field(v, "price")))
                    .collect();
                assert!(!want.is_empty());
                assert_eq!(have, want);
            }
            "q5" => {
                // Per window of 10 s every 2 s: the most bids, the lowest id on ties.
                let mut counts: BTreeMap<(i64, i64), i64> = BTreeMap::new();
                for (&a, &t) in auctions.iter().zip(&times) {
                    let last = t / 2_000_000 * 2_000_000;
                    for k in 0..5 {
                        *counts.entry((last - k * 2_000_000, a)).or_default() += 1;
                    }
                }
                let mut want: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
                for ((w, a), n) in counts {
                    let best = want.entry(w).or_insert((a, n));
                    if n > best.1 {
                        *best = (a, n);
                    }
                }
                let have: BTreeMap<i64, (i64, i64)> = got
                    .iter()
                    .map(|v| (field(v, "_start"), (field(v, "auction"), field(v, "num"))))
                    .collect();
                assert_eq!(have, want);
            }
            "q7" => {
                // Per 10 s window: the highest price, the lowest other columns on ties.
                let mut want: BTreeMap<i64, (i64, i64, i64, i64)> = BTreeMap::new();
                for i in 0..prices.len() {
                    let w = times[i] / 10_000_000 * 10_000_000;
                    let row = (prices[i], -auctions[i], -bidders[i], -times[i]);
                    let best = want.entry(w).or_insert(row);
                    if row > *best {
                        *best = row;
                    }
                }
                let have: BTreeMap<i64, (i64, i64, i64, i64)> = got
                    .iter()
                    .map(|v| {
                        (
                            field(v, "_start"),
                            (
                                field(v, "price"),
                                -field(v, "auction"),
                                -field(v, "bidder"),
                                -field(v, "date_time"),
                            ),
                        )
                    })
                    .collect();
                assert_eq!(have, want);
            }
            "q3" => {
                // Auctions of category 10 whose seller, from OR, ID or CA,
                // registered no later than the auction.
                let (ids, names, cities, states, since) = (
                    column(&people, "id"),
                    column(&people, "name"),
                    column(&people, "city"),
                    column(&people, "state"),
                    column(&people, "date_time"),
                );
                let person: BTreeMap<&str, usize> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (id.as_str(), i))
                    .collect();
                let (auction, seller, category, at) = (
                    column(&sales, "id"),
                    column(&sales, "seller"),
                    column(&sales, "category"),
                    column(&sales, "date_time"),
                );
                let mut want = Vec::new();
                for a in 0..auction.len() {
                    let Some(&p) = person.get(seller[a].as_str()) else {
                        continue;
                    };
                    let since: i64 = since[p].parse().expect("time");
                    let at: i64 = at[a].parse().expect("time");
                    if category[a] == "10"
                        && ["OR", "ID", "CA"].contains(&states[p].as_str())
                        && since <= at
                    {
                        want.push(format!(
                            "{}|{}|{}|{}",
                            names[p], cities[p], states[p], auction[a]
                        ));
                    }
                }
                let mut have: Vec<String> = got
                    .iter()
                    .map(|v| {
                        format!(
                            "{}|{}|{}|{}",
                            v["name"].as_str().unwrap_or_default(),
                            v["city"].as_str().unwrap_or_default(),
                            v["state"].as_str().unwrap_or_default(),
                            field(v, "id")
                        )
                    })
                    .collect();
                want.sort();
                have.sort();
                assert!(!want.is_empty());
                assert_eq!(have, want);
            }
            "q8" => {
                // (window, id, name) of people who registered and opened
                // an auction in the same 10 s window.
                let window = |t: &str| t.parse::<i64>().expect("time") / 10_000_000 * 10_000_000;
                let sellers: std::collections::BTreeSet<(i64, String)> = column(&sales, "seller")
                    .into_iter()
                    .zip(column(&sales, "date_time"))
                    .map(|(s, t)| (window(&t), s))
                    .collect();
                let want: std::collections::BTreeSet<(i64, String, String)> = column(&people, "id")
                    .into_iter()
                    .zip(column(&people, "name"))
                    .zip(column(&people, "date_time"))
                    .map(|((id, name), t)| (window(&t), id, name))
                    .filter(|(w, id, _)| sellers.contains(&(*w, id.clone())))
                    .collect();
                let have: std::collections::BTreeSet<(i64, String, String)> = got
                    .iter()
                    .map(|v| {
                        assert_eq!(field(v, "_end"), field(v, "_start") + 10_000_000);
                        (
                            field(v, "_start"),
                            field(v, "id").to_string(),
                            v["name"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                assert_eq!(got.len(), have.len(), "each once");
                assert!(!want.is_empty());
                assert_eq!(have, want);
            }
            "q11" => {
                // Per bidder, sessions: a bid at t extends its session to
                // t + 1 + 10 s; a later bid before that end joins it.
                let mut open: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
                let mut want = Vec::new();
                for (&b, &t) in bidders.iter().zip(&times) {
                    match open.get_mut(&b) {
                        Some(s) if t < s.1 => {
                            s.1 = s.1.max(t + 1 + 10_000_000);
                            s.2 += 1;
                        }
                        _ => {
                            if let Some(done) = open.insert(b, (t, t + 1 + 10_000_000, 1)) {
                                want.push((done.0, done.1, b, done.2));
                            }
                        }
                    }
                }
                want.extend(open.into_iter().map(|(b, s)| (s.0, s.1, b, s.2)));
                let mut have: Vec<(i64, i64, i64, i64)> = got
                    .iter()
                    .map(|v| {
                        (
                            field(v, "_start"),
                            field(v, "_end"),
                            field(v, "bidder"),
                            field(v, "bid_count"),
                        )
                    })
                    .collect();
                want.sort();
                have.sort();
                assert_eq!(have, want);
            }
            "q12" => {
                let mut want: BTreeMap<(i64, i64), i64> = BTreeMap::new();
                for (&b, &t) in bidders.iter().zip(&times) {
                    *want.entry((t / 10_000_000 * 10_000_000, b)).or_default() += 1;
                }
                let have: BTreeMap<(i64, i64), i64> = got
                    .iter()
                    .map(|v| {
                        (
                            (field(v, "_start"), field(v, "bidder")),
                            field(v, "bid_count"),
                        )
                    })
                    .collect();
                assert_eq!(got.len(), have.len());
                assert_eq!(have, want);
            }
            _ => unreachable!(),
        }
    }
}
