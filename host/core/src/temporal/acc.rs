//! Accumulators of the built-in aggregates: where one aggregate of one
//! group of one window stands, how a row adds to it, and its output column.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow_row::Rows;
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};

use super::exact::ExactSum;

/// One accumulator: where one aggregate of one group of one window stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum Acc {
    Count(i64),
    Distinct(BTreeSet<Vec<u8>>),
    SumInt(Option<i64>),
    SumFloat(Option<f64>),
    Min(Extreme),
    Max(Extreme),
    AvgInt(i128, i64),
    AvgFloat(f64, i64),
    // `SumFloat` and `AvgFloat` are the running sums of snapshots written
    // before sums were exact: they restore and go on as they were.
    /// A user-defined aggregate's accumulator, added to a batch at a time.
    User(Vec<u8>),
    /// `SUM` of doubles, kept exactly (so it does not depend on the order
    /// rows came in); `None` until a value is added.
    SumExact(Option<ExactSum>),
    /// `AVG` of doubles: the exact sum and the count.
    AvgExact(ExactSum, i64),
}

/// The least or greatest value seen so far, of the column's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) enum Extreme {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

impl Extreme {
    pub(super) fn of(ty: Option<&DataType>) -> Extreme {
        match ty {
            Some(DataType::Float64) => Extreme::Float(None),
            Some(DataType::Utf8) => Extreme::Text(None),
            Some(DataType::Boolean) => Extreme::Bool(None),
            _ => Extreme::Int(None),
        }
    }

    /// Keeps the value `other` holds if it is better (as [`Extreme::offer`]).
    fn merge(&mut self, other: &Extreme, want: std::cmp::Ordering) {
        fn keep<T: Clone>(best: &mut Option<T>, v: &Option<T>, better: impl Fn(&T, &T) -> bool) {
            if let Some(v) = v
                && best.as_ref().is_none_or(|b| better(v, b))
            {
                *best = Some(v.clone());
            }
        }
        match (self, other) {
            (Extreme::Int(a), Extreme::Int(b)) => keep(a, b, |v, b| v.cmp(b) == want),
            (Extreme::Float(a), Extreme::Float(b)) => keep(a, b, |v, b| v.total_cmp(b) == want),
            (Extreme::Text(a), Extreme::Text(b)) => keep(a, b, |v, b| v.cmp(b) == want),
            (Extreme::Bool(a), Extreme::Bool(b)) => keep(a, b, |v, b| v.cmp(b) == want),
            _ => {}
        }
    }

    /// Keeps row `row` of `arg` if it is better: less than the kept value
    /// when `want` is `Less`, greater when `Greater`. Floats compare by
    /// IEEE total order, so NaN is a value like any other.
    fn offer(&mut self, any: &dyn std::any::Any, row: usize, want: std::cmp::Ordering) {
        match self {
            Extreme::Int(best) => {
                let v = int_at(any, row);
                if best.is_none_or(|b| v.cmp(&b) == want) {
                    *best = Some(v);
                }
            }
            Extreme::Float(best) => {
                let v = float_at(any, row);
                if best.is_none_or(|b| v.total_cmp(&b) == want) {
                    *best = Some(v);
                }
            }
            Extreme::Text(best) => {
                if let Some(a) = any.downcast_ref::<StringArray>() {
                    let v = a.value(row);
                    if best.as_deref().is_none_or(|b| v.cmp(b) == want) {
                        *best = Some(v.to_string());
                    }
                }
            }
            Extreme::Bool(best) => {
                if let Some(a) = any.downcast_ref::<BooleanArray>() {
                    let v = a.value(row);
                    if best.is_none_or(|b| v.cmp(&b) == want) {
                        *best = Some(v);
                    }
                }
            }
        }
    }
}

/// Adds row `row` of `arg` (none for `COUNT(*)`) to `acc`; `Err` on an
/// int64 overflow.
pub(super) fn accumulate(
    acc: &mut Acc,
    arg: Option<&ArrayRef>,
    distinct: Option<&Rows>,
    row: usize,
) -> Result<(), ()> {
    let Some(arg) = arg else {
        if let Acc::Count(n) = acc {
            *n += 1;
        }
        return Ok(());
    };
    if arg.is_null(row) {
        return Ok(());
    }
    let any = arg.as_any();
    match acc {
        Acc::Count(n) => *n += 1,
        Acc::Distinct(seen) => {
            if let Some(rows) = distinct {
                let bytes = rows.row(row).data();
                if !seen.contains(bytes) {
                    seen.insert(bytes.to_vec());
                }
            }
        }
        Acc::SumInt(sum) => {
            let v = int_at(any, row);
            *sum = Some(sum.unwrap_or(0).checked_add(v).ok_or(())?);
        }
        Acc::SumFloat(sum) => *sum = Some(sum.unwrap_or(0.0) + float_at(any, row)),
        Acc::AvgInt(sum, n) => {
            *sum += int_at(any, row) as i128;
            *n += 1;
        }
        Acc::AvgFloat(sum, n) => {
            *sum += float_at(any, row);
            *n += 1;
        }
        Acc::SumExact(sum) => sum.get_or_insert_default().add(float_at(any, row)),
        Acc::AvgExact(sum, n) => {
            sum.add(float_at(any, row));
            *n += 1;
        }
        Acc::Min(best) => best.offer(any, row, std::cmp::Ordering::Less),
        Acc::Max(best) => best.offer(any, row, std::cmp::Ordering::Greater),
        Acc::User(_) => {}
    }
    Ok(())
}

/// Adds what accumulator `from` holds to `into` (partial accumulators of
/// one group from different partitions), for the built-in kinds; `Err` on
/// an int64 overflow. Both are of the same kind (checked by the caller);
/// user-defined accumulators are merged by their component.
pub(super) fn merge(into: &mut Acc, from: &Acc) -> Result<(), ()> {
    match (into, from) {
        (Acc::Count(a), Acc::Count(b)) => *a += b,
        (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(b.iter().cloned()),
        (Acc::SumInt(a), Acc::SumInt(Some(b))) => {
            *a = Some(a.unwrap_or(0).checked_add(*b).ok_or(())?);
        }
        (Acc::SumFloat(a), Acc::SumFloat(Some(b))) => *a = Some(a.unwrap_or(0.0) + b),
        (Acc::SumExact(a), Acc::SumExact(Some(b))) => a.get_or_insert_default().merge(b),
        (Acc::AvgInt(s, n), Acc::AvgInt(s2, n2)) => {
            *s += s2;
            *n += n2;
        }
        (Acc::AvgFloat(s, n), Acc::AvgFloat(s2, n2)) => {
            *s += s2;
            *n += n2;
        }
        (Acc::AvgExact(s, n), Acc::AvgExact(s2, n2)) => {
            s.merge(s2);
            *n += n2;
        }
        (Acc::Min(a), Acc::Min(b)) => a.merge(b, std::cmp::Ordering::Less),
        (Acc::Max(a), Acc::Max(b)) => a.merge(b, std::cmp::Ordering::Greater),
        _ => {}
    }
    Ok(())
}

fn int_at(any: &dyn std::any::Any, row: usize) -> i64 {
    any.downcast_ref::<Int64Array>().map_or(0, |a| a.value(row))
}

fn float_at(any: &dyn std::any::Any, row: usize) -> f64 {
    any.downcast_ref::<Float64Array>()
        .map_or(0.0, |a| a.value(row))
}

/// The output column of one aggregate over the accumulators of every row.
pub(super) fn finish<'a>(accs: impl Iterator<Item = &'a Acc>, ty: &DataType) -> ArrayRef {
    match ty {
        DataType::Float64 => Arc::new(
            accs.map(|a| match a {
                Acc::SumFloat(v) | Acc::Min(Extreme::Float(v)) | Acc::Max(Extreme::Float(v)) => *v,
                Acc::AvgInt(sum, n) => (*n > 0).then(|| *sum as f64 / *n as f64),
                Acc::AvgFloat(sum, n) => (*n > 0).then(|| *sum / *n as f64),
                Acc::SumExact(sum) => sum.as_ref().map(ExactSum::value),
                Acc::AvgExact(sum, n) => (*n > 0).then(|| sum.value() / *n as f64),
                _ => None,
            })
            .collect::<Float64Array>(),
        ),
        DataType::Utf8 => Arc::new(
            accs.map(|a| match a {
                Acc::Min(Extreme::Text(v)) | Acc::Max(Extreme::Text(v)) => v.clone(),
                _ => None,
            })
            .collect::<StringArray>(),
        ),
        DataType::Boolean => Arc::new(
            accs.map(|a| match a {
                Acc::Min(Extreme::Bool(v)) | Acc::Max(Extreme::Bool(v)) => *v,
                _ => None,
            })
            .collect::<BooleanArray>(),
        ),
        _ => Arc::new(
            accs.map(|a| match a {
                Acc::Count(n) => Some(*n),
                Acc::Distinct(seen) => Some(seen.len() as i64),
                Acc::SumInt(v) | Acc::Min(Extreme::Int(v)) | Acc::Max(Extreme::Int(v)) => *v,
                _ => None,
            })
            .collect::<Int64Array>(),
        ),
    }
}
