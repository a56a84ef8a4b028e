//! The operators as a vertex runs them ([`TemporalOp`]).

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use super::{TemporalJoin, TemporalOp, WindowAggregate};
use crate::udf::{KeyedState, StateChanges};

impl TemporalOp for WindowAggregate {
    fn describe(&self) -> String {
        format!("{self:?}")
    }

    fn input_schemas(&self) -> Vec<SchemaRef> {
        vec![self.input_schema()]
    }

    fn output_schema(&self) -> SchemaRef {
        WindowAggregate::output_schema(self)
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: &RecordBatch,
    ) -> Result<Option<RecordBatch>, String> {
        WindowAggregate::on_batch(self, batch).map_err(|e| e.to_string())?;
        Ok(None)
    }

    fn on_cti(&mut self, t: i64) -> Result<(Option<RecordBatch>, i64), String> {
        WindowAggregate::on_cti(self, t).map_err(|e| e.to_string())
    }

    fn take_delta(&mut self) -> StateChanges {
        WindowAggregate::take_delta(self)
    }

    fn restore(&mut self, state: &KeyedState) -> Result<(), String> {
        WindowAggregate::restore(self, state).map_err(|e| e.to_string())
    }
}

impl TemporalOp for TemporalJoin {
    fn describe(&self) -> String {
        format!("{self:?}")
    }

    fn input_schemas(&self) -> Vec<SchemaRef> {
        self.inputs().to_vec()
    }

    fn output_schema(&self) -> SchemaRef {
        TemporalJoin::output_schema(self)
    }

    fn on_batch(
        &mut self,
        input: usize,
        batch: &RecordBatch,
    ) -> Result<Option<RecordBatch>, String> {
        TemporalJoin::on_batch(self, input, batch).map_err(|e| e.to_string())
    }

    fn on_cti(&mut self, t: i64) -> Result<(Option<RecordBatch>, i64), String> {
        TemporalJoin::on_cti(self, t).map_err(|e| e.to_string())
    }

    fn take_delta(&mut self) -> StateChanges {
        TemporalJoin::take_delta(self)
    }

    fn restore(&mut self, state: &KeyedState) -> Result<(), String> {
        TemporalJoin::restore(self, state).map_err(|e| e.to_string())
    }
}
