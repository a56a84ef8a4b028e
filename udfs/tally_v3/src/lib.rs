//! Version 3 of the keyed tally (used to show trap rollback): version 1's
//! logic, but it panics (a Wasm trap) on a sale whose amount equals the
//! `poison` parameter.

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

/// The host-owned state of one user, as version 1 keeps it.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Totals {
    count: i64,
    total: i64,
}

/// Adds the sale's amount; panics on the poison amount.
pub fn tally(_key: &Key<'_>, s: Sale, t: &mut Totals) -> Option<Tally> {
    if weir_sdk::params().int("poison") == Some(s.amount) {
        panic!("poison amount {}", s.amount);
    }
    t.count += 1;
    t.total += s.amount;
    Some(Tally {
        user: s.user,
        count: t.count,
        total: t.total,
        version: "v3".into(),
    })
}

weir_sdk::export_reducer!(tally);
