//! Query scripts offline (`weir run`'s path, a thread per vertex): events
//! per CPU-second and per wall-second for a tumbling count, a hopping count
//! (size 10 s, hop 2 s), a temporal join and a hopping aggregate of every
//! built-in function, a global hopping count, exact sum and average of
//! doubles (split into partial and final phases at parallelism 2), a
//! tumbling median per page by a Wasm user-defined aggregate
//! (`udfs/median`) beside the built-in `AVG` of the same shape,
//! over generated JSONL, whole path included (JSON
//! parsing, the operators, canonical JSONL output), with the keyed stage at
//! parallelism 1 and 2 in the same run.
//!
//! Then the counts and the median as continuous jobs on a node in this process, fed Arrow
//! batches (no JSON) through durable rStreams (redb, fsync per group
//! commit) at parallelism 1 and 2, and through in-memory ones: events per
//! CPU-second and per wall-second of the whole process, from the first
//! append to the job finishing.
//!
//! `cargo bench -p weir-host --bench queries` (size: WEIR_BENCH_EVENTS,
//! default 1,000,000 clicks). Prints a table; results go to docs/benchmarks.md.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use weir::exec::{RunOptions, run};
use weir::jobs::Jobs;
use weir::rstream::{END, Entry, Streams};
use weir::schema::{ColumnType, Field, event_schema, field};
use weir::store::{MemStorage, RedbStorage, Storage};
use weir::wasm::Runtime;

const CLICKS: &str = "Clicks = INPUT \"clicks.jsonl\" SCHEMA (ts long, user string, url string, amount long) EVENTTIME ts;\n";

/// `n` clicks 100 µs apart by 10,000 users over 50 pages, and one
/// profile per user (alive for the whole run) for the join.
fn inputs(dir: &Path, n: u64) {
    let mut clicks =
        std::io::BufWriter::new(std::fs::File::create(dir.join("clicks.jsonl")).expect("clicks"));
    for i in 0..n {
        let user = i.wrapping_mul(2_654_435_761) % 10_000;
        writeln!(
            clicks,
            "{{\"ts\":{},\"user\":\"u{user}\",\"url\":\"/p{}\",\"amount\":{}}}",
            i * 100,
            i % 50,
            i % 97
        )
        .expect("write");
    }
    clicks.flush().expect("flush");
    let mut users =
        std::io::BufWriter::new(std::fs::File::create(dir.join("users.jsonl")).expect("users"));
    for u in 0..10_000u64 {
        writeln!(
            users,
            "{{\"ts\":0,\"user\":\"u{u}\",\"tier\":\"t{}\"}}",
            u % 3
        )
        .expect("write");
    }
    users.flush().expect("flush");
}

/// CPU time (user + system) this process has used, in seconds.
fn cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn fields() -> Vec<Field> {
    vec![
        field("ts", ColumnType::Int64, false),
        field("user", ColumnType::Utf8, false),
        field("url", ColumnType::Utf8, false),
        field("amount", ColumnType::Int64, false),
    ]
}

/// Clicks `from..from + n` as one encoded batch, as in [`inputs`].
fn batch(from: u64, n: u64) -> Vec<u8> {
    let ts: Vec<i64> = (from..from + n).map(|i| (i * 100) as i64).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ts.clone())),
        Arc::new(Int64Array::from(
            ts.iter().map(|t| t + 1).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(ts)),
        Arc::new(StringArray::from(
            (from..from + n)
                .map(|i| format!("u{}", i.wrapping_mul(2_654_435_761) % 10_000))
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            (from..from + n)
                .map(|i| format!("/p{}", i % 50))
                .collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            (from..from + n)
                .map(|i| (i % 97) as i64)
                .collect::<Vec<_>>(),
        )),
    ];
    let batch = RecordBatch::try_new(event_schema(&fields()), columns).expect("batch");
    Entry::Batch {
        producer: "ingest".into(),
        batch,
    }
    .encode()
    .expect("encode")
}

/// Events per CPU-second and per wall-second of script `text` as a job on a
/// node over `storage`, its keyed stages at `parallelism`.
fn on_node(
    storage: Arc<dyn Storage>,
    dir: &Path,
    text: &str,
    n: u64,
    parallelism: usize,
) -> (f64, f64) {
    // The components the script declares, sent with it as a client does.
    let median = weir::testkit::udf_component("median");
    let modules = if text.contains("COMPONENT") {
        vec![(median.clone(), std::fs::read(&median).expect("median.wasm"))]
    } else {
        Vec::new()
    };
    let streams = Streams::open(storage).expect("streams");
    let runtime = Runtime::new(None).expect("runtime");
    let files = weir::access::FileAccess::new(&[std::env::temp_dir()], &[]).expect("files");
    let jobs = Jobs::new(streams.clone(), runtime, files);
    let id = streams
        .create_with_time("Clicks", &fields(), Some("ts"), None)
        .expect("stream")
        .id;
    let path = dir.join("bench.wsql");
    std::fs::write(&path, text).expect("script");
    let (before, started) = (cpu(), std::time::Instant::now());
    jobs.submit(&path, text, modules, parallelism)
        .expect("submit");
    let mut tickets = Vec::new();
    for from in (0..n).step_by(4096) {
        let (_, t) = streams
            .append(id, vec![batch(from, 4096.min(n - from))])
            .expect("append");
        tickets.push(t);
    }
    let (_, t) = streams
        .append(id, vec![Entry::Cti(END).encode().expect("end")])
        .expect("append");
    tickets.push(t);
    for t in tickets {
        t.wait().expect("durable");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    while jobs.status(Some("bench")).expect("status")[0].state != "finished" {
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not finish"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let (used, wall) = (cpu() - before, started.elapsed().as_secs_f64());
    jobs.stop_all();
    streams.close();
    (n as f64 / used, n as f64 / wall)
}

fn main() {
    let n: u64 = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    inputs(d, n);
    let queries = [
        (
            "tumbling count (10 s)",
            format!(
                "{CLICKS}C = SELECT user, COUNT(*) AS n FROM Clicks WITH TUMBLING(10s);\nOUTPUT C TO \"out.jsonl\";\n"
            ),
            n,
        ),
        (
            "hopping count (10 s, hop 2 s)",
            format!(
                "{CLICKS}C = SELECT user, COUNT(*) AS n FROM Clicks WITH HOPPING(10s, 2s);\nOUTPUT C TO \"out.jsonl\";\n"
            ),
            n,
        ),
        (
            "hopping, every aggregate",
            format!(
                "{CLICKS}C = SELECT url, COUNT(*) AS n, COUNT(DISTINCT user) AS users, SUM(amount) AS s, MIN(amount) AS lo, MAX(amount) AS hi, AVG(amount) AS mean FROM Clicks WITH HOPPING(10s, 2s);\nOUTPUT C TO \"out.jsonl\";\n"
            ),
            n,
        ),
        (
            "temporal join (clicks × profiles)",
            format!(
                "Users = INPUT \"users.jsonl\" SCHEMA (ts long, user string, tier string) EVENTTIME ts LIFETIME 1d;\n{CLICKS}J = SELECT Clicks.user AS user, Users.tier AS tier, Clicks.amount AS amount FROM Users JOIN Clicks ON Users.user == Clicks.user;\nOUTPUT J TO \"out.jsonl\";\n"
            ),
            n + 10_000,
        ),
        (
            "global SUM, AVG of doubles (hopping)",
            format!(
                "{CLICKS}C = SELECT COUNT(*) AS n, SUM(CAST(amount AS double)) AS s, AVG(CAST(amount AS double)) AS m FROM Clicks WITH HOPPING(10s, 2s);\nOUTPUT C TO \"out.jsonl\";\n"
            ),
            n,
        ),
        (
            "tumbling AVG per page (built-in)",
            format!(
                "{CLICKS}C = SELECT url, AVG(CAST(amount AS double)) AS m FROM Clicks WITH TUMBLING(10s);\nOUTPUT C TO \"out.jsonl\";\n"
            ),
            n,
        ),
        (
            "tumbling median per page (Wasm UDA)",
            format!(
                "{CLICKS}MedianOf = COMPONENT \"{}\";\nC = SELECT url, MedianOf(CAST(amount AS double)) AS m FROM Clicks WITH TUMBLING(10s);\nOUTPUT C TO \"out.jsonl\";\n",
                weir::testkit::udf_component("median").display()
            ),
            n,
        ),
    ];
    let components = weir_node::components::WasmComponents::files();
    let runtime = Arc::new(Runtime::new(Some(d.join("cache"))).expect("runtime"));
    println!("{n} clicks, a thread per vertex, whole path (JSON in, JSONL out)");
    println!(
        "{:<36} {:>4} {:>8} {:>14} {:>14} {:>10}",
        "query", "par", "CPU s", "events/CPU-s", "events/s", "speed-up"
    );
    for (name, text, events) in queries {
        let path = d.join("q.wsql");
        std::fs::write(&path, &text).expect("script");
        let mut first = None;
        for parallelism in [1, 2] {
            let plan = weir::sql::compile_with(
                &path,
                &text,
                weir::sql::Inputs::Files,
                &components,
                parallelism,
            )
            .expect("compiles");
            let options = RunOptions {
                batch_size: None,
                threads: 2,
                progress: false,
            };
            let (before, started) = (cpu(), std::time::Instant::now());
            run(&plan, &runtime, &options).expect("runs");
            let (used, wall) = (cpu() - before, started.elapsed().as_secs_f64());
            let rate = events as f64 / wall;
            let base = *first.get_or_insert(rate);
            println!(
                "{name:<36} {parallelism:>4} {used:>8.2} {:>14.0} {rate:>14.0} {:>9.2}x",
                events as f64 / used,
                rate / base
            );
        }
    }
    println!("\non a node, Arrow batches in (no JSON)");
    println!(
        "{:<36} {:>4} {:>16} {:>14} {:>10} {:>16}",
        "query", "par", "durable ev/CPU-s", "durable ev/s", "speed-up", "in-memory ev/CPU-s"
    );
    let count = |window: &str| {
        format!(
            "{CLICKS}C = SELECT user, COUNT(*) AS n FROM Clicks {window};\nOUTPUT C TO \"out.jsonl\";\n"
        )
    };
    for (name, text) in [
        ("tumbling count (10 s)", count("WITH TUMBLING(10s)")),
        (
            "hopping count (10 s, hop 2 s)",
            count("WITH HOPPING(10s, 2s)"),
        ),
        (
            "tumbling median per page (Wasm UDA)",
            format!(
                "{CLICKS}MedianOf = COMPONENT \"{}\";\nC = SELECT url, MedianOf(CAST(amount AS double)) AS m FROM Clicks WITH TUMBLING(10s);\nOUTPUT C TO \"out.jsonl\";\n",
                weir::testkit::udf_component("median").display()
            ),
        ),
    ] {
        let mut first = None;
        for parallelism in [1, 2] {
            let (durable, wall) = {
                let run = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
                let storage =
                    Arc::new(RedbStorage::open(&run.path().join("node.redb")).expect("redb"));
                on_node(storage, run.path(), &text, n, parallelism)
            };
            let memory = {
                let run = tempfile::tempdir_in(std::env::temp_dir()).expect("tempdir");
                on_node(
                    Arc::new(MemStorage::default()),
                    run.path(),
                    &text,
                    n,
                    parallelism,
                )
                .0
            };
            let base = *first.get_or_insert(wall);
            println!(
                "{name:<36} {parallelism:>4} {durable:>16.0} {wall:>14.0} {:>9.2}x {memory:>16.0}",
                wall / base
            );
        }
    }
}
