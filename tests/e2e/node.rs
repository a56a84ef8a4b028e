//! Nodes: real `weir node` processes on 127.0.0.1 with their own data
//! directories, talked to over QUIC with mutual TLS by the real CLI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::{stderr, weir};

/// A running `weir node start`; killed with SIGKILL when dropped.
pub(crate) struct Node {
    child: Child,
    pub(crate) addr: String,
}

impl Node {
    pub(crate) fn start(dir: &Path, data: &str) -> Result<Node, String> {
        Self::start_with(dir, data, &[])
    }

    fn start_with(dir: &Path, data: &str, env: &[(&str, &str)]) -> Result<Node, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .envs(env.iter().copied())
            .args([
                "node",
                "start",
                "--data",
                data,
                "--listen",
                "127.0.0.1:0",
                "--certs",
                "certs",
            ])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir node");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read");
        match line.trim().strip_prefix("weir node listening on ") {
            Some(addr) => Ok(Node {
                addr: addr.to_string(),
                child,
            }),
            None => {
                let out = child.wait_with_output().expect("wait");
                Err(stderr(&out))
            }
        }
    }

    /// `weir ARGS --node ADDR` in `dir`.
    pub(crate) fn weir(&self, dir: &Path, args: &[&str]) -> Output {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["--node", &self.addr]);
        weir(&all, dir)
    }

    pub(crate) fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn cluster() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = weir(&["cluster", "init", "--dir", "certs"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

pub(crate) fn ok(out: &Output) -> String {
    assert!(out.status.success(), "weir failed: {}", stderr(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn create_clicks(node: &Node, dir: &Path) {
    ok(&node.weir(
        dir,
        &[
            "stream",
            "create",
            "clicks",
            "--columns",
            "user:utf8,url:utf8,ts:int64",
            "--time",
            "ts",
        ],
    ));
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn clicks(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                "{{\"user\":\"u{}\",\"url\":\"/p/{i}\",\"ts\":{}}}\n",
                i % 7,
                1000 + i
            )
        })
        .collect()
}

fn read_all(node: &Node, dir: &Path) -> Vec<String> {
    ok(&node.weir(dir, &["stream", "read", "clicks", "--from", "0"]))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn ingest_is_durable_validated_and_readable_over_mutual_tls() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    create_clicks(&node, d);
    write(d, "good.jsonl", &clicks(0, 3));
    let out = ok(&node.weir(d, &["ingest", "clicks", "good.jsonl"]));
    assert!(out.contains("3 events stored durably in `clicks`"), "{out}");

    // A request with bad rows is refused as a whole, naming file, line and column.
    let bad = format!(
        "{}{}\nnot json\n{}",
        clicks(10, 1).trim_end(),
        "\n{\"user\":\"x\",\"url\":\"/\",\"ts\":\"late\"}",
        clicks(11, 1)
    );
    write(d, "bad.jsonl", &bad);
    let out = node.weir(d, &["ingest", "clicks", "bad.jsonl"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("nothing was stored: 2 bad row(s)"), "{err}");
    assert!(
        err.contains("bad.jsonl:2: column `ts`: expected int64, found a string \"late\""),
        "{err}"
    );
    assert!(err.contains("bad.jsonl:3: invalid JSON"), "{err}");

    let lines = read_all(&node, d);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines[0],
        r#"{"_seq":0,"_start":1000,"_end":1001,"user":"u0","url":"/p/0","ts":1000}"#
    );

    // Unknown streams are named, with the ones that exist.
    let out = node.weir(d, &["ingest", "nope", "good.jsonl"]);
    assert!(
        stderr(&out).contains("no stream `nope` (known streams: clicks)"),
        "{}",
        stderr(&out)
    );

    // A client whose certificate is not from the cluster CA is refused.
    ok(&weir(&["cluster", "init", "--dir", "other"], d));
    std::fs::create_dir(d.join("mixed")).expect("mkdir");
    for (from, name) in [
        ("certs", "ca.pem"),
        ("other", "client.pem"),
        ("other", "client.key"),
    ] {
        std::fs::copy(d.join(from).join(name), d.join("mixed").join(name)).expect("copy");
    }
    let out = node.weir(d, &["stream", "list", "--certs", "mixed"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refused this client"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn acknowledged_events_survive_kill_9_and_requests_are_all_or_nothing() {
    let dir = cluster();
    let d = dir.path();
    let mut node = Node::start(d, "data").expect("node starts");
    create_clicks(&node, d);
    let mut acknowledged = 0;
    for round in 0..5 {
        // One acknowledged request, then one in flight while the node is killed.
        write(d, "acked.jsonl", &clicks(acknowledged, 500));
        ok(&node.weir(d, &["ingest", "clicks", "acked.jsonl"]));
        acknowledged += 500;
        write(d, "inflight.jsonl", &clicks(100_000 + round * 1000, 1000));
        let inflight = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["ingest", "clicks", "inflight.jsonl", "--node", &node.addr])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ingest");
        std::thread::sleep(std::time::Duration::from_millis(20 * round as u64));
        node.kill9();
        // The in-flight client lost its node; it is not waited for.
        let mut inflight = inflight;
        let _ = inflight.kill();
        let _ = inflight.wait();
        node = Node::start(d, "data").expect("node restarts");
        let lines = read_all(&node, d);
        let acked_seen: usize = (0..acknowledged)
            .filter(|i| {
                lines
                    .iter()
                    .any(|l| l.contains(&format!("\"url\":\"/p/{i}\",")))
            })
            .count();
        assert_eq!(
            acked_seen, acknowledged,
            "round {round}: acknowledged events lost"
        );
        // An in-flight request is stored whole or not at all.
        for r in 0..=round {
            let first = 100_000 + r * 1000;
            let n = (first..first + 1000)
                .filter(|i| {
                    lines
                        .iter()
                        .any(|l| l.contains(&format!("\"url\":\"/p/{i}\",")))
                })
                .count();
            assert!(
                n == 0 || n == 1000,
                "round {round}: request {r} half-stored ({n} of 1000)"
            );
        }
    }
}

#[test]
fn a_damaged_database_stops_the_node_with_a_clear_error() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    create_clicks(&node, d);
    write(d, "good.jsonl", &clicks(0, 100));
    ok(&node.weir(d, &["ingest", "clicks", "good.jsonl"]));
    node.kill9();
    let db = d.join("data").join("node.redb");
    let bytes = std::fs::read(&db).expect("read db");
    std::fs::write(&db, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = Node::start(d, "data")
        .err()
        .expect("the node refuses to start");
    assert!(err.contains("node.redb is damaged"), "{err}");
    assert!(err.contains("Weir did not modify it"), "{err}");
    assert_eq!(std::fs::read(&db).expect("read").len(), bytes.len() / 2);
}

#[test]
fn a_full_disk_stops_ingest_with_the_reason_and_loses_nothing_acknowledged() {
    let dir = cluster();
    let d = dir.path();
    // Commit 1 creates the stream, commits 2 and 3 are two ingests; then the "disk is full".
    let node =
        Node::start_with(d, "data", &[("WEIR_TEST_FAIL_AFTER_COMMITS", "3")]).expect("node starts");
    create_clicks(&node, d);
    for i in 0..2 {
        write(d, "part.jsonl", &clicks(i * 10, 10));
        ok(&node.weir(d, &["ingest", "clicks", "part.jsonl"]));
    }
    write(d, "part.jsonl", &clicks(20, 10));
    for _ in 0..2 {
        let out = node.weir(d, &["ingest", "clicks", "part.jsonl"]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains("accepts no more writes"), "{err}");
        assert!(err.contains("no space left on device"), "{err}");
    }
    // Reads still work, and show exactly the acknowledged events.
    assert_eq!(read_all(&node, d).len(), 20);
    node.kill9();
    let node = Node::start(d, "data").expect("node restarts");
    assert_eq!(read_all(&node, d).len(), 20);
    ok(&node.weir(d, &["ingest", "clicks", "part.jsonl"]));
    assert_eq!(read_all(&node, d).len(), 30);
}

#[test]
fn a_following_reader_sees_events_ingested_after_it_started() {
    let dir = cluster();
    let d = dir.path();
    let node = Node::start(d, "data").expect("node starts");
    create_clicks(&node, d);
    let mut reader = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "stream", "read", "clicks", "--from", "0", "--follow", "--node", &node.addr,
        ])
        .current_dir(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn reader");
    write(d, "a.jsonl", &clicks(0, 5));
    ok(&node.weir(d, &["ingest", "clicks", "a.jsonl"]));
    write(d, "b.jsonl", &clicks(5, 5));
    ok(&node.weir(d, &["ingest", "clicks", "b.jsonl"]));
    let stdout = reader.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    while seen.len() < 10 {
        match lines.next() {
            Some(Ok(line)) => seen.push(line),
            _ => break,
        }
    }
    let _ = reader.kill();
    let _ = reader.wait();
    assert_eq!(seen.len(), 10, "{seen:?}");
    assert!(seen[9].contains("\"url\":\"/p/9\""), "{}", seen[9]);
}
