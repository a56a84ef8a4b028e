//! A user-defined aggregate: the median of a float64 column per group and
//! window, which no combination of the built-in aggregates gives. Each
//! accumulator keeps the group's values; the host keeps the accumulators
//! with the window's state.

use serde::{Deserialize, Serialize};
use weir_sdk::Row;

/// The aggregate's argument.
#[derive(Row, Clone, Debug)]
pub struct Args {
    pub value: Option<f64>,
}

/// The values seen so far, in arrival order (sorted at `finish`).
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Values(Vec<f64>);

/// Adds one value; nulls and NaNs are left out, as `AVG` leaves out nulls.
pub fn add(acc: &mut Values, a: Args) {
    if let Some(v) = a.value.filter(|v| !v.is_nan()) {
        acc.0.push(v);
    }
}

/// Adds the values of another accumulator of the same group.
pub fn merge(acc: &mut Values, other: Values) {
    acc.0.extend(other.0);
}

/// The middle value, or the mean of the two middle values of an even
/// count; null when the group had no value.
pub fn finish(acc: &Values) -> Option<f64> {
    let mut v = acc.0.clone();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

weir_sdk::export_aggregate!(add = add, merge = merge, finish = finish);

#[cfg(test)]
mod tests {
    use super::*;

    fn args(values: &[Option<f64>]) -> Vec<Args> {
        values.iter().map(|&value| Args { value }).collect()
    }

    #[test]
    fn the_median_of_each_group_whatever_the_split() {
        let out = weir_sdk::testing::Harness::new()
            .aggregate(
                add,
                merge,
                finish,
                vec![
                    args(&[Some(5.0), Some(1.0), Some(3.0)]),
                    args(&[Some(4.0), None, Some(1.0), Some(2.0), Some(8.0)]),
                    args(&[None]),
                    vec![],
                ],
            )
            .unwrap();
        assert_eq!(out, vec![Some(3.0), Some(3.0), None, None]);
    }
}
