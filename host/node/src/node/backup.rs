//! Backing up the vertices of a placed job that the coordinator gives this
//! member to back up: every round, each one's latest snapshot from the
//! member that runs it, stored once this member's copies of its output
//! streams hold what the snapshot wrote (see `jobs::backup`). The copies
//! themselves fill like any copy ([`super::exchange`]).

use std::collections::HashMap;

use weir_cluster::metadata::Command;
use weir_cluster::{Cluster, NodeId};

use super::*;
use crate::jobs::Stored;
use weir_net::protocol::Client;

/// Input entries a duplicate may have left to read and count as caught up.
const CAUGHT_UP: u64 = 8;

/// How often a backup asks for its vertices' latest snapshots.
const BACKUP_EVERY: Duration = Duration::from_millis(300);
/// Test hook: milliseconds between a backup's rounds instead, as a backup
/// that falls behind under load would take; the first round, too, comes
/// that long after the rounds (re)start (when the job's placement changes).
pub const BACKUP_EVERY_ENV: &str = "WEIR_TEST_BACKUP_EVERY_MS";
/// How long a backup waits for one snapshot.
const FETCH_WAIT: Duration = Duration::from_secs(5);
/// Rounds a fetched snapshot waits while the backup's copies of the
/// vertex's streams gain nothing, before a newer one replaces it.
const STALLED_ROUNDS: u32 = 3;

/// How long a round waits, after its fetches, for copies that were behind
/// a snapshot to hold what it wrote, and stores it then: within the round
/// rather than a round later.
const CATCH_UP_WAIT: Duration = Duration::from_millis(250);
/// How often it looks at the copies meanwhile.
const CATCH_UP_POLL: Duration = Duration::from_millis(20);

/// A snapshot the backup's copies had not caught up with.
struct Pending {
    bytes: Vec<u8>,
    /// Where it was fetched from: the member and its count of losses.
    from: (NodeId, u64),
    /// What the copies held (output, dead letters) when last tried.
    copied: (u64, u64),
    /// What the snapshot wrote: the copies must hold as much.
    want: (u64, u64),
    /// Rounds since, in which they gained nothing.
    stalled: u32,
}

impl Pending {
    /// The snapshot (`bytes`, handed back by the store) tried again while
    /// the copies hold `copied`: it waits on while they fill, and is
    /// dropped (`None`) once they have gained nothing for
    /// [`STALLED_ROUNDS`] rounds.
    fn again(self, bytes: Vec<u8>, copied: (u64, u64)) -> Option<Pending> {
        let stalled = match copied == self.copied {
            true => self.stalled + 1,
            false => 0,
        };
        (stalled < STALLED_ROUNDS).then_some(Pending {
            bytes,
            copied,
            stalled,
            ..self
        })
    }
}

/// Resolves once vertex `vertex` of job `job` (incarnation `id`) no longer
/// runs where `from` (the member and its count of losses) says, as this
/// member applies the metadata: it moved, or its member was lost.
async fn moved(cluster: &Cluster, job: &str, id: u64, vertex: &str, from: (NodeId, u64)) {
    let mut seen = None;
    while cluster.runs_on(job, id, vertex) == Some(from) {
        seen = cluster.applied_past(seen).await;
    }
}

/// Resolves once member `member` is not up, as this member applies the
/// metadata.
async fn down(cluster: &Cluster, member: NodeId) {
    let mut seen = None;
    while cluster
        .metadata()
        .members
        .get(&member)
        .is_some_and(|m| m.health == weir_cluster::metadata::Health::Up)
    {
        seen = cluster.applied_past(seen).await;
    }
}

impl Node {
    /// Keeps the backups of the vertices of job `job` (incarnation `id`)
    /// that the coordinator gives this member, until the job's placement
    /// changes (the scheduler then starts the rounds again).
    pub(super) async fn back_up(self, cluster: Cluster, certs: CertDir, job: String, id: u64) {
        // Per vertex: the input positions and number of the snapshot
        // stored last here.
        let mut have: HashMap<String, (Vec<u64>, Option<u64>)> = HashMap::new();
        // Per vertex: a snapshot its copies had not caught up with, where
        // it was fetched from (the member and its count of losses), what
        // the copies held then and for how many rounds since.
        let mut pending: HashMap<String, Pending> = HashMap::new();
        let slowed: Option<Duration> = std::env::var(BACKUP_EVERY_ENV)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis);
        let mut tick = match slowed {
            Some(every) => tokio::time::interval_at(tokio::time::Instant::now() + every, every),
            None => tokio::time::interval(BACKUP_EVERY),
        };
        loop {
            tick.tick().await;
            if !self.jobs.runs(&job, id) {
                return;
            }
            let metadata = cluster.metadata();
            let Some(placed) = metadata.jobs.get(&job).filter(|j| j.id == id) else {
                return;
            };
            let me = cluster.id();
            // Its copies may be emptied first; what it stores before then
            // counts for nothing.
            let Some(acted) = self.acted_on_losses(&metadata, me) else {
                continue;
            };
            let mut ready = Vec::new();
            // One connection per member per round, for all its vertices.
            let mut clients: HashMap<String, Client> = HashMap::new();
            // A vertex whose duplicate runs here is no backup's.
            let backed: Vec<&str> = placed
                .backed_by(me)
                .filter(|v| placed.duplicates.get(*v) != Some(&me))
                .collect();
            // A vertex backed up elsewhere meanwhile (or run here) starts
            // over when it comes back: what was stored here since is not
            // what this round stored.
            have.retain(|v, _| backed.contains(&v.as_str()));
            pending.retain(|v, _| backed.contains(&v.as_str()));
            // Only the vertex's backup says it is ready: a previous one
            // (`handing`) stores its snapshots until then, unannounced.
            let is_new = |v: &str| placed.backups.get(v) == Some(&me) && !placed.ready.contains(v);
            for vertex in backed {
                // A snapshot the copies had not caught up with is stored
                // first: a newer one would be further ahead.
                if let Some(mut p) = pending.remove(vertex) {
                    let (from, bytes) = (p.from, std::mem::take(&mut p.bytes));
                    match self
                        .store_backup(&cluster, &job, id, vertex, bytes, from)
                        .await
                    {
                        (Ok(Stored::Resumes(inputs, snapshot)), _) => {
                            have.insert(vertex.to_string(), (inputs, snapshot));
                            if is_new(vertex) {
                                ready.push((vertex.to_string(), from));
                            }
                        }
                        // Copies that fill catch up with it; ones that do
                        // not (their writer collected where they go on)
                        // get a newer one, which begins them further on.
                        (Ok(Stored::Behind { copied, .. }), bytes) => {
                            if let Some(p) = p.again(bytes, copied) {
                                pending.insert(vertex.to_string(), p);
                                continue;
                            }
                            tracing::debug!(%job, %vertex, ?copied, "backup: the copies do not fill; a newer snapshot is fetched");
                        }
                        // A newer one is fetched below (`store_backup` logs why).
                        (Ok(Stored::Stale | Stored::Left), _) => {}
                        (Ok(Stored::NotBacked), _) => {}
                        (Err(e), _) => {
                            tracing::warn!(%job, %vertex, "storing a backup: {e:#}");
                            // The next asks for the whole state.
                            have.remove(vertex);
                        }
                    }
                }
                let Some((from, addr)) = placed.placement.get(vertex).and_then(|m| {
                    let member = metadata.members.get(m)?;
                    Some(((*m, member.losses), member.addr.clone()))
                }) else {
                    continue;
                };
                // Until it stores one in this run, the snapshot stored here
                // before (the vertex's own, from when it ran here, or a
                // backup's) is where the vertex would resume here: its
                // member keeps the inputs from there.
                let held = match have.get(vertex) {
                    Some(h) => Some(h.0.clone()),
                    None => self.jobs.stored_inputs(&job, id, vertex).ok().flatten(),
                };
                let request = Request::Backup {
                    job: job.clone(),
                    id,
                    vertex: vertex.to_string(),
                    have: held,
                    since: have.get(vertex).and_then(|h| h.1),
                    member: Some(me),
                };
                // Given up once the vertex no longer runs there: a member
                // lost meanwhile would hold up the whole round.
                let fetched = tokio::select! {
                    fetched = tokio::time::timeout(
                        FETCH_WAIT,
                        self.fetch_backup(&mut clients, &addr, &certs, &request),
                    ) => fetched.unwrap_or_else(|_| {
                        Err(err!(Request, "{addr}: no snapshot within {FETCH_WAIT:?}"))
                    }),
                    () = moved(&cluster, &job, id, vertex, from) => {
                        Err(err!(Request, "{addr}: the vertex no longer runs there"))
                    }
                };
                let bytes = match fetched {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        tracing::debug!(%job, %vertex, %addr, "backup: {e:#}");
                        if let Some(client) = clients.remove(&addr) {
                            client.close().await;
                        }
                        continue;
                    }
                };
                match self
                    .store_backup(&cluster, &job, id, vertex, bytes, from)
                    .await
                {
                    (Ok(Stored::Resumes(inputs, snapshot)), _) => {
                        have.insert(vertex.to_string(), (inputs, snapshot));
                        if is_new(vertex) {
                            ready.push((vertex.to_string(), from));
                        }
                    }
                    (Ok(Stored::Behind { copied, want }), bytes) => {
                        tracing::debug!(%job, %vertex, "backup: the copies are behind the snapshot");
                        let p = Pending {
                            bytes,
                            from,
                            copied,
                            want,
                            stalled: 0,
                        };
                        pending.insert(vertex.to_string(), p);
                    }
                    (Ok(Stored::Stale | Stored::Left | Stored::NotBacked), _) => {}
                    (Err(e), _) => {
                        tracing::warn!(%job, %vertex, "storing a backup: {e:#}");
                        have.remove(vertex);
                    }
                }
            }
            // A snapshot the copies were behind is stored as soon as they
            // hold what it wrote (a new backup's copy begins with its
            // first snapshot and fills in a moment).
            let waited = tokio::time::Instant::now();
            while !pending.is_empty() && waited.elapsed() < CATCH_UP_WAIT {
                tokio::time::sleep(CATCH_UP_POLL).await;
                let caught: Vec<String> = pending
                    .iter()
                    .filter(|(v, p)| {
                        self.jobs
                            .backup_copies(&job, id, v)
                            .is_ok_and(|c| c.0 >= p.want.0 && c.1 >= p.want.1)
                    })
                    .map(|(v, _)| v.clone())
                    .collect();
                for vertex in caught {
                    let Some(mut p) = pending.remove(&vertex) else {
                        continue;
                    };
                    let (from, bytes) = (p.from, std::mem::take(&mut p.bytes));
                    match self
                        .store_backup(&cluster, &job, id, &vertex, bytes, from)
                        .await
                    {
                        (Ok(Stored::Resumes(inputs, snapshot)), _) => {
                            if is_new(&vertex) {
                                ready.push((vertex.clone(), from));
                            }
                            have.insert(vertex, (inputs, snapshot));
                        }
                        (Ok(Stored::Behind { .. }), bytes) => {
                            p.bytes = bytes;
                            pending.insert(vertex, p);
                        }
                        (Ok(_), _) => {}
                        (Err(e), _) => {
                            tracing::warn!(%job, %vertex, "storing a backup: {e:#}");
                            have.remove(&vertex);
                        }
                    }
                }
            }
            self.hold_for_replicas(
                &cluster,
                &mut clients,
                &certs,
                &metadata,
                placed,
                &job,
                id,
                me,
            )
            .await;
            for client in clients.into_values() {
                client.close().await;
            }
            if !ready.is_empty() {
                // Not waited for: the next round writes again what is lost.
                let (vertices, from) = ready.into_iter().unzip();
                let ready = Command::BackupReady {
                    name: job.clone(),
                    id,
                    vertices,
                    member: me,
                    acted,
                    from,
                };
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    match cluster.write(ready).await {
                        Ok(reply) => tracing::debug!("backups ready: {reply:?}"),
                        Err(e) => tracing::debug!("backups ready, not yet written: {e:#}"),
                    }
                });
            }
        }
    }

    /// Stores a fetched snapshot of `vertex` ([`crate::jobs::Jobs::store_backup`])
    /// on tokio's blocking threads, and hands the bytes back: it decodes the
    /// snapshot and waits for its commit, which queues behind every entry
    /// the vertices here wrote, and the runtime's workers carry the
    /// heartbeats and every connection.
    ///
    /// Only while the vertex runs where the snapshot was fetched (`from`:
    /// the member and its count of losses), as far as this member knows:
    /// a member lost while it ran goes on with the vertex until it hears
    /// of its loss, and what it snapshots meanwhile is a run the cluster
    /// left (the vertex resumed elsewhere from an older snapshot, and a
    /// patch or a sink's file may have gone another way since). Such a
    /// snapshot is dropped ([`Stored::Left`]); the coordinator ignores a
    /// word about one that gets through (`BackupReady`'s `from`).
    async fn store_backup(
        &self,
        cluster: &Cluster,
        job: &str,
        id: u64,
        vertex: &str,
        bytes: Vec<u8>,
        from: (NodeId, u64),
    ) -> (Result<Stored>, Vec<u8>) {
        if cluster.runs_on(job, id, vertex) != Some(from) {
            tracing::debug!(
                job,
                vertex,
                ?from,
                "backup: a snapshot from where the vertex no longer runs is dropped"
            );
            return (Ok(Stored::Left), bytes);
        }
        let (jobs, job, vertex) = (self.jobs.clone(), job.to_string(), vertex.to_string());
        tokio::task::spawn_blocking(move || (jobs.store_backup(&job, id, &vertex, &bytes), bytes))
            .await
            .unwrap_or_else(|e| (Err(err!(Job, "storing a backup: {e}")), Vec::new()))
    }

    /// Tells the members running replicas or a duplicate of the vertices
    /// this member runs how far this member keeps their streams (output
    /// and dead letters): they keep as much, so that whichever takes a
    /// vertex's place still has what its readers and their backups'
    /// snapshots need (a reader may resume from an older snapshot than the
    /// replica's own).
    #[allow(clippy::too_many_arguments)]
    async fn hold_for_replicas(
        &self,
        cluster: &Cluster,
        clients: &mut HashMap<String, Client>,
        certs: &CertDir,
        metadata: &weir_cluster::metadata::Metadata,
        placed: &weir_cluster::jobs::ClusterJob,
        job: &str,
        id: u64,
        me: NodeId,
    ) {
        let reader = super::wire::writer_reader(me);
        for (vertex, member) in &placed.placement {
            if *member != me {
                continue;
            }
            let others: Vec<NodeId> = placed
                .instances(vertex)
                .into_iter()
                .filter(|m| *m != me)
                .collect();
            if others.is_empty() {
                continue;
            }
            let full = format!("{job}@{id}.{vertex}");
            for stream in [full.clone(), format!("{full}.dead")] {
                let Some(low) = self
                    .streams
                    .info(&stream)
                    .ok()
                    .and_then(|i| self.streams.positions(i.id))
                    .map(|p| p.2)
                else {
                    continue;
                };
                let request = Request::Hold {
                    stream,
                    reader: reader.clone(),
                    seq: low,
                };
                for other in &others {
                    let Some(addr) = metadata.members.get(other).map(|m| m.addr.clone()) else {
                        continue;
                    };
                    // Given up once that member is lost.
                    let told = tokio::select! {
                        told = super::exchange::tell_member(
                            clients,
                            addr.clone(),
                            &addr,
                            certs,
                            &request,
                            FETCH_WAIT,
                        ) => told,
                        () = down(cluster, *other) => Err(err!(Request, "{addr}: lost")),
                    };
                    if let Err(e) = told {
                        clients.remove(&addr);
                        tracing::debug!(%addr, "telling a replica's member how far to keep: {e:#}");
                    }
                }
            }
        }
    }

    /// Moves each vertex of a drained member whose duplicate runs here to
    /// this member once the duplicate has caught up: it runs and has read
    /// what its inputs here hold (within [`CAUGHT_UP`] entries) while each
    /// copy among them is pulling from its writer, or has finished.
    /// Readers then read it here from where they stood; what it rewrote of
    /// what they had read is the same, entry for entry.
    pub(super) async fn switch_caught_up(&self, cluster: &Cluster) {
        let me = cluster.id();
        let metadata = cluster.metadata();
        for (name, job) in &metadata.jobs {
            let duplicates: Vec<&str> = job.duplicated_on(me).collect();
            if duplicates.is_empty() {
                continue;
            }
            for (vertex, state, lag, inputs) in self.jobs.vertex_lags(name) {
                // A duplicate that finished has read all its inputs: the
                // input may end before a round sees it running and caught up.
                let live = state == "finished"
                    || (state == "running" && !inputs.iter().any(|i| self.pulled.stalled(i)));
                if !duplicates.contains(&vertex.as_str()) || !live || lag > CAUGHT_UP {
                    continue;
                }
                let switch = Command::Switch {
                    name: name.clone(),
                    id: job.id,
                    vertex: vertex.clone(),
                    member: me,
                };
                match cluster.write(switch).await {
                    Ok(reply) => {
                        tracing::info!(job = %name, %vertex, lag, "the duplicate caught up, readers switch to it: {reply:?}")
                    }
                    Err(e) => tracing::debug!(job = %name, %vertex, "switching: {e:#}"),
                }
            }
        }
    }

    /// A vertex's latest snapshot from the member at `addr`, over the
    /// round's connection to it (made if there is none).
    async fn fetch_backup(
        &self,
        clients: &mut HashMap<String, Client>,
        addr: &str,
        certs: &CertDir,
        request: &Request,
    ) -> Result<Vec<u8>> {
        if !clients.contains_key(addr) {
            let socket: SocketAddr = addr
                .parse()
                .map_err(|e| err!(Request, "member address `{addr}`: {e}"))?;
            clients.insert(addr.to_string(), Client::connect(socket, certs).await?);
        }
        let client = clients.get(addr).context("the connection just made")?;
        let mut recv = client.request(request, None).await?;
        let len = match net::read_msg::<Response>(&mut recv).await? {
            Some(Response::Backup { len }) => len as usize,
            Some(Response::Error { message }) => bail!(Request, "{addr}: {message}"),
            other => bail!(Request, "{addr} answered a backup request with {other:?}"),
        };
        if len > MAX_INGEST {
            bail!(
                Request,
                "{addr} offers a snapshot of {len} bytes, over the limit"
            );
        }
        let mut bytes = vec![0; len];
        recv.read_exact(&mut bytes)
            .await
            .map_err(|e| err!(Request, "a snapshot from {addr}: {e}"))?;
        Ok(bytes)
    }

    /// Answers the backup's request for a vertex's latest snapshot.
    pub(super) async fn send_backup(
        &self,
        mut send: quinn::SendStream,
        job: String,
        id: u64,
        vertex: String,
        (member, have): (Option<NodeId>, Option<Vec<u64>>),
        since: Option<u64>,
    ) -> Result<()> {
        // The vertex's inputs are kept from where the backup's snapshot
        // resumes only once the coordinator counts a snapshot of it stored:
        // until then a loss moves the vertex to start over from its
        // inputs' start, which must still be held (a backup's store the
        // coordinator does not count, from one that was lost meanwhile,
        // releases nothing). Only the snapshots of the members backing it
        // up count: it may resume on those.
        let (counted, backing) = self
            .cluster
            .get()
            .map(|c| c.backing(&job, id, &vertex))
            .unwrap_or_default();
        let asker = crate::jobs::Asker {
            member,
            backing,
            counted,
        };
        let jobs = self.jobs.clone();
        let answer = tokio::task::spawn_blocking(move || {
            jobs.backup_of(&job, id, &vertex, (&asker, have), since)
        })
        .await?;
        match answer {
            Ok(bytes) => {
                let len = bytes.len() as u64;
                write_msg(&mut send, &Response::Backup { len }).await?;
                send.write_all(&bytes).await.context("sending a snapshot")?;
            }
            Err(e) => send_error(&mut send, &e).await?,
        }
        send.finish()?;
        let _ = send.stopped().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_waits_while_its_copies_fill_and_is_dropped_once_they_stall() {
        let first = Pending {
            bytes: vec![1],
            from: (2, 0),
            copied: (10, 0),
            want: (30, 0),
            stalled: 0,
        };
        // Copies that gain entries keep the snapshot waiting, however long.
        let mut p = first;
        for n in 11..20 {
            p = p.again(vec![1], (n, 0)).expect("filling copies wait");
            assert_eq!(p.stalled, 0);
        }
        // A dead-letter copy that fills counts too.
        p = p.again(vec![1], (19, 1)).expect("filling copies wait");
        // Copies that stand still: dropped on the third round.
        p = p.again(vec![1], (19, 1)).expect("one round");
        p = p.again(vec![1], (19, 1)).expect("two rounds");
        assert_eq!((p.from, p.stalled), ((2, 0), 2));
        assert!(p.again(vec![1], (19, 1)).is_none());
    }
}
