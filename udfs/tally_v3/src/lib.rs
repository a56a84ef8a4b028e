//! Version 3 of the keyed tally (used to show trap rollback): version 1's
//! logic, but it panics (a Wasm trap) on a sale whose amount equals the
//! `poison` parameter.

use tally_common::{Sale, Tally, Totals};
use weir_sdk::Key;

/// Adds the sale's amount; panics on the poison amount.
pub fn tally(_key: &Key<'_>, s: Sale, t: &mut Totals) -> Option<Tally> {
    if weir_sdk::params().int("poison") == Some(s.amount) {
        panic!("poison amount {}", s.amount);
    }
    Some(t.add(s.user, s.amount, "v3"))
}

weir_sdk::export_reducer!(tally);
