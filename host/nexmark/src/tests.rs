//! The generator against the reference's rules, statistically on 1M events.

use std::collections::HashSet;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;

use super::*;

const EVENTS: u64 = 1_000_000;

fn generator() -> Generator {
    Generator::new(Config {
        events: EVENTS,
        ..Config::default()
    })
    .expect("config")
}

fn longs(b: &RecordBatch, name: &str) -> Vec<i64> {
    b.column_by_name(name)
        .expect("column")
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn texts(b: &RecordBatch, name: &str) -> Vec<String> {
    b.column_by_name(name)
        .expect("column")
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect()
}

fn share(hits: usize, of: usize) -> f64 {
    hits as f64 / of as f64
}

#[test]
fn kinds_come_in_the_proportions_1_3_46_and_ids_in_order() {
    let g = generator();
    let people = g.batch(Kind::Person, 0..EVENTS);
    let auctions = g.batch(Kind::Auction, 0..EVENTS);
    let bids = g.batch(Kind::Bid, 0..EVENTS);
    assert_eq!(people.num_rows(), 20_000);
    assert_eq!(auctions.num_rows(), 60_000);
    assert_eq!(bids.num_rows(), 920_000);
    let ids = longs(&people, "id");
    assert!(ids.iter().enumerate().all(|(i, &id)| id == 1000 + i as i64));
    let ids = longs(&auctions, "id");
    assert!(ids.iter().enumerate().all(|(i, &id)| id == 1000 + i as i64));
    // Event time: 1 µs apart at a million events per second.
    let times = longs(&bids, "date_time");
    assert!(times.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*times.last().expect("bids"), EVENTS as i64 - 1);
}

#[test]
fn hot_auctions_sellers_bidders_and_channels_take_their_shares() {
    let g = generator();
    let bids = g.batch(Kind::Bid, 0..EVENTS);
    let n = bids.num_rows();
    // Hot ids are multiples of 100 (from 1,000); an id drawn from the
    // recent ones is such a multiple about once in 100.
    let hot = |ids: &[i64], offset: i64| ids.iter().filter(|&&i| (i - offset) % 100 == 0).count();
    let auctions = longs(&bids, "auction");
    let a = share(hot(&auctions, 1000), n);
    assert!((0.50..0.52).contains(&a), "hot auctions {a}");
    let bidders = longs(&bids, "bidder");
    let b = share(hot(&bidders, 1001), n);
    assert!((0.75..0.77).contains(&b), "hot bidders {b}");
    let sellers = longs(&g.batch(Kind::Auction, 0..EVENTS), "seller");
    let s = share(hot(&sellers, 1000), sellers.len());
    assert!((0.74..0.77).contains(&s), "hot sellers {s}");
    let channels = texts(&bids, "channel");
    let hot_channels = channels
        .iter()
        .filter(|c| HOT_CHANNELS.contains(&c.as_str()))
        .count();
    let c = share(hot_channels, n);
    assert!((0.49..0.51).contains(&c), "hot channels {c}");
    let others: HashSet<&String> = channels
        .iter()
        .filter(|c| !HOT_CHANNELS.contains(&c.as_str()))
        .collect();
    assert!(
        others.len() > 9_900 && others.len() <= 10_000,
        "{}",
        others.len()
    );
    // A bid's auction is among the 110 latest (100 in flight, 10 ahead).
    let latest = |i: usize| 1000 + (i as i64 * 50 / 46) * 3 / 50;
    assert!(
        auctions
            .iter()
            .enumerate()
            .all(|(i, &a)| a <= latest(i) + 20 && a >= latest(i) - 120),
        "auctions far from the latest"
    );
}

#[test]
fn prices_are_log_uniform_and_sizes_near_their_averages() {
    let g = generator();
    let bids = g.batch(Kind::Bid, 0..EVENTS);
    let prices = longs(&bids, "price");
    assert!(prices.iter().all(|&p| (100..=100_000_000).contains(&p)));
    // log10(price in cents) is uniform over [2, 8]: a third below 10^4.
    let low = share(prices.iter().filter(|&&p| p < 10_000).count(), prices.len());
    assert!((0.33..0.34).contains(&low), "{low}");
    for (kind, average) in [
        (Kind::Person, 200.0),
        (Kind::Auction, 500.0),
        (Kind::Bid, 100.0),
    ] {
        let b = g.batch(kind, 0..200_000);
        let bytes: usize = b
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Int64 => 8 * c.len(),
                _ => c
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.map_or(0, str::len))
                    .sum(),
            })
            .sum();
        let mean = bytes as f64 / b.num_rows() as f64;
        assert!(
            (mean - average).abs() < average * 0.1,
            "{kind:?}: {mean} bytes"
        );
    }
}

#[test]
fn any_range_is_the_same_events_whatever_the_cut() {
    let g = generator();
    let whole = g.batch(Kind::Bid, 5_000..9_000);
    let parts = [
        g.batch(Kind::Bid, 5_000..6_123),
        g.batch(Kind::Bid, 6_123..9_000),
    ];
    let joined = arrow_select_concat(&parts);
    assert_eq!(whole, joined);
    // The same seed gives the same bytes; another seed other ones.
    assert_eq!(whole, generator().batch(Kind::Bid, 5_000..9_000));
    let other = Generator::new(Config {
        seed: 1,
        ..g.config().clone()
    })
    .expect("config");
    assert_ne!(whole, other.batch(Kind::Bid, 5_000..9_000));
    // Past the configured count, nothing.
    assert_eq!(g.batch(Kind::Bid, EVENTS..EVENTS + 10).num_rows(), 0);
}

fn arrow_select_concat(parts: &[RecordBatch]) -> RecordBatch {
    let schema = parts[0].schema();
    let columns = (0..schema.fields().len())
        .map(|i| {
            let arrays: Vec<&dyn Array> = parts.iter().map(|p| p.column(i).as_ref()).collect();
            match arrays[0].data_type() {
                DataType::Int64 => Arc::new(arrow_array::Int64Array::from_iter_values(
                    arrays
                        .iter()
                        .flat_map(|a| a.as_primitive::<Int64Type>().values().to_vec()),
                )) as ArrayRef,
                _ => {
                    let values: Vec<String> = arrays
                        .iter()
                        .flat_map(|a| {
                            a.as_string::<i32>()
                                .iter()
                                .map(|s| s.unwrap_or_default().to_string())
                        })
                        .collect();
                    Arc::new(arrow_array::StringArray::from_iter_values(values)) as ArrayRef
                }
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).expect("batch")
}

#[test]
fn out_of_order_groups_permute_ids_and_keep_times_increasing() {
    let g = Generator::new(Config {
        events: 10_000,
        out_of_order_group: 100,
        ..Config::default()
    })
    .expect("config");
    for group in 0..100u64 {
        let ids: HashSet<u64> = (group * 100..group * 100 + 100)
            .map(|n| g.id_of(n))
            .collect();
        let want: HashSet<u64> = (group * 100..group * 100 + 100).collect();
        assert_eq!(ids, want, "group {group} is a permutation");
    }
    assert!((0..100).any(|n| g.id_of(n) != n));
    let people = g.batch(Kind::Person, 0..10_000);
    assert_eq!(people.num_rows(), 200);
    let times = longs(&people, "date_time");
    assert!(times.windows(2).all(|w| w[0] < w[1]));
    for (bad, why) in [
        (
            Config {
                rate: 0,
                ..Config::default()
            },
            "rate must be at least 1",
        ),
        (
            Config {
                out_of_order_group: 1906,
                ..Config::default()
            },
            "multiple of 953",
        ),
        (
            Config {
                hot_bidder_ratio: 0,
                ..Config::default()
            },
            "hot_bidder_ratio",
        ),
    ] {
        let e = Generator::new(bad).expect_err("refused");
        assert!(e.contains(why), "{e}");
    }
}
