//! Session windows: per group, the events whose lifetimes, each extended by
//! a gap, overlap one another form a session; the session's window runs
//! from its first start to its last end plus the gap.
//!
//! Events are held (as keyed state) until their session is final: once a
//! CTI reaches the session's end, no later event (which starts at or after
//! the CTI) can join or bridge it. Then the built-in aggregates are computed
//! over the session's events, as [`WindowAggregate`] computes them, and one
//! row per group and session goes out with the session as its lifetime.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use arrow_schema::{Schema, SchemaRef};

use super::super::TemporalOp;
use super::super::acc::Acc;
use super::super::held::Held;
use super::open::OpenSessions;
use super::{AggError, Aggregate, WindowAggregate, accumulate, arrow_err};
use crate::temporal::Hopping;
use crate::udf::{KeyedState, StateChanges};

const HELD: &[u8] = b"session";

/// One session: its window and its events (row indices).
struct Session {
    start: i64,
    end: i64,
    rows: Vec<u32>,
}

/// The session-window aggregate.
pub struct SessionAggregate {
    /// Computes a session's aggregates (its window is not used).
    calc: WindowAggregate,
    gap: i64,
    /// The last CTI, and the events held until their session closes when
    /// the sessions are not kept open (a user-defined aggregate's).
    held: Held,
    /// The open sessions with their accumulators (built-in aggregates).
    open: Option<OpenSessions>,
}

impl std::fmt::Debug for SessionAggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAggregate")
            .field("gap", &self.gap)
            .field("keys", &self.calc.keys)
            .field("aggs", &self.calc.aggs)
            .finish()
    }
}

impl SessionAggregate {
    /// Sessions of `input`'s events (interval first) with gap `gap` µs per
    /// group of the columns `keys`, computing `aggs`; the output is as a
    /// [`WindowAggregate`]'s.
    pub fn new(
        input: &Schema,
        gap: i64,
        keys: Vec<usize>,
        aggs: Vec<Aggregate>,
    ) -> Result<SessionAggregate, AggError> {
        let hopping = Hopping::tumbling(gap.max(1)).map_err(|e| AggError::State(e.to_string()))?;
        if gap <= 0 {
            return Err(AggError::State(format!(
                "a session gap must be positive, not {gap} µs"
            )));
        }
        let open = aggs
            .iter()
            .all(|a| a.user.is_none())
            .then(OpenSessions::default);
        let calc = WindowAggregate::new(input, hopping, keys, aggs)?;
        let held = Held::new(calc.input.clone(), HELD);
        Ok(SessionAggregate {
            calc,
            gap,
            held,
            open,
        })
    }

    /// Its output's schema.
    pub fn output_schema(&self) -> SchemaRef {
        self.calc.output.clone()
    }

    /// The same aggregate holding its events until their sessions close
    /// (the form a user-defined aggregate's sessions take).
    #[cfg(test)]
    fn holding_rows(mut self) -> Self {
        self.open = None;
        self
    }

    /// The sessions of `batch`'s events, by group then start.
    fn sessions(&self, batch: &RecordBatch) -> Result<Vec<Session>, AggError> {
        let starts = batch.column(0).as_primitive::<Int64Type>();
        let ends = batch.column(1).as_primitive::<Int64Type>();
        let keys = self.calc.group_rows(batch)?;
        let key = |i: u32| keys.as_ref().map_or(&[][..], |k| k.row(i as usize).data());
        let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            key(a)
                .cmp(key(b))
                .then(starts.value(a as usize).cmp(&starts.value(b as usize)))
                .then(a.cmp(&b))
        });
        let mut sessions: Vec<Session> = Vec::new();
        let mut last_key: Option<&[u8]> = None;
        for i in order {
            let (s, e) = (starts.value(i as usize), ends.value(i as usize));
            let end = e.saturating_add(self.gap);
            match sessions.last_mut() {
                Some(open) if last_key == Some(key(i)) && s < open.end => {
                    open.end = open.end.max(end);
                    open.rows.push(i);
                }
                _ => sessions.push(Session {
                    start: s,
                    end,
                    rows: vec![i],
                }),
            }
            last_key = Some(key(i));
        }
        Ok(sessions)
    }

    /// One row per session of `sessions`: its window, its group, its aggregates.
    fn emit(
        &mut self,
        batch: &RecordBatch,
        sessions: &[&Session],
    ) -> Result<RecordBatch, AggError> {
        let calc = &self.calc;
        let args = calc.arg_columns(batch)?;
        let distinct = calc.distinct_rows(&args)?;
        let mut accs = Vec::with_capacity(sessions.len());
        for s in sessions {
            let mut a = calc.fresh();
            for &row in &s.rows {
                for (j, acc) in a.iter_mut().enumerate() {
                    accumulate(acc, args[j], distinct[j].as_ref(), row as usize).map_err(|()| {
                        AggError::Overflow {
                            column: calc.aggs[j].name.clone(),
                            start: s.start,
                            end: s.end,
                        }
                    })?;
                }
            }
            accs.push(a);
        }
        // Each user-defined aggregate: one call over every session's rows.
        let rows: Vec<u32> = sessions
            .iter()
            .flat_map(|s| s.rows.iter().copied())
            .collect();
        let groups: Vec<u32> = sessions
            .iter()
            .enumerate()
            .flat_map(|(i, s)| std::iter::repeat_n(i as u32, s.rows.len()))
            .collect();
        for j in 0..accs.first().map_or(0, Vec::len) {
            if self.calc.aggs[j].user.is_none() {
                continue;
            }
            let fresh = vec![Vec::new(); sessions.len()];
            let after = self.calc.run_user(j, &fresh, batch, &rows, &groups)?;
            for (a, bytes) in accs.iter_mut().zip(after) {
                a[j] = Acc::User(bytes);
            }
        }
        let calc = &mut self.calc;
        let firsts = UInt32Array::from_iter_values(sessions.iter().map(|s| s.rows[0]));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                sessions.iter().map(|s| s.start),
            )),
            Arc::new(Int64Array::from_iter_values(sessions.iter().map(|s| s.end))),
        ];
        for &k in &calc.keys {
            columns
                .push(arrow_select::take::take(batch.column(k), &firsts, None).map_err(arrow_err)?);
        }
        for j in 0..calc.aggs.len() {
            columns.push(calc.column(j, &mut accs)?);
        }
        RecordBatch::try_new(calc.output.clone(), columns).map_err(arrow_err)
    }
}

impl TemporalOp for SessionAggregate {
    fn describe(&self) -> String {
        format!("{self:?}")
    }

    fn input_schemas(&self) -> Vec<SchemaRef> {
        vec![self.calc.input.clone()]
    }

    fn output_schema(&self) -> SchemaRef {
        SessionAggregate::output_schema(self)
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: &RecordBatch,
    ) -> Result<Option<RecordBatch>, String> {
        match &mut self.open {
            Some(open) => open
                .add(&self.calc, self.gap, batch)
                .map_err(|e| e.to_string())?,
            None => self.held.push(batch),
        }
        Ok(None)
    }

    fn on_cti(&mut self, t: i64) -> Result<(Option<RecordBatch>, i64), String> {
        self.held.cti(t);
        if let Some(open) = &mut self.open {
            return open.close(&mut self.calc, t).map_err(|e| e.to_string());
        }
        let Some(all) = self.held.take()? else {
            return Ok((None, t));
        };
        let sessions = self.sessions(&all).map_err(|e| e.to_string())?;
        let mut keep = vec![false; all.num_rows()];
        let mut done: Vec<&Session> = Vec::new();
        for s in &sessions {
            if s.end <= t {
                done.push(s);
            } else {
                for &r in &s.rows {
                    keep[r as usize] = true;
                }
            }
        }
        let waiting = arrow_select::filter::filter_record_batch(&all, &BooleanArray::from(keep))
            .map_err(|e| e.to_string())?;
        self.held.push(&waiting);
        // A session still open may go out later, from its start.
        let pass = self.held.first_start().map_or(t, |s| s.min(t));
        if done.is_empty() {
            return Ok((None, pass));
        }
        done.sort_by_key(|s| (s.start, s.end));
        let out = self.emit(&all, &done).map_err(|e| e.to_string())?;
        Ok((Some(out), pass))
    }

    fn take_delta(&mut self) -> StateChanges {
        let mut out = self.held.delta();
        if let Some(open) = &mut self.open {
            out.extend(open.delta());
        }
        out
    }

    fn restore(&mut self, state: &KeyedState) -> Result<(), String> {
        self.held.restore(state)?;
        if let Some(open) = &mut self.open {
            open.restore(state, self.calc.aggs.len())
                .map_err(|e| e.to_string())?;
            // Rows held by a snapshot from before sessions were kept open
            // join them now (their key is deleted at the next checkpoint).
            if let Some(rows) = self.held.take()? {
                open.add(&self.calc, self.gap, &rows)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use arrow_schema::{DataType, Field};

    use super::super::AggKind;
    use super::*;

    fn input() -> Schema {
        Schema::new(vec![
            Field::new("_start", DataType::Int64, false),
            Field::new("_end", DataType::Int64, false),
            Field::new("user", DataType::Utf8, false),
            Field::new("amount", DataType::Int64, false),
        ])
    }

    fn batch(rows: &[(i64, &str, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(input()),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0 + 1))),
                Arc::new(arrow_array::StringArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                )),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn op() -> SessionAggregate {
        let aggs = vec![
            Aggregate::builtin(AggKind::CountStar, None, "n"),
            Aggregate::builtin(AggKind::Sum, Some(3), "total"),
        ];
        SessionAggregate::new(&input(), 10, vec![2], aggs).unwrap()
    }

    fn rows(b: &RecordBatch) -> Vec<(i64, i64, String, i64, i64)> {
        (0..b.num_rows())
            .map(|i| {
                (
                    b.column(0).as_primitive::<Int64Type>().value(i),
                    b.column(1).as_primitive::<Int64Type>().value(i),
                    b.column(2).as_string::<i32>().value(i).to_string(),
                    b.column(3).as_primitive::<Int64Type>().value(i),
                    b.column(4).as_primitive::<Int64Type>().value(i),
                )
            })
            .collect()
    }

    #[test]
    fn events_closer_than_the_gap_make_one_session_per_group() {
        let mut s = op();
        // al: 0, 5, 14 (one session to 25); 30 (another). bo: 3 alone.
        s.on_batch(
            0,
            &batch(&[
                (14, "al", 3),
                (0, "al", 1),
                (3, "bo", 7),
                (5, "al", 2),
                (30, "al", 4),
            ]),
        )
        .unwrap();
        let (out, pass) = s.on_cti(26).unwrap();
        assert_eq!(
            rows(&out.unwrap()),
            [(0, 25, "al".into(), 3, 6), (3, 14, "bo".into(), 1, 7)]
        );
        // The session from 30 is open: output may still start there.
        assert_eq!(pass, 26);
        let (out, _) = s.on_cti(i64::MAX).unwrap();
        assert_eq!(rows(&out.unwrap()), [(30, 41, "al".into(), 1, 4)]);
    }

    #[test]
    fn a_late_event_bridges_two_sessions_and_a_restore_keeps_what_was_held() {
        let mut s = op();
        s.on_batch(0, &batch(&[(0, "al", 1), (18, "al", 2)]))
            .unwrap();
        let (out, pass) = s.on_cti(5).unwrap();
        assert!(out.is_none());
        assert_eq!(pass, 0);
        let mut state = KeyedState::new();
        for (k, v) in s.take_delta() {
            if let Some(v) = v {
                state.insert(k, crate::udf::decode_entry(&v).unwrap());
            }
        }
        let mut again = op();
        again.restore(&state).unwrap();
        again.on_batch(0, &batch(&[(9, "al", 4)])).unwrap();
        let (out, _) = again.on_cti(i64::MAX).unwrap();
        assert_eq!(rows(&out.unwrap()), [(0, 29, "al".into(), 3, 7)]);
    }

    fn checkpoint(op: &mut SessionAggregate, state: &mut KeyedState) {
        for (k, v) in op.take_delta() {
            match v {
                Some(v) => {
                    state.insert(k, crate::udf::decode_entry(&v).unwrap());
                }
                None => {
                    state.remove(&k);
                }
            }
        }
    }

    proptest::proptest! {
        /// Sessions kept open give, batch by batch and across a restore,
        /// what holding every event until its session closes gives.
        #[test]
        fn open_sessions_give_what_held_rows_give(
            events in proptest::collection::vec((0i64..40, 0usize..3, 1i64..9), 1..80),
            cuts in proptest::collection::vec(0usize..80, 0..6),
            restore_at in 0usize..8,
            turn in 0usize..80,
        ) {
            let names = ["al", "bo", "cy"];
            let mut t = 0;
            let mut sorted: Vec<(i64, &str, i64)> = events
                .iter()
                .map(|&(step, k, amount)| {
                    t += step;
                    (t, names[k], amount)
                })
                .collect();
            sorted.sort_by_key(|r| r.0);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % sorted.len()).collect();
            cuts.push(sorted.len());
            cuts.sort();
            cuts.dedup();
            let (mut open, mut held) = (op(), op().holding_rows());
            let mut state = KeyedState::new();
            let (mut got, mut want) = (Vec::new(), Vec::new());
            let mut from = 0;
            for (b, &to) in cuts.iter().enumerate() {
                // Arrival order within a batch is free: each batch turned.
                let mut part: Vec<_> = sorted[from..to].to_vec();
                if !part.is_empty() {
                    let by = turn % part.len();
                    part.rotate_left(by);
                }
                from = to;
                let next = sorted.get(to).map_or(i64::MAX, |r| r.0);
                for (s, out) in [(&mut open, &mut got), (&mut held, &mut want)] {
                    if !part.is_empty() {
                        s.on_batch(0, &batch(&part)).unwrap();
                    }
                    let (o, pass) = s.on_cti(next).unwrap();
                    out.extend(o.map(|o| rows(&o)).unwrap_or_default());
                    out.push((pass, 0, String::new(), 0, 0));
                }
                checkpoint(&mut open, &mut state);
                if b == restore_at {
                    open = op();
                    open.restore(&state).unwrap();
                }
            }
            proptest::prop_assert_eq!(got, want);
        }
    }
}
