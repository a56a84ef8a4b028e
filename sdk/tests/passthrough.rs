//! Output columns that pass an input column through unchanged go back as a
//! reference to it (`output-column::input`), and the first value that differs
//! makes the column written, with the same rows either way.

use weir_sdk::testing::Harness;
use weir_sdk::wit::weir::udf::types::{Batch, Output, OutputColumn, Values};
use weir_sdk::{Row, encode_rows, run};

#[derive(Row, Clone, Debug, PartialEq)]
struct Bid<'a> {
    auction: i64,
    price: f64,
    currency: &'a str,
    channel: &'a str,
    note: Option<&'a str>,
}

#[derive(Row, Clone, Debug, PartialEq)]
struct Priced<'a> {
    auction: i64,
    eur: f64,
    channel: &'a str,
    note: Option<&'a str>,
}

fn bids() -> Vec<Bid<'static>> {
    (0..20)
        .map(|i| Bid {
            auction: i * 3,
            price: i as f64 * 1.5,
            currency: ["USD", "EUR"][i as usize % 2],
            channel: ["web", "app", "partner"][i as usize % 3],
            note: (i % 4 != 0).then_some(["ünï", "", "x"][i as usize % 3]),
        })
        .collect()
}

fn batch(rows: Vec<Bid<'static>>) -> Batch {
    let (count, columns) = encode_rows(rows);
    Batch {
        rows: count as u32,
        start: (0..count as i64).collect(),
        end: (1..=count as i64).collect(),
        columns,
    }
}

/// Which output columns went back as which input column (`None`: written).
fn kinds(out: &Output) -> Vec<Option<u32>> {
    out.columns
        .iter()
        .map(|c| match c {
            OutputColumn::Input(i) => Some(*i),
            OutputColumn::Written(_) => None,
        })
        .collect()
}

fn to_eur(b: Bid<'_>) -> Option<Priced<'_>> {
    (b.price >= 3.0).then(|| Priced {
        auction: b.auction,
        eur: b.price * if b.currency == "USD" { 0.92 } else { 1.0 },
        channel: b.channel,
        note: b.note,
    })
}

#[test]
fn unchanged_columns_go_back_as_input_columns() {
    let input = batch(bids());
    let out = run::flat_map(to_eur, &input).unwrap();
    // Input columns: auction 0, price 1, currency 2, channel 3, note 4.
    assert_eq!(kinds(&out), vec![Some(0), None, Some(3), Some(4)]);
    assert_eq!(out.parents, (2..20).collect::<Vec<u32>>());
    // The harness assembles them as the host does.
    let expected: Vec<Priced<'_>> = bids().into_iter().filter_map(to_eur).collect();
    assert_eq!(Harness::new().flat_map(to_eur, bids()).unwrap(), expected);
}

/// Changes `auction` of row 13 only, and `note` where it was null.
fn touch(b: Bid<'_>) -> Priced<'_> {
    Priced {
        auction: if b.auction == 39 { -1 } else { b.auction },
        eur: b.price,
        channel: b.channel,
        note: b.note.or(Some("filled")),
    }
}

#[test]
fn a_value_that_differs_writes_the_column_with_the_rows_before_it() {
    let input = batch(bids());
    let out = run::map(touch, &input).unwrap();
    assert_eq!(kinds(&out), vec![None, None, Some(3), None]);
    let OutputColumn::Written(auction) = &out.columns[0] else {
        unreachable!()
    };
    let mut expected: Vec<i64> = (0..20).map(|i| i * 3).collect();
    expected[13] = -1;
    assert_eq!(auction.values, Values::Int64(expected));
    let expected: Vec<Priced<'_>> = bids().into_iter().map(touch).collect();
    assert_eq!(Harness::new().map(touch, bids()).unwrap(), expected);
}

#[derive(Row, Clone, Debug, PartialEq)]
struct Renamed<'a> {
    /// Same name as an input column, another type: never passed through.
    price: i64,
    channel: &'a str,
}

/// Repeats each row, once with `channel` borrowed from it and once with equal
/// bytes from elsewhere.
fn repeat(b: Bid<'_>) -> [Renamed<'_>; 2] {
    let copy: &'static str = Box::leak(b.channel.to_string().into_boxed_str());
    [
        Renamed {
            price: b.price as i64,
            channel: b.channel,
        },
        Renamed {
            price: 0,
            channel: copy,
        },
    ]
}

#[test]
fn a_column_of_another_type_is_written_and_equal_bytes_pass_through() {
    let input = batch(bids());
    let out = run::flat_map(repeat, &input).unwrap();
    assert_eq!(kinds(&out), vec![None, Some(3)]);
    assert_eq!(out.parents.len(), 40);
    assert_eq!(
        Harness::new().flat_map(repeat, bids()).unwrap(),
        bids().into_iter().flat_map(repeat).collect::<Vec<_>>()
    );
}

#[derive(Row, Clone, Debug, PartialEq)]
struct Price {
    price: f64,
}

#[test]
fn floats_pass_through_only_when_bit_identical() {
    let zero = |b: Bid<'_>| Price {
        price: if b.price == 0.0 { -0.0 } else { b.price },
    };
    let out = run::map(zero, &batch(bids())).unwrap();
    assert_eq!(kinds(&out), vec![None]);
    let same = |b: Bid<'_>| Price { price: b.price };
    let out = run::map(same, &batch(bids())).unwrap();
    assert_eq!(kinds(&out), vec![Some(1)]);
}

#[test]
fn an_empty_output_passes_through_too() {
    let none = |_: Bid<'_>| None::<Priced<'_>>;
    let out = run::flat_map(none, &batch(bids())).unwrap();
    assert!(out.parents.is_empty());
    assert_eq!(kinds(&out), vec![Some(0), None, Some(3), Some(4)]);
}

#[derive(Row, Clone, Debug, PartialEq)]
struct Expanded {
    auction: i64,
    label: String,
    note: Option<String>,
}

/// 0 to 4 rows per input row (more than the batch's rows in all), labels of
/// every length up to 40 bytes, and `auction` passed through until row 17.
fn expand(b: Bid<'_>) -> Vec<Expanded> {
    let n = (b.auction / 3) as usize;
    (0..n % 5)
        .map(|k| Expanded {
            auction: if n >= 17 { -b.auction } else { b.auction },
            label: "é".repeat((n * 7 + k * 3) % 21),
            note: (k % 2 == 0).then(|| format!("{}#{k}", b.channel)),
        })
        .collect()
}

#[test]
fn outputs_that_outgrow_the_batch_keep_every_row() {
    let out = run::flat_map(expand, &batch(bids())).unwrap();
    let expected: Vec<Expanded> = bids().into_iter().flat_map(expand).collect();
    assert!(expected.len() > 20, "outgrows the batch");
    assert_eq!(out.parents.len(), expected.len());
    assert_eq!(kinds(&out), vec![None, None, None]);
    assert_eq!(Harness::new().flat_map(expand, bids()).unwrap(), expected);
}
