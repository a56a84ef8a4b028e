//! The drivers behind [`export_aggregate!`](crate::export_aggregate): a
//! user-defined aggregate is three plain functions over an accumulator `S`
//! that the host owns and keeps between calls (with the window's state, so a
//! restart takes it back):
//!
//! - `add: fn(&mut S, A)` adds one row of arguments `A`,
//! - `merge: fn(&mut S, S)` adds another accumulator of the same group,
//! - `finish: fn(&S) -> R` gives the result, a [`Value`].
//!
//! `S` is `Serialize + Deserialize + Default`: a fresh accumulator is
//! `S::default()`, and each crosses the boundary as its postcard bytes. The
//! functions here run a whole call (many accumulators, many rows) inside the
//! component, and the same code in the native test harness.

use serde::{Serialize, de::DeserializeOwned};

use crate::run::{InitHook, scalar_signature};
use crate::wit::weir::udf::types::{Batch, Column, Param, ScalarSignature, UdfError};
use crate::{ReadRow, Row, Value};

/// An accumulator from its bytes: empty is a fresh one.
fn decode<S: DeserializeOwned + Default>(bytes: &[u8], which: usize) -> Result<S, UdfError> {
    if bytes.is_empty() {
        return Ok(S::default());
    }
    postcard::from_bytes(bytes).map_err(|e| {
        UdfError::new(format!(
            "accumulator {which} does not decode as this aggregate's state: {e}"
        ))
    })
}

fn encode<S: Serialize>(state: &S) -> Result<Vec<u8>, UdfError> {
    postcard::to_allocvec(state)
        .map_err(|e| UdfError::new(format!("an accumulator does not encode: {e}")))
}

/// `init` of an aggregate over arguments `A` with result `R`.
///
/// ```
/// use weir_sdk::Row;
/// #[derive(Row)]
/// pub struct Price { pub price: f64 }
/// fn add(s: &mut f64, p: Price) { *s += p.price }
/// fn finish(s: &f64) -> f64 { *s }
/// let sig = weir_sdk::aggregate::init(&add, &finish, vec![], None).unwrap();
/// assert_eq!(sig.args[0].name, "price");
/// assert_eq!(sig.returns.ty, weir_sdk::ColumnType::Float64);
/// ```
pub fn init<S, A: Row, R: Value>(
    _add: &impl Fn(&mut S, A),
    _finish: &impl Fn(&S) -> R,
    config: Vec<Param>,
    hook: Option<InitHook>,
) -> Result<ScalarSignature, UdfError> {
    scalar_signature::<A, R>(config, hook)
}

/// Adds row `i` of `args` to accumulator `groups[i]`; every accumulator
/// back, in order.
///
/// ```
/// use weir_sdk::{Batch, Row, encode_rows};
/// #[derive(Row)]
/// pub struct N { pub n: i64 }
/// let (rows, columns) = encode_rows(vec![N { n: 1 }, N { n: 2 }, N { n: 4 }]);
/// let batch = Batch { rows: rows as u32, start: vec![], end: vec![], columns };
/// let add = |s: &mut i64, r: N| *s += r.n;
/// let accs = weir_sdk::aggregate::accumulate(add, vec![vec![], vec![]], &batch, &[0, 1, 0]).unwrap();
/// let sums = weir_sdk::aggregate::finish(|s: &i64| *s, accs).unwrap();
/// assert_eq!(sums.values, weir_sdk::Values::Int64(vec![5, 2]));
/// ```
pub fn accumulate<'a, S, A>(
    add: impl Fn(&mut S, A),
    accumulators: Vec<Vec<u8>>,
    args: &'a Batch,
    groups: &[u32],
) -> Result<Vec<Vec<u8>>, UdfError>
where
    S: Serialize + DeserializeOwned + Default,
    A: ReadRow<'a>,
{
    let rows = args.rows as usize;
    if groups.len() != rows {
        return Err(UdfError::new(format!(
            "{} group indices for {rows} rows",
            groups.len()
        )));
    }
    let mut states = accumulators
        .iter()
        .enumerate()
        .map(|(i, b)| decode::<S>(b, i))
        .collect::<Result<Vec<S>, _>>()?;
    for (i, row) in crate::row::read_rows::<A>(&args.columns, rows)?.enumerate() {
        let g = groups[i] as usize;
        let Some(state) = states.get_mut(g) else {
            return Err(UdfError {
                message: format!(
                    "row {i} goes to accumulator {g}, but the call has {}",
                    accumulators.len()
                ),
                row: Some(i as u32),
            });
        };
        add(state, row);
    }
    states.iter().map(encode).collect()
}

/// Merges `from[i]` into `into[i]`.
///
/// ```
/// let merge = |a: &mut i64, b: i64| *a += b;
/// let enc = |n: i64| postcard::to_allocvec(&n).unwrap();
/// let out = weir_sdk::aggregate::merge(merge, vec![enc(2), vec![]], vec![enc(3), enc(7)]).unwrap();
/// assert_eq!(out, vec![enc(5), enc(7)]);
/// ```
pub fn merge<S>(
    merge: impl Fn(&mut S, S),
    into: Vec<Vec<u8>>,
    from: Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, UdfError>
where
    S: Serialize + DeserializeOwned + Default,
{
    if into.len() != from.len() {
        return Err(UdfError::new(format!(
            "merge of {} accumulators with {}",
            into.len(),
            from.len()
        )));
    }
    into.iter()
        .zip(&from)
        .enumerate()
        .map(|(i, (a, b))| {
            let mut a = decode::<S>(a, i)?;
            merge(&mut a, decode::<S>(b, i)?);
            encode(&a)
        })
        .collect()
}

/// The result of each accumulator, as one column.
///
/// ```
/// let out = weir_sdk::aggregate::finish(|s: &i64| *s * 2, vec![vec![], postcard::to_allocvec(&4i64).unwrap()]).unwrap();
/// assert_eq!(out.values, weir_sdk::Values::Int64(vec![0, 8]));
/// ```
pub fn finish<S, R>(
    finish: impl Fn(&S) -> R,
    accumulators: Vec<Vec<u8>>,
) -> Result<Column, UdfError>
where
    S: DeserializeOwned + Default,
    R: Value,
{
    let mut builder = R::builder(accumulators.len());
    for (i, bytes) in accumulators.iter().enumerate() {
        finish(&decode::<S>(bytes, i)?).push(&mut builder);
    }
    Ok(R::finish(builder))
}
