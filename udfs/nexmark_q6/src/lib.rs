//! Nexmark q6 as a keyed reducer: per seller, the average selling price of
//! their last ten closed auctions, emitted as each auction closes. The
//! host keeps each seller's last ten prices as the key's state.

use serde::{Deserialize, Serialize};
use weir_sdk::{Key, Row};

/// How many of a seller's auctions the average covers.
const LAST: usize = 10;

/// A closed auction: its seller and final price (null for an auction
/// without bids, which is left out).
#[derive(Row, Clone, Debug)]
pub struct Closed {
    pub seller: i64,
    pub final_price: Option<i64>,
}

/// A seller's average over their last auctions.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Average {
    pub seller: i64,
    pub avg_price: f64,
    pub auctions: i64,
}

/// The last prices of one seller, oldest first.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Last(Vec<i64>);

/// Adds a closed auction and gives the seller's new average.
pub fn last_ten(_key: &Key<'_>, c: Closed, last: &mut Last) -> Option<Average> {
    let price = c.final_price?;
    if last.0.len() == LAST {
        last.0.remove(0);
    }
    last.0.push(price);
    let sum: i128 = last.0.iter().map(|&p| p as i128).sum();
    Some(Average {
        seller: c.seller,
        avg_price: sum as f64 / last.0.len() as f64,
        auctions: last.0.len() as i64,
    })
}

weir_sdk::export_reducer!(last_ten);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_the_last_ten_per_seller() {
        let mut h = weir_sdk::testing::Harness::new();
        let closed = |seller, p| Closed {
            seller,
            final_price: Some(p),
        };
        let mut rows: Vec<Closed> = (1..=12).map(|p| closed(1, p * 10)).collect();
        rows.push(closed(2, 7));
        rows.push(Closed {
            seller: 2,
            final_price: None,
        });
        let out = h.reduce("seller", last_ten, rows).unwrap();
        // Auctions 3..=12 of seller 1: 30..=120.
        assert_eq!(
            out[11],
            Average {
                seller: 1,
                avg_price: 75.0,
                auctions: 10
            }
        );
        assert_eq!(
            out[12],
            Average {
                seller: 2,
                avg_price: 7.0,
                auctions: 1
            }
        );
        assert_eq!(out.len(), 13, "an auction without a price adds nothing");
    }
}
