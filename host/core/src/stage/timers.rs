//! A timed reducer's timers: as a CTI passes the stage, the timers at or
//! before it fire, a call of the UDF's `on-cti` per at most
//! [`TIMERS_PER_CALL`] of them, and the rows it emits (with the intervals it
//! gives them) go out before the CTI.

use arrow_array::Int64Array;

use super::call::CallOutcome;
use super::*;
use crate::udf::{Fired, TimedOutput, TimerCall};

/// The most timers one `on-cti` call fires.
pub const TIMERS_PER_CALL: usize = 1024;

/// Calls at one CTI beyond those its due timers need, for timers the UDF
/// sets again at or before the CTI, before the stage gives up on it.
const EXTRA_CALLS: usize = 64;

impl UdfStage {
    /// Whether the UDF fires timers (a timed reducer).
    pub fn timed(&self) -> bool {
        self.udf.timed()
    }

    /// The timers set.
    pub fn timers(&mut self) -> usize {
        self.udf.state().timer_count()
    }

    /// Fires the timers at or before `cti` as that CTI passes the stage;
    /// `last` is the CTI the stage passed on before it, which no row may
    /// start before. Returns the rows the UDF emitted, in order; a timer
    /// whose call fails goes to `dead` under policy dead-letter.
    pub fn on_cti(
        &mut self,
        cti: i64,
        last: Option<i64>,
        dead: &mut Vec<DeadRow>,
    ) -> Result<RecordBatch, StageError> {
        let mut outs = Vec::new();
        if !self.udf.timed() {
            return Ok(RecordBatch::new_empty(self.output_schema.clone()));
        }
        let (clock, random) = self.udf.segment();
        let budget = self.udf.state().timer_count() / TIMERS_PER_CALL + 1 + EXTRA_CALLS;
        let mut calls = 0;
        loop {
            let fired = self.udf.state().take_due(cti, TIMERS_PER_CALL);
            if fired.is_empty() {
                break;
            }
            calls += 1;
            if calls > budget {
                self.udf.state().restore_timers(&fired);
                return Err(StageError::Output {
                    stage: self.name.clone(),
                    module: self.udf.module().version.to_string(),
                    first: self.position,
                    last: self.position,
                    message: format!(
                        "at CTI {cti}, after {budget} calls of on-cti it still sets timers at or before the CTI (the earliest at {}): a timer that fires must not set itself again at or before the CTI it fired at",
                        fired.at[0]
                    ),
                });
            }
            let seed = self.position ^ (cti as u64).rotate_left(32) ^ (calls as u64) << 56;
            match self.fire(cti, last, &fired, seed) {
                Ok(out) => outs.push(out),
                Err(CallOutcome::Malformed(message)) => {
                    self.udf.state().restore_timers(&fired);
                    return Err(self.malformed(
                        self.position,
                        0,
                        format!("at CTI {cti}: {message}"),
                    ));
                }
                Err(CallOutcome::Failed(error)) if self.spec.on_trap == ErrorPolicy::Rollback => {
                    self.udf.state().restore_timers(&fired);
                    self.reset()?;
                    return Err(StageError::Trapped {
                        stage: self.name.clone(),
                        module: self.udf.module().version.to_string(),
                        position: self.position,
                        error,
                    });
                }
                Err(CallOutcome::Failed(_)) => {
                    // Find the timers to blame, one per call, from a fresh instance.
                    self.reset()?;
                    for i in 0..fired.len() {
                        let one = fired.one(i);
                        match self.fire(cti, last, &one, seed ^ i as u64) {
                            Ok(out) => outs.push(out),
                            Err(CallOutcome::Malformed(message)) => {
                                return Err(self.malformed(
                                    self.position,
                                    0,
                                    format!("at CTI {cti}: {message}"),
                                ));
                            }
                            Err(CallOutcome::Failed(error)) => {
                                let key = self.describe_key(fired.key(i));
                                let at = fired.at[i];
                                if self.spec.on_trap == ErrorPolicy::Fail {
                                    return Err(StageError::Timer {
                                        stage: self.name.clone(),
                                        module: self.udf.module().version.to_string(),
                                        cti,
                                        key,
                                        at,
                                        error: Box::new(error),
                                    });
                                }
                                tracing::warn!(stage = %self.name, module = %self.udf.module().version, cti, at, "timer dead-lettered: {error}");
                                dead.push(DeadRow {
                                    position: self.position,
                                    start: at,
                                    error: format!(
                                        "firing the timer at {at} as CTI {cti} passed: {error}"
                                    ),
                                    row: format!("{{\"key\":{key},\"timer\":{at}}}"),
                                });
                                self.stats.dead += 1;
                                self.reset()?;
                            }
                        }
                    }
                }
            }
        }
        // The calls above do not move the clock or random numbers of the
        // input's segment.
        self.udf.resume_segment(clock, random);
        let out = match outs.len() {
            0 => RecordBatch::new_empty(self.output_schema.clone()),
            1 => outs.remove(0),
            _ => concat_batches(&self.output_schema, &outs)
                .map_err(|e| self.malformed(self.position, 0, e.to_string()))?,
        };
        self.stats.rows_out += out.num_rows() as u64;
        Ok(out)
    }

    /// A key as JSON: a string for a `utf8` key column, else a number.
    fn describe_key(&self, key: &[u8]) -> String {
        match self.key_column {
            Some((_, ColumnType::Int64)) if key.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(key);
                i64::from_le_bytes(b).to_string()
            }
            _ => serde_json::Value::String(String::from_utf8_lossy(key).into_owned()).to_string(),
        }
    }

    /// One `on-cti` call and its rows as an output batch.
    fn fire(
        &mut self,
        cti: i64,
        last: Option<i64>,
        fired: &Fired,
        seed: u64,
    ) -> Result<RecordBatch, CallOutcome> {
        let result = self.udf.on_cti(TimerCall { cti, fired, seed });
        self.after_call(self.position, Some(cti));
        let output = match result {
            Ok(output) => output,
            Err(CallFailure::Failed(e)) => return Err(CallOutcome::Failed(e)),
            Err(CallFailure::Malformed(m)) => return Err(CallOutcome::Malformed(m)),
        };
        self.assemble_timed(output, last)
            .map_err(CallOutcome::Malformed)
    }

    /// The output batch of rows emitted at a CTI, checked: every row's
    /// interval is non-empty and starts at or after `last`.
    fn assemble_timed(
        &self,
        output: TimedOutput,
        last: Option<i64>,
    ) -> Result<RecordBatch, String> {
        let n = output.start.len();
        if output.end.len() != n {
            return Err(format!(
                "on-cti returned {n} interval starts but {} ends",
                output.end.len()
            ));
        }
        if output.columns.len() != self.writes.len() {
            return Err(format!(
                "on-cti returned {} columns, declared {}",
                output.columns.len(),
                self.writes.len()
            ));
        }
        for (column, field) in output.columns.iter().zip(&self.writes) {
            if column.len() != n {
                return Err(format!(
                    "on-cti's column `{}` has {} rows, its intervals {n}",
                    field.name,
                    column.len()
                ));
            }
        }
        for (i, (&start, &end)) in output.start.iter().zip(&output.end).enumerate() {
            if end <= start {
                return Err(format!(
                    "on-cti's row {i} has the empty interval [{start}, {end}): its end must be after its start"
                ));
            }
            if let Some(last) = last
                && start < last
            {
                return Err(format!(
                    "on-cti's row {i} starts at {start}, before CTI {last}, which the stage already passed on: a row emitted as a CTI passes must start at or after the CTI before it (give a window's result its end as start)"
                ));
            }
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_plan.len());
        let start: ArrayRef = Arc::new(Int64Array::from(output.start));
        let end: ArrayRef = Arc::new(Int64Array::from(output.end));
        for (i, from) in self.output_plan.iter().enumerate() {
            columns.push(match (*from, i) {
                (Some(k), _) => output.columns[k].clone(),
                (None, 0) => start.clone(),
                (None, 1) => end.clone(),
                (None, _) => {
                    return Err(format!(
                        "output column `{}` is not one the UDF writes",
                        self.output_schema.field(i).name()
                    ));
                }
            });
        }
        RecordBatch::try_new(self.output_schema.clone(), columns)
            .map_err(|e| format!("on-cti's rows do not make a batch: {e}"))
    }
}
