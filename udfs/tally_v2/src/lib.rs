//! Version 2 of the keyed tally (used to show hot patching): amounts count
//! `factor` times (parameter, default 2); the state is version 1's.

use tally_common::{Sale, Tally, Totals};
use weir_sdk::{Key, Params};

/// Adds the sale's amount, `factor` times.
pub fn tally(_key: &Key<'_>, s: Sale, t: &mut Totals) -> Option<Tally> {
    let factor = weir_sdk::params().int("factor").unwrap_or(2);
    Some(t.add(s.user, s.amount * factor, "v2"))
}

/// Refuses a factor below 1.
pub fn check(p: &Params) -> Result<(), String> {
    match p.int("factor") {
        Some(f) if f < 1 => Err(format!("factor must be at least 1, got {f}")),
        _ => Ok(()),
    }
}

weir_sdk::export_reducer!(tally, init = check);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::Harness;

    #[test]
    fn refuses_a_factor_below_one() {
        assert!(Harness::new().param("factor", 0i64).init(check).is_err());
        assert!(Harness::new().param("factor", 3i64).init(check).is_ok());
    }
}
