//! The exchange before a parallel stage: one partition of a stream by a
//! hash of key columns.
//!
//! Copy `j` of a stage running as `n` rVertices reads the rows whose keys
//! hash to `j` (mod `n`). The hash is XXH64 over a fixed encoding of the key
//! values, so a row lands in the same partition on every run, machine and
//! build: a vertex restarted after a crash reads the same rows it read
//! before. CTIs pass unchanged: every partition sees every CTI.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use twox_hash::XxHash64;

use super::TemporalOp;
use crate::udf::{KeyedState, StateChanges};

/// Rows of one partition of a stream.
#[derive(Debug, Clone)]
pub struct Partition {
    schema: SchemaRef,
    keys: Vec<usize>,
    of: usize,
    index: usize,
}

impl Partition {
    /// Partition `index` of `of`, by the columns `keys` of `schema`
    /// (interval first; the interval may be a key too). Refuses keys out of
    /// range and column types without a stable encoding.
    pub fn new(
        schema: SchemaRef,
        keys: Vec<usize>,
        of: usize,
        index: usize,
    ) -> Result<Partition, String> {
        if of == 0 || index >= of {
            return Err(format!("partition {index} of {of} does not exist"));
        }
        if keys.is_empty() {
            return Err("a partition needs at least one key column".into());
        }
        for &k in &keys {
            let field = schema
                .fields()
                .get(k)
                .ok_or_else(|| format!("partition key column {k} is not in the stream"))?;
            if !matches!(
                field.data_type(),
                DataType::Int64 | DataType::Utf8 | DataType::Float64 | DataType::Boolean
            ) {
                return Err(format!(
                    "column `{}` of type {} cannot be a partition key",
                    field.name(),
                    field.data_type()
                ));
            }
        }
        Ok(Partition {
            schema,
            keys,
            of,
            index,
        })
    }

    /// The partition of every row of `batch`.
    pub fn assign(&self, batch: &RecordBatch) -> Vec<usize> {
        partitions(batch, &self.keys, self.of)
    }
}

/// The partition (of `of`) of each row of `batch`, by its `keys` columns.
pub fn partitions(batch: &RecordBatch, keys: &[usize], of: usize) -> Vec<usize> {
    let mut key = Vec::with_capacity(64);
    (0..batch.num_rows())
        .map(|row| {
            key.clear();
            for &k in keys {
                encode(&mut key, batch.column(k).as_ref(), row);
            }
            (XxHash64::oneshot(0, &key) % of as u64) as usize
        })
        .collect()
}

/// Appends one value's encoding: a tag byte, then the value (strings with
/// their length first, so that no two key tuples encode alike; -0.0 as 0.0
/// and every NaN alike, as they group alike).
fn encode(out: &mut Vec<u8>, array: &dyn Array, row: usize) {
    if array.is_null(row) {
        out.push(0);
        return;
    }
    match array.data_type() {
        DataType::Int64 => {
            out.push(1);
            out.extend_from_slice(&array.as_primitive::<Int64Type>().value(row).to_le_bytes());
        }
        DataType::Utf8 => {
            let v = array.as_string::<i32>().value(row).as_bytes();
            out.push(2);
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v);
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            let v = if v == 0.0 {
                0.0
            } else if v.is_nan() {
                f64::NAN
            } else {
                v
            };
            out.push(3);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        DataType::Boolean => {
            out.push(4);
            out.push(array.as_boolean().value(row) as u8);
        }
        // Refused by `Partition::new`.
        _ => out.push(5),
    }
}

impl TemporalOp for Partition {
    fn describe(&self) -> String {
        let keys: Vec<&str> = self
            .keys
            .iter()
            .map(|&k| self.schema.field(k).name().as_str())
            .collect();
        format!(
            "partition {} of {} by hash({})",
            self.index,
            self.of,
            keys.join(", ")
        )
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
        let keep: BooleanArray = self
            .assign(batch)
            .into_iter()
            .map(|p| Some(p == self.index))
            .collect();
        let rows = arrow_select::filter::filter_record_batch(batch, &keep)
            .map_err(|e| format!("partition: {e}"))?;
        Ok((rows.num_rows() > 0).then_some(rows))
    }

    fn on_cti(&mut self, t: i64) -> Result<(Option<RecordBatch>, i64), String> {
        Ok((None, t))
    }

    fn take_delta(&mut self) -> StateChanges {
        StateChanges::default()
    }

    fn restore(&mut self, _state: &KeyedState) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch(users: &[&str]) -> RecordBatch {
        let n = users.len() as i64;
        let schema = Arc::new(Schema::new(vec![
            Field::new("_start", DataType::Int64, false),
            Field::new("_end", DataType::Int64, false),
            Field::new("user", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..n)),
                Arc::new(Int64Array::from_iter_values(1..=n)),
                Arc::new(StringArray::from(users.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn every_row_goes_to_exactly_one_partition_and_equal_keys_to_the_same() {
        let users: Vec<String> = (0..200).map(|i| format!("u{}", i % 37)).collect();
        let refs: Vec<&str> = users.iter().map(String::as_str).collect();
        let b = batch(&refs);
        let mut total = 0;
        let mut seen = std::collections::HashMap::new();
        for j in 0..4 {
            let mut p = Partition::new(b.schema(), vec![2], 4, j).unwrap();
            let out = p.on_batch(0, &b).unwrap().unwrap();
            total += out.num_rows();
            for u in out.column(2).as_string::<i32>().iter() {
                assert_eq!(*seen.entry(u.unwrap().to_string()).or_insert(j), j);
            }
        }
        assert_eq!(total, 200);
        assert!(seen.values().any(|&j| j != 0), "all keys in one partition");
    }

    #[test]
    fn the_hash_is_fixed() {
        // A partition must not change between runs or builds: recovery
        // re-reads the same rows.
        let b = batch(&["alice", "bob", "carol", "dave"]);
        assert_eq!(partitions(&b, &[2], 4), partitions(&b, &[2], 4));
        let of_alice = XxHash64::oneshot(0, &[&[2u8][..], &5u64.to_le_bytes(), b"alice"].concat());
        assert_eq!(
            partitions(&b, &[2], 1 << 20)[0] as u64,
            of_alice % (1 << 20)
        );
    }

    #[test]
    fn bad_partitions_are_refused() {
        let b = batch(&["a"]);
        assert!(Partition::new(b.schema(), vec![2], 2, 2).is_err());
        assert!(Partition::new(b.schema(), vec![3], 2, 0).is_err());
        assert!(Partition::new(b.schema(), vec![], 2, 0).is_err());
    }
}
