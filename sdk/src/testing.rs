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

use std::collections::{BTreeMap, BTreeSet};

use serde::{Serialize, de::DeserializeOwned};

use crate::params::{self, Params};
use crate::row::{decode_rows, encode_rows};
use crate::run;
use crate::state::{Key, StateStore};
use crate::time::{Ctx, END, Timed, Timer};
use crate::wit::weir::udf::keys::{Fired, KeyGroups};
use crate::wit::weir::udf::types::{
    Batch, Column, Output, OutputColumn, ParamValue, UdfError, Values, VarWidth,
};
use crate::{ReadRow, ReadValue, Row};

/// Runs UDF functions natively over typed rows, with parameters and keyed state.
///
/// ```
/// use weir_sdk::{Row, testing::Harness};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let out = Harness::new().map(|r: N| N { n: r.n * 2 }, vec![N { n: 21 }]).unwrap();
/// assert_eq!(out, vec![N { n: 42 }]);
/// ```
#[derive(Debug, Default)]
pub struct Harness {
    params: Params,
    state: MemoryState,
}

/// A batch of `rows`, kept for the rest of the test so that rows may borrow
/// from it; row `i` is valid over `[i, i + 1)`.
fn batch_of<I: Row>(rows: Vec<I>) -> &'static Batch {
    let n = rows.len() as i64;
    batch_with(rows, (0..n).collect(), (1..=n).collect())
}

/// A batch of `rows` valid over the intervals `start`..`end`, kept for the
/// rest of the test.
fn batch_with<I: Row>(rows: Vec<I>, start: Vec<i64>, end: Vec<i64>) -> &'static Batch {
    let (count, columns) = encode_rows(rows);
    Box::leak(Box::new(Batch {
        rows: count as u32,
        start,
        end,
        columns,
    }))
}

/// One input of a timed reducer's test ([`Harness::timed_reduce`]): a row
/// valid over `[start, end)`, or a CTI.
///
/// ```
/// use weir_sdk::testing::Input;
/// let inputs = vec![Input::row(1, 2, "a"), Input::cti(5), Input::row(6, 7, "b"), Input::end()];
/// assert_eq!(inputs.len(), 4);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Input<I> {
    /// A row and its interval.
    Row {
        /// Start (inclusive).
        start: i64,
        /// End (exclusive).
        end: i64,
        /// The row.
        row: I,
    },
    /// A CTI: no later row starts before it. [`END`] ends the input.
    Cti(i64),
}

impl<I> Input<I> {
    /// A row valid over `[start, end)`.
    ///
    /// ```
    /// use weir_sdk::testing::Input;
    /// assert_eq!(Input::row(1, 2, "r"), Input::Row { start: 1, end: 2, row: "r" });
    /// ```
    pub fn row(start: i64, end: i64, row: I) -> Self {
        Input::Row { start, end, row }
    }

    /// A CTI at `t`.
    ///
    /// ```
    /// use weir_sdk::testing::Input;
    /// assert_eq!(Input::<()>::cti(10), Input::Cti(10));
    /// ```
    pub fn cti(t: i64) -> Self {
        Input::Cti(t)
    }

    /// The end of the input: the CTI at [`END`], which fires every timer.
    ///
    /// ```
    /// use weir_sdk::testing::Input;
    /// assert_eq!(Input::<()>::end(), Input::Cti(weir_sdk::time::END));
    /// ```
    pub fn end() -> Self {
        Input::Cti(END)
    }
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
    ///
    /// ```
    /// let h = weir_sdk::testing::Harness::new();
    /// # let _ = h;
    /// ```
    pub fn new() -> Self {
        Harness::default()
    }

    /// Sets a stage parameter, as `params = { ... }` in a job file would;
    /// [`crate::params()`] reads it.
    ///
    /// ```
    /// use weir_sdk::testing::Harness;
    /// let _h = Harness::new().param("max_clicks", 8i64).param("rate", 0.92).param("region", "eu");
    /// assert_eq!(weir_sdk::params().int("max_clicks"), Some(8));
    /// ```
    pub fn param(mut self, name: &str, value: impl Into<ParamValue>) -> Self {
        self.params.set(name, value.into());
        params::install(self.params.clone());
        self
    }

    /// Runs an `init` hook with the harness's parameters.
    ///
    /// ```
    /// fn check(p: &weir_sdk::Params) -> Result<(), String> {
    ///     match p.int("max_clicks") {
    ///         Some(n) if n < 1 => Err(format!("max_clicks must be at least 1, got {n}")),
    ///         _ => Ok(()),
    ///     }
    /// }
    /// let h = weir_sdk::testing::Harness::new().param("max_clicks", 0i64);
    /// assert_eq!(h.init(check), Err("max_clicks must be at least 1, got 0".to_string()));
    /// ```
    pub fn init(&self, hook: run::InitHook) -> Result<(), String> {
        hook(&self.params)
    }

    /// Runs a filter; returns the rows that survive.
    ///
    /// ```
    /// use weir_sdk::{Row, testing::Harness};
    /// #[derive(Row, Clone, Debug, PartialEq)]
    /// pub struct Word { pub text: String }
    /// let kept = Harness::new()
    ///     .filter(|w: Word| !w.text.is_empty(), vec![Word { text: "hi".into() }, Word { text: "".into() }])
    ///     .unwrap();
    /// assert_eq!(kept, vec![Word { text: "hi".into() }]);
    /// ```
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

    /// Runs a map: one output row per input row.
    ///
    /// ```
    /// use weir_sdk::{Row, testing::Harness};
    /// #[derive(Row, Clone, Debug, PartialEq)]
    /// pub struct Word { pub text: String }
    /// let out = Harness::new()
    ///     .map(|w: Word| Word { text: w.text.to_uppercase() }, vec![Word { text: "hi".into() }])
    ///     .unwrap();
    /// assert_eq!(out, vec![Word { text: "HI".into() }]);
    /// ```
    pub fn map<I: ReadRow<'static>, O: ReadRow<'static>>(
        &self,
        f: impl Fn(I) -> O,
        rows: Vec<I>,
    ) -> Result<Vec<O>, UdfError> {
        let batch = batch_of(rows);
        decode_kept(batch, run::map(f, batch)?)
    }

    /// Runs a flat-map: any number of output rows per input row.
    ///
    /// ```
    /// use weir_sdk::{Row, testing::Harness};
    /// #[derive(Row, Clone, Debug, PartialEq)]
    /// pub struct Word { pub text: String }
    /// let split = |w: Word| -> Vec<Word> {
    ///     w.text.split(' ').map(|t| Word { text: t.into() }).collect()
    /// };
    /// let out = Harness::new().flat_map(split, vec![Word { text: "a b".into() }]).unwrap();
    /// assert_eq!(out, vec![Word { text: "a".into() }, Word { text: "b".into() }]);
    /// ```
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
    ///
    /// ```
    /// use weir_sdk::{Key, Row, testing::Harness};
    /// #[derive(Row, Debug, PartialEq)]
    /// pub struct Click { pub user: String }
    /// #[derive(Row, Debug, PartialEq)]
    /// pub struct Total { pub user: String, pub clicks: i64 }
    /// fn count(_: &Key<'_>, c: Click, n: &mut i64) -> Option<Total> {
    ///     *n += 1;
    ///     Some(Total { user: c.user, clicks: *n })
    /// }
    /// let mut h = Harness::new();
    /// h.reduce("user", count, vec![Click { user: "ann".into() }]).unwrap();
    /// let out = h.reduce("user", count, vec![Click { user: "ann".into() }]).unwrap();
    /// assert_eq!(out, vec![Total { user: "ann".into(), clicks: 2 }]);
    /// ```
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
        let keys = self.state.key_groups(batch, I::NAMES, key_column)?;
        let out = run::reduce(f, batch, &keys, &mut self.state)?;
        decode_kept(batch, out)
    }

    /// Runs a timed reducer (`export_reducer!(f, on_time = on_time)`) keyed
    /// by the column `key_column` of `I` over `inputs` as the host would:
    /// the rows between two CTIs as one batch, then at each CTI the timers
    /// at or before it. Returns every row emitted with its interval (a row
    /// `f` emits has its input row's). State and timers persist in the
    /// harness across calls. A row `on_time` emits must start at or after
    /// the CTI before the one that fired it, and end after it starts.
    ///
    /// ```
    /// use weir_sdk::time::{Ctx, Timed, Timer};
    /// use weir_sdk::{Key, Row, testing::{Harness, Input}};
    /// #[derive(Row, Debug, PartialEq)]
    /// pub struct Click { pub user: String }
    /// #[derive(Row, Debug, PartialEq)]
    /// pub struct Idle { pub user: String }
    /// // Says a user went idle 100 after their last click.
    /// fn seen(_: &Key<'_>, _c: Click, last: &mut i64, ctx: &mut Ctx<'_>) -> Option<Idle> {
    ///     ctx.cancel_timer(*last + 100);
    ///     *last = ctx.start();
    ///     ctx.set_timer(*last + 100);
    ///     None
    /// }
    /// fn idle(k: &Key<'_>, t: Timer, _: &mut i64, _: &mut Ctx<'_>) -> Option<Timed<Idle>> {
    ///     Some(Timed::point(t.at, Idle { user: k.as_str()?.into() }))
    /// }
    /// let click = |t| Input::row(t, t + 1, Click { user: "ann".into() });
    /// let out = Harness::new()
    ///     .timed_reduce("user", seen, idle, vec![click(1), click(50), Input::cti(120), Input::cti(200)])
    ///     .unwrap();
    /// assert_eq!((out.len(), out[0].start), (1, 150));
    /// ```
    pub fn timed_reduce<I, S, O, R, T>(
        &mut self,
        key_column: &str,
        f: impl Fn(&Key<'_>, I, &mut S, &mut Ctx<'_>) -> R,
        on_time: impl Fn(&Key<'_>, Timer, &mut S, &mut Ctx<'_>) -> T,
        inputs: Vec<Input<I>>,
    ) -> Result<Vec<Timed<O>>, UdfError>
    where
        I: ReadRow<'static>,
        S: Serialize + DeserializeOwned + Default,
        O: ReadRow<'static>,
        R: IntoIterator<Item = O>,
        T: IntoIterator<Item = Timed<O>>,
    {
        let mut out = Vec::new();
        let (mut rows, mut start, mut end) = (Vec::new(), Vec::new(), Vec::new());
        let mut inputs = inputs.into_iter().peekable();
        while let Some(input) = inputs.next() {
            match input {
                Input::Row {
                    start: s,
                    end: e,
                    row,
                } => {
                    rows.push(row);
                    start.push(s);
                    end.push(e);
                }
                Input::Cti(cti) => {
                    if self.state.cti.is_some_and(|last| cti <= last) {
                        continue;
                    }
                    out.extend(self.fire(cti, &on_time)?);
                    self.state.cti = Some(cti);
                    continue;
                }
            }
            if matches!(inputs.peek(), Some(Input::Row { .. })) {
                continue;
            }
            let batch = batch_with(
                std::mem::take(&mut rows),
                std::mem::take(&mut start),
                std::mem::take(&mut end),
            );
            let keys = self.state.key_groups(batch, I::NAMES, key_column)?;
            let output = run::reduce_timed(&f, batch, &keys, &mut self.state)?;
            let parents = output.parents.clone();
            for (row, p) in decode_kept::<O>(batch, output)?.into_iter().zip(parents) {
                out.push(Timed::new(
                    batch.start[p as usize],
                    batch.end[p as usize],
                    row,
                ));
            }
        }
        Ok(out)
    }

    /// Fires the timers at or before `cti` (as the host does: again while
    /// `on_time` sets timers at or before it, a bounded number of times).
    fn fire<S, O, T>(
        &mut self,
        cti: i64,
        on_time: &impl Fn(&Key<'_>, Timer, &mut S, &mut Ctx<'_>) -> T,
    ) -> Result<Vec<Timed<O>>, UdfError>
    where
        S: Serialize + DeserializeOwned + Default,
        O: ReadRow<'static>,
        T: IntoIterator<Item = Timed<O>>,
    {
        let mut out = Vec::new();
        for _ in 0..=64 {
            let fired = self.state.take_due(cti);
            if fired.at.is_empty() {
                return Ok(out);
            }
            let timed = run::on_cti(on_time, cti, &fired, &mut self.state)?;
            let n = timed.start.len();
            let rows: Vec<O> = decode_rows(Box::leak(timed.columns.into_boxed_slice()), n)?;
            for ((row, start), end) in rows.into_iter().zip(timed.start).zip(timed.end) {
                if end <= start {
                    return Err(UdfError::new(format!(
                        "on_time emitted a row over the empty interval [{start}, {end}) at CTI {cti}"
                    )));
                }
                if let Some(last) = self.state.last_cti()
                    && start < last
                {
                    return Err(UdfError::new(format!(
                        "on_time emitted a row starting at {start} at CTI {cti}, before CTI {last} that had already passed: the host refuses it"
                    )));
                }
                out.push(Timed::new(start, end, row));
            }
        }
        Err(UdfError::new(format!(
            "on_time keeps setting timers at or before CTI {cti}: the host gives up on it"
        )))
    }

    /// Runs a scalar function: one value per row.
    ///
    /// ```
    /// use weir_sdk::{Row, testing::Harness};
    /// #[derive(Row)]
    /// pub struct Args { pub price: f64, pub qty: i64 }
    /// let out = Harness::new()
    ///     .scalar(|a: Args| a.price * a.qty as f64, vec![Args { price: 2.5, qty: 4 }])
    ///     .unwrap();
    /// assert_eq!(out, vec![10.0]);
    /// ```
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

    /// Runs a user-defined aggregate over `groups` (each the argument rows of
    /// one group) the way the host may: each group's rows go to two
    /// accumulators (first half, second half) in one `accumulate` call, the
    /// accumulators cross as bytes, `merge` joins the halves, and `finish`
    /// gives one result per group. A group without rows gives the result of
    /// a fresh accumulator.
    ///
    /// ```
    /// use weir_sdk::{Row, testing::Harness};
    /// #[derive(Row)]
    /// pub struct N { pub n: i64 }
    /// let add = |s: &mut i64, r: N| *s += r.n;
    /// let merge = |a: &mut i64, b: i64| *a += b;
    /// let out = Harness::new()
    ///     .aggregate(add, merge, |s: &i64| *s, vec![vec![N { n: 1 }, N { n: 2 }], vec![]])
    ///     .unwrap();
    /// assert_eq!(out, vec![3, 0]);
    /// ```
    pub fn aggregate<S, A, R>(
        &self,
        add: impl Fn(&mut S, A),
        merge: impl Fn(&mut S, S),
        finish: impl Fn(&S) -> R,
        groups: Vec<Vec<A>>,
    ) -> Result<Vec<R>, UdfError>
    where
        S: Serialize + DeserializeOwned + Default,
        A: ReadRow<'static>,
        R: ReadValue<'static> + crate::Value,
    {
        let mut rows = Vec::new();
        let mut slots = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            let half = group.len() / 2;
            slots.extend((0..group.len()).map(|i| (2 * g + usize::from(i >= half)) as u32));
        }
        let count = groups.len();
        rows.extend(groups.into_iter().flatten());
        let args = batch_of(rows);
        let accs = crate::aggregate::accumulate(add, vec![Vec::new(); 2 * count], args, &slots)?;
        let (firsts, seconds): (Vec<_>, Vec<_>) = accs
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .unzip();
        let merged = crate::aggregate::merge(merge, firsts, seconds)?;
        let column: &'static crate::Column =
            Box::leak(Box::new(crate::aggregate::finish(finish, merged)?));
        let reader = R::reader("result", column, count)?;
        // SAFETY: `i < count`, the row count the reader was checked for.
        Ok((0..count).map(|i| unsafe { R::read(&reader, i) }).collect())
    }
}

/// Keyed state and timers in memory: what [`Harness`] keeps between calls,
/// and a [`StateStore`] to try a [`Ctx`] with.
///
/// ```
/// use weir_sdk::StateStore;
/// let mut state = weir_sdk::testing::MemoryState::default();
/// // No key group in a call yet: nothing is kept.
/// state.put(0, "state", b"x");
/// assert_eq!(state.get(0, "state"), None);
/// ```
#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    /// The key of each group of the current call.
    keys: Vec<Vec<u8>>,
    values: BTreeMap<(Vec<u8>, String), Vec<u8>>,
    timers: BTreeSet<(i64, Vec<u8>)>,
    /// The last CTI passed.
    cti: Option<i64>,
}

impl MemoryState {
    /// The key groups of `batch` by its column `key_column` (of `names`),
    /// which become the current call's groups.
    fn key_groups(
        &mut self,
        batch: &Batch,
        names: &[&str],
        key_column: &str,
    ) -> Result<KeyGroups, UdfError> {
        let column = names
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
        self.keys = distinct;
        Ok(KeyGroups { keys, groups })
    }

    /// Takes the timers at or before `cti` out, by time then key, and makes
    /// their keys the current call's groups.
    fn take_due(&mut self, cti: i64) -> Fired {
        let due: Vec<(i64, Vec<u8>)> = self
            .timers
            .iter()
            .take_while(|(at, _)| *at <= cti)
            .cloned()
            .collect();
        let mut fired = Fired {
            keys: KeyGroups {
                keys: VarWidth {
                    offsets: vec![0],
                    data: Vec::new(),
                },
                groups: Vec::new(),
            },
            at: Vec::new(),
        };
        self.keys.clear();
        for (at, key) in due {
            self.timers.remove(&(at, key.clone()));
            let g = match self.keys.iter().position(|k| *k == key) {
                Some(g) => g,
                None => {
                    fired.keys.keys.data.extend_from_slice(&key);
                    fired
                        .keys
                        .keys
                        .offsets
                        .push(fired.keys.keys.data.len() as u32);
                    self.keys.push(key);
                    self.keys.len() - 1
                }
            };
            fired.keys.groups.push(g as u32);
            fired.at.push(at);
        }
        fired
    }

    /// The last CTI passed.
    fn last_cti(&self) -> Option<i64> {
        self.cti
    }
}

impl StateStore for MemoryState {
    fn get(&mut self, group: u32, name: &str) -> Option<Vec<u8>> {
        let key = self.keys.get(group as usize)?;
        self.values.get(&(key.clone(), name.to_string())).cloned()
    }
    fn put(&mut self, group: u32, name: &str, value: &[u8]) {
        if let Some(key) = self.keys.get(group as usize) {
            self.values
                .insert((key.clone(), name.to_string()), value.to_vec());
        }
    }
    fn delete(&mut self, group: u32, name: &str) {
        if let Some(key) = self.keys.get(group as usize) {
            self.values.remove(&(key.clone(), name.to_string()));
        }
    }
    fn set_timer(&mut self, group: u32, at: i64) {
        if let Some(key) = self.keys.get(group as usize) {
            self.timers.insert((at, key.clone()));
        }
    }
    fn cancel_timer(&mut self, group: u32, at: i64) {
        if let Some(key) = self.keys.get(group as usize) {
            self.timers.remove(&(at, key.clone()));
        }
    }
}
