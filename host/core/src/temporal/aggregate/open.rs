//! Session windows kept incrementally: per group, its open sessions with
//! their accumulators, so each event is added once when it comes instead of
//! every held event being sorted again at every CTI. An event joins (and
//! bridges) the open sessions of its group that its lifetime extended by
//! the gap overlaps; a CTI at or past a session's end closes it. The
//! sessions are those of [`super::session`]'s held-rows form, which this
//! replaces for the built-in aggregates (a user-defined aggregate's
//! accumulators are merged by its component, so sessions with one keep
//! their rows).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use serde::{Deserialize, Serialize};

use super::super::acc::{Acc, merge};
use super::{AggError, WindowAggregate, accumulate, arrow_err};
use crate::udf::{KeyedState, StateChanges};

/// The prefix of a group's state key (the group's row-format key follows).
const OPEN: &[u8] = b"open/";
/// The name its sessions are kept under.
const SESSIONS: &str = "sessions";

/// One open session of one group.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    start: i64,
    end: i64,
    accs: Vec<Acc>,
}

/// Every group's open sessions.
#[derive(Debug, Default)]
pub(super) struct OpenSessions {
    /// Per group: its sessions by start (disjoint).
    groups: HashMap<Vec<u8>, Vec<Open>>,
    /// Every open session by end and by start.
    index: Index,
    /// Groups changed since the last checkpoint.
    changed: BTreeSet<Vec<u8>>,
}

/// The indexes of the open sessions: by end (what a CTI closes) and by
/// start (the earliest still open).
#[derive(Debug, Default)]
struct Index {
    ends: BTreeSet<(i64, Vec<u8>, i64)>,
    starts: BTreeSet<(i64, Vec<u8>)>,
}

impl Index {
    fn add(&mut self, key: &[u8], o: &Open) {
        self.ends.insert((o.end, key.to_vec(), o.start));
        self.starts.insert((o.start, key.to_vec()));
    }

    fn remove(&mut self, key: &[u8], o: &Open) {
        self.ends.remove(&(o.end, key.to_vec(), o.start));
        self.starts.remove(&(o.start, key.to_vec()));
    }
}

impl OpenSessions {
    /// Adds `batch`'s events (interval first) to their groups' sessions.
    pub(super) fn add(
        &mut self,
        calc: &WindowAggregate,
        gap: i64,
        batch: &RecordBatch,
    ) -> Result<(), AggError> {
        let starts = batch.column(0).as_primitive::<Int64Type>();
        let ends = batch.column(1).as_primitive::<Int64Type>();
        let keys = calc.group_rows(batch)?;
        let key = |i: usize| keys.as_ref().map_or(&[][..], |k| k.row(i).data());
        let args = calc.arg_columns(batch)?;
        let distinct = calc.distinct_rows(&args)?;
        for i in 0..batch.num_rows() {
            let (s, end) = (starts.value(i), ends.value(i).saturating_add(gap));
            let k = key(i);
            let list = self.groups.entry(k.to_vec()).or_default();
            // The sessions this event overlaps: from the first that ends
            // after it starts to the last that starts before its end.
            let first = list.partition_point(|o| o.end <= s);
            let last = list.partition_point(|o| o.start < end);
            let mut joined = Open {
                start: s,
                end,
                accs: Vec::new(),
            };
            let absorbed: Vec<Open> = list.drain(first..last.max(first)).collect();
            for o in &absorbed {
                self.index.remove(k, o);
                joined.start = joined.start.min(o.start);
                joined.end = joined.end.max(o.end);
            }
            let mut absorbed = absorbed.into_iter();
            joined.accs = match absorbed.next() {
                Some(o) => o.accs,
                None => calc.fresh(),
            };
            for o in absorbed {
                for (j, (into, from)) in joined.accs.iter_mut().zip(&o.accs).enumerate() {
                    merge(into, from).map_err(|()| AggError::Overflow {
                        column: calc.aggs[j].name.clone(),
                        start: joined.start,
                        end: joined.end,
                    })?;
                }
            }
            let (start, end) = (joined.start, joined.end);
            for (j, acc) in joined.accs.iter_mut().enumerate() {
                accumulate(acc, args[j], distinct[j].as_ref(), i).map_err(|()| {
                    AggError::Overflow {
                        column: calc.aggs[j].name.clone(),
                        start,
                        end,
                    }
                })?;
            }
            self.index.add(k, &joined);
            list.insert(first, joined);
            if !self.changed.contains(k) {
                self.changed.insert(k.to_vec());
            }
        }
        Ok(())
    }

    /// The sessions a CTI at `t` closes, in output order (start, end,
    /// group), and the CTI to pass on: no later than the earliest start
    /// still open.
    pub(super) fn close(
        &mut self,
        calc: &mut WindowAggregate,
        t: i64,
    ) -> Result<(Option<RecordBatch>, i64), AggError> {
        let closing: Vec<(i64, Vec<u8>, i64)> = self
            .index
            .ends
            .iter()
            .take_while(|(end, _, _)| *end <= t)
            .cloned()
            .collect();
        let mut done: Vec<(i64, i64, Vec<u8>, Vec<Acc>)> = Vec::with_capacity(closing.len());
        for (end, key, start) in closing {
            let list = self.groups.get_mut(&key).expect("an indexed group");
            let at = list
                .iter()
                .position(|o| o.start == start)
                .expect("an indexed session");
            let o = list.remove(at);
            self.index.remove(&key, &o);
            if list.is_empty() {
                self.groups.remove(&key);
            }
            self.changed.insert(key.clone());
            done.push((start, end, key, o.accs));
        }
        let pass = self.index.starts.first().map_or(t, |(s, _)| (*s).min(t));
        if done.is_empty() {
            return Ok((None, pass));
        }
        done.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(done.iter().map(|d| d.0))),
            Arc::new(Int64Array::from_iter_values(done.iter().map(|d| d.1))),
        ];
        if let Some(c) = &calc.converter {
            let parser = c.parser();
            let rows = done.iter().map(|d| parser.parse(&d.2));
            columns.extend(c.convert_rows(rows).map_err(arrow_err)?);
        }
        let mut accs: Vec<Vec<Acc>> = done.into_iter().map(|d| d.3).collect();
        for j in 0..calc.aggs.len() {
            columns.push(calc.column(j, &mut accs)?);
        }
        let out = RecordBatch::try_new(calc.output.clone(), columns).map_err(arrow_err)?;
        Ok((Some(out), pass))
    }

    /// The groups changed since the last call, as keyed-state changes.
    pub(super) fn delta(&mut self) -> StateChanges {
        let mut out = Vec::new();
        for k in std::mem::take(&mut self.changed) {
            let mut state_key = OPEN.to_vec();
            state_key.extend_from_slice(&k);
            let value = self.groups.get(&k).map(|list| {
                let bytes = postcard::to_allocvec(list).expect("sessions always encode");
                let mut names = BTreeMap::new();
                names.insert(SESSIONS.to_string(), bytes);
                crate::udf::encode_entry(&names)
            });
            out.push((state_key, value));
        }
        out
    }

    /// Takes back the sessions [`OpenSessions::delta`] wrote.
    pub(super) fn restore(&mut self, state: &KeyedState, aggs: usize) -> Result<(), AggError> {
        *self = OpenSessions::default();
        for (key, names) in state {
            let (Some(group), Some(bytes)) = (key.strip_prefix(OPEN), names.get(SESSIONS)) else {
                continue;
            };
            let list: Vec<Open> =
                postcard::from_bytes(bytes).map_err(|e| AggError::State(e.to_string()))?;
            if list.iter().any(|o| o.accs.len() != aggs) {
                return Err(AggError::State(format!(
                    "sessions of another number of aggregates than {aggs}"
                )));
            }
            for o in &list {
                self.index.add(group, o);
            }
            self.groups.insert(group.to_vec(), list);
        }
        Ok(())
    }
}
