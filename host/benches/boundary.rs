//! The cost of the Wasm boundary and of a whole pipeline, Wasm against native.
//!
//! (a) `boundary`: a filter + map UDF over a 5-column row (2 ints, 1 float, 2
//!     short strings) at batch sizes 1..4096, as the `bench_filter_map`
//!     component run by a Weir stage, and as the same logic in native Rust over
//!     the same Arrow batches.
//! (b) `pipeline`: JSONL file -> filter+map -> JSONL sink, with the logic as the
//!     component and as native Rust.
//!
//! (c) runtime filters (`weir job filter`): the stage at batch 4096 with no
//!     filter, with one that matches no row, and with one that drops 1%.
//!
//! After criterion's report, `ratios` prints ns/row and Wasm/native ratios
//! measured interleaved in this run. Run: `cargo bench -p weir-host --bench boundary`
//! (`-- ratios` skips criterion's part).

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::SchemaRef;
use arrow_select::take::take;
use criterion::{BenchmarkId, Criterion, Throughput};
use weir::plan::{ErrorPolicy, SourceFormat, SourceSpec, StageKind, UdfSpec};
use weir::schema::{ColumnType, Field, event_schema, field};
use weir::source::SourceReader;
use weir::stage::UdfStage;
use weir::wasm::{Limits, Runtime};

const ROWS: usize = 4096;
const BATCH_SIZES: [usize; 6] = [1, 16, 64, 256, 1024, 4096];
const CURRENCIES: [&str; 3] = ["USD", "EUR", "GBP"];
const CHANNELS: [&str; 3] = ["web", "app", "partner"];

fn input_fields() -> Vec<Field> {
    let f = |name: &str, ty| field(name, ty, false);
    vec![
        f("auction", ColumnType::Int64),
        f("bidder", ColumnType::Int64),
        f("price", ColumnType::Float64),
        f("currency", ColumnType::Utf8),
        f("channel", ColumnType::Utf8),
    ]
}

fn input(rows: usize) -> RecordBatch {
    let schema = event_schema(&input_fields());
    let ts: Vec<i64> = (0..rows as i64).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ts.clone())),
        Arc::new(Int64Array::from(
            ts.iter().map(|t| t + 1).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            (0..rows as i64).map(|i| i % 1000).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            (0..rows as i64).map(|i| i * 7 % 5000).collect::<Vec<_>>(),
        )),
        Arc::new(arrow_array::Float64Array::from(
            (0..rows)
                .map(|i| (i * 37 % 200) as f64 + 0.5)
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            (0..rows).map(|i| CURRENCIES[i % 3]).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            (0..rows).map(|i| CHANNELS[i * 5 % 3]).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema, columns).expect("batch")
}

/// The bench UDF's logic, natively, with the same typed rows (strings borrowed
/// from the batch, as `udfs/bench_filter_map` reads them).
struct Bid<'a> {
    auction: i64,
    price: f64,
    currency: &'a str,
    channel: &'a str,
}

fn filter_map(b: Bid<'_>) -> Option<(i64, f64, &str)> {
    if b.price < 10.0 {
        return None;
    }
    let rate = if b.currency == "USD" { 0.92 } else { 1.0 };
    Some((b.auction, b.price * rate, b.channel))
}

fn native(batch: &RecordBatch, out_schema: &SchemaRef) -> RecordBatch {
    let n = batch.num_rows();
    let auction = batch.column(2).as_primitive::<Int64Type>();
    let _bidder = batch.column(3).as_primitive::<Int64Type>();
    let price = batch.column(4).as_primitive::<Float64Type>();
    let currency = batch.column(5).as_string::<i32>();
    let channel = batch.column(6).as_string::<i32>();
    let mut parents = Vec::with_capacity(n);
    let mut a = Int64Builder::with_capacity(n);
    let mut e = Float64Builder::with_capacity(n);
    let mut c = StringBuilder::with_capacity(n, n * 8);
    for i in 0..n {
        let bid = Bid {
            auction: auction.value(i),
            price: price.value(i),
            currency: currency.value(i),
            channel: channel.value(i),
        };
        if let Some((x, y, z)) = filter_map(bid) {
            parents.push(i as u32);
            a.append_value(x);
            e.append_value(y);
            c.append_value(z);
        }
    }
    let idx = UInt32Array::from(parents);
    let columns: Vec<ArrayRef> = vec![
        take(batch.column(0), &idx, None).expect("take"),
        take(batch.column(1), &idx, None).expect("take"),
        Arc::new(a.finish()),
        Arc::new(e.finish()),
        Arc::new(c.finish()),
    ];
    RecordBatch::try_new(out_schema.clone(), columns).expect("batch")
}

fn stage(runtime: &Arc<Runtime>) -> UdfStage {
    let spec = UdfSpec {
        args: Vec::new(),
        kind: StageKind::Processor,
        component: weir::testkit::udf_component("bench_filter_map"),
        params: Vec::new(),
        key: None,
        output: None,
        on_trap: ErrorPolicy::Fail,
        limits: Limits::default(),
    };
    weir::wasm::stage(runtime, "bench", &spec, event_schema(&input_fields())).expect("stage")
}

fn slices(batch: &RecordBatch, size: usize) -> Vec<RecordBatch> {
    (0..batch.num_rows())
        .step_by(size)
        .map(|o| batch.slice(o, size.min(batch.num_rows() - o)))
        .collect()
}

fn boundary(c: &mut Criterion, runtime: &Arc<Runtime>) {
    let batch = input(ROWS);
    let mut wasm = stage(runtime);
    let out_schema = wasm.output_schema();
    let mut dead = Vec::new();
    let mut group = c.benchmark_group("boundary");
    group.throughput(Throughput::Elements(ROWS as u64));
    for size in BATCH_SIZES {
        let parts = slices(&batch, size);
        group.bench_with_input(BenchmarkId::new("wasm", size), &parts, |b, parts| {
            b.iter(|| {
                for p in parts {
                    black_box(wasm.process(p, &mut dead).expect("process"));
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("native", size), &parts, |b, parts| {
            b.iter(|| {
                for p in parts {
                    black_box(native(p, &out_schema));
                }
            })
        });
    }
    group.finish();
}

const PIPELINE_ROWS: usize = 100_000;

fn pipeline_file() -> (tempfile::TempDir, SourceSpec) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bids.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    for i in 0..PIPELINE_ROWS {
        writeln!(
            out,
            "{{\"ts\":{i},\"auction\":{},\"bidder\":{},\"price\":{},\"currency\":\"{}\",\"channel\":\"{}\"}}",
            i % 1000,
            i * 7 % 5000,
            (i * 37 % 200) as f64 + 0.5,
            CURRENCIES[i % 3],
            CHANNELS[i * 5 % 3]
        )
        .expect("write");
    }
    out.flush().expect("flush");
    let mut fields = vec![Field {
        name: "ts".into(),
        ty: ColumnType::Int64,
        nullable: false,
    }];
    fields.extend(input_fields());
    let spec = SourceSpec {
        origin: weir::plan::SourceOrigin::File { follow: false },
        name: "bids".into(),
        format: SourceFormat::Jsonl,
        path,
        fields,
        event_time: "ts".into(),
        end_time: None,
        event_unit: Default::default(),
        end_unit: Default::default(),
        on_error: ErrorPolicy::Fail,
        cti: Default::default(),
        strict: false,
    };
    (dir, spec)
}

/// file -> logic -> JSONL sink; `logic` is the Wasm stage or the native function.
fn run_pipeline(spec: &SourceSpec, logic: &mut dyn FnMut(&RecordBatch) -> RecordBatch) -> usize {
    let mut reader = SourceReader::open(spec, 1024).expect("open");
    let mut sink = Vec::with_capacity(8 << 20);
    while let Some(chunk) = reader.next_chunk().expect("read") {
        // The source has an extra `ts` column; the logic reads by position, so drop it.
        let batch = chunk
            .batch
            .project(&[0, 1, 3, 4, 5, 6, 7])
            .expect("project");
        let out = logic(&batch);
        weir::sink::write_jsonl(&mut sink, &out, false).expect("sink");
    }
    sink.len()
}

fn pipeline(c: &mut Criterion, runtime: &Arc<Runtime>) {
    let (_dir, spec) = pipeline_file();
    let mut wasm = stage(runtime);
    let out_schema = wasm.output_schema();
    let mut dead = Vec::new();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(PIPELINE_ROWS as u64));
    group.sample_size(10);
    group.bench_function("wasm", |b| {
        b.iter(|| {
            run_pipeline(&spec, &mut |batch| {
                wasm.process(batch, &mut dead).expect("process")
            })
        })
    });
    group.bench_function("native", |b| {
        b.iter(|| run_pipeline(&spec, &mut |batch| native(batch, &out_schema)))
    });
    group.finish();
}

/// Median time of `f` over `runs`, interleaved by the caller.
fn time(f: &mut dyn FnMut()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Timed pairs (one Wasm sample, then one native sample) per batch size.
const PAIRS: usize = 201;

/// The 25th, 50th and 75th percentiles of per-pair ratios.
fn quartiles(mut ratio: Vec<f64>) -> (f64, f64, f64) {
    ratio.sort_by(f64::total_cmp);
    let n = ratio.len();
    (ratio[n / 4], ratio[n / 2], ratio[n * 3 / 4])
}

/// Timed pairs of whole pipeline runs (each ~0.1 s per half).
const PIPELINE_PAIRS: usize = 21;

/// Wasm/native ratios measured interleaved in one run, printed for docs/benchmarks.md.
///
/// The ratio is the median of the per-pair ratios: each pair is timed within a
/// fraction of a millisecond, so a change in the machine's speed (this is a
/// shared VM) moves both halves of a pair alike instead of skewing one median.
fn ratios(runtime: &Arc<Runtime>) {
    let batch = input(ROWS);
    let mut wasm = stage(runtime);
    let out_schema = wasm.output_schema();
    let mut dead = Vec::new();
    println!("\n== boundary: filter+map over 5 columns, {ROWS} rows per sample");
    println!(
        "{:>6} {:>12} {:>12} {:>8} {:>12}",
        "batch", "wasm ns/row", "native ns/row", "ratio", "p25..p75"
    );
    for size in BATCH_SIZES {
        let parts = slices(&batch, size);
        let (mut w, mut n, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..PAIRS {
            let wasm_time = time(&mut || {
                for p in &parts {
                    black_box(wasm.process(p, &mut dead).expect("process"));
                }
            });
            let native_time = time(&mut || {
                for p in &parts {
                    black_box(native(p, &out_schema));
                }
            });
            ratio.push(wasm_time.as_secs_f64() / native_time.as_secs_f64());
            w.push(wasm_time);
            n.push(native_time);
        }
        let (w, n) = (
            median(w).as_nanos() as f64 / ROWS as f64,
            median(n).as_nanos() as f64 / ROWS as f64,
        );
        let (p25, p50, p75) = quartiles(ratio);
        println!("{size:>6} {w:>12.1} {n:>12.1} {p50:>8.2} {p25:>6.2}..{p75:.2}");
    }
    filters(runtime, &batch);
    let (_dir, spec) = pipeline_file();
    let (mut w, mut n, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..PIPELINE_PAIRS {
        let mut run_wasm = || {
            time(&mut || {
                run_pipeline(&spec, &mut |b| wasm.process(b, &mut dead).expect("process"));
            })
        };
        let run_native = || {
            time(&mut || {
                run_pipeline(&spec, &mut |b| native(b, &out_schema));
            })
        };
        // Alternate which half of a pair runs first, so neither gains from
        // a warm cache or loses to the machine slowing down.
        let (wasm_time, native_time) = if i % 2 == 0 {
            let w = run_wasm();
            (w, run_native())
        } else {
            let n = run_native();
            (run_wasm(), n)
        };
        ratio.push(wasm_time.as_secs_f64() / native_time.as_secs_f64());
        w.push(wasm_time);
        n.push(native_time);
    }
    let (w, n) = (median(w), median(n));
    let (p25, p50, p75) = quartiles(ratio);
    println!("\n== pipeline: JSONL file -> filter+map -> JSONL, {PIPELINE_ROWS} rows");
    println!(
        "wasm {:.1} ms ({:.0} ev/s), native {:.1} ms ({:.0} ev/s), wasm/native {p50:.3} ({p25:.3}..{p75:.3})",
        w.as_secs_f64() * 1e3,
        PIPELINE_ROWS as f64 / w.as_secs_f64(),
        n.as_secs_f64() * 1e3,
        PIPELINE_ROWS as f64 / n.as_secs_f64(),
    );
}

/// The stage with runtime filters, against the stage without, interleaved.
fn filters(runtime: &Arc<Runtime>, batch: &RecordBatch) {
    let schema = event_schema(&input_fields());
    let cases = [
        ("no filter", None),
        (
            "matches no row",
            Some("currency = 'XXX' AND price > 1000000"),
        ),
        ("drops 1%", Some("auction < 10")),
    ];
    let mut stages: Vec<UdfStage> = cases
        .iter()
        .map(|(_, f)| {
            let mut s = stage(runtime);
            if let Some(f) = f {
                s.set_filters(vec![
                    weir::filter::Filter::parse(f, &schema).expect("filter"),
                ]);
            }
            s
        })
        .collect();
    let mut dead = Vec::new();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for _ in 0..51 {
        for (stage, t) in stages.iter_mut().zip(&mut times) {
            t.push(time(&mut || {
                black_box(stage.process(batch, &mut dead).expect("process"));
            }));
        }
    }
    let base = median(times[0].clone()).as_nanos() as f64 / ROWS as f64;
    println!("\n== runtime filters: the stage at batch {ROWS}");
    println!("{:>16} {:>12} {:>12}", "filter", "ns/row", "vs none");
    for ((name, _), t) in cases.iter().zip(times) {
        let ns = median(t).as_nanos() as f64 / ROWS as f64;
        println!("{name:>16} {ns:>12.1} {:>12.3}", ns / base);
    }
}

fn main() {
    let runtime = Runtime::new(Runtime::default_cache_dir()).expect("runtime");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    boundary(&mut c, &runtime);
    pipeline(&mut c, &runtime);
    c.final_summary();
    ratios(&runtime);
}
