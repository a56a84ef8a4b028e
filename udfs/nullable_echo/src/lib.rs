//! Reads a column of every type, nullable and not, and writes a value
//! computed from each: what the end-to-end tests use to check that nulls,
//! booleans, floats and strings cross the boundary intact, at any batch size
//! and offset.

use weir_sdk::Row;

#[derive(Row, Clone, Debug, PartialEq)]
pub struct Reading<'a> {
    pub n: Option<i64>,
    pub x: Option<f64>,
    pub ok: Option<bool>,
    pub s: Option<&'a str>,
    pub flag: bool,
}

#[derive(Row, Clone, Debug, PartialEq)]
pub struct Echo {
    pub n2: Option<i64>,
    pub x2: Option<f64>,
    pub not_ok: Option<bool>,
    pub chars: Option<i64>,
    pub not_flag: bool,
}

pub fn echo(r: Reading<'_>) -> Echo {
    Echo {
        n2: r.n.map(|v| v * 2),
        x2: r.x.map(|v| v + 0.5),
        not_ok: r.ok.map(|b| !b),
        chars: r.s.map(|s| s.chars().count() as i64),
        not_flag: !r.flag,
    }
}

weir_sdk::export_map!(echo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_stay_null_and_values_are_computed() {
        let rows = vec![
            Reading {
                n: Some(3),
                x: None,
                ok: Some(true),
                s: Some("héllo"),
                flag: false,
            },
            Reading {
                n: None,
                x: Some(1.0),
                ok: None,
                s: None,
                flag: true,
            },
        ];
        let out = weir_sdk::testing::Harness::new().map(echo, rows).unwrap();
        assert_eq!(
            out,
            vec![
                Echo {
                    n2: Some(6),
                    x2: None,
                    not_ok: Some(false),
                    chars: Some(5),
                    not_flag: true
                },
                Echo {
                    n2: None,
                    x2: Some(1.5),
                    not_ok: None,
                    chars: None,
                    not_flag: false
                },
            ]
        );
    }
}
