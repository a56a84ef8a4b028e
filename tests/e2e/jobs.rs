//! Continuous jobs on a node: real `weir node` processes killed with SIGKILL
//! and restarted, real components, results compared byte for byte with an
//! uninterrupted run.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use weir::testkit::udf_component;

use super::node::{Node, cluster, ok, write};
use super::stderr;

/// A small deterministic generator (splitmix64), so failures reproduce from the printed seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const STREAMS: [&str; 2] = ["clicks_a", "clicks_b"];
const CHUNKS: usize = 30;
const CHUNK_EVENTS: usize = 120;

/// Chunk `k` of stream `s`: clicks in increasing time (jitter below the CTI lag),
/// a tenth of them from a bot network.
fn chunk(s: usize, k: usize) -> String {
    let mut rng = Rng((s as u64) << 32 | k as u64);
    let mut out = String::new();
    for i in 0..CHUNK_EVENTS {
        let n = (k * CHUNK_EVENTS + i) as u64;
        let ts = 1_700_000_000_000_000 + n * 10_000 + rng.below(5_000);
        let user = rng.below(30);
        let ip = if rng.below(10) == 0 {
            format!("10.66.0.{}", rng.below(250))
        } else {
            format!("84.{}.{}.7", s, rng.below(250))
        };
        out.push_str(&format!(
            "{{\"ts\":{ts},\"user\":\"u{user:02}\",\"ip\":\"{ip}\",\"agent\":\"Mozilla/5.0\",\"ad\":\"ad{}\"}}\n",
            rng.below(10)
        ));
    }
    out
}

/// Two ingest streams -> sources with a CTI lag -> union (multi-input merge) ->
/// bot filter (replay recovery) -> per-user reducer (checkpoints) -> file sink.
fn fraud_job(dir: &Path) {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "fraud"

[[sources]]
name = "a"
stream = "clicks_a"
cti_lag_us = 20000

[[sources]]
name = "b"
stream = "clicks_b"
cti_every = 100

[[stages]]
name = "all"
kind = "union"
inputs = ["a", "b"]

[[stages]]
name = "humans"
input = "all"
kind = "processor"
component = "{}"
params = {{ blocked_prefix = "10.66." }}
recovery = "replay"

[[stages]]
name = "flags"
input = "humans"
kind = "reducer"
key = "user"
component = "{}"
params = {{ window_us = 2_000_000, max_clicks = 6 }}
checkpoint_every = 3

[[sinks]]
input = "flags"
path = "out/flags.jsonl"
"#,
            udf_component("bot_filter").display(),
            udf_component("user_stats").display()
        ),
    );
}

fn create_streams(node: &Node, dir: &Path) {
    for s in STREAMS {
        ok(&node.weir(
            dir,
            &[
                "stream",
                "create",
                s,
                "--columns",
                "ts:int64,user:utf8,ip:utf8,agent:utf8,ad:utf8",
                "--time",
                "ts",
            ],
        ));
    }
}

fn ingest(node_addr: &str, dir: &Path, s: usize, k: usize) -> Output {
    let file = format!("chunk-{s}-{k}.jsonl");
    write(dir, &file, &chunk(s, k));
    super::weir(&["ingest", STREAMS[s], &file, "--node", node_addr], dir)
}

/// Entries stored in each ingest stream (one entry per chunk).
fn stored(node: &Node, dir: &Path) -> [usize; 2] {
    let list = ok(&node.weir(dir, &["stream", "list"]));
    let mut next = [0; 2];
    for line in list.lines() {
        let mut cols = line.split('\t');
        let (Some(name), Some(range)) = (cols.next(), cols.next()) else {
            continue;
        };
        if let Some(s) = STREAMS.iter().position(|s| *s == name) {
            next[s] = range
                .rsplit("..")
                .next()
                .and_then(|n| n.parse().ok())
                .expect("stream list shows seq LOW..NEXT");
        }
    }
    next
}

fn job_state(node: &Node, dir: &Path, job: &str) -> (String, String) {
    let out = ok(&node.weir(dir, &["job", "status", job, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("status is JSON");
    (v[0]["state"].as_str().unwrap_or_default().to_string(), out)
}

/// The seed of a crash test: `WEIR_CRASH_SEED`, or new; printed so that a
/// failure reproduces.
pub(crate) fn crash_seed(test: &str) -> u64 {
    let seed = std::env::var("WEIR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    println!("{test} seed {seed} (rerun with WEIR_CRASH_SEED={seed})");
    seed
}

/// Waits (bounded) until `job` finished; panics with its status if it failed or hangs.
pub(crate) fn wait_finished(node: &Node, dir: &Path, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (state, status) = job_state(node, dir, job);
        match state.as_str() {
            "finished" => return,
            "failed" => panic!("job failed:\n{status}"),
            _ if Instant::now() > deadline => panic!("job did not finish:\n{status}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn uninterrupted_output() -> String {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    create_streams(&node, d);
    fraud_job(d);
    ok(&node.weir(d, &["job", "submit", "job.toml"]));
    for k in 0..CHUNKS {
        for s in 0..2 {
            let out = ingest(&node.addr, d, s, k);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }
    for s in STREAMS {
        ok(&node.weir(d, &["stream", "close", s]));
    }
    wait_finished(&node, d, "fraud");
    std::fs::read_to_string(d.join("out/flags.jsonl")).expect("sink file")
}

#[test]
fn output_survives_twenty_kill_9s_byte_for_byte() {
    let expected = uninterrupted_output();
    assert!(
        expected.lines().count() > 50,
        "the job should flag users:\n{expected}"
    );

    let seed = crash_seed("crash test");
    let mut rng = Rng(seed);

    let dir = cluster();
    let d = dir.path();
    let mut node = Node::start(d, "data").expect("node starts");
    create_streams(&node, d);
    fraud_job(d);
    ok(&node.weir(d, &["job", "submit", "job.toml"]));

    let mut acked = [0usize; 2];
    let mut kills = 0;
    let mut closed = false;
    while kills < 22 {
        let mut next = stored(&node, d);
        for s in 0..2 {
            assert!(
                next[s] >= acked[s],
                "seed {seed}: {} holds {} chunks but {} were acknowledged",
                STREAMS[s],
                next[s],
                acked[s]
            );
        }
        if next == [CHUNKS; 2] && !closed {
            // Input over: close the streams; later kills land while the job drains.
            for s in STREAMS {
                let out = node.weir(d, &["stream", "close", s]);
                let text = stderr(&out);
                assert!(out.status.success() || text.contains("is closed"), "{text}");
            }
            closed = true;
        }
        // Ingest a few chunks, the last one possibly in flight when the node dies.
        let mut s = rng.below(2) as usize;
        let mut in_flight = None;
        for _ in 0..1 + rng.below(3) {
            if next[s] >= CHUNKS {
                s = 1 - s;
                if next[s] >= CHUNKS {
                    break;
                }
            }
            let k = next[s];
            if rng.below(3) == 0 {
                let (addr, dir_path) = (node.addr.clone(), d.to_path_buf());
                in_flight = Some((
                    s,
                    k,
                    std::thread::spawn(move || ingest(&addr, &dir_path, s, k)),
                ));
                break;
            }
            let out = ingest(&node.addr, d, s, k);
            assert!(out.status.success(), "seed {seed}: {}", stderr(&out));
            acked[s] = acked[s].max(k + 1);
            next[s] = k + 1;
            s = 1 - s;
        }
        // Kill at a random point: mid-batch, mid-commit, mid-snapshot.
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        node.kill9();
        kills += 1;
        if let Some((s, k, t)) = in_flight {
            let out = t.join().expect("ingest thread");
            if out.status.success() {
                acked[s] = acked[s].max(k + 1);
            }
        }
        node = Node::start(d, "data").expect("node restarts after kill -9");
    }
    // Feed whatever is left without kills, then let the job drain.
    let next = stored(&node, d);
    for s in 0..2 {
        assert!(next[s] >= acked[s], "seed {seed}: acknowledged chunks lost");
        for k in next[s]..CHUNKS {
            let out = ingest(&node.addr, d, s, k);
            assert!(out.status.success(), "seed {seed}: {}", stderr(&out));
        }
    }
    if !closed {
        for s in STREAMS {
            ok(&node.weir(d, &["stream", "close", s]));
        }
    }
    wait_finished(&node, d, "fraud");
    let got = std::fs::read_to_string(d.join("out/flags.jsonl")).expect("sink file");
    if got != expected {
        let first = got
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(expected.lines().count()));
        let kept = dir.keep();
        std::fs::write(kept.join("expected.jsonl"), &expected).expect("write");
        panic!(
            "seed {seed}: after {kills} kills the output differs from the uninterrupted run at line {} ({} lines vs {}); see {}",
            first + 1,
            got.lines().count(),
            expected.lines().count(),
            kept.display()
        );
    }
}

#[test]
fn a_job_naming_an_unknown_stream_or_component_is_refused_clearly() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    create_streams(&node, d);
    fraud_job(d);
    let text = std::fs::read_to_string(d.join("job.toml")).expect("job");

    write(
        d,
        "unknown-stream.toml",
        &text.replace("\"clicks_b\"", "\"clicks_c\""),
    );
    let out = node.weir(d, &["job", "submit", "unknown-stream.toml"]);
    let e = stderr(&out);
    assert!(!out.status.success());
    assert!(
        e.contains("sources[1] `b`")
            && e.contains("no stream `clicks_c` (known streams: clicks_a, clicks_b)"),
        "{e}"
    );

    let missing = text.replace(
        &udf_component("user_stats").display().to_string(),
        "/nowhere/user_stats.wasm",
    );
    write(d, "unknown-component.toml", &missing);
    let out = node.weir(d, &["job", "submit", "unknown-component.toml"]);
    let e = stderr(&out);
    assert!(
        !out.status.success() && e.contains("component /nowhere/user_stats.wasm does not exist"),
        "{e}"
    );

    write(
        d,
        "stdout.toml",
        &text.replace("path = \"out/flags.jsonl\"", "stdout = true"),
    );
    let e = stderr(&node.weir(d, &["job", "submit", "stdout.toml"]));
    assert!(e.contains("cannot write to stdout"), "{e}");

    // Nothing was left behind: the node has no job, and a good job still starts.
    let status = ok(&node.weir(d, &["job", "status"]));
    assert!(status.contains("no jobs"), "{status}");
    let out = ok(&node.weir(d, &["job", "submit", "job.toml"]));
    assert!(out.contains("job `fraud` submitted"), "{out}");
    let e = stderr(&node.weir(d, &["job", "submit", "job.toml"]));
    assert!(e.contains("job `fraud` is already on this node"), "{e}");
    let out = ok(&node.weir(d, &["job", "cancel", "fraud"]));
    assert!(out.contains("cancelled"), "{out}");
}

/// Lines `from..to` of a followed file: items with an id and a time.
fn items(from: u64, to: u64) -> String {
    (from..to)
        .map(|i| format!("{{\"ts\":{},\"id\":{i}}}\n", 1_000 + i * 10))
        .collect()
}

fn sink_lines(d: &Path) -> Vec<String> {
    std::fs::read_to_string(d.join("out/items.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_lines(d: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lines = sink_lines(d);
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_followed_file_is_processed_exactly_once_across_kills_with_bad_late_and_trapping_rows_dead_lettered()
 {
    let dir = cluster();
    let d = dir.path();
    let mut node = Node::start(d, "data").expect("node starts");
    write(d, "items.jsonl", &items(0, 100));
    write(
        d,
        "job.toml",
        &format!(
            r#"
name = "items"

[[sources]]
name = "items"
path = "items.jsonl"
follow = true
event_time = "ts"
schema = {{ ts = "int64", id = "int64" }}
on_error = "dead-letter"
cti_every = 10

[[stages]]
name = "double"
input = "items"
kind = "processor"
component = "{}"
params = {{ poison = 150 }}
on_trap = "dead-letter"

[[sinks]]
input = "double"
path = "out/items.jsonl"
"#,
            udf_component("panic_on_row").display()
        ),
    );
    let out = node.weir(d, &["job", "submit", "job.toml"]);
    if !out.status.success() {
        panic!("{}", stderr(&out));
    }
    assert_eq!(wait_lines(d, 100).len(), 100);
    let append = |text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("items.jsonl"))
            .expect("open");
        f.write_all(text.as_bytes()).expect("append");
    };
    // More lines, a malformed one and a late one; the node dies while reading them.
    append(&items(100, 200));
    append("{\"ts\": \"soon\", \"id\": -1}\n{\"ts\": 5, \"id\": -2}\n");
    node.kill9();
    node = Node::start(d, "data").expect("node restarts");
    append(&items(200, 300));
    std::thread::sleep(Duration::from_millis(150));
    node.kill9();
    node = Node::start(d, "data").expect("node restarts");
    let lines = wait_lines(d, 299);
    let ids: Vec<i64> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["id"].as_i64().expect("id")
        })
        .collect();
    let expected: Vec<i64> = (0..300).filter(|i| *i != 150).collect();
    assert_eq!(ids, expected, "every line exactly once, in order");
    let trapped = ok(&node.weir(d, &["stream", "read", "items@1.double.dead"]));
    assert!(
        trapped.contains("poison row id 150") && trapped.contains("\\\"id\\\":150"),
        "the trapping row is a dead letter naming the panic: {trapped}"
    );

    let dead = ok(&node.weir(d, &["stream", "read", "items@1.items.dead"]));
    assert!(
        dead.contains(":201: column `ts`") && dead.contains("column `ts`"),
        "malformed line named: {dead}"
    );
    assert!(
        dead.contains("late event") && dead.contains("\\\"id\\\":-2"),
        "late event dead-lettered: {dead}"
    );
    let status = ok(&node.weir(d, &["job", "status", "items"]));
    assert!(status.contains("running"), "{status}");

    // A line longer than a read chunk (4 MiB), and a last line without a
    // newline; then the file is declared ended and the job finishes.
    append(&format!(
        "{{\"ts\": 5000, \"id\": 300, \"pad\": \"{}\"}}\n",
        "p".repeat(5 << 20)
    ));
    append("{\"ts\": 5001, \"id\": 301}");
    let said = ok(&node.weir(
        d,
        &["job", "end-source", "--job", "items", "--source", "items"],
    ));
    assert!(said.contains("ends at the end of"), "{said}");
    wait_finished(&node, d, "items");
    assert_eq!(wait_lines(d, 301).len(), 301);

    // After a restart, status shows what the job did, from its durable positions.
    node.kill9();
    let node = Node::start(d, "data").expect("node restarts");
    let (state, status) = job_state(&node, d, "items");
    assert_eq!(state, "finished", "{status}");
    let v: serde_json::Value = serde_json::from_str(&status).expect("status is JSON");
    let vertex = |role: &str| {
        v[0]["vertices"]
            .as_array()
            .and_then(|vs| vs.iter().find(|x| x["role"] == role))
            .cloned()
            .unwrap_or_else(|| panic!("no {role} in {status}"))
    };
    let (source, stage) = (vertex("source"), vertex("stage"));
    assert_eq!(source["rows_in"], 304, "{source}");
    assert_eq!(source["rows_out"], 302, "{source}");
    assert_eq!(source["dead"], 2, "{source}");
    assert_eq!(stage["rows_in"], 302, "{stage}");
    assert_eq!(stage["rows_out"], 301, "{stage}");
    assert_eq!(stage["dead"], 1, "{stage}");
    assert_eq!(vertex("sink")["rows_in"], 301);
}

#[test]
fn late_events_are_the_same_offline_and_on_a_node() {
    // Event 3 starts before event 2: with the default policy (CTI = the
    // highest start so far) it is late, offline as on a node.
    let input = "{\"ts\": 10, \"id\": 1}\n{\"ts\": 20, \"id\": 2}\n{\"ts\": 15, \"id\": 3}\n{\"ts\": 30, \"id\": 4}\n";
    let job = format!(
        r#"name = "late"

[[sources]]
name = "items"
path = "items.jsonl"
event_time = "ts"
schema = {{ ts = "int64", id = "int64" }}

[[stages]]
name = "double"
input = "items"
kind = "processor"
component = "{}"

[[sinks]]
input = "double"
path = "out/items.jsonl"
"#,
        udf_component("panic_on_row").display()
    );
    let ids = |text: &str| -> Vec<i64> {
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                v["id"].as_i64().expect("id")
            })
            .collect()
    };
    let mut offline = Vec::new();
    for batch_size in ["1", "2", "1024"] {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "items.jsonl", input);
        write(dir.path(), "job.toml", &job);
        let out = super::weir(
            &["run", "job.toml", "--quiet", "--batch-size", batch_size],
            dir.path(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let text = std::fs::read_to_string(dir.path().join("out/items.jsonl")).expect("output");
        let dead = std::fs::read_to_string(dir.path().join("late.dead-letter.jsonl"))
            .expect("dead letters");
        assert!(
            dead.contains("late event") && dead.contains("\"id\":3"),
            "{dead}"
        );
        offline.push(ids(&text));
    }
    assert!(offline.iter().all(|o| *o == [1, 2, 4]), "{offline:?}");

    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    write(d, "items.jsonl", input);
    write(d, "job.toml", &job);
    ok(&node.weir(d, &["job", "submit", "job.toml"]));
    wait_finished(&node, d, "late");
    let online = std::fs::read_to_string(d.join("out/items.jsonl")).expect("output");
    assert_eq!(ids(&online), offline[0], "one rule for both");
}
