//! Query scripts offline (`weir run`'s path, one thread): events per
//! CPU-second for a tumbling count, a hopping count (size 10 s, hop 2 s), a
//! temporal join and a hopping aggregate of every built-in function, over
//! generated JSONL, whole path included (JSON parsing, the operators,
//! canonical JSONL output).
//!
//! `cargo bench -p weir-host --bench queries` (size: WEIR_BENCH_EVENTS,
//! default 1,000,000 clicks). Prints a table; results go to docs/benchmarks.md.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use weir::exec::{RunOptions, run};
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
    ];
    let runtime = Arc::new(Runtime::new(Some(d.join("cache"))).expect("runtime"));
    println!("{n} clicks, one thread, whole path (JSON in, JSONL out)");
    println!("{:<36} {:>10} {:>16}", "query", "CPU s", "events/CPU-s");
    for (name, text, events) in queries {
        let path = d.join("q.wsql");
        std::fs::write(&path, &text).expect("script");
        let plan = weir::sql::compile(&path, &text).expect("compiles");
        let options = RunOptions {
            batch_size: None,
            threads: 1,
            progress: false,
        };
        let before = cpu();
        run(&plan, &runtime, &options).expect("runs");
        let used = cpu() - before;
        println!("{name:<36} {used:>10.2} {:>16.0}", events as f64 / used);
    }
}
