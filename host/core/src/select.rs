//! Carrying input columns over to a UDF's output rows: the interval columns,
//! and the columns a UDF passed through unchanged.
//!
//! A UDF says where each output row comes from as a list of parent rows. Most
//! UDFs are maps (every row once) or filters (each row at most once, in
//! order); for those the parents form a few long runs of consecutive rows, and
//! a column is carried over by copying whole runs, without a per-row step.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, PrimitiveArray, StringArray, UInt32Array};
use arrow_buffer::{BooleanBufferBuilder, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::DataType;
use arrow_select::take::take;

/// Which input rows a UDF's output rows come from.
#[derive(Debug)]
pub enum Selection {
    /// Every row once, in order: columns are shared, not copied.
    All,
    /// Each row at most once, in order (a filter), as runs of consecutive rows.
    Runs {
        /// The runs, in order, none empty or adjacent to the next.
        runs: Vec<Range<usize>>,
        /// Rows selected in all.
        len: usize,
    },
    /// Rows repeated (a flat-map): gathered row by row.
    Take(UInt32Array),
}

impl Selection {
    /// The selection a UDF's `parents` make over an input of `rows` rows:
    /// an error unless each is a row of the input and they never decrease.
    pub fn of(parents: Vec<u32>, rows: usize) -> Result<Selection, String> {
        let n = parents.len();
        // A map's parents (as many as rows) are all the rows or a flat-map's
        // repeats: runs are needed only for fewer.
        let mut starts = Vec::new();
        let (ordered, strict) = if n == rows {
            scan::<false>(&parents, &mut starts)
        } else {
            scan::<true>(&parents, &mut starts)
        };
        // Once ordered, the last parent is the largest.
        if !ordered || parents.last().is_some_and(|&p| p as usize >= rows) {
            let mut prev = 0;
            for &p in &parents {
                if p as usize >= rows || p < prev {
                    return Err(format!(
                        "parent row {p} is out of range or out of order (batch of {rows} rows)"
                    ));
                }
                prev = p;
            }
        }
        Ok(if !strict {
            Selection::Take(UInt32Array::from(parents))
        } else if n == rows {
            Selection::All
        } else {
            let ends = starts.iter().skip(1).copied().chain(std::iter::once(n));
            let runs = starts
                .iter()
                .zip(ends)
                .map(|(&k, end)| {
                    let first = parents[k] as usize;
                    first..first + (end - k)
                })
                .collect();
            Selection::Runs { runs, len: n }
        })
    }

    /// The selected rows of `array`, in order.
    pub fn apply(&self, array: &ArrayRef) -> Result<ArrayRef, String> {
        let (runs, len) = match self {
            Selection::All => return Ok(array.clone()),
            Selection::Take(indices) => {
                return take(array.as_ref(), indices, None).map_err(|e| e.to_string());
            }
            Selection::Runs { runs, len } => (runs.as_slice(), *len),
        };
        Ok(match array.data_type() {
            DataType::Int64 => primitive(array.as_primitive::<Int64Type>(), runs, len),
            DataType::Float64 => primitive(array.as_primitive::<Float64Type>(), runs, len),
            DataType::Utf8 => strings(array.as_string::<i32>(), runs, len),
            DataType::Boolean => {
                let values = array.as_boolean().values();
                let bits = packed(values.values(), values.offset(), runs, len);
                Arc::new(BooleanArray::new(bits, nulls(array.nulls(), runs, len)))
            }
            _ => {
                let indices: UInt32Array = runs
                    .iter()
                    .flat_map(|r| r.start as u32..r.end as u32)
                    .collect();
                take(array.as_ref(), &indices, None).map_err(|e| e.to_string())?
            }
        })
    }
}

/// One pass over `parents` without data-dependent branches (a filter's
/// parents break their runs at random): whether they never decrease, whether
/// they strictly increase and, if `RUNS`, where in `parents` each run of
/// consecutive rows starts (into `starts`: a position is written at every
/// step and kept when a run starts there).
fn scan<const RUNS: bool>(parents: &[u32], starts: &mut Vec<usize>) -> (bool, bool) {
    let (mut ordered, mut strict) = (true, true);
    let Some((&first, rest)) = parents.split_first() else {
        return (ordered, strict);
    };
    if RUNS {
        starts.clear();
        starts.reserve(parents.len());
    }
    let spare = &mut starts.spare_capacity_mut()[..if RUNS { parents.len() } else { 0 }];
    let mut count = 0;
    if RUNS {
        spare[0].write(0);
        count = 1;
    }
    let mut prev = first;
    for (k, &p) in rest.iter().enumerate() {
        ordered &= p >= prev;
        strict &= p > prev;
        if RUNS {
            // `count <= k + 1 < parents.len()`: the bounds check never fails.
            spare[count].write(k + 1);
            count += usize::from(p != prev.wrapping_add(1));
        }
        prev = p;
    }
    // SAFETY: the first `count` elements were written above (none unless `RUNS`).
    unsafe { starts.set_len(count) };
    (ordered, strict)
}

fn primitive<T: ArrowPrimitiveType>(
    array: &PrimitiveArray<T>,
    runs: &[Range<usize>],
    len: usize,
) -> ArrayRef {
    let values = array.values();
    let mut out = Vec::with_capacity(len);
    for run in runs {
        out.extend_from_slice(&values[run.clone()]);
    }
    Arc::new(
        PrimitiveArray::<T>::new(ScalarBuffer::from(out), nulls(array.nulls(), runs, len))
            .with_data_type(array.data_type().clone()),
    )
}

fn strings(array: &StringArray, runs: &[Range<usize>], len: usize) -> ArrayRef {
    let offsets = array.value_offsets();
    let data = array.values();
    let bytes: usize = runs
        .iter()
        .map(|r| (offsets[r.end] - offsets[r.start]) as usize)
        .sum();
    let mut out_offsets = Vec::with_capacity(len + 1);
    out_offsets.push(0i32);
    let mut out_data = Vec::with_capacity(bytes);
    for run in runs {
        let (a, b) = (offsets[run.start], offsets[run.end]);
        // Fits: the output is no larger than the input.
        let shift = out_data.len() as i32 - a;
        out_offsets.extend(offsets[run.start + 1..=run.end].iter().map(|o| o + shift));
        out_data.extend_from_slice(&data[a as usize..b as usize]);
    }
    let nulls = nulls(array.nulls(), runs, len);
    // SAFETY: the offsets start at 0 and never decrease (the input's did not),
    // the last is the data's length, and every value is a whole value of a
    // valid string array, so UTF-8 on character boundaries.
    let array = unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(ScalarBuffer::from(out_offsets)),
            out_data.into(),
            nulls,
        )
    };
    Arc::new(array)
}

/// The selected bits of a bitmap that starts at bit `offset` of `bytes`.
fn packed(
    bytes: &[u8],
    offset: usize,
    runs: &[Range<usize>],
    len: usize,
) -> arrow_buffer::BooleanBuffer {
    let mut out = BooleanBufferBuilder::new(len);
    for run in runs {
        out.append_packed_range(offset + run.start..offset + run.end, bytes);
    }
    out.finish()
}

fn nulls(nulls: Option<&NullBuffer>, runs: &[Range<usize>], len: usize) -> Option<NullBuffer> {
    let nulls = nulls.filter(|n| n.null_count() > 0)?;
    let bits = nulls.inner();
    let out = NullBuffer::new(packed(bits.values(), bits.offset(), runs, len));
    (out.null_count() > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arrays(values: &[(Option<i64>, Option<String>, Option<bool>)]) -> Vec<ArrayRef> {
        vec![
            Arc::new(
                values
                    .iter()
                    .map(|v| v.0)
                    .collect::<arrow_array::Int64Array>(),
            ),
            Arc::new(
                values
                    .iter()
                    .map(|v| v.0.map(|i| i as f64 / 3.0))
                    .collect::<arrow_array::Float64Array>(),
            ),
            Arc::new(values.iter().map(|v| v.1.clone()).collect::<StringArray>()),
            Arc::new(values.iter().map(|v| v.2).collect::<BooleanArray>()),
        ]
    }

    proptest! {
        /// Any selection of any (sliced, nullable) column gives what Arrow's
        /// `take` gives for the same parents.
        #[test]
        fn a_selection_is_arrows_take(
            values in proptest::collection::vec(
                (
                    proptest::option::of(any::<i64>()),
                    proptest::option::of("[a-zé]{0,9}"),
                    proptest::option::of(any::<bool>()),
                ),
                1..80,
            ),
            keep in proptest::collection::vec(0u8..4, 80),
            skip in 0usize..10,
        ) {
            let skip = skip.min(values.len() - 1);
            let rows = values.len() - skip;
            // 0: drop, 1..=2: keep once, 3: keep twice.
            let parents: Vec<u32> = (0..rows as u32)
                .flat_map(|i| {
                    let n = match keep[i as usize] { 0 => 0, 3 => 2, _ => 1 };
                    std::iter::repeat_n(i, n)
                })
                .collect();
            let selection = Selection::of(parents.clone(), rows).unwrap();
            let indices = UInt32Array::from(parents);
            for array in arrays(&values) {
                let array = array.slice(skip, rows);
                let ours = selection.apply(&array).unwrap();
                let theirs = take(array.as_ref(), &indices, None).unwrap();
                prop_assert_eq!(ours.to_data(), theirs.to_data());
            }
        }
    }

    #[test]
    fn kinds_of_selection() {
        assert!(matches!(
            Selection::of(vec![0, 1, 2], 3).unwrap(),
            Selection::All
        ));
        let Selection::Runs { runs, len } = Selection::of(vec![0, 1, 3, 4, 5, 9], 10).unwrap()
        else {
            panic!("a filter is runs")
        };
        assert_eq!((runs, len), (vec![0..2, 3..6, 9..10], 6));
        assert!(matches!(
            Selection::of(vec![0, 0, 1], 3).unwrap(),
            Selection::Take(_)
        ));
        assert!(matches!(
            Selection::of(vec![], 3).unwrap(),
            Selection::Runs { len: 0, .. }
        ));
    }

    #[test]
    fn bad_parents_are_refused() {
        for parents in [vec![0, 3], vec![2, 1], vec![5]] {
            let err = Selection::of(parents.clone(), 3).unwrap_err();
            assert!(
                err.contains("out of range or out of order"),
                "{parents:?}: {err}"
            );
        }
    }
}
