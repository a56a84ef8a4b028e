//! Weir's core, written sans-IO: what a job is (plans, schemas), what its
//! streams hold (entries: batches and CTIs), and what its vertices do with
//! them (the deterministic merge, the rVertex state machine with snapshots,
//! UDF stages, patch timelines, runtime filters). It reaches UDFs through
//! the [`udf::Udf`] trait and does no I/O of its own: no threads, files,
//! sockets, storage or Wasm runtime. The layers above drive it.

pub mod entry;
pub mod filter;
pub mod merge;
pub mod parallel;
pub mod patch;
pub mod plan;
pub mod schema;
pub mod select;
pub mod sink;
pub mod stage;
pub mod temporal;
pub mod udf;
pub mod vertex;
