//! A windowed aggregate split in two phases, so one without group keys can
//! run as several rVertices.
//!
//! The **partial** phase runs in every copy, on the rows of its partition:
//! it accumulates like a whole aggregate but emits, per group and window,
//! the accumulators themselves (column [`PARTIAL`], postcard bytes) instead
//! of finished values. The **final** phase runs once, after the copies'
//! merge: it merges the accumulators of each group and window (the
//! built-ins by [`super::super::acc::merge`], user-defined aggregates by
//! their component's `merge`, a batch at a time) and finishes them.
//!
//! When it closes a window: a partial copy emits window `[s, e)` at the
//! first CTI `t >= e`, and passes on a CTI above `s` only then (while the
//! window is open its start is the earliest one a later row can reach). So
//! once the merged CTI passes `s`, every copy has sent its partial of the
//! window: the final phase emits the windows that start before each CTI and
//! passes the CTI on unchanged.
//!
//! The result does not depend on the number of copies or the order the
//! partials arrive in: counts, extremes and distinct sets merge exactly,
//! and sums of doubles are exact ([`super::super::exact`]); a user-defined
//! aggregate's `merge` must be order-independent in the same way.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
use arrow_schema::{DataType, Field as ArrowField, Schema, SchemaRef};

use super::{Acc, AggError, Aggregate, Group, Hopping, WindowAggregate, int_column, user_acc};
use crate::temporal::acc::merge;

/// The column of a partial phase's output holding a group's accumulators.
pub const PARTIAL: &str = "__partial";

/// What a windowed aggregate emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Finished values per group and window.
    Whole,
    /// The accumulators per group and window, for a final phase to merge.
    Partial,
    /// Merges partial accumulators and finishes them.
    Final,
}

/// The output of a partial phase: the interval and key columns of the
/// whole aggregate's `output`, then [`PARTIAL`].
pub fn partial_schema(output: &Schema, keys: usize) -> SchemaRef {
    let mut fields: Vec<ArrowField> = output.fields()[..2 + keys]
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(ArrowField::new(PARTIAL, DataType::Binary, false));
    Arc::new(Schema::new(fields))
}

/// The accumulators of each group as one bytes column.
pub(super) fn encode(accs: &[Vec<Acc>]) -> ArrayRef {
    let bytes: Vec<Vec<u8>> = accs
        .iter()
        .map(|a| postcard::to_allocvec(a).expect("accumulators always encode"))
        .collect();
    Arc::new(BinaryArray::from_iter_values(bytes))
}

/// Pending user-defined merges: per group (window start, key), the bytes
/// to merge into it of each user-defined aggregate.
type Merges = Vec<((i64, Vec<u8>), Vec<Vec<u8>>)>;

impl WindowAggregate {
    /// The partial phase of `new(input, window, keys, aggs)`: it emits the
    /// interval, the key columns and [`PARTIAL`].
    pub fn partial(
        input: &Schema,
        window: Hopping,
        keys: Vec<usize>,
        aggs: Vec<Aggregate>,
    ) -> Result<WindowAggregate, AggError> {
        let mut op = WindowAggregate::new(input, window, keys, aggs)?;
        op.output = partial_schema(&op.output, op.keys.len());
        op.phase = Phase::Partial;
        Ok(op)
    }

    /// The final phase of `new(input, window, keys, aggs)`: it reads what
    /// the partial phase emits and gives what the whole aggregate would.
    pub fn merging(
        input: &Schema,
        window: Hopping,
        keys: Vec<usize>,
        aggs: Vec<Aggregate>,
    ) -> Result<WindowAggregate, AggError> {
        let mut op = WindowAggregate::new(input, window, keys, aggs)?;
        let k = op.keys.len();
        op.input = partial_schema(&op.output, k);
        op.keys = (2..2 + k).collect();
        op.phase = Phase::Final;
        Ok(op)
    }

    /// Merges a batch of partial accumulators into the groups of their
    /// windows.
    pub(super) fn on_partials(&mut self, batch: &RecordBatch) -> Result<(), AggError> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let starts = int_column(batch.column(0))?;
        let rows = self.group_rows(batch)?;
        let partials = batch
            .column(batch.num_columns() - 1)
            .as_binary_opt::<i32>()
            .ok_or_else(|| AggError::State(format!("no `{PARTIAL}` bytes column")))?;
        let fresh = self.fresh();
        let users: Vec<usize> = (0..self.aggs.len())
            .filter(|&j| self.users[j].is_some())
            .collect();
        let mut pending: Merges = Vec::new();
        let mut in_call: HashSet<(i64, Vec<u8>)> = HashSet::new();
        for row in 0..n {
            let start = starts.value(row);
            // A window already emitted must not go out twice.
            if self.cti.is_some_and(|c| start < c) {
                continue;
            }
            let key: Vec<u8> = rows
                .as_ref()
                .map_or_else(Vec::new, |r| r.row(row).data().to_vec());
            let from: Vec<Acc> = postcard::from_bytes(partials.value(row))
                .map_err(|e| AggError::State(format!("partial accumulators: {e}")))?;
            if from.len() != self.aggs.len() {
                return Err(AggError::State(format!(
                    "{} partial accumulators for {} aggregates",
                    from.len(),
                    self.aggs.len()
                )));
            }
            let groups = self.windows.entry(start).or_default();
            let group = groups.entry(key.clone()).or_insert_with(|| Group {
                accs: fresh.clone(),
                dirty: false,
                persisted: false,
            });
            if !group.dirty {
                group.dirty = true;
                self.changed.push((start, key.clone()));
            }
            for (j, (acc, from)) in group.accs.iter_mut().zip(&from).enumerate() {
                if std::mem::discriminant(acc) != std::mem::discriminant(from) {
                    return Err(AggError::State(format!(
                        "a partial accumulator of another kind for `{}`",
                        self.aggs[j].name
                    )));
                }
                merge(acc, from).map_err(|()| AggError::Overflow {
                    column: self.aggs[j].name.clone(),
                    start,
                    end: self.window.end_of(start),
                })?;
            }
            if users.is_empty() {
                continue;
            }
            // One call merges each group once: a group met again starts
            // the next call.
            if !in_call.insert((start, key.clone())) {
                self.merge_users(std::mem::take(&mut pending), &users)?;
                in_call.clear();
                in_call.insert((start, key.clone()));
            }
            let bytes = users
                .iter()
                .map(|&j| match &from[j] {
                    Acc::User(b) => b.clone(),
                    _ => Vec::new(),
                })
                .collect();
            pending.push(((start, key), bytes));
        }
        if !pending.is_empty() {
            self.merge_users(pending, &users)?;
        }
        Ok(())
    }

    /// One `merge` call per user-defined aggregate for the groups of
    /// `calls`, each met once.
    fn merge_users(&mut self, calls: Merges, users: &[usize]) -> Result<(), AggError> {
        for (u, &j) in users.iter().enumerate() {
            let into: Vec<Vec<u8>> = calls
                .iter()
                .map(|((s, k), _)| {
                    user_acc(&mut self.windows, (*s, k), j)
                        .map(std::mem::take)
                        .unwrap_or_default()
                })
                .collect();
            let from: Vec<Vec<u8>> = calls.iter().map(|(_, f)| f[u].clone()).collect();
            let fail = |message: String| AggError::User {
                function: format!("{:?}", self.aggs[j].user.as_ref().map(|c| &c.function)),
                column: self.aggs[j].name.clone(),
                message,
            };
            let user = self.users[j].as_mut().expect("a user-defined aggregate");
            let merged = user.merge(&into, &from).map_err(fail)?;
            if merged.len() != into.len() {
                return Err(fail(format!(
                    "merge returned {} accumulators for {}",
                    merged.len(),
                    into.len()
                )));
            }
            for (((s, k), _), bytes) in calls.iter().zip(merged) {
                if let Some(acc) = user_acc(&mut self.windows, (*s, k), j) {
                    *acc = bytes;
                }
            }
        }
        Ok(())
    }
}
