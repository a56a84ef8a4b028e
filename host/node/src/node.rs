//! A Weir node: one data directory (one redb file), one QUIC endpoint with
//! mutual TLS, serving ingest, stream reads and the stream catalog.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::access::{FileAccess, Role};
use crate::error::{Context, NodeError, Result, bail, err};
use crate::jobs::Jobs;
use crate::net::{self, CertDir, MAX_INGEST, Request, Response, StreamSummary, write_msg};
use crate::plan::{ErrorPolicy, SourceFormat, SourceSpec};
use crate::rstream::{Entry, StreamInfo, Streams};
use crate::schema::{START, describe, from_specs};
use crate::source::SourceReader;
use crate::store::RedbStorage;
use crate::wasm::Runtime;
use rustls_pki_types::CertificateDer;
use weir_cluster::Cluster;

/// Entries a read takes from the stream at a time: an entry holds at most
/// 64 MiB of input (a batch's bound), so a read holds a bounded amount.
const READ_CHUNK: usize = 8;
/// Bytes of JSON lines per `Lines` answer (its JSON form stays far below
/// the frame limit even when every byte needs escaping).
const LINES_FRAME: usize = 1 << 20;

/// Test hook: the number of storage commits that succeed before every later
/// one fails as on a full disk.
pub const FAIL_AFTER_ENV: &str = "WEIR_TEST_FAIL_AFTER_COMMITS";
/// Test hook: every storage commit fails while the file this names exists,
/// as on a disk that is full until space is freed.
pub const FULL_WHILE_ENV: &str = "WEIR_TEST_DISK_FULL_WHILE";
/// How often a node whose storage failed checks whether writes succeed again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

mod backup;
mod changes;
mod collect;
mod exchange;
mod fence;
mod gather;
mod ingest;
mod kept;
mod lease;
mod logs;
mod placed;
mod pulled;
mod read;
pub use read::format_entry;
mod replicate;
mod stalls;
mod stragglers;
mod turns;
mod wire;
mod wired;

use ingest::{Producers, close_stream, create_stream, ingest};

/// A placed job's incarnation, the cluster changes a member went through,
/// and the vertices it ran then (a follower that becomes the vertex takes
/// the changes since it followed).
type ChangesTaken = (u64, usize, std::collections::BTreeSet<String>);

/// A running node's shared parts.
#[derive(Debug, Clone)]
pub struct Node {
    data: PathBuf,
    streams: Streams,
    jobs: Jobs,
    producers: Arc<Producers>,
    /// Its membership, once it has joined (while it serves).
    cluster: Arc<std::sync::OnceLock<Cluster>>,
    /// The fetch tasks filling copies of streams written on other members.
    fetchers: Arc<wired::Fetchers>,
    /// Per placed job here: how many of its cluster changes it went through.
    changes_taken: Arc<std::sync::Mutex<std::collections::HashMap<String, ChangesTaken>>>,
    /// The certificates it presents to other members (once it serves).
    peer_certs: Arc<std::sync::OnceLock<CertDir>>,
    /// The cluster's ingest streams this member is the primary of.
    primaries: Arc<turns::Turns>,
    /// Connections to other members (requests passed on, batches of ingest streams), by address.
    passes: Arc<std::sync::Mutex<std::collections::HashMap<String, weir_net::protocol::Client>>>,
    /// As the coordinator: the vertices seen far behind their stage's peers.
    behind: Arc<std::sync::Mutex<stragglers::Behind>>,
    /// The metadata epoch this member last acted on, with the cluster's
    /// ingest streams then (what its heartbeat reports needs of).
    acted: Arc<std::sync::Mutex<Option<collect::Acted>>>,
    /// The other members' copies of the streams written here, and their pulls.
    pulled: Arc<pulled::Pulled>,
    /// The vertices of the placed jobs here, read from their plans once.
    plans: Arc<kept::Plans>,
}

/// Where a node keeps its database.
pub fn database_path(data: &Path) -> PathBuf {
    data.join("node.redb")
}

impl Node {
    /// Opens (or creates) the node's data directory; its jobs' file sources
    /// and sinks stay within `files`.
    pub fn open(data: &Path, files: FileAccess) -> Result<Node> {
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create the data directory {}", data.display()))?;
        let storage = RedbStorage::open(&database_path(data))?;
        // Fault injection for tests: make every commit after the first N fail,
        // as a full disk would.
        let storage: Arc<dyn crate::store::Storage> = match (
            std::env::var(FAIL_AFTER_ENV)
                .ok()
                .and_then(|v| v.parse().ok()),
            std::env::var_os(FULL_WHILE_ENV),
        ) {
            (Some(n), _) => {
                tracing::warn!("{FAIL_AFTER_ENV}={n}: commits after the first {n} will fail");
                Arc::new(crate::store::FaultyStorage::new(storage, n))
            }
            (None, Some(marker)) => {
                tracing::warn!("{FULL_WHILE_ENV}: commits fail while {marker:?} exists");
                Arc::new(crate::store::FaultyStorage::full_while(
                    storage,
                    PathBuf::from(marker),
                ))
            }
            (None, None) => Arc::new(storage),
        };
        let streams = Streams::open(storage)?;
        let runtime = Runtime::new(Some(data.join("compiled")))?;
        let jobs = Jobs::new(streams.clone(), runtime, files);
        jobs.resume()?;
        Ok(Node {
            data: data.to_path_buf(),
            streams,
            jobs,
            producers: Arc::default(),
            cluster: Arc::default(),
            fetchers: Arc::default(),
            changes_taken: Arc::default(),
            peer_certs: Arc::default(),
            primaries: Arc::default(),
            passes: Arc::default(),
            behind: Arc::default(),
            acted: Arc::default(),
            pulled: Arc::default(),
            plans: Arc::default(),
        })
    }

    /// The node's streams.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Joins the cluster `settings` say and serves requests on `listen`
    /// until Ctrl-C; prints the bound address once it is a member.
    pub async fn serve(
        self,
        listen: SocketAddr,
        certs: &CertDir,
        settings: weir_cluster::Settings,
    ) -> Result<()> {
        let socket = std::net::UdpSocket::bind(listen)
            .with_context(|| format!("cannot listen on {listen}"))?;
        let _stalls = exchange::AbortOnDrop(tokio::spawn(stalls::watch()));
        let endpoint = quinn::Endpoint::new(
            net::endpoint_config(certs)?,
            Some(net::server_config(certs)?),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .with_context(|| format!("cannot listen on {listen}"))?;
        let local = endpoint.local_addr()?;
        // Peers reach it where it listens: an unspecified address would
        // tell them nothing.
        let advertised = match local.ip().is_unspecified() {
            true => SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port()),
            false => local,
        };
        let (jobs, acted, loads) = (self.jobs.clone(), self.acted.clone(), self.jobs.clone());
        let report = weir_cluster::membership::Report {
            vertices: Arc::new(move || loads.loads()),
            needs: Arc::new(move || collect::needs(&jobs, &acted)),
        };
        let cluster = Cluster::start(&self.data, advertised, certs.dir(), settings, report).await?;
        let _ = self.cluster.set(cluster.clone());
        self.jobs.set_keeper(Arc::new(changes::ClusterKeeper {
            cluster: cluster.downgrade(),
            runtime: tokio::runtime::Handle::current(),
        }));
        let peer_certs = CertDir::with_identity(certs.dir(), Some("node".into()));
        let _ = self.peer_certs.set(peer_certs.clone());
        let scheduler = tokio::spawn(self.clone().schedule(cluster.clone(), peer_certs));
        {
            use std::io::Write;
            // Whoever started the node may have stopped reading its output.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "weir node listening on {local}").and_then(|()| out.flush());
        }
        let mut probe = tokio::time::interval(PROBE_EVERY);
        // One listener for the whole loop: a Ctrl-C that came while another
        // branch was being handled would be missed by a listener made anew
        // on the next turn.
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                _ = probe.tick() => {
                    if self.writable_again().await {
                        // What a restart after a crash does: every job
                        // resumes from its snapshots, exactly once.
                        tracing::warn!("writes succeed again; the node restarts to resume");
                        endpoint.close(0u32.into(), b"node restarting");
                        return Err(restart(local));
                    }
                }
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let node = self.clone();
                    tokio::spawn(async move {
                        let remote = incoming.remote_address();
                        match incoming.await {
                            Ok(connection) => node.connection(connection).await,
                            // A peer that gave up while connecting (a
                            // fetch ended as the placement changed) is no
                            // refusal.
                            Err(e) if gave_up(&e) => {
                                tracing::debug!("a connection from {remote} ended in its handshake: {e}")
                            }
                            Err(e) => tracing::warn!("refused a connection from {remote}: {e}"),
                        }
                    });
                }
                _ = &mut ctrl_c => break,
            }
        }
        scheduler.abort();
        for (_, w) in self
            .fetchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            w.tasks().for_each(|t| t.abort());
        }
        cluster.shutdown().await;
        endpoint.close(0u32.into(), b"node stopping");
        let (streams, jobs) = (self.streams.clone(), self.jobs.clone());
        tokio::task::spawn_blocking(move || {
            jobs.stop_all();
            streams.close()
        })
        .await?;
        Ok(())
    }

    async fn connection(&self, connection: quinn::Connection) {
        // What the peer may do: the role its certificate carries.
        let role = connection
            .peer_identity()
            .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
            .and_then(|certs| certs.first().map(Role::of))
            .unwrap_or(Role::Client);
        loop {
            let (send, recv) = match connection.accept_bi().await {
                Ok(s) => s,
                Err(_) => return,
            };
            let node = self.clone();
            tokio::spawn(async move {
                if let Err(e) = node.request(role, send, recv).await {
                    tracing::debug!("request failed: {e:#}");
                }
            });
        }
    }

    async fn request(
        &self,
        role: Role,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Result<()> {
        let request = match net::read_msg::<Request>(&mut recv).await {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            // A request this node cannot read gets an answer saying so, and
            // its stream ends; the connection stays up for the others.
            Err(e) => {
                let message = format!("malformed request (protocol weir/1): {e:#}");
                return refuse(send, recv, message).await;
            }
        };
        if !role.allows(&request) {
            let message = format!(
                "refused: this client's certificate has the role `{}`, which may ingest and read but not {}; use an admin certificate (`weir cluster issue --role admin`)",
                role.name(),
                request.describe()
            );
            return refuse(send, recv, message).await;
        }
        // A change to a stage of a job spread over the cluster's members.
        let placed = self.placed_change(&request);
        let answer = match request {
            request if placed.is_some() => {
                let body = if matches!(
                    request,
                    Request::DeployUdf { .. } | Request::ReplayUdf { .. }
                ) {
                    read_component(&mut recv).await?
                } else {
                    Vec::new()
                };
                let cluster = placed.as_ref().context("the cluster")?;
                self.change_placed(cluster, request, body, role != Role::Node)
                    .await
            }
            Request::Ping => Ok(Response::Ok {
                message: "pong".into(),
            }),
            Request::ListStreams => Ok(Response::Streams(
                self.list_streams(role == Role::Node).await,
            )),
            Request::CreateStream {
                name,
                columns,
                time,
                end_time,
            } if self
                .cluster
                .get()
                .is_some_and(|c| c.metadata().standing() > 1) =>
            {
                let cluster = self.cluster.get().context("the cluster")?;
                let spec = weir_cluster::streams::StreamSpec {
                    name,
                    columns,
                    time,
                    end_time,
                };
                self.create_cluster_stream(cluster, spec).await
            }
            Request::CreateStream {
                name,
                columns,
                time,
                end_time,
            } => {
                let streams = self.streams.clone();
                tokio::task::spawn_blocking(move || {
                    create_stream(&streams, &name, &columns, &time, end_time.as_deref())
                })
                .await?
            }
            Request::Ingest {
                stream,
                origin,
                producer,
                sequence,
            } => match recv.read_to_end(MAX_INGEST).await {
                Ok(body) => {
                    let from = producer.map(|p| (p, sequence));
                    match self.cluster_stream(&stream) {
                        Some((cluster, s)) => {
                            let write = replicate::Write::Ingest { origin, from, body };
                            self.write_cluster_stream(&cluster, s, role == Role::Node, write)
                                .await
                        }
                        None => {
                            let (streams, producers) =
                                (self.streams.clone(), self.producers.clone());
                            tokio::task::spawn_blocking(move || {
                                ingest(&streams, &producers, &stream, &origin, from, body)
                            })
                            .await?
                        }
                    }
                }
                Err(quinn::ReadToEndError::TooLong) => {
                    let _ = recv.stop(0u32.into());
                    Err(err!(
                        Request,
                        "ingest into `{stream}` refused, nothing was stored: {origin} is larger than the limit of {} MiB per request; split it",
                        MAX_INGEST >> 20
                    ))
                }
                Err(e) => return Err(e).context("reading the ingest body"),
            },
            Request::Read {
                stream,
                from,
                follow,
            } => {
                // A cluster stream is read at its primary, whose copy is whole.
                let primary = self
                    .cluster_stream(&stream)
                    .and_then(|(c, s)| s.primary().filter(|p| *p != c.id()));
                if let Some(member) = primary.filter(|_| role != Role::Node) {
                    let request = Request::Read {
                        stream,
                        from,
                        follow,
                    };
                    return self.pass_stream(send, member, &request).await;
                }
                return self.read(send, &stream, from, follow).await;
            }
            Request::Pull {
                stream,
                from,
                reader,
                behind,
            } => return self.pull(send, recv, stream, (from, behind), reader).await,
            Request::Hold {
                stream,
                reader,
                seq,
            } => self.held_for(&stream, &reader, seq),
            Request::Module { version } => return self.send_module(send, version).await,
            Request::Backup {
                job,
                id,
                vertex,
                have,
                since,
                member,
            } => {
                let asked = (member, have);
                return self.send_backup(send, job, id, vertex, asked, since).await;
            }
            Request::Cluster(request) => match self.cluster.get() {
                Some(cluster) => cluster
                    .handle(request)
                    .await
                    .map(Response::Cluster)
                    .map_err(NodeError::from),
                None => Err(err!(
                    Request,
                    "this node is still joining its cluster; retry"
                )),
            },
            Request::UdfLogs { job, stage, follow } => {
                if role != Role::Node
                    && let Some(member) = self.placed_elsewhere(&job, &stage)
                {
                    let request = Request::UdfLogs { job, stage, follow };
                    return self.pass_stream(send, member, &request).await;
                }
                return self.udf_logs(send, job, stage, follow).await;
            }
            Request::CloseStream { stream } if self.cluster_stream(&stream).is_some() => {
                let (cluster, s) = self.cluster_stream(&stream).context("the stream")?;
                let write = replicate::Write::Close;
                self.write_cluster_stream(&cluster, s, role == Role::Node, write)
                    .await
            }
            Request::Replicate {
                stream,
                primary,
                records,
                evicted,
            } => {
                let body = recv
                    .read_to_end(MAX_INGEST)
                    .await
                    .context("reading a replicated batch")?;
                self.replicated(stream, primary, (records, evicted), body)
                    .await
            }
            Request::CloseStream { stream } => {
                let streams = self.streams.clone();
                tokio::task::spawn_blocking(move || close_stream(&streams, &stream)).await?
            }
            Request::SubmitJob {
                path,
                text,
                modules,
                parallelism,
            } => {
                let body = recv
                    .read_to_end(MAX_INGEST)
                    .await
                    .context("reading the job's components")?;
                let mut parts = Vec::new();
                let mut at = 0usize;
                for (component, len) in modules {
                    let end = at.saturating_add(len as usize);
                    let bytes = body.get(at..end).with_context(|| {
                        format!("the body ends before component {}", component.display())
                    })?;
                    parts.push((component, bytes.to_vec()));
                    at = end;
                }
                let parallelism = parallelism as usize;
                match self.cluster.get().filter(|c| c.metadata().standing() > 1) {
                    // A cluster of more than one member places the job's vertices.
                    Some(cluster) => {
                        self.submit_placed(cluster, path, text, parts, parallelism)
                            .await
                    }
                    None => {
                        let jobs = self.jobs.clone();
                        tokio::task::spawn_blocking(move || {
                            jobs.submit(&path, &text, parts, parallelism)
                                .map(|status| Response::Jobs(vec![status]))
                        })
                        .await?
                    }
                }
            }
            Request::JobStatus { name, local } => {
                match self
                    .cluster
                    .get()
                    .filter(|c| !local && c.metadata().standing() > 1)
                {
                    Some(cluster) => self.placed_status(cluster, name).await,
                    None => self.jobs.status(name.as_deref()).map(Response::Jobs),
                }
            }
            Request::DeployUdf {
                job,
                stage,
                origin,
                shadow,
            } => {
                let body = read_component(&mut recv).await?;
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || {
                    jobs.deploy(&job, &stage, &origin, body, shadow)
                        .map(Response::Patched)
                })
                .await?
            }
            Request::ReplayUdf {
                job,
                stage,
                origin,
                from,
                to,
            } => {
                let body = read_component(&mut recv).await?;
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || {
                    jobs.replay(&job, &stage, &origin, body, from, to)
                        .map(Response::Replayed)
                })
                .await?
            }
            Request::ShadowUdf {
                job,
                copy,
                origin,
                rows,
            } => {
                let body = read_component(&mut recv).await?;
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || {
                    jobs.shadow_copy(&job, &copy, &origin, body, rows)
                        .map(Response::Shadowed)
                })
                .await?
            }
            Request::RollbackUdf { job, stage, to } => {
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || {
                    jobs.rollback(&job, &stage, to.as_deref())
                        .map(Response::Patched)
                })
                .await?
            }
            Request::FilterAdd { job, stage, expr } => {
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || {
                    jobs.filter_add(&job, &stage, &expr).map(Response::Patched)
                })
                .await?
            }
            Request::FilterRemove { job, stage, expr } => {
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || {
                    jobs.filter_remove(&job, &stage, &expr)
                        .map(Response::Patched)
                })
                .await?
            }
            Request::UdfHistory { job, stage } => {
                self.jobs.history(&job, &stage).map(Response::History)
            }
            Request::EndSource { job, source } => {
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || jobs.end_source(&job, &source))
                    .await?
                    .map(|message| Response::Ok { message })
            }
            Request::CancelJob { name } if self.is_placed(&name) => match self.cluster.get() {
                Some(cluster) => self.cancel_placed(cluster, name).await,
                None => Err(err!(
                    Request,
                    "this node is still joining its cluster; retry"
                )),
            },
            Request::CancelJob { name } => {
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || jobs.cancel(&name))
                    .await?
                    .map(|message| Response::Ok { message })
            }
        };
        let response = answer.unwrap_or_else(|e| Response::Error {
            message: format!("{e:#}"),
        });
        write_msg(&mut send, &response).await?;
        send.finish()?;
        let _ = send.stopped().await;
        Ok(())
    }

    /// After a storage failure: whether writes succeed again (space was freed).
    async fn writable_again(&self) -> bool {
        // Only a full disk ends by itself; other failures need the operator.
        if !self.streams.failed_full() {
            return false;
        }
        let streams = self.streams.clone();
        matches!(
            tokio::task::spawn_blocking(move || streams.probe()).await,
            Ok(Ok(()))
        )
    }
}

/// Answers a request with an error and ends its stream without reading the
/// rest of it.
async fn refuse(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    message: String,
) -> Result<()> {
    tracing::warn!("{message}");
    write_msg(&mut send, &Response::Error { message }).await?;
    send.finish()?;
    let _ = recv.stop(0u32.into());
    let _ = send.stopped().await;
    Ok(())
}

/// Replaces this process with a fresh `weir node start` on the address it
/// listens on (the same pid, data and certificates); returns only if that fails.
fn restart(listen: SocketAddr) -> NodeError {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match args.iter().position(|a| a == "--listen") {
        Some(i) if i + 1 < args.len() => args[i + 1] = listen.to_string().into(),
        _ => {
            args.retain(|a| !a.to_string_lossy().starts_with("--listen="));
            args.extend(["--listen".into(), listen.to_string().into()]);
        }
    }
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return err!(Request, "cannot restart the node: {e}"),
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = std::process::Command::new(&program).args(&args).exec();
        err!(
            Request,
            "cannot restart the node ({}): {e}",
            program.display()
        )
    }
    #[cfg(not(unix))]
    {
        let _ = (program, args);
        err!(Request, "storage failed; restart the node")
    }
}

async fn send_error(
    send: &mut quinn::SendStream,
    error: &(dyn std::fmt::Display + Sync),
) -> Result<()> {
    let message = error.to_string();
    Ok(write_msg(send, &Response::Error { message }).await?)
}

/// The component bytes that follow a deploy, replay or shadow request.
async fn read_component(recv: &mut quinn::RecvStream) -> Result<Vec<u8>> {
    recv.read_to_end(MAX_INGEST)
        .await
        .context("reading the component")
}

/// Whether a connection that failed in its handshake was given up by its
/// peer's application (closed, or its task ended) rather than refused:
/// a certificate another CA signed, or an expired one, fails otherwise.
fn gave_up(e: &quinn::ConnectionError) -> bool {
    match e {
        quinn::ConnectionError::ApplicationClosed(_) => true,
        quinn::ConnectionError::ConnectionClosed(close) => {
            close.error_code == quinn::TransportErrorCode::APPLICATION_ERROR
        }
        _ => false,
    }
}
