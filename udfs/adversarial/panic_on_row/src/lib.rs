//! Adversarial: panics (a Wasm trap) on the row whose `id` equals `poison` (default 13).

use weir_sdk::Row;

#[derive(Row, Clone, Debug)]
pub struct Item {
    pub id: i64,
}

#[derive(Row, Clone, Debug)]
pub struct Doubled {
    pub id: i64,
    pub doubled: i64,
}

pub fn double(item: Item) -> Doubled {
    let poison = weir_sdk::params().int("poison").unwrap_or(13);
    if item.id == poison {
        panic!("poison row id {}", item.id);
    }
    Doubled {
        id: item.id,
        doubled: item.id * 2,
    }
}

weir_sdk::export_map!(double);
