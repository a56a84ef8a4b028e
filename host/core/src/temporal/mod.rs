//! The temporal model's operators, as in StreamInsight and StreamScope:
//! events live over `[start, end)`, CTIs make results final, and windows,
//! aggregates and joins work by lifetime.
//!
//! - [`Hopping`] windows `[k·hop, k·hop + size)`: an event belongs to every
//!   window its lifetime overlaps (tumbling windows: hop = size).
//! - [`WindowAggregate`]: per window and group, `COUNT`, `COUNT(DISTINCT)`,
//!   `SUM`, `MIN`, `MAX`, `AVG`, emitted with the window as the lifetime once
//!   a CTI passes the window's end.
//! - [`TemporalJoin`]: inner and left joins of events with equal keys whose
//!   lifetimes overlap, over the intersection; a left event that matched
//!   nothing goes out with its own lifetime once a CTI passes its end.
//! - [`Lifetime`]: a lifetime change on every event (a duration, a shift,
//!   an extension, a point at the start).
//! - [`TopN`]: per lifetime (a window's rows), the first `n` rows by an
//!   order of columns.
//! - [`Partition`]: one partition of a stream by a hash of key columns, the
//!   exchange before a parallel stage.
//!
//! Every operator takes batches and CTIs and returns batches and the CTI to
//! pass on (an operator whose output starts before its input's CTI holds
//! the CTI back); none reads a clock or does I/O.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::udf::{KeyedState, StateChanges};

mod acc;
mod aggregate;
mod exact;
mod held;
mod join;
mod lifetime;
mod ops;
mod partition;
mod topn;
mod uda;
mod window;

pub use aggregate::{
    AggError, AggKind, Aggregate, PARTIAL, Phase, SessionAggregate, UserCall, WindowAggregate,
    partial_schema,
};
pub use join::{JoinError, JoinKind, TemporalJoin};
pub use lifetime::Lifetime;
pub use partition::{Partition, partitions};
pub use topn::{OrderKey, TopN};
pub use uda::{MakeUserAggregate, UserAggregate, UserFunction};
pub use window::{Hopping, WindowError};

/// The state key an operator keeps its last CTI under: one byte, which no
/// key of a window or join state is.
const CTI_KEY: &[u8] = &[0xFF];

/// The state change that records CTI `t`.
fn cti_change(t: i64) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut names = std::collections::BTreeMap::new();
    names.insert("cti".to_string(), t.to_le_bytes().to_vec());
    (CTI_KEY.to_vec(), Some(crate::udf::encode_entry(&names)))
}

/// The CTI recorded in `state`, if any.
fn cti_of(state: &KeyedState) -> Option<i64> {
    let bytes = state.get(CTI_KEY)?.get("cti")?;
    Some(i64::from_le_bytes(bytes.as_slice().try_into().ok()?))
}

/// A built-in temporal operator as a vertex runs it: batches of its inputs
/// and CTIs in, rows out, its state as keyed-state changes. A query
/// compiler builds these from the operators above and its expressions.
pub trait TemporalOp: Send {
    /// What it does, for plans and errors.
    fn describe(&self) -> String;

    /// Its inputs' schemas (interval first); a vertex merges several by
    /// CTI, keeping them apart.
    fn input_schemas(&self) -> Vec<SchemaRef>;

    /// Its output's schema (interval first).
    fn output_schema(&self) -> SchemaRef;

    /// A batch of input `input`; the rows it gives now.
    fn on_batch(
        &mut self,
        input: usize,
        batch: &RecordBatch,
    ) -> Result<Option<RecordBatch>, String>;

    /// CTI `t` (of every input): the rows it makes final, and the CTI to pass
    /// on (at most `t`; never earlier than one passed before).
    fn on_cti(&mut self, t: i64) -> Result<(Option<RecordBatch>, i64), String>;

    /// Its state changed since the last call.
    fn take_delta(&mut self) -> StateChanges;

    /// Its whole state back, as the changes it gave wrote it.
    fn restore(&mut self, state: &KeyedState) -> Result<(), String>;
}
