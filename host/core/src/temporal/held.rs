//! Rows an operator holds until a CTI makes them final, as keyed state
//! under one key (top-N, session windows).

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::SchemaRef;

use crate::entry::Entry;
use crate::udf::KeyedState;

/// Held rows, in batches as they came.
#[derive(Debug)]
pub(super) struct Held {
    schema: SchemaRef,
    key: &'static [u8],
    batches: Vec<RecordBatch>,
    moved: bool,
}

impl Held {
    /// No rows of `schema`, kept under state key `key`.
    pub(super) fn new(schema: SchemaRef, key: &'static [u8]) -> Held {
        Held {
            schema,
            key,
            batches: Vec::new(),
            moved: false,
        }
    }

    /// Holds `batch` too.
    pub(super) fn push(&mut self, batch: &RecordBatch) {
        if batch.num_rows() > 0 {
            self.batches.push(batch.clone());
            self.moved = true;
        }
    }

    /// Takes every held row, as one batch (none when none are held).
    pub(super) fn take(&mut self) -> Result<Option<RecordBatch>, String> {
        if self.batches.is_empty() {
            return Ok(None);
        }
        let all = arrow_select::concat::concat_batches(&self.schema, &self.batches)
            .map_err(|e| format!("held rows: {e}"))?;
        self.batches.clear();
        self.moved = true;
        Ok(Some(all))
    }

    /// The earliest start held.
    pub(super) fn first_start(&self) -> Option<i64> {
        self.batches
            .iter()
            .filter_map(|b| arrow_arith::aggregate::min(b.column(0).as_primitive::<Int64Type>()))
            .min()
    }

    /// The state change since the last call: the held rows, or their key's
    /// deletion.
    pub(super) fn delta(&mut self) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        if !std::mem::take(&mut self.moved) {
            return None;
        }
        let all = arrow_select::concat::concat_batches(&self.schema, &self.batches)
            .expect("held batches share their operator's schema");
        let value = (all.num_rows() > 0).then(|| {
            let bytes = Entry::Batch {
                producer: String::new(),
                batch: all,
            }
            .encode()
            .expect("a held batch encodes: it is a batch of a stream");
            let mut names = BTreeMap::new();
            names.insert("batch".to_string(), bytes);
            crate::udf::encode_entry(&names)
        });
        Some((self.key.to_vec(), value))
    }

    /// The rows `state` holds under this key.
    pub(super) fn restore(&mut self, state: &KeyedState) -> Result<(), String> {
        self.batches.clear();
        self.moved = false;
        if let Some(bytes) = state.get(self.key).and_then(|names| names.get("batch")) {
            match Entry::decode(bytes).map_err(|e| format!("held rows: {e}"))? {
                Entry::Batch { batch, .. } => self.batches.push(batch),
                Entry::Cti(_) => return Err("held rows: a CTI where rows were kept".into()),
            }
        }
        Ok(())
    }
}
