//! A union waiting on a slow input: what one snapshot of it costs.
//!
//! A union (or join) merges its inputs by CTI, so while one input is behind,
//! the rows of the others wait in the merge, and every snapshot (one per CTI
//! boundary by default) holds them. This measures, for 256 to 4,096 entries
//! of 4 events waiting on one input: the time to take a snapshot and encode
//! it as it is stored (`postcard`), and its size; beside it, the same rows
//! encoded one Arrow IPC message per entry read (the snapshot's form before
//! it held each input's rows as one batch), measured in the same run.
//!
//! `cargo bench -p weir-host --bench merge`. Prints a table; results go to
//! docs/benchmarks.md.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use weir::entry::Entry;
use weir::plan::Recovery;
use weir::schema::{ColumnType, Field, event_schema};
use weir::vertex::{Operator, Resume, Vertex};

/// Events per entry.
const ROWS: usize = 4;

fn schema() -> SchemaRef {
    event_schema(&[
        Field {
            name: "user".into(),
            ty: ColumnType::Utf8,
            nullable: false,
        },
        Field {
            name: "amount".into(),
            ty: ColumnType::Int64,
            nullable: false,
        },
    ])
}

/// Entry `k`'s events: 4 starting at `10 k`.
fn batch(schema: &SchemaRef, k: i64) -> RecordBatch {
    let starts: Vec<i64> = (0..ROWS as i64).map(|r| 10 * k + r).collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(starts.clone())),
        Arc::new(Int64Array::from(
            starts.iter().map(|s| s + 1).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            starts
                .iter()
                .map(|s| format!("user{}", s % 97))
                .collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            starts.iter().map(|s| s * 31 % 1000).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema.clone(), cols).expect("a batch")
}

fn main() {
    let schema = schema();
    println!(
        "| entries waiting | events | snapshot (ms) | bytes | one message per entry (ms) | bytes | time ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for waiting in [256usize, 1024, 4096] {
        let mut union = Vertex::load(
            "union",
            Operator::Union,
            schema.clone(),
            2,
            Recovery::Checkpoint { every: 1 },
            Resume::Fresh(vec![0, 0]),
        )
        .expect("a union");
        // Input 0 reads on; input 1 has said nothing: every row waits.
        let mut batches = Vec::with_capacity(waiting);
        for k in 0..waiting as i64 {
            let b = batch(&schema, k);
            batches.push(b.clone());
            let entry = Entry::Batch {
                producer: "bench".into(),
                batch: b,
            };
            union.on_entry(0, 2 * k as u64, entry).expect("a batch");
            union
                .on_entry(0, 2 * k as u64 + 1, Entry::Cti(10 * k + 10))
                .expect("a CTI");
        }
        let rounds = 20;
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..rounds {
            let snapshot = union.snapshot();
            bytes = postcard::to_allocvec(&snapshot).expect("encodes").len();
        }
        let snapshot_ms = started.elapsed().as_secs_f64() * 1e3 / rounds as f64;
        let started = Instant::now();
        let mut per_entry_bytes = 0;
        for _ in 0..rounds {
            let each: Vec<(u64, serde_bytes::ByteBuf)> = batches
                .iter()
                .enumerate()
                .map(|(k, b)| {
                    let entry = Entry::Batch {
                        producer: String::new(),
                        batch: b.clone(),
                    };
                    let encoded = entry.encode().expect("encodes");
                    (2 * k as u64, serde_bytes::ByteBuf::from(encoded))
                })
                .collect();
            per_entry_bytes = postcard::to_allocvec(&each).expect("encodes").len();
        }
        let per_entry_ms = started.elapsed().as_secs_f64() * 1e3 / rounds as f64;
        println!(
            "| {waiting} | {} | {snapshot_ms:.2} | {bytes} | {per_entry_ms:.2} | {per_entry_bytes} | {:.1} |",
            waiting * ROWS,
            per_entry_ms / snapshot_ms
        );
    }
}
