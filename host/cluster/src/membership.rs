//! A node's part in the cluster: its member id, its Raft instance, the
//! heartbeat it sends the coordinator, and (while it is the coordinator)
//! the watch that declares silent members lost and keeps the Raft voters in
//! line with the members that are up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use openraft::{BasicNode, Raft, ServerState, Snapshot};
use weir_net::cluster::{ClusterRequest, ClusterResponse, RaftRpc, StreamNeeds, VertexLoad};

use crate::log::{Applied, RaftFile, database_path};
use crate::metadata::{Command, FIRST, Health, NodeId, Reply};
use crate::network::{Link, Network, Peers, SnapshotMessage, Transport};
use crate::{ClusterError, TypeConfig, raft_config};

mod drain;
mod lease;
mod status;
mod voters;

/// How long a change waits at least for a coordinator to be elected
/// before it fails: an election takes about a heartbeat timeout, but votes
/// split again and again on a machine too busy to keep its timers.
const ELECTION_WAIT: Duration = Duration::from_secs(5);

/// How long a joining node keeps asking its seed before it gives up.
const JOIN_FOR: Duration = Duration::from_secs(15);
/// How often the coordinator raises the ingest streams' collection points
/// at most.
const COLLECT_EVERY: Duration = Duration::from_millis(500);

/// How a node takes part.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A member is lost once silent this long; Raft elections follow the
    /// same timeout.
    pub lost_after: Duration,
    /// A member to join through (none: found a cluster, or rejoin the one
    /// the data directory belongs to).
    pub join: Option<String>,
}

/// What a node reports with every heartbeat, asked for each one.
#[derive(Clone)]
pub struct Report {
    /// The vertices it runs.
    pub vertices: Arc<dyn Fn() -> Vec<VertexLoad> + Send + Sync>,
    /// How far its readers need the ingest streams kept, once it has acted
    /// on the metadata (the coordinator asks its own every watch tick).
    pub needs: Arc<dyn Fn() -> Option<StreamNeeds> + Send + Sync>,
}

impl Default for Report {
    /// Nothing to report.
    fn default() -> Report {
        Report {
            vertices: Arc::new(Vec::new),
            needs: Arc::new(|| None),
        }
    }
}

/// A node's membership, shared by its request handlers.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

/// A handle on a node's membership that does not keep it alive (for
/// what the cluster itself holds, such as the jobs it reports on).
#[derive(Clone)]
pub struct WeakCluster {
    inner: std::sync::Weak<Inner>,
}

impl WeakCluster {
    /// The membership, while the node still has it.
    pub fn upgrade(&self) -> Option<Cluster> {
        self.inner.upgrade().map(|inner| Cluster { inner })
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.inner.id)
            .field("addr", &self.inner.addr)
            .finish()
    }
}

struct Inner {
    id: NodeId,
    addr: String,
    raft: Raft<TypeConfig>,
    applied: Arc<RwLock<Applied>>,
    peers: Link,
    settings: Settings,
    report: Report,
    watch: Mutex<Watch>,
    lease: Mutex<lease::Lease>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// What the coordinator heard, in memory only: a new coordinator starts by
/// giving every member that is up a full timeout.
#[derive(Default)]
struct Watch {
    leading: bool,
    /// The coordinator this member last followed.
    last_leader: Option<NodeId>,
    heard: HashMap<NodeId, (Instant, String)>,
    vertices: HashMap<NodeId, Vec<VertexLoad>>,
    /// How far each member's readers need the ingest streams kept.
    needs: BTreeMap<NodeId, StreamNeeds>,
    /// When the coordinator last raised collection points.
    collected: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    /// Starts this node's membership: the founding member when the data
    /// directory holds none and there is no seed to join; otherwise the id
    /// the data directory holds, or a new one from the coordinator through
    /// `settings.join`.
    pub async fn start(
        data: &Path,
        addr: std::net::SocketAddr,
        certs: &Path,
        settings: Settings,
        report: Report,
    ) -> Result<Cluster, ClusterError> {
        let peers: Link = Arc::new(Peers::new(certs));
        Cluster::start_with(data, addr.to_string(), peers, settings, report).await
    }

    /// [`Cluster::start`] over any transport (a simulated network in tests).
    pub async fn start_with(
        data: &Path,
        addr: String,
        peers: Link,
        settings: Settings,
        report: Report,
    ) -> Result<Cluster, ClusterError> {
        let config = Arc::new(raft_config(settings.lost_after)?);
        let file = RaftFile::open(&database_path(data))?;
        let id = match (file.node_id()?, &settings.join) {
            (Some(id), _) => id,
            (None, None) => FIRST,
            (None, Some(seed)) => join(peers.as_ref(), seed, &addr).await?,
        };
        file.set_node_id(id)?;
        let (log, machine) = file.open_raft()?;
        let applied = machine.applied();
        let network = Network {
            peers: peers.clone(),
            lost_after: settings.lost_after,
        };
        let raft = Raft::new(id, config, network, log, machine)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let founding = id == FIRST && settings.join.is_none();
        if founding && !raft.is_initialized().await.map_err(raft_error)? {
            let members = BTreeMap::from([(id, BasicNode { addr: addr.clone() })]);
            raft.initialize(members).await.map_err(raft_error)?;
        }
        tracing::info!(member = id, %addr, "joined the cluster");
        let cluster = Cluster {
            inner: Arc::new(Inner {
                id,
                addr,
                raft,
                applied,
                peers,
                settings,
                report,
                watch: Mutex::default(),
                lease: Mutex::default(),
                tasks: Mutex::default(),
            }),
        };
        let tick = cluster.inner.settings.lost_after / 4;
        let (heartbeat, watch, campaigns) = (cluster.clone(), cluster.clone(), cluster.clone());
        *lock(&cluster.inner.tasks) = vec![
            tokio::spawn(async move { heartbeat.heartbeats(tick).await }),
            tokio::spawn(async move { watch.watch(tick).await }),
            tokio::spawn(async move { campaigns.campaigns().await }),
        ];
        Ok(cluster)
    }

    /// Waits until this member has applied an entry of the metadata's log
    /// past index `seen`; returns the index it has applied.
    pub async fn applied_past(&self, seen: Option<u64>) -> Option<u64> {
        let mut metrics = self.inner.raft.metrics();
        loop {
            let applied = metrics.borrow_and_update().last_applied.map(|l| l.index);
            if applied != seen {
                return applied;
            }
            if metrics.changed().await.is_err() {
                // Raft stopped: nothing more is applied.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The Raft library's metrics of this member, for a diagnosis.
    pub fn raft_metrics(&self) -> String {
        format!("{:?}", self.inner.raft.metrics().borrow())
    }

    /// A handle that does not keep this membership alive.
    pub fn downgrade(&self) -> WeakCluster {
        WeakCluster {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// This node's member id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// How long a member may be silent before it is declared lost.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.inner.settings.lost_after
    }

    /// Stops taking part (the others will find this member lost).
    pub async fn shutdown(&self) {
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
        let _ = self.inner.raft.shutdown().await;
    }

    fn leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    fn addr_of(&self, id: NodeId) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        let from_raft = metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone());
        from_raft.or_else(|| {
            self.applied()
                .metadata
                .members
                .get(&id)
                .map(|m| m.addr.clone())
        })
    }

    fn applied(&self) -> Applied {
        self.applied_now().clone()
    }

    /// The metadata as this member last applied it, read in place.
    fn applied_now(&self) -> std::sync::RwLockReadGuard<'_, Applied> {
        self.inner.applied.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers a member's or a client's cluster request.
    pub async fn handle(&self, request: ClusterRequest) -> Result<ClusterResponse, ClusterError> {
        let (request, may_forward) = match request {
            ClusterRequest::Forwarded(inner) => (*inner, false),
            other => (other, true),
        };
        if let ClusterRequest::Raft {
            target,
            rpc,
            payload,
        } = request
        {
            return self.raft(target, rpc, payload).await;
        }
        let leader = self.leader();
        if leader != Some(self.inner.id) {
            if let (Some(leader), true) = (leader, may_forward)
                && let Some(addr) = self.addr_of(leader)
            {
                let forwarded = ClusterRequest::Forwarded(Box::new(request.clone()));
                match self
                    .inner
                    .peers
                    .call(&addr, forwarded, self.inner.settings.lost_after)
                    .await
                {
                    Ok(answer) => return Ok(answer),
                    Err(e) => tracing::debug!("the coordinator at {addr} did not answer: {e}"),
                }
            }
            return Ok(match request {
                ClusterRequest::Status => ClusterResponse::Status(self.status()),
                _ => ClusterResponse::NoCoordinator,
            });
        }
        match request {
            ClusterRequest::Join { addr, id, nonce } => {
                let addr_of_join = addr.clone();
                // A write that fails here (this member just lost the lead)
                // is retried by the joining node: joins are idempotent.
                let reply = match self.propose(Command::Join { addr, id, nonce }).await {
                    Ok(reply) => reply,
                    Err(e) => {
                        tracing::debug!("a join could not be written: {e}");
                        return Ok(ClusterResponse::NoCoordinator);
                    }
                };
                match reply {
                    Reply::Joined { id, replaced } => {
                        // A new member gets a full timeout to send its first heartbeat.
                        let now = Instant::now();
                        lock(&self.inner.watch)
                            .heard
                            .insert(id, (now, addr_of_join.clone()));
                        if let Some(old) = replaced {
                            tracing::warn!(
                                member = id,
                                replaced = old,
                                "a new member replaces a lost one at its address"
                            );
                        }
                        Ok(ClusterResponse::Joined { id })
                    }
                    Reply::Refused(why) => Err(ClusterError::Refused(why)),
                    other => Err(ClusterError::Raft(format!("a join applied as {other:?}"))),
                }
            }
            ClusterRequest::Heartbeat {
                id,
                addr,
                vertices,
                needs,
            } => {
                let mut watch = lock(&self.inner.watch);
                watch.heard.insert(id, (Instant::now(), addr));
                watch.vertices.insert(id, vertices);
                if let Some(needs) = needs {
                    watch.needs.insert(id, needs);
                }
                drop(watch);
                let applied = self.applied_now().log_id.map(|l| l.index);
                Ok(ClusterResponse::Alive { applied })
            }
            ClusterRequest::Status => Ok(ClusterResponse::Status(self.status())),
            ClusterRequest::Drain { member } => self.drain(&member).await,
            ClusterRequest::Propose(command) => {
                let command: Command = serde_json::from_value(command)
                    .map_err(|e| ClusterError::Malformed(format!("a proposed change: {e}")))?;
                match self.propose(command).await {
                    Ok(reply) => Ok(ClusterResponse::Applied(
                        serde_json::to_value(reply)
                            .map_err(|e| ClusterError::Raft(e.to_string()))?,
                    )),
                    Err(e) => {
                        tracing::debug!("a change could not be written: {e}");
                        Ok(ClusterResponse::NoCoordinator)
                    }
                }
            }
            ClusterRequest::Raft { .. } | ClusterRequest::Forwarded(_) => Err(
                ClusterError::Malformed("a forwarded request forwards another".into()),
            ),
        }
    }

    async fn raft(
        &self,
        target: NodeId,
        rpc: RaftRpc,
        payload: serde_json::Value,
    ) -> Result<ClusterResponse, ClusterError> {
        if target != self.inner.id {
            return Err(ClusterError::Malformed(format!(
                "a coordinator message for member {target} reached member {} at {} (member {target} is gone; this node replaced it)",
                self.inner.id, self.inner.addr
            )));
        }
        let malformed = |e: serde_json::Error| ClusterError::Malformed(format!("{rpc:?}: {e}"));
        let raft = &self.inner.raft;
        let answer = match rpc {
            RaftRpc::AppendEntries => serde_json::to_value(
                raft.append_entries(serde_json::from_value(payload).map_err(malformed)?)
                    .await,
            ),
            RaftRpc::Vote => serde_json::to_value(
                raft.vote(serde_json::from_value(payload).map_err(malformed)?)
                    .await,
            ),
            RaftRpc::Snapshot => {
                let m: SnapshotMessage = serde_json::from_value(payload).map_err(malformed)?;
                let snapshot = Snapshot {
                    meta: m.meta,
                    snapshot: Box::new(m.data),
                };
                serde_json::to_value(raft.install_full_snapshot(m.vote, snapshot).await)
            }
        };
        Ok(ClusterResponse::Raft(
            answer.map_err(|e| ClusterError::Raft(e.to_string()))?,
        ))
    }

    /// Writes `command` to the coordinator's metadata from any member
    /// (passed on to the coordinator), retrying while an election is under
    /// way, for four heartbeat timeouts and at least [`ELECTION_WAIT`];
    /// returns what applying it did.
    pub async fn write(&self, command: Command) -> Result<Reply, ClusterError> {
        let value =
            serde_json::to_value(&command).map_err(|e| ClusterError::Raft(e.to_string()))?;
        let until = Instant::now() + (self.inner.settings.lost_after * 4).max(ELECTION_WAIT);
        loop {
            match self.handle(ClusterRequest::Propose(value.clone())).await? {
                ClusterResponse::Applied(reply) => {
                    return serde_json::from_value(reply).map_err(|e| {
                        ClusterError::Malformed(format!("the coordinator's answer: {e}"))
                    });
                }
                ClusterResponse::NoCoordinator if Instant::now() < until => {
                    tokio::time::sleep(self.inner.settings.lost_after / 4).await;
                }
                ClusterResponse::NoCoordinator => {
                    return Err(ClusterError::Raft(
                        "no coordinator is elected (is a majority of the members up?)".into(),
                    ));
                }
                other => {
                    return Err(ClusterError::Malformed(format!(
                        "a change was answered with {other:?}"
                    )));
                }
            }
        }
    }

    /// Announces this member to the coordinator and waits until it has
    /// applied the announcement itself: its metadata is then at least as
    /// new as the coordinator's was when the member (re)started, so a
    /// member that was lost while down sees that its vertices moved before
    /// it starts any. Retries until the node stops.
    pub async fn caught_up(&self) {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(self.inner.addr.as_bytes());
        let nonce = h.finish().max(1);
        let me = self.inner.id;
        let announce = Command::Announce { id: me, nonce };
        let applied = || {
            self.metadata()
                .members
                .get(&me)
                .is_some_and(|m| m.announced == nonce)
        };
        // Written again while it does not show: a founder is a member only
        // once it leads and registers itself.
        loop {
            if let Err(e) = self.write(announce.clone()).await {
                tracing::debug!("announcing this member: {e}");
            }
            let until = Instant::now() + self.inner.settings.lost_after * 2;
            while Instant::now() < until {
                if applied() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// The metadata as this member last applied it.
    pub fn metadata(&self) -> crate::metadata::Metadata {
        self.applied().metadata
    }

    /// Whether the coordinator counts a snapshot of vertex `vertex` of job
    /// `job` (incarnation `id`) stored by a backup (until then, a loss of
    /// its member moves the vertex to start over from its inputs' start),
    /// and the members that back it up ([`crate::jobs::ClusterJob::backers`]), as this
    /// member last applied the metadata.
    pub fn backing(&self, job: &str, id: u64, vertex: &str) -> (bool, Vec<NodeId>) {
        let applied = self.applied_now();
        match applied.metadata.jobs.get(job).filter(|j| j.id == id) {
            Some(j) => (j.snapshotted.contains(vertex), j.backers(vertex).collect()),
            None => (false, Vec::new()),
        }
    }

    /// The member that runs vertex `vertex` of job `job` (incarnation
    /// `id`) as this member last applied the metadata, and how many times
    /// that member was declared lost (without copying the metadata).
    pub fn runs_on(&self, job: &str, id: u64, vertex: &str) -> Option<(NodeId, u64)> {
        let applied = self.applied_now();
        let metadata = &applied.metadata;
        let member = *metadata
            .jobs
            .get(job)
            .filter(|j| j.id == id)?
            .placement
            .get(vertex)?;
        Some((member, metadata.members.get(&member)?.losses))
    }

    /// Proposes `command` to the Raft log (on the coordinator) and returns
    /// what applying it did.
    ///
    /// A coordinator that cannot reach a majority of its voters (the others
    /// are down or cut off) refuses before its log takes the change, so a
    /// change refused for want of a majority is not made later when the
    /// others come back; should the majority go between that check and
    /// the write, the write gives up after [`ELECTION_WAIT`] instead of
    /// waiting for it.
    async fn propose(&self, command: Command) -> Result<Reply, ClusterError> {
        let raft = &self.inner.raft;
        let wait = (self.inner.settings.lost_after * 4).max(ELECTION_WAIT);
        let no_majority = || ClusterError::Raft("the coordinator reaches no majority".into());
        tokio::time::timeout(wait, raft.get_read_log_id())
            .await
            .map_err(|_| no_majority())?
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let written = tokio::time::timeout(wait, raft.client_write(command))
            .await
            .map_err(|_| no_majority())?
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        Ok(written.data)
    }

    /// Breaks a tie of elections that never conclude. openraft 0.9 draws a
    /// member's election timeout once, when it starts, and fires elections on
    /// a coarse tick: two members whose timeouts fall on the same tick can
    /// split every vote after the leader's loss, term after term. A member
    /// that has stood for election for four heartbeat timeouts on end (far
    /// longer than a campaign, even one delayed for a shorter log) stands
    /// again at a moment drawn afresh each time, which ends the tie.
    async fn campaigns(self) {
        let t = self.inner.settings.lost_after;
        let mut since: Option<Instant> = None;
        loop {
            tokio::time::sleep(t / 2 + t.mul_f64(unit_random())).await;
            let state = self.inner.raft.metrics().borrow().state;
            if state != ServerState::Candidate {
                since = None;
                continue;
            }
            let now = Instant::now();
            let first = *since.get_or_insert(now);
            if now.duration_since(first) >= t * 4 {
                tracing::info!(
                    member = self.inner.id,
                    "elections do not conclude: standing again"
                );
                if let Err(e) = self.inner.raft.trigger().elect().await {
                    tracing::debug!("an election could not be started: {e}");
                }
                since = None;
            }
        }
    }

    /// While this node is the coordinator: declares silent members lost
    /// and brings back members heard again, then makes the Raft voters the
    /// members that are up.
    async fn watch(self, tick: Duration) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let metrics = self.inner.raft.metrics().borrow().clone();
            let leading = metrics.state == ServerState::Leader;
            let applied = self.applied();
            let own = leading.then(|| (self.inner.report.needs)()).flatten();
            let commands = {
                let mut watch = lock(&self.inner.watch);
                if let Some(needs) = own {
                    watch.needs.insert(self.inner.id, needs);
                }
                if !leading {
                    watch.leading = false;
                    if metrics.current_leader.is_some() {
                        watch.last_leader = metrics.current_leader;
                    }
                    continue;
                }
                if !watch.leading {
                    // A new coordinator gives every member that is up a
                    // full timeout from now, but the one it takes over
                    // from: every member that voted for it had not heard
                    // from that one for a whole timeout (the Raft lease
                    // is the heartbeat timeout), so it is lost already.
                    watch.leading = true;
                    let now = Instant::now();
                    let expired = now
                        .checked_sub(self.inner.settings.lost_after)
                        .unwrap_or(now);
                    watch.heard.clear();
                    let previous = watch.last_leader.filter(|old| *old != self.inner.id);
                    for (id, m) in applied.metadata.up() {
                        let at = if Some(id) == previous { expired } else { now };
                        watch.heard.insert(id, (at, m.addr.clone()));
                    }
                }
                let mut commands = self.decide(&watch, &applied);
                // A stream's collection point rises at most once per
                // COLLECT_EVERY: each rise is an entry of the Raft log.
                let collects = commands
                    .iter()
                    .any(|c| matches!(c, Command::Collect { .. }));
                if collects {
                    if watch
                        .collected
                        .is_some_and(|at| at.elapsed() < COLLECT_EVERY)
                    {
                        commands.retain(|c| !matches!(c, Command::Collect { .. }));
                    } else {
                        watch.collected = Some(Instant::now());
                    }
                }
                commands
            };
            for command in commands {
                // Bounded: a write that cannot commit (this member lost its
                // majority) must not stop the watch. Said once written: a
                // write retried every tick would say it every tick.
                let patience = self.inner.settings.lost_after * 2;
                match tokio::time::timeout(patience, self.propose(command.clone())).await {
                    Ok(Ok(_)) => match &command {
                        Command::Lost { id } => tracing::warn!(
                            member = id,
                            "member lost: silent for the heartbeat timeout"
                        ),
                        Command::Back { id } => tracing::warn!(member = id, "member back"),
                        Command::Collect { .. } => tracing::debug!(?command, "coordinator"),
                        _ => tracing::info!(?command, "coordinator"),
                    },
                    Ok(Err(e)) => {
                        tracing::debug!("{e}");
                        break;
                    }
                    Err(_) => break,
                }
            }
            if let Some(change) = self.voters(&metrics, &self.applied()) {
                tracing::info!(?change, "coordinator changes the Raft membership");
                let patience = self.inner.settings.lost_after * 2;
                let change = self.inner.raft.change_membership(change, true);
                match tokio::time::timeout(patience, change).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!("membership change: {e}"),
                    Err(_) => tracing::debug!("a membership change did not commit in time"),
                }
            }
        }
    }

    /// The metadata changes the heartbeats call for.
    fn decide(&self, watch: &Watch, applied: &Applied) -> Vec<Command> {
        let lost_after = self.inner.settings.lost_after;
        let me = self.inner.id;
        let mut commands = Vec::new();
        // The coordinator itself is a member that is up, where it listens.
        let myself = applied.metadata.members.get(&me);
        if myself.is_none_or(|m| m.health == Health::Lost || m.addr != self.inner.addr) {
            commands.push(Command::Join {
                addr: self.inner.addr.clone(),
                id: Some(me),
                nonce: 0,
            });
        }
        for (id, m) in &applied.metadata.members {
            if *id == me {
                continue;
            }
            let heard = watch.heard.get(id);
            let fresh = heard.is_some_and(|(at, _)| at.elapsed() < lost_after);
            match m.health {
                Health::Up if !fresh => commands.push(Command::Lost { id: *id }),
                Health::Lost if fresh => commands.push(Command::Back { id: *id }),
                _ => {}
            }
            if let Some((_, addr)) = heard
                && fresh
                && *addr != m.addr
                && m.health != Health::Replaced
            {
                commands.push(Command::Join {
                    addr: addr.clone(),
                    id: Some(*id),
                    nonce: 0,
                });
            }
        }
        // Only once the members are as the metadata says.
        if commands.is_empty() {
            commands = applied.metadata.collections(&watch.needs);
        }
        commands
    }
}

/// The members that vote in every configuration of `membership`: during a
/// change (a joint configuration) only those in both the old and the new.
fn full_voters(membership: &openraft::Membership<NodeId, BasicNode>) -> BTreeSet<NodeId> {
    let mut configs = membership.get_joint_config().iter();
    let first = configs.next().cloned().unwrap_or_default();
    configs.fold(first, |all, c| all.intersection(c).copied().collect())
}

fn raft_error(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Raft(e.to_string())
}

/// Asks the member at `seed` for an id, retrying while the cluster elects a
/// coordinator or the seed cannot be reached, for at most [`JOIN_FOR`].
async fn join(peers: &dyn Transport, seed: &str, addr: &str) -> Result<NodeId, ClusterError> {
    let deadline = Instant::now() + JOIN_FOR;
    // Drawn once: every retry of this join carries the same number.
    let nonce = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(addr.as_bytes());
        h.finish().max(1)
    };
    let request = ClusterRequest::Join {
        addr: addr.to_string(),
        id: None,
        nonce,
    };
    loop {
        let detail = match peers
            .call(seed, request.clone(), Duration::from_secs(5))
            .await
        {
            Ok(ClusterResponse::Joined { id }) => return Ok(id),
            Ok(ClusterResponse::NoCoordinator) => "no coordinator is elected yet".to_string(),
            Ok(other) => format!("it answered {other:?}"),
            Err(weir_net::NetError::Refused(why)) => {
                return Err(ClusterError::Join {
                    seed: seed.into(),
                    detail: why,
                });
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(ClusterError::Join {
                seed: seed.into(),
                detail,
            });
        }
        tracing::info!("joining through {seed}: {detail}; retrying");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A number drawn afresh from [0, 1).
fn unit_random() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(std::time::SystemTime::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
