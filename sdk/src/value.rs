//! Typed access to the columns of a batch: one [`Value`] implementation per Rust
//! type a row field may have, and one [`ReadValue`] implementation per type that
//! can be read out of a column.

use crate::UdfError;
use crate::wit::weir::udf::types::{Column, ColumnType, Field, Values, VarWidth};

/// A Rust type that can be a field of a [`Row`](crate::Row): `i64`, `f64`, `bool`,
/// `String`, `&str`, or an `Option` of one of them (a nullable column).
///
/// This is the writing side: output columns are accumulated in per-column
/// builders. Reading is [`ReadValue`].
pub trait Value: Sized {
    /// The column type this Rust type maps to.
    const TYPE: ColumnType;
    /// Whether the column may hold nulls.
    const NULLABLE: bool;
    /// Accumulates one output column.
    type Builder;

    /// An empty builder with room for `capacity` rows.
    fn builder(capacity: usize) -> Self::Builder;
    /// Appends one value.
    fn push(self, builder: &mut Self::Builder);
    /// The finished column.
    fn finish(name: &str, builder: Self::Builder) -> Column;
}

/// A [`Value`] that can be read from a column borrowed for `'a`.
///
/// A batch is checked once per column, not per row: the column's type, that it
/// holds a value for each of the batch's rows, and (for strings) that every
/// offset is in order, inside the data and on a character boundary. Rows are
/// then read without further checks. `&'a str` borrows the batch's bytes, so
/// reading it allocates nothing; `String` copies.
pub trait ReadValue<'a>: Value {
    /// Borrowed view of one column.
    type Reader;

    /// Checks the column's type and that it covers `rows` rows, and borrows its
    /// values, ignoring its validity.
    fn values(name: &str, column: &'a Column, rows: usize) -> Result<Self::Reader, UdfError>;
    /// Checks the column's type, that it covers `rows` rows and, for
    /// non-`Option` types, that it has no nulls.
    fn reader(name: &str, column: &'a Column, rows: usize) -> Result<Self::Reader, UdfError> {
        if !Self::NULLABLE && column.validity.is_some() {
            return Err(UdfError::new(format!(
                "column `{}` has nulls but field `{name}` is not an Option",
                column.name
            )));
        }
        Self::values(name, column, rows)
    }
    /// The value of row `row`.
    ///
    /// # Safety
    /// `row` is less than the `rows` the reader was checked for.
    unsafe fn read(reader: &Self::Reader, row: usize) -> Self;
}

fn too_short(column: &Column, found: usize, rows: usize) -> UdfError {
    UdfError::new(format!(
        "column `{}` has {found} values for a batch of {rows} rows",
        column.name
    ))
}

/// The schema entry of a field named `name` of type `T`.
pub fn field_of<T: Value>(name: &str) -> Field {
    Field {
        name: name.to_string(),
        ty: T::TYPE,
        nullable: T::NULLABLE,
    }
}

/// Types whose column may hold nulls when wrapped in `Option`.
pub trait NonNull: Value {
    /// A value stored in the slot of a null row.
    fn placeholder() -> Self;
}

fn type_mismatch(name: &str, expected: ColumnType, column: &Column) -> UdfError {
    let found = match column.values {
        Values::Int64(_) => "int64",
        Values::Float64(_) => "float64",
        Values::Boolean(_) => "boolean",
        Values::Utf8(_) => "utf8",
    };
    UdfError::new(format!(
        "field `{name}` expects a {} column but column `{}` is {found}",
        type_name(expected),
        column.name
    ))
}

/// The name of a column type as written in job files.
pub fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 => "int64",
        ColumnType::Float64 => "float64",
        ColumnType::Boolean => "boolean",
        ColumnType::Utf8 => "utf8",
    }
}

/// Fixed-width types: one `list<T>` per column (booleans as bytes).
macro_rules! fixed_width {
    ($ty:ty, $elem:ty, $variant:ident, $placeholder:expr, |$v:ident| $to:expr, |$e:ident| $from:expr) => {
        impl Value for $ty {
            const TYPE: ColumnType = ColumnType::$variant;
            const NULLABLE: bool = false;
            type Builder = Vec<$elem>;
            fn builder(capacity: usize) -> Vec<$elem> {
                Vec::with_capacity(capacity)
            }
            #[inline]
            fn push(self, builder: &mut Vec<$elem>) {
                let $v = self;
                builder.push($to);
            }
            fn finish(name: &str, builder: Vec<$elem>) -> Column {
                Column {
                    name: name.to_string(),
                    values: Values::$variant(builder),
                    validity: None,
                }
            }
        }
        impl<'a> ReadValue<'a> for $ty {
            type Reader = &'a [$elem];
            fn values(
                name: &str,
                column: &'a Column,
                rows: usize,
            ) -> Result<&'a [$elem], UdfError> {
                match &column.values {
                    Values::$variant(v) if v.len() >= rows => Ok(v.as_slice()),
                    Values::$variant(v) => Err(too_short(column, v.len(), rows)),
                    _ => Err(type_mismatch(name, ColumnType::$variant, column)),
                }
            }
            #[inline]
            unsafe fn read(reader: &&'a [$elem], row: usize) -> Self {
                // SAFETY: `values` checked the column has at least `rows` values
                // and the caller promises `row < rows`.
                let $e = unsafe { *reader.get_unchecked(row) };
                $from
            }
        }
        impl NonNull for $ty {
            fn placeholder() -> Self {
                $placeholder
            }
        }
    };
}

fixed_width!(i64, i64, Int64, 0, |v| v, |e| e);
fixed_width!(f64, f64, Float64, 0.0, |v| v, |e| e);
fixed_width!(bool, u8, Boolean, false, |v| u8::from(v), |e| e != 0);

/// Offsets and text of a UTF-8 column, checked once per batch (see
/// [`ReadValue`]), so that reading a row is two loads and no branch.
pub type StrReader<'a> = (&'a [u32], &'a str);

fn str_reader<'a>(name: &str, column: &'a Column, rows: usize) -> Result<StrReader<'a>, UdfError> {
    let Values::Utf8(v) = &column.values else {
        return Err(type_mismatch(name, ColumnType::Utf8, column));
    };
    if rows == 0 {
        return Ok((&[], ""));
    }
    let Some(offsets) = v.offsets.get(..=rows) else {
        return Err(too_short(column, v.offsets.len().saturating_sub(1), rows));
    };
    let bad = |what: String| UdfError::new(format!("column `{}`: {what}", column.name));
    // ASCII text (the common case) is UTF-8 with a character boundary at every
    // byte, so only the order of the offsets needs checking.
    let ascii = is_ascii(&v.data);
    let text = if ascii {
        // SAFETY: ASCII bytes are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&v.data) }
    } else {
        std::str::from_utf8(&v.data).map_err(|e| {
            UdfError::new(format!("column `{}` is not valid UTF-8: {e}", column.name))
        })?
    };
    // One pass without branches; the slow pass below only names the culprit.
    let mut ordered = true;
    let mut prev = offsets[0];
    for &o in offsets {
        ordered &= prev <= o;
        prev = o;
    }
    ordered &= prev as usize <= text.len();
    if !ordered || (!ascii && !offsets.iter().all(|&o| text.is_char_boundary(o as usize))) {
        let mut prev = offsets[0];
        for (i, &o) in offsets.iter().enumerate() {
            if o < prev || o as usize > text.len() || !text.is_char_boundary(o as usize) {
                return Err(bad(format!(
                    "offset {i} ({o}) is out of order, past the data ({} bytes) or inside a character",
                    text.len()
                )));
            }
            prev = o;
        }
    }
    Ok((offsets, text))
}

/// Whether every byte is ASCII. `<[u8]>::is_ascii` stops at the first
/// non-ASCII word, a branch per 4 bytes on wasm32; this folds 8 bytes at a time
/// without branching, which is several times faster under fuel metering.
fn is_ascii(bytes: &[u8]) -> bool {
    let (words, rest) = bytes.as_chunks::<8>();
    let mut high = 0u64;
    for w in words {
        high |= u64::from_le_bytes(*w);
    }
    for &b in rest {
        high |= u64::from(b);
    }
    high & 0x8080_8080_8080_8080 == 0
}

/// # Safety
/// `row` is less than the `rows` the reader was checked for.
#[inline]
unsafe fn str_at<'a>(reader: &StrReader<'a>, row: usize) -> &'a str {
    let (offsets, text) = *reader;
    // SAFETY: `str_reader` checked `rows + 1` offsets, in order, within the text
    // and on character boundaries, and the caller promises `row < rows`.
    unsafe {
        let start = *offsets.get_unchecked(row) as usize;
        let end = *offsets.get_unchecked(row + 1) as usize;
        text.get_unchecked(start..end)
    }
}

fn var_width_builder(capacity: usize) -> VarWidth {
    let mut offsets = Vec::with_capacity(capacity + 1);
    offsets.push(0);
    VarWidth {
        offsets,
        data: Vec::with_capacity(capacity * 8),
    }
}

#[inline]
fn push_str(s: &str, builder: &mut VarWidth) {
    let bytes = s.as_bytes();
    let data = &mut builder.data;
    if bytes.len() <= SMALL {
        data.reserve(SMALL);
        // SAFETY: `reserve` made room for `SMALL >= bytes.len()` more bytes, and
        // `copy_small` writes exactly `bytes.len()` of them.
        unsafe {
            copy_small(bytes, data.as_mut_ptr().add(data.len()));
            data.set_len(data.len() + bytes.len());
        }
    } else {
        data.extend_from_slice(bytes);
    }
    builder.offsets.push(data.len() as u32);
}

/// Strings up to this long are copied by [`copy_small`].
const SMALL: usize = 16;

/// Copies a string of at most [`SMALL`] bytes with a few overlapping word moves.
/// In a Wasm guest, `memcpy` of a length known only at run time is a
/// `memory.copy`, which leaves compiled code for a call into the runtime: far
/// dearer than the copy itself for the short strings most columns hold.
///
/// # Safety
/// `dst` is valid for writing `src.len()` bytes, and `src.len() <= SMALL`.
#[inline(always)]
unsafe fn copy_small(src: &[u8], dst: *mut u8) {
    use std::ptr::{read_unaligned, write_unaligned};
    let n = src.len();
    let s = src.as_ptr();
    // SAFETY: every read is within `src` and every write within `dst[..n]`.
    unsafe {
        if n >= 8 {
            let (a, b) = (
                read_unaligned(s.cast::<u64>()),
                read_unaligned(s.add(n - 8).cast::<u64>()),
            );
            write_unaligned(dst.cast::<u64>(), a);
            write_unaligned(dst.add(n - 8).cast::<u64>(), b);
        } else if n >= 4 {
            let (a, b) = (
                read_unaligned(s.cast::<u32>()),
                read_unaligned(s.add(n - 4).cast::<u32>()),
            );
            write_unaligned(dst.cast::<u32>(), a);
            write_unaligned(dst.add(n - 4).cast::<u32>(), b);
        } else if n > 0 {
            let (a, b, c) = (*s, *s.add(n / 2), *s.add(n - 1));
            *dst = a;
            *dst.add(n / 2) = b;
            *dst.add(n - 1) = c;
        }
    }
}

fn utf8_column(name: &str, builder: VarWidth) -> Column {
    Column {
        name: name.to_string(),
        values: Values::Utf8(builder),
        validity: None,
    }
}

impl Value for String {
    const TYPE: ColumnType = ColumnType::Utf8;
    const NULLABLE: bool = false;
    type Builder = VarWidth;
    fn builder(capacity: usize) -> VarWidth {
        var_width_builder(capacity)
    }
    #[inline]
    fn push(self, builder: &mut VarWidth) {
        push_str(&self, builder);
    }
    fn finish(name: &str, builder: VarWidth) -> Column {
        utf8_column(name, builder)
    }
}

impl<'a> ReadValue<'a> for String {
    type Reader = StrReader<'a>;
    fn values(name: &str, column: &'a Column, rows: usize) -> Result<StrReader<'a>, UdfError> {
        str_reader(name, column, rows)
    }
    #[inline]
    unsafe fn read(reader: &StrReader<'a>, row: usize) -> Self {
        // SAFETY: forwarded from the caller.
        unsafe { str_at(reader, row) }.to_owned()
    }
}

impl NonNull for String {
    fn placeholder() -> Self {
        String::new()
    }
}

impl Value for &str {
    const TYPE: ColumnType = ColumnType::Utf8;
    const NULLABLE: bool = false;
    type Builder = VarWidth;
    fn builder(capacity: usize) -> VarWidth {
        var_width_builder(capacity)
    }
    #[inline]
    fn push(self, builder: &mut VarWidth) {
        push_str(self, builder);
    }
    fn finish(name: &str, builder: VarWidth) -> Column {
        utf8_column(name, builder)
    }
}

impl<'a> ReadValue<'a> for &'a str {
    type Reader = StrReader<'a>;
    fn values(name: &str, column: &'a Column, rows: usize) -> Result<StrReader<'a>, UdfError> {
        str_reader(name, column, rows)
    }
    #[inline]
    unsafe fn read(reader: &StrReader<'a>, row: usize) -> Self {
        // SAFETY: forwarded from the caller.
        unsafe { str_at(reader, row) }
    }
}

impl NonNull for &str {
    fn placeholder() -> Self {
        ""
    }
}

/// Builder of a nullable column: the values plus an Arrow validity bitmap.
#[derive(Debug)]
pub struct NullableBuilder<B> {
    values: B,
    validity: Vec<u8>,
    rows: usize,
    nulls: usize,
}

impl<T: NonNull> Value for Option<T> {
    const TYPE: ColumnType = T::TYPE;
    const NULLABLE: bool = true;
    type Builder = NullableBuilder<T::Builder>;
    fn builder(capacity: usize) -> Self::Builder {
        NullableBuilder {
            values: T::builder(capacity),
            validity: Vec::with_capacity(capacity.div_ceil(8)),
            rows: 0,
            nulls: 0,
        }
    }
    #[inline]
    fn push(self, builder: &mut Self::Builder) {
        if builder.rows % 8 == 0 {
            builder.validity.push(0);
        }
        match self {
            Some(v) => {
                if let Some(last) = builder.validity.last_mut() {
                    *last |= 1 << (builder.rows % 8);
                }
                v.push(&mut builder.values);
            }
            None => {
                builder.nulls += 1;
                T::placeholder().push(&mut builder.values);
            }
        }
        builder.rows += 1;
    }
    fn finish(name: &str, builder: Self::Builder) -> Column {
        let mut column = T::finish(name, builder.values);
        if builder.nulls > 0 {
            column.validity = Some(builder.validity);
        }
        column
    }
}

impl<'a, T: NonNull + ReadValue<'a>> ReadValue<'a> for Option<T> {
    type Reader = (T::Reader, Option<&'a [u8]>);
    fn values(name: &str, column: &'a Column, rows: usize) -> Result<Self::Reader, UdfError> {
        let validity = column.validity.as_deref();
        if let Some(bits) = validity
            && bits.len() < rows.div_ceil(8)
        {
            return Err(UdfError::new(format!(
                "column `{}` has a validity bitmap of {} bytes for a batch of {rows} rows",
                column.name,
                bits.len()
            )));
        }
        Ok((T::values(name, column, rows)?, validity))
    }
    #[inline]
    unsafe fn read(reader: &Self::Reader, row: usize) -> Self {
        let valid = match reader.1 {
            None => true,
            // SAFETY: `values` checked the bitmap covers `rows` rows and the
            // caller promises `row < rows`.
            Some(bits) => (unsafe { *bits.get_unchecked(row / 8) } & (1 << (row % 8))) != 0,
        };
        // SAFETY: forwarded from the caller.
        valid.then(|| unsafe { T::read(&reader.0, row) })
    }
}
