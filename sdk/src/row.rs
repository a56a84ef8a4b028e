//! Rows: typed views of the columns of a batch.

use crate::UdfError;
use crate::wit::weir::udf::types::{Column, Field, OutputColumn};

/// A typed row. Derive it with `#[derive(Row)]` on a struct with named fields of
/// [`Value`](crate::Value) types; each field is a column of the same name.
///
/// This is the writing side (output rows); [`ReadRow`] reads rows out of a batch.
/// A row type may borrow from the batch it was read from, e.g.
/// `struct Bid<'a> { channel: &'a str }`, so that reading allocates nothing.
///
/// ```
/// use weir_sdk::Row;
/// #[derive(Row)]
/// pub struct Bid { pub auction: i64, #[row(rename = "dateTime")] pub date_time: i64, pub channel: Option<String> }
/// assert_eq!(Bid::NAMES, ["auction", "dateTime", "channel"]);
/// assert!(Bid::fields()[2].nullable);
/// ```
pub trait Row: Sized {
    /// Accumulates output columns.
    type Builder;

    /// The names of this row type's columns, in field order.
    const NAMES: &'static [&'static str];

    /// The columns of this row type, in field order.
    fn fields() -> Vec<Field>;
    /// An empty builder with room for `capacity` rows.
    fn builder(capacity: usize) -> Self::Builder;
    /// Appends this row.
    fn push(self, builder: &mut Self::Builder);
    /// The finished columns, in field order.
    fn finish(builder: Self::Builder) -> Vec<Column>;

    /// The output columns of one batch, each an
    /// [`OutputBuilder`](crate::OutputBuilder) that passes the input column of
    /// the same name through while every value is unchanged.
    type Output<'s>;
    /// Empty output columns with room for `capacity` rows, for an input batch
    /// of `rows` rows with `columns` named `names`.
    fn output<'s>(
        columns: &'s [Column],
        names: &[&str],
        rows: usize,
        capacity: usize,
    ) -> Self::Output<'s>;
    /// Appends this row as an output row whose parent is input row `parent`;
    /// `earlier` holds the parents of the output rows before it.
    ///
    /// # Safety
    /// `parent` and each of `earlier` are less than the `rows` the output was
    /// made for, and `earlier` are the parents of every row pushed so far.
    unsafe fn push_output(self, output: &mut Self::Output<'_>, parent: u32, earlier: &[u32]);
    /// The finished output columns, in field order.
    fn finish_output(output: Self::Output<'_>) -> Vec<OutputColumn>;
}

/// A [`Row`] that can be read from the columns of a batch borrowed for `'a`.
///
/// ```
/// use weir_sdk::{ReadRow, Row, decode_rows, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct Click<'a> { pub user: &'a str }
/// let (n, columns) = encode_rows(vec![Click { user: "ann" }]);
/// let rows: Vec<Click<'_>> = decode_rows(&columns, n).unwrap();
/// assert_eq!(rows[0].user, "ann");
/// ```
pub trait ReadRow<'a>: Row {
    /// Borrowed views of the row's columns in one batch.
    type Reader;

    /// Checks the batch's columns (in field order) for a batch of `rows` rows
    /// and borrows them.
    fn reader(columns: &'a [Column], rows: usize) -> Result<Self::Reader, UdfError>;
    /// Row `row` of the batch.
    ///
    /// # Safety
    /// `row` is less than the `rows` the reader was checked for.
    unsafe fn read(reader: &Self::Reader, row: usize) -> Self;
}

/// Encodes rows as columns (used by the test harness and by hosts written in Rust).
///
/// ```
/// use weir_sdk::{Row, Values, encode_rows};
/// #[derive(Row)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// assert_eq!((rows, &columns[0].values), (2, &Values::Int64(vec![1, 2])));
/// ```
pub fn encode_rows<R: Row>(rows: impl IntoIterator<Item = R>) -> (usize, Vec<Column>) {
    let mut builder = R::builder(0);
    let mut count = 0;
    for row in rows {
        row.push(&mut builder);
        count += 1;
    }
    (count, R::finish(builder))
}

/// Decodes `rows` rows of `R` from columns in field order; a column of the
/// wrong type or length is an error naming it.
///
/// ```
/// use weir_sdk::{Row, decode_rows, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 7 }]);
/// assert_eq!(decode_rows::<N>(&columns, rows).unwrap(), vec![N { n: 7 }]);
/// assert!(decode_rows::<N>(&columns, 2).is_err());
/// ```
pub fn decode_rows<'a, R: ReadRow<'a>>(
    columns: &'a [Column],
    rows: usize,
) -> Result<Vec<R>, UdfError> {
    Ok(read_rows(columns, rows)?.collect())
}

/// The `rows` rows of a batch's columns as `R`, in order, after checking the
/// columns once.
pub fn read_rows<'a, R: ReadRow<'a>>(
    columns: &'a [Column],
    rows: usize,
) -> Result<impl Iterator<Item = R>, UdfError> {
    let reader = R::reader(columns, rows)?;
    // SAFETY: `i < rows`, the row count the reader was checked for.
    Ok((0..rows).map(move |i| unsafe { R::read(&reader, i) }))
}
