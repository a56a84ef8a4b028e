//! Dead letters: rows a source or stage could not take, as a stream of
//! their own.

use super::*;

/// The columns of a dead-letter stream.
pub fn dead_fields() -> Vec<Field> {
    let col = |name: &str, ty| crate::schema::field(name, ty, false);
    vec![
        col("vertex", ColumnType::Utf8),
        col("input_seq", ColumnType::Int64),
        col("module", ColumnType::Utf8),
        col("error", ColumnType::Utf8),
        col("row", ColumnType::Utf8),
    ]
}

/// One dead letter, before it becomes a row.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The event's start (or 0).
    pub start: i64,
    /// The input seq it came from (or a line number for file sources).
    pub input_seq: i64,
    /// Module version, or `-`.
    pub module: String,
    /// Why.
    pub error: String,
    /// The row as JSON.
    pub row: String,
}

/// A batch of dead letters written by `vertex`.
pub fn dead_batch(vertex: &str, rows: &[DeadLetter]) -> RecordBatch {
    let schema = event_schema(&dead_fields());
    let ints = |f: &dyn Fn(&DeadLetter) -> i64| -> ArrayRef {
        std::sync::Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
    };
    let strs = |f: fn(&DeadLetter) -> &str| -> ArrayRef {
        std::sync::Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    RecordBatch::try_new(
        schema,
        vec![
            ints(&|d| d.start),
            ints(&|d| d.start.saturating_add(1)),
            std::sync::Arc::new(StringArray::from_iter_values(rows.iter().map(|_| vertex))),
            ints(&|d| d.input_seq),
            strs(|d| d.module.as_str()),
            strs(|d| d.error.as_str()),
            strs(|d| d.row.as_str()),
        ],
    )
    .expect("dead-letter columns match their schema")
}

/// Dead rows of a UDF stage as dead letters; `seq` is the input entry they came from.
pub(super) fn dead_letters(seq: u64, module: &str, dead: Vec<DeadRow>) -> Vec<DeadLetter> {
    dead.into_iter()
        .map(|d| DeadLetter {
            start: d.start,
            input_seq: seq as i64,
            module: module.to_string(),
            error: format!("input position {}: {}", d.position, d.error),
            row: d.row,
        })
        .collect()
}
