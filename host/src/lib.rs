//! Weir: a stream-processing engine whose user-defined functions are
//! deterministic, sandboxed WebAssembly components.
//!
//! This crate is the `weir` command-line tool ([`cli`]) and re-exports the
//! layers it is built on, each a crate of its own that depends only on those
//! below it:
//! - `weir-core` (sans-IO): [`plan`], [`schema`], [`entry`], [`merge`],
//!   [`vertex`], [`stage`] (UDF stages behind the [`udf::Udf`] trait),
//!   [`patch`], [`filter`], [`sink`] (canonical JSONL);
//! - `weir-wasm`: [`wasm`], the sandboxed runtime for UDF components;
//! - `weir-store`: [`store`] and [`rstream`], storage in redb;
//! - `weir-net`: [`net`] (QUIC with mutual TLS, the protocol) and [`access`];
//! - `weir-sql`: [`sql`], the query-script compiler (DataFusion's planner);
//! - `weir-node`: [`job`], [`jobs`], [`node`], [`source`] and [`exec`]
//!   (`weir run`).

pub use weir_core::{
    entry, filter, merge, patch, plan, schema, select, sink, stage, temporal, udf, vertex,
};
pub use weir_net::{access, protocol as net};
pub use weir_node::{exec, job, jobs, node, source};
pub use weir_sql as sql;
pub use weir_store::{rstream, store};
pub use weir_wasm as wasm;

pub mod cli;
pub mod testkit;
