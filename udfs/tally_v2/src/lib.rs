//! Version 2 of the keyed tally (used to show hot patching): amounts count
//! `factor` times (parameter, default 2); the state is version 1's.

use serde::{Deserialize, Serialize};
use weir_sdk::{Key, Params, Row};

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

fn factor() -> i64 {
    weir_sdk::params().int("factor").unwrap_or(2)
}

/// Adds the sale's amount, `factor` times.
pub fn tally(_key: &Key<'_>, s: Sale, t: &mut Totals) -> Option<Tally> {
    t.count += 1;
    t.total += s.amount * factor();
    Some(Tally {
        user: s.user,
        count: t.count,
        total: t.total,
        version: "v2".into(),
    })
}

/// Refuses a factor below 1.
pub fn check(p: &Params) -> Result<(), String> {
    match p.int("factor") {
        Some(f) if f < 1 => Err(format!("factor must be at least 1, got {f}")),
        _ => Ok(()),
    }
}

weir_sdk::export_reducer!(tally, init = check);
