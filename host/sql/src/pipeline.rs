//! What a query's stage runs: expressions (DataFusion's physical
//! expressions over Arrow batches) before and after at most one stateful
//! temporal operator (a windowed aggregate or a join), as one
//! [`TemporalOp`].

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field as ArrowField, Schema, SchemaRef};
use datafusion_physical_expr::PhysicalExpr;
use weir_core::schema::{END, START};
use weir_core::temporal::{Lifetime, TemporalOp};
use weir_core::udf::{KeyedState, StateChanges};

/// One stateless step over a batch (interval first).
#[derive(Debug, Clone)]
pub enum Step {
    /// New columns from expressions over the batch's columns (the interval
    /// stays); `schema` is the output's, interval first.
    Map {
        /// One per output column.
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        /// The output schema.
        schema: SchemaRef,
    },
    /// Keeps the rows the predicate is true for.
    Filter(Arc<dyn PhysicalExpr>),
    /// Changes every event's lifetime.
    Lifetime(Lifetime),
}

impl Step {
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, String> {
        if batch.num_rows() == 0 {
            return Ok(match self {
                Step::Map { schema, .. } => RecordBatch::new_empty(schema.clone()),
                _ => batch,
            });
        }
        // Expressions see the user columns only.
        let user = || {
            let indices: Vec<usize> = (2..batch.num_columns()).collect();
            batch.project(&indices).map_err(|e| e.to_string())
        };
        match self {
            Step::Map { exprs, schema } => {
                let columns = user()?;
                let mut out: Vec<ArrayRef> = vec![batch.column(0).clone(), batch.column(1).clone()];
                for e in exprs {
                    let value = e.evaluate(&columns).map_err(|e| e.strip_backtrace())?;
                    out.push(
                        value
                            .into_array(batch.num_rows())
                            .map_err(|e| e.strip_backtrace())?,
                    );
                }
                RecordBatch::try_new(schema.clone(), out).map_err(|e| e.to_string())
            }
            Step::Filter(predicate) => {
                let value = predicate
                    .evaluate(&user()?)
                    .map_err(|e| e.strip_backtrace())?
                    .into_array(batch.num_rows())
                    .map_err(|e| e.strip_backtrace())?;
                let keep = value
                    .as_any()
                    .downcast_ref::<arrow_array::BooleanArray>()
                    .ok_or("a predicate that is not boolean")?;
                arrow_select::filter::filter_record_batch(&batch, keep).map_err(|e| e.to_string())
            }
            Step::Lifetime(l) => l.apply(&batch),
        }
    }
}

/// Steps before and after at most one stateful operator.
pub struct Pipeline {
    /// What it does.
    pub describe: String,
    /// Its inputs' schemas.
    pub inputs: Vec<SchemaRef>,
    /// Steps on the single input, before the operator.
    pub before: Vec<Step>,
    /// The stateful operator.
    pub op: Option<Box<dyn TemporalOp>>,
    /// Steps on the operator's output.
    pub after: Vec<Step>,
    /// The output schema.
    pub output: SchemaRef,
}

impl Pipeline {
    fn run(steps: &[Step], mut batch: RecordBatch) -> Result<RecordBatch, String> {
        for s in steps {
            batch = s.apply(batch)?;
        }
        Ok(batch)
    }
}

impl TemporalOp for Pipeline {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn input_schemas(&self) -> Vec<SchemaRef> {
        self.inputs.clone()
    }

    fn output_schema(&self) -> SchemaRef {
        self.output.clone()
    }

    fn on_batch(
        &mut self,
        input: usize,
        batch: &RecordBatch,
    ) -> Result<Option<RecordBatch>, String> {
        let batch = Pipeline::run(&self.before, batch.clone())?;
        let out = match self.op.as_mut() {
            Some(op) => op.on_batch(input, &batch)?,
            None => Some(batch),
        };
        match out {
            Some(out) if out.num_rows() > 0 => Pipeline::run(&self.after, out).map(Some),
            _ => Ok(None),
        }
    }

    fn on_cti(&mut self, t: i64) -> Result<(Option<RecordBatch>, i64), String> {
        // A shift before the operator moves the CTI it sees; one after, the
        // CTI it passes on.
        let shifted = |steps: &[Step], mut t: i64| {
            for s in steps {
                if let Step::Lifetime(l) = s {
                    t = l.cti(t);
                }
            }
            t
        };
        let t = shifted(&self.before, t);
        let (out, pass) = match self.op.as_mut() {
            Some(op) => op.on_cti(t)?,
            None => (None, t),
        };
        let pass = shifted(&self.after, pass);
        let out = match out {
            Some(out) if out.num_rows() > 0 => Some(Pipeline::run(&self.after, out)?),
            _ => None,
        };
        Ok((out, pass))
    }

    fn take_delta(&mut self) -> StateChanges {
        self.op
            .as_mut()
            .map(|op| op.take_delta())
            .unwrap_or_default()
    }

    fn restore(&mut self, state: &KeyedState) -> Result<(), String> {
        match self.op.as_mut() {
            Some(op) => op.restore(state),
            None => Ok(()),
        }
    }
}

/// A schema with the interval first, then `fields`.
pub fn with_interval(fields: impl IntoIterator<Item = ArrowField>) -> SchemaRef {
    let mut all = vec![
        ArrowField::new(START, arrow_schema::DataType::Int64, false),
        ArrowField::new(END, arrow_schema::DataType::Int64, false),
    ];
    all.extend(fields);
    Arc::new(Schema::new(all))
}
