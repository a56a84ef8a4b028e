//! Nexmark q2 as a processor: the bids on every 123rd auction, the logic
//! the built-in `q2.wsql` writes as a `WHERE`.

use weir_sdk::Row;

/// The column q2 reads.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Bid {
    pub auction: i64,
}

/// Keeps the bids whose auction is a multiple of 123.
pub fn every_123rd(b: Bid) -> bool {
    b.auction % 123 == 0
}

weir_sdk::export_filter!(every_123rd);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_multiples_of_123() {
        let out = weir_sdk::testing::Harness::new()
            .filter(
                every_123rd,
                vec![
                    Bid { auction: 1000 },
                    Bid { auction: 1107 },
                    Bid { auction: 0 },
                ],
            )
            .unwrap();
        assert_eq!(out, vec![Bid { auction: 1107 }, Bid { auction: 0 }]);
    }
}
