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
    /// The certificate to present: NAME.pem and NAME.key in the certificate
    /// directory (default: `admin` when it has one, else `client`).
    #[arg(long, env = "WEIR_IDENTITY")]
    pub identity: Option<String>,
}

/// How `weir ingest` makes a retry safe.
#[derive(Debug, Clone, Args)]
pub struct Idempotence {
    /// Who sends: the node stores a producer's request only if its
    /// `--sequence` is above every one it stored for that producer. Default:
    /// a digest of the stream's name and the events, so sending the same
    /// events again stores nothing.
    #[arg(long)]
    pub producer: Option<String>,
    /// This request's number among the producer's (increasing).
    #[arg(long, default_value_t = 0)]
    pub sequence: u64,
    /// Keep retrying for this long while the node cannot be reached
    /// (`30s`, `5m`); a retry never stores the events twice.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub retry_for: std::time::Duration,
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
    /// Issue one more certificate signed by the cluster's CA: a `client`
    /// (may ingest and read), an `admin` (may also run jobs) or a `node`.
    Issue {
        /// The certificate's name: writes NAME.pem and NAME.key.
        name: String,
        /// What it may do: client, admin or node.
        #[arg(long, value_parser = ["client", "admin", "node"])]
        role: String,
        /// The directory holding the CA (ca.pem, ca.key).
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Where to write the certificate (with a copy of ca.pem); default: `--dir`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// For a node: more names or addresses it is valid for.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// The members, their health, and the coordinator.
    Status {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: Connect,
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
        /// A directory jobs' file sources and sinks may use (repeat for
        /// more); none by default. The data and certificate directories are
        /// never given to jobs.
        #[arg(long = "files")]
        files: Vec<PathBuf>,
        /// A member of the cluster to join through (a new data directory
        /// only; a node remembers its cluster). Without it a new data
        /// directory founds a cluster of one.
        #[arg(long)]
        join: Option<String>,
        /// A member silent this long is lost (`300ms`, `2s`); the
        /// coordinator's elections use the same timeout.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        heartbeat_timeout: std::time::Duration,
    },
    /// Empty a member for maintenance: each vertex it runs moves to the
    /// member that backs it up (from its latest replicated snapshot), it
    /// backs up nothing more, and no new work goes to it until it starts
    /// again. Returns once it runs nothing and it is safe to stop.
    Drain {
        /// The member: its id (`weir cluster status`) or its address.
        member: String,
        /// How long to wait for the member to empty (`0s`: do not wait).
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
        #[command(flatten)]
        connect: Connect,
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
        /// The job file (TOML) or query script (`.wsql`).
        job: PathBuf,
        /// rVertices per keyed stage of a script (GROUP BY in a window, joins
        /// with equal keys), unless the script sets its own.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
        parallelism: u32,
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
    /// End a source that follows a file (it reads the file to its end) or a
    /// Nexmark input (it stops where it stands); the job finishes once all
    /// its inputs have ended.
    EndSource {
        /// The job.
        #[arg(long)]
        job: String,
        /// The source (a `follow = true` file or a Nexmark input).
        #[arg(long)]
        source: String,
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

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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
                "keep ca.key private (it signs certificates); give client.pem and client.key to \
                 programs that only ingest and read; start a node with \
                 `weir node start --data DIR --certs {} --files DIR`",
                dir.display()
            );
            Ok(())
        }
        ClusterCommand::Issue {
            name,
            role,
            dir,
            out,
            hosts,
        } => {
            let role = crate::access::Role::parse(&role)
                .with_context(|| format!("no role `{role}` (roles: client, admin, node)"))?;
            let out = out.unwrap_or_else(|| dir.clone());
            for path in crate::net::issue(&dir, &out, &name, role, &hosts)? {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        ClusterCommand::Status { json, connect: c } => super::members::status(json, &c),
    }
}

/// Runs `weir node`.
pub fn node(command: NodeCommand) -> anyhow::Result<()> {
    match command {
        NodeCommand::Start {
            data,
            listen,
            certs,
            files,
            join,
            heartbeat_timeout,
        } => {
            // The data directory exists before it is denied to jobs.
            std::fs::create_dir_all(&data)
                .with_context(|| format!("cannot create the data directory {}", data.display()))?;
            let access = crate::access::FileAccess::new(&files, &[data.clone(), certs.clone()])?;
            let node = Node::open(&data, access)?;
            let settings = weir_cluster::Settings {
                lost_after: heartbeat_timeout,
                join,
            };
            Ok(runtime()?.block_on(node.serve(listen, &CertDir::new(&certs), settings))?)
        }
        NodeCommand::Drain {
            member,
            wait,
            connect: c,
        } => super::members::drain(&member, wait, &c),
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

pub(super) async fn connect(c: &Connect) -> Result<Client, weir_net::NetError> {
    Client::connect(
        c.node,
        &CertDir::with_identity(&c.certs, c.identity.clone()),
    )
    .await
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
/// When the node cannot be reached or the answer is lost, it reconnects and
/// sends the same request again (same producer and sequence), so the node
/// stores the events once.
pub fn ingest(
    stream: String,
    file: Option<&Path>,
    idempotence: Idempotence,
    c: Connect,
) -> anyhow::Result<()> {
    let too_big = |origin: &str, len: u64| {
        anyhow::anyhow!(
            "{origin} is {} MiB; one ingest request takes at most {} MiB: split it into several files",
            len >> 20,
            crate::net::MAX_INGEST >> 20
        )
    };
    let (origin, body) = match file {
        Some(path) => {
            let origin = path.display().to_string();
            let len = std::fs::metadata(path)
                .with_context(|| format!("cannot read {origin}"))?
                .len();
            if len > crate::net::MAX_INGEST as u64 {
                return Err(too_big(&origin, len));
            }
            let body = std::fs::read(path).with_context(|| format!("cannot read {origin}"))?;
            (origin, body)
        }
        None => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body)?;
            ("<stdin>".to_string(), body)
        }
    };
    if body.len() > crate::net::MAX_INGEST {
        return Err(too_big(&origin, body.len() as u64));
    }
    let producer = idempotence.producer.clone().unwrap_or_else(|| {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        digest.update(stream.as_bytes());
        digest.update([0]);
        digest.update(&body);
        let hex: String = digest.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
    });
    let request = Request::Ingest {
        stream: stream.clone(),
        origin,
        producer: Some(producer.clone()),
        sequence: idempotence.sequence,
    };
    runtime()?.block_on(async move {
        let deadline = std::time::Instant::now() + idempotence.retry_for;
        let mut pause = std::time::Duration::from_millis(100);
        let answer = loop {
            let attempt = async {
                let client = connect(&c).await?;
                let answer = client.answer(&request, Some(&body)).await;
                if answer.is_ok() {
                    client.close().await;
                }
                answer
            };
            match attempt.await {
                Ok(answer) => break answer,
                Err(e) if std::time::Instant::now() + pause < deadline => {
                    eprintln!("weir ingest: {e:#}; sending again in {} ms", pause.as_millis());
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e).context(format!(
                        "no answer from the node within {}: the events may or may not be stored; \
                         run the same command again (with the same --producer and --sequence): \
                         the node stores them at most once",
                        humantime::format_duration(idempotence.retry_for)
                    )));
                }
            }
        };
        match answer {
            Response::Ingested {
                events,
                first_seq,
                entries,
                duplicate,
            } => {
                let range = format!("seq {first_seq}..{}", first_seq + entries);
                if duplicate {
                    println!(
                        "{events} events already stored durably in `{stream}` ({range}) by producer {producer}, sequence {}; nothing stored again",
                        idempotence.sequence
                    );
                } else {
                    println!("{events} events stored durably in `{stream}` ({range})");
                }
                Ok(())
            }
            Response::Error { message } => bail!("{message}"),
            other => bail!("unexpected answer {other:?}"),
        }
    })
}

/// Runs `weir job`.
pub fn job(command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Submit {
            job,
            parallelism,
            connect: c,
        } => {
            let path = std::fs::canonicalize(&job)
                .with_context(|| format!("cannot read job file {}", job.display()))?;
            // Checked here first, so mistakes are reported before anything is sent.
            let plan = crate::job::load_with(&path, parallelism as usize)?;
            let text = std::fs::read_to_string(&path)?;
            let mut modules = Vec::new();
            let mut body = Vec::new();
            for component in &plan.components {
                if modules.iter().any(|(p, _)| p == component) {
                    continue;
                }
                let bytes = std::fs::read(component)
                    .with_context(|| format!("cannot read component {}", component.display()))?;
                modules.push((component.clone(), bytes.len() as u64));
                body.extend_from_slice(&bytes);
            }
            runtime()?.block_on(async move {
                let client = connect(&c).await?;
                let request = Request::SubmitJob {
                    path,
                    text,
                    modules,
                    parallelism,
                };
                match client.call(&request, Some(&body)).await? {
                    Response::Jobs(list) => {
                        for status in list {
                            println!("job `{}` submitted (id {})", status.name, status.id);
                            print_status(&status);
                        }
                    }
                    // A cluster places the job: where its vertices run.
                    Response::Ok { message } => println!("{message}"),
                    _ => {}
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
            if let Response::Jobs(list) = client
                .call(&Request::JobStatus { name, local: false }, None)
                .await?
            {
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
            super::patches::patch(&connect, request, None)
        }
        JobCommand::EndSource {
            job,
            source,
            connect: c,
        } => runtime()?.block_on(async move {
            let client = connect(&c).await?;
            if let Response::Ok { message } = client
                .call(&Request::EndSource { job, source }, None)
                .await?
            {
                println!("{message}");
            }
            client.close().await;
            Ok(())
        }),
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
        if let Some(member) = v.member {
            println!("          on member {member}");
        }
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
