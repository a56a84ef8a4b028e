//! Job streams between members. A vertex reads a stream written on another
//! member from a local copy (the same rStream, created here with the job's
//! other streams). A fetch task fills it: it pulls the writer's durable
//! entries from the copy's next seq over one QUIC stream ([`Request::Pull`])
//! and writes each at its seq, so entries sent again after a reconnect are
//! dropped as duplicates. It acknowledges what its copy made durable, but no
//! more than its readers' backed-up snapshots still need; the writer
//! collects nothing a copy still lacks. It tells the members that run a
//! replica of the writer the same ([`Request::Hold`]), so that they keep
//! what the copy lacks too, in case the writer moves to one of them.

use std::collections::HashMap;

use weir_cluster::{Cluster, NodeId};

use super::*;
use weir_net::frames;
use weir_net::protocol::Client;

/// How long a pull waits for new entries before it sends an empty batch
/// (which tells the reader the writer is alive).
const PULL_IDLE: Duration = Duration::from_millis(200);
/// Bytes a batch gathers before it is sent (at least one entry).
const BATCH_BYTES: usize = 1 << 20;
/// Entries a batch takes at most.
const BATCH_ENTRIES: usize = 256;
/// How long a fetch waits before it reconnects after a failure.
const RETRY: Duration = Duration::from_millis(200);
/// How long pulls of a stream fail on end before a warning says so.
const PULL_WARN: Duration = Duration::from_secs(5);
/// How often a copy tells the members running replicas of its writer how
/// far it holds the stream.
const HOLD_EVERY: Duration = Duration::from_millis(300);

/// Test hook: while this file exists, backups' copies of vertices' output
/// write nothing they pull, as a backup's copy that fell behind the
/// readers' copies under load.
pub const BACKUP_COPY_PAUSE_ENV: &str = "WEIR_TEST_BACKUP_COPY_PAUSE_FILE";

/// Who writes a stream a member copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Writer {
    /// A vertex of the job, wherever it is placed.
    Vertex(String),
    /// Ingest, at the primary of the cluster's stream of this name.
    Ingest(String),
}

/// A stream a vertex here reads from another member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fetch {
    /// The job.
    pub(super) job: String,
    /// Its incarnation.
    pub(super) id: u64,
    /// The stream's full name.
    pub(super) stream: String,
    /// Who writes it.
    pub(super) writer: Writer,
    /// The name this copy pulls under (the writer holds entries for it).
    pub(super) reader: String,
    /// The members running a replica of the writer, which keep the stream
    /// for this copy too.
    pub(super) replicas: Vec<NodeId>,
}

impl Fetch {
    /// The member this fetch pulls from as job `job` is placed: a vertex
    /// writer's member (`None` for ingest, whose primary the fetch finds
    /// itself each time it connects). A fetch already running for the
    /// same stream, reader and member goes on when the job's wiring
    /// changes; one whose writer moved is started again, to pull from
    /// where the writer is now.
    pub(super) fn source(&self, job: &weir_cluster::jobs::ClusterJob) -> Option<NodeId> {
        match &self.writer {
            Writer::Vertex(v) => job.placement.get(v).copied(),
            Writer::Ingest(_) => None,
        }
    }
}

/// Aborts a task when dropped (with the fetch or the node that started it).
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Node {
    /// Fills this member's copy of a stream written on another member,
    /// reconnecting (to wherever the writer is placed) until the job stops here.
    pub(super) async fn fetch(self, cluster: Cluster, certs: CertDir, f: Fetch) {
        let _holds = (!f.replicas.is_empty()).then(|| {
            let (node, cluster, certs) = (self.clone(), cluster.clone(), certs.clone());
            let (stream, reader, replicas) =
                (f.stream.clone(), f.reader.clone(), f.replicas.clone());
            AbortOnDrop(tokio::spawn(async move {
                node.tell_replicas(cluster, certs, stream, reader, replicas)
                    .await
            }))
        });
        let _fetching = self.pulled.fetching(&f.stream, false);
        // A pull failing this long on end is worth a warning, once.
        let mut failing: Option<(std::time::Instant, bool)> = None;
        loop {
            if !self.jobs.runs(&f.job, f.id) {
                return;
            }
            let metadata = cluster.metadata();
            let member = match &f.writer {
                Writer::Vertex(writer) => metadata
                    .jobs
                    .get(&f.job)
                    .filter(|j| j.id == f.id)
                    .and_then(|j| j.placement.get(writer))
                    .copied(),
                // The primary's copy is whole: once this member is the
                // primary, its own copy is.
                Writer::Ingest(stream) => metadata
                    .streams
                    .get(stream)
                    .and_then(|s| s.primary())
                    .filter(|p| *p != cluster.id()),
            };
            let addr = member
                .and_then(|m| metadata.members.get(&m))
                .map(|m| m.addr.clone());
            let Some(addr) = addr else { return };
            let began = std::time::Instant::now();
            match self.pull_from(&addr, &certs, &f).await {
                // A vertex here caught up, or fell behind: pull again, saying so.
                Ok(true) => failing = None,
                Ok(false) => return,
                Err(e) => {
                    // A pull that ran a while delivered: a new failure,
                    // from now.
                    if began.elapsed() > PULL_WARN {
                        failing = None;
                    }
                    let (since, told) = failing.get_or_insert((std::time::Instant::now(), false));
                    if !*told && since.elapsed() > PULL_WARN {
                        *told = true;
                        tracing::warn!(stream = %f.stream, %addr, "pulls have failed for {:?}, retrying: {e:#}", since.elapsed());
                    } else {
                        tracing::debug!(stream = %f.stream, %addr, "pull failed, retrying: {e:#}");
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Fills the copy from the member at `addr` until the job stops here
    /// (`false`), or a vertex here that reads it starts or stops writing
    /// again what was copied further (`true`: pull again, saying so).
    async fn pull_from(&self, addr: &str, certs: &CertDir, f: &Fetch) -> Result<bool> {
        let socket: SocketAddr = addr
            .parse()
            .map_err(|e| err!(Request, "member address `{addr}`: {e}"))?;
        let local = self.streams.info(&f.stream)?.id;
        let client = Client::connect(socket, certs).await?;
        let from = self.streams.positions(local).map_or(0, |p| p.0);
        let behind = self.pulled.pulls_behind(&f.stream);
        let request = Request::Pull {
            stream: f.stream.clone(),
            from,
            reader: f.reader.clone(),
            behind,
        };
        let (mut send, mut recv) = client.open(&request).await?;
        match net::read_msg::<Response>(&mut recv).await? {
            Some(Response::Ok { .. }) => {}
            Some(Response::Error { message }) => bail!(Request, "{addr}: {message}"),
            other => bail!(Request, "{addr} answered a pull with {other:?}"),
        }
        tracing::debug!(stream = %f.stream, %addr, from, behind, "pulling");
        let _pulling = self.pulled.fetching(&f.stream, true);
        let mut buf = Vec::new();
        let mut acked = from;
        let pause = std::env::var_os(BACKUP_COPY_PAUSE_ENV)
            .filter(|_| f.reader.starts_with("backup/"))
            .map(std::path::PathBuf::from);
        loop {
            if !self.jobs.runs(&f.job, f.id) {
                client.close().await;
                return Ok(false);
            }
            if self.pulled.pulls_behind(&f.stream) != behind {
                client.close().await;
                return Ok(true);
            }
            if frames::read_batch(&mut recv, &mut buf).await?.is_none() {
                bail!(
                    Request,
                    "the member at {addr} ended the pull of `{}`",
                    f.stream
                );
            }
            let batch = frames::decode_batch(&buf)
                .with_context(|| format!("from the member at {addr}, stream `{}`", f.stream))?;
            while pause.as_ref().is_some_and(|p| p.exists()) && self.jobs.runs(&f.job, f.id) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let log = crate::jobs::is_log(&f.stream);
            if log {
                // The writer collected lines this copy lacks: it goes on
                // from what the writer holds.
                self.streams.skip_to(local, batch.first)?;
            }
            if log {
                for (seq, entry) in (batch.first..).zip(&batch.entries) {
                    match self.streams.write(local, seq, entry.to_vec()) {
                        // Lines the vertex logged here before it moved may
                        // read differently (a stage recovered by replay):
                        // the line first written stays.
                        Err(weir_store::rstream::StreamError::Determinism { .. }) => {}
                        written => {
                            written?;
                        }
                    }
                }
            } else {
                let values = batch.entries.iter().map(|e| e.to_vec()).collect();
                self.streams.write_from(local, batch.first, values)?;
            }
            let ack = self.copy_holds(local);
            if ack != acked {
                frames::write_ack(&mut send, ack).await?;
                acked = ack;
            }
        }
    }

    /// What copy `local` acknowledges: what it holds, but no more than its
    /// readers here still need (a reader resumed elsewhere from its
    /// backup's snapshot reads from the writer again).
    fn copy_holds(&self, local: u64) -> u64 {
        let durable = self.streams.positions(local).map_or(0, |p| p.1);
        durable.min(self.jobs.held(local).unwrap_or(durable))
    }

    /// Tells the members in `replicas` (running replicas of the writer of
    /// job stream `stream`) how far this member's copy holds it, every
    /// [`HOLD_EVERY`], until the fetch ends; a member that does not answer
    /// is told again next time.
    async fn tell_replicas(
        self,
        cluster: Cluster,
        certs: CertDir,
        stream: String,
        reader: String,
        replicas: Vec<NodeId>,
    ) {
        let mut clients: HashMap<NodeId, Client> = HashMap::new();
        let mut tick = tokio::time::interval(HOLD_EVERY);
        loop {
            tick.tick().await;
            let Ok(local) = self.streams.info(&stream).map(|i| i.id) else {
                continue;
            };
            let request = Request::Hold {
                stream: stream.clone(),
                reader: reader.clone(),
                seq: self.copy_holds(local),
            };
            let metadata = cluster.metadata();
            for member in &replicas {
                let Some(addr) = metadata.members.get(member).map(|m| m.addr.clone()) else {
                    continue;
                };
                if let Err(e) =
                    tell_member(&mut clients, *member, &addr, &certs, &request, HOLD_EVERY).await
                {
                    tracing::debug!(%stream, %addr, "telling a replica's member: {e:#}");
                }
            }
        }
    }

    /// A member's copy of job stream `stream`, pulled under `reader` from
    /// the member running its writer, still needs it from `seq` on: this
    /// member runs a replica of the writer and keeps that much for it.
    pub(super) fn held_for(&self, stream: &str, reader: &str, seq: u64) -> Result<Response> {
        // Not before the job runs here: its holds are registered then. Nor
        // where no instance of the stream's vertex runs (any more): a hold
        // told by a member that has not seen it go would keep this
        // member's copy from being collected.
        if self.jobs.serves(stream) && self.jobs.writes_here(stream) {
            let id = self.streams.info(stream)?.id;
            self.jobs.hold(id, reader, seq);
        }
        Ok(Response::Ok {
            message: "held".into(),
        })
    }

    /// Serves a member's pull of a job stream: durable entries from `from`
    /// on, in batches, for as long as the reader reads; its
    /// acknowledgements let this node collect what every reader has.
    pub(super) async fn pull(
        &self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        stream: String,
        (from, behind): (u64, bool),
        reader: String,
    ) -> Result<()> {
        let info = match self.streams.info(&stream) {
            // Not before the job runs here (after a restart): its vertices'
            // holds are not registered yet. Nor before its writer runs
            // here: a copy this member keeps as a backup, or as a reader's,
            // is read from here by the vertices that start here, which
            // register their holds as they start; a pull served from it
            // before would let the puller's acknowledgements collect what
            // they need. The reader retries.
            Ok(_)
                if self.cluster_stream(&stream).is_none()
                    && !(self.jobs.serves(&stream) && self.jobs.writes_here(&stream)) =>
            {
                let message =
                    format!("stream `{stream}`: its writer does not run on this member (yet)");
                send_error(&mut send, &message).await?;
                send.finish()?;
                return Ok(());
            }
            Ok(info) => info,
            Err(e) => {
                // The job may not have started here yet: the reader retries.
                send_error(&mut send, &e).await?;
                send.finish()?;
                return Ok(());
            }
        };
        let low = self.streams.positions(info.id).map_or(0, |p| p.2);
        // A UDF's log is copied from what its writer still holds.
        let log = crate::jobs::is_log(&stream);
        let from = if log { from.max(low) } else { from };
        if from < low {
            let message = format!(
                "stream `{stream}` was collected below seq {low}; the reader asks from {from}"
            );
            send_error(&mut send, &message).await?;
            send.finish()?;
            return Ok(());
        }
        // A reader's earlier acknowledgement may hold less than the copy
        // has: what its vertex resumed from its backup still needs.
        if !log {
            self.jobs.hold_from(info.id, &reader, from);
        }
        // Its copy holds what it holds: the vertex here makes no change
        // below (see `pulled`).
        let _open = (!log).then(|| self.pulled.open(&stream, &reader, from, behind));
        write_msg(
            &mut send,
            &Response::Ok {
                message: "pulling".into(),
            },
        )
        .await?;
        let (jobs, id, who) = (self.jobs.clone(), info.id, reader.clone());
        let acks = tokio::spawn(async move {
            while let Ok(Some(seq)) = frames::read_ack(&mut recv).await {
                if !log {
                    jobs.acknowledged(id, &who, seq);
                }
            }
        });
        tracing::debug!(%stream, %reader, from, behind, "a pull begins");
        let result = self.send_batches(&mut send, info.id, from).await;
        tracing::debug!(%stream, %reader, ?result, "a pull ends");
        acks.abort();
        result
    }

    async fn send_batches(&self, send: &mut quinn::SendStream, id: u64, from: u64) -> Result<()> {
        let mut position = from;
        let mut frame = Vec::new();
        loop {
            let mut entries = self.streams.read(id, position, BATCH_ENTRIES)?;
            if entries.is_empty() {
                let streams = self.streams.clone();
                tokio::task::spawn_blocking(move || streams.wait_for(id, position, PULL_IDLE))
                    .await?;
                entries = self.streams.read(id, position, BATCH_ENTRIES)?;
            }
            let mut bytes = 0;
            let take = entries
                .iter()
                .take_while(|(_, e)| {
                    let first = bytes == 0;
                    bytes += e.len();
                    first || bytes <= BATCH_BYTES
                })
                .count();
            frame.clear();
            // An rStream's seqs are dense: the batch is `position..position + take`.
            if let Some((first, _)) = entries.first()
                && *first != position
            {
                bail!(
                    Request,
                    "stream #{id}: read from seq {position} began at {first}"
                );
            }
            frames::encode_batch(
                position,
                entries[..take].iter().map(|(_, e)| e.as_slice()),
                &mut frame,
            );
            // Waits while the reader's window is full: a slow reader slows this sender.
            send.write_all(&frame)
                .await
                .context("the reader went away")?;
            position += take as u64;
        }
    }
}

/// Sends `request` to the member at `addr` over its connection in
/// `clients` under `key` (made if there is none), within `wait`. A member
/// that fails or does not answer loses its connection: the next call
/// makes one again.
pub(super) async fn tell_member<K: Eq + std::hash::Hash + Clone>(
    clients: &mut HashMap<K, Client>,
    key: K,
    addr: &str,
    certs: &CertDir,
    request: &Request,
    wait: Duration,
) -> Result<()> {
    let told = async {
        if !clients.contains_key(&key) {
            let socket: SocketAddr = addr
                .parse()
                .map_err(|e| err!(Request, "member address `{addr}`: {e}"))?;
            clients.insert(key.clone(), Client::connect(socket, certs).await?);
        }
        let client = clients.get(&key).context("a connection")?;
        client.call(request, None).await?;
        Ok::<(), NodeError>(())
    };
    let result = tokio::time::timeout(wait, told)
        .await
        .unwrap_or_else(|_| Err(err!(Request, "{addr}: no answer")));
    if result.is_err()
        && let Some(client) = clients.remove(&key)
    {
        client.close().await;
    }
    result
}
