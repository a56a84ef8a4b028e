//! Sinks: JSONL files and standard output.
//!
//! Output is deterministic: columns in schema order, numbers in one canonical
//! form (shortest round-trip floats; NaN and infinities as `null`).

use std::io::Write;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use crate::schema::{END, START};

mod ordered;
pub use ordered::{Ordered, Released};

/// Where a sink that writes `columns` (in that order) finds them in batches
/// of `schema`: the interval first, then each column's index. An unknown or
/// repeated column is refused, naming it.
pub fn projection(schema: &arrow_schema::Schema, columns: &[String]) -> Result<Vec<usize>, String> {
    let mut at = vec![0, 1];
    for (k, name) in columns.iter().enumerate() {
        if columns[..k].contains(name) {
            return Err(format!("column `{name}` is named twice in `columns`"));
        }
        match schema.index_of(name) {
            Ok(i) if i >= 2 => at.push(i),
            _ => {
                let has: Vec<&str> = schema
                    .fields()
                    .iter()
                    .skip(2)
                    .map(|f| f.name().as_str())
                    .collect();
                return Err(format!(
                    "column `{name}` is not in its input, which has: {}",
                    has.join(", ")
                ));
            }
        }
    }
    Ok(at)
}

/// Writes `batch`'s columns `projection` (all when `None`) as one JSON
/// object per row; see [`write_jsonl`].
pub fn write_projected(
    out: &mut impl Write,
    batch: &RecordBatch,
    projection: Option<&[usize]>,
    interval: bool,
) -> std::io::Result<()> {
    match projection {
        None => write_jsonl(out, batch, interval),
        Some(at) => {
            let projected = batch.project(at).map_err(std::io::Error::other)?;
            write_jsonl(out, &projected, interval)
        }
    }
}

/// Writes `batch` as one JSON object per row. With `interval` false the
/// `_start`/`_end` columns are left out.
pub fn write_jsonl(
    out: &mut impl Write,
    batch: &RecordBatch,
    interval: bool,
) -> std::io::Result<()> {
    let schema = batch.schema();
    let columns: Vec<(usize, String)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| interval || (f.name() != START && f.name() != END))
        .map(|(i, f)| (i, serde_json::to_string(f.name()).unwrap_or_default()))
        .collect();
    let mut line = Vec::with_capacity(256);
    for row in 0..batch.num_rows() {
        line.clear();
        line.push(b'{');
        for (n, (i, key)) in columns.iter().enumerate() {
            if n > 0 {
                line.push(b',');
            }
            line.extend_from_slice(key.as_bytes());
            line.push(b':');
            write_value(&mut line, batch.column(*i).as_ref(), row)?;
        }
        line.extend_from_slice(b"}\n");
        out.write_all(&line)?;
    }
    Ok(())
}

fn write_value(out: &mut Vec<u8>, array: &dyn Array, row: usize) -> std::io::Result<()> {
    if array.is_null(row) {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    match array.data_type() {
        DataType::Int64 => write!(out, "{}", array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            if v.is_finite() {
                serde_json::to_writer(&mut *out, &v).map_err(std::io::Error::other)
            } else {
                out.extend_from_slice(b"null");
                Ok(())
            }
        }
        DataType::Boolean => {
            let v = array.as_boolean().value(row);
            out.extend_from_slice(if v { b"true" } else { b"false" });
            Ok(())
        }
        DataType::Utf8 => serde_json::to_writer(&mut *out, array.as_string::<i32>().value(row))
            .map_err(std::io::Error::other),
        other => Err(std::io::Error::other(format!(
            "unsupported column type {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, StringArray};

    use super::*;
    use crate::schema::{ColumnType, Field, event_schema};

    #[test]
    fn canonical_lines() {
        let schema = event_schema(&[
            Field {
                name: "n".into(),
                ty: ColumnType::Float64,
                nullable: true,
            },
            Field {
                name: "s".into(),
                ty: ColumnType::Utf8,
                nullable: false,
            },
        ]);
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Int64Array::from(vec![2, 3])),
                Arc::new(Float64Array::from(vec![Some(0.1), None])),
                Arc::new(StringArray::from(vec!["a\"b", "é"])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        write_jsonl(&mut out, &batch, false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"n\":0.1,\"s\":\"a\\\"b\"}\n{\"n\":null,\"s\":\"é\"}\n"
        );
    }
}
