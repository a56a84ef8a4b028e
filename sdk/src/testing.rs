//! A native test harness: run a UDF's functions with `cargo test`, without Wasm.
//!
//! The harness encodes typed rows into the same columnar batches the host sends,
//! calls the same per-batch drivers a component runs, and decodes the output, so
//! a test exercises everything but the Wasm boundary itself.
//!
//! Row types that borrow (`struct Bid<'a> { channel: &'a str }`) are used with
//! `'static` data here: the harness keeps (leaks) the batches it builds so that
//! the rows it hands back can borrow from them. It is for tests only.
//!
//! ```
//! use weir_sdk::{Row, testing::Harness};
//!
//! #[derive(Row, Clone, Debug, PartialEq)]
//! struct Word { text: String }
//!
//! fn shout(w: Word) -> Word { Word { text: w.text.to_uppercase() } }
//!
//! let out = Harness::new().map(shout, vec![Word { text: "hi".into() }]).unwrap();
//! assert_eq!(out, vec![Word { text: "HI".into() }]);
//! ```

use std::collections::BTreeMap;

use serde::{Serialize, de::DeserializeOwned};

use crate::params::{self, Params};
use crate::row::{decode_rows, encode_rows};
use crate::run;
use crate::state::{Key, StateStore};
use crate::wit::weir::udf::keys::KeyGroups;
use crate::wit::weir::udf::types::{
    Batch, Column, Output, OutputColumn, ParamValue, UdfError, Values, VarWidth,
};
use crate::{ReadRow, ReadValue, Row};

/// Runs UDF functions natively over typed rows, with parameters and keyed state.
#[derive(Debug, Default)]
pub struct Harness {
    params: Params,
    state: BTreeMap<(Vec<u8>, String), Vec<u8>>,
}

/// A batch of `rows`, kept for the rest of the test so that rows may borrow from it.
fn batch_of<I: Row>(rows: Vec<I>) -> &'static Batch {
    let (count, columns) = encode_rows(rows);
    Box::leak(Box::new(Batch {
        rows: count as u32,
        start: (0..count as i64).collect(),
        end: (1..=count as i64).collect(),
        columns,
    }))
}

/// Decodes the output rows of `input` from columns kept for the rest of the
/// test, assembled as the host does: a column passed through is the input
/// column taken at each output row's parent.
fn decode_kept<O: ReadRow<'static>>(input: &Batch, output: Output) -> Result<Vec<O>, UdfError> {
    let rows = output.parents.len();
    let columns: Vec<Column> = output
        .columns
        .into_iter()
        .map(|column| match column {
            OutputColumn::Written(column) => column,
            OutputColumn::Input(i) => take(&input.columns[i as usize], &output.parents),
        })
        .collect();
    decode_rows(Box::leak(columns.into_boxed_slice()), rows)
}

/// Rows `rows` of `column`, in that order.
fn take(column: &Column, rows: &[u32]) -> Column {
    let pick = |r: &u32| *r as usize;
    let values = match &column.values {
        Values::Int64(v) => Values::Int64(rows.iter().map(|r| v[pick(r)]).collect()),
        Values::Float64(v) => Values::Float64(rows.iter().map(|r| v[pick(r)]).collect()),
        Values::Boolean(v) => Values::Boolean(rows.iter().map(|r| v[pick(r)]).collect()),
        Values::Utf8(v) => {
            let mut out = VarWidth {
                offsets: vec![0],
                data: Vec::new(),
            };
            for r in rows {
                let (a, b) = (v.offsets[pick(r)], v.offsets[pick(r) + 1]);
                out.data.extend_from_slice(&v.data[a as usize..b as usize]);
                out.offsets.push(out.data.len() as u32);
            }
            Values::Utf8(out)
        }
    };
    let validity = column.validity.as_ref().map(|bits| {
        let mut out = vec![0u8; rows.len().div_ceil(8)];
        for (k, r) in rows.iter().enumerate() {
            if bits[pick(r) / 8] & (1 << (pick(r) % 8)) != 0 {
                out[k / 8] |= 1 << (k % 8);
            }
        }
        out
    });
    Column { values, validity }
}

impl Harness {
    /// A harness with no parameters and empty state.
    pub fn new() -> Self {
        Harness::default()
    }

    /// Sets a stage parameter, as `[stages.params]` in a job file would.
    pub fn param(mut self, name: &str, value: impl Into<ParamValue>) -> Self {
        self.params.set(name, value.into());
        params::install(self.params.clone());
        self
    }

    /// Runs an `init` hook with the harness's parameters.
    pub fn init(&self, hook: run::InitHook) -> Result<(), String> {
        hook(&self.params)
    }

    /// Runs a filter; returns the rows that survive.
    pub fn filter<I: ReadRow<'static>>(
        &self,
        f: impl Fn(I) -> bool,
        rows: Vec<I>,
    ) -> Result<Vec<I>, UdfError> {
        let batch = batch_of(rows);
        let all: Vec<I> = decode_rows(&batch.columns, batch.rows as usize)?;
        let out = run::filter(f, batch)?;
        let mut all: Vec<Option<I>> = all.into_iter().map(Some).collect();
        Ok(out
            .parents
            .iter()
            .filter_map(|&p| all[p as usize].take())
            .collect())
    }

    /// Runs a map.
    pub fn map<I: ReadRow<'static>, O: ReadRow<'static>>(
        &self,
        f: impl Fn(I) -> O,
        rows: Vec<I>,
    ) -> Result<Vec<O>, UdfError> {
        let batch = batch_of(rows);
        decode_kept(batch, run::map(f, batch)?)
    }

    /// Runs a flat-map.
    pub fn flat_map<I: ReadRow<'static>, O: ReadRow<'static>, R: IntoIterator<Item = O>>(
        &self,
        f: impl Fn(I) -> R,
        rows: Vec<I>,
    ) -> Result<Vec<O>, UdfError> {
        let batch = batch_of(rows);
        decode_kept(batch, run::flat_map(f, batch)?)
    }

    /// Runs a reducer keyed by the column `key_column` of `I`. State persists in
    /// the harness across calls, as it does in the host across batches.
    pub fn reduce<I, S, O, R>(
        &mut self,
        key_column: &str,
        f: impl Fn(&Key<'_>, I, &mut S) -> R,
        rows: Vec<I>,
    ) -> Result<Vec<O>, UdfError>
    where
        I: ReadRow<'static>,
        S: Serialize + DeserializeOwned + Default,
        O: ReadRow<'static>,
        R: IntoIterator<Item = O>,
    {
        let batch = batch_of(rows);
        let column = I::NAMES
            .iter()
            .position(|n| *n == key_column)
            .map(|i| &batch.columns[i])
            .ok_or_else(|| {
                UdfError::new(format!("no key column `{key_column}` in the row type"))
            })?;
        let row_keys: Vec<Vec<u8>> = (0..batch.rows as usize)
            .map(|i| match &column.values {
                Values::Int64(v) => v[i].to_le_bytes().to_vec(),
                Values::Utf8(v) => {
                    v.data[v.offsets[i] as usize..v.offsets[i + 1] as usize].to_vec()
                }
                Values::Float64(v) => v[i].to_le_bytes().to_vec(),
                Values::Boolean(v) => vec![v[i]],
            })
            .collect();
        let mut distinct: Vec<Vec<u8>> = Vec::new();
        let groups = row_keys
            .iter()
            .map(|k| match distinct.iter().position(|d| d == k) {
                Some(p) => p as u32,
                None => {
                    distinct.push(k.clone());
                    (distinct.len() - 1) as u32
                }
            })
            .collect();
        let mut keys = VarWidth {
            offsets: vec![0],
            data: Vec::new(),
        };
        for k in &distinct {
            keys.data.extend_from_slice(k);
            keys.offsets.push(keys.data.len() as u32);
        }
        let mut store = MapState {
            keys: &distinct,
            map: &mut self.state,
        };
        let out = run::reduce(f, batch, &KeyGroups { keys, groups }, &mut store)?;
        decode_kept(batch, out)
    }

    /// Runs a scalar function.
    pub fn scalar<A: ReadRow<'static>, R: ReadValue<'static>>(
        &self,
        f: impl Fn(A) -> R,
        rows: Vec<A>,
    ) -> Result<Vec<R>, UdfError> {
        let count = rows.len();
        let column: &'static crate::Column = Box::leak(Box::new(run::scalar(f, batch_of(rows))?));
        let reader = R::reader("result", column, count)?;
        // SAFETY: `i < count`, the row count the reader was checked for.
        Ok((0..count).map(|i| unsafe { R::read(&reader, i) }).collect())
    }
}

struct MapState<'a> {
    keys: &'a [Vec<u8>],
    map: &'a mut BTreeMap<(Vec<u8>, String), Vec<u8>>,
}

impl StateStore for MapState<'_> {
    fn get(&mut self, group: u32, name: &str) -> Option<Vec<u8>> {
        let key = self.keys.get(group as usize)?;
        self.map.get(&(key.clone(), name.to_string())).cloned()
    }
    fn put(&mut self, group: u32, name: &str, value: &[u8]) {
        if let Some(key) = self.keys.get(group as usize) {
            self.map
                .insert((key.clone(), name.to_string()), value.to_vec());
        }
    }
    fn delete(&mut self, group: u32, name: &str) {
        if let Some(key) = self.keys.get(group as usize) {
            self.map.remove(&(key.clone(), name.to_string()));
        }
    }
}
