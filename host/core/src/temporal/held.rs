//! Rows an operator holds until a CTI makes them final, as keyed state
//! under one key, and the last CTI it saw (top-N, session windows).

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::SchemaRef;

use crate::entry::Entry;
use crate::udf::{KeyedState, StateChanges};

/// Held rows, in batches as they came.
#[derive(Debug)]
pub(super) struct Held {
    schema: SchemaRef,
    key: &'static [u8],
    batches: Vec<RecordBatch>,
    moved: bool,
    cti: Option<i64>,
    cti_moved: bool,
}

impl Held {
    /// No rows of `schema`, kept under state key `key`.
    pub(super) fn new(schema: SchemaRef, key: &'static [u8]) -> Held {
        Held {
            schema,
            key,
            batches: Vec::new(),
            moved: false,
            cti: None,
            cti_moved: false,
        }
    }

    /// CTI `t` reached the operator.
    pub(super) fn cti(&mut self, t: i64) {
        if self.cti.is_none_or(|c| t > c) {
            self.cti = Some(t);
            self.cti_moved = true;
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

    /// The state changes since the last call: the last CTI, and the held
    /// rows or their key's deletion.
    pub(super) fn delta(&mut self) -> StateChanges {
        let mut out = Vec::new();
        if std::mem::take(&mut self.cti_moved)
            && let Some(t) = self.cti
        {
            out.push(super::cti_change(t));
        }
        if !std::mem::take(&mut self.moved) {
            return out;
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
        out.push((self.key.to_vec(), value));
        out
    }

    /// The rows `state` holds under this key, and its CTI.
    pub(super) fn restore(&mut self, state: &KeyedState) -> Result<(), String> {
        self.batches.clear();
        self.moved = false;
        self.cti = super::cti_of(state);
        self.cti_moved = false;
        if let Some(bytes) = state.get(self.key).and_then(|names| names.get("batch")) {
            match Entry::decode(bytes).map_err(|e| format!("held rows: {e}"))? {
                Entry::Batch { batch, .. } => self.batches.push(batch),
                Entry::Cti(_) => return Err("held rows: a CTI where rows were kept".into()),
            }
        }
        Ok(())
    }
}
