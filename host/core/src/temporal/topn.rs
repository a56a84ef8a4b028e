//! Per-window top-N: of the events sharing one lifetime (a window's rows)
//! and, with `LIMIT n BY` columns, the same values of those, the first `n`
//! by an order of columns.
//!
//! Events with one lifetime `[start, end)` are a window's rows when they
//! come from a windowed aggregate. All of them have arrived once a CTI
//! passes `start` (later events start at or after the CTI), so CTI `t`
//! makes every group with `start < t` final: the operator sorts it by the
//! order columns, breaks ties by the remaining columns (ascending, nulls
//! first), and emits its first `n` rows. Rows that start at or after `t`
//! are held, as keyed state, until a later CTI.

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{BooleanArray, RecordBatch, UInt32Array};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{SchemaRef, SortOptions};

use super::TemporalOp;
use super::held::Held;
use crate::udf::{KeyedState, StateChanges};

/// One column of the order: its index (interval first) and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderKey {
    /// The column.
    pub column: usize,
    /// Largest first.
    pub descending: bool,
    /// Nulls before values.
    pub nulls_first: bool,
}

/// The key the held rows are kept under.
const HELD: &[u8] = b"held";

/// The first `n` rows of every lifetime by an order.
pub struct TopN {
    schema: SchemaRef,
    order: Vec<OrderKey>,
    /// The columns ranked within (besides the lifetime).
    by: Vec<usize>,
    n: usize,
    converter: RowConverter,
    /// The interval and the `by` columns: a row's group.
    groups: RowConverter,
    /// Columns in sort order: interval, `by`, the order, then the rest.
    sort_columns: Vec<usize>,
    /// Rows not yet final.
    held: Held,
}

impl std::fmt::Debug for TopN {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TopN {
    /// The first `n` rows per lifetime and values of the `by` columns of a
    /// stream of `schema` (interval first) by `order`.
    pub fn new(
        schema: SchemaRef,
        order: Vec<OrderKey>,
        by: Vec<usize>,
        n: usize,
    ) -> Result<TopN, String> {
        if n == 0 {
            return Err("LIMIT 0 keeps no row; leave the query out".into());
        }
        if order.is_empty() {
            return Err("a top-N needs ORDER BY columns".into());
        }
        let width = schema.fields().len();
        if let Some(k) = order.iter().find(|k| k.column < 2 || k.column >= width) {
            return Err(format!("order column {} is not a data column", k.column));
        }
        if let Some(c) = by.iter().find(|&&c| c < 2 || c >= width) {
            return Err(format!("LIMIT BY column {c} is not a data column"));
        }
        if let Some(k) = order.iter().find(|k| by.contains(&k.column)) {
            return Err(format!(
                "`{}` is ranked within (LIMIT BY) and ordered by; within one value the order by it ties",
                schema.field(k.column).name()
            ));
        }
        let mut sort_columns = vec![0, 1];
        let mut options = vec![SortOptions::default(), SortOptions::default()];
        sort_columns.extend(&by);
        options.extend(by.iter().map(|_| SortOptions::default()));
        let field =
            |c: usize, o| SortField::new_with_options(schema.field(c).data_type().clone(), o);
        let groups = RowConverter::new(
            sort_columns
                .iter()
                .map(|&c| field(c, SortOptions::default()))
                .collect(),
        )
        .map_err(|e| format!("top-N: {e}"))?;
        for k in &order {
            sort_columns.push(k.column);
            options.push(SortOptions {
                descending: k.descending,
                nulls_first: k.nulls_first,
            });
        }
        for c in 2..width {
            if !order.iter().any(|k| k.column == c) && !by.contains(&c) {
                sort_columns.push(c);
                options.push(SortOptions::default());
            }
        }
        let fields = sort_columns
            .iter()
            .zip(options)
            .map(|(&c, o)| field(c, o))
            .collect();
        let converter = RowConverter::new(fields).map_err(|e| format!("top-N: {e}"))?;
        Ok(TopN {
            schema: schema.clone(),
            order,
            by,
            n,
            converter,
            groups,
            sort_columns,
            held: Held::new(schema.clone(), HELD),
        })
    }

    /// The first `n` rows of each lifetime of `rows`, in sort order.
    fn top(&self, rows: &RecordBatch) -> Result<RecordBatch, String> {
        let columns: Vec<_> = self
            .sort_columns
            .iter()
            .map(|&c| rows.column(c).clone())
            .collect();
        let encoded = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| format!("top-N: {e}"))?;
        let mut order: Vec<u32> = (0..rows.num_rows() as u32).collect();
        order.sort_unstable_by(|&a, &b| encoded.row(a as usize).cmp(&encoded.row(b as usize)));
        let group_columns: Vec<_> = self.sort_columns[..2 + self.by.len()]
            .iter()
            .map(|&c| rows.column(c).clone())
            .collect();
        let groups = self
            .groups
            .convert_columns(&group_columns)
            .map_err(|e| format!("top-N: {e}"))?;
        let mut keep = Vec::new();
        let mut group = None;
        let mut taken = 0;
        for i in order {
            let this = groups.row(i as usize);
            if group != Some(this) {
                group = Some(this);
                taken = 0;
            }
            if taken < self.n {
                keep.push(i);
                taken += 1;
            }
        }
        let indices = UInt32Array::from(keep);
        let columns = rows
            .columns()
            .iter()
            .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("top-N: {e}"))?;
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| format!("top-N: {e}"))
    }
}

impl TemporalOp for TopN {
    fn describe(&self) -> String {
        let order: Vec<String> = self
            .order
            .iter()
            .map(|k| {
                format!(
                    "{}{}",
                    self.schema.field(k.column).name(),
                    if k.descending { " DESC" } else { "" }
                )
            })
            .collect();
        let by: Vec<&str> = self
            .by
            .iter()
            .map(|&c| self.schema.field(c).name().as_str())
            .collect();
        let per = if by.is_empty() {
            String::new()
        } else {
            format!(" and {}", by.join(", "))
        };
        format!("top {} per window{per} by {}", self.n, order.join(", "))
    }

    fn input_schemas(&self) -> Vec<SchemaRef> {
        vec![self.schema.clone()]
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: &RecordBatch,
    ) -> Result<Option<RecordBatch>, String> {
        self.held.push(batch);
        Ok(None)
    }

    fn on_cti(&mut self, t: i64) -> Result<(Option<RecordBatch>, i64), String> {
        self.held.cti(t);
        let Some(held) = self.held.take()? else {
            return Ok((None, t));
        };
        let starts = held.column(0).as_primitive::<Int64Type>();
        let ready: BooleanArray = starts.iter().map(|s| s.map(|s| s < t)).collect();
        let waiting = arrow_arith::boolean::not(&ready).map_err(|e| format!("top-N: {e}"))?;
        let filter = |mask: &BooleanArray| {
            arrow_select::filter::filter_record_batch(&held, mask)
                .map_err(|e| format!("top-N: {e}"))
        };
        let (ready, waiting) = (filter(&ready)?, filter(&waiting)?);
        self.held.push(&waiting);
        if ready.num_rows() == 0 {
            return Ok((None, t));
        }
        Ok((Some(self.top(&ready)?), t))
    }

    fn take_delta(&mut self) -> StateChanges {
        self.held.delta()
    }

    fn restore(&mut self, state: &KeyedState) -> Result<(), String> {
        self.held.restore(state)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch(rows: &[(i64, &str, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("_start", DataType::Int64, false),
            Field::new("_end", DataType::Int64, false),
            Field::new("item", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0 + 10))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn rows(b: &RecordBatch) -> Vec<(i64, String, i64)> {
        (0..b.num_rows())
            .map(|i| {
                (
                    b.column(0).as_primitive::<Int64Type>().value(i),
                    b.column(2).as_string::<i32>().value(i).to_string(),
                    b.column(3).as_primitive::<Int64Type>().value(i),
                )
            })
            .collect()
    }

    fn top2(input: &RecordBatch) -> TopN {
        let order = vec![OrderKey {
            column: 3,
            descending: true,
            nulls_first: false,
        }];
        TopN::new(input.schema(), order, vec![], 2).unwrap()
    }

    #[test]
    fn each_window_keeps_its_first_n_with_ties_broken_by_the_other_columns() {
        let input = batch(&[
            (0, "a", 5),
            (0, "b", 9),
            (0, "c", 9),
            (0, "d", 1),
            (10, "e", 3),
            (10, "f", 4),
            (20, "g", 7),
        ]);
        let mut op = top2(&input);
        assert!(op.on_batch(0, &input).unwrap().is_none());
        let (out, cti) = op.on_cti(15).unwrap();
        assert_eq!(cti, 15);
        assert_eq!(
            rows(&out.unwrap()),
            [
                (0, "b".into(), 9),
                (0, "c".into(), 9),
                (10, "f".into(), 4),
                (10, "e".into(), 3)
            ]
        );
        // The window at 20 waits for a CTI past its start.
        let (out, _) = op.on_cti(i64::MAX).unwrap();
        assert_eq!(rows(&out.unwrap()), [(20, "g".into(), 7)]);
    }

    #[test]
    fn held_rows_survive_a_restore() {
        let input = batch(&[(0, "a", 5), (20, "g", 7), (20, "h", 8), (20, "i", 1)]);
        let mut op = top2(&input);
        op.on_batch(0, &input).unwrap();
        op.on_cti(10).unwrap();
        let mut state = KeyedState::new();
        for (k, v) in op.take_delta() {
            if let Some(v) = v {
                state.insert(k, crate::udf::decode_entry(&v).unwrap());
            }
        }
        let mut again = top2(&input);
        again.restore(&state).unwrap();
        let (out, _) = again.on_cti(i64::MAX).unwrap();
        assert_eq!(
            rows(&out.unwrap()),
            [(20, "h".into(), 8), (20, "g".into(), 7)]
        );
    }

    #[test]
    fn bad_top_ns_are_refused() {
        let input = batch(&[]);
        let key = |column| OrderKey {
            column,
            descending: false,
            nulls_first: false,
        };
        assert!(TopN::new(input.schema(), vec![key(3)], vec![], 0).is_err());
        assert!(TopN::new(input.schema(), vec![], vec![], 1).is_err());
        assert!(TopN::new(input.schema(), vec![key(0)], vec![], 1).is_err());
        assert!(TopN::new(input.schema(), vec![key(9)], vec![], 1).is_err());
        assert!(TopN::new(input.schema(), vec![key(3)], vec![1], 1).is_err());
        assert!(TopN::new(input.schema(), vec![key(3)], vec![3], 1).is_err());
    }

    #[test]
    fn limit_by_keeps_the_first_n_of_each_value_in_each_window() {
        let input = batch(&[
            (0, "a", 5),
            (0, "a", 9),
            (0, "a", 7),
            (0, "b", 1),
            (10, "a", 3),
            (10, "a", 4),
        ]);
        let order = vec![OrderKey {
            column: 3,
            descending: true,
            nulls_first: false,
        }];
        let mut op = TopN::new(input.schema(), order, vec![2], 1).unwrap();
        assert_eq!(op.describe(), "top 1 per window and item by n DESC");
        op.on_batch(0, &input).unwrap();
        let (out, _) = op.on_cti(i64::MAX).unwrap();
        assert_eq!(
            rows(&out.unwrap()),
            [(0, "a".into(), 9), (0, "b".into(), 1), (10, "a".into(), 4)]
        );
    }
}
