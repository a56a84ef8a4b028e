//! Typed access to the columns of a batch: one [`Value`] implementation per Rust
//! type a row field may have.

use crate::UdfError;
use crate::wit::weir::udf::types::{Column, ColumnType, Field, Values, VarWidth};

/// A Rust type that can be a field of a [`Row`](crate::Row): `i64`, `f64`, `bool`,
/// `String`, or an `Option` of one of them (a nullable column).
///
/// Reading and writing go through per-column readers and builders, so a batch is
/// decoded with one type check per column, not per row.
pub trait Value: Sized {
    /// The column type this Rust type maps to.
    const TYPE: ColumnType;
    /// Whether the column may hold nulls.
    const NULLABLE: bool;
    /// Borrowed view of one column.
    type Reader<'a>;
    /// Accumulates one output column.
    type Builder;

    /// Checks the column's type (and, for non-`Option` types, that it has no nulls).
    fn reader<'a>(name: &str, column: &'a Column) -> Result<Self::Reader<'a>, UdfError>;
    /// The value of row `row`.
    fn read(reader: &Self::Reader<'_>, row: usize) -> Self;
    /// An empty builder with room for `capacity` rows.
    fn builder(capacity: usize) -> Self::Builder;
    /// Appends one value.
    fn push(self, builder: &mut Self::Builder);
    /// The finished column.
    fn finish(name: &str, builder: Self::Builder) -> Column;
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
    /// Like [`Value::reader`] but accepting nulls.
    fn reader_ignoring_nulls<'a>(
        name: &str,
        column: &'a Column,
    ) -> Result<Self::Reader<'a>, UdfError>;
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

fn reject_nulls(name: &str, column: &Column) -> Result<(), UdfError> {
    if column.validity.is_some() {
        return Err(UdfError::new(format!(
            "column `{}` has nulls but field `{name}` is not an Option",
            column.name
        )));
    }
    Ok(())
}

macro_rules! fixed_width {
    ($ty:ty, $variant:ident, $column_type:ident, $placeholder:expr) => {
        impl NonNull for $ty {
            fn placeholder() -> Self {
                $placeholder
            }
            fn reader_ignoring_nulls<'a>(
                name: &str,
                column: &'a Column,
            ) -> Result<Self::Reader<'a>, UdfError> {
                match &column.values {
                    Values::$variant(v) => Ok(v.as_slice()),
                    _ => Err(type_mismatch(name, ColumnType::$column_type, column)),
                }
            }
        }
    };
}

impl Value for i64 {
    const TYPE: ColumnType = ColumnType::Int64;
    const NULLABLE: bool = false;
    type Reader<'a> = &'a [i64];
    type Builder = Vec<i64>;
    fn reader<'a>(name: &str, column: &'a Column) -> Result<&'a [i64], UdfError> {
        reject_nulls(name, column)?;
        Self::reader_ignoring_nulls(name, column)
    }
    #[inline]
    fn read(reader: &&[i64], row: usize) -> Self {
        reader[row]
    }
    fn builder(capacity: usize) -> Vec<i64> {
        Vec::with_capacity(capacity)
    }
    #[inline]
    fn push(self, builder: &mut Vec<i64>) {
        builder.push(self);
    }
    fn finish(name: &str, builder: Vec<i64>) -> Column {
        Column {
            name: name.to_string(),
            values: Values::Int64(builder),
            validity: None,
        }
    }
}
fixed_width!(i64, Int64, Int64, 0);

impl Value for f64 {
    const TYPE: ColumnType = ColumnType::Float64;
    const NULLABLE: bool = false;
    type Reader<'a> = &'a [f64];
    type Builder = Vec<f64>;
    fn reader<'a>(name: &str, column: &'a Column) -> Result<&'a [f64], UdfError> {
        reject_nulls(name, column)?;
        Self::reader_ignoring_nulls(name, column)
    }
    #[inline]
    fn read(reader: &&[f64], row: usize) -> Self {
        reader[row]
    }
    fn builder(capacity: usize) -> Vec<f64> {
        Vec::with_capacity(capacity)
    }
    #[inline]
    fn push(self, builder: &mut Vec<f64>) {
        builder.push(self);
    }
    fn finish(name: &str, builder: Vec<f64>) -> Column {
        Column {
            name: name.to_string(),
            values: Values::Float64(builder),
            validity: None,
        }
    }
}
fixed_width!(f64, Float64, Float64, 0.0);

impl Value for bool {
    const TYPE: ColumnType = ColumnType::Boolean;
    const NULLABLE: bool = false;
    type Reader<'a> = &'a [u8];
    type Builder = Vec<u8>;
    fn reader<'a>(name: &str, column: &'a Column) -> Result<&'a [u8], UdfError> {
        reject_nulls(name, column)?;
        Self::reader_ignoring_nulls(name, column)
    }
    #[inline]
    fn read(reader: &&[u8], row: usize) -> Self {
        reader[row] != 0
    }
    fn builder(capacity: usize) -> Vec<u8> {
        Vec::with_capacity(capacity)
    }
    #[inline]
    fn push(self, builder: &mut Vec<u8>) {
        builder.push(u8::from(self));
    }
    fn finish(name: &str, builder: Vec<u8>) -> Column {
        Column {
            name: name.to_string(),
            values: Values::Boolean(builder),
            validity: None,
        }
    }
}
fixed_width!(bool, Boolean, Boolean, false);

/// Offsets and bytes of a UTF-8 column.
pub type StrReader<'a> = (&'a [u32], &'a [u8]);

impl Value for String {
    const TYPE: ColumnType = ColumnType::Utf8;
    const NULLABLE: bool = false;
    type Reader<'a> = StrReader<'a>;
    type Builder = VarWidth;
    fn reader<'a>(name: &str, column: &'a Column) -> Result<StrReader<'a>, UdfError> {
        reject_nulls(name, column)?;
        Self::reader_ignoring_nulls(name, column)
    }
    #[inline]
    fn read(reader: &StrReader<'_>, row: usize) -> Self {
        let (offsets, data) = reader;
        let bytes = offsets
            .get(row..row + 2)
            .and_then(|w| data.get(w[0] as usize..w[1] as usize))
            .unwrap_or_default();
        match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
    fn builder(capacity: usize) -> VarWidth {
        let mut offsets = Vec::with_capacity(capacity + 1);
        offsets.push(0);
        VarWidth {
            offsets,
            data: Vec::with_capacity(capacity * 8),
        }
    }
    #[inline]
    fn push(self, builder: &mut VarWidth) {
        builder.data.extend_from_slice(self.as_bytes());
        builder.offsets.push(builder.data.len() as u32);
    }
    fn finish(name: &str, builder: VarWidth) -> Column {
        Column {
            name: name.to_string(),
            values: Values::Utf8(builder),
            validity: None,
        }
    }
}

impl NonNull for String {
    fn placeholder() -> Self {
        String::new()
    }
    fn reader_ignoring_nulls<'a>(
        name: &str,
        column: &'a Column,
    ) -> Result<StrReader<'a>, UdfError> {
        match &column.values {
            Values::Utf8(v) => Ok((v.offsets.as_slice(), v.data.as_slice())),
            _ => Err(type_mismatch(name, ColumnType::Utf8, column)),
        }
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
    type Reader<'a> = (T::Reader<'a>, Option<&'a [u8]>);
    type Builder = NullableBuilder<T::Builder>;
    fn reader<'a>(name: &str, column: &'a Column) -> Result<Self::Reader<'a>, UdfError> {
        Ok((
            T::reader_ignoring_nulls(name, column)?,
            column.validity.as_deref(),
        ))
    }
    #[inline]
    fn read(reader: &Self::Reader<'_>, row: usize) -> Self {
        let valid = match reader.1 {
            None => true,
            Some(bits) => bits.get(row / 8).is_some_and(|b| b & (1 << (row % 8)) != 0),
        };
        valid.then(|| T::read(&reader.0, row))
    }
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
