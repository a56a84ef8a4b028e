//! Adversarial: loops forever on the row whose `id` equals `trigger` (default 7).

use weir_sdk::Row;

#[derive(Row, Clone, Debug)]
pub struct Item {
    pub id: i64,
}

/// Never returns for the trigger row: that is the point of this UDF.
#[allow(clippy::while_immutable_condition)]
pub fn spin(item: Item) -> Item {
    let trigger = weir_sdk::params().int("trigger").unwrap_or(7);
    let mut n: u64 = 0;
    while item.id == trigger {
        n = std::hint::black_box(n.wrapping_add(1));
    }
    item
}

weir_sdk::export_map!(spin);
