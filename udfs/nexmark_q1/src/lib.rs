//! Nexmark q1 as a processor: each bid with its price converted from
//! dollars to euros (× 0.908), the logic the built-in `q1.wsql` writes as
//! an expression.

use weir_sdk::Row;

/// A bid, the columns q1 reads.
#[derive(Row, Clone, Debug)]
pub struct Bid<'a> {
    pub auction: i64,
    pub bidder: i64,
    pub price: i64,
    pub date_time: i64,
    pub extra: &'a str,
}

/// A bid with its price in euros.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct EuroBid<'a> {
    pub auction: i64,
    pub bidder: i64,
    pub price: f64,
    pub date_time: i64,
    pub extra: &'a str,
}

/// `price × 0.908`, rounded once from the exact product (as the built-in
/// decimal expression is).
pub fn to_euros(b: Bid<'_>) -> EuroBid<'_> {
    EuroBid {
        auction: b.auction,
        bidder: b.bidder,
        price: (b.price as i128 * 908) as f64 / 1000.0,
        date_time: b.date_time,
        extra: b.extra,
    }
}

weir_sdk::export_map!(to_euros);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_price_and_keeps_the_rest() {
        let out = weir_sdk::testing::Harness::new()
            .map(
                to_euros,
                vec![Bid {
                    auction: 1000,
                    bidder: 2001,
                    price: 1250,
                    date_time: 7,
                    extra: "x",
                }],
            )
            .unwrap();
        assert_eq!(
            out,
            vec![EuroBid {
                auction: 1000,
                bidder: 2001,
                price: 1135.0,
                date_time: 7,
                extra: "x",
            }]
        );
    }
}
