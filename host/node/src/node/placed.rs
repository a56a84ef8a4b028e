//! A node's part in the cluster's jobs: submitting and cancelling through
//! the coordinator, starting and stopping the vertices the coordinator
//! places here (with the streams they read from other members, see
//! [`super::exchange`]), the modules they need, and the status of every
//! member's vertices.

use std::collections::BTreeSet;
use std::sync::Mutex;

use weir_cluster::jobs::{ClusterJob, JobSpec};
use weir_cluster::metadata::{Command, Health, Metadata, NodeId, Reply};

use super::gather::gather;
use super::wired::{Sourced, Wiring, sourced};
use super::*;
use crate::jobs::{JobRecord, JobStatus};
use weir_net::protocol::Client;

/// How often a member compares what it runs with the coordinator's placement.
const SCHEDULE_EVERY: Duration = Duration::from_millis(200);
/// How long the scheduler waits after a change to the metadata for the
/// entries written with it.
const COALESCE: Duration = Duration::from_millis(5);

/// A job started or changed here: its name, incarnation, the fetches
/// filling its copies, and the wiring they were started for.
type Started = (String, u64, Vec<Sourced>, Wiring);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A number drawn once per request, for a write that may be retried after
/// its answer was lost (`seed` only spreads the draws).
pub(super) fn nonce(seed: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(seed.as_bytes());
    h.finish().max(1)
}

/// A placed job's record as member `me` runs it.
pub(super) fn record_of(job: &ClusterJob, me: NodeId) -> JobRecord {
    JobRecord {
        name: job.spec.name.clone(),
        id: job.id,
        path: job.spec.path.clone(),
        text: job.spec.text.clone(),
        modules: job.spec.modules.clone(),
        parallelism: job.spec.parallelism,
        // A duplicate of a drained member's vertex runs here instead of
        // its backup; a replica runs beside the vertex.
        only: Some(job.runs_on(me).map(str::to_string).collect()),
        backs: Some(
            job.backed_by(me)
                .filter(|v| job.duplicates.get(*v) != Some(&me))
                .map(str::to_string)
                .collect(),
        ),
        replicas: Some(job.replicated_on(me).map(str::to_string).collect()),
        follows: Some(
            job.followed_on(me)
                .into_iter()
                .map(str::to_string)
                .collect(),
        ),
        shared: Some(
            job.duplicates
                .iter()
                .filter(|(v, d)| {
                    weir_cluster::jobs::is_sink(v)
                        && (**d == me || job.placement.get(*v) == Some(&me))
                })
                .map(|(v, _)| v.clone())
                .collect(),
        ),
        starts: job.starts.clone(),
    }
}

/// The jobs another member runs, as it reports its own vertices.
async fn member_jobs(
    addr: &str,
    certs: &CertDir,
    name: Option<String>,
) -> std::result::Result<Vec<JobStatus>, String> {
    let socket: SocketAddr = addr.parse().map_err(|e| format!("address `{addr}`: {e}"))?;
    let call = async {
        let client = Client::connect(socket, certs).await?;
        let answer = client
            .call(&Request::JobStatus { name, local: true }, None)
            .await;
        client.close().await;
        answer
    };
    match tokio::time::timeout(Duration::from_secs(2), call).await {
        Ok(Ok(Response::Jobs(list))) => Ok(list),
        Ok(Ok(other)) => Err(format!("answered {other:?}")),
        // A member without the job's vertices yet answers that it has none.
        Ok(Err(weir_net::NetError::Refused(_))) => Ok(Vec::new()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".into()),
    }
}

impl Node {
    /// Submits a job to the cluster: checked here, placed by the coordinator.
    pub(super) async fn submit_placed(
        &self,
        cluster: &Cluster,
        path: PathBuf,
        text: String,
        parts: Vec<(PathBuf, Vec<u8>)>,
        parallelism: usize,
    ) -> Result<Response> {
        // The job's inputs may be streams created through another member.
        let (node, metadata) = (self.clone(), cluster.metadata());
        tokio::task::spawn_blocking(move || node.local_copies(&metadata)).await??;
        let jobs = self.jobs.clone();
        let (record, vertices) =
            tokio::task::spawn_blocking(move || jobs.prepare(&path, &text, parts, parallelism))
                .await??;
        // A script's inputs it created here become the cluster's.
        for stream in vertices.iter().filter_map(|v| v.ingest.as_ref()) {
            self.to_cluster_stream(cluster, stream).await?;
        }
        let spec = JobSpec {
            name: record.name.clone(),
            path: record.path.clone(),
            text: record.text.clone(),
            parallelism,
            modules: record.modules.clone(),
            origin: cluster.id(),
            replicate: vertices
                .iter()
                .filter(|v| v.replicate > 1)
                .map(|v| (v.name.clone(), v.replicate))
                .collect(),
            vertices: vertices.into_iter().map(|v| v.name).collect(),
            // Drawn once: a retry of this write carries the same number.
            nonce: nonce(&record.name),
        };
        let name = spec.name.clone();
        match cluster.write(Command::SubmitJob(spec)).await? {
            Reply::Submitted { id } => {
                // This member may apply the entry a moment after the coordinator.
                let mut placement = None;
                for _ in 0..50 {
                    if let Some(job) = cluster.metadata().jobs.get(&name).filter(|j| j.id == id) {
                        placement = Some(job.placement.clone());
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let mut per: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
                for (vertex, member) in placement.unwrap_or_default() {
                    per.entry(member).or_default().push(vertex);
                }
                let mut message = format!("job `{name}` submitted to the cluster (id {id})");
                for (member, vertices) in per {
                    message.push_str(&format!(
                        "\n  member {member}: {} vertices: {}",
                        vertices.len(),
                        vertices.join(", ")
                    ));
                }
                Ok(Response::Ok { message })
            }
            Reply::Refused(why) => Err(err!(Job, "{why}")),
            other => Err(err!(
                Job,
                "the coordinator answered the submit with {other:?}"
            )),
        }
    }

    /// Cancels a placed job on every member.
    pub(super) async fn cancel_placed(&self, cluster: &Cluster, name: String) -> Result<Response> {
        match cluster
            .write(Command::CancelJob { name: name.clone() })
            .await?
        {
            // Unchanged: a retry of this write found it applied already.
            Reply::Done | Reply::Unchanged => Ok(Response::Ok {
                message: format!(
                    "job `{name}` cancelled in the cluster; every member stops its vertices and collects its streams"
                ),
            }),
            other => Err(err!(
                Job,
                "the coordinator answered the cancel with {other:?}"
            )),
        }
    }

    /// The status of the cluster's jobs (one, or all with this node's
    /// own): every member's vertices, each marked with its member; the
    /// vertices of a member that does not answer are listed as unreachable.
    pub(super) async fn placed_status(
        &self,
        cluster: &Cluster,
        name: Option<String>,
    ) -> Result<Response> {
        let metadata = cluster.metadata();
        let me = cluster.id();
        if let Some(n) = &name
            && !metadata.jobs.contains_key(n)
        {
            return self.jobs.status(Some(n)).map(Response::Jobs);
        }
        let wanted = |job: &str| name.as_deref().is_none_or(|n| n == job);
        let mut answers = vec![(me, self.jobs.status(None).map_err(|e| format!("{e:#}")))];
        let certs = self.peer_certs.get().cloned();
        for (member, m) in &metadata.members {
            let runs = metadata.jobs.values().any(|j| {
                wanted(&j.spec.name)
                    && (j.on(*member).next().is_some()
                        || j.replicated_on(*member).next().is_some()
                        || j.duplicated_on(*member).next().is_some())
            });
            if *member == me || !runs {
                continue;
            }
            // A member the cluster lost still runs vertices only when no
            // member that is up can resume them.
            let answer = match (m.health, &certs) {
                (Health::Lost, _) => Err(format!(
                    "member {member} at {} is lost, and these vertices wait for it: no member that is up holds a snapshot to resume them from (it was lost before their new backup stored one); start it again on its data directory",
                    m.addr
                )),
                (Health::Replaced, _) => Err(format!(
                    "member {member} at {} was replaced, its data gone, and no member that is up holds a snapshot to resume these vertices from; cancel the job and submit it again",
                    m.addr
                )),
                (Health::Up, Some(certs)) => member_jobs(&m.addr, certs, name.clone())
                    .await
                    .map_err(|e| format!("member {member} at {} does not answer: {e}", m.addr)),
                (Health::Up, None) => Err("this node is not serving yet".into()),
            };
            answers.push((*member, answer));
        }
        Ok(Response::Jobs(gather(
            &metadata,
            me,
            name.as_deref(),
            answers,
        )))
    }

    /// Whether job `name` is one the cluster runs.
    pub(super) fn is_placed(&self, name: &str) -> bool {
        self.cluster
            .get()
            .is_some_and(|c| c.metadata().jobs.contains_key(name))
    }

    /// Keeps the vertices here in line with the coordinator's placement,
    /// until the node stops.
    pub(super) async fn schedule(self, cluster: Cluster, certs: CertDir) {
        // What runs here writes only while this member holds its lease.
        let lease = tokio::spawn(self.clone().keep_lease(cluster.clone()));
        let _lease = super::exchange::AbortOnDrop(lease);
        // Placed jobs start only once this member knows where they run now.
        cluster.caught_up().await;
        let mut tick = tokio::time::interval(SCHEDULE_EVERY);
        let mut seen = None;
        loop {
            // At once when the metadata changes (a member lost, a vertex
            // moved), a burst of entries taken together; else every tick.
            tokio::select! {
                _ = tick.tick() => {}
                applied = cluster.applied_past(seen) => {
                    seen = applied;
                    tokio::time::sleep(COALESCE).await;
                    tick.reset();
                }
            }
            let metadata = cluster.metadata();
            let me = cluster.id();
            if let Err(e) = self.fence(&metadata, me).await {
                tracing::error!("acting on this member's loss: {e:#}");
                continue;
            }
            let node = self.clone();
            let copies = metadata.clone();
            let collect = move || {
                node.local_copies(&copies)
                    .map(|()| node.collect_copies(&copies))
            };
            match tokio::task::spawn_blocking(collect).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("creating copies of the cluster's streams: {e:#}"),
                Err(e) => tracing::error!("creating copies of the cluster's streams: {e}"),
            }
            self.sync_holders(&cluster, &metadata);
            let waiting = self.fetch_modules(&metadata, me, &certs).await;
            self.fetch_change_modules(&metadata, me, &certs).await;
            self.end_fetches(&metadata, me, &waiting).await;
            let node = self.clone();
            let fetches = match tokio::task::spawn_blocking(move || {
                let (fetches, settled) = node.reconcile(&metadata, me, &waiting);
                if settled {
                    node.acted_on(&metadata);
                }
                let holds = node.take_changes(&metadata);
                node.release_changes(&metadata);
                node.keep_unsnapshotted(&metadata);
                (fetches, holds)
            })
            .await
            {
                Ok((fetches, holds)) => {
                    for hold in holds {
                        if let Err(e) = cluster.write(hold).await {
                            tracing::debug!("telling where a follower stopped: {e:#}");
                        }
                    }
                    fetches
                }
                Err(e) => {
                    tracing::error!("placing vertices failed: {e}");
                    continue;
                }
            };
            for started in fetches {
                self.keep_tasks(&cluster, &certs, started);
            }
            self.switch_caught_up(&cluster).await;
            self.watch_stragglers(&cluster).await;
        }
    }

    /// Fetches the modules of the jobs placed here that this node lacks
    /// (each job's own, and those its copies switched to),
    /// from the member the job was submitted to, else any member that is
    /// up; returns the jobs still waiting for one.
    async fn fetch_modules(
        &self,
        metadata: &Metadata,
        me: NodeId,
        certs: &CertDir,
    ) -> BTreeSet<String> {
        let mut waiting = BTreeSet::new();
        for (name, job) in &metadata.jobs {
            // A vertex that moves here may need a module this member lacks.
            if job.on(me).next().is_none() && job.backed_by(me).next().is_none() {
                continue;
            }
            // And the versions the copies switched to, as the cluster
            // recorded: a copy that moves here resumes with them, and a
            // backup stores them with its snapshots (the job is built here
            // with every copy's timeline it holds).
            let switched = job
                .timelines
                .values()
                .flat_map(|t| &t.patches)
                .map(|p| &p.version)
                .filter(|v| !v.is_empty());
            let versions: BTreeSet<&String> = job.spec.modules.values().chain(switched).collect();
            for version in versions {
                if matches!(self.jobs.module(version), Ok(Some(_))) {
                    continue;
                }
                let mut from: Vec<&String> = metadata
                    .members
                    .get(&job.spec.origin)
                    .map(|m| &m.addr)
                    .into_iter()
                    .collect();
                from.extend(
                    metadata
                        .up()
                        .filter(|(id, _)| *id != me)
                        .map(|(_, m)| &m.addr),
                );
                let mut fetched = false;
                for addr in from {
                    match self.fetch_module(addr, certs, version).await {
                        Ok(()) => {
                            fetched = true;
                            break;
                        }
                        Err(e) => tracing::debug!(%addr, "module {version}: {e:#}"),
                    }
                }
                if !fetched {
                    tracing::warn!(job = %name, "module {version} is on no member that answers yet");
                    waiting.insert(name.clone());
                }
            }
        }
        waiting
    }

    pub(super) async fn fetch_module(
        &self,
        addr: &str,
        certs: &CertDir,
        version: &str,
    ) -> Result<()> {
        let socket: SocketAddr = addr
            .parse()
            .map_err(|e| err!(Request, "member address `{addr}`: {e}"))?;
        let client = Client::connect(socket, certs).await?;
        let request = Request::Module {
            version: version.to_string(),
        };
        let mut recv = client.request(&request, None).await?;
        let len = match net::read_msg::<Response>(&mut recv).await? {
            Some(Response::Module { len }) => len as usize,
            Some(Response::Error { message }) => bail!(Request, "{addr}: {message}"),
            other => bail!(Request, "{addr} answered a module request with {other:?}"),
        };
        if len > MAX_INGEST {
            bail!(
                Request,
                "{addr} offers a module of {len} bytes, over the limit"
            );
        }
        let mut bytes = vec![0; len];
        recv.read_exact(&mut bytes)
            .await
            .map_err(|e| err!(Request, "module {version} from {addr}: {e}"))?;
        client.close().await;
        let (jobs, version, from) = (
            self.jobs.clone(),
            version.to_string(),
            format!("member {addr}"),
        );
        tokio::task::spawn_blocking(move || jobs.store_module(&version, bytes, &from)).await??;
        Ok(())
    }

    /// Answers a member's request for a module's bytes.
    pub(super) async fn send_module(
        &self,
        mut send: quinn::SendStream,
        version: String,
    ) -> Result<()> {
        match self.jobs.module(&version) {
            Ok(Some(bytes)) => {
                write_msg(
                    &mut send,
                    &Response::Module {
                        len: bytes.len() as u64,
                    },
                )
                .await?;
                send.write_all(&bytes).await.context("sending a module")?;
            }
            Ok(None) => {
                let message = format!("module {version} is not stored on this member");
                send_error(&mut send, &message).await?;
            }
            Err(e) => send_error(&mut send, &e).await?,
        }
        send.finish()?;
        let _ = send.stopped().await;
        Ok(())
    }

    /// Starts what the placement puts here and is not running (unless it
    /// is `waiting` for a module), stops what it no longer does; a job
    /// whose vertices here stay runs on, its copies and backups started
    /// again for where the others are now. Returns the fetches of the jobs
    /// it started or changed.
    fn reconcile(
        &self,
        metadata: &Metadata,
        me: NodeId,
        waiting: &BTreeSet<String>,
    ) -> (Vec<Started>, bool) {
        let running = self.jobs.placed();
        // Whether every vertex placed here runs (for the heartbeat's needs).
        let mut settled = waiting.is_empty();
        for (name, (id, ..)) in &running {
            if metadata.jobs.get(name).is_none_or(|j| j.id != *id) {
                self.stop_fetches(name);
                match self.jobs.cancel(name) {
                    Ok(_) => {
                        tracing::info!(job = %name, "job cancelled in the cluster: stopped here")
                    }
                    Err(e) => {
                        settled = false;
                        tracing::error!("cancelling job `{name}` here: {e:#}")
                    }
                }
            }
        }
        let mut started = Vec::new();
        for (name, job) in &metadata.jobs {
            let record = record_of(job, me);
            let mine = record.only.clone().unwrap_or_default();
            let backs = record.backs.clone().unwrap_or_default();
            let wiring: Wiring = (
                job.placement.clone(),
                job.backups.clone(),
                job.replicas.clone(),
                job.handing.clone(),
            );
            let wired = lock(&self.fetchers)
                .get(name)
                .is_some_and(|w| w.id == job.id && w.wiring == wiring);
            let idle = mine.is_empty() && backs.is_empty();
            match running.get(name) {
                Some((id, here, b)) if *id == job.id && *here == mine && *b == backs && wired => {
                    continue;
                }
                // Vertices moved: those that stay here run on.
                // Its fetches from members that still write what they
                // copy go on ([`Node::keep_tasks`]).
                Some((id, ..)) if *id == job.id && !idle && !waiting.contains(name) => {
                    let changed = self
                        .jobs
                        .replace_placed(record.clone(), &job.timelines)
                        .and_then(|()| self.wire_placed(job, &record, me));
                    // A copy that arrived took the job's changes as far
                    // as its snapshot says: the rest are made to it.
                    lock(&self.changes_taken).remove(name);
                    match changed {
                        Ok(fetches) => {
                            started.push((name.clone(), job.id, sourced(job, fetches), wiring))
                        }
                        Err(e) => {
                            settled = false;
                            tracing::error!("job `{name}`: changing its vertices here: {e:#}");
                            self.stop_fetches(name);
                            self.jobs.stop_placed(name);
                        }
                    }
                    continue;
                }
                Some((id, ..)) if *id == job.id => {
                    self.stop_fetches(name);
                    self.jobs.stop_placed(name);
                }
                _ => {}
            }
            if idle || waiting.contains(name) {
                continue;
            }
            if let Err(e) = self.jobs.start_placed(record.clone(), &job.timelines) {
                settled = false;
                tracing::error!("job `{name}` cannot start here: {e:#}");
                continue;
            }
            lock(&self.changes_taken).remove(name);
            match self.wire_placed(job, &record, me) {
                Ok(fetches) => started.push((name.clone(), job.id, sourced(job, fetches), wiring)),
                Err(e) => {
                    settled = false;
                    tracing::error!("job `{name}` cannot start here: {e:#}")
                }
            }
        }
        (started, settled)
    }
}
