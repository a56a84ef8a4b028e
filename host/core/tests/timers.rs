//! A timed reducer's stage over native closures: timers fire as CTIs pass,
//! a timer whose call fails is dead-lettered or fails the stage naming its
//! key, time and CTI, and rows that break the CTI contract are refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use weir_core::plan::{ErrorPolicy, StageKind, UdfSpec};
use weir_core::schema::{ColumnType, Field, event_schema, field};
use weir_core::stage::{StageError, UdfStage};
use weir_core::udf::{
    CallError, Limits, NativeCall, NativeResult, NativeTimerCall, NativeUdf, OutputColumn,
    Signature, StateWrite, TIMERS, TimedOutput, UdfOutput, encode_timers,
};

fn fields() -> Vec<Field> {
    vec![field("k", ColumnType::Int64, false)]
}

/// Rows of keys `keys`, row `i` valid over `[i, i + 1)`.
fn input(keys: &[i64]) -> RecordBatch {
    let n = keys.len() as i64;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(0..n)),
        Arc::new(Int64Array::from_iter_values(1..n + 1)),
        Arc::new(Int64Array::from(keys.to_vec())),
    ];
    RecordBatch::try_new(event_schema(&fields()), columns).expect("batch")
}

/// Sets a timer at 10 + the key for each row's key; when one fires, emits
/// the key as a point `shift` after the timer, and fails for key 3.
fn stage(on_trap: ErrorPolicy, shift: i64, passthrough: bool) -> Result<UdfStage, StageError> {
    let signature = Signature {
        reads: fields(),
        reads_interval: true,
        writes: vec![field("fired", ColumnType::Int64, false)],
        passthrough,
    };
    let udf = NativeUdf::new(
        "timers",
        signature,
        |call: NativeCall<'_>| -> NativeResult {
            let keys = call.keys.expect("keys");
            let writes: Vec<StateWrite> = (0..keys.len())
                .map(|g| {
                    let key = keys.key(g);
                    let k = i64::from_le_bytes(key.try_into().expect("int key"));
                    let timers = Some(encode_timers(&[10 + k]));
                    (key.to_vec(), BTreeMap::from([(TIMERS.to_string(), timers)]))
                })
                .collect();
            let output = UdfOutput {
                parents: Vec::new(),
                columns: vec![OutputColumn::Written(Arc::new(Int64Array::from(
                    Vec::<i64>::new(),
                )))],
            };
            Ok((output, writes))
        },
    )
    .with_timers(
        move |call: NativeTimerCall<'_>| -> Result<(TimedOutput, Vec<StateWrite>), CallError> {
            let mut keys = Vec::new();
            for i in 0..call.fired.len() {
                let k = i64::from_le_bytes(call.fired.key(i).try_into().expect("int key"));
                if k == 3 {
                    return Err(CallError::Udf {
                        message: "key 3 refuses".into(),
                        row: None,
                    });
                }
                keys.push(k);
            }
            let at: Vec<i64> = call.fired.at.iter().map(|t| t + shift).collect();
            let output = TimedOutput {
                end: at.iter().map(|t| t + 1).collect(),
                start: at,
                columns: vec![Arc::new(Int64Array::from(keys))],
            };
            Ok((output, Vec::new()))
        },
    );
    let spec = UdfSpec {
        args: Vec::new(),
        kind: StageKind::Reducer,
        component: "native:timers".into(),
        params: Vec::new(),
        key: Some("k".into()),
        output: None,
        on_trap,
        limits: Limits::default(),
    };
    UdfStage::new("t", &spec, Box::new(udf), event_schema(&fields()))
}

fn fired(out: &RecordBatch) -> Vec<(i64, i64)> {
    let start = out.column(0).as_primitive::<Int64Type>();
    let k = out.column(2).as_primitive::<Int64Type>();
    (0..out.num_rows())
        .map(|i| (start.value(i), k.value(i)))
        .collect()
}

/// Timers fire only once a CTI reaches them, by time; a failing timer is
/// dead-lettered with its key and time and the others still fire.
#[test]
fn timers_fire_as_ctis_pass_and_a_failing_one_is_dead_lettered() {
    let mut stage = stage(ErrorPolicy::DeadLetter, 0, false).expect("stage");
    assert!(stage.timed());
    let mut dead = Vec::new();
    stage
        .process_all(&input(&[1, 3, 2, 1, 5]), &mut dead)
        .expect("batch");
    assert_eq!(stage.timers(), 4);
    let out = stage.on_cti(10, None, &mut dead).expect("cti 10");
    assert_eq!(out.num_rows(), 0, "no timer is at or before 10");
    let out = stage.on_cti(13, Some(10), &mut dead).expect("cti 13");
    assert_eq!(fired(&out), vec![(11, 1), (12, 2)]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].row, r#"{"key":3,"timer":13}"#);
    assert!(
        dead[0].error.contains("as CTI 13 passed"),
        "{}",
        dead[0].error
    );
    let out = stage.on_cti(i64::MAX, Some(13), &mut dead).expect("end");
    assert_eq!(fired(&out), vec![(15, 5)]);
    assert_eq!(stage.timers(), 0);
}

/// Under `fail`, a failing timer stops the stage, naming key, time and CTI.
#[test]
fn a_failing_timer_under_fail_names_its_key_time_and_cti() {
    let mut stage = stage(ErrorPolicy::Fail, 0, false).expect("stage");
    let mut dead = Vec::new();
    stage
        .process_all(&input(&[3, 1]), &mut dead)
        .expect("batch");
    let err = stage.on_cti(20, None, &mut dead).expect_err("key 3 fails");
    assert!(
        matches!(
            err,
            StageError::Timer {
                cti: 20,
                at: 13,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("firing the timer at 13 of key 3 as CTI 20 passed"),
        "{text}"
    );
    assert!(text.contains("key 3 refuses"), "{text}");
}

/// A row emitted as a CTI passes may not start before the CTI the stage
/// passed on before: it would break the promise that CTI made downstream.
#[test]
fn a_row_before_the_last_cti_is_refused() {
    let mut stage = stage(ErrorPolicy::Fail, -5, false).expect("stage");
    let mut dead = Vec::new();
    stage.process_all(&input(&[1]), &mut dead).expect("batch");
    let err = stage.on_cti(12, Some(9), &mut dead).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("at CTI 12: on-cti's row 0 starts at 6, before CTI 9"),
        "{text}"
    );
    // The timer is kept: nothing of the failed call applied.
    assert_eq!(stage.timers(), 1);
}

/// A timed reducer cannot pass input columns through: its timers' rows have
/// no input row.
#[test]
fn a_timed_reducer_that_passes_columns_through_is_refused() {
    let err = stage(ErrorPolicy::Fail, 0, true).expect_err("refused");
    assert!(
        err.to_string()
            .contains("a timed reducer cannot pass its input's columns through"),
        "{err}"
    );
}
