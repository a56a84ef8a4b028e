//! Continuous jobs on one node, measured in one run:
//! 1. ingest-to-output throughput with durable rStreams (redb, fsync per group
//!    commit) against the same job with in-memory rStreams;
//! 2. end-to-end latency percentiles at a fixed input rate (durable);
//! 3. recovery: restart to caught-up for a reducer holding a large keyed state.
//!
//! `cargo bench -p weir-host --bench jobs` (sizes: WEIR_BENCH_EVENTS,
//! WEIR_BENCH_KEYS). Prints a table; results go to docs/benchmarks.md.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use weir::jobs::Jobs;
use weir::rstream::{END, Entry, Streams};
use weir::schema::{ColumnType, Field, event_schema, field};
use weir::store::{MemStorage, RedbStorage, Storage};
use weir::testkit::udf_component;
use weir::wasm::Runtime;

fn fields() -> Vec<Field> {
    let f = |name: &str, ty| field(name, ty, false);
    vec![
        f("ts", ColumnType::Int64),
        f("user", ColumnType::Utf8),
        f("ip", ColumnType::Utf8),
        f("agent", ColumnType::Utf8),
        f("ad", ColumnType::Utf8),
    ]
}

/// Clicks `from..from+n`, `users` distinct users, one in ten from a bot network
/// unless `humans_only`; ad names padded to `ad_bytes` (the reducer keeps each
/// user's distinct ads, so this sets the size of its keyed state).
fn clicks(from: u64, n: usize, users: u64, humans_only: bool, ad_bytes: usize) -> Vec<u8> {
    let ts: Vec<i64> = (0..n as u64).map(|i| ((from + i) * 100) as i64).collect();
    let user: Vec<String> = (0..n as u64)
        .map(|i| format!("u{}", (from + i).wrapping_mul(2_654_435_761) % users))
        .collect();
    let ip: Vec<&str> = (0..n as u64)
        .map(|i| {
            if !humans_only && (from + i).is_multiple_of(10) {
                "10.66.1.2"
            } else {
                "84.1.2.3"
            }
        })
        .collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ts.clone())),
        Arc::new(Int64Array::from(
            ts.iter().map(|t| t + 1).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(ts)),
        Arc::new(StringArray::from(user)),
        Arc::new(StringArray::from(ip)),
        Arc::new(StringArray::from(vec!["Mozilla/5.0"; n])),
        Arc::new(StringArray::from(
            (0..n)
                .map(|i| format!("ad{:-<ad_bytes$}", i % 10))
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

/// A node's streams and jobs in this process, on `storage`.
fn node(storage: Arc<dyn Storage>) -> (Streams, Jobs) {
    let streams = Streams::open(storage).expect("streams");
    let runtime = Runtime::new(None).expect("runtime");
    // The benchmark's job files and sinks live in temporary directories.
    let files = weir::access::FileAccess::new(&[std::env::temp_dir()], &[]).expect("files");
    let jobs = Jobs::new(streams.clone(), runtime, files);
    jobs.resume().expect("resume");
    (streams, jobs)
}

fn submit(jobs: &Jobs, dir: &Path, reducer: bool, checkpoint_every: u64) {
    let filter = udf_component("bot_filter");
    let stats = udf_component("user_stats");
    let mut text = format!(
        r#"
name = "bench"
[[sources]]
name = "clicks"
stream = "clicks"
[[stages]]
name = "humans"
input = "clicks"
kind = "processor"
component = "{}"
params = {{ blocked_prefix = "10.66." }}
recovery = "replay"
"#,
        filter.display()
    );
    let last = if reducer {
        text.push_str(&format!(
            r#"
[[stages]]
name = "flags"
input = "humans"
kind = "reducer"
key = "user"
component = "{}"
params = {{ window_us = 1_000_000_000_000, max_clicks = 1_000_000 }}
checkpoint_every = {checkpoint_every}
"#,
            stats.display()
        ));
        "flags"
    } else {
        "humans"
    };
    text.push_str(&format!(
        "[[sinks]]\ninput = \"{last}\"\npath = \"out.jsonl\"\n"
    ));
    let path = dir.join("job.toml");
    std::fs::write(&path, &text).expect("write job");
    let mut modules = vec![(filter.clone(), std::fs::read(&filter).expect("read"))];
    if reducer {
        modules.push((stats.clone(), std::fs::read(&stats).expect("read")));
    }
    jobs.submit(&path, &text, modules, 1).expect("submit");
}

/// Rows written by the job's sink so far.
fn sink_rows(jobs: &Jobs) -> u64 {
    jobs.status(Some("bench")).expect("status")[0]
        .vertices
        .last()
        .map_or(0, |v| v.rows_out)
}

fn wait(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !done() {
        assert!(Instant::now() < deadline, "the job did not get there");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Events/s from the first ingest to the end marker reaching the sink.
fn throughput(storage: Arc<dyn Storage>, dir: &Path, events: usize) -> f64 {
    let (streams, jobs) = node(storage);
    let id = streams
        .create_with_time("clicks", &fields(), Some("ts"), None)
        .expect("stream")
        .id;
    submit(&jobs, dir, true, 10);
    let batch = 4096;
    let started = Instant::now();
    let mut tickets = Vec::new();
    for from in (0..events).step_by(batch) {
        let n = batch.min(events - from);
        let (_, t) = streams
            .append(id, vec![clicks(from as u64, n, 10_000, false, 0)])
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
    wait(|| jobs.status(Some("bench")).expect("status")[0].state == "finished");
    let secs = started.elapsed().as_secs_f64();
    jobs.stop_all();
    streams.close();
    events as f64 / secs
}

/// Latency from ingest acknowledged to the rows in the sink's file, at
/// `rate` events/s in batches of `batch`.
fn latency(dir: &Path, rate: u64, batch: usize, seconds: u64) -> Vec<Duration> {
    let storage = Arc::new(RedbStorage::open(&dir.join("node.redb")).expect("redb"));
    let (streams, jobs) = node(storage);
    let id = streams
        .create_with_time("clicks", &fields(), Some("ts"), None)
        .expect("stream")
        .id;
    submit(&jobs, dir, false, 1);
    let interval = Duration::from_secs_f64(batch as f64 / rate as f64);
    let rounds = (seconds * rate) as usize / batch;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(rounds);
    for k in 0..rounds {
        let due = started + interval * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sent = Instant::now();
        let (_, t) = streams
            .append(id, vec![clicks((k * batch) as u64, batch, 1_000, true, 0)])
            .expect("append");
        t.wait().expect("durable");
        let want = ((k + 1) * batch) as u64;
        wait(|| sink_rows(&jobs) >= want);
        latencies.push(sent.elapsed());
    }
    jobs.stop_all();
    streams.close();
    latencies.sort();
    latencies
}

/// Builds a reducer state of `keys` users (each about `ad_bytes`), stops the
/// node, and measures restart (open, load snapshots and keyed state, replay
/// since the last checkpoint) until the job has caught up with its input.
/// Returns (keyed-state bytes, time to build it, time to recover).
fn recovery(dir: &Path, keys: u64, ad_bytes: usize) -> (u64, Duration, Duration) {
    let path = dir.join("node.redb");
    let (streams, jobs) = node(Arc::new(RedbStorage::open(&path).expect("redb")));
    let id = streams
        .create_with_time("clicks", &fields(), Some("ts"), None)
        .expect("stream")
        .id;
    submit(&jobs, dir, true, 4);
    let built = Instant::now();
    let batch = 8192usize;
    let mut sent = 0u64;
    let mut tickets = Vec::new();
    // Each key once, in order, so the state holds `keys` users.
    while sent < keys {
        let n = batch.min((keys - sent) as usize);
        let (_, t) = streams
            .append(id, vec![clicks(sent, n, keys, true, ad_bytes)])
            .expect("append");
        tickets.push(t);
        sent += n as u64;
        // Keep ingest at most a few batches ahead, as a real client's acks would.
        if tickets.len() > 16 {
            tickets.remove(0).wait().expect("durable");
        }
    }
    for t in tickets {
        t.wait().expect("durable");
    }
    wait(|| reducer_in(&jobs) >= sent);
    let built = built.elapsed();
    jobs.stop_all();
    streams.close();
    drop((streams, jobs));
    let state = state_bytes(&path);

    let started = Instant::now();
    let (streams, jobs) = node(Arc::new(RedbStorage::open(&path).expect("redb")));
    wait(|| reducer_in(&jobs) >= sent);
    let took = started.elapsed();
    jobs.stop_all();
    streams.close();
    (state, built, took)
}

/// A hot patch under load, in one run.
struct PatchFigures {
    /// The `deploy` call: validation (compiling the new module), storing it,
    /// waiting for the switch at the stage's next CTI and making it durable.
    deploy: Duration,
    /// From `deploy` returning to the stage's first row on the new version.
    first_row: Duration,
    /// Of the deploy call: from handing the switch to the stage to it being
    /// durable (the wait for the next CTI included).
    switch: Duration,
    /// Stage rows/s before the deploy (2 s), around the switch (1 s centred
    /// on it), during the whole deploy call, and after (2 s).
    before: f64,
    around: f64,
    during: f64,
    after: f64,
}

fn sales(from: u64, n: usize) -> Vec<u8> {
    let ts: Vec<i64> = (0..n as u64).map(|i| ((from + i) * 100) as i64).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ts.clone())),
        Arc::new(Int64Array::from(
            ts.iter().map(|t| t + 1).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(ts)),
        Arc::new(StringArray::from(
            (0..n as u64)
                .map(|i| format!("u{}", (from + i) % 10_000))
                .collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            (0..n as u64)
                .map(|i| ((from + i) % 100) as i64)
                .collect::<Vec<_>>(),
        )),
    ];
    let batch = RecordBatch::try_new(event_schema(&sale_fields()), columns).expect("batch");
    Entry::Batch {
        producer: "ingest".into(),
        batch,
    }
    .encode()
    .expect("encode")
}

fn sale_fields() -> Vec<Field> {
    [
        ("ts", ColumnType::Int64),
        ("user", ColumnType::Utf8),
        ("amount", ColumnType::Int64),
    ]
    .map(|(name, ty)| field(name, ty, false))
    .to_vec()
}

/// Feeds reducer `tally_v1` as fast as it processes (a bounded backlog),
/// deploys `tally_v2` after `warm`, and keeps feeding for as long again.
fn patching(dir: &Path, warm: Duration) -> PatchFigures {
    let (streams, jobs) = node(Arc::new(
        RedbStorage::open(&dir.join("node.redb")).expect("redb"),
    ));
    let id = streams
        .create_with_time("sales", &sale_fields(), Some("ts"), None)
        .expect("stream")
        .id;
    let (v1, v2) = (udf_component("tally_v1"), udf_component("tally_v2"));
    let text = format!(
        r#"
name = "patch"
[[sources]]
name = "sales"
stream = "sales"
cti_every = 1000
[[stages]]
name = "tally"
input = "sales"
kind = "reducer"
key = "user"
component = "{}"
checkpoint_every = 10
[[sinks]]
input = "tally"
path = "out.jsonl"
"#,
        v1.display()
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, &text).expect("write job");
    jobs.submit(
        &path,
        &text,
        vec![(v1.clone(), std::fs::read(&v1).expect("read"))],
        1,
    )
    .expect("submit");
    let stage_in = |jobs: &Jobs| {
        jobs.status(Some("patch")).expect("status")[0]
            .vertices
            .iter()
            .find(|v| v.name == "tally" && v.role == "stage")
            .map_or(0, |v| v.rows_in)
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (streams, jobs, stop) = (streams.clone(), jobs.clone(), stop.clone());
        std::thread::spawn(move || {
            let batch = 1000usize;
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if sent > stage_in(&jobs) + 20 * batch as u64 {
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
                let (_, t) = streams
                    .append(id, vec![sales(sent, batch)])
                    .expect("append");
                t.wait().expect("durable");
                sent += batch as u64;
            }
        })
    };
    let started = Instant::now();
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let sample =
        |samples: &mut Vec<(Duration, u64)>| samples.push((started.elapsed(), stage_in(&jobs)));
    while started.elapsed() < warm {
        sample(&mut samples);
        std::thread::sleep(Duration::from_millis(20));
    }
    let bytes = std::fs::read(&v2).expect("read");
    let t0 = started.elapsed();
    let report = jobs
        .deploy("patch", "tally", &v2.display().to_string(), bytes, None)
        .expect("deploy");
    let t1 = started.elapsed();
    let (position, _) = report.applied.expect("the switch took effect");
    while stage_in(&jobs) <= position {
        std::thread::sleep(Duration::from_micros(100));
    }
    let t2 = started.elapsed();
    while started.elapsed() < t1 + warm {
        sample(&mut samples);
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().expect("feeder");
    jobs.stop_all();
    streams.close();
    // Rows/s between two times, from the samples around them.
    let at = |t: Duration| -> (Duration, u64) {
        *samples
            .iter()
            .min_by_key(|(s, _)| s.abs_diff(t))
            .expect("samples")
    };
    let rate = |a: Duration, b: Duration| {
        let ((ta, ra), (tb, rb)) = (at(a), at(b));
        (rb - ra) as f64 / (tb - ta).as_secs_f64()
    };
    let half = Duration::from_millis(500);
    let two = Duration::from_secs(2);
    PatchFigures {
        deploy: t1 - t0,
        first_row: t2 - t1,
        switch: Duration::from_micros(report.switch_us),
        before: rate(t0.saturating_sub(two), t0),
        around: rate(t1.saturating_sub(half), t1 + half),
        during: rate(t0, t1.max(t0 + Duration::from_millis(100))),
        after: rate(t1 + half, t1 + half + two),
    }
}

fn reducer_in(jobs: &Jobs) -> u64 {
    jobs.status(Some("bench")).expect("status")[0]
        .vertices
        .iter()
        .find(|v| v.name == "flags")
        .map_or(0, |v| v.rows_in)
}

/// Bytes of the reducer's checkpointed keyed state (keys and values).
fn state_bytes(path: &Path) -> u64 {
    let storage = RedbStorage::open(path).expect("redb");
    let mut bytes = 0;
    storage
        .scan_state("snap/bench@1/flags", &mut |k, v| {
            bytes += (k.len() + v.len()) as u64
        })
        .expect("state");
    bytes
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let events = env("WEIR_BENCH_EVENTS", if quick { 20_000 } else { 400_000 }) as usize;
    let keys = env("WEIR_BENCH_KEYS", if quick { 10_000 } else { 1_000_000 });
    let ad_bytes = env("WEIR_BENCH_STATE_BYTES", if quick { 100 } else { 1_000 }) as usize;

    let dir = tempfile::tempdir().expect("tempdir");
    let durable_dir = dir.path().join("durable");
    let memory_dir = dir.path().join("memory");
    std::fs::create_dir_all(&durable_dir).expect("dir");
    std::fs::create_dir_all(&memory_dir).expect("dir");
    let durable = throughput(
        Arc::new(RedbStorage::open(&durable_dir.join("node.redb")).expect("redb")),
        &durable_dir,
        events,
    );
    let memory = throughput(Arc::new(MemStorage::default()), &memory_dir, events);
    println!(
        "throughput, {events} events, ingest stream -> source -> bot_filter (Wasm) -> user_stats (Wasm reducer) -> file sink"
    );
    println!("  durable (redb)   {durable:>12.0} events/s");
    println!("  in-memory        {memory:>12.0} events/s");
    println!("  durable/in-memory {:.2}", durable / memory);

    let latency_dir = dir.path().join("latency");
    std::fs::create_dir_all(&latency_dir).expect("dir");
    let (rate, seconds) = if quick { (2_000, 1) } else { (20_000, 10) };
    let l = latency(&latency_dir, rate, 200, seconds);
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    println!(
        "latency, ingest acknowledged -> rows in the sink file, {rate} events/s in batches of 200 (durable): p50 {:.2?} p90 {:.2?} p99 {:.2?} max {:.2?}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        l[l.len() - 1]
    );

    let patch_dir = dir.path().join("patch");
    std::fs::create_dir_all(&patch_dir).expect("dir");
    let warm = Duration::from_secs(if quick { 2 } else { 5 });
    let p = patching(&patch_dir, warm);
    println!(
        "hot patch under load (tally_v1 -> tally_v2, durable): deploy call {:.2?} (of which switch at the next CTI, durable: {:.2?}), deploy returned -> first row on the new version {:.2?}",
        p.deploy, p.switch, p.first_row
    );
    println!(
        "  stage rows/s: before {:.0}, 1 s around the switch {:.0} ({:+.1}%), during the deploy call {:.0} ({:+.1}%), after {:.0}",
        p.before,
        p.around,
        (p.around / p.before - 1.0) * 100.0,
        p.during,
        (p.during / p.before - 1.0) * 100.0,
        p.after
    );

    let recovery_dir = dir.path().join("recovery");
    std::fs::create_dir_all(&recovery_dir).expect("dir");
    let (state, built, took) = recovery(&recovery_dir, keys, ad_bytes);
    println!(
        "recovery, reducer with {keys} keys ({:.1} MB of keyed state, built in {built:.2?}): restart to caught up in {took:.2?}",
        state as f64 / 1e6
    );
}
