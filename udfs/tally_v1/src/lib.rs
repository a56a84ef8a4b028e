//! Version 1 of a keyed tally (used to show hot patching): per user, counts
//! rows and sums their amounts; every output row says which version made it.

use tally_common::{Sale, Tally, Totals};
use weir_sdk::Key;

/// Adds the sale's amount.
pub fn tally(_key: &Key<'_>, s: Sale, t: &mut Totals) -> Option<Tally> {
    Some(t.add(s.user, s.amount, "v1"))
}

weir_sdk::export_reducer!(tally);
