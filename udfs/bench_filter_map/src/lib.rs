//! The boundary benchmark's UDF: a filter and a map over a 5-column row
//! (2 ints, 1 float, 2 short strings). `host/benches/boundary.rs` runs the same
//! logic natively beside it.

use weir_sdk::Row;

/// The row read. Its strings borrow from the batch, so reading allocates nothing.
#[derive(Row, Clone, Debug)]
pub struct Bid<'a> {
    pub auction: i64,
    pub bidder: i64,
    pub price: f64,
    pub currency: &'a str,
    pub channel: &'a str,
}

/// The row written.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Priced<'a> {
    pub auction: i64,
    pub eur: f64,
    pub channel: &'a str,
}

/// Keeps bids of at least 10 and converts them to euros.
pub fn filter_map(b: Bid<'_>) -> Option<Priced<'_>> {
    if b.price < 10.0 {
        return None;
    }
    let rate = if b.currency == "USD" { 0.92 } else { 1.0 };
    Some(Priced {
        auction: b.auction,
        eur: b.price * rate,
        channel: b.channel,
    })
}

weir_sdk::export_flat_map!(filter_map);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_converts() {
        let bid = |price| Bid {
            auction: 1,
            bidder: 2,
            price,
            currency: "USD",
            channel: "web",
        };
        let out = weir_sdk::testing::Harness::new()
            .flat_map(filter_map, vec![bid(5.0), bid(100.0)])
            .unwrap();
        assert_eq!(
            out,
            vec![Priced {
                auction: 1,
                eur: 92.0,
                channel: "web"
            }]
        );
    }
}
