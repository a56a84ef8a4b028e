//! Stages that run a Wasm component: `PROCESS`, `REDUCE` and the stages of
//! scalar calls.

use arrow_schema::SchemaRef;
use weir_core::plan::UdfSpec;
use weir_core::temporal::Partition;

use super::{Build, Lowering};
use crate::component::Process;
use crate::error::ScriptError;
use crate::pipeline::with_interval;

impl Lowering<'_> {
    /// The stage of `p` running `spec`, whose component writes `schema`. A
    /// reducer's keys are split like a GROUP BY's (at the script's
    /// `default` parallelism unless the statement sets one); a processor,
    /// which keeps nothing between rows, is split by all its columns (its
    /// lifetime too) only when its statement asks.
    pub(super) fn process(
        &mut self,
        p: &Process,
        spec: UdfSpec,
        schema: &SchemaRef,
        default: usize,
    ) -> Result<(), ScriptError> {
        let output = with_interval(schema.fields().iter().map(|f| f.as_ref().clone()));
        let (input, input_schema) = self.stream_schema(&p.input).map_err(|m| self.fail(m))?;
        let n = match (p.parallelism, &p.key) {
            (Some((n, _)), _) => n,
            (None, Some(_)) => default,
            (None, None) => 1,
        };
        let keys = match &p.key {
            Some(key) => vec![
                input_schema
                    .index_of(key)
                    .map_err(|e| self.fail(e.to_string()))?,
            ],
            None => (0..input_schema.fields().len()).collect(),
        };
        if n > 1 {
            Partition::new(input_schema.clone(), keys.clone(), n, 0).map_err(|e| {
                let at = p.parallelism.map_or(p.at, |(_, at)| at);
                ScriptError {
                    file: self.file.to_string(),
                    line: at.line,
                    column: at.column,
                    message: format!("`{}` cannot run as {n} rVertices: {e}", p.name),
                    hint: None,
                }
            })?;
        }
        self.component_stage(p.name.clone(), input, input_schema, spec, output, (n, keys));
        Ok(())
    }

    /// A stage `name` running component `spec` over stream `input` (of
    /// schema `input_schema`), giving `output`, as `n` rVertices splitting
    /// the input by the columns `keys` when `n` > 1.
    pub(super) fn component_stage(
        &mut self,
        name: String,
        input: String,
        input_schema: SchemaRef,
        spec: UdfSpec,
        output: SchemaRef,
        (n, keys): (usize, Vec<usize>),
    ) {
        let mut build = Build::new(
            name.clone(),
            vec![input],
            vec![input_schema],
            Vec::new(),
            output.clone(),
        )
        .with_udf(spec);
        if n > 1 {
            build = build.parallel(n, vec![keys]);
        }
        self.builds.push(build);
        self.streams.push((name, output));
    }
}
