//! How `weir run` reads its input: time units and fields the schema does
//! not name.

use super::{stderr, weir};

#[test]
fn event_times_in_milliseconds_or_seconds_become_microsecond_intervals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("in.jsonl"),
        "{\"ts\": 5, \"te\": 7, \"id\": 1}\n{\"ts\": 9, \"te\": 10, \"id\": 2}\n",
    )
    .expect("write");
    let job = |event: &str, end: &str| {
        format!(
            "name = \"units\"\n\n[[sources]]\nname = \"in\"\npath = \"in.jsonl\"\nevent_time = {event}\n{end}schema = {{ ts = \"int64\", te = \"int64\", id = \"int64\" }}\non_error = \"dead-letter\"\n\n[[sinks]]\ninput = \"in\"\npath = \"out.jsonl\"\ninterval = true\n"
        )
    };
    let run = |text: &str| {
        std::fs::write(d.join("job.toml"), text).expect("write");
        weir(&["run", "job.toml", "--quiet"], d)
    };
    let out = run(&job(
        "{ column = \"ts\", unit = \"ms\" }",
        "end_time = { column = \"te\", unit = \"ms\" }\n",
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(d.join("out.jsonl")).expect("output");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(
        (rows[0]["_start"].clone(), rows[0]["_end"].clone()),
        (5000.into(), 7000.into()),
        "{text}"
    );
    assert_eq!(rows[0]["ts"], 5, "the column keeps its value: {text}");
    let out = run(&job("{ column = \"ts\", unit = \"s\" }", ""));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(d.join("out.jsonl")).expect("output");
    assert!(
        text.starts_with("{\"_start\":5000000,\"_end\":5000001,"),
        "{text}"
    );
    // A bare column name is in microseconds, as before.
    let out = run(&job("\"ts\"", ""));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(d.join("out.jsonl")).expect("output");
    assert!(text.starts_with("{\"_start\":5,\"_end\":6,"), "{text}");

    // An unknown unit is refused naming the source; a time beyond the
    // microsecond range is a bad row naming its line and column.
    let e = stderr(&run(&job("{ column = \"ts\", unit = \"minutes\" }", "")));
    assert!(
        e.contains("sources[0] `in`: event_time unit `minutes`: use `us`, `ms` or `s`"),
        "{e}"
    );
    std::fs::write(
        d.join("in.jsonl"),
        "{\"ts\": 5, \"te\": 7, \"id\": 1}\n{\"ts\": 9223372036854775, \"te\": 7, \"id\": 2}\n",
    )
    .expect("write");
    let out = run(&job("{ column = \"ts\", unit = \"s\" }", ""));
    assert!(out.status.success(), "{}", stderr(&out));
    let dead = std::fs::read_to_string(d.join("units.dead-letter.jsonl")).expect("dead letters");
    assert!(
        dead.contains("\"line\":2")
            && dead.contains("\"column\":\"ts\"")
            && dead.contains("beyond the range of event times"),
        "{dead}"
    );
}

#[test]
fn input_fields_the_schema_does_not_name_are_ignored_or_refused_when_strict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("in.jsonl"),
        "{\"ts\": 1, \"id\": 1}\n{\"ts\": 2, \"id\": 2, \"extra\": true}\n",
    )
    .expect("write");
    std::fs::write(d.join("in.csv"), "ts,id,extra\n1,1,x\n").expect("write");
    let job = |file: &str, strict: &str| {
        format!(
            "name = \"p\"\n\n[[sources]]\nname = \"in\"\npath = \"{file}\"\nevent_time = \"ts\"\nschema = {{ ts = \"int64\", id = \"int64\" }}\n{strict}\n[[sinks]]\ninput = \"in\"\npath = \"out.jsonl\"\n"
        )
    };
    let run = |text: &str| {
        std::fs::write(d.join("job.toml"), text).expect("write");
        weir(&["run", "job.toml", "--quiet"], d)
    };
    // By default a projection: the extra field is left out.
    let out = run(&job("in.jsonl", ""));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(d.join("out.jsonl")).expect("output"),
        "{\"ts\":1,\"id\":1}\n{\"ts\":2,\"id\":2}\n"
    );
    let out = run(&job("in.csv", ""));
    assert!(out.status.success(), "{}", stderr(&out));
    // Strict: the row, or the CSV header, is refused naming the field.
    let e = stderr(&run(&job("in.jsonl", "strict = true\n")));
    assert!(
        e.contains("in.jsonl:2: column `extra`: the schema declares no such column"),
        "{e}"
    );
    let e = stderr(&run(&job("in.csv", "strict = true\n")));
    assert!(
        e.contains(
            "in.csv:1: the CSV header has column `extra`, which the schema does not declare"
        ),
        "{e}"
    );
}
