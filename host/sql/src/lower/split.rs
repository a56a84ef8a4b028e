//! A windowed aggregate without group keys at a parallelism above 1: a
//! partial phase in every copy, a final phase merging their accumulators.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use weir_core::temporal::{Aggregate, Hopping, TemporalOp, WindowAggregate, partial_schema};

use super::{Build, Flow, Lowering, MakeOp};

impl Lowering<'_> {
    /// The stages of `aggregate` (a stage of no name over one input, with
    /// its steps, giving the whole aggregate's output) computing `aggs` of
    /// `pre` (the rows its steps make) in `hopping` windows: a partial
    /// phase at the query's parallelism, its input split by the columns
    /// `every`, and one final phase after the copies' merge.
    pub(super) fn split_aggregate(
        &mut self,
        aggregate: Build,
        every: Vec<usize>,
        (pre, hopping, aggs): (SchemaRef, Hopping, Vec<Aggregate>),
    ) -> Result<Flow, String> {
        let computes = aggs
            .iter()
            .map(Aggregate::describe)
            .collect::<Vec<_>>()
            .join(", ");
        let windows = format!("HOPPING {} µs every {} µs", hopping.size(), hopping.hop());
        let partial_output = partial_schema(&aggregate.output, 0);
        let make_partial: MakeOp = {
            let (pre, aggs) = (pre.clone(), aggs.clone());
            Arc::new(move || {
                WindowAggregate::partial(&pre, hopping, Vec::new(), aggs.clone())
                    .map(|op| Box::new(op) as Box<dyn TemporalOp>)
                    .map_err(|e| e.to_string())
            })
        };
        let partial_name = self.fresh();
        let Build {
            inputs,
            input_schemas,
            before,
            output,
            ..
        } = aggregate;
        let build = Build::new(
            partial_name.clone(),
            inputs,
            input_schemas,
            before,
            partial_output.clone(),
        )
        .with_op((
            format!("window({windows}) partial accumulators of {computes}"),
            make_partial,
        ))
        .parallel(self.parallelism, vec![every]);
        self.stage(build);

        let make_final: MakeOp = Arc::new(move || {
            WindowAggregate::merging(&pre, hopping, Vec::new(), aggs.clone())
                .map(|op| Box::new(op) as Box<dyn TemporalOp>)
                .map_err(|e| e.to_string())
        });
        let name = self.fresh();
        let build = Build::new(
            name.clone(),
            vec![partial_name],
            vec![partial_output],
            Vec::new(),
            output.clone(),
        )
        .with_op((
            format!("window({windows}) merge the partial accumulators, finish {computes}"),
            make_final,
        ));
        Ok(self.stage(build))
    }
}
