//! The `weir` command line.

mod bench;
pub mod cluster;
mod dev;
mod failover;
mod members;
mod patches;
mod recovery;
mod replicated;
mod sample;
mod spread;
mod stages;
pub mod udf;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::exec::{RunOptions, run};
use crate::wasm::Runtime;

/// Weir: deterministic stream processing with WebAssembly UDFs.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a finite job to completion in this process.
    Run {
        /// The job file (TOML) or query script (`.wsql`).
        job: PathBuf,
        /// Rows per batch (overrides the job's `batch_size`).
        #[arg(long)]
        batch_size: Option<usize>,
        /// 1 runs everything on one thread; more runs each vertex on its own thread.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// rVertices per keyed stage of a script (GROUP BY in a window, joins
        /// with equal keys), unless the script sets its own.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
        parallelism: u32,
        /// No progress display and no summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print a query script's logical and physical plans.
    Explain {
        /// The script (`.wsql`).
        script: PathBuf,
        /// rVertices per keyed stage of a script (GROUP BY in a window, joins
        /// with equal keys), unless the script sets its own.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
        parallelism: u32,
    },
    /// Make a cluster's certificates.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Run a node.
    Node {
        /// What to do.
        #[command(subcommand)]
        command: cluster::NodeCommand,
    },
    /// Create, list and read a node's streams.
    Stream {
        /// What to do.
        #[command(subcommand)]
        command: cluster::StreamCommand,
    },
    /// Push JSONL events (from FILE or standard input) into a stream; returns
    /// once every event is durably stored. Safe to repeat: a request the node
    /// already stored is not stored again.
    Ingest {
        /// The stream.
        stream: String,
        /// The JSONL file (standard input when absent).
        file: Option<PathBuf>,
        #[command(flatten)]
        idempotence: cluster::Idempotence,
        #[command(flatten)]
        connect: cluster::Connect,
    },
    /// Submit, watch and cancel continuous jobs on a node.
    Job {
        /// What to do.
        #[command(subcommand)]
        command: cluster::JobCommand,
    },
    /// Write, build and inspect UDF components.
    Udf {
        /// What to do.
        #[command(subcommand)]
        command: udf::UdfCommand,
    },
    /// Measure the engine on standard workloads.
    Bench {
        /// What to measure.
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run {
            job,
            batch_size,
            threads,
            parallelism,
            quiet,
        } => {
            let plan = crate::job::load_with(&job, parallelism as usize)?;
            let runtime = Runtime::new(Runtime::default_cache_dir())?;
            let options = RunOptions {
                batch_size,
                threads,
                progress: !quiet && std::io::stderr().is_terminal(),
            };
            let summary = run(&plan, &runtime, &options)?;
            if !quiet {
                eprintln!("job `{}`\n{summary}", plan.name);
            }
            Ok(())
        }
        Command::Explain {
            script,
            parallelism,
        } => {
            let text = std::fs::read_to_string(&script)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", script.display()))?;
            print!(
                "{}",
                weir_sql::explain(
                    &script,
                    &text,
                    &weir_node::components::WasmComponents::files(),
                    parallelism as usize,
                )?
            );
            Ok(())
        }
        Command::Cluster { command } => cluster::cluster(command),
        Command::Node { command } => cluster::node(command),
        Command::Stream { command } => cluster::stream(command),
        Command::Ingest {
            stream,
            file,
            idempotence,
            connect,
        } => cluster::ingest(stream, file.as_deref(), idempotence, connect),
        Command::Job { command } => cluster::job(command),
        Command::Udf { command } => udf::main(command),
        Command::Bench { command } => bench::bench(command),
    }
}
