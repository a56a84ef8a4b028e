//! The temporal join: events of two inputs whose keys are equal and whose
//! lifetimes overlap match, and each match is an event over the
//! intersection of the two lifetimes. A left join also gives every left
//! event that matched nothing, with nulls for the right columns and its own
//! lifetime, once a CTI passes its end (no later right event can match it).
//!
//! Each input's events are held until a CTI passes their end; held batches
//! are host-owned state, checkpointed as they come and go
//! ([`TemporalJoin::take_delta`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, new_null_array};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef};

use crate::schema::{END, START};

mod state;

/// Inner or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Matches only.
    Inner,
    /// Matches, and each left event that matched nothing.
    Left,
}

/// A join that cannot be built or run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JoinError {
    /// Keys that do not pair up.
    #[error("join keys: {0}")]
    Keys(String),
    /// Arrow refused a batch.
    #[error("{0}")]
    Arrow(String),
    /// Kept state that does not decode.
    #[error("the join's kept state does not decode: {0}")]
    State(String),
}

fn arrow_err(e: arrow_schema::ArrowError) -> JoinError {
    JoinError::Arrow(e.to_string())
}

/// One held event: where its row is and its lifetime.
#[derive(Debug, Clone, Copy)]
struct Held {
    batch: u64,
    row: u32,
    start: i64,
    end: i64,
}

/// One input's held events.
#[derive(Debug, Default)]
struct Side {
    /// Held batches by id, with how many of their rows are still held.
    batches: BTreeMap<u64, (RecordBatch, usize)>,
    /// Held events by key (row-format bytes); rows with a null key are
    /// held for a left join's unmatched output only, under no key.
    by_key: HashMap<Vec<u8>, Vec<Held>>,
    unkeyed: Vec<Held>,
    /// Left events that matched, by batch: row indexes.
    matched: HashMap<u64, Vec<bool>>,
}

/// The temporal join operator.
pub struct TemporalJoin {
    kind: JoinKind,
    keys: [Vec<usize>; 2],
    converter: RowConverter,
    output: SchemaRef,
    sides: [Side; 2],
    next_batch: u64,
    /// Batches added since the last checkpoint, and ones released.
    added: Vec<(usize, u64)>,
    released: Vec<(usize, u64)>,
    /// Left batches whose matched flags changed since the last checkpoint.
    flagged: Vec<u64>,
    /// The last CTI, and whether it moved since the last checkpoint.
    cti: Option<i64>,
    cti_moved: bool,
    inputs: [SchemaRef; 2],
}

impl std::fmt::Debug for TemporalJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalJoin")
            .field("kind", &self.kind)
            .field("keys", &self.keys)
            .field("held", &self.held())
            .finish()
    }
}

impl TemporalJoin {
    /// A join of `left` and `right` (interval first) on `left_keys[i] ==
    /// right_keys[i]`. The output is the interval, the left input's columns
    /// and the right input's, named `names` (one per column, left first).
    pub fn new(
        left: &Schema,
        right: &Schema,
        left_keys: Vec<usize>,
        right_keys: Vec<usize>,
        kind: JoinKind,
        names: &[String],
    ) -> Result<TemporalJoin, JoinError> {
        if left_keys.len() != right_keys.len() || left_keys.is_empty() {
            return Err(JoinError::Keys(format!(
                "{} left and {} right key columns; a join needs one or more pairs",
                left_keys.len(),
                right_keys.len()
            )));
        }
        let mut sort = Vec::new();
        for (&l, &r) in left_keys.iter().zip(&right_keys) {
            let (Some(lf), Some(rf)) = (left.fields().get(l), right.fields().get(r)) else {
                return Err(JoinError::Keys(format!(
                    "column {l} or {r} is not in its input"
                )));
            };
            if lf.data_type() != rf.data_type() {
                return Err(JoinError::Keys(format!(
                    "`{}` ({}) and `{}` ({}) are of different types",
                    lf.name(),
                    lf.data_type(),
                    rf.name(),
                    rf.data_type()
                )));
            }
            sort.push(SortField::new(lf.data_type().clone()));
        }
        let user = |s: &Schema| s.fields().len() - 2;
        if names.len() != user(left) + user(right) {
            return Err(JoinError::Keys(format!(
                "{} output names for {} columns",
                names.len(),
                user(left) + user(right)
            )));
        }
        let mut fields = vec![
            ArrowField::new(START, DataType::Int64, false),
            ArrowField::new(END, DataType::Int64, false),
        ];
        let columns = left.fields()[2..].iter().map(|f| (f, false)).chain(
            right.fields()[2..]
                .iter()
                .map(|f| (f, kind == JoinKind::Left)),
        );
        for ((f, nullable), name) in columns.zip(names) {
            fields.push(ArrowField::new(
                name,
                f.data_type().clone(),
                f.is_nullable() || nullable,
            ));
        }
        Ok(TemporalJoin {
            kind,
            keys: [left_keys, right_keys],
            converter: RowConverter::new(sort).map_err(arrow_err)?,
            output: Arc::new(Schema::new(fields)),
            sides: [Side::default(), Side::default()],
            next_batch: 0,
            added: Vec::new(),
            released: Vec::new(),
            flagged: Vec::new(),
            cti: None,
            cti_moved: false,
            inputs: [Arc::new(left.clone()), Arc::new(right.clone())],
        })
    }

    /// The left and right inputs' schemas (interval first).
    pub fn inputs(&self) -> &[SchemaRef; 2] {
        &self.inputs
    }

    /// The output schema.
    pub fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    /// Events held per input.
    pub fn held(&self) -> [usize; 2] {
        [0, 1].map(|s| {
            let side = &self.sides[s];
            side.by_key.values().map(Vec::len).sum::<usize>() + side.unkeyed.len()
        })
    }

    /// A batch of input `side` (0 left, 1 right): its matches with the
    /// other input's held events, in the batch's row order, then held.
    pub fn on_batch(
        &mut self,
        side: usize,
        batch: &RecordBatch,
    ) -> Result<Option<RecordBatch>, JoinError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(None);
        }
        let other = 1 - side;
        let column = |i: usize| -> Result<&ArrayRef, JoinError> {
            batch
                .columns()
                .get(i)
                .ok_or_else(|| JoinError::Arrow(format!("column {i} is not in the batch")))
        };
        let starts = int_column(column(0)?)?;
        let ends = int_column(column(1)?)?;
        let key_cols: Vec<ArrayRef> = self.keys[side]
            .iter()
            .map(|&k| column(k).cloned())
            .collect::<Result<_, _>>()?;
        let rows = self
            .converter
            .convert_columns(&key_cols)
            .map_err(arrow_err)?;
        let id = self.next_batch;
        self.next_batch += 1;
        // (held event of the other input, row of this batch), in order.
        let mut pairs: Vec<(Held, u32)> = Vec::new();
        let mut matched_here = vec![false; n];
        let mut flag_other: Vec<(u64, u32)> = Vec::new();
        let mut held = 0usize;
        for (row, hit) in matched_here.iter_mut().enumerate() {
            let (start, end) = (starts.value(row), ends.value(row));
            if end <= start {
                continue;
            }
            let me = Held {
                batch: id,
                row: row as u32,
                start,
                end,
            };
            let null_key = key_cols.iter().any(|c| c.is_null(row));
            if null_key {
                if side == 0 && self.kind == JoinKind::Left {
                    self.sides[0].unkeyed.push(me);
                    held += 1;
                }
                continue;
            }
            let key = rows.row(row);
            if let Some(theirs) = self.sides[other].by_key.get(key.data()) {
                for h in theirs {
                    if h.start.max(start) < h.end.min(end) {
                        pairs.push((*h, row as u32));
                        *hit = true;
                        if other == 0 {
                            flag_other.push((h.batch, h.row));
                        }
                    }
                }
            }
            let mine = &mut self.sides[side].by_key;
            match mine.get_mut(key.data()) {
                Some(list) => list.push(me),
                None => {
                    mine.insert(key.data().to_vec(), vec![me]);
                }
            }
            held += 1;
        }
        for (b, r) in flag_other {
            if let Some(flags) = self.sides[0].matched.get_mut(&b)
                && !flags[r as usize]
            {
                flags[r as usize] = true;
                self.flagged.push(b);
            }
        }
        if held > 0 {
            self.sides[side].batches.insert(id, (batch.clone(), held));
            self.added.push((side, id));
            if side == 0 && self.kind == JoinKind::Left {
                self.sides[0].matched.insert(id, matched_here);
            }
        }
        if pairs.is_empty() {
            return Ok(None);
        }
        let out = self.pairs(side, batch, &pairs)?;
        Ok(Some(out))
    }

    /// The output of `pairs` of held events of the other input and rows of
    /// `batch` (of input `side`).
    fn pairs(
        &self,
        side: usize,
        batch: &RecordBatch,
        pairs: &[(Held, u32)],
    ) -> Result<RecordBatch, JoinError> {
        let other = 1 - side;
        // The other input's batches the pairs use, numbered from 0.
        let mut used: BTreeMap<u64, usize> = BTreeMap::new();
        for (h, _) in pairs {
            let next = used.len();
            used.entry(h.batch).or_insert(next);
        }
        // In the order the numbers were given.
        let mut ids: Vec<(usize, u64)> = used.iter().map(|(id, i)| (*i, *id)).collect();
        ids.sort_unstable();
        let theirs: Vec<&RecordBatch> = ids
            .iter()
            .map(|(_, b)| &self.sides[other].batches[b].0)
            .collect();
        let their_at: Vec<(usize, usize)> = pairs
            .iter()
            .map(|(h, _)| (used[&h.batch], h.row as usize))
            .collect();
        let mine_at: Vec<u32> = pairs.iter().map(|(_, r)| *r).collect();
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        let my_starts = int_column(batch.column(0))?;
        let my_ends = int_column(batch.column(1))?;
        for (h, r) in pairs {
            starts.push(h.start.max(my_starts.value(*r as usize)));
            ends.push(h.end.min(my_ends.value(*r as usize)));
        }
        let mine_idx = arrow_array::UInt32Array::from(mine_at);
        let their_cols = |b: &[&RecordBatch]| -> Result<Vec<ArrayRef>, JoinError> {
            (2..b[0].num_columns())
                .map(|c| {
                    let arrays: Vec<&dyn Array> = b.iter().map(|x| x.column(c).as_ref()).collect();
                    arrow_select::interleave::interleave(&arrays, &their_at).map_err(arrow_err)
                })
                .collect()
        };
        let my_cols: Vec<ArrayRef> = (2..batch.num_columns())
            .map(|c| arrow_select::take::take(batch.column(c), &mine_idx, None).map_err(arrow_err))
            .collect::<Result<_, _>>()?;
        let their = their_cols(&theirs)?;
        let (left, right) = if side == 0 {
            (my_cols, their)
        } else {
            (their, my_cols)
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(ends)),
        ];
        columns.extend(left);
        columns.extend(right);
        RecordBatch::try_new(self.output.clone(), columns).map_err(arrow_err)
    }

    /// CTI `t`: releases every held event that ended by `t` (no later event
    /// can overlap it); for a left join, those that matched nothing go out
    /// first, by start. Returns them and the CTI to pass on: `t`, or the
    /// earliest start of a held left event that may still go out unmatched.
    pub fn on_cti(&mut self, t: i64) -> Result<(Option<RecordBatch>, i64), JoinError> {
        self.cti = Some(self.cti.map_or(t, |c| c.max(t)));
        self.cti_moved = true;
        let mut unmatched: Vec<Held> = Vec::new();
        let mut pass = t;
        let left_join = self.kind == JoinKind::Left;
        for s in 0..2 {
            let side = &mut self.sides[s];
            let mut gone: Vec<Held> = Vec::new();
            let mut keep = |list: &mut Vec<Held>| {
                list.retain(|h| {
                    if h.end <= t {
                        gone.push(*h);
                        false
                    } else {
                        true
                    }
                })
            };
            side.by_key.retain(|_, list| {
                keep(list);
                !list.is_empty()
            });
            keep(&mut side.unkeyed);
            for h in &gone {
                let is_unmatched = s == 0
                    && left_join
                    && side
                        .matched
                        .get(&h.batch)
                        .is_some_and(|f| !f[h.row as usize]);
                if is_unmatched {
                    unmatched.push(*h);
                }
            }
            if s == 0 && left_join {
                for list in side.by_key.values().chain(std::iter::once(&side.unkeyed)) {
                    for h in list {
                        if side
                            .matched
                            .get(&h.batch)
                            .is_some_and(|f| !f[h.row as usize])
                        {
                            pass = pass.min(h.start);
                        }
                    }
                }
            }
            // Batches are released once none of their rows is held; their
            // rows that go out unmatched are copied out first (below).
            for h in gone {
                if let Some(entry) = side.batches.get_mut(&h.batch) {
                    entry.1 -= 1;
                }
            }
        }
        let out = if unmatched.is_empty() {
            None
        } else {
            unmatched.sort_by_key(|h| (h.start, h.end, h.batch, h.row));
            Some(self.unmatched(&unmatched)?)
        };
        for s in 0..2 {
            let side = &mut self.sides[s];
            let empty: Vec<u64> = side
                .batches
                .iter()
                .filter(|(_, (_, live))| *live == 0)
                .map(|(id, _)| *id)
                .collect();
            for id in empty {
                side.batches.remove(&id);
                side.matched.remove(&id);
                self.released.push((s, id));
            }
        }
        Ok((out, pass))
    }

    /// Left events that matched nothing, with nulls on the right.
    fn unmatched(&self, held: &[Held]) -> Result<RecordBatch, JoinError> {
        let mut used: BTreeMap<u64, usize> = BTreeMap::new();
        for h in held {
            let next = used.len();
            used.entry(h.batch).or_insert(next);
        }
        let mut ids: Vec<(usize, u64)> = used.iter().map(|(id, i)| (*i, *id)).collect();
        ids.sort_unstable();
        let batches: Vec<&RecordBatch> = ids
            .iter()
            .map(|(_, b)| &self.sides[0].batches[b].0)
            .collect();
        let at: Vec<(usize, usize)> = held
            .iter()
            .map(|h| (used[&h.batch], h.row as usize))
            .collect();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for c in 0..batches[0].num_columns() {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(arrow_select::interleave::interleave(&arrays, &at).map_err(arrow_err)?);
        }
        for f in &self.output.fields()[columns.len()..] {
            columns.push(new_null_array(f.data_type(), held.len()));
        }
        RecordBatch::try_new(self.output.clone(), columns).map_err(arrow_err)
    }
}

fn int_column(a: &ArrayRef) -> Result<&Int64Array, JoinError> {
    a.as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| JoinError::Arrow("an interval column is not int64".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udf::KeyedState;
    use arrow_array::StringArray;
    use proptest::prelude::*;

    fn schema(cols: &[(&str, DataType)]) -> SchemaRef {
        let mut fields = vec![
            ArrowField::new(START, DataType::Int64, false),
            ArrowField::new(END, DataType::Int64, false),
        ];
        fields.extend(
            cols.iter()
                .map(|(n, t)| ArrowField::new(*n, t.clone(), true)),
        );
        Arc::new(Schema::new(fields))
    }

    fn process() -> SchemaRef {
        schema(&[("ProcessID", DataType::Int64), ("UserID", DataType::Utf8)])
    }

    fn alert() -> SchemaRef {
        schema(&[("Name", DataType::Utf8), ("ProcessID", DataType::Int64)])
    }

    fn processes(rows: &[(i64, i64, i64, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            process(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .expect("batch")
    }

    fn alerts(rows: &[(i64, &str, Option<i64>)]) -> RecordBatch {
        RecordBatch::try_new(
            alert(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0 + 1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
            ],
        )
        .expect("batch")
    }

    fn names() -> Vec<String> {
        [
            "Process.ProcessID",
            "Process.UserID",
            "Alert.Name",
            "Alert.ProcessID",
        ]
        .map(String::from)
        .to_vec()
    }

    fn join(kind: JoinKind) -> TemporalJoin {
        TemporalJoin::new(&process(), &alert(), vec![2], vec![3], kind, &names()).expect("join")
    }

    fn lines(batch: Option<RecordBatch>) -> Vec<String> {
        batch
            .map(|b| {
                crate::stage::row_json(&b)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn alerts_match_the_process_alive_at_their_time() {
        let mut j = join(JoinKind::Inner);
        assert!(
            j.on_batch(0, &processes(&[(0, 100, 7, "ann"), (50, 60, 8, "bob")]))
                .expect("processes")
                .is_none()
        );
        let out = j
            .on_batch(
                1,
                &alerts(&[
                    (10, "disk", Some(7)),
                    (55, "cpu", Some(8)),
                    (70, "cpu", Some(8)),
                ]),
            )
            .expect("alerts");
        assert_eq!(
            lines(out),
            [
                r#"{"_start":10,"_end":11,"Process.ProcessID":7,"Process.UserID":"ann","Alert.Name":"disk","Alert.ProcessID":7}"#,
                r#"{"_start":55,"_end":56,"Process.ProcessID":8,"Process.UserID":"bob","Alert.Name":"cpu","Alert.ProcessID":8}"#,
            ],
            "the alert at 70 comes after bob's process ended"
        );
        let (none, pass) = j.on_cti(61).expect("cti");
        assert!(none.is_none());
        assert_eq!(pass, 61);
        assert_eq!(
            j.held(),
            [1, 1],
            "bob's process and the alerts before 61 are released by 61"
        );
        // A process that starts later matches an alert held since.
        j.on_batch(1, &alerts(&[(80, "mem", Some(9))]))
            .expect("alert");
        let out = j
            .on_batch(0, &processes(&[(80, 90, 9, "cy")]))
            .expect("process");
        assert_eq!(lines(out).len(), 1);
    }

    #[test]
    fn a_left_join_gives_unmatched_left_events_once_a_cti_passes_their_end() {
        let mut j = join(JoinKind::Left);
        j.on_batch(0, &processes(&[(0, 10, 1, "ann"), (0, 20, 2, "bob")]))
            .expect("left");
        j.on_batch(1, &alerts(&[(5, "disk", Some(1)), (6, "x", None)]))
            .expect("right");
        let (out, pass) = j.on_cti(15).expect("cti");
        assert!(out.is_none(), "ann matched; bob's process is still alive");
        assert_eq!(pass, 0, "bob's process may still go out unmatched, from 0");
        let (out, pass) = j.on_cti(25).expect("cti");
        assert_eq!(pass, 25);
        assert_eq!(
            lines(out),
            [
                r#"{"_start":0,"_end":20,"Process.ProcessID":2,"Process.UserID":"bob","Alert.Name":null,"Alert.ProcessID":null}"#
            ]
        );
        assert_eq!(j.held(), [0, 0]);
    }

    #[test]
    fn keys_of_different_types_are_refused() {
        let e = TemporalJoin::new(
            &process(),
            &alert(),
            vec![3],
            vec![3],
            JoinKind::Inner,
            &names(),
        )
        .expect_err("utf8 and int64");
        assert_eq!(
            e.to_string(),
            "join keys: `UserID` (Utf8) and `ProcessID` (Int64) are of different types"
        );
    }

    /// `(side, start, len, key)`.
    type Ev = (usize, i64, i64, i64);

    fn event() -> impl Strategy<Value = Ev> {
        (0usize..2, 0i64..60, 1i64..20, 0i64..3)
    }

    fn one(side: usize, e: &Ev, i: usize) -> RecordBatch {
        if side == 0 {
            processes(&[(e.1, e.1 + e.2, e.3, &format!("u{i}"))])
        } else {
            RecordBatch::try_new(
                alert(),
                vec![
                    Arc::new(Int64Array::from(vec![e.1])),
                    Arc::new(Int64Array::from(vec![e.1 + e.2])),
                    Arc::new(StringArray::from(vec![format!("a{i}")])),
                    Arc::new(Int64Array::from(vec![e.3])),
                ],
            )
            .expect("batch")
        }
    }

    proptest! {
        /// Against the reference (every overlapping pair with equal keys,
        /// over the intersection; every left event without one), with CTIs
        /// every 8 units and a restart from a checkpoint at any of them: the
        /// same rows, each once, none starting before a CTI passed on.
        #[test]
        fn joins_match_the_reference_across_a_restart(
            mut events in prop::collection::vec(event(), 0..30),
            cut in 0usize..10,
            left in any::<bool>(),
        ) {
            let kind = if left { JoinKind::Left } else { JoinKind::Inner };
            events.sort_by_key(|e| e.1);
            let mut j = join(kind);
            let mut kept = KeyedState::new();
            let mut got: Vec<String> = Vec::new();
            let mut promised = i64::MIN;
            let (mut i, mut ctis) = (0, 0);
            for t in (8..=80).step_by(8).chain([i64::MAX]) {
                while i < events.len() && events[i].1 < t {
                    let e = events[i];
                    for line in lines(j.on_batch(e.0, &one(e.0, &e, i)).expect("batch")) {
                        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
                        prop_assert!(v["_start"].as_i64().expect("start") >= promised, "{}", line);
                        got.push(line);
                    }
                    i += 1;
                }
                let (out, pass) = j.on_cti(t).expect("cti");
                for line in lines(out) {
                    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
                    prop_assert!(v["_start"].as_i64().expect("start") >= promised, "{}", line);
                    got.push(line);
                }
                prop_assert!(pass >= promised);
                promised = pass;
                for (key, value) in j.take_delta() {
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
                    j = join(kind);
                    j.restore(&kept).expect("restore");
                }
            }
            prop_assert!(
                kept.keys().all(|k| k.as_slice() == crate::temporal::CTI_KEY),
                "nothing is kept once every event ended, but the CTI"
            );
            let mut want = Vec::new();
            for (a, l) in events.iter().enumerate().filter(|(_, e)| e.0 == 0) {
                let mut matched = false;
                for (b, r) in events.iter().enumerate().filter(|(_, e)| e.0 == 1) {
                    let (s, e) = (l.1.max(r.1), (l.1 + l.2).min(r.1 + r.2));
                    if l.3 == r.3 && s < e {
                        matched = true;
                        want.push(format!(
                            r#"{{"_start":{s},"_end":{e},"Process.ProcessID":{},"Process.UserID":"u{a}","Alert.Name":"a{b}","Alert.ProcessID":{}}}"#,
                            l.3, r.3
                        ));
                    }
                }
                if left && !matched {
                    want.push(format!(
                        r#"{{"_start":{},"_end":{},"Process.ProcessID":{},"Process.UserID":"u{a}","Alert.Name":null,"Alert.ProcessID":null}}"#,
                        l.1, l.1 + l.2, l.3
                    ));
                }
            }
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }
}
