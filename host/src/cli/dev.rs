//! `weir udf dev`: from an edit to a running patch. Watches a UDF crate and,
//! on every save (debounced), builds it, runs its tests, replays the new
//! component next to the stage's running version over the input the stage
//! saw, and deploys it on confirmation (or with `--yes`); `r` rolls the last
//! deploy back. On a terminal each of these is one keystroke; from a pipe,
//! one line.

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
    let (input, _terminal) = keys();
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
            "watching {} for changes (r rolls the last deploy back, q quits)",
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
    super::patches::patch(
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
    super::patches::patch(
        &args.connect,
        Request::RollbackUdf {
            job: args.job.clone(),
            stage: args.stage.clone(),
            to: None,
        },
        None,
    )
}

/// What is typed on stdin, as it comes: each key on a terminal (put in
/// non-canonical mode until the returned guard drops), each line otherwise.
fn keys() -> (Receiver<String>, Option<Terminal>) {
    let terminal = Terminal::keystrokes();
    let by_key = terminal.is_some();
    let (send, recv) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        if by_key {
            let mut byte = [0u8; 1];
            while stdin.read(&mut byte).is_ok_and(|n| n == 1) {
                let key = char::from(byte[0]);
                if !key.is_whitespace() && send.send(key.to_string()).is_err() {
                    break;
                }
            }
        } else {
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut stdin, &mut line).is_ok_and(|n| n > 0) {
                if send.send(std::mem::take(&mut line)).is_err() {
                    break;
                }
            }
        }
    });
    (recv, terminal)
}

/// A terminal on stdin that hands over each key as it is pressed (echo and
/// Ctrl-C as usual); its earlier mode comes back on drop.
struct Terminal {
    before: libc::termios,
}

impl Terminal {
    fn keystrokes() -> Option<Terminal> {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return None;
        }
        // SAFETY: `termios` is plain data, filled in by `tcgetattr` before
        // it is read; fd 0 is a terminal (checked above).
        unsafe {
            let mut before: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut before) != 0 {
                return None;
            }
            let mut keys = before;
            keys.c_lflag &= !libc::ICANON;
            keys.c_cc[libc::VMIN] = 1;
            keys.c_cc[libc::VTIME] = 0;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &keys) != 0 {
                return None;
            }
            Some(Terminal { before })
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes `tcgetattr` read from fd 0.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.before);
        }
    }
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
