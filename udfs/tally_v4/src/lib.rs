//! Version 4 of the keyed tally (used to show state migration): it keeps its
//! state in a new layout, [`Ledger`], and converts the state earlier versions
//! left ([`Totals`]) when it takes over a running stage. Without the
//! migration the old bytes would decode as a `Ledger` with count and total
//! swapped.

use serde::{Deserialize, Serialize};
use tally_common::{Sale, Tally, Totals};
use weir_sdk::Key;

/// The state of one user, in version 4's layout.
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
pub struct Ledger {
    pub total: i64,
    pub count: i64,
}

/// Adds the sale's amount.
pub fn tally(_key: &Key<'_>, s: Sale, l: &mut Ledger) -> Option<Tally> {
    l.count += 1;
    l.total += s.amount;
    Some(Tally {
        user: s.user,
        count: l.count,
        total: l.total,
        version: "v4".into(),
    })
}

/// Converts a user's state from the earlier versions' layout. Version 4
/// counts sales only, never refunds, so it refuses a negative total.
pub fn upgrade(key: &Key<'_>, old: Totals) -> Result<Ledger, String> {
    if old.total < 0 {
        return Err(format!(
            "user `{}` has a negative total ({}); version 4 does not take refunds",
            key.as_str().unwrap_or("?"),
            old.total
        ));
    }
    Ok(Ledger {
        total: old.total,
        count: old.count,
    })
}

weir_sdk::export_reducer!(tally, migrate = upgrade);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_keeps_count_and_total() {
        let old = Totals {
            count: 3,
            total: 250,
        };
        assert_eq!(
            upgrade(&Key::new(b"u1"), old),
            Ok(Ledger {
                total: 250,
                count: 3
            })
        );
    }

    #[test]
    fn upgrade_refuses_a_negative_total() {
        let old = Totals {
            count: 2,
            total: -40,
        };
        let e = upgrade(&Key::new(b"u1"), old).unwrap_err();
        assert!(e.contains("`u1`") && e.contains("-40"), "{e}");
    }
}
