//! `weir bench nexmark`: Nexmark's queries (the scripts of
//! `examples/nexmark/`) over the built-in generator at a benchmark's size,
//! their outputs discarded, measured offline and on a node with durable
//! rStreams: events a second, events per CPU-second and peak memory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::exec::{RunOptions, run};
use crate::wasm::Runtime;

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run Nexmark's queries over the built-in generator and print, per
    /// query, events per second, events per CPU-second and peak memory.
    Nexmark(NexmarkArgs),
    /// Kill the coordinator's node of a cluster of local nodes, again and
    /// again, and print how long the others take to elect a new coordinator
    /// and to declare the dead member lost.
    Failover(super::failover::FailoverArgs),
    /// Run one Nexmark query as a job on one node and on a cluster of
    /// local nodes, and print time, throughput and CPU per event of each.
    Cluster(super::spread::SpreadArgs),
    /// Kill a member of a cluster of local nodes running a paced Nexmark
    /// query, and print how long its vertices take to run again on the
    /// others and to write past where they stood.
    Recovery(super::recovery::RecoveryArgs),
    /// Ingest into a stream of one local node and of a cluster of local
    /// nodes (each batch durable on two members before it is
    /// acknowledged), and print throughput, CPU and loopback traffic per
    /// event of each.
    Ingest(super::replicated::IngestArgs),
}

/// `weir bench nexmark`.
#[derive(Debug, Args)]
pub struct NexmarkArgs {
    /// One query: the script `QUERY.wsql` of the queries' directory (e.g. q5).
    #[arg(long, conflicts_with = "all")]
    query: Option<String>,
    /// Every query of the directory (the default).
    #[arg(long)]
    all: bool,
    /// Events over the three streams together: a count, or with K, M or G (10M).
    #[arg(long, default_value = "10M", value_parser = count)]
    events: u64,
    /// rVertices per keyed stage, unless a script sets its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    parallelism: u32,
    /// Also run each query as a job on a node (a `weir node` process with
    /// its own data directory): durable rStreams, the same output.
    #[arg(long)]
    node: bool,
    /// The queries' directory.
    #[arg(long, default_value = "examples/nexmark")]
    dir: PathBuf,
    /// One JSON array of the measurements instead of a table.
    #[arg(long)]
    json: bool,
}

/// One query's run in one mode.
#[derive(Debug, Serialize, Deserialize)]
struct Measured {
    query: String,
    /// `offline` (`weir run`) or `node`.
    mode: String,
    parallelism: u32,
    events: u64,
    wall_seconds: f64,
    cpu_seconds: f64,
    events_per_second: f64,
    events_per_cpu_second: f64,
    peak_memory_bytes: u64,
}

/// `1000`, `500K`, `10M`, `1G`.
pub(super) fn count(text: &str) -> Result<u64, String> {
    let t = text.trim().replace('_', "");
    let (digits, scale) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1_000),
        Some('M') => (&t[..t.len() - 1], 1_000_000),
        Some('G') => (&t[..t.len() - 1], 1_000_000_000),
        _ => (&t[..], 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}` is not a positive count (such as 1000000, 500K or 10M)"))
}

/// Runs `weir bench`.
pub fn bench(command: BenchCommand) -> anyhow::Result<()> {
    let args = match command {
        BenchCommand::Nexmark(args) => args,
        BenchCommand::Failover(args) => return super::failover::failover(args),
        BenchCommand::Recovery(args) => return super::recovery::recovery(args),
        BenchCommand::Cluster(args) => return super::spread::spread(args),
        BenchCommand::Ingest(args) => return super::replicated::replicated(args),
    };
    let queries = queries(&args)?;
    let mut results = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        if !args.json || std::io::stderr().is_terminal() {
            eprintln!(
                "[{}/{}] {q}: {} events{}",
                i + 1,
                queries.len(),
                args.events,
                if args.node {
                    ", offline then on a node"
                } else {
                    ""
                }
            );
        }
        if queries.len() == 1 {
            results.push(offline(&args, q)?);
            if args.node {
                results.push(on_node(&args, q)?);
            }
        } else {
            // Each query in its own process: its peak memory is its own.
            results.extend(alone(&args, q)?);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", table(&results));
    }
    Ok(())
}

/// The queries asked for: `--query`, or every `q*.wsql` of the directory
/// in number order.
fn queries(args: &NexmarkArgs) -> anyhow::Result<Vec<String>> {
    if let Some(q) = &args.query {
        let path = args.dir.join(format!("{q}.wsql"));
        if !path.is_file() {
            bail!(
                "no query `{q}`: {} does not exist (queries: {})",
                path.display(),
                all_queries(&args.dir)?.join(", ")
            );
        }
        return Ok(vec![q.clone()]);
    }
    let all = all_queries(&args.dir)?;
    if all.is_empty() {
        bail!(
            "{} holds no query scripts (q0.wsql, q1.wsql, ...)",
            args.dir.display()
        );
    }
    Ok(all)
}

fn all_queries(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut found: Vec<(u32, String)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the queries' directory {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let q = name.strip_suffix(".wsql")?;
            // q5, q1_wasm: a number, then maybe a variant's name.
            let rest = q.strip_prefix('q')?;
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let n = rest[..digits].parse::<u32>().ok()?;
            (rest.len() == digits || rest[digits..].starts_with('_')).then(|| (n, q.to_string()))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, q)| q).collect())
}

/// Query `q` at the benchmark's size, unpaced, its outputs discarded.
fn sized(args: &NexmarkArgs, q: &str) -> anyhow::Result<(PathBuf, String)> {
    let path = args.dir.join(format!("{q}.wsql"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let file = path.display().to_string();
    let text = weir_sql::rewrite(&file, &text, &[("events", args.events), ("pace", 0)], true)?;
    Ok((path, text))
}

/// Runs `q` in this process as `weir run` does.
fn offline(args: &NexmarkArgs, q: &str) -> anyhow::Result<Measured> {
    let (path, text) = sized(args, q)?;
    let plan = crate::job::parse_with(
        &path,
        &text,
        true,
        &weir_node::components::WasmComponents::files(),
        args.parallelism as usize,
    )?;
    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    let options = RunOptions {
        batch_size: None,
        threads: 2,
        progress: std::io::stderr().is_terminal(),
    };
    let (cpu, wall) = (cpu_seconds(None)?, Instant::now());
    run(&plan, &runtime, &options)?;
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds(None)? - cpu);
    Ok(measured(args, q, "offline", wall, cpu, peak_memory(None)?))
}

/// Runs `q` as a job on a new node with its own data directory.
fn on_node(args: &NexmarkArgs, q: &str) -> anyhow::Result<Measured> {
    let (path, text) = sized(args, q)?;
    let me = std::env::current_exe()?;
    let work = std::env::temp_dir().join(format!("weir-bench-{}-{q}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let _clean = Remove(work.clone());
    let weir = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(&me)
            .args(args)
            .current_dir(&work)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "weir {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    weir(&["cluster", "init", "--dir", "certs"])?;
    let (node, addr) = spawn_node(&work, &["--data", "data", "--listen", "127.0.0.1:0"])?;
    // Beside the original, so that its components' paths still hold.
    let job = format!("bench_{q}");
    let script = path.with_file_name(format!("{job}.wsql"));
    std::fs::write(&script, &text)?;
    let _script = Remove(script.clone());
    let pid = node.0.id();
    let script_arg = std::path::absolute(&script)?.display().to_string();
    let parallelism = args.parallelism.to_string();
    let connect = ["--node", addr.as_str(), "--certs", "certs"];
    let (cpu, wall) = (cpu_seconds(Some(pid))?, Instant::now());
    let mut submit = vec!["job", "submit", &script_arg, "--parallelism", &parallelism];
    submit.extend(connect);
    weir(&submit)?;
    std::fs::remove_file(&script)?;
    let mut status = vec!["job", "status", &job, "--json"];
    status.extend(connect);
    loop {
        let out = weir(&status)?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        match v[0]["state"].as_str().unwrap_or_default() {
            "finished" => break,
            "failed" => bail!("{q} failed on the node: {out}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds(Some(pid))? - cpu);
    let peak = peak_memory(Some(pid))?;
    Ok(measured(args, q, "node", wall, cpu, peak))
}

/// Runs `q` in a child `weir bench nexmark --query q --json`.
fn alone(args: &NexmarkArgs, q: &str) -> anyhow::Result<Vec<Measured>> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["bench", "nexmark", "--query", q, "--json", "--events"])
        .arg(args.events.to_string())
        .arg("--parallelism")
        .arg(args.parallelism.to_string())
        .arg("--dir")
        .arg(&args.dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if args.node {
        command.arg("--node");
    }
    let out = command.output()?;
    if !out.status.success() {
        bail!("{q}: the benchmark failed (its error is above)");
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn measured(args: &NexmarkArgs, q: &str, mode: &str, wall: f64, cpu: f64, peak: u64) -> Measured {
    let events = args.events as f64;
    Measured {
        query: q.to_string(),
        mode: mode.to_string(),
        parallelism: args.parallelism,
        events: args.events,
        wall_seconds: wall,
        cpu_seconds: cpu,
        events_per_second: events / wall.max(1e-9),
        events_per_cpu_second: events / cpu.max(1e-9),
        peak_memory_bytes: peak,
    }
}

/// The results as a table.
fn table(results: &[Measured]) -> String {
    let mut out = format!(
        "{:<10} {:<8} {:>4} {:>12} {:>9} {:>9} {:>12} {:>14} {:>9}\n",
        "query", "mode", "par", "events", "wall s", "CPU s", "events/s", "events/CPU-s", "peak MiB"
    );
    for r in results {
        out.push_str(&format!(
            "{:<10} {:<8} {:>4} {:>12} {:>9.2} {:>9.2} {:>12} {:>14} {:>9.0}\n",
            r.query,
            r.mode,
            r.parallelism,
            r.events,
            r.wall_seconds,
            r.cpu_seconds,
            si(r.events_per_second),
            si(r.events_per_cpu_second),
            r.peak_memory_bytes as f64 / (1 << 20) as f64
        ));
    }
    out
}

/// `2.41 M`, `830 K`.
fn si(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0} K", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// CPU time (user and system) of this process, or of process `pid`.
pub(super) fn cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf reads a constant of the system; it has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11) + ticks(12)) as f64 / per_second)
}

/// The peak resident memory of this process, or of process `pid`.
fn peak_memory(pid: Option<u32>) -> anyhow::Result<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".into(),
    };
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(kib * 1024)
}

/// Starts `weir node start ARGS --certs certs` in `work`; returns it and
/// the address it listens on.
pub(super) fn spawn_node(work: &Path, args: &[&str]) -> anyhow::Result<(Killed, String)> {
    let node = Command::new(std::env::current_exe()?)
        .args(["node", "start"])
        .args(args)
        .args(["--certs", "certs"])
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut node = Killed(node);
    use std::io::BufRead;
    let mut line = String::new();
    let stdout = node.0.stdout.take().context("the node's output")?;
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line
        .trim()
        .strip_prefix("weir node listening on ")
        .with_context(|| format!("the node did not start: {line}"))?
        .to_string();
    Ok((node, addr))
}

/// A fresh scratch directory `weir-{name}-{pid}` in the temporary
/// directory with a cluster CA and certificates in `certs` (`weir cluster
/// init`), removed when the returned guard is dropped.
pub(super) fn cluster_scratch(name: &str) -> anyhow::Result<(PathBuf, Remove)> {
    let work = std::env::temp_dir().join(format!("weir-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let clean = Remove(work.clone());
    let out = Command::new(std::env::current_exe()?)
        .args(["cluster", "init", "--dir", "certs"])
        .current_dir(&work)
        .output()?;
    if !out.status.success() {
        bail!(
            "weir cluster init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((work, clean))
}

/// Removes a file or directory when dropped.
pub(super) struct Remove(pub(super) PathBuf);

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

/// Kills a child process when dropped.
pub(super) struct Killed(pub(super) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_k_m_and_g() {
        assert_eq!(count("10M"), Ok(10_000_000));
        assert_eq!(count("500k"), Ok(500_000));
        assert_eq!(count("1_000"), Ok(1000));
        assert!(count("0").is_err());
        assert!(
            count("ten")
                .unwrap_err()
                .contains("`ten` is not a positive count")
        );
    }
}
