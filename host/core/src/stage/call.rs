//! Calling the UDF: a batch cut into pieces by segment, runtime filters
//! first, one call per piece, and on a failure the rows to blame found one
//! at a time; the UDF's output checked and assembled into the stage's
//! output batch.

use super::*;

impl UdfStage {
    /// Processes a batch of any length, piece by piece ([`UdfStage::pieces`]),
    /// as one batch: its output rows in order.
    pub fn process_all(
        &mut self,
        batch: &RecordBatch,
        dead: &mut Vec<DeadRow>,
    ) -> Result<RecordBatch, StageError> {
        let mut outs = Vec::new();
        for (offset, len) in self.pieces(batch.num_rows()) {
            outs.push(self.process(&batch.slice(offset, len), dead)?);
        }
        match outs.len() {
            1 => Ok(outs.remove(0)),
            _ => concat_batches(&self.output_schema, &outs)
                .map_err(|e| self.malformed(self.position, 0, e.to_string())),
        }
    }

    /// Processes one batch (one that [`UdfStage::pieces`] did not cut);
    /// failing rows go to `dead` under policy dead-letter.
    pub fn process(
        &mut self,
        batch: &RecordBatch,
        dead: &mut Vec<DeadRow>,
    ) -> Result<RecordBatch, StageError> {
        let rows = batch.num_rows();
        let first = self.position;
        if first.is_multiple_of(SEGMENT_ROWS) {
            self.cut();
        }
        // Runtime filters first: the UDF sees the rows they keep, and every
        // row still counts in the input position.
        let keep = crate::filter::keep(&self.filters, batch).map_err(|e| {
            self.malformed(first, rows, format!("evaluating a runtime filter: {e}"))
        })?;
        let kept;
        let batch = match &keep {
            None => batch,
            Some(mask) => {
                kept = arrow_select::filter::filter_record_batch(batch, mask)
                    .map_err(|e| self.malformed(first, rows, e.to_string()))?;
                &kept
            }
        };
        let filtered = (rows - batch.num_rows()) as u64;
        self.stats.rows_in += rows as u64;
        self.stats.filtered += filtered;
        let out = match self.call(batch, first) {
            Ok(out) => out,
            Err(CallOutcome::Malformed(message)) => {
                return Err(self.malformed(first, rows, message));
            }
            Err(CallOutcome::Failed(error)) if self.spec.on_trap == ErrorPolicy::Rollback => {
                self.stats.rows_in -= rows as u64;
                self.stats.filtered -= filtered;
                self.reset()?;
                return Err(StageError::Trapped {
                    stage: self.name.clone(),
                    module: self.udf.module().version.to_string(),
                    position: first,
                    error,
                });
            }
            Err(CallOutcome::Failed(_)) => {
                // Find the rows to blame, one row per call, from a fresh instance.
                self.reset()?;
                // The input position of each row the UDF saw.
                let positions: Vec<u64> = match &keep {
                    Some(mask) => mask
                        .values()
                        .set_indices()
                        .map(|j| first + j as u64)
                        .collect(),
                    None => (first..first + rows as u64).collect(),
                };
                let mut parts = Vec::new();
                for (i, &position) in positions.iter().enumerate() {
                    let row = batch.slice(i, 1);
                    // Each row alone, seeded by its own position.
                    self.segment_at = position;
                    self.seeded = false;
                    match self.call(&row, position) {
                        Ok(out) => parts.push(out),
                        Err(CallOutcome::Malformed(message)) => {
                            return Err(self.malformed(position, 1, message));
                        }
                        Err(CallOutcome::Failed(error)) => {
                            let row_json = row_json(&row);
                            if self.spec.on_trap == ErrorPolicy::Fail {
                                return Err(StageError::Row {
                                    stage: self.name.clone(),
                                    module: self.udf.module().version.to_string(),
                                    position,
                                    error,
                                    row: clip(&row_json, MAX_SHOWN),
                                });
                            }
                            tracing::warn!(stage = %self.name, module = %self.udf.module().version, position = position, "dead-lettered: {error}");
                            dead.push(DeadRow {
                                position,
                                start: row.column(0).as_primitive::<Int64Type>().value(0),
                                error: error.to_string(),
                                row: row_json,
                            });
                            self.stats.dead += 1;
                            self.reset()?;
                        }
                    }
                }
                concat_batches(&self.output_schema, &parts)
                    .map_err(|e| self.malformed(first, rows, e.to_string()))?
            }
        };
        self.position += rows as u64;
        self.stats.rows_out += out.num_rows() as u64;
        Ok(out)
    }

    pub(super) fn malformed(&self, first: u64, rows: usize, message: String) -> StageError {
        StageError::Output {
            stage: self.name.clone(),
            module: self.udf.module().version.to_string(),
            first,
            last: first + rows as u64,
            message,
        }
    }

    pub(super) fn reset(&mut self) -> Result<(), StageError> {
        self.stats.traps += 1;
        self.fuel_seen = 0;
        // A fresh instance starts its segment's clock and random sequence again.
        self.seeded = false;
        self.udf.reset().map_err(|e| StageError::Mismatch {
            stage: self.name.clone(),
            module: self.udf.module().version.to_string(),
            message: format!("could not be re-instantiated after a trap: {e}"),
        })
    }

    fn call(&mut self, batch: &RecordBatch, position: u64) -> Result<RecordBatch, CallOutcome> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(RecordBatch::new_empty(self.output_schema.clone()));
        }
        // Columns are looked up by name once per schema (`Arc`): batches of
        // one stream share theirs.
        if !Arc::ptr_eq(batch.schema_ref(), &self.layout.schema) {
            self.layout = InputLayout::of(
                batch.schema_ref(),
                &self.reads,
                &self.output_schema,
                &self.output_plan,
            )
            .map_err(CallOutcome::Malformed)?;
        }
        // The first call of a segment seeds it; later ones carry on.
        let segment = (!self.seeded).then_some(self.segment_at);
        self.seeded = true;
        let keys =
            (self.spec.kind == StageKind::Reducer).then(|| key_groups(self.key_column, batch));
        let result = self.udf.call(Call {
            batch,
            reads: &self.layout.reads,
            keys,
            segment,
        });
        self.after_call(position, None);
        let output = match result {
            Ok(output) => output,
            Err(CallFailure::Failed(e)) => return Err(CallOutcome::Failed(e)),
            Err(CallFailure::Malformed(m)) => return Err(CallOutcome::Malformed(m)),
        };
        self.assemble(batch, output).map_err(CallOutcome::Malformed)
    }
    /// The output batch of `input`, a batch of `self.layout`'s schema.
    fn assemble(&self, input: &RecordBatch, output: UdfOutput) -> Result<RecordBatch, String> {
        if output.columns.len() != self.writes.len() {
            return Err(format!(
                "returned {} columns, declared {}",
                output.columns.len(),
                self.writes.len()
            ));
        }
        let n = output.parents.len();
        let selection = Selection::of(output.parents, input.num_rows())?;
        let mut written: Vec<ArrayRef> = Vec::with_capacity(self.writes.len());
        for (column, field) in output.columns.into_iter().zip(&self.writes) {
            written.push(match column {
                OutputColumn::Written(column) if column.len() != n => {
                    return Err(format!(
                        "column `{}` has {} rows, the output {n}",
                        field.name,
                        column.len()
                    ));
                }
                OutputColumn::Written(column) => column,
                OutputColumn::Input(index) => passed_through(
                    input,
                    &self.reads,
                    &self.layout.reads,
                    index,
                    field,
                    &selection,
                )?,
            });
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.layout.output.len());
        for from in &self.layout.output {
            columns.push(match *from {
                OutputFrom::Written(k) => written[k].clone(),
                OutputFrom::Input(i) => selection.apply(input.column(i))?,
            });
        }
        RecordBatch::try_new(self.output_schema.clone(), columns).map_err(|e| e.to_string())
    }
}

/// Where a stage finds its columns in batches of one input schema.
#[derive(Debug)]
pub(super) struct InputLayout {
    schema: SchemaRef,
    /// The index of each column the UDF reads.
    reads: Vec<usize>,
    /// Where each output column comes from.
    output: Vec<OutputFrom>,
}

/// Where one output column comes from.
#[derive(Debug, Clone, Copy)]
enum OutputFrom {
    /// The `k`th column the UDF wrote.
    Written(usize),
    /// Carried over from this input column (the interval, a filter's columns).
    Input(usize),
}

impl InputLayout {
    /// Finds the columns by name in `schema`: those `reads` names, and the
    /// output columns that `output_plan` carries over.
    pub(super) fn of(
        schema: &SchemaRef,
        reads: &[Field],
        output_schema: &SchemaRef,
        output_plan: &[Option<usize>],
    ) -> Result<Self, String> {
        let output = output_schema
            .fields()
            .iter()
            .zip(output_plan)
            .map(|(f, from)| match *from {
                Some(k) => Ok(OutputFrom::Written(k)),
                None => column_index(schema, f.name()).map(OutputFrom::Input),
            })
            .collect::<Result<_, String>>()?;
        Ok(InputLayout {
            schema: schema.clone(),
            reads: read_columns(schema, reads)?,
            output,
        })
    }
}

/// Output column `field` as the input column it passes through (WIT
/// `output-column::input(index)`, an index into `reads`, which are columns
/// `read_at` of `input`), at the selected rows, checked against the declared
/// type and nullability.
fn passed_through(
    input: &RecordBatch,
    reads: &[Field],
    read_at: &[usize],
    index: u32,
    field: &Field,
    selection: &Selection,
) -> Result<ArrayRef, String> {
    let read = reads.get(index as usize).ok_or_else(|| {
        format!(
            "column `{}` passes through input column {index}, but the UDF reads {} columns",
            field.name,
            reads.len()
        )
    })?;
    if read.ty != field.ty {
        return Err(format!(
            "column `{}` is declared {} but passes through input column `{}`, which is {}",
            field.name,
            type_name(field.ty),
            read.name,
            type_name(read.ty)
        ));
    }
    let column = read_at
        .get(index as usize)
        .and_then(|&i| input.columns().get(i))
        .ok_or_else(|| format!("the input has no column `{}`", read.name))?;
    let array = selection.apply(column)?;
    if !field.nullable && array.null_count() > 0 {
        return Err(format!(
            "column `{}` is declared not nullable but passes through {} nulls of input column `{}`",
            field.name,
            array.null_count(),
            read.name
        ));
    }
    Ok(array)
}

/// The key groups of a reducer's batch: each distinct key once, and for each
/// row the index of its key.
fn key_groups(key_column: Option<(usize, ColumnType)>, batch: &RecordBatch) -> KeyGroups {
    let mut keys = KeyGroups {
        offsets: vec![0],
        data: Vec::new(),
        groups: Vec::with_capacity(batch.num_rows()),
    };
    let Some((idx, ty)) = key_column else {
        return keys;
    };
    let column = batch.column(idx);
    let mut seen: HashMap<&[u8], u32> = HashMap::new();
    let push = |bytes: &[u8], keys: &mut KeyGroups| -> u32 {
        let n = (keys.offsets.len() - 1) as u32;
        keys.data.extend_from_slice(bytes);
        keys.offsets.push(keys.data.len() as u32);
        n
    };
    match ty {
        ColumnType::Utf8 => {
            let strings = column.as_string::<i32>();
            for i in 0..batch.num_rows() {
                let k = strings.value(i).as_bytes();
                let g = *seen.entry(k).or_insert_with(|| push(k, &mut keys));
                keys.groups.push(g);
            }
        }
        _ => {
            let ints = column.as_primitive::<Int64Type>();
            let mut seen_int: HashMap<i64, u32> = HashMap::new();
            for &v in ints.values().iter() {
                let g = *seen_int
                    .entry(v)
                    .or_insert_with(|| push(&v.to_le_bytes(), &mut keys));
                keys.groups.push(g);
            }
        }
    }
    keys
}

pub(super) enum CallOutcome {
    /// A trap or an error value: blame a row.
    Failed(CallError),
    /// Output that breaks the contract: a bug in the UDF or SDK, stop.
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::field;
    use arrow_array::{Int64Array, StringArray};

    /// A UDF's output that passes an input column through wrongly is refused
    /// with the column named, not taken.
    #[test]
    fn a_bad_pass_through_is_refused_naming_the_column() {
        let reads = vec![
            field("n", ColumnType::Int64, true),
            field("s", ColumnType::Utf8, false),
        ];
        let input = RecordBatch::try_new(
            event_schema(&reads),
            vec![
                Arc::new(Int64Array::from(vec![0, 1, 2])),
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(Int64Array::from(vec![Some(7), None, Some(9)])),
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
            ],
        )
        .expect("batch");
        let all = Selection::of(vec![0, 1, 2], 3).expect("selection");
        let kept = Selection::of(vec![0, 2], 3).expect("selection");
        let out = field("out", ColumnType::Int64, false);
        let at = read_columns(input.schema_ref(), &reads).expect("columns");
        let err = |index, field: &Field, selection| {
            passed_through(&input, &reads, &at, index, field, selection).expect_err("refused")
        };
        assert_eq!(
            err(5, &out, &all),
            "column `out` passes through input column 5, but the UDF reads 2 columns"
        );
        assert_eq!(
            err(1, &out, &all),
            "column `out` is declared int64 but passes through input column `s`, which is utf8"
        );
        assert_eq!(
            err(0, &out, &all),
            "column `out` is declared not nullable but passes through 1 nulls of input column `n`"
        );
        // The rows kept have no null: fine, and the values are the input's.
        let ok = passed_through(&input, &reads, &at, 0, &out, &kept).expect("passes");
        assert_eq!(ok.as_primitive::<Int64Type>().values(), &[7, 9]);
        let s = field("s", ColumnType::Utf8, false);
        let ok = passed_through(&input, &reads, &at, 1, &s, &kept).expect("passes");
        assert_eq!(ok.as_string::<i32>().value(1), "c");
    }
}
