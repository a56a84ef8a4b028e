//! Source reader tests: batch bounds, CSV read in parts.

use super::*;
use crate::plan::{ErrorPolicy, SourceOrigin};
use crate::schema::field;

fn spec(fields: Vec<Field>) -> SourceSpec {
    SourceSpec {
        origin: SourceOrigin::File { follow: false },
        name: "s".into(),
        format: SourceFormat::Jsonl,
        path: PathBuf::from("big.jsonl"),
        fields,
        event_time: "ts".into(),
        end_time: None,
        event_unit: Default::default(),
        end_unit: Default::default(),
        on_error: ErrorPolicy::Fail,
        cti: Default::default(),
        strict: false,
    }
}

#[test]
fn batches_are_bounded_by_bytes_as_well_as_rows() {
    let fields = vec![
        Field {
            name: "ts".into(),
            ty: ColumnType::Int64,
            nullable: false,
        },
        Field {
            name: "text".into(),
            ty: ColumnType::Utf8,
            nullable: false,
        },
    ];
    let text = "t".repeat(1 << 20);
    let input: String = (0..150)
        .map(|i| format!("{{\"ts\": {i}, \"text\": \"{text}\"}}\n"))
        .collect();
    let mut reader =
        SourceReader::from_reader(&spec(fields), 1024, Box::new(std::io::Cursor::new(input)))
            .unwrap();
    let mut sizes = Vec::new();
    while let Some(chunk) = reader.next_chunk().unwrap() {
        assert!(chunk.rejected.is_empty());
        sizes.push(chunk.batch.num_rows());
    }
    // 64 MiB of lines of just over 1 MiB: 64 rows a batch, whatever the row limit.
    assert_eq!(sizes, [64, 64, 22]);
}

#[test]
fn a_csv_file_read_in_parts_cuts_between_records_and_numbers_lines_as_a_whole() {
    let text = "ts,name\n1,a\n2,\"b\nc\"\n3,x3\n4,d\n";
    // A cut never falls inside the quoted field spanning lines 3 and 4.
    let first = whole_rows(SourceFormat::Csv, &text.as_bytes()[..18]);
    assert_eq!(&text[..first], "ts,name\n1,a\n");
    assert_eq!(whole_rows(SourceFormat::Csv, text.as_bytes()), text.len());
    assert_eq!(
        whole_rows(SourceFormat::Jsonl, b"{}\n{\"a"),
        3,
        "JSONL cuts at the last newline"
    );
    // The rest of the file after line 2, with the header put before it:
    // the bad row is named by its line in the whole file.
    let mut spec = spec(vec![
        field("ts", ColumnType::Int64, false),
        field("name", ColumnType::Int64, false),
    ]);
    spec.format = SourceFormat::Csv;
    let rest = format!("ts,name\n{}", &text[first..]);
    let mut reader = SourceReader::from_reader(&spec, 16, Box::new(std::io::Cursor::new(rest)))
        .unwrap()
        .after_lines(2);
    let chunk = reader.next_chunk().unwrap().expect("a chunk");
    let lines: Vec<u64> = chunk.rejected.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 5, 6], "{:?}", chunk.rejected);
    assert_eq!(chunk.batch.num_rows(), 0);
    assert!(chunk.rejected[0].to_string().contains(":3: column `name`"));
}
