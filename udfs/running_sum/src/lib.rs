//! A keyed reducer keeping a running count and sum per key; emits the running
//! totals after every row.

use serde::{Deserialize, Serialize};
use weir_sdk::{Key, Row};

/// The columns this reducer reads.
#[derive(Row, Clone, Debug)]
pub struct Sale {
    pub key: String,
    pub amount: f64,
}

/// Running totals of one key.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Total {
    pub key: String,
    pub count: i64,
    pub sum: f64,
}

/// The host-owned state of one key.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Sums {
    count: i64,
    sum: f64,
}

/// Adds one sale to its key's totals.
pub fn running_sum(_key: &Key<'_>, s: Sale, state: &mut Sums) -> Option<Total> {
    state.count += 1;
    state.sum += s.amount;
    Some(Total { key: s.key, count: state.count, sum: state.sum })
}

weir_sdk::export_reducer!(running_sum);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_per_key() {
        let mut h = weir_sdk::testing::Harness::new();
        let sale = |k: &str, a| Sale { key: k.into(), amount: a };
        let out = h.reduce("key", running_sum, vec![sale("a", 1.0), sale("b", 2.0), sale("a", 3.0)]).unwrap();
        assert_eq!(out[2], Total { key: "a".into(), count: 2, sum: 4.0 });
    }
}
