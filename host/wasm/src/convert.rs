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

use wasmtime::component::{ComponentType, Lower};

use super::bindings::{Column, Values};
use crate::schema::{ColumnType, Field};
use crate::schema::{END, START};

/// The WIT `var-width` record over borrowed buffers.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
pub struct VarWidthRef<'a> {
    offsets: &'a [u32],
    data: &'a [u8],
}

/// The WIT `values` variant over borrowed buffers.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(variant)]
pub enum ValuesRef<'a> {
    #[component(name = "int64")]
    Int64(&'a [i64]),
    #[component(name = "float64")]
    Float64(&'a [f64]),
    #[component(name = "boolean")]
    Boolean(&'a [u8]),
    #[component(name = "utf8")]
    Utf8(VarWidthRef<'a>),
}

/// The WIT `column` record over borrowed buffers. Lowering it (wasmtime's
/// derived `Lower`, public API only) copies each buffer once into the
/// guest's memory.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
pub struct ColumnRef<'a> {
    values: ValuesRef<'a>,
    validity: Option<&'a [u8]>,
}

/// The WIT `batch` record, lowered straight from the Arrow buffers of a
/// [`RecordBatch`]: the canonical ABI copies each buffer once into the guest's
/// memory, with no owned copy on the host side first.
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct BatchRef<'a> {
    rows: u32,
    start: &'a [i64],
    end: &'a [i64],
    columns: Vec<ColumnRef<'a>>,
}

/// A batch lowered for a call, and the event clock of the call.
pub struct Lowered<'a> {
    /// What crosses the boundary.
    pub batch: BatchRef<'a>,
    /// The first event's start time (what clocks read during the call), 0
    /// when the batch is empty.
    pub first_start: i64,
}

impl Lowered<'_> {
    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.batch.rows as usize
    }
}

/// Buffers that Arrow does not hold in the WIT layout, rebuilt per batch and
/// kept between batches so that lowering allocates nothing once warm: string
/// offsets of a sliced array (rebased to start at 0), booleans as one byte per
/// row, and validity bitmaps that do not start on a byte.
#[derive(Debug, Default)]
pub struct Lowering {
    offsets: Vec<Vec<u32>>,
    bytes: Vec<Vec<u8>>,
}

/// The next unused buffer of `pool` (the `used`-th, made on first use), emptied;
/// with its index.
fn scratch<'a, T>(pool: &'a mut Vec<Vec<T>>, used: &mut usize) -> (usize, &'a mut Vec<T>) {
    let i = *used;
    *used += 1;
    if pool.len() <= i {
        pool.push(Vec::new());
    }
    let buf = &mut pool[i];
    buf.clear();
    (i, buf)
}

/// Where one column's values (and validity) come from.
enum Source<'a> {
    Int64(&'a [i64]),
    Float64(&'a [f64]),
    /// Booleans: index into `Lowering::bytes`.
    Boolean(usize),
    /// Strings: Arrow's offsets when they start at 0, else an index into
    /// `Lowering::offsets`.
    Utf8(Result<&'a [u32], usize>, &'a [u8]),
}

impl Lowering {
    /// The columns `reads` of `batch`, which are its columns `columns` (found
    /// by [`read_columns`] for the batch's schema), plus the interval if
    /// `interval` (a UDF that does not read it gets empty `start` and `end`),
    /// in the WIT layout.
    ///
    /// The caller has checked the columns exist with the declared types (at
    /// plan time); a mismatch here is reported, not unwrapped.
    pub fn batch<'a>(
        &'a mut self,
        batch: &'a RecordBatch,
        reads: &'a [Field],
        columns: &[usize],
        interval: bool,
    ) -> Result<Lowered<'a>, String> {
        let int_column = |name: &str| -> Result<&'a [i64], String> {
            let col = batch
                .column_by_name(name)
                .ok_or_else(|| format!("batch has no `{name}` column"))?;
            col.as_primitive_opt::<Int64Type>()
                .map(|a| &a.values()[..])
                .ok_or_else(|| format!("`{name}` is not int64"))
        };
        let start = int_column(START)?;
        // The end times are looked up only for a UDF that reads them.
        let end = if interval { int_column(END)? } else { &[] };
        // First pass: convert what must be converted into the scratch buffers.
        let (mut used_offsets, mut used_bytes) = (0, 0);
        let mut sources = Vec::with_capacity(reads.len());
        for (field, &index) in reads.iter().zip(columns) {
            let array = batch
                .columns()
                .get(index)
                .ok_or_else(|| format!("the input has no column `{}`", field.name))?;
            let source = self.source(field, array.as_ref(), &mut used_offsets, &mut used_bytes)?;
            let validity = self.validity(array.as_ref(), &mut used_bytes);
            sources.push((source, validity));
        }
        // Second pass: borrow.
        let columns = sources
            .into_iter()
            .map(|(source, validity)| ColumnRef {
                values: match source {
                    Source::Int64(v) => ValuesRef::Int64(v),
                    Source::Float64(v) => ValuesRef::Float64(v),
                    Source::Boolean(i) => ValuesRef::Boolean(&self.bytes[i]),
                    Source::Utf8(offsets, data) => ValuesRef::Utf8(VarWidthRef {
                        offsets: offsets.unwrap_or_else(|i| &self.offsets[i]),
                        data,
                    }),
                },
                validity: validity.map(|v| v.unwrap_or_else(|i| &self.bytes[i][..])),
            })
            .collect();
        let sent_start = if interval { start } else { &[] };
        Ok(Lowered {
            batch: BatchRef {
                rows: batch.num_rows() as u32,
                start: sent_start,
                end,
                columns,
            },
            first_start: start.first().copied().unwrap_or(0),
        })
    }

    fn source<'a>(
        &mut self,
        field: &Field,
        array: &'a dyn Array,
        used_offsets: &mut usize,
        used_bytes: &mut usize,
    ) -> Result<Source<'a>, String> {
        let mismatch = || {
            format!(
                "column `{}` is {} but the UDF reads it as {}",
                field.name,
                array.data_type(),
                crate::schema::type_name(field.ty)
            )
        };
        Ok(match field.ty {
            ColumnType::Int64 => Source::Int64(
                &array
                    .as_primitive_opt::<Int64Type>()
                    .ok_or_else(mismatch)?
                    .values()[..],
            ),
            ColumnType::Float64 => Source::Float64(
                &array
                    .as_primitive_opt::<Float64Type>()
                    .ok_or_else(mismatch)?
                    .values()[..],
            ),
            ColumnType::Boolean => {
                let values = array.as_boolean_opt().ok_or_else(mismatch)?.values();
                let (i, buf) = scratch(&mut self.bytes, used_bytes);
                buf.extend(values.iter().map(u8::from));
                Source::Boolean(i)
            }
            ColumnType::Utf8 => {
                let strings = array.as_string_opt::<i32>().ok_or_else(mismatch)?;
                let offsets = strings.offsets();
                // An offset buffer always holds at least one offset.
                let (base, last) = (offsets[0], offsets[offsets.len() - 1]);
                let data = &strings.value_data()[base as usize..last as usize];
                let offsets = if base == 0 {
                    // Valid Arrow offsets are non-negative, so the same bytes
                    // read as u32 are the same numbers.
                    Ok(offsets.inner().inner().typed_data::<u32>())
                } else {
                    let (i, buf) = scratch(&mut self.offsets, used_offsets);
                    buf.extend(offsets.iter().map(|o| (o - base) as u32));
                    Err(i)
                };
                Source::Utf8(offsets, data)
            }
        })
    }

    /// The column's validity bitmap: borrowed when it starts on a byte, else
    /// realigned into a scratch buffer (an index into `bytes`); `None` when
    /// every row is valid.
    fn validity<'a>(
        &mut self,
        array: &'a dyn Array,
        used_bytes: &mut usize,
    ) -> Option<Result<&'a [u8], usize>> {
        let nulls = array.nulls()?;
        if nulls.null_count() == 0 {
            return None;
        }
        let bits = nulls.inner();
        let len = bits.len().div_ceil(8);
        if bits.offset() % 8 == 0 {
            let start = bits.offset() / 8;
            return Some(Ok(&bits.values()[start..start + len]));
        }
        let (i, out) = scratch(&mut self.bytes, used_bytes);
        out.resize(len, 0);
        for (row, valid) in bits.iter().enumerate() {
            if valid {
                out[row / 8] |= 1 << (row % 8);
            }
        }
        Some(Err(i))
    }
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
            // Offsets start at 0 and never decrease (one pass without
            // branches; the slow pass only names the culprit). Arrow's
            // `try_new` then checks the last one against the data, that the
            // data is UTF-8 and that every offset is on a character boundary.
            let mut ordered = v.offsets[0] == 0;
            let mut prev = 0u32;
            for &o in &v.offsets {
                ordered &= prev <= o;
                prev = o;
            }
            if !ordered || prev > i32::MAX as u32 {
                let mut prev = 0u32;
                for (i, &o) in v.offsets.iter().enumerate() {
                    if (i == 0 && o != 0) || o < prev || o > i32::MAX as u32 {
                        return Err(format!("column `{name}`: offset {i} ({o}) is out of order"));
                    }
                    prev = o;
                }
            }
            // The same bytes read as i32 are the same numbers (all <= i32::MAX).
            let offsets = ScalarBuffer::<i32>::new(Buffer::from_vec(v.offsets), 0, rows + 1);
            // SAFETY: checked above: starts at 0, non-decreasing, non-negative.
            let offsets = unsafe { OffsetBuffer::new_unchecked(offsets) };
            let array = StringArray::try_new(offsets, Buffer::from_vec(v.data), nulls)
                .map_err(|e| format!("column `{name}` is not valid: {e}"))?;
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

#[cfg(test)]
mod tests {
    use arrow_array::{BooleanArray, Float64Array, Int64Array, StringArray};

    use super::*;
    use crate::schema::{event_schema, field, read_columns};

    fn utf8(offsets: Vec<u32>, data: &[u8]) -> Column {
        Column {
            values: Values::Utf8(super::super::bindings::VarWidth {
                offsets,
                data: data.to_vec(),
            }),
            validity: None,
        }
    }

    #[test]
    fn a_sliced_batch_lowers_to_the_wit_layout() {
        let reads = vec![
            field("n", ColumnType::Int64, true),
            field("x", ColumnType::Float64, false),
            field("b", ColumnType::Boolean, false),
            field("s", ColumnType::Utf8, false),
        ];
        let rows = 20;
        let batch = RecordBatch::try_new(
            event_schema(&reads),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(Int64Array::from_iter_values(1..rows + 1)),
                Arc::new(Int64Array::from_iter(
                    (0..rows).map(|i| (i % 3 != 0).then_some(i)),
                )),
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
                Arc::new(BooleanArray::from_iter((0..rows).map(|i| Some(i % 2 == 0)))),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| "é".repeat(i as usize % 4)),
                )),
            ],
        )
        .expect("batch");
        let columns = read_columns(batch.schema_ref(), &reads).expect("columns");
        let mut lowering = Lowering::default();
        // A slice at a row that is not a multiple of 8: offsets are rebased and
        // the validity bitmap realigned.
        for (offset, len) in [(0, 20), (3, 9), (8, 12)] {
            let part = batch.slice(offset, len);
            let without = lowering
                .batch(&part, &reads, &columns, false)
                .expect("lowers");
            assert!(without.batch.start.is_empty() && without.batch.end.is_empty());
            assert_eq!(without.first_start, offset as i64);
            let lowered = lowering
                .batch(&part, &reads, &columns, true)
                .expect("lowers");
            assert_eq!(lowered.rows(), len);
            assert_eq!(lowered.first_start, offset as i64);
            let wit = &lowered.batch;
            assert_eq!(wit.start.len(), len);
            assert_eq!(wit.end[len - 1], (offset + len) as i64);
            let ValuesRef::Int64(n) = wit.columns[0].values else {
                panic!("int64")
            };
            let valid = wit.columns[0].validity.expect("has nulls");
            for (i, &v) in n.iter().enumerate() {
                let row = (offset + i) as i64;
                let is_valid = valid[i / 8] & (1 << (i % 8)) != 0;
                assert_eq!(is_valid, row % 3 != 0, "row {row}");
                if is_valid {
                    assert_eq!(v, row);
                }
            }
            let ValuesRef::Boolean(b) = wit.columns[2].values else {
                panic!("boolean")
            };
            let expected: Vec<u8> = (offset..offset + len)
                .map(|i| u8::from(i % 2 == 0))
                .collect();
            assert_eq!(b, &expected[..]);
            let ValuesRef::Utf8(s) = wit.columns[3].values else {
                panic!("utf8")
            };
            assert_eq!(s.offsets[0], 0);
            for i in 0..len {
                let text = &s.data[s.offsets[i] as usize..s.offsets[i + 1] as usize];
                assert_eq!(text, "é".repeat((offset + i) % 4).as_bytes());
            }
        }
    }

    #[test]
    fn a_column_of_the_wrong_type_is_named() {
        let reads = vec![field("x", ColumnType::Utf8, false)];
        let batch = RecordBatch::try_new(
            event_schema(&[field("x", ColumnType::Int64, false)]),
            vec![
                Arc::new(Int64Array::from(vec![0])),
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(Int64Array::from(vec![5])),
            ],
        )
        .expect("batch");
        let err = Lowering::default()
            .batch(&batch, &reads, &[2], false)
            .map(|_| ())
            .expect_err("refused");
        assert_eq!(err, "column `x` is Int64 but the UDF reads it as utf8");
    }

    #[test]
    fn bad_string_output_is_refused_with_column_and_offset() {
        let s = field("s", ColumnType::Utf8, false);
        let ok = from_wit_column(utf8(vec![0, 3, 4], "aéb".as_bytes()), &s, 2).expect("valid");
        assert_eq!(ok.len(), 2);
        for (column, rows, expected) in [
            (
                utf8(vec![0, 3, 2], b"abc"),
                2,
                "offset 2 (2) is out of order",
            ),
            (
                utf8(vec![1, 2, 3], b"abc"),
                2,
                "offset 0 (1) is out of order",
            ),
            (utf8(vec![0, 1, 5], b"abc"), 2, "column `s` is not valid"),
            (
                utf8(vec![0, 2], &[0xff, 0xfe]),
                1,
                "column `s` is not valid",
            ),
            (
                utf8(vec![0, 1, 3], "éb".as_bytes()),
                2,
                "column `s` is not valid",
            ),
            (
                utf8(vec![0, 1], b"a"),
                2,
                "column `s` has 1 rows, expected 2",
            ),
        ] {
            let err = from_wit_column(column, &s, rows).expect_err("refused");
            assert!(err.contains(expected), "{err}");
        }
    }
}
