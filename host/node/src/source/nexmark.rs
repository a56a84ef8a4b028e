//! A Nexmark input: batches of one of Nexmark's streams from the built-in
//! generator instead of lines of a file, with the interval every source
//! gives its rows (a point at `date_time`).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::SchemaRef;
use weir_nexmark::{Generator, Kind};

use super::{Chunk, SourceError};
use crate::plan::{SourceOrigin, SourceSpec};

/// Where a Nexmark input stands: the next event number to generate.
pub(crate) struct Generated {
    generator: Generator,
    kind: Kind,
    next: u64,
    /// The column events end at (a point at `date_time` without one).
    end: Option<String>,
}

impl Generated {
    /// The generator of `spec`, if it is a Nexmark input.
    pub(crate) fn of(spec: &SourceSpec) -> Result<Option<Generated>, SourceError> {
        let SourceOrigin::Nexmark { kind, config, .. } = &spec.origin else {
            return Ok(None);
        };
        let generator = Generator::new(config.clone()).map_err(|e| SourceError::Io {
            source_name: spec.name.clone(),
            path: "nexmark".into(),
            error: std::io::Error::other(e),
        })?;
        Ok(Some(Generated {
            generator,
            kind: *kind,
            next: 0,
            end: spec.end_time.clone(),
        }))
    }

    /// Event numbers generated so far (a file source's line number).
    pub(crate) fn position(&self) -> u64 {
        self.next
    }

    /// Goes on from event number `n` (a restart's position).
    pub(crate) fn skip_to(&mut self, n: u64) {
        self.next = n;
    }

    /// Every event is generated.
    pub(crate) fn done(&self) -> bool {
        self.next >= self.generator.config().events
    }

    /// The generator's settings.
    pub(crate) fn config(&self) -> &weir_nexmark::Config {
        self.generator.config()
    }

    /// About `rows` rows of the stream, interval first (`schema`), or
    /// `None` once every event is generated.
    pub(super) fn next(&mut self, schema: &SchemaRef, rows: usize) -> Option<Chunk> {
        self.next_before(schema, rows, u64::MAX)
    }

    /// About `rows` rows of the stream from events numbered below `limit`
    /// (none when the position is there already), or `None` once every
    /// event is generated.
    pub(crate) fn next_before(
        &mut self,
        schema: &SchemaRef,
        rows: usize,
        limit: u64,
    ) -> Option<Chunk> {
        let events = self.generator.config().events.min(limit);
        if self.next >= events {
            return None;
        }
        // Event numbers that hold about `rows` rows of this kind.
        let span = (rows as u64 * 50).div_ceil(self.kind.per_50()).max(1);
        let end = self.next.saturating_add(span).min(events);
        let data = self.generator.batch(self.kind, self.next..end);
        self.next = end;
        let time = data
            .column_by_name("date_time")
            .expect("every Nexmark stream has date_time")
            .as_primitive::<Int64Type>();
        let ends: Int64Array = match &self.end {
            // A lifetime is never empty: an end at or before the start
            // makes a point.
            Some(end) => arrow_arith::arity::binary(
                time,
                data.column_by_name(end)
                    .expect("the end column is one of the stream's")
                    .as_primitive::<Int64Type>(),
                |t, e| e.max(t.saturating_add(1)),
            )
            .expect("columns of one batch"),
            None => arrow_arith::arity::unary(time, |t| t.saturating_add(1)),
        };
        let mut columns: Vec<ArrayRef> = vec![Arc::new(time.clone()), Arc::new(ends)];
        columns.extend(data.columns().iter().cloned());
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .expect("the generator's columns are the input's");
        Some(Chunk {
            batch,
            rejected: Vec::new(),
        })
    }
}
