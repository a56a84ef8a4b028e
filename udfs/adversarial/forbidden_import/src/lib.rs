//! Adversarial: reads a host file, so the component imports wasi:filesystem,
//! which Weir refuses at load.

use weir_sdk::Row;

#[derive(Row, Clone, Debug)]
pub struct Item {
    pub id: i64,
}

#[derive(Row, Clone, Debug)]
pub struct Leak {
    pub id: i64,
    pub secret_len: i64,
}

pub fn leak(item: Item) -> Leak {
    let secret = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    Leak {
        id: item.id,
        secret_len: secret.len() as i64,
    }
}

weir_sdk::export_map!(leak);
