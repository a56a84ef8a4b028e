//! Binding scripts: the paper's example plans, and each kind of bad script
//! is refused with its place and a reason.

use weir_sql::{Bound, NoComponents, bind, parse};

const ALERTS: &str = include_str!("../../../examples/alerts/alerts.wsql");

fn bound(text: &str) -> Result<Vec<Bound>, String> {
    let statements = parse("t.wsql", text).map_err(|e| e.to_string())?;
    bind(
        "t.wsql",
        statements,
        &NoComponents,
        std::path::Path::new(""),
    )
    .map_err(|e| e.to_string())
}

fn refused(text: &str) -> String {
    bound(text).expect_err("refused")
}

const INPUTS: &str = "Process = INPUT \"p\" SCHEMA (ProcessID long, UserID string, ts long) EVENTTIME ts LIFETIME 1h;\n\
Alert = INPUT \"a\" SCHEMA (Name string, ProcessID long, ts long) EVENTTIME ts;\n";

#[test]
fn the_papers_script_binds_with_implicit_grouping() {
    let b = bound(ALERTS).expect("binds");
    let Bound::Query(select, plan) = &b[3] else {
        panic!("a query: {:?}", b[3]);
    };
    assert_eq!(select.name, "CountAlerts");
    let fields: Vec<String> = plan
        .schema()
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    assert_eq!(fields, ["UserID Utf8", "AlertCount Int64"]);
    let text = plan.display_indent().to_string();
    assert!(
        text.contains("Aggregate: groupBy=[[AlertWithUserID.UserID]]"),
        "the SELECT's other column groups: {text}"
    );
}

#[test]
fn unknown_streams_and_columns_name_what_is_near() {
    assert_eq!(
        refused(&format!("{INPUTS}X = SELECT Name FROM Alerts;")),
        "t.wsql:3:22: no stream `Alerts` is defined before this statement (did you mean `Alert`?)"
    );
    assert_eq!(
        refused(&format!("{INPUTS}X = SELECT Nme FROM Alert;")),
        "t.wsql:3:12: column 'Nme' not found (possible column Alert.Name)"
    );
    assert_eq!(
        refused(&format!("{INPUTS}OUTPUT Alrt TO \"x\";")),
        "t.wsql:3:1: no stream `Alrt` is defined before this output (did you mean `Alert`?)"
    );
}

#[test]
fn type_mismatches_are_refused_where_they_are() {
    assert_eq!(
        refused(&format!(
            "{INPUTS}X = SELECT Name FROM Alert WHERE ProcessID > 3 AND ProcessID;"
        )),
        "t.wsql:3:1: expressions have incompatible types (has type Boolean, has type Int64)"
    );
}

#[test]
fn volatile_functions_and_windows_without_aggregates_are_refused() {
    let e = refused(&format!(
        "{INPUTS}X = SELECT Name, random() AS r FROM Alert;"
    ));
    assert!(
        e.starts_with("t.wsql:3:1: `random()` gives a different value each time it runs"),
        "{e}"
    );
    assert_eq!(
        refused(&format!(
            "{INPUTS}X = SELECT Name FROM Alert WITH TUMBLING(1s);"
        )),
        "t.wsql:3:28: a window clause applies to a query that aggregates (COUNT, SUM, MIN, MAX, AVG ...) or keeps a top-N (ORDER BY ... LIMIT n)"
    );
}

#[test]
fn columns_a_stream_cannot_hold_or_that_clash_are_refused() {
    assert_eq!(
        refused(&format!(
            "{INPUTS}X = SELECT Alert.ProcessID, Process.ProcessID FROM Alert JOIN Process ON Alert.ProcessID = Process.ProcessID;"
        )),
        "t.wsql:3:1: the query gives two columns named `ProcessID`; name them apart with AS"
    );
}
