//! Adversarial: grabs memory without bound on the row whose `id` equals `trigger` (default 5).

use weir_sdk::Row;

#[derive(Row, Clone, Debug)]
pub struct Item {
    pub id: i64,
}

pub fn hoard(item: Item) -> Item {
    let trigger = weir_sdk::params().int("trigger").unwrap_or(5);
    if item.id == trigger {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
    item
}

weir_sdk::export_map!(hoard);
