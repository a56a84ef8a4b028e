//! A Weir node and the offline runner, over the layers below: [`job`]
//! compiles job files to plans; [`jobs`] runs a node's jobs as threads of
//! rVertices over rStreams, with followed-file sources, exactly-once sinks
//! and hot patching; [`node`] serves ingest, stream reads and job requests;
//! [`exec`] (`weir run`) runs the same vertices over in-memory streams;
//! [`source`] reads JSONL and CSV files into batches.

use weir_core::{filter, patch, plan, schema, sink, stage, vertex};
use weir_net::{access, protocol as net};
use weir_store::{rstream, store};
use weir_wasm as wasm;

pub mod components;
pub mod error;
pub mod exec;
pub mod job;
pub mod jobs;
pub mod node;
pub mod source;
