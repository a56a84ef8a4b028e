//! User-defined aggregates: the seam between the windowed aggregates and
//! the code that runs a user's aggregate (a Wasm component of world
//! `aggregate`, in `weir-wasm`).
//!
//! An accumulator is opaque bytes the operator owns: it keeps one per group
//! and window with the built-in accumulators (checkpointed, restored after a
//! crash) and hands many of them, with many rows, to each call. Empty bytes
//! are a fresh accumulator.

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::DataType;

/// A running user-defined aggregate.
pub trait UserAggregate: Send {
    /// Adds rows to accumulators: row `i` of `args` (interval first, then
    /// the arguments in call order) goes to `accumulators[groups[i]]`.
    /// Returns every accumulator after the rows, in the same order.
    fn accumulate(
        &mut self,
        accumulators: &[Vec<u8>],
        args: &RecordBatch,
        groups: &[u32],
    ) -> Result<Vec<Vec<u8>>, String>;

    /// Merges `from[i]` into `into[i]`, pairwise.
    fn merge(&mut self, into: &[Vec<u8>], from: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String>;

    /// The result of each accumulator: one row each.
    fn finish(&mut self, accumulators: &[Vec<u8>]) -> Result<ArrayRef, String>;
}

/// Makes a running instance of a user-defined aggregate (one per vertex).
pub type MakeUserAggregate = Arc<dyn Fn() -> Result<Box<dyn UserAggregate>, String> + Send + Sync>;

/// A user-defined aggregate as a query calls it.
#[derive(Clone)]
pub struct UserFunction {
    /// The name the query calls it by.
    pub name: String,
    /// What runs it, for errors and plans (a component's file and module
    /// version).
    pub module: String,
    /// The result's type.
    pub returns: DataType,
    /// Whether the result may be null.
    pub nullable: bool,
    /// Makes an instance.
    pub make: MakeUserAggregate,
}

impl std::fmt::Debug for UserFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.module)
    }
}

impl PartialEq for UserFunction {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.module, &self.returns, self.nullable)
            == (&other.name, &other.module, &other.returns, other.nullable)
    }
}

impl Eq for UserFunction {}
