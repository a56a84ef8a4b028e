//! The rows and state shared by the versions of the tally reducer
//! (`tally_v1`, `tally_v2`, `tally_v3`): a patch keeps the state's shape, so
//! host-owned state written by one version reads back in the next.

use serde::{Deserialize, Serialize};
use weir_sdk::Row;

/// The columns the reducer reads.
#[derive(Row, Clone, Debug)]
pub struct Sale {
    pub user: String,
    pub amount: i64,
}

/// The user's totals after a row, and the version that made it.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Tally {
    pub user: String,
    pub count: i64,
    pub total: i64,
    pub version: String,
}

/// The host-owned state of one user.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct Totals {
    pub count: i64,
    pub total: i64,
}

impl Totals {
    /// Counts a sale worth `amount` and returns the user's row, made by `version`.
    pub fn add(&mut self, user: String, amount: i64, version: &str) -> Tally {
        self.count += 1;
        self.total += amount;
        Tally {
            user,
            count: self.count,
            total: self.total,
            version: version.into(),
        }
    }
}
