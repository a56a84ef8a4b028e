//! The deterministic merge at the head of a vertex with several inputs.
//!
//! Events with `start < t` are released only once every input has reached CTI
//! `t`, in a fixed order — start time, then input index, then seq, then row —
//! and then CTI `t` is emitted. Every CTI value seen on any input becomes a
//! release point, in increasing order, so the output depends only on what each
//! input holds, never on how the inputs' entries interleave in time.
//!
//! This is sans-IO: the vertex pushes entries and takes what is ready.

use std::collections::BTreeSet;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::SchemaRef;

/// What the merge releases.
#[derive(Debug, Clone, PartialEq)]
pub enum Merged {
    /// Events, in merge order.
    Batch(RecordBatch),
    /// Events of one input (a merge that keeps its inputs apart), in merge
    /// order; the inputs' batches of one release come in input order.
    Input(usize, RecordBatch),
    /// Every later event starts at or after this time.
    Cti(i64),
}

#[derive(Debug, Default, Clone)]
struct Input {
    /// Batches not yet (fully) released, with their seq.
    pending: Vec<(u64, RecordBatch)>,
    /// The latest CTI seen on this input.
    cti: Option<i64>,
}

/// The merge of `n` inputs with one schema.
#[derive(Debug, Clone)]
pub struct Merge {
    schema: SchemaRef,
    /// Each input's own schema, when the merge keeps its inputs apart (a
    /// join's), instead of one stream of the one schema (a union's).
    apart: Option<Vec<SchemaRef>>,
    inputs: Vec<Input>,
    points: BTreeSet<i64>,
    /// The last CTI emitted; points at or below it are already done.
    emitted: Option<i64>,
}

/// Why the merge refused an entry.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MergeError {
    /// An input's schema differs from the merge's.
    #[error("input {input} has columns {found}, the merge expects {expected}")]
    Schema {
        /// The input.
        input: usize,
        /// Its columns.
        found: String,
        /// The merge's columns.
        expected: String,
    },
    /// A CTI went backwards on an input.
    #[error("input {input}: CTI {cti} at seq {seq} is before the input's previous CTI {previous}")]
    CtiBackwards {
        /// The input.
        input: usize,
        /// The seq.
        seq: u64,
        /// The new CTI.
        cti: i64,
        /// The previous one.
        previous: i64,
    },
    /// An input index out of range.
    #[error("no input {0}")]
    NoInput(usize),
}

fn columns(schema: &SchemaRef) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Merge {
    /// A merge of `inputs` inputs, all with `schema` (interval columns first).
    pub fn new(schema: SchemaRef, inputs: usize) -> Merge {
        Merge {
            schema,
            apart: None,
            inputs: vec![Input::default(); inputs],
            points: BTreeSet::new(),
            emitted: None,
        }
    }

    /// The merge keeps its inputs apart, each of its own schema: it
    /// releases events in the same order, each input's as
    /// [`Merged::Input`].
    pub fn apart(mut self, schemas: Vec<SchemaRef>) -> Merge {
        self.apart = Some(schemas);
        self
    }

    /// Adds a batch read from `input` at `seq`.
    pub fn push_batch(
        &mut self,
        input: usize,
        seq: u64,
        batch: RecordBatch,
    ) -> Result<(), MergeError> {
        let expected = match &self.apart {
            Some(schemas) => schemas.get(input).ok_or(MergeError::NoInput(input))?,
            None => &self.schema,
        };
        if batch.schema().fields() != expected.fields() {
            return Err(MergeError::Schema {
                input,
                found: columns(&batch.schema()),
                expected: columns(expected),
            });
        }
        let slot = self
            .inputs
            .get_mut(input)
            .ok_or(MergeError::NoInput(input))?;
        if batch.num_rows() > 0 {
            slot.pending.push((seq, batch));
        }
        Ok(())
    }

    /// Adds a CTI read from `input` at `seq`.
    pub fn push_cti(&mut self, input: usize, seq: u64, cti: i64) -> Result<(), MergeError> {
        let slot = self
            .inputs
            .get_mut(input)
            .ok_or(MergeError::NoInput(input))?;
        if let Some(previous) = slot.cti
            && cti < previous
        {
            return Err(MergeError::CtiBackwards {
                input,
                seq,
                cti,
                previous,
            });
        }
        slot.cti = Some(cti);
        if self.emitted.is_none_or(|e| cti > e) {
            self.points.insert(cti);
        }
        Ok(())
    }

    /// The CTI every input has reached, if any.
    fn low(&self) -> Option<i64> {
        self.inputs
            .iter()
            .map(|i| i.cti)
            .try_fold(i64::MAX, |m, c| c.map(|c| m.min(c)))
    }

    /// Everything that can be released now.
    pub fn ready(&mut self) -> Vec<Merged> {
        let mut out = Vec::new();
        let Some(low) = self.low() else {
            return out;
        };
        while let Some(&t) = self.points.first() {
            if t > low {
                break;
            }
            self.points.pop_first();
            self.emitted = Some(t);
            out.extend(self.release_before(t));
            out.push(Merged::Cti(t));
        }
        out
    }

    /// Takes every pending event with `start < t`, in merge order: one
    /// batch, or one per input when the merge keeps them apart.
    fn release_before(&mut self, t: i64) -> Vec<Merged> {
        // (start, input, seq, row) -> (batch index, row) in `batches`.
        let mut order: Vec<(i64, usize, u64, usize, usize)> = Vec::new();
        let mut batches: Vec<RecordBatch> = Vec::new();
        for (i, input) in self.inputs.iter_mut().enumerate() {
            let mut kept = Vec::with_capacity(input.pending.len());
            for (seq, batch) in input.pending.drain(..) {
                let starts = batch.column(0).as_primitive::<Int64Type>();
                if starts.values().iter().all(|s| *s >= t) {
                    kept.push((seq, batch));
                    continue;
                }
                let b = batches.len();
                for (row, &s) in starts.values().iter().enumerate() {
                    if s < t {
                        order.push((s, i, seq, row, b));
                    }
                }
                let later = BooleanArray::from_iter(starts.values().iter().map(|s| Some(*s >= t)));
                let rest = arrow_select::filter::filter_record_batch(&batch, &later)
                    .expect("filtering a batch by its own start column");
                batches.push(batch);
                if rest.num_rows() > 0 {
                    kept.push((seq, rest));
                }
            }
            input.pending = kept;
        }
        if order.is_empty() {
            return Vec::new();
        }
        order.sort_unstable_by_key(|&(s, i, seq, row, _)| (s, i, seq, row));
        let interleave = |refs: &[&RecordBatch], indices: &[(usize, usize)]| {
            arrow_select::interleave::interleave_record_batch(refs, indices)
                .expect("interleaving batches of one schema")
        };
        if self.apart.is_none() {
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let indices: Vec<(usize, usize)> = order.iter().map(|&(.., row, b)| (b, row)).collect();
            return vec![Merged::Batch(interleave(&refs, &indices))];
        }
        // Each input's events in the merge's order, inputs in order; each
        // input's batches apart, as their schemas differ.
        let mut local = vec![usize::MAX; batches.len()];
        (0..self.inputs.len())
            .filter_map(|input| {
                let mut refs: Vec<&RecordBatch> = Vec::new();
                let mut indices: Vec<(usize, usize)> = Vec::new();
                for &(_, i, _, row, b) in &order {
                    if i != input {
                        continue;
                    }
                    if local[b] == usize::MAX {
                        local[b] = refs.len();
                        refs.push(&batches[b]);
                    }
                    indices.push((local[b], row));
                }
                (!indices.is_empty()).then(|| Merged::Input(input, interleave(&refs, &indices)))
            })
            .collect()
    }

    /// Whether input `i` has run ahead: at least `rows` of its rows wait
    /// for another input, whose CTI is behind its own. Reading it further
    /// would only grow what waits (and what each snapshot holds); the input
    /// that is behind is never ahead, so one can always be read.
    pub fn ahead(&self, i: usize, rows: usize) -> bool {
        let Some(input) = self.inputs.get(i) else {
            return false;
        };
        let behind = self
            .inputs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .any(|(_, other)| other.cti < input.cti);
        behind
            && input
                .pending
                .iter()
                .map(|(_, b)| b.num_rows())
                .sum::<usize>()
                >= rows
    }

    /// Events waiting for a CTI, per input (what a snapshot must hold).
    pub fn pending(&self) -> Vec<Vec<(u64, RecordBatch)>> {
        self.inputs.iter().map(|i| i.pending.clone()).collect()
    }

    /// The latest CTI of each input, the release points not yet reached, and
    /// the last CTI emitted.
    pub fn ctis(&self) -> (Vec<Option<i64>>, Vec<i64>, Option<i64>) {
        (
            self.inputs.iter().map(|i| i.cti).collect(),
            self.points.iter().copied().collect(),
            self.emitted,
        )
    }

    /// Rebuilds a merge from [`Merge::pending`] and [`Merge::ctis`].
    pub fn restore(
        schema: SchemaRef,
        pending: Vec<Vec<(u64, RecordBatch)>>,
        ctis: Vec<Option<i64>>,
        points: Vec<i64>,
        emitted: Option<i64>,
    ) -> Merge {
        Merge {
            schema,
            apart: None,
            inputs: pending
                .into_iter()
                .zip(ctis)
                .map(|(pending, cti)| Input { pending, cti })
                .collect(),
            points: points.into_iter().collect(),
            emitted,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema::{ColumnType, Field, event_schema};
    use arrow_array::{ArrayRef, Int64Array};
    use proptest::prelude::*;
    use std::sync::Arc;

    pub(crate) fn schema() -> SchemaRef {
        event_schema(&[Field {
            name: "v".into(),
            ty: ColumnType::Int64,
            nullable: false,
        }])
    }

    pub(crate) fn batch(starts: &[i64], tag: i64) -> RecordBatch {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts.to_vec())),
            Arc::new(Int64Array::from(
                starts.iter().map(|s| s + 1).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                (0..starts.len() as i64)
                    .map(|r| tag * 1000 + r)
                    .collect::<Vec<_>>(),
            )),
        ];
        RecordBatch::try_new(schema(), cols).unwrap()
    }

    /// `(start, v)` of every released row, and the CTIs, in order.
    fn flatten(out: &[Merged]) -> Vec<(i64, i64)> {
        let mut rows = Vec::new();
        for m in out {
            match m {
                Merged::Cti(t) => rows.push((i64::MIN, *t)),
                Merged::Batch(b) | Merged::Input(_, b) => {
                    let s = b.column(0).as_primitive::<Int64Type>();
                    let v = b.column(2).as_primitive::<Int64Type>();
                    rows.extend(s.values().iter().copied().zip(v.values().iter().copied()));
                }
            }
        }
        rows
    }

    #[test]
    fn releases_in_start_then_input_order_once_every_input_reached_the_cti() {
        let mut m = Merge::new(schema(), 2);
        m.push_batch(0, 0, batch(&[5, 1, 12], 1)).unwrap();
        m.push_cti(0, 1, 10).unwrap();
        assert!(m.ready().is_empty(), "input 1 has no CTI yet");
        m.push_batch(1, 0, batch(&[1, 7], 2)).unwrap();
        m.push_cti(1, 1, 20).unwrap();
        let out = m.ready();
        assert_eq!(
            flatten(&out),
            vec![(1, 1001), (1, 2000), (5, 1000), (7, 2001), (i64::MIN, 10)]
        );
        m.push_cti(0, 2, 30).unwrap();
        assert_eq!(flatten(&m.ready()), vec![(12, 1002), (i64::MIN, 20)]);
    }

    #[test]
    fn refuses_backward_ctis_and_foreign_schemas() {
        let mut m = Merge::new(schema(), 1);
        m.push_cti(0, 0, 10).unwrap();
        assert!(matches!(
            m.push_cti(0, 1, 5),
            Err(MergeError::CtiBackwards {
                cti: 5,
                previous: 10,
                ..
            })
        ));
        let other = event_schema(&[Field {
            name: "w".into(),
            ty: ColumnType::Utf8,
            nullable: false,
        }]);
        let b = RecordBatch::new_empty(other);
        let err = m.push_batch(0, 2, b).unwrap_err();
        assert!(err.to_string().contains("input 0 has columns"), "{err}");
    }

    /// Per input: a sequence of entries (batches of starts, or CTIs) with
    /// increasing CTIs, each batch's starts at or after the previous CTI.
    pub(crate) fn input_strategy() -> impl Strategy<Value = Vec<Result<Vec<i64>, i64>>> {
        prop::collection::vec((prop::collection::vec(0i64..20, 0..4), 0i64..8), 1..6).prop_map(
            |steps| {
                let mut cti = 0;
                let mut entries = Vec::new();
                for (starts, step) in steps {
                    entries.push(Ok(starts.iter().map(|s| cti + s).collect()));
                    cti += step;
                    entries.push(Err(cti));
                }
                entries
            },
        )
    }

    proptest! {
        #[test]
        fn output_does_not_depend_on_arrival_interleaving(
            inputs in prop::collection::vec(input_strategy(), 1..4),
            picks in prop::collection::vec(0usize..4, 0..64),
        ) {
            let run = |order: &mut dyn Iterator<Item = usize>| {
                let mut m = Merge::new(schema(), inputs.len());
                let mut next = vec![0usize; inputs.len()];
                let mut out = Vec::new();
                let total: usize = inputs.iter().map(Vec::len).sum();
                let mut pushed = 0;
                while pushed < total {
                    let mut i = order.next().unwrap_or(0) % inputs.len();
                    while next[i] >= inputs[i].len() {
                        i = (i + 1) % inputs.len();
                    }
                    let seq = next[i] as u64;
                    match &inputs[i][next[i]] {
                        Ok(starts) => m.push_batch(i, seq, batch(starts, (i * 100 + next[i]) as i64)).unwrap(),
                        Err(cti) => m.push_cti(i, seq, *cti).unwrap(),
                    }
                    next[i] += 1;
                    pushed += 1;
                    out.extend(m.ready());
                }
                flatten(&out)
            };
            let in_order = run(&mut (0..inputs.len()).cycle());
            let shuffled = run(&mut picks.iter().copied().chain(std::iter::repeat(0)));
            prop_assert_eq!(in_order, shuffled);
        }

        #[test]
        fn snapshot_and_restore_is_equivalent_to_running_on(
            inputs in prop::collection::vec(input_strategy(), 1..3),
            cut in 0usize..12,
        ) {
            let feed = |m: &mut Merge, from: usize, to: usize, out: &mut Vec<Merged>| {
                for k in from..to {
                    for (i, entries) in inputs.iter().enumerate() {
                        if let Some(e) = entries.get(k) {
                            match e {
                                Ok(starts) => m.push_batch(i, k as u64, batch(starts, (i * 100 + k) as i64)).unwrap(),
                                Err(cti) => m.push_cti(i, k as u64, *cti).unwrap(),
                            }
                            out.extend(m.ready());
                        }
                    }
                }
            };
            let len = inputs.iter().map(Vec::len).max().unwrap_or(0);
            let cut = cut.min(len);
            let mut whole = Merge::new(schema(), inputs.len());
            let mut expected = Vec::new();
            feed(&mut whole, 0, len, &mut expected);

            let mut first = Merge::new(schema(), inputs.len());
            let mut got = Vec::new();
            feed(&mut first, 0, cut, &mut got);
            let (ctis, points, emitted) = first.ctis();
            let mut second = Merge::restore(schema(), first.pending(), ctis, points, emitted);
            feed(&mut second, cut, len, &mut got);
            prop_assert_eq!(flatten(&expected), flatten(&got));
        }
    }
}
