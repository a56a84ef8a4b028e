//! The Nexmark queries of `examples/nexmark/` beyond q0-q12's first set,
//! each run at parallelism 1, 2 and 4 (the same bytes) and checked against
//! what the query means over the generator's own rows, computed here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use serde_json::Value;
use weir_nexmark::{Config, Generator, Kind};

use super::{stderr, weir};

const EVENTS: u64 = 60_000;
const RATE: u64 = 2_000;
const SECOND: i64 = 1_000_000;

/// `examples/nexmark/{q}.wsql` in `dir` with its inputs' parameters
/// `params` (for `events => 1000000, rate => 10000`), its components
/// and side input where the example has them.
pub(crate) fn example(dir: &Path, q: &str, params: &str) {
    let root = super::repo_root().join("examples/nexmark");
    let text = std::fs::read_to_string(root.join(format!("{q}.wsql"))).expect("example");
    let mut text = text.replace("events => 1000000, rate => 10000", params);
    assert!(
        text.contains(params),
        "{q}: its inputs take the test's size"
    );
    let components = "../../udfs/target/wasm32-wasip2/release/";
    if let Some(at) = text.find(components) {
        let name = text[at + components.len()..]
            .split(".wasm")
            .next()
            .expect("a component file")
            .to_string();
        let built = super::udf_component(&name);
        let release = built.parent().expect("release dir");
        text = text.replace(components, &format!("{}/", release.display()));
    }
    if text.contains("side_input.csv") {
        std::fs::copy(root.join("side_input.csv"), dir.join("side_input.csv")).expect("copy");
    }
    std::fs::write(dir.join(format!("{q}.wsql")), text).expect("script");
    std::fs::create_dir_all(dir.join("out")).expect("out");
}

/// Runs `q` at parallelism 1, 2 and 4: the same bytes each time; its rows.
fn run(dir: &Path, q: &str) -> Vec<Value> {
    example(dir, q, &format!("events => {EVENTS}, rate => {RATE}"));
    let mut first: Option<String> = None;
    for p in ["1", "2", "4"] {
        let out = weir(
            &["run", &format!("{q}.wsql"), "--quiet", "--parallelism", p],
            dir,
        );
        assert!(out.status.success(), "{q} at {p}: {}", stderr(&out));
        let text = std::fs::read_to_string(dir.join(format!("out/{q}.jsonl"))).expect("output");
        match &first {
            None => first = Some(text),
            Some(f) => assert!(*f == text, "{q}: parallelism {p} writes what 1 does"),
        }
    }
    let rows: Vec<Value> = first
        .expect("a run")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert!(!rows.is_empty(), "{q} has output");
    rows
}

/// A generated stream's columns by name.
struct Table(RecordBatch);

impl Table {
    fn long(&self, name: &str) -> Vec<i64> {
        let c = self.0.column_by_name(name).expect("column");
        c.as_primitive::<Int64Type>().values().to_vec()
    }

    fn text(&self, name: &str) -> Vec<String> {
        let c = self.0.column_by_name(name).expect("column");
        c.as_string::<i32>()
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect()
    }
}

fn long(v: &Value, f: &str) -> i64 {
    v[f].as_i64()
        .unwrap_or_else(|| panic!("`{f}` is a long in {v}"))
}

fn text(v: &Value, f: &str) -> String {
    v[f].as_str()
        .unwrap_or_else(|| panic!("`{f}` is a string in {v}"))
        .to_string()
}

fn double(v: &Value, f: &str) -> f64 {
    v[f].as_f64()
        .unwrap_or_else(|| panic!("`{f}` is a number in {v}"))
}

/// `a` and `b` within a few units in the last place.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= a.abs().max(b.abs()) * 1e-12
}

/// The bids' price ranks of q15-q17: below $100, below $10,000, the rest.
fn rank(price: i64) -> usize {
    match price {
        p if p < 10_000 => 0,
        p if p < 1_000_000 => 1,
        _ => 2,
    }
}

#[test]
fn every_nexmark_query_answers_what_the_generators_rows_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let generator = Generator::new(Config {
        events: EVENTS,
        rate: RATE,
        ..Config::default()
    })
    .expect("config");
    let bid = Table(generator.batch(Kind::Bid, 0..EVENTS));
    let sale = Table(generator.batch(Kind::Auction, 0..EVENTS));
    let (auction, bidder, price, time) = (
        bid.long("auction"),
        bid.long("bidder"),
        bid.long("price"),
        bid.long("date_time"),
    );
    let (channel, url, extra) = (bid.text("channel"), bid.text("url"), bid.text("extra"));
    let n = price.len();
    let (id, seller, category) = (sale.long("id"), sale.long("seller"), sale.long("category"));
    let (opened, expires) = (sale.long("date_time"), sale.long("expires"));
    // Each auction's bids placed while it ran: (auction index, bid index).
    let by_id: BTreeMap<i64, usize> = id.iter().enumerate().map(|(i, &a)| (a, i)).collect();
    let during: Vec<(usize, usize)> = (0..n)
        .filter_map(|b| {
            let &a = by_id.get(&auction[b])?;
            (opened[a] <= time[b] && time[b] < expires[a]).then_some((a, b))
        })
        .collect();
    // The highest price of each auction with such bids.
    let mut finals: BTreeMap<usize, i64> = BTreeMap::new();
    for &(a, b) in &during {
        let f = finals.entry(a).or_insert(price[b]);
        *f = (*f).max(price[b]);
    }

    // q1_wasm: the price rounded once from the exact product; q2_wasm: q2's bytes.
    let rows = run(d, "q1_wasm");
    assert_eq!(rows.len(), n);
    for (b, v) in rows.iter().enumerate() {
        let want = (price[b] as i128 * 908) as f64 / 1000.0;
        assert_eq!(double(v, "price").to_bits(), want.to_bits(), "{v}");
        assert_eq!(
            (long(v, "auction"), text(v, "extra")),
            (auction[b], extra[b].clone())
        );
    }
    run(d, "q2");
    let q2 = std::fs::read_to_string(d.join("out/q2.jsonl")).expect("q2");
    run(d, "q2_wasm");
    let q2_wasm = std::fs::read_to_string(d.join("out/q2_wasm.jsonl")).expect("q2_wasm");
    assert!(q2 == q2_wasm, "the Wasm filter keeps what the WHERE keeps");

    // q4: per category and 10 s of closing, the mean final price.
    let mut want: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for (&a, &f) in &finals {
        let w = expires[a] / (10 * SECOND) * (10 * SECOND);
        let e = want.entry((w, category[a])).or_default();
        e.0 += f;
        e.1 += 1;
    }
    let rows = run(d, "q4");
    assert_eq!(rows.len(), want.len());
    for v in &rows {
        let (sum, count) = want[&(long(v, "_start"), long(v, "category"))];
        assert!(
            close(double(v, "avg_price"), sum as f64 / count as f64),
            "{v}"
        );
    }

    // q6: per seller, the mean of its last ten final prices, in closing order.
    let mut closing: Vec<(i64, usize)> = finals.keys().map(|&a| (expires[a] / SECOND, a)).collect();
    closing.sort();
    let rows = run(d, "q6");
    assert_eq!(
        rows.len(),
        finals.len(),
        "a row per closed auction with bids"
    );
    let mut per_seller: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for v in &rows {
        per_seller.entry(long(v, "seller")).or_default().push(v);
    }
    let mut sold: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for &(second, a) in &closing {
        sold.entry(seller[a])
            .or_default()
            .push((second, finals[&a]));
    }
    for (s, prices) in &sold {
        let got = &per_seller[s];
        assert_eq!(got.len(), prices.len(), "seller {s}");
        // Auctions closing in the same second come in the engine's order;
        // where they do not, the averages are the reference's.
        if prices.windows(2).all(|w| w[0].0 != w[1].0) {
            for (k, v) in got.iter().enumerate() {
                let last = &prices[k.saturating_sub(9)..=k];
                let mean = last.iter().map(|p| p.1).sum::<i64>() as f64 / last.len() as f64;
                assert!(close(double(v, "avg_price"), mean), "seller {s}: {v}");
                assert_eq!(long(v, "auctions"), last.len() as i64);
            }
        }
    }

    // q7_median: per 10 s window, the highest price and the median.
    let mut windows: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for b in 0..n {
        windows
            .entry(time[b] / (10 * SECOND) * (10 * SECOND))
            .or_default()
            .push(price[b]);
    }
    let rows = run(d, "q7_median");
    assert_eq!(rows.len(), windows.len());
    for v in &rows {
        let mut p = windows[&long(v, "_start")].clone();
        p.sort();
        let m = p.len() / 2;
        let median = if p.len() % 2 == 1 {
            p[m] as f64
        } else {
            (p[m - 1] as f64 + p[m] as f64) / 2.0
        };
        assert_eq!(long(v, "max_price"), *p.last().expect("bids"));
        assert_eq!(double(v, "median_price"), median, "{v}");
    }

    // q9: each auction's highest bid while it ran, ties by the earliest.
    let mut winners: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    for &(a, b) in &during {
        let row = (price[b], -time[b], -bidder[b]);
        let w = winners.entry(id[a]).or_insert(row);
        if row > *w {
            *w = row;
        }
    }
    let rows = run(d, "q9");
    let got: BTreeMap<i64, (i64, i64, i64)> = rows
        .iter()
        .map(|v| {
            let row = (long(v, "price"), -long(v, "bid_time"), -long(v, "bidder"));
            (long(v, "id"), row)
        })
        .collect();
    assert_eq!(got, winners);

    // q10: day and minute of each bid (the generator starts at 1970-01-01).
    let rows = run(d, "q10");
    assert_eq!(rows.len(), n);
    for (b, v) in rows.iter().enumerate() {
        let minute = time[b] / (60 * SECOND);
        assert_eq!(text(v, "dt"), "1970-01-01");
        assert_eq!(
            text(v, "hm"),
            format!("{:02}:{:02}", minute / 60, minute % 60)
        );
    }

    // q13: each bid with its side input row.
    let rows = run(d, "q13");
    assert_eq!(rows.len(), n);
    for (b, v) in rows.iter().enumerate() {
        assert_eq!(long(v, "auction"), auction[b]);
        assert_eq!(text(v, "value"), (auction[b] % 10_000).to_string());
    }

    // q14: bids between 1,000,000 and 50,000,000 cents in euros, their
    // time of day and the `c`s of their extra field.
    let kept: Vec<usize> = (0..n)
        .filter(|&b| {
            let eur = price[b] as f64 * 0.908;
            eur > 1_000_000.0 && eur < 50_000_000.0
        })
        .collect();
    let rows = run(d, "q14");
    assert_eq!(rows.len(), kept.len());
    for (v, &b) in rows.iter().zip(&kept) {
        let hour = time[b] / (3600 * SECOND) % 24;
        let kind = match hour {
            8..=18 => "dayTime",
            h if h <= 6 || h >= 20 => "nightTime",
            _ => "otherTime",
        };
        assert_eq!(long(v, "auction"), auction[b]);
        assert_eq!(text(v, "bid_time_type"), kind);
        assert_eq!(long(v, "c_counts"), extra[b].matches('c').count() as i64);
    }

    // q15 and q16: per day (and channel), bids, bidders and auctions, all
    // and per rank.
    #[derive(Default, PartialEq, Debug)]
    struct Day {
        bids: [i64; 4],
        bidders: [BTreeSet<i64>; 4],
        auctions: [BTreeSet<i64>; 4],
        minute: i64,
    }
    let mut days: BTreeMap<String, Day> = BTreeMap::new();
    for b in 0..n {
        for key in [String::new(), channel[b].clone()] {
            let day = days.entry(key).or_default();
            for k in [0, 1 + rank(price[b])] {
                day.bids[k] += 1;
                day.bidders[k].insert(bidder[b]);
                day.auctions[k].insert(auction[b]);
            }
            day.minute = day.minute.max(time[b] / (60 * SECOND) % 1440);
        }
    }
    let check_day = |v: &Value, day: &Day| {
        let names = ["total", "rank1", "rank2", "rank3"];
        for (k, name) in names.iter().enumerate() {
            assert_eq!(long(v, &format!("{name}_bids")), day.bids[k], "{v}");
            assert_eq!(
                long(v, &format!("{name}_bidders")),
                day.bidders[k].len() as i64
            );
            assert_eq!(
                long(v, &format!("{name}_auctions")),
                day.auctions[k].len() as i64
            );
        }
    };
    let rows = run(d, "q15");
    assert_eq!(rows.len(), 1, "one day");
    check_day(&rows[0], &days[""]);
    let rows = run(d, "q16");
    assert_eq!(rows.len(), days.len() - 1, "a row per channel");
    for v in &rows {
        let day = &days[&text(v, "channel")];
        check_day(v, day);
        assert_eq!(long(v, "minute"), day.minute);
    }

    // q17: per auction, its bids per rank and the price's min, max, mean, sum.
    let mut stats: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for b in 0..n {
        stats.entry(auction[b]).or_default().push(price[b]);
    }
    let rows = run(d, "q17");
    assert_eq!(rows.len(), stats.len());
    for v in &rows {
        let p = &stats[&long(v, "auction")];
        let sum: i64 = p.iter().sum();
        assert_eq!(long(v, "total_bids"), p.len() as i64);
        for (k, name) in ["rank1", "rank2", "rank3"].iter().enumerate() {
            let count = p.iter().filter(|&&x| rank(x) == k).count() as i64;
            assert_eq!(long(v, &format!("{name}_bids")), count, "{v}");
        }
        assert_eq!(long(v, "min_price"), *p.iter().min().expect("bids"));
        assert_eq!(long(v, "max_price"), *p.iter().max().expect("bids"));
        assert_eq!(long(v, "sum_price"), sum);
        assert!(close(double(v, "avg_price"), sum as f64 / p.len() as f64));
    }

    // q18: per 10 s window, bidder and auction, the last bid (ties: the
    // lowest price); q19: per window and auction, the ten highest prices.
    let window = |b: usize| time[b] / (10 * SECOND) * (10 * SECOND);
    let mut last: BTreeMap<(i64, i64, i64), (i64, i64)> = BTreeMap::new();
    let mut top: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
    for b in 0..n {
        let row = (time[b], -price[b]);
        let l = last
            .entry((window(b), bidder[b], auction[b]))
            .or_insert(row);
        if row > *l {
            *l = row;
        }
        top.entry((window(b), auction[b]))
            .or_default()
            .push(price[b]);
    }
    let rows = run(d, "q18");
    let got: BTreeMap<(i64, i64, i64), (i64, i64)> = rows
        .iter()
        .map(|v| {
            let key = (long(v, "_start"), long(v, "bidder"), long(v, "auction"));
            (key, (long(v, "date_time"), -long(v, "price")))
        })
        .collect();
    assert_eq!(
        rows.len(),
        got.len(),
        "one row per window, bidder and auction"
    );
    assert_eq!(got, last);
    for p in top.values_mut() {
        p.sort_by(|a, b| b.cmp(a));
        p.truncate(10);
    }
    let rows = run(d, "q19");
    let mut got: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
    for v in &rows {
        let key = (long(v, "_start"), long(v, "auction"));
        got.entry(key).or_default().push(long(v, "price"));
    }
    for p in got.values_mut() {
        p.sort_by(|a, b| b.cmp(a));
    }
    assert_eq!(got, top);

    // q20: bids on auctions of category 10 while they ran.
    let mut want: Vec<(i64, i64, i64, i64)> = during
        .iter()
        .filter(|(a, _)| category[*a] == 10)
        .map(|&(a, b)| (time[b], auction[b], price[b], seller[a]))
        .collect();
    want.sort();
    let rows = run(d, "q20");
    let mut got: Vec<(i64, i64, i64, i64)> = rows
        .iter()
        .map(|v| {
            let row = (long(v, "date_time"), long(v, "auction"), long(v, "price"));
            (row.0, row.1, row.2, long(v, "seller"))
        })
        .collect();
    got.sort();
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // q21: the hot channels' ids, or the URL's channel_id.
    let rows = run(d, "q21");
    let hot = ["apple", "google", "facebook", "baidu"];
    let want: Vec<(i64, String)> = (0..n)
        .filter_map(|b| {
            let name = channel[b].to_lowercase();
            let in_url = url[b]
                .split_once("channel_id=")
                .map(|(_, r)| r.split('&').next().unwrap_or_default().to_string())
                .unwrap_or_default();
            match hot.iter().position(|h| *h == name) {
                Some(i) => Some((auction[b], i.to_string())),
                None => (!in_url.is_empty()).then_some((auction[b], in_url)),
            }
        })
        .collect();
    let got: Vec<(i64, String)> = rows
        .iter()
        .map(|v| (long(v, "auction"), text(v, "channel_id")))
        .collect();
    assert_eq!(got, want);

    // q22: the URL's first three directories.
    let rows = run(d, "q22");
    assert_eq!(rows.len(), n);
    for (b, v) in rows.iter().enumerate() {
        let parts: Vec<&str> = url[b].split('/').collect();
        let dirs = [text(v, "dir1"), text(v, "dir2"), text(v, "dir3")];
        assert_eq!(dirs, [parts[3], parts[4], parts[5]], "{}", url[b]);
    }
}
