//! Tests of the windowed aggregate.
use super::*;
use arrow_array::{Float64Array, StringArray};
use proptest::prelude::*;

fn input() -> SchemaRef {
    Arc::new(Schema::new(vec![
        ArrowField::new(START, DataType::Int64, false),
        ArrowField::new(END, DataType::Int64, false),
        ArrowField::new("user", DataType::Utf8, false),
        ArrowField::new("amount", DataType::Int64, true),
        ArrowField::new("price", DataType::Float64, true),
    ]))
}

/// Events `(start, end, user, amount, price)`.
type Event = (i64, i64, String, Option<i64>, Option<f64>);

fn batch(events: &[Event]) -> RecordBatch {
    RecordBatch::try_new(
        input(),
        vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.0))),
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.1))),
            Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| e.2.clone()),
            )),
            Arc::new(Int64Array::from_iter(events.iter().map(|e| e.3))),
            Arc::new(Float64Array::from_iter(events.iter().map(|e| e.4))),
        ],
    )
    .expect("batch")
}

fn point(t: i64, user: &str, amount: Option<i64>) -> Event {
    (
        t,
        t + 1,
        user.to_string(),
        amount,
        amount.map(|a| a as f64 / 2.0),
    )
}

fn all_aggregates() -> Vec<Aggregate> {
    let agg = Aggregate::builtin;
    vec![
        agg(AggKind::CountStar, None, "n"),
        agg(AggKind::Count, Some(3), "amounts"),
        agg(AggKind::CountDistinct, Some(3), "distinct"),
        agg(AggKind::Sum, Some(3), "total"),
        agg(AggKind::Min, Some(3), "least"),
        agg(AggKind::Max, Some(4), "top_price"),
        agg(AggKind::Avg, Some(3), "mean"),
        agg(AggKind::Max, Some(2), "last_user"),
    ]
}

/// The output rows as text, one per line.
fn lines(batch: &RecordBatch) -> Vec<String> {
    crate::stage::row_json(batch)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_tumbling_count_per_user_goes_out_when_a_cti_closes_the_window() {
    let w = Hopping::tumbling(10).expect("window");
    let mut agg = WindowAggregate::new(&input(), w, vec![2], all_aggregates()).expect("agg");
    agg.on_batch(&batch(&[
        point(1, "bo", Some(4)),
        point(3, "al", Some(2)),
        point(9, "bo", None),
        point(9, "bo", Some(4)),
        point(12, "al", Some(7)),
    ]))
    .expect("batch");
    let (none, pass) = agg.on_cti(9).expect("cti");
    assert!(none.is_none(), "no window ended by 9");
    assert_eq!(pass, 0, "the open window [0, 10) may still go out");
    let (out, pass) = agg.on_cti(10).expect("cti");
    assert_eq!(pass, 10);
    let out = lines(&out.expect("window [0, 10)"));
    assert_eq!(
        out,
        [
            r#"{"_start":0,"_end":10,"user":"al","n":1,"amounts":1,"distinct":1,"total":2,"least":2,"top_price":1.0,"mean":2.0,"last_user":"al"}"#,
            r#"{"_start":0,"_end":10,"user":"bo","n":3,"amounts":2,"distinct":1,"total":8,"least":4,"top_price":2.0,"mean":4.0,"last_user":"bo"}"#,
        ]
    );
    let (out, _) = agg.on_cti(i64::MAX).expect("end");
    assert_eq!(lines(&out.expect("window [10, 20)")).len(), 1);
    assert_eq!(
        agg.open(),
        (0, 0),
        "nothing is kept after the windows went out"
    );
}

#[test]
fn a_hopping_window_counts_every_event_whose_lifetime_overlaps_it() {
    let w = Hopping::new(10, 5).expect("window");
    let aggs = vec![Aggregate::builtin(AggKind::CountStar, None, "n")];
    let mut agg = WindowAggregate::new(&input(), w, vec![], aggs).expect("agg");
    // A point at 7 is in [0, 10) and [5, 15); [12, 18) in [5, 15),
    // [10, 20) and [15, 25).
    agg.on_batch(&batch(&[
        point(7, "a", None),
        (12, 18, "a".into(), None, None),
    ]))
    .expect("batch");
    let (out, pass) = agg.on_cti(30).expect("cti");
    assert_eq!(pass, 25, "the window [25, 35) may still get events");
    assert_eq!(
        lines(&out.expect("windows")),
        [
            r#"{"_start":0,"_end":10,"n":1}"#,
            r#"{"_start":5,"_end":15,"n":2}"#,
            r#"{"_start":10,"_end":20,"n":1}"#,
            r#"{"_start":15,"_end":25,"n":1}"#,
        ]
    );
}

#[test]
fn aggregates_that_do_not_fit_their_column_are_refused() {
    let w = Hopping::tumbling(10).expect("window");
    let sum_text = vec![Aggregate::builtin(AggKind::Sum, Some(2), "s")];
    let e = WindowAggregate::new(&input(), w, vec![], sum_text).expect_err("sum of text");
    assert_eq!(
        e.to_string(),
        "SUM of column `user` (Utf8): needs an int64 or float64 column"
    );
    let e = WindowAggregate::new(&input(), w, vec![9], vec![]).expect_err("no column 9");
    assert_eq!(e.to_string(), "column 9 is not in the input");
}

#[test]
fn an_int64_sum_that_overflows_says_where() {
    let w = Hopping::tumbling(10).expect("window");
    let sum = vec![Aggregate::builtin(AggKind::Sum, Some(3), "total")];
    let mut agg = WindowAggregate::new(&input(), w, vec![], sum).expect("agg");
    let e = agg
        .on_batch(&batch(&[
            point(1, "a", Some(i64::MAX)),
            point(2, "a", Some(1)),
        ]))
        .expect_err("overflow");
    assert_eq!(
        e.to_string(),
        "SUM into `total` overflowed int64 in window [0, 10)"
    );
}

/// What the operator must emit, computed the obvious way: every window
/// that any event overlaps and that a CTI closed, every group in it.
fn reference(
    w: Hopping,
    events: &[(Event, usize)],
    cti: i64,
) -> BTreeMap<(i64, String), (i64, i64)> {
    let mut out: BTreeMap<(i64, String), (i64, i64)> = BTreeMap::new();
    for (e, _) in events {
        for k in -100..100 {
            let start = k * w.hop();
            if start < e.1 && start + w.size() > e.0 && start + w.size() <= cti {
                let g = out.entry((start, e.2.clone())).or_default();
                g.0 += 1;
                g.1 += e.3.unwrap_or(0);
            }
        }
    }
    out
}

fn event() -> impl Strategy<Value = Event> {
    (
        0i64..60,
        1i64..15,
        0usize..3,
        proptest::option::of(-50i64..50),
    )
        .prop_map(|(start, len, user, amount)| {
            (
                start,
                start + len,
                ["al", "bo", "cy"][user].to_string(),
                amount,
                None,
            )
        })
}

proptest! {
    /// Against the reference, with the events cut into batches, CTIs in
    /// between, and a restart from a checkpoint at any CTI: the same
    /// windows, groups, counts and sums, each once, in order.
    #[test]
    fn windows_match_the_reference_across_a_restart(
        size in 1i64..12,
        hop_part in 1i64..12,
        mut events in prop::collection::vec(event(), 0..40),
        cut in 0usize..8,
    ) {
        let w = Hopping::new(size, hop_part.min(size)).expect("window");
        events.sort_by_key(|e| e.0);
        let aggs = vec![
            Aggregate::builtin(AggKind::CountStar, None, "n"),
            Aggregate::builtin(AggKind::Sum, Some(3), "total"),
        ];
        let mut agg = WindowAggregate::new(&input(), w, vec![2], aggs.clone()).expect("agg");
        let mut kept = KeyedState::new();
        let mut got: Vec<(i64, String, i64, i64)> = Vec::new();
        let mut last_pass = i64::MIN;
        // A CTI every 8 time units, events between them in one batch.
        let mut ctis = 0usize;
        let mut i = 0;
        for t in (8..=80).step_by(8).chain([i64::MAX]) {
            let mut part = Vec::new();
            while i < events.len() && events[i].0 < t {
                part.push(events[i].clone());
                i += 1;
            }
            agg.on_batch(&batch(&part)).expect("batch");
            let (out, pass) = agg.on_cti(t).expect("cti");
            prop_assert!(pass >= last_pass, "the CTI passed on never goes back");
            let promised = last_pass;
            last_pass = pass;
            if let Some(out) = out {
                for line in lines(&out) {
                    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
                    let start = v["_start"].as_i64().expect("start");
                    // The output keeps the CTI passed on before it.
                    prop_assert!(start >= promised, "{} after CTI {}", line, promised);
                    got.push((
                        start,
                        v["user"].as_str().expect("user").to_string(),
                        v["n"].as_i64().expect("n"),
                        v["total"].as_i64().unwrap_or(0),
                    ));
                }
            }
            // A checkpoint, as the vertex keeps it.
            for (key, value) in agg.take_delta() {
                match value {
                    Some(v) => {
                        kept.insert(key, crate::udf::decode_entry(&v).expect("entry"));
                    }
                    None => {
                        kept.remove(&key);
                    }
                }
            }
            ctis += 1;
            if ctis == cut {
                // Crash after this checkpoint: a fresh operator takes it back.
                agg = WindowAggregate::new(&input(), w, vec![2], aggs.clone()).expect("agg");
                agg.restore(&kept).expect("restore");
            }
        }
        let want = reference(w, &events.iter().cloned().map(|e| (e, 0)).collect::<Vec<_>>(), i64::MAX);
        let want: Vec<(i64, String, i64, i64)> =
            want.into_iter().map(|((s, u), (n, t))| (s, u, n, t)).collect();
        prop_assert_eq!(got, want);
        prop_assert!(
            kept.keys().all(|k| k.as_slice() == super::super::CTI_KEY),
            "every window went out: nothing kept but the CTI"
        );
    }
}

/// A user-defined aggregate run natively: the sum of an int64 argument,
/// its accumulator the sum's bytes; counts its calls and rows, and refuses
/// a batch with a negative value.
struct NativeSum {
    calls: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl crate::temporal::UserAggregate for NativeSum {
    fn accumulate(
        &mut self,
        accs: &[Vec<u8>],
        args: &RecordBatch,
        groups: &[u32],
    ) -> Result<Vec<Vec<u8>>, String> {
        self.calls.lock().expect("calls").push(groups.len());
        let mut sums: Vec<i64> = accs.iter().map(|b| decode_sum(b)).collect();
        let values = args
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64 argument after the interval");
        for (i, &g) in groups.iter().enumerate() {
            if values.value(i) < 0 {
                return Err(format!("negative value at row {i}"));
            }
            sums[g as usize] += values.value(i);
        }
        Ok(sums.iter().map(|s| s.to_le_bytes().to_vec()).collect())
    }

    fn merge(&mut self, into: &[Vec<u8>], from: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String> {
        Ok(into
            .iter()
            .zip(from)
            .map(|(a, b)| (decode_sum(a) + decode_sum(b)).to_le_bytes().to_vec())
            .collect())
    }

    fn finish(&mut self, accs: &[Vec<u8>]) -> Result<ArrayRef, String> {
        Ok(Arc::new(Int64Array::from_iter_values(
            accs.iter().map(|b| decode_sum(b)),
        )))
    }
}

fn decode_sum(bytes: &[u8]) -> i64 {
    bytes.try_into().map_or(0, i64::from_le_bytes)
}

fn native_sum(calls: Arc<std::sync::Mutex<Vec<usize>>>) -> Aggregate {
    let function = crate::temporal::UserFunction {
        name: "NativeSum".into(),
        module: "native".into(),
        returns: DataType::Int64,
        nullable: false,
        make: Arc::new(move || {
            Ok(Box::new(NativeSum {
                calls: calls.clone(),
            }) as Box<dyn crate::temporal::UserAggregate>)
        }),
    };
    Aggregate::user(function, vec![3], "usum")
}

#[test]
fn a_user_aggregate_gets_one_call_per_batch_and_its_accumulators_survive_a_restart() {
    let w = Hopping::new(10, 5).expect("window");
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let aggs = vec![
        Aggregate::builtin(AggKind::Sum, Some(3), "total"),
        native_sum(calls.clone()),
    ];
    let mut agg = WindowAggregate::new(&input(), w, vec![2], aggs.clone()).expect("agg");
    // Three rows, each in two hopping windows: one call with six rows.
    agg.on_batch(&batch(&[
        point(6, "al", Some(1)),
        point(7, "bo", Some(2)),
        point(8, "al", Some(4)),
    ]))
    .expect("batch");
    assert_eq!(*calls.lock().expect("calls"), [6]);
    let (out, _) = agg.on_cti(10).expect("cti");
    let mut kept = KeyedState::new();
    for (key, value) in agg.take_delta() {
        if let Some(v) = value {
            kept.insert(key, crate::udf::decode_entry(&v).expect("entry"));
        }
    }
    assert_eq!(
        lines(&out.expect("window [0, 10)")),
        [
            r#"{"_start":0,"_end":10,"user":"al","total":5,"usum":5}"#,
            r#"{"_start":0,"_end":10,"user":"bo","total":2,"usum":2}"#,
        ]
    );
    // A crash: a fresh operator takes the checkpoint back, the window
    // [5, 15) goes on from the accumulators kept.
    let mut agg = WindowAggregate::new(&input(), w, vec![2], aggs).expect("agg");
    agg.restore(&kept).expect("restore");
    agg.on_batch(&batch(&[point(12, "al", Some(10))]))
        .expect("batch");
    let (out, _) = agg.on_cti(15).expect("cti");
    assert_eq!(
        lines(&out.expect("window [5, 15)")),
        [
            r#"{"_start":5,"_end":15,"user":"al","total":15,"usum":15}"#,
            r#"{"_start":5,"_end":15,"user":"bo","total":2,"usum":2}"#,
        ]
    );
    // An error says which aggregate, its module and column, and what.
    let e = agg
        .on_batch(&batch(&[point(16, "al", Some(-1))]))
        .expect_err("negative");
    assert_eq!(
        e.to_string(),
        "NativeSum (native) into `usum`: negative value at row 0"
    );
}

proptest! {
    /// A global aggregate split into partial phases over any partition of
    /// the rows (1 to 4 copies) and a final phase merging their partials in
    /// any order gives the bytes the whole aggregate gives: counts, distinct
    /// counts, extremes, exact sums and averages of doubles, and a
    /// user-defined aggregate's merge.
    #[test]
    fn a_split_aggregate_gives_the_whole_aggregates_bytes(
        size in 1i64..12,
        hop_part in 1i64..12,
        events in prop::collection::vec(
            (0i64..60, 1i64..15, 0usize..3, proptest::option::of(0i64..50),
             proptest::option::of(-1e6f64..1e6)),
            0..40,
        ),
        copies in 1usize..5,
        seed in any::<u64>(),
    ) {
        let w = Hopping::new(size, hop_part.min(size)).expect("window");
        let mut events: Vec<Event> = events
            .into_iter()
            .map(|(s, len, u, a, p)| (s, s + len, ["al", "bo", "cy"][u].to_string(), a, p))
            .collect();
        events.sort_by_key(|e| e.0);
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut aggs = all_aggregates();
        aggs.push(Aggregate::builtin(AggKind::Sum, Some(4), "price_total"));
        aggs.push(Aggregate::builtin(AggKind::Avg, Some(4), "price_mean"));
        aggs.push(native_sum(calls));
        let mut whole = WindowAggregate::new(&input(), w, vec![], aggs.clone()).expect("whole");
        let mut parts: Vec<WindowAggregate> = (0..copies)
            .map(|_| WindowAggregate::partial(&input(), w, vec![], aggs.clone()).expect("partial"))
            .collect();
        let mut last = WindowAggregate::merging(&input(), w, vec![], aggs.clone()).expect("final");
        prop_assert_eq!(last.input_schema(), parts[0].output_schema());
        prop_assert_eq!(last.output_schema(), whole.output_schema());
        let (mut want, mut got) = (Vec::new(), Vec::new());
        let mut i = 0;
        let mut state = seed;
        for t in (8..=80).step_by(8).chain([i64::MAX]) {
            let mut part = Vec::new();
            while i < events.len() && events[i].0 < t {
                part.push(events[i].clone());
                i += 1;
            }
            whole.on_batch(&batch(&part)).expect("batch");
            let (out, _) = whole.on_cti(t).expect("cti");
            want.extend(out.iter().flat_map(lines));
            let mut partials = Vec::new();
            let mut pass = i64::MAX;
            for (j, p) in parts.iter_mut().enumerate() {
                let mine: Vec<Event> = part
                    .iter()
                    .enumerate()
                    .filter(|(r, _)| (r + i) % copies == j)
                    .map(|(_, e)| e.clone())
                    .collect();
                p.on_batch(&batch(&mine)).expect("partial batch");
                let (out, t_j) = p.on_cti(t).expect("partial cti");
                pass = pass.min(t_j);
                partials.extend(out);
            }
            // The merge may deliver the copies' partials in any order.
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if state >> 63 == 1 {
                partials.reverse();
            }
            for p in &partials {
                last.on_batch(p).expect("final batch");
            }
            let (out, _) = last.on_cti(pass).expect("final cti");
            got.extend(out.iter().flat_map(lines));
        }
        prop_assert_eq!(got, want);
    }
}
