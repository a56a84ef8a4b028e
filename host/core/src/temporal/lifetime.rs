//! Changing lifetimes: at an input (`LIFETIME d`) or on any stream.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use serde::{Deserialize, Serialize};

/// How an operator changes each event's lifetime `[start, end)`. Times
/// saturate at the ends of `i64`; a lifetime never becomes empty (it keeps
/// at least 1 µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lifetime {
    /// `[start, start + d)`: every event lasts `d`.
    Duration(i64),
    /// `[start + d, end + d)`: every event moves by `d` (earlier if negative).
    Shift(i64),
    /// `[start, end + d)`: every event lasts `d` longer (shorter if negative).
    Extend(i64),
    /// `[start, start + 1)`: a point at its start.
    Point,
    /// A point at the time in column `c` (interval first), never before the
    /// event's start (a null time keeps the start): events only move
    /// later, so CTIs stay as they are.
    PointAt(usize),
    /// One copy of the event per window its lifetime overlaps, with the
    /// window as its lifetime (a window clause on a query without an
    /// aggregate: the rows of each window, e.g. for a top-N per window).
    Window(super::Hopping),
}

impl Lifetime {
    /// The batch (interval first) with its lifetimes changed.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        if let Lifetime::Window(windows) = self {
            return into_windows(windows, batch);
        }
        let (starts, ends) = interval(batch)?;
        if let Lifetime::PointAt(c) = self {
            let at = batch
                .columns()
                .get(*c)
                .and_then(|a| a.as_any().downcast_ref::<Int64Array>())
                .ok_or_else(|| format!("column {c} is not a time column of the batch"))?;
            let new_starts: Int64Array = starts
                .values()
                .iter()
                .zip(at)
                .map(|(&s, t)| Some(t.map_or(s, |t| t.max(s))))
                .collect();
            let new_ends: Int64Array =
                arrow_arith::arity::unary(&new_starts, |s| s.saturating_add(1));
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            columns[0] = Arc::new(new_starts);
            columns[1] = Arc::new(new_ends);
            return RecordBatch::try_new(batch.schema(), columns).map_err(|e| e.to_string());
        }
        let (mut new_starts, mut new_ends) = (
            Vec::with_capacity(batch.num_rows()),
            Vec::with_capacity(batch.num_rows()),
        );
        for (&s, &e) in starts.values().iter().zip(ends.values()) {
            let (s, e) = match *self {
                Lifetime::Duration(d) => (s, s.saturating_add(d)),
                Lifetime::Shift(d) => (s.saturating_add(d), e.saturating_add(d)),
                Lifetime::Extend(d) => (s, e.saturating_add(d)),
                Lifetime::Point => (s, s.saturating_add(1)),
                Lifetime::Window(_) | Lifetime::PointAt(_) => unreachable!("handled above"),
            };
            new_starts.push(s);
            new_ends.push(e.max(s.saturating_add(1)));
        }
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[0] = Arc::new(Int64Array::from(new_starts));
        columns[1] = Arc::new(Int64Array::from(new_ends));
        RecordBatch::try_new(batch.schema(), columns).map_err(|e| e.to_string())
    }

    /// The CTI to pass on after input CTI `t`: events start where they did,
    /// or moved by the shift.
    pub fn cti(&self, t: i64) -> i64 {
        match *self {
            // The end of input stays the end of input.
            Lifetime::Shift(d) if t != i64::MAX => t.saturating_add(d),
            // Later events fall in windows from the first that holds `t`.
            Lifetime::Window(w) if t != i64::MAX => {
                w.starts(t, t.saturating_add(1)).next().unwrap_or(t)
            }
            _ => t,
        }
    }
}

/// The start and end columns of `batch`.
fn interval(batch: &RecordBatch) -> Result<(&Int64Array, &Int64Array), String> {
    let column = |i: usize| {
        batch
            .columns()
            .get(i)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| "a batch without its int64 interval".to_string())
    };
    Ok((column(0)?, column(1)?))
}

/// Each event of `batch` once per window of `windows` its lifetime
/// overlaps, in input order, windows in order.
fn into_windows(windows: &super::Hopping, batch: &RecordBatch) -> Result<RecordBatch, String> {
    let (starts, ends) = interval(batch)?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    let (mut new_starts, mut new_ends) = (Vec::new(), Vec::new());
    for (row, (&s, &e)) in starts.values().iter().zip(ends.values()).enumerate() {
        for w in windows.starts(s, e) {
            rows.push(row as u32);
            new_starts.push(w);
            new_ends.push(windows.end_of(w));
        }
    }
    let indices = arrow_array::UInt32Array::from(rows);
    let mut columns = Vec::with_capacity(batch.num_columns());
    columns.push(Arc::new(Int64Array::from(new_starts)) as ArrayRef);
    columns.push(Arc::new(Int64Array::from(new_ends)) as ArrayRef);
    for c in &batch.columns()[2..] {
        columns
            .push(arrow_select::take::take(c.as_ref(), &indices, None).map_err(|e| e.to_string())?);
    }
    RecordBatch::try_new(batch.schema(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field, Schema};

    fn batch(events: &[(i64, i64)]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(crate::schema::START, DataType::Int64, false),
            Field::new(crate::schema::END, DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.0))),
                Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.1))),
            ],
        )
        .expect("batch")
    }

    fn intervals(b: &RecordBatch) -> Vec<(i64, i64)> {
        let col = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64")
                .values()
                .to_vec()
        };
        col(0).into_iter().zip(col(1)).collect()
    }

    #[test]
    fn lifetimes_change_as_named_and_never_become_empty() {
        let b = batch(&[(10, 11), (20, 50), (i64::MAX - 1, i64::MAX)]);
        let got = |l: Lifetime| intervals(&l.apply(&b).expect("apply"));
        assert_eq!(
            got(Lifetime::Duration(5)),
            [(10, 15), (20, 25), (i64::MAX - 1, i64::MAX)]
        );
        assert_eq!(
            got(Lifetime::Shift(-10)),
            [(0, 1), (10, 40), (i64::MAX - 11, i64::MAX - 10)]
        );
        assert_eq!(
            got(Lifetime::Extend(-20)),
            [(10, 11), (20, 30), (i64::MAX - 1, i64::MAX)]
        );
        assert_eq!(
            got(Lifetime::Point),
            [(10, 11), (20, 21), (i64::MAX - 1, i64::MAX)]
        );
        assert_eq!(Lifetime::Shift(-10).cti(100), 90);
        assert_eq!(Lifetime::Shift(-10).cti(i64::MAX), i64::MAX);
        assert_eq!(Lifetime::Extend(7).cti(100), 100);
    }

    #[test]
    fn a_point_at_a_column_never_moves_an_event_earlier() {
        let b = batch(&[(10, 11), (20, 50), (30, 31)]);
        let at = Int64Array::from(vec![Some(40), Some(5), None]);
        let schema = Schema::new(vec![
            b.schema().field(0).clone(),
            b.schema().field(1).clone(),
            Field::new("expires", DataType::Int64, true),
        ]);
        let b = RecordBatch::try_new(
            Arc::new(schema),
            vec![b.column(0).clone(), b.column(1).clone(), Arc::new(at)],
        )
        .unwrap();
        let out = Lifetime::PointAt(2).apply(&b).unwrap();
        assert_eq!(intervals(&out), [(40, 41), (20, 21), (30, 31)]);
        assert_eq!(Lifetime::PointAt(2).cti(100), 100);
        assert!(Lifetime::PointAt(1).apply(&batch(&[(1, 2)])).is_ok());
        assert!(Lifetime::PointAt(5).apply(&batch(&[(1, 2)])).is_err());
    }

    #[test]
    fn a_window_change_gives_each_event_its_windows() {
        let w = crate::temporal::Hopping::new(10, 5).unwrap();
        let out = Lifetime::Window(w)
            .apply(&batch(&[(7, 8), (12, 13)]))
            .unwrap();
        assert_eq!(intervals(&out), [(0, 10), (5, 15), (5, 15), (10, 20)]);
        // An event at 12 or later falls in windows from 5 on.
        assert_eq!(Lifetime::Window(w).cti(12), 5);
        assert_eq!(Lifetime::Window(w).cti(i64::MAX), i64::MAX);
    }
}
