//! `weir udf dev`: from an edit to a running patch. Watches a UDF crate and,
//! on every save (debounced), builds it, runs its tests, replays the new
//! component next to the stage's running version over the input the stage
//! saw, and deploys it on confirmation (or with `--yes`); `r` rolls the last
//! deploy back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

use super::cluster::Connect;
use crate::net::Request;

/// How often the crate is looked at for changes.
const POLL: Duration = Duration::from_millis(300);
/// How long the crate must stay unchanged before a round starts.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// What `weir udf dev` was asked.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// The job.
    #[arg(long)]
    pub job: String,
    /// The stage.
    #[arg(long)]
    pub stage: String,
    /// The UDF crate.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Deploy every version that builds, passes its tests and replays,
    /// without asking.
    #[arg(long)]
    pub yes: bool,
    /// One round (build, test, replay, deploy), then exit.
    #[arg(long)]
    pub once: bool,
    /// Skip the crate's `cargo test`.
    #[arg(long)]
    pub no_test: bool,
    #[command(flatten)]
    pub connect: Connect,
}

/// Runs `weir udf dev`.
pub fn run(args: DevArgs) -> anyhow::Result<()> {
    let input = stdin_lines();
    let mut seen = stamp(&args.dir)?;
    loop {
        let outcome = round(&args, &input);
        if args.once {
            return outcome;
        }
        if let Err(e) = outcome {
            eprintln!("error: {e:#}");
        }
        println!(
            "watching {} for changes (r + Enter rolls the last deploy back, q + Enter quits)",
            args.dir.display()
        );
        loop {
            match input.recv_timeout(POLL) {
                Ok(line) if line.trim() == "q" => return Ok(()),
                Ok(line) if line.trim() == "r" => {
                    if let Err(e) = rollback(&args) {
                        eprintln!("error: {e:#}");
                    }
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                // No terminal: watch all the same, at the same pace.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
            }
            let now = stamp(&args.dir)?;
            if now != seen {
                // Debounced: editors write several files, and some twice.
                let mut settled = now;
                let mut since = Instant::now();
                while since.elapsed() < DEBOUNCE {
                    std::thread::sleep(POLL.min(DEBOUNCE));
                    let again = stamp(&args.dir)?;
                    if again != settled {
                        settled = again;
                        since = Instant::now();
                    }
                }
                seen = settled;
                break;
            }
        }
    }
}

/// One round: build, test, replay, and deploy if confirmed.
fn round(args: &DevArgs, input: &Receiver<String>) -> anyhow::Result<()> {
    let built = super::udf::build(&args.dir)?;
    let [(component, version)] = built.as_slice() else {
        bail!(
            "{} built {} components; `weir udf dev` watches a crate that builds one",
            args.dir.display(),
            built.len()
        );
    };
    println!("built {} (module {version})", component.display());
    if !args.no_test {
        let status = Command::new("cargo")
            .arg("test")
            .current_dir(&args.dir)
            .status()
            .context("running cargo test")?;
        if !status.success() {
            bail!("the crate's tests failed: not replayed or deployed");
        }
        println!("tests passed");
    }
    let bytes = std::fs::read(component)
        .with_context(|| format!("cannot read component {}", component.display()))?;
    let origin = component.display().to_string();
    super::stages::replay(
        &args.connect,
        Request::ReplayUdf {
            job: args.job.clone(),
            stage: args.stage.clone(),
            origin: origin.clone(),
            from: None,
            to: None,
        },
        bytes.clone(),
        false,
    )?;
    if !args.yes {
        println!(
            "deploy module {version} to job `{}` stage `{}`? [y/N]",
            args.job, args.stage
        );
        let answer = input.recv().unwrap_or_default();
        if !answer.trim().eq_ignore_ascii_case("y") {
            println!("not deployed");
            return Ok(());
        }
    }
    super::cluster::patch(
        &args.connect,
        Request::DeployUdf {
            job: args.job.clone(),
            stage: args.stage.clone(),
            origin,
            shadow: None,
        },
        Some(bytes),
    )
}

fn rollback(args: &DevArgs) -> anyhow::Result<()> {
    super::cluster::patch(
        &args.connect,
        Request::RollbackUdf {
            job: args.job.clone(),
            stage: args.stage.clone(),
            to: None,
        },
        None,
    )
}

/// Lines typed on stdin, as they come.
fn stdin_lines() -> Receiver<String> {
    let (send, recv) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            if send.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    recv
}

/// The latest change to the crate's sources: its manifest and every file
/// under `src/`, `tests/` and `wit/`.
fn stamp(dir: &Path) -> anyhow::Result<(SystemTime, usize)> {
    fn walk(path: &Path, latest: &mut (SystemTime, usize)) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    walk(&entry.path(), latest);
                }
            }
        } else if let Ok(modified) = meta.modified() {
            latest.0 = latest.0.max(modified);
            latest.1 += 1;
        }
    }
    if !dir.join("Cargo.toml").exists() {
        bail!("{} is not a crate: it has no Cargo.toml", dir.display());
    }
    let mut latest = (SystemTime::UNIX_EPOCH, 0);
    for part in ["Cargo.toml", "src", "tests", "wit"] {
        walk(&dir.join(part), &mut latest);
    }
    Ok(latest)
}
