//! A map that computes new columns: converts bid prices to euros and classifies them.

use weir_sdk::Row;

/// The columns this map reads.
#[derive(Row, Clone, Debug)]
pub struct Bid {
    pub auction: i64,
    pub bidder: i64,
    pub price: f64,
    pub currency: String,
    pub channel: String,
}

/// The columns it writes.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct BidEur {
    pub auction: i64,
    pub bidder: i64,
    pub eur: f64,
    pub channel: String,
    pub high: bool,
}

fn rate(currency: &str) -> f64 {
    match currency {
        "USD" => 0.92,
        "GBP" => 1.17,
        "JPY" => 0.0061,
        _ => 1.0,
    }
}

/// Converts one bid; bids at or above the `high` parameter (euros) are flagged.
pub fn to_eur(b: Bid) -> BidEur {
    let eur = (b.price * rate(&b.currency) * 100.0).round() / 100.0;
    let high = weir_sdk::params().float("high").unwrap_or(100.0);
    BidEur {
        auction: b.auction,
        bidder: b.bidder,
        eur,
        channel: b.channel,
        high: eur >= high,
    }
}

weir_sdk::export_map!(to_eur);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_flags() {
        let h = weir_sdk::testing::Harness::new().param("high", 50.0);
        let bid = |price, currency: &str| Bid {
            auction: 1,
            bidder: 2,
            price,
            currency: currency.into(),
            channel: "web".into(),
        };
        let out = h
            .map(to_eur, vec![bid(100.0, "USD"), bid(10.0, "EUR")])
            .unwrap();
        assert_eq!(out[0].eur, 92.0);
        assert!(out[0].high);
        assert_eq!(out[1].eur, 10.0);
        assert!(!out[1].high);
    }
}
