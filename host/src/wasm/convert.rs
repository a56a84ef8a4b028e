//! Arrow record batches to and from the WIT batch layout: a copy of buffers per
//! column, never a per-row re-encoding.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::DataType;

use super::bindings::{Batch, Column, ColumnType, Field, Values, VarWidth};
use crate::schema::{END, START};

/// The columns `reads` of `batch` (plus the interval), in the WIT layout.
///
/// The caller has checked the columns exist with the declared types (at plan
/// time); a mismatch here is reported, not unwrapped.
pub fn to_wit_batch(batch: &RecordBatch, reads: &[Field]) -> Result<Batch, String> {
    let int_column = |name: &str| -> Result<Vec<i64>, String> {
        let col = batch
            .column_by_name(name)
            .ok_or_else(|| format!("batch has no `{name}` column"))?;
        col.as_primitive_opt::<Int64Type>()
            .map(|a| a.values().to_vec())
            .ok_or_else(|| format!("`{name}` is not int64"))
    };
    let start = int_column(START)?;
    let end = int_column(END)?;
    let mut columns = Vec::with_capacity(reads.len());
    for field in reads {
        let array = batch
            .column_by_name(&field.name)
            .ok_or_else(|| format!("the input has no column `{}`", field.name))?;
        columns.push(to_wit_column(&field.name, field.ty, array.as_ref())?);
    }
    Ok(Batch {
        rows: batch.num_rows() as u32,
        start,
        end,
        columns,
    })
}

fn validity(array: &dyn Array) -> Option<Vec<u8>> {
    let nulls = array.logical_nulls()?;
    if nulls.null_count() == 0 {
        return None;
    }
    let bits = nulls.inner();
    if bits.offset() % 8 == 0 {
        let start = bits.offset() / 8;
        let len = bits.len().div_ceil(8);
        return Some(bits.values()[start..start + len].to_vec());
    }
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, valid) in bits.iter().enumerate() {
        if valid {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    Some(out)
}

fn to_wit_column(name: &str, ty: ColumnType, array: &dyn Array) -> Result<Column, String> {
    let mismatch = || {
        format!(
            "column `{name}` is {} but the UDF reads it as {}",
            array.data_type(),
            crate::schema::type_name(ty)
        )
    };
    let values = match ty {
        ColumnType::Int64 => Values::Int64(
            array
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(mismatch)?
                .values()
                .to_vec(),
        ),
        ColumnType::Float64 => Values::Float64(
            array
                .as_primitive_opt::<Float64Type>()
                .ok_or_else(mismatch)?
                .values()
                .to_vec(),
        ),
        ColumnType::Boolean => Values::Boolean(
            array
                .as_boolean_opt()
                .ok_or_else(mismatch)?
                .values()
                .iter()
                .map(u8::from)
                .collect(),
        ),
        ColumnType::Utf8 => {
            let strings = array.as_string_opt::<i32>().ok_or_else(mismatch)?;
            let offsets = strings.value_offsets();
            let base = offsets.first().copied().unwrap_or(0);
            let last = offsets.last().copied().unwrap_or(0);
            Values::Utf8(VarWidth {
                offsets: offsets.iter().map(|o| (o - base) as u32).collect(),
                data: strings.value_data()[base as usize..last as usize].to_vec(),
            })
        }
    };
    Ok(Column {
        name: name.to_string(),
        values,
        validity: validity(array),
    })
}

/// An Arrow array from a column a UDF returned, checked against the declared
/// field and the expected row count.
pub fn from_wit_column(column: Column, field: &Field, rows: usize) -> Result<ArrayRef, String> {
    let name = &field.name;
    let nulls = match column.validity {
        None => None,
        Some(bits) => {
            if bits.len() < rows.div_ceil(8) {
                return Err(format!(
                    "column `{name}`: validity bitmap has {} bytes for {rows} rows",
                    bits.len()
                ));
            }
            let nulls = NullBuffer::new(BooleanBuffer::new(Buffer::from(bits), 0, rows));
            if nulls.null_count() > 0 && !field.nullable {
                return Err(format!(
                    "column `{name}` is declared not nullable but has {} nulls",
                    nulls.null_count()
                ));
            }
            Some(nulls)
        }
    };
    let wrong_len = |n: usize| format!("column `{name}` has {n} rows, expected {rows}");
    let array: ArrayRef = match (field.ty, column.values) {
        (ColumnType::Int64, Values::Int64(v)) => {
            if v.len() != rows {
                return Err(wrong_len(v.len()));
            }
            Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls))
        }
        (ColumnType::Float64, Values::Float64(v)) => {
            if v.len() != rows {
                return Err(wrong_len(v.len()));
            }
            Arc::new(Float64Array::new(ScalarBuffer::from(v), nulls))
        }
        (ColumnType::Boolean, Values::Boolean(v)) => {
            if v.len() != rows {
                return Err(wrong_len(v.len()));
            }
            let bits: BooleanBuffer = v.iter().map(|b| *b != 0).collect();
            Arc::new(BooleanArray::new(bits, nulls))
        }
        (ColumnType::Utf8, Values::Utf8(v)) => {
            if v.offsets.len() != rows + 1 {
                return Err(wrong_len(v.offsets.len().saturating_sub(1)));
            }
            let mut prev = 0u32;
            for (i, &o) in v.offsets.iter().enumerate() {
                if (i == 0 && o != 0) || o < prev || o as usize > v.data.len() {
                    return Err(format!(
                        "column `{name}`: offset {i} ({o}) is out of order or past the data"
                    ));
                }
                prev = o;
            }
            let offsets: Vec<i32> = v.offsets.iter().map(|&o| o as i32).collect();
            let array = StringArray::try_new(
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                Buffer::from(v.data),
                nulls,
            )
            .map_err(|e| format!("column `{name}` is not valid UTF-8: {e}"))?;
            Arc::new(array)
        }
        (ty, values) => {
            let found = match values {
                Values::Int64(_) => "int64",
                Values::Float64(_) => "float64",
                Values::Boolean(_) => "boolean",
                Values::Utf8(_) => "utf8",
            };
            return Err(format!(
                "column `{name}` is declared {} but the UDF returned {found}",
                crate::schema::type_name(ty)
            ));
        }
    };
    debug_assert!(matches!(
        array.data_type(),
        DataType::Int64 | DataType::Float64 | DataType::Boolean | DataType::Utf8
    ));
    Ok(array)
}
