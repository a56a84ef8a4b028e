//! Inputs: a source per `INPUT` (a lifetime stage after it when it has
//! `LIFETIME`), and the time columns events can be put at.

use std::path::Path;

use arrow_schema::SchemaRef;
use weir_core::plan::{CtiPolicy, ErrorPolicy, SourceFormat, SourceOrigin, SourceSpec, TimeUnit};
use weir_core::temporal::Lifetime;

use super::build::Build;
use super::{Inputs, Lowering};
use crate::error::ScriptError;
use crate::pipeline::{Step, with_interval};
use crate::script::Input;

impl Lowering<'_> {
    pub(super) fn input(
        &mut self,
        input: &Input,
        base: &Path,
        schema: SchemaRef,
        inputs: Inputs,
    ) -> Result<SourceSpec, ScriptError> {
        let format = if input.path.to_ascii_lowercase().ends_with(".csv") {
            SourceFormat::Csv
        } else {
            SourceFormat::Jsonl
        };
        let unit = match input.time_scale {
            1_000 => TimeUnit::Millis,
            1_000_000 => TimeUnit::Seconds,
            1 => TimeUnit::Micros,
            other => {
                return Err(ScriptError {
                    file: self.file.to_string(),
                    line: input.at.line,
                    column: input.at.column,
                    message: format!(
                        "time columns in units of {other} µs; inputs read us, ms or s"
                    ),
                    hint: None,
                });
            }
        };
        let arrow = with_interval(schema.fields().iter().map(|f| f.as_ref().clone()));
        // With a lifetime, the source is the stream's input and a stage
        // of the stream's name gives every event its lifetime.
        let source_name = match input.lifetime {
            Some(_) => format!("{}__events", input.name),
            None => input.name.clone(),
        };
        if let Some(d) = input.lifetime {
            self.builds.push(Build::new(
                input.name.clone(),
                vec![source_name.clone()],
                vec![arrow.clone()],
                vec![Step::Lifetime(Lifetime::Duration(d))],
                arrow.clone(),
            ));
        }
        self.streams.push((input.name.clone(), arrow));
        Ok(SourceSpec {
            name: source_name,
            origin: match (&input.nexmark, inputs) {
                (Some(n), _) => SourceOrigin::Nexmark {
                    kind: n.kind,
                    config: n.config.clone(),
                    paced: n.paced,
                },
                (None, Inputs::Files) => SourceOrigin::File { follow: false },
                (None, Inputs::Streams) => SourceOrigin::Stream(input.name.clone()),
            },
            format,
            path: match inputs {
                Inputs::Files if input.nexmark.is_none() => base.join(&input.path),
                _ => std::path::PathBuf::new(),
            },
            fields: input.columns.clone(),
            event_time: input.event_time.clone(),
            event_unit: unit,
            end_time: input.end_time.clone(),
            end_unit: unit,
            on_error: ErrorPolicy::Fail,
            cti: CtiPolicy::default(),
            strict: false,
        })
    }

    /// The index (interval first) of `column` of `schema`, a long: a time
    /// an event can be put at.
    pub(super) fn time_column(
        &self,
        schema: &SchemaRef,
        column: &str,
    ) -> Result<usize, ScriptError> {
        match schema.index_of(column) {
            Ok(i) if i >= 2 && schema.field(i).data_type() == &arrow_schema::DataType::Int64 => {
                Ok(i)
            }
            Ok(i) if i >= 2 => Err(self.fail(format!(
                "WITH POINT AT `{column}`: the column is not a long (a time in µs)"
            ))),
            _ => Err(self.fail(format!(
                "WITH POINT AT `{column}`: not a column of the query's output (columns: {})",
                schema.fields()[2..]
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}
