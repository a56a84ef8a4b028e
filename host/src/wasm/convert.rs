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

use super::bindings::{Column, ColumnType, Field, Values};
use crate::schema::{END, START};

/// The WIT `var-width` record, lowered from borrowed buffers.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
pub struct VarWidthRef<'a> {
    offsets: &'a [u32],
    data: &'a [u8],
}

/// The WIT `values` variant, lowered from borrowed buffers.
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

/// The WIT `column` record, lowered from borrowed buffers.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
pub struct ColumnRef<'a> {
    name: &'a str,
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

impl BatchRef<'_> {
    /// The first event's start time (the event clock of a call), 0 when empty.
    pub fn first_start(&self) -> i64 {
        self.start.first().copied().unwrap_or(0)
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows as usize
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
    /// The columns `reads` of `batch` (plus the interval), in the WIT layout.
    ///
    /// The caller has checked the columns exist with the declared types (at
    /// plan time); a mismatch here is reported, not unwrapped.
    pub fn batch<'a>(
        &'a mut self,
        batch: &'a RecordBatch,
        reads: &'a [Field],
    ) -> Result<BatchRef<'a>, String> {
        let int_column = |name: &str| -> Result<&'a [i64], String> {
            let col = batch
                .column_by_name(name)
                .ok_or_else(|| format!("batch has no `{name}` column"))?;
            col.as_primitive_opt::<Int64Type>()
                .map(|a| &a.values()[..])
                .ok_or_else(|| format!("`{name}` is not int64"))
        };
        let start = int_column(START)?;
        let end = int_column(END)?;
        // First pass: convert what must be converted into the scratch buffers.
        let (mut used_offsets, mut used_bytes) = (0, 0);
        let mut sources = Vec::with_capacity(reads.len());
        for field in reads {
            let array = batch
                .column_by_name(&field.name)
                .ok_or_else(|| format!("the input has no column `{}`", field.name))?;
            let source = self.source(field, array.as_ref(), &mut used_offsets, &mut used_bytes)?;
            let validity = self.validity(array.as_ref(), &mut used_bytes);
            sources.push((source, validity));
        }
        // Second pass: borrow.
        let columns = reads
            .iter()
            .zip(sources)
            .map(|(field, (source, validity))| ColumnRef {
                name: &field.name,
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
        Ok(BatchRef {
            rows: batch.num_rows() as u32,
            start,
            end,
            columns,
        })
    }

    fn scratch_bytes(&mut self, used: &mut usize) -> (usize, &mut Vec<u8>) {
        let i = *used;
        *used += 1;
        if self.bytes.len() <= i {
            self.bytes.push(Vec::new());
        }
        let buf = &mut self.bytes[i];
        buf.clear();
        (i, buf)
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
                let (i, buf) = self.scratch_bytes(used_bytes);
                buf.extend(values.iter().map(u8::from));
                Source::Boolean(i)
            }
            ColumnType::Utf8 => {
                let strings = array.as_string_opt::<i32>().ok_or_else(mismatch)?;
                let offsets = strings.offsets();
                // An offset buffer always holds at least one offset.
                let (base, last) = (offsets.first(), offsets.last());
                let data = &strings.value_data()[base as usize..last as usize];
                let offsets = if base == 0 {
                    // Valid Arrow offsets are non-negative, so the same bytes
                    // read as u32 are the same numbers.
                    Ok(offsets.inner().inner().typed_data::<u32>())
                } else {
                    let i = *used_offsets;
                    *used_offsets += 1;
                    if self.offsets.len() <= i {
                        self.offsets.push(Vec::new());
                    }
                    let buf = &mut self.offsets[i];
                    buf.clear();
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
        let (i, out) = self.scratch_bytes(used_bytes);
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
