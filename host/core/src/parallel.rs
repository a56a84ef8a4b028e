//! Parallel stages on one node: a plan whose stages have a parallelism
//! becomes a plan of single rVertices.
//!
//! A stage `S` that runs as `n` rVertices and whose inputs are partitioned
//! by key columns becomes:
//! - the exchange: per input `i` and copy `j`, a vertex `S__in{i}p{j}`
//!   keeping the rows whose keys hash to `j` (a [`Partition`]); each
//!   partition is a stream of its own (an rStream on a node);
//! - the copies: `S__p{j}` runs `S`'s operator (a built-in operator, or a
//!   reducer's or processor's component, each copy with state and a patch
//!   timeline of its own) on partition `j` of each input;
//! - the merge: a union named `S` merges the copies' outputs by CTI, so
//!   consumers and sinks read `S` as before.
//!
//! Equal keys meet in one copy, so each copy computes exactly the groups,
//! join matches and reducer keys of its keys (a processor, which keeps
//! nothing between rows, is split by all its columns). The union's order within a release
//! depends on which copy a row came from; sinks write in a canonical order
//! of their own (see [`crate::sink::Ordered`]), so output does not depend
//! on `n`.

use std::sync::Arc;

use crate::plan::{Operator, Plan, Recovery, StageKind, StageSpec, TemporalSpec};
use crate::temporal::{Partition, TemporalOp};

/// The name of copy `j` of stage `stage`.
pub fn copy_name(stage: &str, j: usize) -> String {
    format!("{stage}__p{j}")
}

/// The name of partition `j` of input `i` of stage `stage`.
pub fn partition_name(stage: &str, i: usize, j: usize) -> String {
    format!("{stage}__in{i}p{j}")
}

/// Whether `stage` runs as several rVertices.
pub fn is_parallel(stage: &StageSpec) -> bool {
    stage.parallelism > 1
        && !stage.partition.is_empty()
        && stage.partition.len() == stage.inputs.len()
        && stage.partition.iter().all(|k| !k.columns.is_empty())
        && match &stage.operator {
            Operator::Temporal(_) => true,
            Operator::Udf(udf) => udf.kind != StageKind::Scalar,
            Operator::Union => false,
        }
}

/// `plan` with every parallel stage expanded into its exchange, copies and
/// merge; every stage of the result has parallelism 1.
pub fn expand(mut plan: Plan) -> Result<Plan, String> {
    let mut stages = Vec::with_capacity(plan.stages.len());
    for stage in std::mem::take(&mut plan.stages) {
        if !is_parallel(&stage) {
            stages.push(StageSpec {
                parallelism: 1,
                ..stage
            });
            continue;
        }
        let n = stage.parallelism;
        for (i, (input, by)) in stage.inputs.iter().zip(&stage.partition).enumerate() {
            let (schema, keys) = (by.schema.clone(), by.columns.clone());
            for j in 0..n {
                // Checked here, so the plan that expands makes its vertices.
                let probe = Partition::new(schema.clone(), keys.clone(), n, j)
                    .map_err(|e| format!("stage `{}`, input `{input}`: {e}", stage.name))?;
                let (schema, keys) = (schema.clone(), keys.clone());
                stages.push(StageSpec {
                    name: partition_name(&stage.name, i, j),
                    inputs: vec![input.clone()],
                    operator: Operator::Temporal(TemporalSpec {
                        describe: probe.describe(),
                        make: Arc::new(move || {
                            Partition::new(schema.clone(), keys.clone(), n, j)
                                .map(|p| Box::new(p) as Box<dyn TemporalOp>)
                        }),
                    }),
                    recovery: Recovery::default(),
                    parallelism: 1,
                    partition: Vec::new(),
                    replicate: stage.replicate,
                });
            }
        }
        for j in 0..n {
            stages.push(StageSpec {
                name: copy_name(&stage.name, j),
                inputs: (0..stage.inputs.len())
                    .map(|i| partition_name(&stage.name, i, j))
                    .collect(),
                operator: stage.operator.clone(),
                recovery: stage.recovery,
                parallelism: 1,
                partition: Vec::new(),
                replicate: stage.replicate,
            });
        }
        stages.push(StageSpec {
            name: stage.name.clone(),
            inputs: (0..n).map(|j| copy_name(&stage.name, j)).collect(),
            operator: Operator::Union,
            recovery: Recovery::default(),
            parallelism: 1,
            partition: Vec::new(),
            replicate: stage.replicate,
        });
    }
    plan.stages = stages;
    Ok(plan)
}
