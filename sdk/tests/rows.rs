//! Rows through the same drivers a component runs: owned and borrowed strings,
//! nulls, and the errors a row type mismatch gets.

use weir_sdk::testing::Harness;
use weir_sdk::wit::weir::udf::types::{Batch, Column, Values, VarWidth};
use weir_sdk::{ReadRow, Row, decode_rows, encode_rows, run};

#[derive(Row, Clone, Debug, PartialEq)]
struct Owned {
    id: i64,
    name: String,
    note: Option<String>,
}

#[derive(Row, Clone, Debug, PartialEq)]
struct Borrowed<'a> {
    id: i64,
    name: &'a str,
    note: Option<&'a str>,
}

fn rows() -> Vec<Owned> {
    vec![
        Owned {
            id: 1,
            name: "ünïcode".into(),
            note: None,
        },
        Owned {
            id: 2,
            name: String::new(),
            note: Some("x".into()),
        },
        Owned {
            id: 3,
            name: "a".repeat(100),
            note: Some(String::new()),
        },
    ]
}

#[test]
fn borrowed_rows_read_what_owned_rows_wrote() {
    let (count, columns) = encode_rows(rows());
    let borrowed: Vec<Borrowed<'_>> = decode_rows(&columns, count).unwrap();
    let owned = rows();
    assert_eq!(borrowed.len(), owned.len());
    for (b, o) in borrowed.iter().zip(&owned) {
        assert_eq!(
            (b.id, b.name, b.note),
            (o.id, o.name.as_str(), o.note.as_deref())
        );
    }
    // And borrowed rows write the same columns back.
    let (_, again) = encode_rows(borrowed);
    assert_eq!(format!("{again:?}"), format!("{columns:?}"));
}

#[test]
fn a_borrowed_map_runs_in_the_harness() {
    fn shorten(b: Borrowed<'_>) -> Borrowed<'_> {
        Borrowed {
            id: b.id * 10,
            name: b.name.get(..1).unwrap_or(""),
            note: b.note,
        }
    }
    let input = vec![
        Borrowed {
            id: 1,
            name: "web",
            note: Some("n"),
        },
        Borrowed {
            id: 2,
            name: "",
            note: None,
        },
    ];
    let out = Harness::new().map(shorten, input).unwrap();
    assert_eq!(
        out,
        vec![
            Borrowed {
                id: 10,
                name: "w",
                note: Some("n")
            },
            Borrowed {
                id: 20,
                name: "",
                note: None
            },
        ]
    );
}

fn utf8(name: &str, data: &[u8], offsets: Vec<u32>) -> Column {
    Column {
        name: name.into(),
        values: Values::Utf8(VarWidth {
            offsets,
            data: data.to_vec(),
        }),
        validity: None,
    }
}

fn batch(columns: Vec<Column>) -> Batch {
    Batch {
        rows: 1,
        start: vec![0],
        end: vec![1],
        columns,
    }
}

#[test]
fn invalid_utf8_is_an_error_naming_the_column() {
    let columns = vec![
        Column {
            name: "id".into(),
            values: Values::Int64(vec![1]),
            validity: None,
        },
        utf8("name", &[0xff, 0xfe], vec![0, 2]),
        utf8("note", b"", vec![0, 0]),
    ];
    let input = batch(columns);
    let err = run::map(|b: Borrowed<'_>| b, &input).unwrap_err();
    assert!(
        err.message.contains("column `name` is not valid UTF-8"),
        "{}",
        err.message
    );
}

#[test]
fn nulls_in_a_non_option_field_are_refused() {
    let mut name = utf8("name", b"a", vec![0, 1]);
    name.validity = Some(vec![0]);
    let columns = vec![
        Column {
            name: "id".into(),
            values: Values::Int64(vec![1]),
            validity: None,
        },
        name,
        utf8("note", b"", vec![0, 0]),
    ];
    let err = <Borrowed<'_> as ReadRow<'_>>::reader(&columns)
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.message
            .contains("column `name` has nulls but field `name` is not an Option"),
        "{}",
        err.message
    );
}

#[test]
fn a_type_mismatch_names_field_and_column() {
    let columns = vec![
        utf8("id", b"1", vec![0, 1]),
        utf8("name", b"a", vec![0, 1]),
        utf8("note", b"", vec![0, 0]),
    ];
    let err = <Owned as ReadRow<'_>>::reader(&columns)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        err.message,
        "field `id` expects a int64 column but column `id` is utf8"
    );
}
