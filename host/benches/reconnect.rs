//! How fast a client notices that its node died, and how long an ingest in
//! flight takes to be stored once after a `kill -9`, with real `weir`
//! processes on 127.0.0.1.
//!
//! Per round: an ingest of `WEIR_BENCH_ROWS` events (default 2,000,000) starts,
//! the node is killed 300 ms later, and either
//! - (restart) started again on its address 300 ms after the kill: the client
//!   learns of the loss from the new node's stateless reset, or
//! - (gone) left down for 4 s: the client learns of it from the idle timeout.
//!
//! Prints, per case, the median over `WEIR_BENCH_ROUNDS` rounds (default 5) of
//! the time from the kill to the client's first "sending again" line, and
//! (restart) to the ingest being acknowledged.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

fn start_node(dir: &Path, listen: &str) -> (Child, String) {
    let mut child = weir()
        .args([
            "node", "start", "--data", "data", "--listen", listen, "--certs", "certs", "--files",
            ".",
        ])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let addr = line
        .trim()
        .strip_prefix("weir node listening on ")
        .expect("the node listens")
        .to_string();
    (child, addr)
}

fn run(dir: &Path, args: &[&str]) {
    let out = weir().args(args).current_dir(dir).output().expect("weir");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One round: (kill → first retry line, kill → acknowledged) in seconds;
/// the first is `None` when the ingest was not in flight at the kill.
fn round(dir: &Path, node: &mut Child, addr: &str, k: usize, down: Duration) -> (Option<f64>, f64) {
    let producer = format!("round-{k}-{}", down.as_millis());
    let mut client = weir()
        .args([
            "ingest",
            "clicks",
            "big.jsonl",
            "--producer",
            &producer,
            "--node",
            addr,
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ingest");
    std::thread::sleep(Duration::from_millis(300));
    node.kill().expect("kill -9");
    node.wait().expect("wait");
    let killed = Instant::now();
    let stderr = client.stderr.take().expect("stderr");
    let said = std::thread::spawn(move || {
        let mut first = None;
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            first.get_or_insert_with(|| killed.elapsed().as_secs_f64());
            all.push_str(&line);
            all.push('\n');
        }
        (first, all)
    });
    std::thread::sleep(down);
    *node = start_node(dir, addr).0;
    let status = client.wait().expect("ingest ends");
    let stored = killed.elapsed().as_secs_f64();
    let (noticed, all) = said.join().expect("reader");
    assert!(
        status.success(),
        "the ingest is stored after the restart: {all}"
    );
    (noticed, stored)
}

fn main() {
    let rows: usize = std::env::var("WEIR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let rounds: usize = std::env::var("WEIR_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    run(d, &["cluster", "init", "--dir", "certs"]);
    let text: String = (0..rows)
        .map(|i| {
            format!(
                "{{\"user\":\"u{}\",\"url\":\"/p/{i}\",\"ts\":{}}}\n",
                i % 7,
                i
            )
        })
        .collect();
    std::fs::write(d.join("big.jsonl"), text).expect("write");
    let (mut node, addr) = start_node(d, "127.0.0.1:0");
    run(
        d,
        &[
            "stream",
            "create",
            "clicks",
            "--columns",
            "user:utf8,url:utf8,ts:int64",
            "--time",
            "ts",
            "--node",
            &addr,
        ],
    );
    for (case, down) in [
        ("restart", Duration::from_millis(300)),
        ("gone", Duration::from_secs(4)),
    ] {
        let (mut noticed, mut stored) = (Vec::new(), Vec::new());
        for k in 0..rounds {
            let (n, s) = round(d, &mut node, &addr, k, down);
            // Only rounds whose ingest was in flight at the kill count.
            if let Some(n) = n {
                noticed.push(n);
                stored.push(s);
            }
        }
        if noticed.is_empty() {
            println!("{case:8}: no ingest was in flight at the kill; raise WEIR_BENCH_ROWS");
            continue;
        }
        let in_flight = noticed.len();
        println!(
            "{case:8} ({rows} events, node down {} ms): kill -> client notices {:.2} s, kill -> stored once {:.2} s (medians of {in_flight} rounds in flight of {rounds})",
            down.as_millis(),
            median(noticed),
            median(stored),
        );
    }
    let _ = node.kill();
    let _ = node.wait();
}
