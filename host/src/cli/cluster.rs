//! `weir cluster`, `weir node`, `weir stream` and `weir ingest`: running nodes
//! and talking to them over QUIC with mutual TLS.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::net::{CertDir, Client, Request, Response, cluster_init, read_msg};
use crate::node::Node;
use crate::schema::ColumnSpec;

/// How a command reaches a node.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// The node's address.
    #[arg(long, env = "WEIR_NODE", default_value = "127.0.0.1:7600")]
    pub node: SocketAddr,
    /// The cluster's certificate directory (from `weir cluster init`).
    #[arg(long, env = "WEIR_CERTS", default_value = "certs")]
    pub certs: PathBuf,
}

/// `weir cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make a cluster CA and a node and a client certificate signed by it.
    Init {
        /// Where to write them.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// More names or addresses the node certificate is valid for.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

/// `weir node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run a node in the foreground until Ctrl-C.
    Start {
        /// The node's data directory (holds `node.redb`).
        #[arg(long)]
        data: PathBuf,
        /// The UDP address to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:7600")]
        listen: SocketAddr,
        /// The cluster's certificate directory.
        #[arg(long, default_value = "certs")]
        certs: PathBuf,
    },
}

/// `weir stream ...`
#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Create an ingest stream.
    Create {
        /// The stream's name.
        name: String,
        /// Its columns, `name:type,...` (types as in job files; `?` = nullable).
        #[arg(long)]
        columns: String,
        /// The int64 column holding each event's start time.
        #[arg(long)]
        time: String,
        /// An int64 column holding each event's end time.
        #[arg(long)]
        end_time: Option<String>,
        #[command(flatten)]
        connect: Connect,
    },
    /// List the node's streams.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// Close an ingest stream: its input has ended, so jobs reading it can
    /// release everything they hold and finish.
    Close {
        /// The stream.
        stream: String,
        #[command(flatten)]
        connect: Connect,
    },
    /// Print a stream's entries from a position, one JSON line per event.
    Read {
        /// The stream.
        stream: String,
        /// The first sequence number.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Keep printing entries as they arrive.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        connect: Connect,
    },
}

/// `weir job ...`
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job file to a node; its components travel with it.
    Submit {
        /// The job file (TOML).
        job: PathBuf,
        #[command(flatten)]
        connect: Connect,
    },
    /// Show the node's jobs, or one: each vertex's state, positions and counts.
    Status {
        /// The job (all when absent).
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: Connect,
    },
    /// Stop a job and forget it (its streams are collected).
    Cancel {
        /// The job.
        name: String,
        #[command(flatten)]
        connect: Connect,
    },
    /// Runtime filters: drop input rows of a stage before its UDF (poison
    /// events), from the stage's next CTI on.
    Filter {
        #[command(subcommand)]
        command: FilterCommand,
    },
}

/// `weir job filter ...`
#[derive(Debug, Subcommand)]
pub enum FilterCommand {
    /// Drop the stage's input rows that EXPR matches, e.g.
    /// `amount = 13 AND user = 'mallory'` (SQL: = <> < <= > >=, IN, BETWEEN,
    /// IS NULL, AND, OR, NOT; text in single quotes).
    Add(FilterArgs),
    /// Stop dropping rows by a filter added before (EXPR as added, or as
    /// `weir job status` shows it).
    Remove(FilterArgs),
}

/// Which filter of which stage.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// The job.
    #[arg(long)]
    job: String,
    /// The stage.
    #[arg(long)]
    stage: String,
    /// The condition on the stage's input columns.
    expr: String,
    #[command(flatten)]
    connect: Connect,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Runs `weir cluster`.
pub fn cluster(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Init { dir, hosts } => {
            for path in cluster_init(&dir, &hosts)? {
                println!("wrote {}", path.display());
            }
            println!(
                "keep ca.key private; start a node with `weir node start --data DIR --certs {}`",
                dir.display()
            );
            Ok(())
        }
    }
}

/// Runs `weir node`.
pub fn node(command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Start {
            data,
            listen,
            certs,
        } => {
            let node = Node::open(&data)?;
            runtime()?.block_on(node.serve(listen, &CertDir::new(&certs)))
        }
    }
}

fn parse_columns(text: &str) -> anyhow::Result<Vec<ColumnSpec>> {
    text.split(',')
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            let (name, ty) = c
                .split_once(':')
                .with_context(|| format!("column `{c}` needs a type: `name:type`"))?;
            Ok(ColumnSpec {
                name: name.trim().to_string(),
                ty: ty.trim().to_string(),
            })
        })
        .collect()
}

async fn connect(c: &Connect) -> anyhow::Result<Client> {
    Client::connect(c.node, &CertDir::new(&c.certs)).await
}

/// Runs `weir stream`.
pub fn stream(command: StreamCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match command {
            StreamCommand::Create {
                name,
                columns,
                time,
                end_time,
                connect: c,
            } => {
                let client = connect(&c).await?;
                let request = Request::CreateStream {
                    name,
                    columns: parse_columns(&columns)?,
                    time,
                    end_time,
                };
                if let Response::Ok { message } = client.call(&request, None).await? {
                    println!("{message}");
                }
                client.close().await;
            }
            StreamCommand::List { connect: c } => {
                let client = connect(&c).await?;
                if let Response::Streams(list) = client.call(&Request::ListStreams, None).await? {
                    for s in list {
                        println!("{}\tseq {}..{}\t{}", s.name, s.low, s.next, s.columns);
                    }
                }
                client.close().await;
            }
            StreamCommand::Close { stream, connect: c } => {
                let client = connect(&c).await?;
                if let Response::Ok { message } =
                    client.call(&Request::CloseStream { stream }, None).await?
                {
                    println!("{message}");
                }
                client.close().await;
            }
            StreamCommand::Read {
                stream,
                from,
                follow,
                connect: c,
            } => {
                let client = connect(&c).await?;
                let request = Request::Read {
                    stream,
                    from,
                    follow,
                };
                let mut recv = client.request(&request, None).await?;
                let stdout = std::io::stdout();
                while let Some(answer) = read_msg::<Response>(&mut recv).await? {
                    match answer {
                        Response::Lines(text) => {
                            let mut out = stdout.lock();
                            out.write_all(text.as_bytes())?;
                            out.flush()?;
                        }
                        Response::End => break,
                        Response::Error { message } => bail!("{message}"),
                        other => bail!("unexpected answer {other:?}"),
                    }
                }
                client.close().await;
            }
        }
        Ok(())
    })
}

/// Runs `weir ingest STREAM [FILE]`: returns once every event is durable.
pub fn ingest(stream: String, file: Option<&Path>, c: Connect) -> anyhow::Result<()> {
    let (origin, body) = match file {
        Some(path) => (
            path.display().to_string(),
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body)?;
            ("<stdin>".to_string(), body)
        }
    };
    runtime()?.block_on(async move {
        let client = connect(&c).await?;
        let request = Request::Ingest {
            stream: stream.clone(),
            origin,
        };
        let answer = client.call(&request, Some(&body)).await?;
        if let Response::Ingested {
            events,
            first_seq,
            entries,
        } = answer
        {
            println!(
                "{events} events stored durably in `{stream}` (seq {first_seq}..{})",
                first_seq + entries
            );
        }
        client.close().await;
        Ok(())
    })
}

/// Runs `weir job`.
pub fn job(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Submit { job, connect: c } => {
            let path = std::fs::canonicalize(&job)
                .with_context(|| format!("cannot read job file {}", job.display()))?;
            // Checked here first, so mistakes are reported before anything is sent.
            let plan = crate::job::load(&path)?;
            let text = std::fs::read_to_string(&path)?;
            let mut modules = Vec::new();
            let mut body = Vec::new();
            for stage in &plan.stages {
                if let crate::plan::Operator::Udf(udf) = &stage.operator {
                    if modules.iter().any(|(p, _)| p == &udf.component) {
                        continue;
                    }
                    let bytes = std::fs::read(&udf.component).with_context(|| {
                        format!(
                            "stage `{}`: cannot read component {}",
                            stage.name,
                            udf.component.display()
                        )
                    })?;
                    modules.push((udf.component.clone(), bytes.len() as u64));
                    body.extend_from_slice(&bytes);
                }
            }
            runtime()?.block_on(async move {
                let client = connect(&c).await?;
                let request = Request::SubmitJob {
                    path,
                    text,
                    modules,
                };
                if let Response::Jobs(list) = client.call(&request, Some(&body)).await? {
                    for status in list {
                        println!("job `{}` submitted (id {})", status.name, status.id);
                        print_status(&status);
                    }
                }
                client.close().await;
                Ok(())
            })
        }
        JobCommand::Status {
            name,
            json,
            connect: c,
        } => runtime()?.block_on(async move {
            let client = connect(&c).await?;
            if let Response::Jobs(list) = client.call(&Request::JobStatus { name }, None).await? {
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else if list.is_empty() {
                    println!("no jobs");
                }
                for status in list.iter().filter(|_| !json) {
                    println!("job `{}` (id {}): {}", status.name, status.id, status.state);
                    print_status(status);
                }
            }
            client.close().await;
            Ok(())
        }),
        JobCommand::Filter { command } => {
            let (args, add) = match command {
                FilterCommand::Add(args) => (args, true),
                FilterCommand::Remove(args) => (args, false),
            };
            let FilterArgs {
                job,
                stage,
                expr,
                connect,
            } = args;
            let request = if add {
                Request::FilterAdd { job, stage, expr }
            } else {
                Request::FilterRemove { job, stage, expr }
            };
            patch(&connect, request, None)
        }
        JobCommand::Cancel { name, connect: c } => runtime()?.block_on(async move {
            let client = connect(&c).await?;
            if let Response::Ok { message } =
                client.call(&Request::CancelJob { name }, None).await?
            {
                println!("{message}");
            }
            client.close().await;
            Ok(())
        }),
    }
}

/// Sends a deploy, rollback or filter change and prints what it did.
pub fn patch(c: &Connect, request: Request, body: Option<Vec<u8>>) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let client = connect(c).await?;
        if let Response::Patched(r) = client.call(&request, body.as_deref()).await? {
            if let Some(s) = &r.shadow {
                let held = if s.rows < s.asked {
                    format!(" ({} asked; the input stream holds no more)", s.asked)
                } else {
                    String::new()
                };
                println!(
                    "shadow run on the last {} input rows{held}: {} output rows differ (running version wrote {}, new version {})",
                    s.rows, s.differ, s.old_rows, s.new_rows
                );
            }
            let to = &r.to[..r.to.len().min(12)];
            let what = if r.change.starts_with("filter") {
                r.change.clone()
            } else {
                format!("module {} -> {to}", r.from)
            };
            match r.applied {
                Some((position, ctis)) => println!(
                    "job `{}` stage `{}`: {what}, in effect from input position {position} (after CTI {ctis})",
                    r.job, r.stage
                ),
                None => println!(
                    "job `{}` stage `{}`: {what} validated and scheduled; it takes effect at the stage's next CTI (none arrived yet)",
                    r.job, r.stage
                ),
            }
        }
        client.close().await;
        Ok(())
    })
}

/// Prints a stage's module history.
pub fn history(c: &Connect, job: String, stage: String, json: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let client = connect(c).await?;
        if let Response::History(list) = client
            .call(&Request::UdfHistory { job, stage }, None)
            .await?
        {
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "  {:<12} {:>12} {:>8}  {:<24} why",
                    "version", "position", "ctis", "when (UTC)"
                );
                for h in &list {
                    let when = if h.at_ms == 0 {
                        "-".to_string()
                    } else {
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + std::time::Duration::from_millis(h.at_ms),
                        )
                        .to_string()
                    };
                    println!(
                        "{} {:<12} {:>12} {:>8}  {:<24} {}",
                        if h.current { "*" } else { " " },
                        &h.version[..h.version.len().min(12)],
                        h.position,
                        h.ctis,
                        when,
                        h.why
                    );
                }
            }
        }
        client.close().await;
        Ok(())
    })
}

fn print_status(status: &crate::jobs::JobStatus) {
    println!(
        "  {:<7} {:<24} {:<9} {:>10} {:>10} {:>6} {:>5}  positions",
        "vertex", "name", "state", "rows in", "rows out", "dead", "snap"
    );
    for v in &status.vertices {
        let inputs: Vec<String> = v.inputs.iter().map(|(s, p)| format!("{s}@{p}")).collect();
        let output = v
            .output
            .as_ref()
            .map(|(s, p)| format!(" -> {s}@{p}"))
            .unwrap_or_default();
        println!(
            "  {:<7} {:<24} {:<9} {:>10} {:>10} {:>6} {:>5}  {}{}",
            v.role,
            v.name,
            v.state,
            v.rows_in,
            v.rows_out,
            v.dead,
            v.snapshot,
            inputs.join(", "),
            output
        );
        if let Some(module) = &v.module {
            let pending = if v.pending {
                ", a patch is scheduled for the next CTI"
            } else {
                ""
            };
            println!("          module {module} ({} patches){pending}", v.patches);
        }
        if !v.filters.is_empty() || v.filtered > 0 {
            println!(
                "          filters: {} ({} input rows dropped)",
                crate::filter::describe(&v.filters, "none now"),
                v.filtered
            );
        }
        if let Some(e) = &v.refused {
            println!("          patch refused: {e}");
        }
        if let Some(e) = &v.error {
            println!("          error: {e}");
        }
        if let (Some((position, _)), "failed") = (v.stuck_at, v.state.as_str()) {
            println!(
                "          stuck at input position {position}: `weir job filter add` (to drop poison rows) or `weir udf deploy` (a fix) resumes the stage there"
            );
        }
    }
}
