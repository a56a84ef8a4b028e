//! A keyed reducer keeping a running count and sum of euros per channel; emits the running
//! totals after every row.

use serde::{Deserialize, Serialize};
use weir_sdk::{Key, Row};

/// The columns this reducer reads.
#[derive(Row, Clone, Debug)]
pub struct Sale {
    pub channel: String,
    pub eur: f64,
}

/// Running totals of one key.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Total {
    pub channel: String,
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
    state.sum += s.eur;
    Some(Total {
        channel: s.channel,
        count: state.count,
        sum: state.sum,
    })
}

weir_sdk::export_reducer!(running_sum);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_per_key() {
        let mut h = weir_sdk::testing::Harness::new();
        let sale = |k: &str, a| Sale {
            channel: k.into(),
            eur: a,
        };
        let out = h
            .reduce(
                "channel",
                running_sum,
                vec![sale("a", 1.0), sale("b", 2.0), sale("a", 3.0)],
            )
            .unwrap();
        assert_eq!(
            out[2],
            Total {
                channel: "a".into(),
                count: 2,
                sum: 4.0
            }
        );
    }
}
