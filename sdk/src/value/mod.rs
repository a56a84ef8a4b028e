//! Typed access to the columns of a batch: one [`Value`] implementation per Rust
//! type a row field may have, and one [`ReadValue`] implementation per type that
//! can be read out of a column.

mod utf8;

use crate::UdfError;
use crate::wit::weir::udf::types::{Column, ColumnType, Field, OutputColumn, Values, VarWidth};

/// A Rust type that can be a field of a [`Row`](crate::Row): `i64`, `f64`, `bool`,
/// `String`, `&str`, or an `Option` of one of them (a nullable column).
///
/// This is the writing side: output columns are accumulated in per-column
/// builders. Reading is [`ReadValue`].
///
/// ```
/// use weir_sdk::{ColumnType, Value};
/// assert_eq!((<i64 as Value>::TYPE, <Option<f64> as Value>::NULLABLE), (ColumnType::Int64, true));
/// let mut b = <String as Value>::builder(1);
/// "hi".to_string().push(&mut b);
/// assert!(matches!(<String as Value>::finish(b).values, weir_sdk::Values::Utf8(_)));
/// ```
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
    fn finish(builder: Self::Builder) -> Column;

    /// A checked, borrowed view of an input column whose values an output
    /// column of this type may pass through (see [`OutputBuilder`]).
    type Source<'s>: Copy;
    /// Borrows `column` as a source for `rows` rows if it has this type and at
    /// least `rows` values, ignoring its validity; `None` otherwise.
    fn source_values(column: &Column, rows: usize) -> Option<Self::Source<'_>>;
    /// Borrows `column` as a source for `rows` rows if an output column of this
    /// type can stand for it: the same column type and, unless this is an
    /// `Option`, no validity bitmap.
    fn source(column: &Column, rows: usize) -> Option<Self::Source<'_>> {
        if column.validity.is_some() {
            return None;
        }
        Self::source_values(column, rows)
    }
    /// Whether this value is exactly row `row` of the source, bit for bit
    /// (`-0.0` is not `0.0`), so that taking the input's value gives the same
    /// output as writing this one.
    ///
    /// # Safety
    /// `row` is less than the `rows` the source was checked for.
    unsafe fn same(&self, source: &Self::Source<'_>, row: usize) -> bool;
    /// Appends row `row` of the source, which a value of this type was
    /// found [`same`](Value::same) as.
    ///
    /// # Safety
    /// `row` is less than the `rows` the source was checked for, and a value
    /// was found the same as it.
    unsafe fn copy(source: &Self::Source<'_>, row: usize, builder: &mut Self::Builder);
}

/// One output column of a batch being produced, which passes its input
/// column through untouched while it can.
///
/// It starts out tied to the input column of the same name, if there is one of
/// a compatible type. As long as every value pushed is exactly that column's
/// value at the output row's parent, nothing is written, and the column goes
/// back as [`OutputColumn::Input`]: the host takes it from its own copy of the
/// input, so it crosses the boundary once instead of twice. The first value
/// that differs writes out the rows before it, and from then on the column is
/// written as usual. Either way the host builds the same output.
///
/// ```
/// use weir_sdk::{OutputBuilder, OutputColumn, Row, encode_rows};
/// #[derive(Row)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 5 }]);
/// let mut out = OutputBuilder::<i64>::new("n", &columns, N::NAMES, rows, rows);
/// // SAFETY: parent 0 < the 1 input row; no row was pushed before.
/// unsafe { out.push(5, 0, &[]) };
/// // The value is the input's at its parent: the column passes through.
/// assert!(matches!(out.finish(), OutputColumn::Input(0)));
/// ```
pub struct OutputBuilder<'s, T: Value> {
    values: T::Builder,
    source: Option<(u32, T::Source<'s>)>,
    capacity: usize,
}

impl<'s, T: Value> OutputBuilder<'s, T> {
    /// The builder of output column `name`, with room for `capacity` rows, for
    /// an input batch of `rows` rows with `columns` named `names`.
    ///
    /// ```
    /// let out = weir_sdk::OutputBuilder::<i64>::new("total", &[], &[], 0, 0);
    /// assert!(matches!(out.finish(), weir_sdk::OutputColumn::Written(_)));
    /// ```
    #[inline]
    pub fn new(
        name: &str,
        columns: &'s [Column],
        names: &[&str],
        rows: usize,
        capacity: usize,
    ) -> Self {
        let source = names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| Some((i as u32, T::source(columns.get(i)?, rows)?)));
        // A column passed through needs no room unless it diverges.
        let room = if source.is_some() { 0 } else { capacity };
        OutputBuilder {
            values: T::builder(room),
            source,
            capacity,
        }
    }

    /// Appends `value` as an output row whose parent is input row `parent`;
    /// `earlier` holds the parents of the output rows before it.
    ///
    /// # Safety
    /// `parent` and each of `earlier` are less than the `rows` this builder
    /// was made for, and `earlier` are the parents of every value pushed so far.
    ///
    /// ```
    /// use weir_sdk::{OutputBuilder, OutputColumn, Row, encode_rows};
    /// #[derive(Row)]
    /// pub struct N { pub n: i64 }
    /// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
    /// let mut out = OutputBuilder::<i64>::new("n", &columns, N::NAMES, rows, rows);
    /// // SAFETY: parents 0 and 1 are input rows; `earlier` lists what was pushed.
    /// unsafe {
    ///     out.push(1, 0, &[]);
    ///     out.push(20, 1, &[0]);
    /// }
    /// // The second value differs from the input's: the column is written.
    /// assert!(matches!(out.finish(), OutputColumn::Written(_)));
    /// ```
    #[inline]
    pub unsafe fn push(&mut self, value: T, parent: u32, earlier: &[u32]) {
        if let Some((_, source)) = self.source {
            // SAFETY: the caller promises `parent < rows`.
            if unsafe { value.same(&source, parent as usize) } {
                return;
            }
            // SAFETY: the caller promises `earlier` are in range, and each
            // value pushed for them was the same (or the source would be gone).
            self.values = unsafe { diverge::<T>(source, self.capacity, earlier) };
            self.source = None;
        }
        value.push(&mut self.values);
    }

    /// The finished column: the input column it passed through, or the values written.
    ///
    /// ```
    /// let out = weir_sdk::OutputBuilder::<f64>::new("eur", &[], &[], 0, 0);
    /// assert!(matches!(out.finish(), weir_sdk::OutputColumn::Written(_)));
    /// ```
    #[inline]
    pub fn finish(self) -> OutputColumn {
        match self.source {
            Some((index, _)) => OutputColumn::Input(index),
            None => OutputColumn::Written(T::finish(self.values)),
        }
    }
}

/// The values of a column that stops passing its source through at the first
/// value that differs: the rows before it (`parents`), copied from the source,
/// in a new builder with room for `capacity` rows.
///
/// It takes and returns values, not the builder, so that the builders of a
/// batch never have their address taken and stay in registers in the row loop.
///
/// # Safety
/// Each of `parents` is less than the `rows` the source was checked for, and
/// each was found the same as the value pushed for it.
#[cold]
#[inline(never)]
unsafe fn diverge<T: Value>(source: T::Source<'_>, capacity: usize, parents: &[u32]) -> T::Builder {
    let mut values = T::builder(capacity);
    for &p in parents {
        // SAFETY: forwarded from the caller.
        unsafe { T::copy(&source, p as usize, &mut values) };
    }
    values
}

/// Appends `value` to `vec`. Unlike `Vec::push`, growing takes and returns the
/// vector by value, so a vector held in a local never has its address taken
/// and its pointer and length can stay in registers across a row loop.
#[inline(always)]
pub(crate) fn push_value<E>(vec: &mut Vec<E>, value: E) {
    if vec.len() == vec.capacity() {
        *vec = grown(std::mem::take(vec), 1);
    }
    // SAFETY: there is room for one more element.
    unsafe {
        vec.as_mut_ptr().add(vec.len()).write(value);
        vec.set_len(vec.len() + 1);
    }
}

/// `vec` with room for at least `more` more elements (by value: see [`push_value`]).
#[cold]
#[inline(never)]
pub(crate) fn grown<E>(mut vec: Vec<E>, more: usize) -> Vec<E> {
    vec.reserve(more.max(vec.len()).max(8));
    vec
}

/// A [`Value`] that can be read from a column borrowed for `'a`.
///
/// A batch is checked once per column, not per row: the column's type, that it
/// holds a value for each of the batch's rows, and (for strings) that every
/// offset is in order, inside the data and on a character boundary. Rows are
/// then read without further checks. `&'a str` borrows the batch's bytes, so
/// reading it allocates nothing; `String` copies.
///
/// ```
/// use weir_sdk::{ReadValue, Value};
/// let mut b = <&str as Value>::builder(1);
/// "ann".push(&mut b);
/// let column = <&str as Value>::finish(b);
/// let reader = <&str as ReadValue>::reader("user", &column, 1).unwrap();
/// // SAFETY: row 0 < the 1 row the reader was checked for.
/// assert_eq!(unsafe { <&str as ReadValue>::read(&reader, 0) }, "ann");
/// ```
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
                "column `{name}` has nulls but its field is not an Option"
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

fn too_short(name: &str, found: usize, rows: usize) -> UdfError {
    UdfError::new(format!(
        "column `{name}` has {found} values for a batch of {rows} rows"
    ))
}

/// The schema entry of a field named `name` of type `T`.
///
/// ```
/// let f = weir_sdk::field_of::<Option<i64>>("price");
/// assert_eq!((f.name.as_str(), f.nullable), ("price", true));
/// ```
pub fn field_of<T: Value>(name: &str) -> Field {
    Field {
        name: name.to_string(),
        ty: T::TYPE,
        nullable: T::NULLABLE,
    }
}

/// Types whose column may hold nulls when wrapped in `Option`.
///
/// ```
/// use weir_sdk::NonNull;
/// assert_eq!(<i64 as NonNull>::placeholder(), 0);
/// ```
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
        "column `{name}` is {found} but its field expects {}",
        type_name(expected)
    ))
}

/// The name of a column type as written in job files.
///
/// ```
/// assert_eq!(weir_sdk::type_name(weir_sdk::ColumnType::Utf8), "utf8");
/// ```
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
    ($ty:ty, $elem:ty, $variant:ident, $placeholder:expr, |$v:ident| $to:expr, |$e:ident| $from:expr, |$a:ident, $b:ident| $same:expr) => {
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
                push_value(builder, $to);
            }
            fn finish(builder: Vec<$elem>) -> Column {
                Column {
                    values: Values::$variant(builder),
                    validity: None,
                }
            }
            type Source<'s> = &'s [$elem];
            fn source_values(column: &Column, rows: usize) -> Option<&[$elem]> {
                match &column.values {
                    Values::$variant(v) if v.len() >= rows => Some(v.as_slice()),
                    _ => None,
                }
            }
            #[inline]
            unsafe fn same(&self, source: &&[$elem], row: usize) -> bool {
                // SAFETY: `source_values` checked the column has at least
                // `rows` values and the caller promises `row < rows`.
                let $a = unsafe { *source.get_unchecked(row) };
                let $b = *self;
                $same
            }
            unsafe fn copy(source: &&[$elem], row: usize, builder: &mut Vec<$elem>) {
                // SAFETY: as in `same`.
                let $e = unsafe { *source.get_unchecked(row) };
                let $v: $ty = $from;
                builder.push($to);
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
                    Values::$variant(v) => Err(too_short(name, v.len(), rows)),
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

fixed_width!(i64, i64, Int64, 0, |v| v, |e| e, |a, b| a == b);
fixed_width!(f64, f64, Float64, 0.0, |v| v, |e| e, |a, b| a.to_bits()
    == b.to_bits());
fixed_width!(
    bool,
    u8,
    Boolean,
    false,
    |v| u8::from(v),
    |e| e != 0,
    |a, b| (a != 0) == b
);

/// Builder of a nullable column: the values plus an Arrow validity bitmap.
///
/// ```
/// use weir_sdk::Value;
/// let mut b = <Option<i64> as Value>::builder(2);
/// Some(1i64).push(&mut b);
/// None::<i64>.push(&mut b);
/// let column = <Option<i64> as Value>::finish(b);
/// assert_eq!(column.validity, Some(vec![0b01]));
/// ```
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
        builder.mark(self.is_some());
        match self {
            Some(v) => v.push(&mut builder.values),
            None => T::placeholder().push(&mut builder.values),
        }
    }
    fn finish(builder: Self::Builder) -> Column {
        let mut column = T::finish(builder.values);
        if builder.nulls > 0 {
            column.validity = Some(builder.validity);
        }
        column
    }
    type Source<'s> = (T::Source<'s>, Option<&'s [u8]>);
    fn source_values(column: &Column, rows: usize) -> Option<Self::Source<'_>> {
        let validity = column.validity.as_deref();
        if validity.is_some_and(|bits| bits.len() < rows.div_ceil(8)) {
            return None;
        }
        Some((T::source_values(column, rows)?, validity))
    }
    fn source(column: &Column, rows: usize) -> Option<Self::Source<'_>> {
        Self::source_values(column, rows)
    }
    #[inline]
    unsafe fn same(&self, source: &Self::Source<'_>, row: usize) -> bool {
        // SAFETY: forwarded from the caller.
        let valid = unsafe { is_valid(source.1, row) };
        match self {
            // SAFETY: forwarded from the caller.
            Some(v) => valid && unsafe { v.same(&source.0, row) },
            None => !valid,
        }
    }
    unsafe fn copy(source: &Self::Source<'_>, row: usize, builder: &mut Self::Builder) {
        // SAFETY: forwarded from the caller.
        let valid = unsafe { is_valid(source.1, row) };
        builder.mark(valid);
        if valid {
            // SAFETY: forwarded from the caller.
            unsafe { T::copy(&source.0, row, &mut builder.values) };
        } else {
            T::placeholder().push(&mut builder.values);
        }
    }
}

impl<B> NullableBuilder<B> {
    /// Records the validity of the next row (its value is pushed separately).
    #[inline]
    fn mark(&mut self, valid: bool) {
        if self.rows.is_multiple_of(8) {
            push_value(&mut self.validity, 0);
        }
        if valid {
            if let Some(last) = self.validity.last_mut() {
                *last |= 1 << (self.rows % 8);
            }
        } else {
            self.nulls += 1;
        }
        self.rows += 1;
    }
}

/// Whether row `row` is valid under an Arrow validity bitmap (`None`: all are).
///
/// # Safety
/// The bitmap, if any, covers `row`.
#[inline]
unsafe fn is_valid(bits: Option<&[u8]>, row: usize) -> bool {
    match bits {
        None => true,
        // SAFETY: forwarded from the caller.
        Some(bits) => (unsafe { *bits.get_unchecked(row / 8) } & (1 << (row % 8))) != 0,
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
                "column `{name}` has a validity bitmap of {} bytes for a batch of {rows} rows",
                bits.len()
            )));
        }
        Ok((T::values(name, column, rows)?, validity))
    }
    #[inline]
    unsafe fn read(reader: &Self::Reader, row: usize) -> Self {
        // SAFETY: `values` checked the bitmap covers `rows` rows and the
        // caller promises `row < rows`.
        let valid = unsafe { is_valid(reader.1, row) };
        // SAFETY: forwarded from the caller.
        valid.then(|| unsafe { T::read(&reader.0, row) })
    }
}

#[cfg(test)]
mod tests;

pub use utf8::{StrReader, StrSource};
