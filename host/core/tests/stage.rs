//! A UDF stage over native closures: what its UDF sees and what it writes do
//! not depend on how its input is cut into batches, a failing row is found
//! and dead-lettered or fails the stage by its policy, and malformed output
//! is refused. No Wasm component is needed.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use weir_core::plan::{ErrorPolicy, StageKind, UdfSpec};
use weir_core::schema::{ColumnType, Field, event_schema, field};
use weir_core::stage::{DeadRow, StageError, UdfStage};
use weir_core::udf::{
    CallError, Limits, NativeCall, NativeResult, NativeUdf, OutputColumn, Signature, UdfOutput,
};

fn fields() -> Vec<Field> {
    vec![field("n", ColumnType::Int64, false)]
}

fn input(rows: i64) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..rows)),
        Arc::new(Int64Array::from_iter_values(1..rows + 1)),
        Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i * 10))),
    ];
    RecordBatch::try_new(event_schema(&fields()), columns).expect("batch")
}

/// Keeps rows whose `n` is not a multiple of 30 and writes `n + 1` as `m`;
/// refuses `n == 130` with an error value; with `bad_output`, returns a
/// column of the wrong length.
fn stage(on_trap: ErrorPolicy, bad_output: bool) -> UdfStage {
    let signature = Signature {
        reads: fields(),
        reads_interval: false,
        writes: vec![field("m", ColumnType::Int64, false)],
        passthrough: true,
    };
    let udf = NativeUdf::new(
        "filter_map",
        signature,
        move |call: NativeCall<'_>| -> NativeResult {
            let n = call.batch.column(call.reads[0]).as_primitive::<Int64Type>();
            let mut parents = Vec::new();
            let mut m = Vec::new();
            for (row, v) in n.values().iter().enumerate() {
                if *v == 130 {
                    return Err(CallError::Udf {
                        message: format!("refused n = {v}"),
                        row: Some(row as u32),
                    });
                }
                if v % 30 != 0 {
                    parents.push(row as u32);
                    m.push(v + 1);
                }
            }
            if bad_output {
                m.push(0);
            }
            let output = UdfOutput {
                parents,
                columns: vec![OutputColumn::Written(Arc::new(Int64Array::from(m)))],
            };
            Ok((output, Vec::new()))
        },
    );
    let spec = UdfSpec {
        args: Vec::new(),
        kind: StageKind::Processor,
        component: "native:filter_map".into(),
        params: Vec::new(),
        key: None,
        output: None,
        on_trap,
        limits: Limits::default(),
    };
    UdfStage::new("fm", &spec, Box::new(udf), event_schema(&fields())).expect("stage")
}

/// Runs 100 rows through the stage in batches of `size`.
fn run(stage: &mut UdfStage, size: usize) -> Result<(Vec<i64>, Vec<DeadRow>), StageError> {
    let all = input(100);
    let mut out = Vec::new();
    let mut dead = Vec::new();
    let mut at = 0;
    while at < all.num_rows() {
        let len = size.min(all.num_rows() - at);
        let batch = stage.process_all(&all.slice(at, len), &mut dead)?;
        let m = batch
            .column_by_name("m")
            .expect("the written column")
            .as_primitive::<Int64Type>();
        out.extend(m.values().iter().copied());
        at += len;
    }
    Ok((out, dead))
}

#[test]
fn output_and_dead_letters_do_not_depend_on_the_batch_size() {
    let (first, dead) = run(&mut stage(ErrorPolicy::DeadLetter, false), 100).expect("runs");
    assert_eq!(
        first.len(),
        100 - 34 - 1,
        "multiples of 30 dropped, row 13 dead"
    );
    assert!(!first.contains(&131));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].position, 13);
    assert!(
        dead[0].error.contains("refused n = 130"),
        "{}",
        dead[0].error
    );
    for size in [1, 7, 13, 14, 64] {
        let (out, dead) = run(&mut stage(ErrorPolicy::DeadLetter, false), size).expect("runs");
        assert_eq!(out, first, "batches of {size}");
        assert_eq!(dead.len(), 1, "batches of {size}");
        assert_eq!(dead[0].position, 13, "batches of {size}");
    }
}

#[test]
fn a_failing_row_under_fail_names_its_position() {
    for size in [1, 10, 100] {
        let e = run(&mut stage(ErrorPolicy::Fail, false), size).expect_err("fails");
        let text = e.to_string();
        assert!(
            text.contains("at input position 13") && text.contains("refused n = 130"),
            "batches of {size}: {text}"
        );
    }
}

#[test]
fn output_of_the_wrong_length_is_refused() {
    let e = run(&mut stage(ErrorPolicy::DeadLetter, true), 10).expect_err("refused");
    assert!(
        matches!(e, StageError::Output { .. }) && e.to_string().contains("column `m` has"),
        "{e}"
    );
}

#[test]
fn a_written_column_keeps_the_inputs_interval() {
    let mut s = stage(ErrorPolicy::DeadLetter, false);
    let mut dead = Vec::new();
    let out = s.process_all(&input(5), &mut dead).expect("runs");
    let starts = out.column(0).as_primitive::<Int64Type>();
    assert_eq!(
        starts.values().as_ref(),
        &[1, 2, 4],
        "n = 0 and n = 30 dropped"
    );
    assert_eq!(out.column_by_name("n").map(|c| c.len()), Some(3));
}
