//! Weir's storage layer: [`store`] puts values in a redb file (a CRC-32 per
//! value, a commit count beside the file) or in memory, with a
//! fault-injecting backend for tests; [`rstream`] keeps rStreams on it, with
//! group commit, dedup of rewrites, determinism errors, readers from any
//! position and collection below the slowest reader.

use weir_core::{entry, schema, udf};

pub mod rstream;
pub mod store;
