//! A scalar function: the price band of an amount in euros.

use weir_sdk::Row;

/// The function's argument.
#[derive(Row, Clone, Debug)]
pub struct Args {
    pub eur: f64,
}

/// `low` below 10, `mid` below 100, `high` otherwise.
pub fn price_band(a: Args) -> String {
    match a.eur {
        x if x < 10.0 => "low".into(),
        x if x < 100.0 => "mid".into(),
        _ => "high".into(),
    }
}

weir_sdk::export_scalar!(price_band);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands() {
        let out = weir_sdk::testing::Harness::new()
            .scalar(
                price_band,
                vec![Args { eur: 1.0 }, Args { eur: 50.0 }, Args { eur: 500.0 }],
            )
            .unwrap();
        assert_eq!(out, ["low", "mid", "high"]);
    }
}
