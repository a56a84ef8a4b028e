//! Version 1 of a keyed tally (used to show hot patching): per user, counts
//! rows and sums their amounts; every output row says which version made it.

use serde::{Deserialize, Serialize};
use weir_sdk::{Key, Row};

/// The columns this reducer reads.
#[derive(Row, Clone, Debug)]
pub struct Sale {
    pub user: String,
    pub amount: i64,
}

/// The user's totals after this row.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Tally {
    pub user: String,
    pub count: i64,
    pub total: i64,
    pub version: String,
}

/// The host-owned state of one user (the same in every version, so it
/// carries over a patch).
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Totals {
    count: i64,
    total: i64,
}

/// Adds the sale's amount.
pub fn tally(_key: &Key<'_>, s: Sale, t: &mut Totals) -> Option<Tally> {
    t.count += 1;
    t.total += s.amount;
    Some(Tally {
        user: s.user,
        count: t.count,
        total: t.total,
        version: "v1".into(),
    })
}

weir_sdk::export_reducer!(tally);
