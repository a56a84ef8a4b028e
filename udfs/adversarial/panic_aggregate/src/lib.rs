//! An aggregate that panics on a negative value: what a user sees when a
//! user-defined aggregate traps inside a window.

use weir_sdk::Row;

/// The aggregate's argument.
#[derive(Row, Clone, Debug)]
pub struct Args {
    pub value: i64,
}

/// Sums the values; a negative one is a bug it does not handle.
pub fn add(sum: &mut i64, a: Args) {
    assert!(a.value >= 0, "negative value {}", a.value);
    *sum += a.value;
}

/// Adds another partial sum.
pub fn merge(sum: &mut i64, other: i64) {
    *sum += other;
}

/// The sum.
pub fn finish(sum: &i64) -> i64 {
    *sum
}

weir_sdk::export_aggregate!(add = add, merge = merge, finish = finish);
