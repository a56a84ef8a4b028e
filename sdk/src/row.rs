//! Rows: typed views of the columns of a batch.

use crate::UdfError;
use crate::wit::weir::udf::types::{Column, Field};

/// A typed row. Derive it with `#[derive(Row)]` on a struct with named fields of
/// [`Value`](crate::Value) types; each field is a column of the same name.
pub trait Row: Sized {
    /// Borrowed views of the row's columns in one batch.
    type Reader<'a>;
    /// Accumulates output columns.
    type Builder;

    /// The columns of this row type, in field order.
    fn fields() -> Vec<Field>;
    /// Checks the batch's columns (in field order) and borrows them.
    fn reader(columns: &[Column]) -> Result<Self::Reader<'_>, UdfError>;
    /// Row `row` of the batch.
    fn read(reader: &Self::Reader<'_>, row: usize) -> Self;
    /// An empty builder with room for `capacity` rows.
    fn builder(capacity: usize) -> Self::Builder;
    /// Appends this row.
    fn push(self, builder: &mut Self::Builder);
    /// The finished columns, in field order.
    fn finish(builder: Self::Builder) -> Vec<Column>;
}

/// Encodes rows as columns (used by the test harness and by hosts written in Rust).
pub fn encode_rows<R: Row>(rows: impl IntoIterator<Item = R>) -> (usize, Vec<Column>) {
    let mut builder = R::builder(0);
    let mut count = 0;
    for row in rows {
        row.push(&mut builder);
        count += 1;
    }
    (count, R::finish(builder))
}

/// Decodes `rows` rows of `R` from columns in field order.
pub fn decode_rows<R: Row>(columns: &[Column], rows: usize) -> Result<Vec<R>, UdfError> {
    let reader = R::reader(columns)?;
    Ok((0..rows).map(|i| R::read(&reader, i)).collect())
}
