//! Temporal operators in a vertex: a join of two inputs, read in any
//! interleaving, crashed at any point and resumed from its latest
//! checkpoint (snapshot and keyed state), writes exactly what an
//! uninterrupted vertex writes, at the same seqs.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use proptest::prelude::*;
use weir_core::entry::{END, Entry};
use weir_core::plan::Recovery;
use weir_core::schema::{ColumnType, event_schema, field};
use weir_core::temporal::{JoinKind, TemporalJoin};
use weir_core::udf::{KeyedState, decode_entry};
use weir_core::vertex::{Operator, Resume, Vertex, VertexSnapshot};

fn schema(name: &str) -> arrow_schema::SchemaRef {
    event_schema(&[
        field("k", ColumnType::Int64, false),
        field(name, ColumnType::Int64, false),
    ])
}

fn join(left: bool) -> Operator {
    let kind = if left {
        JoinKind::Left
    } else {
        JoinKind::Inner
    };
    let names = ["l.k", "l.v", "r.k", "r.w"].map(String::from);
    Operator::Temporal(Box::new(
        TemporalJoin::new(&schema("v"), &schema("w"), vec![2], vec![2], kind, &names)
            .expect("join"),
    ))
}

/// One input's entries: batches of `(start, len, key)` events (value: the
/// event's index) and a CTI after each batch, then the end.
fn entries(input: usize, batches: &[Vec<(i64, i64, i64)>]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut index = 0i64;
    let mut cti = 0;
    for b in batches {
        let mut events = b.clone();
        events.iter_mut().for_each(|e| e.0 += cti);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.0))),
            Arc::new(Int64Array::from_iter_values(
                events.iter().map(|e| e.0 + e.1),
            )),
            Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.2))),
            Arc::new(Int64Array::from_iter_values(
                (0..events.len() as i64).map(|i| index + i + 1000 * input as i64),
            )),
        ];
        index += events.len() as i64;
        let name = if input == 0 { "v" } else { "w" };
        out.push(Entry::Batch {
            producer: "test".into(),
            batch: RecordBatch::try_new(schema(name), columns).expect("batch"),
        });
        cti = events.iter().map(|e| e.0).max().unwrap_or(cti).max(cti) + 1;
        out.push(Entry::Cti(cti));
    }
    out.push(Entry::Cti(END));
    out
}

fn vertex(left: bool, resume: Resume) -> Vertex {
    Vertex::load(
        "j",
        join(left),
        schema("v"),
        2,
        Recovery::Checkpoint { every: 1 },
        resume,
    )
    .expect("vertex")
}

/// Feeds entries in the order `picks` chooses, at most `limit`, into
/// `out` (seq → bytes, refusing a different rewrite) and `kept` (the
/// keyed state as a store keeps it); returns the latest snapshot.
fn feed(
    v: &mut Vertex,
    inputs: &[Vec<Entry>; 2],
    picks: &mut dyn Iterator<Item = usize>,
    limit: usize,
    out: &mut BTreeMap<u64, Vec<u8>>,
    kept: &mut KeyedState,
) -> Result<Option<VertexSnapshot>, String> {
    let mut snapshot = None;
    for _ in 0..limit {
        let open: Vec<usize> = (0..2)
            .filter(|&i| (v.position().inputs[i] as usize) < inputs[i].len())
            .collect();
        if open.is_empty() {
            break;
        }
        let i = open[picks.next().unwrap_or(0) % open.len()];
        let k = v.position().inputs[i];
        let fx = v
            .on_entry(i, k, inputs[i][k as usize].clone())
            .map_err(|e| e.to_string())?;
        for (seq, e) in fx.output {
            let bytes = e.encode()?;
            if let Some(previous) = out.insert(seq, bytes.clone())
                && previous != bytes
            {
                return Err(format!("seq {seq} rewritten with a different value"));
            }
        }
        if let Some(mut s) = fx.snapshot {
            for (key, value) in std::mem::take(&mut s.state) {
                match value {
                    Some(v) => {
                        kept.insert(key, decode_entry(&v).map_err(|e| e.to_string())?);
                    }
                    None => {
                        kept.remove(&key);
                    }
                }
            }
            snapshot = Some(s);
        }
    }
    Ok(snapshot)
}

fn events() -> impl Strategy<Value = Vec<Vec<(i64, i64, i64)>>> {
    prop::collection::vec(
        prop::collection::vec((0i64..5, 1i64..8, 0i64..3), 0..4),
        1..5,
    )
}

proptest! {
    #[test]
    fn a_join_vertex_resumed_from_its_checkpoint_writes_the_same_entries(
        left_events in events(),
        right_events in events(),
        left in any::<bool>(),
        cut in 0usize..30,
        picks in prop::collection::vec(0usize..2, 0..64),
    ) {
        let inputs = [entries(0, &left_events), entries(1, &right_events)];
        let mut whole = vertex(left, Resume::Fresh(vec![0, 0]));
        let mut expected = BTreeMap::new();
        let mut ignored = KeyedState::new();
        feed(&mut whole, &inputs, &mut std::iter::repeat(0), usize::MAX, &mut expected, &mut ignored)
            .map_err(TestCaseError::fail)?;
        prop_assert!(whole.position().finished);

        let mut order = picks.iter().copied().chain(std::iter::repeat(1));
        let mut first = vertex(left, Resume::Fresh(vec![0, 0]));
        let (mut got, mut kept) = (BTreeMap::new(), KeyedState::new());
        let snapshot = feed(&mut first, &inputs, &mut order, cut, &mut got, &mut kept)
            .map_err(TestCaseError::fail)?;
        let resume = match snapshot {
            Some(s) => Resume::Snapshot(Box::new(s), kept.clone()),
            None => Resume::Fresh(vec![0, 0]),
        };
        let mut second = vertex(left, resume);
        feed(&mut second, &inputs, &mut order, usize::MAX, &mut got, &mut kept)
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(expected, got);
    }
}
