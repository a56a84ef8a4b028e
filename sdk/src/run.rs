//! The per-batch drivers behind the export macros. Each turns one batch into the
//! world's output by calling the author's per-row function; they are the same
//! code in a Wasm component and in the native test harness.

use serde::{Serialize, de::DeserializeOwned};

use crate::params::{self, Params};
use crate::row::read_rows;
use crate::state::{Key, StateStore};
use crate::time::{Ctx, Timed, Timer};
use crate::value::push_value;
use crate::wit::weir::udf::keys::{Fired, KeyGroups};
use crate::wit::weir::udf::types::{
    Batch, Column, Output, Param, ScalarSignature, Signature, TimedOutput, UdfError,
};
use crate::{ReadRow, Row, Value, field_of};

/// The optional `init = f` hook of the export macros.
///
/// ```
/// fn check(p: &weir_sdk::Params) -> Result<(), String> {
///     p.text("region").map(|_| ()).ok_or_else(|| "region is required".into())
/// }
/// let hook: weir_sdk::run::InitHook = check;
/// assert!(hook(&weir_sdk::Params::default()).is_err());
/// ```
pub type InitHook = fn(&Params) -> Result<(), String>;

pub(crate) fn check_init(config: Vec<Param>, hook: Option<InitHook>) -> Result<(), UdfError> {
    let params = Params::from(config);
    if let Some(hook) = hook {
        hook(&params).map_err(UdfError::new)?;
    }
    params::install(params);
    Ok(())
}

fn signature<I: Row, O: Row>(
    config: Vec<Param>,
    hook: Option<InitHook>,
    passthrough: bool,
) -> Result<Signature, UdfError> {
    check_init(config, hook)?;
    Ok(Signature {
        reads: I::fields(),
        // Rows do not see their interval; the host keeps it.
        reads_interval: false,
        writes: if passthrough { Vec::new() } else { O::fields() },
        passthrough,
    })
}

/// `init` of a filter: reads `I`, writes nothing, passes rows through.
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// let batch = Batch { rows: rows as u32, start: vec![0, 1], end: vec![1, 2], columns };
/// let sig = weir_sdk::run::init_filter(&|r: N| r.n > 0, vec![], None).unwrap();
/// assert!(sig.passthrough && sig.writes.is_empty());
/// # let _ = batch;
/// ```
pub fn init_filter<I: Row>(
    _f: &impl Fn(I) -> bool,
    config: Vec<Param>,
    hook: Option<InitHook>,
) -> Result<Signature, UdfError> {
    signature::<I, I>(config, hook, true)
}

/// `init` of a map: reads `I`, writes `O`.
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// let batch = Batch { rows: rows as u32, start: vec![0, 1], end: vec![1, 2], columns };
/// let sig = weir_sdk::run::init_map(&|r: N| r, vec![], None).unwrap();
/// assert_eq!(sig.writes[0].name, "n");
/// # let _ = batch;
/// ```
pub fn init_map<I: Row, O: Row>(
    _f: &impl Fn(I) -> O,
    config: Vec<Param>,
    hook: Option<InitHook>,
) -> Result<Signature, UdfError> {
    signature::<I, O>(config, hook, false)
}

/// `init` of a flat-map: reads `I`, writes `O`.
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// let batch = Batch { rows: rows as u32, start: vec![0, 1], end: vec![1, 2], columns };
/// let sig = weir_sdk::run::init_flat_map(&|r: N| Some(r), vec![], None).unwrap();
/// assert_eq!(sig.reads[0].name, "n");
/// # let _ = batch;
/// ```
pub fn init_flat_map<I: Row, O: Row, R: IntoIterator<Item = O>>(
    _f: &impl Fn(I) -> R,
    config: Vec<Param>,
    hook: Option<InitHook>,
) -> Result<Signature, UdfError> {
    signature::<I, O>(config, hook, false)
}

/// `init` of a reducer: reads `I`, writes `O`.
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// let batch = Batch { rows: rows as u32, start: vec![0, 1], end: vec![1, 2], columns };
/// let f = |_: &weir_sdk::Key<'_>, r: N, _: &mut i64| Some(r);
/// let sig = weir_sdk::run::init_reduce(&f, vec![], None).unwrap();
/// assert!(!sig.reads_interval);
/// # let _ = batch;
/// ```
pub fn init_reduce<I: Row, S, O: Row, R: IntoIterator<Item = O>>(
    _f: &impl Fn(&Key<'_>, I, &mut S) -> R,
    config: Vec<Param>,
    hook: Option<InitHook>,
) -> Result<Signature, UdfError> {
    signature::<I, O>(config, hook, false)
}

/// `init` of a scalar function of arguments `A` returning `R`.
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// let batch = Batch { rows: rows as u32, start: vec![0, 1], end: vec![1, 2], columns };
/// let sig = weir_sdk::run::init_scalar(&|r: N| r.n * 2, vec![], None).unwrap();
/// assert_eq!(sig.returns.name, "result");
/// # let _ = batch;
/// ```
pub fn init_scalar<A: Row, R: Value>(
    _f: &impl Fn(A) -> R,
    config: Vec<Param>,
    hook: Option<InitHook>,
) -> Result<ScalarSignature, UdfError> {
    scalar_signature::<A, R>(config, hook)
}

/// Runs `init` and gives the signature of a function of arguments `A` with
/// result `R` (a scalar function's or an aggregate's).
pub(crate) fn scalar_signature<A: Row, R: Value>(
    config: Vec<Param>,
    hook: Option<InitHook>,
) -> Result<ScalarSignature, UdfError> {
    check_init(config, hook)?;
    Ok(ScalarSignature {
        args: A::fields(),
        returns: field_of::<R>("result"),
    })
}

/// A filter: `f` says which rows survive; the host keeps all their columns.
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// let batch = Batch { rows: rows as u32, start: vec![0, 1], end: vec![1, 2], columns };
/// let out = weir_sdk::run::filter(|r: N| r.n > 1, &batch).unwrap();
/// assert_eq!(out.parents, vec![1]);
/// ```
pub fn filter<'a, I: ReadRow<'a>>(
    f: impl Fn(I) -> bool,
    input: &'a Batch,
) -> Result<Output, UdfError> {
    let rows = input.rows as usize;
    let mut parents = Vec::with_capacity(rows);
    for (i, row) in read_rows::<I>(&input.columns, rows)?.enumerate() {
        if f(row) {
            push_value(&mut parents, i as u32);
        }
    }
    Ok(Output {
        parents,
        columns: Vec::new(),
    })
}

/// A map: one output row per input row.
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// let batch = Batch { rows: rows as u32, start: vec![0, 1], end: vec![1, 2], columns };
/// let out = weir_sdk::run::map(|r: N| N { n: r.n * 10 }, &batch).unwrap();
/// assert_eq!(out.parents, vec![0, 1]);
/// ```
pub fn map<'a, I: ReadRow<'a>, O: Row>(
    f: impl Fn(I) -> O,
    input: &'a Batch,
) -> Result<Output, UdfError> {
    let rows = input.rows as usize;
    let mut output = O::output(&input.columns, I::NAMES, rows, rows);
    let parents: Vec<u32> = (0..input.rows).collect();
    for (i, row) in read_rows::<I>(&input.columns, rows)?.enumerate() {
        // SAFETY: `i` and `parents[..i]` are rows of the batch, the parents
        // of this row and of the rows before it.
        unsafe { f(row).push_output(&mut output, i as u32, &parents[..i]) };
    }
    Ok(Output {
        parents,
        columns: O::finish_output(output),
    })
}

/// A flat-map: zero or more output rows per input row (`Option`, `Vec`, any iterator).
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// let batch = Batch { rows: rows as u32, start: vec![0, 1], end: vec![1, 2], columns };
/// let out = weir_sdk::run::flat_map(|r: N| (0..r.n).map(|n| N { n }), &batch).unwrap();
/// assert_eq!(out.parents, vec![0, 1, 1]);
/// ```
pub fn flat_map<'a, I: ReadRow<'a>, O: Row, R: IntoIterator<Item = O>>(
    f: impl Fn(I) -> R,
    input: &'a Batch,
) -> Result<Output, UdfError> {
    let rows = input.rows as usize;
    let mut output = O::output(&input.columns, I::NAMES, rows, rows);
    let mut parents = Vec::with_capacity(rows);
    for (i, row) in read_rows::<I>(&input.columns, rows)?.enumerate() {
        for out in f(row) {
            // SAFETY: `i` and `parents` are rows of the batch, the parents
            // of this row and of the rows before it.
            unsafe { out.push_output(&mut output, i as u32, &parents) };
            push_value(&mut parents, i as u32);
        }
    }
    Ok(Output {
        parents,
        columns: O::finish_output(output),
    })
}

/// The state of every key group touched by one reducer call, loaded lazily and
/// written back once at the end, so state crosses the boundary once per key and
/// batch, not once per row.
struct GroupStates<S> {
    slots: Vec<Option<S>>,
    /// Whether the last row of each group dropped its state.
    cleared: Vec<bool>,
}

const STATE_NAME: &str = "state";

/// A keyed reducer: rows in input order, each with its key and its key's
/// state. `weir_sdk::testing::Harness::reduce` calls it with the keys of a
/// column.
///
/// ```
/// use weir_sdk::{Key, Row, testing::Harness};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub k: i64, pub n: i64 }
/// let sum = |_: &Key<'_>, r: N, s: &mut i64| { *s += r.n; Some(N { k: r.k, n: *s }) };
/// let out = Harness::new().reduce("k", sum, vec![N { k: 1, n: 2 }, N { k: 1, n: 3 }]).unwrap();
/// assert_eq!(out[1].n, 5);
/// ```
pub fn reduce<'a, I, S, O, R>(
    f: impl Fn(&Key<'_>, I, &mut S) -> R,
    input: &'a Batch,
    keys: &KeyGroups,
    store: &mut dyn StateStore,
) -> Result<Output, UdfError>
where
    I: ReadRow<'a>,
    S: Serialize + DeserializeOwned + Default,
    O: Row,
    R: IntoIterator<Item = O>,
{
    reduce_timed(
        |k, row, s, _: &mut Ctx<'_>| f(k, row, s),
        input,
        keys,
        store,
    )
}

/// `init` of a timed reducer: it reads the rows' intervals.
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// let batch = Batch { rows: rows as u32, start: vec![0, 1], end: vec![1, 2], columns };
/// use weir_sdk::time::Ctx;
/// let f = |_: &weir_sdk::Key<'_>, r: N, _: &mut i64, _: &mut Ctx<'_>| Some(r);
/// let sig = weir_sdk::run::init_timed_reduce(&f, vec![], None).unwrap();
/// assert!(sig.reads_interval);
/// # let _ = batch;
/// ```
pub fn init_timed_reduce<I: Row, S, O: Row, R: IntoIterator<Item = O>>(
    _f: &impl Fn(&Key<'_>, I, &mut S, &mut Ctx<'_>) -> R,
    config: Vec<Param>,
    hook: Option<InitHook>,
) -> Result<Signature, UdfError> {
    let mut signature = signature::<I, O>(config, hook, false)?;
    signature.reads_interval = true;
    Ok(signature)
}

/// A timed reducer: as [`reduce`], each row also with a [`Ctx`] (its
/// interval, its key's timers). `Harness::timed_reduce` calls it between
/// CTIs.
///
/// ```
/// use weir_sdk::time::{Ctx, Timed, Timer};
/// use weir_sdk::{Key, Row, testing::{Harness, Input}};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub k: i64 }
/// let f = |_: &Key<'_>, r: N, _: &mut (), ctx: &mut Ctx<'_>| Some(N { k: r.k + ctx.start() });
/// let g = |_: &Key<'_>, _: Timer, _: &mut (), _: &mut Ctx<'_>| None::<Timed<N>>;
/// let out = Harness::new().timed_reduce("k", f, g, vec![Input::row(10, 11, N { k: 1 })]).unwrap();
/// assert_eq!(out[0].row, N { k: 11 });
/// ```
pub fn reduce_timed<'a, I, S, O, R>(
    f: impl Fn(&Key<'_>, I, &mut S, &mut Ctx<'_>) -> R,
    input: &'a Batch,
    keys: &KeyGroups,
    store: &mut dyn StateStore,
) -> Result<Output, UdfError>
where
    I: ReadRow<'a>,
    S: Serialize + DeserializeOwned + Default,
    O: Row,
    R: IntoIterator<Item = O>,
{
    let rows = input.rows as usize;
    let input_rows = read_rows::<I>(&input.columns, rows)?;
    let key_count = keys.keys.offsets.len().saturating_sub(1);
    if keys.groups.len() != rows {
        return Err(UdfError::new(format!(
            "key groups cover {} rows but the batch has {rows}",
            keys.groups.len()
        )));
    }
    let mut states = GroupStates::<S>::new(key_count);
    let mut output = O::output(&input.columns, I::NAMES, rows, rows);
    let mut parents = Vec::with_capacity(rows);
    // Same length: checked above.
    for ((i, &group), row) in keys.groups.iter().enumerate().zip(input_rows) {
        let g = group as usize;
        let key_bytes = keys
            .keys
            .offsets
            .get(g..g + 2)
            .and_then(|w| keys.keys.data.get(w[0] as usize..w[1] as usize))
            .ok_or_else(|| UdfError {
                message: format!("row {i} names key group {g} of {key_count}"),
                row: Some(i as u32),
            })?;
        let state = states.load(group, store, Some(i as u32))?;
        let (start, end) = (
            input.start.get(i).copied().unwrap_or_default(),
            input.end.get(i).copied().unwrap_or_default(),
        );
        let mut ctx = Ctx::new(group, start, end, store);
        for out in f(&Key::new(key_bytes), row, state, &mut ctx) {
            // SAFETY: `i` and `parents` are rows of the batch, the parents
            // of this row and of the rows before it.
            unsafe { out.push_output(&mut output, i as u32, &parents) };
            push_value(&mut parents, i as u32);
        }
        states.cleared[g] = ctx.cleared();
    }
    states.store(store)?;
    Ok(Output {
        parents,
        columns: O::finish_output(output),
    })
}

/// A timed reducer's `on-cti`: `f` called for every timer that fired, in
/// order, with its key's state; the rows it returns with their intervals.
/// `Harness::timed_reduce` calls it at each CTI.
///
/// ```
/// use weir_sdk::time::{Ctx, Timed, Timer};
/// use weir_sdk::{Key, Row, testing::{Harness, Input}};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub k: i64 }
/// let f = |_: &Key<'_>, r: N, _: &mut (), ctx: &mut Ctx<'_>| { ctx.set_timer(20); None::<N> };
/// let g = |k: &Key<'_>, t: Timer, _: &mut (), _: &mut Ctx<'_>| Some(Timed::point(t.at, N { k: k.as_i64()? }));
/// let out = Harness::new()
///     .timed_reduce("k", f, g, vec![Input::row(10, 11, N { k: 7 }), Input::cti(25)])
///     .unwrap();
/// assert_eq!((out[0].start, &out[0].row), (20, &N { k: 7 }));
/// ```
pub fn on_cti<S, O, T>(
    f: impl Fn(&Key<'_>, Timer, &mut S, &mut Ctx<'_>) -> T,
    cti: i64,
    fired: &Fired,
    store: &mut dyn StateStore,
) -> Result<TimedOutput, UdfError>
where
    S: Serialize + DeserializeOwned + Default,
    O: Row,
    T: IntoIterator<Item = Timed<O>>,
{
    let keys = &fired.keys;
    let key_count = keys.keys.offsets.len().saturating_sub(1);
    if keys.groups.len() != fired.at.len() {
        return Err(UdfError::new(format!(
            "{} timers fired but {} have a key",
            fired.at.len(),
            keys.groups.len()
        )));
    }
    let mut states = GroupStates::<S>::new(key_count);
    let mut builder = O::builder(fired.at.len());
    let (mut start, mut end) = (Vec::new(), Vec::new());
    for (&group, &at) in keys.groups.iter().zip(&fired.at) {
        let g = group as usize;
        let key_bytes = keys
            .keys
            .offsets
            .get(g..g + 2)
            .and_then(|w| keys.keys.data.get(w[0] as usize..w[1] as usize))
            .ok_or_else(|| UdfError::new(format!("a timer names key group {g} of {key_count}")))?;
        let state = states.load(group, store, None)?;
        let mut ctx = Ctx::new(group, at, at.saturating_add(1), store);
        for timed in f(&Key::new(key_bytes), Timer { at, cti }, state, &mut ctx) {
            start.push(timed.start);
            end.push(timed.end);
            timed.row.push(&mut builder);
        }
        states.cleared[g] = ctx.cleared();
    }
    states.store(store)?;
    Ok(TimedOutput {
        start,
        end,
        columns: O::finish(builder),
    })
}

impl<S: Serialize + DeserializeOwned + Default> GroupStates<S> {
    fn new(groups: usize) -> Self {
        GroupStates {
            slots: (0..groups).map(|_| None).collect(),
            cleared: vec![false; groups],
        }
    }

    /// Key group `group`'s state, loaded on first use (`row` is the row an
    /// error is about).
    fn load(
        &mut self,
        group: u32,
        store: &mut dyn StateStore,
        row: Option<u32>,
    ) -> Result<&mut S, UdfError> {
        let g = group as usize;
        let slot = &mut self.slots[g];
        if self.cleared[g] {
            // Dropped by an earlier row of this call: the key starts afresh.
            *slot = Some(S::default());
            self.cleared[g] = false;
        }
        if slot.is_none() {
            let loaded = match store.get(group, STATE_NAME) {
                Some(bytes) => postcard::from_bytes(&bytes).map_err(|e| UdfError {
                    message: format!("stored state of this key does not decode: {e}"),
                    row,
                })?,
                None => S::default(),
            };
            *slot = Some(loaded);
        }
        Ok(slot.get_or_insert_with(S::default))
    }

    /// Writes every loaded state back, once per key (or drops it).
    fn store(self, store: &mut dyn StateStore) -> Result<(), UdfError> {
        for (g, (slot, cleared)) in self.slots.into_iter().zip(self.cleared).enumerate() {
            match slot {
                Some(_) if cleared => store.delete(g as u32, STATE_NAME),
                Some(state) => {
                    let bytes = postcard::to_allocvec(&state)
                        .map_err(|e| UdfError::new(format!("state does not encode: {e}")))?;
                    store.put(g as u32, STATE_NAME, &bytes);
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// A state migration: every key group's state, as the previous version left
/// it (`Old`), converted by `f` and written back. An error from `f` (naming
/// what it cannot convert) refuses the switch.
///
/// ```
/// use weir_sdk::{Key, KeyGroups, VarWidth};
/// // Old state: a count; new state: (count, sum). No key has state here.
/// let upgrade = |_: &Key<'_>, count: i64| -> Result<(i64, i64), String> { Ok((count, 0)) };
/// let keys = KeyGroups { keys: VarWidth { offsets: vec![0], data: vec![] }, groups: vec![] };
/// let mut store = weir_sdk::testing::MemoryState::default();
/// weir_sdk::run::migrate(upgrade, &keys, &mut store).unwrap();
/// ```
pub fn migrate<Old, S>(
    f: impl Fn(&Key<'_>, Old) -> Result<S, String>,
    keys: &KeyGroups,
    store: &mut dyn StateStore,
) -> Result<(), UdfError>
where
    Old: DeserializeOwned,
    S: Serialize,
{
    let key_count = keys.keys.offsets.len().saturating_sub(1);
    for g in 0..key_count {
        let key_bytes = keys
            .keys
            .offsets
            .get(g..g + 2)
            .and_then(|w| keys.keys.data.get(w[0] as usize..w[1] as usize))
            .ok_or_else(|| UdfError::new(format!("key group {g} of {key_count} is malformed")))?;
        let key = Key::new(key_bytes);
        let Some(bytes) = store.get(g as u32, STATE_NAME) else {
            continue;
        };
        let old: Old = postcard::from_bytes(&bytes).map_err(|e| {
            UdfError::new(format!(
                "the state of key {} does not decode as the migration's old type: {e}",
                key.as_str()
                    .map_or_else(|| format!("{key_bytes:?}"), |s| format!("`{s}`"))
            ))
        })?;
        let new = f(&key, old).map_err(UdfError::new)?;
        let new = postcard::to_allocvec(&new)
            .map_err(|e| UdfError::new(format!("migrated state does not encode: {e}")))?;
        store.put(g as u32, STATE_NAME, &new);
    }
    Ok(())
}

/// A scalar function: one result per argument row.
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row, Debug, PartialEq)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }]);
/// let batch = Batch { rows: rows as u32, start: vec![0, 1], end: vec![1, 2], columns };
/// let column = weir_sdk::run::scalar(|r: N| r.n + 1, &batch).unwrap();
/// assert_eq!(column.values, weir_sdk::Values::Int64(vec![2, 3]));
/// ```
pub fn scalar<'a, A: ReadRow<'a>, R: Value>(
    f: impl Fn(A) -> R,
    args: &'a Batch,
) -> Result<Column, UdfError> {
    let rows = args.rows as usize;
    let mut builder = R::builder(rows);
    for row in read_rows::<A>(&args.columns, rows)? {
        f(row).push(&mut builder);
    }
    Ok(R::finish(builder))
}
