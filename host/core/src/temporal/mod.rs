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
//!
//! Every operator takes batches and CTIs and returns batches and the CTI to
//! pass on (an operator whose output starts before its input's CTI holds
//! the CTI back); none reads a clock or does I/O.

mod acc;
mod aggregate;
mod join;
mod lifetime;
mod window;

pub use aggregate::{AggError, AggKind, Aggregate, WindowAggregate};
pub use join::{JoinError, JoinKind, TemporalJoin};
pub use lifetime::Lifetime;
pub use window::{Hopping, WindowError};
