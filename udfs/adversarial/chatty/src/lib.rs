//! Adversarial: prints a line to stdout for every row (`width` bytes of
//! padding, param `width`, default 0) and one to stderr every 100th row.
//! Over a long job that is far more output than any one call keeps: the
//! host must pass it all to the log and never stop the UDF for it.

use weir_sdk::Row;

#[derive(Row, Clone, Debug, PartialEq)]
pub struct Item {
    pub id: i64,
}

pub fn echo(item: Item) -> Item {
    let width = weir_sdk::params().int("width").unwrap_or(0).max(0) as usize;
    println!("row {} {}", item.id, "x".repeat(width));
    if item.id % 100 == 0 {
        eprintln!("at row {}", item.id);
    }
    item
}

weir_sdk::export_map!(echo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_pass_unchanged() {
        let rows = vec![Item { id: 1 }, Item { id: 100 }];
        let out = weir_sdk::testing::Harness::new()
            .map(echo, rows.clone())
            .unwrap();
        assert_eq!(out, rows);
    }
}
