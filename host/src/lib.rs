//! Weir: a stream-processing engine whose user-defined functions are
//! deterministic, sandboxed WebAssembly components.
//!
//! This crate holds the engine and the `weir` command-line tool:
//! - [`job`] compiles job files to a [`plan::Plan`];
//! - [`source`] and [`sink`] read and write files as Arrow batches;
//! - [`wasm`] is the sandboxed runtime for UDF components;
//! - [`stage`] runs one UDF stage over batches, with trap policies;
//! - [`exec`] runs a finite job to completion (`weir run`).

pub use weir_core::{entry, filter, merge, patch, plan, schema, select, sink, stage, udf, vertex};
pub use weir_net::{access, protocol as net};
pub use weir_store::{rstream, store};
pub use weir_wasm as wasm;

pub mod cli;
pub mod exec;
pub mod job;
pub mod jobs;
pub mod node;
pub mod source;
pub mod testkit;
