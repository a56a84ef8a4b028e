//! A stage being built, and the plan stage it becomes.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use weir_core::plan::{Operator, PartitionKeys, Recovery, StageSpec, TemporalSpec, UdfSpec};
use weir_core::temporal::TemporalOp;

use crate::pipeline::{Pipeline, Step};

/// Makes a stage's stateful operator.
pub(super) type MakeOp = Arc<dyn Fn() -> Result<Box<dyn TemporalOp>, String> + Send + Sync>;

/// A stage being built.
pub(super) struct Build {
    pub(super) name: String,
    pub(super) inputs: Vec<String>,
    pub(super) input_schemas: Vec<SchemaRef>,
    pub(super) before: Vec<Step>,
    pub(super) op: Option<(String, MakeOp)>,
    pub(super) after: Vec<Step>,
    pub(super) output: SchemaRef,
    /// A union of its inputs (no steps, no operator).
    pub(super) union: bool,
    /// A Wasm component's stage (no steps, no operator).
    pub(super) udf: Option<UdfSpec>,
    /// The rVertices it runs as.
    pub(super) parallelism: usize,
    /// Per input, the key columns that partition it (empty: not split).
    pub(super) partition: Vec<PartitionKeys>,
    /// Instances of each of its rVertices in a cluster.
    pub(super) replicate: usize,
}

impl Build {
    /// A stage `name` over `inputs` (of `input_schemas`) running `before`,
    /// giving `output`; no operator, run as one vertex.
    pub(super) fn new(
        name: String,
        inputs: Vec<String>,
        input_schemas: Vec<SchemaRef>,
        before: Vec<Step>,
        output: SchemaRef,
    ) -> Build {
        Build {
            name,
            inputs,
            input_schemas,
            before,
            op: None,
            after: Vec::new(),
            output,
            union: false,
            udf: None,
            parallelism: 1,
            partition: Vec::new(),
            replicate: 1,
        }
    }

    /// With a stateful operator.
    pub(super) fn with_op(mut self, op: (String, MakeOp)) -> Build {
        self.op = Some(op);
        self
    }

    /// A union of its inputs.
    pub(super) fn union(mut self) -> Build {
        self.union = true;
        self
    }

    /// A Wasm component's stage.
    pub(super) fn with_udf(mut self, udf: UdfSpec) -> Build {
        self.udf = Some(udf);
        self
    }

    /// Runs as `n` rVertices, its inputs hash-partitioned by `keys` (per
    /// input, column indices, interval first).
    pub(super) fn parallel(mut self, n: usize, keys: Vec<Vec<usize>>) -> Build {
        self.parallelism = n;
        self.partition = self
            .input_schemas
            .iter()
            .zip(keys)
            .map(|(schema, columns)| PartitionKeys {
                schema: schema.clone(),
                columns,
            })
            .collect();
        self
    }

    pub(super) fn describe(&self) -> String {
        let mut parts: Vec<String> = self.before.iter().map(describe_step).collect();
        if let Some((d, _)) = &self.op {
            parts.push(d.clone());
        }
        parts.extend(self.after.iter().map(describe_step));
        if parts.is_empty() {
            "pass".into()
        } else {
            parts.join(" → ")
        }
    }

    pub(super) fn spec(self) -> StageSpec {
        if let Some(udf) = self.udf {
            return StageSpec {
                name: self.name,
                inputs: self.inputs,
                operator: Operator::Udf(udf),
                recovery: Recovery::default(),
                parallelism: self.parallelism,
                partition: self.partition,
                replicate: self.replicate,
            };
        }
        if self.union {
            return StageSpec {
                name: self.name,
                inputs: self.inputs,
                operator: Operator::Union,
                recovery: Recovery::default(),
                parallelism: 1,
                partition: Vec::new(),
                replicate: self.replicate,
            };
        }
        let describe = self.describe();
        let Build {
            name,
            inputs,
            input_schemas,
            before,
            op,
            after,
            output,
            union: _,
            udf: _,
            parallelism,
            partition,
            replicate,
        } = self;
        let pipeline_describe = describe.clone();
        let make = Arc::new(move || -> Result<Box<dyn TemporalOp>, String> {
            let op = match &op {
                Some((_, make)) => Some(make()?),
                None => None,
            };
            Ok(Box::new(Pipeline {
                describe: pipeline_describe.clone(),
                inputs: input_schemas.clone(),
                before: before.clone(),
                op,
                after: after.clone(),
                output: output.clone(),
            }))
        });
        StageSpec {
            name,
            inputs,
            operator: Operator::Temporal(TemporalSpec { describe, make }),
            recovery: Recovery::default(),
            parallelism,
            partition,
            replicate,
        }
    }
}

fn describe_step(s: &Step) -> String {
    match s {
        Step::Map { exprs, .. } => format!(
            "project({})",
            exprs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Step::Filter(p) => format!("filter({p})"),
        Step::Lifetime(l) => format!("lifetime({l:?})"),
    }
}
