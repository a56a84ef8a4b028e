//! `weir udf new | build | test | inspect | deploy | history | rollback`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};

use crate::wasm::Runtime;

/// UDF commands.
#[derive(Debug, Subcommand)]
pub enum UdfCommand {
    /// Create a ready UDF crate from a template.
    New {
        /// Crate name (also the directory).
        name: String,
        /// What kind of UDF.
        #[arg(long, value_enum, default_value_t = Kind::Processor)]
        kind: Kind,
        /// The weir-sdk to depend on (default: the SDK this weir was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build the UDF crate (or workspace) in DIR into WebAssembly components.
    Build {
        /// The crate directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run the UDF's component over a sample file (rows and CTIs, then end
    /// of input) as a job's stage would, print its output, and compare it
    /// with an expected file.
    Test(super::sample::TestArgs),
    /// Show a component's world, versions, imports, exports and size.
    Inspect {
        /// The component file.
        file: PathBuf,
    },
    /// Hot-patch a stage of a running job with a new module version: validated
    /// on the node first, then switched at the stage's next CTI.
    Deploy {
        /// The job.
        #[arg(long)]
        job: String,
        /// The stage.
        #[arg(long)]
        stage: String,
        /// The component (`weir udf build` output).
        file: PathBuf,
        /// First run the new version beside the running one on the stage's
        /// last N input rows and report how many outputs differ.
        #[arg(long, value_name = "N")]
        shadow: Option<u64>,
        #[command(flatten)]
        connect: super::cluster::Connect,
    },
    /// Run a candidate version next to a stage's running one over the input
    /// the stage really saw, from its state at that position (its latest
    /// checkpoint by default), and show the output rows that differ.
    /// Nothing of the job changes.
    Replay {
        /// The job.
        #[arg(long)]
        job: String,
        /// The stage.
        #[arg(long)]
        stage: String,
        /// The candidate component.
        file: PathBuf,
        /// The first input seq (default: the stage's latest checkpoint).
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// One past the last input seq (default: all the input holds).
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: super::cluster::Connect,
    },
    /// Watch a UDF crate and, on every save, build it, run its tests,
    /// replay it next to a stage's running version, and deploy it on
    /// confirmation (or `--yes`); `r` rolls the last deploy back.
    Dev(super::dev::DevArgs),
    /// List the UDF stages of the jobs on a node: per stage the running
    /// module version, its lag behind its input, rows/s, rows in and out,
    /// dead letters, failed calls (traps), fuel and memory used.
    List {
        /// Only this job's stages.
        #[arg(long)]
        job: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: super::cluster::Connect,
    },
    /// Show what a stage's UDF logged and printed lately (the node keeps
    /// the last 2,000 lines per stage), each with the module version and
    /// input position of its call.
    Logs {
        /// The job.
        #[arg(long)]
        job: String,
        /// The stage.
        #[arg(long)]
        stage: String,
        /// Keep showing lines as they come, until the stage ends.
        #[arg(long)]
        follow: bool,
        /// Print the JSON lines the node keeps instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: super::cluster::Connect,
    },
    /// List every module version a stage ran, with the input position where
    /// each took effect.
    History {
        /// The job.
        #[arg(long)]
        job: String,
        /// The stage.
        #[arg(long)]
        stage: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: super::cluster::Connect,
    },
    /// Return a stage to an earlier version (by default the one before the
    /// current one), at its next CTI.
    Rollback {
        /// The job.
        #[arg(long)]
        job: String,
        /// The stage.
        #[arg(long)]
        stage: String,
        /// A version from the stage's history (a prefix of 6 or more hex digits).
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        #[command(flatten)]
        connect: super::cluster::Connect,
    },
}

/// Template kinds for `weir udf new`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// A map over typed rows (filter, map, flat-map).
    Processor,
    /// A keyed reducer with host-owned state.
    Reducer,
    /// A keyed reducer with event-time timers: totals per tumbling window,
    /// each emitted once a CTI passes the window's end.
    TimedReducer,
}

/// Runs a UDF command.
pub fn main(command: UdfCommand) -> anyhow::Result<()> {
    match command {
        UdfCommand::New { name, kind, sdk } => new(&name, kind, sdk),
        UdfCommand::Build { dir } => {
            for (path, version) in build(&dir)? {
                println!("{}  module {}", path.display(), version);
            }
            Ok(())
        }
        UdfCommand::Inspect { file } => inspect(&file),
        UdfCommand::Test(args) => super::sample::run(args),
        UdfCommand::Deploy {
            job,
            stage,
            file,
            shadow,
            connect,
        } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read component {}", file.display()))?;
            let request = crate::net::Request::DeployUdf {
                job,
                stage,
                origin: file.display().to_string(),
                shadow,
            };
            super::patches::patch(&connect, request, Some(bytes))
        }
        UdfCommand::Replay {
            job,
            stage,
            file,
            from,
            to,
            json,
            connect,
        } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read component {}", file.display()))?;
            let request = crate::net::Request::ReplayUdf {
                job,
                stage,
                origin: file.display().to_string(),
                from,
                to,
            };
            super::stages::replay(&connect, request, bytes, json)
        }
        UdfCommand::Dev(args) => super::dev::run(args),
        UdfCommand::List { job, json, connect } => super::stages::udf_list(&connect, job, json),
        UdfCommand::Logs {
            job,
            stage,
            follow,
            json,
            connect,
        } => super::stages::udf_logs(&connect, job, stage, follow, json),
        UdfCommand::Rollback {
            job,
            stage,
            to,
            connect,
        } => super::patches::patch(
            &connect,
            crate::net::Request::RollbackUdf { job, stage, to },
            None,
        ),
        UdfCommand::History {
            job,
            stage,
            json,
            connect,
        } => super::patches::history(&connect, job, stage, json),
    }
}

fn new(name: &str, kind: Kind, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("`{name}` is not a valid crate name: use letters, digits, `_` and `-`");
    }
    let dir = PathBuf::from(name);
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or remove it",
            dir.display()
        );
    }
    let sdk = match sdk {
        Some(p) => p,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("sdk"),
    };
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("weir-sdk not found at {}; pass --sdk PATH", sdk.display()))?;
    let ident = name.replace('-', "_");
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weir-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true

# A UDF crate is its own workspace.
[workspace]
"#,
            sdk = sdk.display()
        ),
    )?;
    let (lib, stage) = match kind {
        Kind::Processor => (
            TEMPLATE_PROCESSOR,
            "kind = \"processor\"\nparams = { min = 1.0 }",
        ),
        Kind::Reducer => (TEMPLATE_REDUCER, "kind = \"reducer\"\nkey = \"user\""),
        Kind::TimedReducer => (
            TEMPLATE_TIMED_REDUCER,
            "kind = \"reducer\"\nkey = \"user\"\nparams = { window = 2000 }",
        ),
    };
    std::fs::write(
        dir.join("src").join("lib.rs"),
        lib.replace("{ident}", &ident),
    )?;
    let job = JOB.replace("{stage}", stage).replace("{ident}", &ident);
    std::fs::write(dir.join("job.toml"), job)?;
    std::fs::write(dir.join("input.jsonl"), DATA)?;
    std::fs::write(dir.join(".gitignore"), "/target\n/out\n/.cargo\n")?;
    if let Some(shared) = shared_target() {
        // `cargo test` and `cargo build` here share the build of the SDK and
        // its dependencies with every other UDF crate of this user.
        std::fs::create_dir_all(dir.join(".cargo"))?;
        std::fs::write(
            dir.join(".cargo").join("config.toml"),
            format!(
                "# Made by `weir udf new`: one build directory for all UDF crates.\n[build]\ntarget-dir = {}\n",
                toml::Value::String(shared.display().to_string())
            ),
        )?;
    }
    println!(
        "created {}: test it with `cargo test`, build it with `weir udf build {}`, run it with `weir run {}/job.toml`",
        dir.display(),
        dir.display(),
        dir.display()
    );
    Ok(())
}

const TEMPLATE_PROCESSOR: &str = r#"//! A Weir processor UDF.

use weir_sdk::Row;

/// The columns this UDF reads.
#[derive(Row, Clone, Debug)]
pub struct Input {
    pub user: String,
    pub amount: f64,
}

/// The columns it writes.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Output {
    pub user: String,
    pub amount_cents: i64,
}

/// Drops amounts below the `min` parameter and converts the rest to cents.
pub fn {ident}(row: Input) -> Option<Output> {
    let min = weir_sdk::params().float("min").unwrap_or(0.0);
    (row.amount >= min).then(|| Output { user: row.user, amount_cents: (row.amount * 100.0).round() as i64 })
}

weir_sdk::export_flat_map!({ident});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_and_filters() {
        let out = weir_sdk::testing::Harness::new()
            .param("min", 1.0)
            .flat_map({ident}, vec![
                Input { user: "a".into(), amount: 2.5 },
                Input { user: "b".into(), amount: 0.5 },
            ])
            .unwrap();
        assert_eq!(out, vec![Output { user: "a".into(), amount_cents: 250 }]);
    }
}
"#;

const TEMPLATE_REDUCER: &str = r#"//! A Weir reducer UDF: running totals per key, in host-owned state.

use serde::{Deserialize, Serialize};
use weir_sdk::{Key, Row};

/// The columns this UDF reads.
#[derive(Row, Clone, Debug)]
pub struct Input {
    pub user: String,
    pub amount: f64,
}

/// The columns it writes.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Total {
    pub user: String,
    pub count: i64,
    pub sum: f64,
}

/// The state the host keeps for each key.
#[derive(Serialize, Deserialize, Default)]
pub struct Sums {
    count: i64,
    sum: f64,
}

/// Adds one row to its key's totals and emits them.
pub fn {ident}(_key: &Key<'_>, row: Input, state: &mut Sums) -> Option<Total> {
    state.count += 1;
    state.sum += row.amount;
    Some(Total { user: row.user, count: state.count, sum: state.sum })
}

weir_sdk::export_reducer!({ident});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_per_key() {
        let mut h = weir_sdk::testing::Harness::new();
        let row = |u: &str, a| Input { user: u.into(), amount: a };
        let out = h.reduce("user", {ident}, vec![row("a", 1.0), row("b", 2.0), row("a", 3.0)]).unwrap();
        assert_eq!(out[2], Total { user: "a".into(), count: 2, sum: 4.0 });
    }
}
"#;

const TEMPLATE_TIMED_REDUCER: &str = r#"//! A Weir timed reducer: per key, totals in tumbling event-time windows,
//! each emitted once the input passes a CTI at the window's end (end of
//! input closes the last ones).

use serde::{Deserialize, Serialize};
use weir_sdk::time::{Ctx, Timed, Timer};
use weir_sdk::{Key, Row};

/// The columns this UDF reads.
#[derive(Row, Clone, Debug)]
pub struct Input {
    pub user: String,
    pub amount: f64,
}

/// The columns it writes: one row per key and window.
#[derive(Row, Clone, Debug, PartialEq)]
pub struct Window {
    pub user: String,
    pub window_start: i64,
    pub count: i64,
    pub sum: f64,
}

/// The windows open for one key: (start, count, sum) each.
#[derive(Serialize, Deserialize, Default)]
pub struct Open {
    windows: Vec<(i64, i64, f64)>,
}

/// The window width (parameter `window`, in event-time units; default one minute).
fn width() -> i64 {
    weir_sdk::params().int("window").unwrap_or(60_000_000).max(1)
}

/// Adds a row to its window, opening the window (with a timer at its end)
/// on its first row. Nothing is emitted per row.
pub fn {ident}(_key: &Key<'_>, row: Input, open: &mut Open, ctx: &mut Ctx<'_>) -> Option<Window> {
    let start = ctx.start().div_euclid(width()) * width();
    match open.windows.iter_mut().find(|w| w.0 == start) {
        Some(w) => {
            w.1 += 1;
            w.2 += row.amount;
        }
        None => {
            open.windows.push((start, 1, row.amount));
            ctx.set_timer(start + width());
        }
    }
    None
}

/// Emits the window ending at the timer, as a point event at its end.
pub fn close(key: &Key<'_>, timer: Timer, open: &mut Open, ctx: &mut Ctx<'_>) -> Option<Timed<Window>> {
    let start = timer.at - width();
    let i = open.windows.iter().position(|w| w.0 == start)?;
    let (_, count, sum) = open.windows.remove(i);
    if open.windows.is_empty() {
        // No state is left behind for a key that went quiet.
        ctx.clear_state();
    }
    let user = key.as_str()?.to_string();
    Some(Timed::point(timer.at, Window { user, window_start: start, count, sum }))
}

weir_sdk::export_reducer!({ident}, on_time = close);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::{Harness, Input as At};

    #[test]
    fn windows_close_on_ctis_and_at_the_end() {
        let mut h = Harness::new().param("window", 10i64);
        let row = |t: i64, u: &str, a: f64| At::row(t, t + 1, Input { user: u.into(), amount: a });
        let out = h
            .timed_reduce("user", {ident}, close, vec![row(1, "ada", 1.0), row(4, "ada", 2.0), row(12, "bob", 5.0), At::cti(10), At::end()])
            .unwrap();
        let got: Vec<(i64, Window)> = out.into_iter().map(|t| (t.start, t.row)).collect();
        let w = |u: &str, s, c, a| Window { user: u.into(), window_start: s, count: c, sum: a };
        assert_eq!(got, vec![(10, w("ada", 0, 2, 3.0)), (20, w("bob", 10, 1, 5.0))]);
    }
}
"#;

/// The template job; `{stage}` becomes the stage's kind (and key, for a reducer).
const JOB: &str = r#"name = "{ident}-demo"

[[sources]]
name = "input"
path = "input.jsonl"
event_time = "ts"
schema = { ts = "int64", user = "utf8", amount = "float64" }

[[stages]]
name = "{ident}"
input = "input"
{stage}
component = "target/wasm32-wasip2/release/{ident}.wasm"

[[sinks]]
input = "{ident}"
stdout = true
"#;

const DATA: &str = r#"{"ts": 1000, "user": "ada", "amount": 12.5}
{"ts": 2000, "user": "bob", "amount": 0.5}
{"ts": 3000, "user": "ada", "amount": 3.25}
"#;

/// The build directory all of a user's UDF crates share (under Weir's
/// cache), so a new crate does not build the SDK and wit-bindgen again.
fn shared_target() -> Option<PathBuf> {
    crate::wasm::Runtime::default_cache_dir().map(|d| d.join("udf-target"))
}

/// Builds DIR for wasm32-wasip2 in release mode; returns each component and its version.
pub fn build(dir: &Path) -> anyhow::Result<Vec<(PathBuf, crate::wasm::ModuleVersion)>> {
    ensure_target()?;
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!(
            "{} has no Cargo.toml: pass the directory of a UDF crate (made by `weir udf new`)",
            dir.display()
        );
    }
    let mut cargo = Command::new("cargo");
    cargo.current_dir(dir);
    // The shared build directory, unless the user chose one.
    if std::env::var_os("CARGO_TARGET_DIR").is_none()
        && let Some(shared) = shared_target()
    {
        cargo.env("CARGO_TARGET_DIR", shared);
    }
    let out = cargo
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!(
            "cargo build failed in {} (its errors are above)",
            dir.display()
        );
    }
    // Where the crate's own job file finds a component, whichever build
    // directory cargo used: its workspace's `target/` (the crate's own, for
    // a crate that is its own workspace).
    let root = Command::new("cargo")
        .current_dir(dir)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|m| m["workspace_root"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| dir.to_path_buf());
    let local = root.join("target").join("wasm32-wasip2").join("release");
    let mut built = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        for file in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(f) = file.as_str().filter(|f| f.ends_with(".wasm")) {
                let bytes = std::fs::read(f)?;
                let f = Path::new(f);
                let at = match f.file_name() {
                    Some(name) if !f.starts_with(&local) => {
                        std::fs::create_dir_all(&local)?;
                        let at = local.join(name);
                        std::fs::write(&at, &bytes)
                            .with_context(|| format!("cannot write {}", at.display()))?;
                        at
                    }
                    _ => f.to_path_buf(),
                };
                built.push((at, crate::wasm::ModuleVersion::of(&bytes)));
            }
        }
    }
    if built.is_empty() {
        bail!("the build produced no .wasm: does the crate set `crate-type = [\"cdylib\"]`?");
    }
    Ok(built)
}

fn ensure_target() -> anyhow::Result<()> {
    let how = "install it with `rustup target add wasm32-wasip2`";
    let Ok(list) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        // No rustup: let cargo try, and say what to do if it fails.
        eprintln!(
            "note: rustup not found; the Rust target wasm32-wasip2 must be installed ({how})"
        );
        return Ok(());
    };
    if String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|l| l.trim() == "wasm32-wasip2")
    {
        return Ok(());
    }
    eprintln!(
        "the Rust target wasm32-wasip2 is missing; running `rustup target add wasm32-wasip2`"
    );
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()?;
    if !status.success() {
        bail!("could not add the wasm32-wasip2 target; {how}");
    }
    Ok(())
}

fn inspect(file: &Path) -> anyhow::Result<()> {
    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    let module = runtime.load_file(file)?;
    let wit = module
        .imports
        .iter()
        .chain(&module.exports)
        .find_map(|n| {
            n.strip_prefix("weir:udf/")
                .and_then(|r| r.split_once('@'))
                .map(|(_, v)| v.to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("file:     {}", file.display());
    println!("world:    weir:udf/{}", module.world_name());
    println!("wit:      weir:udf@{wit}");
    println!("module:   {}", module.version.hex());
    println!("size:     {} bytes", module.size);
    println!("imports:");
    for i in &module.imports {
        println!("  {i}");
    }
    println!("exports:");
    for e in &module.exports {
        println!("  {e}");
    }
    Ok(())
}
