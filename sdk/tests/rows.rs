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

/// A UTF-8 column (named by the caller for the reader only: columns carry
/// no names, their position says which they are).
fn utf8(_name: &str, data: &[u8], offsets: Vec<u32>) -> Column {
    Column {
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
            values: Values::Int64(vec![1]),
            validity: None,
        },
        name,
        utf8("note", b"", vec![0, 0]),
    ];
    let err = <Borrowed<'_> as ReadRow<'_>>::reader(&columns, 1)
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.message
            .contains("column `name` has nulls but its field is not an Option"),
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
    let err = <Owned as ReadRow<'_>>::reader(&columns, 1)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        err.message,
        "column `id` is utf8 but its field expects int64"
    );
}

fn int(_name: &str, values: Vec<i64>) -> Column {
    Column {
        values: Values::Int64(values),
        validity: None,
    }
}

/// A batch of `rows` rows whose `name` column is `name`, the others well formed.
fn with_name(rows: u32, name: Column) -> Batch {
    let n = rows as usize;
    Batch {
        rows,
        start: vec![0; n],
        end: vec![1; n],
        columns: vec![
            int("id", vec![7; n]),
            name,
            utf8("note", b"", vec![0; n + 1]),
        ],
    }
}

fn map_error(input: &Batch) -> String {
    run::map(|b: Borrowed<'_>| b, input)
        .expect_err("the batch is refused")
        .message
}

#[test]
fn a_column_shorter_than_the_batch_is_an_error_naming_it() {
    let mut input = with_name(2, utf8("name", b"ab", vec![0, 1, 2]));
    input.columns[0] = int("id", vec![1]);
    assert_eq!(
        map_error(&input),
        "column `id` has 1 values for a batch of 2 rows"
    );
    let input = with_name(3, utf8("name", b"ab", vec![0, 1, 2]));
    assert_eq!(
        map_error(&input),
        "column `name` has 2 values for a batch of 3 rows"
    );
    let mut input = with_name(9, utf8("name", b"", vec![0; 10]));
    input.columns[2].validity = Some(vec![0xff]);
    assert_eq!(
        map_error(&input),
        "column `note` has a validity bitmap of 1 bytes for a batch of 9 rows"
    );
}

#[test]
fn bad_string_offsets_are_errors_naming_column_and_offset() {
    // Out of order, past the data, inside a two-byte character.
    for (data, offsets, bad) in [
        (&b"abc"[..], vec![0, 2, 1, 3], "offset 2 (1)"),
        (&b"abc"[..], vec![0, 1, 2, 4], "offset 3 (4)"),
        ("aé".as_bytes(), vec![0, 1, 2, 3], "offset 2 (2)"),
    ] {
        let input = with_name(3, utf8("name", data, offsets));
        let message = map_error(&input);
        assert!(
            message.starts_with(&format!("column `name`: {bad} is out of order")),
            "{message}"
        );
    }
}

#[test]
fn strings_of_every_short_length_copy_exactly() {
    // Output strings up to 16 bytes take the word-copy path, longer ones memcpy;
    // each length and a multi-byte character must come back unchanged.
    let text = "0123456789abcdefghijklmnopqrstuvwxyzé€";
    let rows: Vec<Owned> = (0..=text.len())
        .filter(|&n| text.is_char_boundary(n))
        .map(|n| Owned {
            id: n as i64,
            name: text[..n].to_string(),
            note: text.get(text.len() - n..).map(str::to_string),
        })
        .collect();
    let (count, columns) = encode_rows(rows.clone());
    let back: Vec<Owned> = decode_rows(&columns, count).unwrap();
    assert_eq!(back, rows);
}

#[derive(Row, Clone, Debug, PartialEq)]
#[row(rename_all = "camelCase")]
struct Nexmark {
    date_time: i64,
    #[row(rename = "bidder_id")]
    bidder: i64,
    extra_info: String,
}

#[test]
fn columns_are_named_by_rename_and_rename_all() {
    assert_eq!(Nexmark::NAMES, ["dateTime", "bidder_id", "extraInfo"]);
    let fields: Vec<String> = Nexmark::fields().into_iter().map(|f| f.name).collect();
    assert_eq!(fields, ["dateTime", "bidder_id", "extraInfo"]);
    let rows = vec![Nexmark {
        date_time: 1,
        bidder: 2,
        extra_info: "x".into(),
    }];
    let (count, columns) = encode_rows(rows.clone());
    assert_eq!(
        decode_rows::<Nexmark>(&columns, count).expect("decodes"),
        rows
    );
}
