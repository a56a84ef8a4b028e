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
/// A batch is decoded with one type check per column, not per row. `&'a str`
/// borrows the batch's bytes, so reading it allocates nothing; `String` copies.
pub trait ReadValue<'a>: Value {
    /// Borrowed view of one column.
    type Reader;

    /// Checks the column's type and borrows its values, ignoring its validity.
    fn values(name: &str, column: &'a Column) -> Result<Self::Reader, UdfError>;
    /// Checks the column's type and, for non-`Option` types, that it has no nulls.
    fn reader(name: &str, column: &'a Column) -> Result<Self::Reader, UdfError> {
        if !Self::NULLABLE && column.validity.is_some() {
            return Err(UdfError::new(format!(
                "column `{}` has nulls but field `{name}` is not an Option",
                column.name
            )));
        }
        Self::values(name, column)
    }
    /// The value of row `row`.
    fn read(reader: &Self::Reader, row: usize) -> Self;
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
            fn values(name: &str, column: &'a Column) -> Result<&'a [$elem], UdfError> {
                match &column.values {
                    Values::$variant(v) => Ok(v.as_slice()),
                    _ => Err(type_mismatch(name, ColumnType::$variant, column)),
                }
            }
            #[inline]
            fn read(reader: &&'a [$elem], row: usize) -> Self {
                let $e = reader[row];
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

/// Offsets and text of a UTF-8 column. The text is checked to be UTF-8 once per
/// batch; each row's slice is checked to fall on character boundaries when read
/// (the host sends Arrow's validated offsets, so every check passes).
pub type StrReader<'a> = (&'a [u32], &'a str);

fn str_reader<'a>(name: &str, column: &'a Column) -> Result<StrReader<'a>, UdfError> {
    let Values::Utf8(v) = &column.values else {
        return Err(type_mismatch(name, ColumnType::Utf8, column));
    };
    let text = std::str::from_utf8(&v.data)
        .map_err(|e| UdfError::new(format!("column `{}` is not valid UTF-8: {e}", column.name)))?;
    Ok((v.offsets.as_slice(), text))
}

#[inline]
fn str_at<'a>(reader: &StrReader<'a>, row: usize) -> &'a str {
    let (offsets, text) = *reader;
    offsets
        .get(row..row + 2)
        .and_then(|w| text.get(w[0] as usize..w[1] as usize))
        .unwrap_or_default()
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
    builder.data.extend_from_slice(s.as_bytes());
    builder.offsets.push(builder.data.len() as u32);
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
    fn values(name: &str, column: &'a Column) -> Result<StrReader<'a>, UdfError> {
        str_reader(name, column)
    }
    #[inline]
    fn read(reader: &StrReader<'a>, row: usize) -> Self {
        str_at(reader, row).to_owned()
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
    fn values(name: &str, column: &'a Column) -> Result<StrReader<'a>, UdfError> {
        str_reader(name, column)
    }
    #[inline]
    fn read(reader: &StrReader<'a>, row: usize) -> Self {
        str_at(reader, row)
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
    fn values(name: &str, column: &'a Column) -> Result<Self::Reader, UdfError> {
        Ok((T::values(name, column)?, column.validity.as_deref()))
    }
    #[inline]
    fn read(reader: &Self::Reader, row: usize) -> Self {
        let valid = match reader.1 {
            None => true,
            Some(bits) => bits.get(row / 8).is_some_and(|b| b & (1 << (row % 8)) != 0),
        };
        valid.then(|| T::read(&reader.0, row))
    }
}
