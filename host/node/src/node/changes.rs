//! `weir udf deploy`, `weir udf rollback` and `weir job filter add|remove`
//! for a job the cluster runs: answered by a member that runs a copy of the
//! stage (a member that runs none passes the request to one that does),
//! which checks the change against its copy, writes it to the coordinator's
//! metadata, and waits until every copy on every member has taken it; each
//! member makes the job's changes, in order, to the copies it runs.

use std::collections::{BTreeMap, BTreeSet};

use weir_cluster::jobs::{ClusterJob, CopyTimeline, Held, PatchRequest, StageChange};
use weir_cluster::metadata::{Command, Metadata, NodeId, Reply};

use super::placed::{nonce, record_of};
use super::*;
use crate::jobs::{Asked, PatchReport, ShadowReport, VertexStatus};
use crate::patch::Change;
use weir_net::protocol::Client;

/// How long a change waits for every copy (each takes it at its next CTI,
/// after its member's scheduler saw it).
const CHANGE_WAIT: Duration = Duration::from_secs(8);

/// How often a member asked to check a change looks again for a copy it
/// runs (every 200 ms, its scheduler's tick) before it refuses.
const RECONCILE_TRIES: usize = 15;

/// How long a replay asked of the member a copy was just placed on waits
/// for the copy to start there, and a change asked while the copies move
/// waits for one to run.
const MOVE_WAIT: Duration = Duration::from_secs(10);

/// What a member asked to check a change against a copy it no longer runs
/// answers (the member that passed the request asks again).
const NO_COPY: &str = "runs no copy of stage";

impl Node {
    /// The cluster, when a deploy, rollback, filter change, history or
    /// replay asks about a job it runs over more than one member.
    pub(super) fn placed_change(&self, request: &Request) -> Option<Cluster> {
        let job = match request {
            Request::DeployUdf { job, .. }
            | Request::RollbackUdf { job, .. }
            | Request::FilterAdd { job, .. }
            | Request::FilterRemove { job, .. }
            | Request::UdfHistory { job, .. }
            | Request::ReplayUdf { job, .. } => job,
            _ => return None,
        };
        let cluster = self.cluster.get()?;
        (cluster.metadata().standing() > 1 && self.is_placed(job)).then(|| cluster.clone())
    }

    /// Makes a deploy, rollback or filter change to a stage of a job the
    /// cluster runs, on every copy of the stage, and reports each copy's.
    pub(super) async fn change_placed(
        &self,
        cluster: &Cluster,
        request: Request,
        body: Vec<u8>,
        may_pass: bool,
    ) -> Result<Response> {
        if let Request::UdfHistory { job, stage } = request {
            return self.history_placed(cluster, job, stage).await;
        }
        if let Request::ReplayUdf { .. } = request {
            return self.replay_placed(cluster, request, body, may_pass).await;
        }
        let started = std::time::Instant::now();
        let (job, stage, asked, shadow) = match request.clone() {
            Request::DeployUdf {
                job,
                stage,
                origin,
                shadow,
            } => {
                let asked = Asked::Deploy {
                    origin: origin.clone(),
                    bytes: body.clone(),
                };
                (job, stage, asked, shadow.map(|rows| (origin, rows)))
            }
            Request::RollbackUdf { job, stage, to } => (job, stage, Asked::Rollback { to }, None),
            Request::FilterAdd { job, stage, expr } => (job, stage, Asked::FilterAdd(expr), None),
            Request::FilterRemove { job, stage, expr } => {
                (job, stage, Asked::FilterRemove(expr), None)
            }
            other => bail!(Request, "{} is not a stage change", other.describe()),
        };
        let me = cluster.id();
        // Checked against a copy that runs: one here, else one on another
        // member (asked once; a member asked by a member checks its own).
        // The placement may move a copy here (or away) a moment before this
        // member's next reconcile: a member asked by another waits for it,
        // and a check whose copy moved away meanwhile is made again.
        let mut tries = 0;
        let (copies, here, change, from) = loop {
            tries += 1;
            let (metadata, placed, copies) = self.stage_of(cluster, &job, &stage).await?;
            let before = self.copies_now(cluster, &job, &copies).await;
            if before.len() == copies.len() && before.values().all(|v| v.state == "finished") {
                bail!(
                    Patch,
                    "change to job `{job}` stage `{stage}` refused: the job has finished"
                );
            }
            let local = self.running_here(&job);
            let here = copies
                .iter()
                .find(|c| {
                    placed.placement.get(*c) == Some(&me)
                        && local.contains(*c)
                        && (!may_pass || before.get(*c).is_some_and(runs))
                })
                .cloned();
            let Some(here) = here else {
                if !may_pass && tries < RECONCILE_TRIES {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                // Copies moving (their members lost, or starting them)
                // settle within a few of the scheduler's rounds.
                let moving = started.elapsed() < MOVE_WAIT;
                let Some(other) = before.values().find(|v| runs(v)).and_then(|v| v.member) else {
                    if moving {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    bail!(
                        Patch,
                        "no copy of stage `{stage}` of job `{job}` runs yet (their members are starting them); retry in a moment"
                    );
                };
                if !may_pass {
                    bail!(
                        Patch,
                        "member {me} {NO_COPY} `{stage}` of job `{job}`; member {other} does"
                    );
                }
                let answer = self.ask_member(&metadata, other, &request, &body).await;
                match answer {
                    // The copy moved off that member before it checked.
                    Ok(Response::Error { message }) if message.contains(NO_COPY) => {
                        tracing::debug!(job, stage, other, "{message}");
                        if !moving {
                            bail!(
                                Patch,
                                "the copies of stage `{stage}` of job `{job}` kept moving between members for {}s ({message}); nothing changed, retry in a moment",
                                MOVE_WAIT.as_secs()
                            );
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    answer => return answer,
                }
            };
            let jobs = self.jobs.clone();
            let (name, copy, asked) = (job.clone(), here.clone(), asked.clone());
            let written = placed.patches.len();
            match tokio::task::spawn_blocking(move || {
                jobs.check_change(&name, &copy, asked, written)
            })
            .await?
            {
                Ok((change, from)) => break (copies, here, change, from),
                Err(e) => {
                    let placed_here = cluster
                        .metadata()
                        .jobs
                        .get(&job)
                        .and_then(|j| j.placement.get(&here))
                        == Some(&me);
                    if tries >= RECONCILE_TRIES
                        || (placed_here && self.running_here(&job).contains(&here))
                    {
                        return Err(e);
                    }
                    tracing::debug!(job, copy = %here, "the copy moved during the check: {e:#}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        // A deploy with a shadow run: the module runs next to each copy's
        // version on the copy's last input rows, on the member that runs
        // it, before anything changes; a copy it fails on refuses it.
        let shadow = match shadow {
            Some((origin, rows)) => {
                self.shadow_copies(cluster, &job, &copies, &origin, &body, rows)
                    .await?
            }
            None => None,
        };
        let patch = PatchRequest {
            stage: stage.clone(),
            change: change.clone(),
            origin: me,
            nonce: nonce(&format!("{job}/{stage}")),
        };
        // How much of each copy's timeline the cluster recorded before the
        // change: its switch is recorded after that.
        let recorded: BTreeMap<String, usize> = cluster
            .metadata()
            .jobs
            .get(&job)
            .map(|j| {
                j.timelines
                    .iter()
                    .map(|(copy, t)| (copy.clone(), t.patches.len()))
                    .collect()
            })
            .unwrap_or_default();
        let index = match cluster
            .write(Command::PatchJob {
                name: job.clone(),
                patch,
            })
            .await?
        {
            Reply::Patched { index } => index,
            Reply::Refused(why) => bail!(Patch, "{why}"),
            other => bail!(Patch, "the coordinator answered the change with {other:?}"),
        };
        tracing::info!(job, stage, index, ?change, "cluster change written");
        let taken = self
            .await_copies(cluster, &job, &copies, &change, (index as u64, &recorded))
            .await;
        let to = match &change {
            StageChange::Deploy { version } => version.clone(),
            _ => taken
                .get(&here)
                .and_then(|(v, _)| v.module.clone())
                .unwrap_or_else(|| from.clone()),
        };
        let report = |copy: &str| PatchReport {
            job: job.clone(),
            stage: copy.to_string(),
            from: from.clone(),
            to: to.clone(),
            change: describe(&change),
            applied: taken
                .get(copy)
                .filter(|(_, ended)| !ended)
                .and_then(|(v, _)| v.switched_at),
            switch_us: started.elapsed().as_micros() as u64,
            shadow: None,
            copies: Vec::new(),
            finished: taken.get(copy).is_some_and(|(_, ended)| *ended),
        };
        if copies.len() == 1 && copies[0] == stage {
            return Ok(Response::Patched(PatchReport {
                shadow,
                ..report(&stage)
            }));
        }
        Ok(Response::Patched(PatchReport {
            applied: None,
            copies: copies.iter().map(|c| report(c)).collect(),
            shadow,
            ..report(&stage)
        }))
    }

    /// Runs module `body` (named `origin`) next to each of `copies` of a
    /// stage of job `job`, on its last `rows` input rows, on the member
    /// that runs it; the reports summed.
    async fn shadow_copies(
        &self,
        cluster: &Cluster,
        job: &str,
        copies: &[String],
        origin: &str,
        body: &[u8],
        rows: u64,
    ) -> Result<Option<ShadowReport>> {
        let metadata = cluster.metadata();
        let me = cluster.id();
        let placement = metadata
            .jobs
            .get(job)
            .map(|j| j.placement.clone())
            .with_context(|| format!("no job `{job}` in the cluster"))?;
        let mut reports = Vec::with_capacity(copies.len());
        for copy in copies {
            let member = placement.get(copy).copied().unwrap_or(me);
            let report = if member == me {
                let jobs = self.jobs.clone();
                let (job, copy, origin, body) = (
                    job.to_string(),
                    copy.clone(),
                    origin.to_string(),
                    body.to_vec(),
                );
                tokio::task::spawn_blocking(move || {
                    jobs.shadow_copy(&job, &copy, &origin, body, rows)
                })
                .await??
            } else {
                let request = Request::ShadowUdf {
                    job: job.to_string(),
                    copy: copy.clone(),
                    origin: origin.to_string(),
                    rows,
                };
                match self.ask_member(&metadata, member, &request, body).await? {
                    Response::Shadowed(report) => report,
                    Response::Error { message } => {
                        bail!(Patch, "member {member}, copy `{copy}`: {message}")
                    }
                    other => {
                        bail!(
                            Request,
                            "member {member} answered a shadow run with {other:?}"
                        )
                    }
                }
            };
            reports.push(report);
        }
        Ok(crate::jobs::merge_shadows(reports))
    }

    /// The vertices of job `job` running here now (or stuck on a batch,
    /// waiting for a fix).
    fn running_here(&self, job: &str) -> BTreeSet<String> {
        self.jobs
            .status(Some(job))
            .ok()
            .and_then(|list| list.into_iter().next())
            .map(|s| {
                s.vertices
                    .into_iter()
                    .filter(runs)
                    .map(|v| v.name)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The metadata, job `job` as the cluster runs it, and the copies of its
    /// stage `stage`.
    async fn stage_of(
        &self,
        cluster: &Cluster,
        job: &str,
        stage: &str,
    ) -> Result<(Metadata, ClusterJob, Vec<String>)> {
        let metadata = cluster.metadata();
        let placed = metadata
            .jobs
            .get(job)
            .cloned()
            .with_context(|| format!("no job `{job}` in the cluster"))?;
        let jobs = self.jobs.clone();
        let (record, name) = (record_of(&placed, cluster.id()), stage.to_string());
        let copies =
            tokio::task::spawn_blocking(move || jobs.stage_copies(&record, &name)).await??;
        Ok((metadata, placed, copies))
    }

    /// A connection to member `member`, with this node's certificate, and
    /// its address.
    pub(super) async fn connect_member(
        &self,
        metadata: &Metadata,
        member: NodeId,
    ) -> Result<(Client, String)> {
        let addr = metadata
            .members
            .get(&member)
            .map(|m| m.addr.clone())
            .with_context(|| format!("member {member} is not in the cluster"))?;
        let certs = self
            .peer_certs
            .get()
            .cloned()
            .context("this node is not serving yet")?;
        let socket = addr
            .parse()
            .map_err(|e| err!(Request, "member address `{addr}`: {e}"))?;
        let client = Client::connect(socket, &certs)
            .await
            .map_err(|e| err!(Request, "member {member} at {addr}: {e}"))?;
        Ok((client, addr))
    }

    /// Asks member `member` `request` (with `body`), as a member does.
    async fn ask_member(
        &self,
        metadata: &Metadata,
        member: NodeId,
        request: &Request,
        body: &[u8],
    ) -> Result<Response> {
        let (client, addr) = self.connect_member(metadata, member).await?;
        let answer = client.answer(request, Some(body)).await;
        client.close().await;
        answer.map_err(|e| err!(Request, "member {member} at {addr}: {e}"))
    }

    /// A replay of a stage (one vertex) of a job the cluster runs, on the
    /// member that runs it: the input it saw and its state are there.
    async fn replay_placed(
        &self,
        cluster: &Cluster,
        request: Request,
        body: Vec<u8>,
        may_pass: bool,
    ) -> Result<Response> {
        let Request::ReplayUdf {
            job,
            stage,
            origin,
            from,
            to,
        } = request.clone()
        else {
            bail!(Request, "{} is not a replay", request.describe());
        };
        // A copy just placed here starts within a scheduler's round or so.
        let deadline = std::time::Instant::now() + MOVE_WAIT;
        loop {
            let metadata = cluster.metadata();
            let runs_it = metadata
                .jobs
                .get(&job)
                .and_then(|j| j.placement.get(&stage))
                .copied();
            let here = self.jobs.runs_vertex(&job, &stage);
            match runs_it {
                Some(member) if member != cluster.id() && may_pass => {
                    return self.ask_member(&metadata, member, &request, &body).await;
                }
                Some(member)
                    if member == cluster.id() && !here && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // Its input and state are where it runs: a member that backs
                // it up holds a snapshot ahead of its own copy of the input.
                Some(_) if !here => bail!(
                    Request,
                    "copy `{stage}` of job `{job}` does not run on member {} (it is moving between members); retry",
                    cluster.id()
                ),
                _ => {
                    let jobs = self.jobs.clone();
                    return tokio::task::spawn_blocking(move || {
                        jobs.replay(&job, &stage, &origin, body, from, to)
                            .map(Response::Replayed)
                    })
                    .await?;
                }
            }
        }
    }

    /// The history of every copy of a stage of a job the cluster runs,
    /// each asked of the member that runs it.
    async fn history_placed(
        &self,
        cluster: &Cluster,
        job: String,
        stage: String,
    ) -> Result<Response> {
        let (metadata, placed, copies) = self.stage_of(cluster, &job, &stage).await?;
        let me = cluster.id();
        let mut all = Vec::new();
        for copy in &copies {
            let member = placed.placement.get(copy).copied().unwrap_or(me);
            let mut list = if member == me {
                self.jobs.history(&job, copy)?
            } else {
                let request = Request::UdfHistory {
                    job: job.clone(),
                    stage: copy.clone(),
                };
                match self.ask_member(&metadata, member, &request, &[]).await? {
                    Response::History(list) => list,
                    Response::Error { message } => bail!(Patch, "member {member}: {message}"),
                    other => bail!(Request, "member {member} answered a history with {other:?}"),
                }
            };
            if copy != &stage {
                for entry in &mut list {
                    entry.copy.clone_from(copy);
                }
            }
            all.extend(list);
        }
        Ok(Response::History(all))
    }

    /// The status of each copy of a stage of `job` that answers, by name.
    async fn copies_now(
        &self,
        cluster: &Cluster,
        job: &str,
        copies: &[String],
    ) -> BTreeMap<String, VertexStatus> {
        match self.placed_status(cluster, Some(job.into())).await {
            Ok(Response::Jobs(list)) => list
                .into_iter()
                .flat_map(|s| s.vertices)
                .filter(|v| v.member.is_some() && copies.contains(&v.name))
                .map(|v| (v.name.clone(), v))
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    /// Waits (at most [`CHANGE_WAIT`]) until every copy took `change`, the
    /// job's change `index` (the cluster recorded the copy's switch, past
    /// the first `recorded` entries of its timeline), or finished without
    /// it (its input ended: its member passes the change over); returns
    /// the status of each such copy, showing where the recorded switch
    /// took effect, and whether it finished without the change.
    async fn await_copies(
        &self,
        cluster: &Cluster,
        job: &str,
        copies: &[String],
        change: &StageChange,
        (index, recorded): (u64, &BTreeMap<String, usize>),
    ) -> BTreeMap<String, (VertexStatus, bool)> {
        let deadline = tokio::time::Instant::now() + CHANGE_WAIT;
        let mut taken = BTreeMap::new();
        let made = |p: &weir_core::patch::Patch| match change {
            StageChange::Deploy { version } => p.change == Change::Deploy && p.version == *version,
            StageChange::Rollback { .. } => p.change == Change::Rollback,
            StageChange::FilterAdd { text } => p.change == Change::FilterAdd(text.clone()),
            StageChange::FilterRemove { text } => p.change == Change::FilterRemove(text.clone()),
        };
        loop {
            let metadata = cluster.metadata();
            let timelines = metadata.jobs.get(job).map(|j| &j.timelines);
            for (name, mut v) in self.copies_now(cluster, job, copies).await {
                let switch = timelines
                    .and_then(|t| t.get(&name))
                    .filter(|t| t.taken > index)
                    .and_then(|t| {
                        let from = recorded.get(&name).copied().unwrap_or(0);
                        t.patches.get(from..)?.iter().find(|p| made(p)).cloned()
                    });
                let took = switch.is_some();
                if let Some(p) = switch {
                    v.switched_at = Some((p.position, p.ctis));
                    v.module = Some(p.version);
                }
                if took || v.state == "finished" {
                    taken.insert(name, (v, !took));
                }
            }
            if taken.len() == copies.len() || tokio::time::Instant::now() >= deadline {
                return taken;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Node {
    /// Makes the changes written for the placed jobs running here to the
    /// copies this member runs, in order (a module not fetched yet holds
    /// back the job's changes from it on), and has the followers here go on
    /// with what their vertices recorded. Returns what to tell the
    /// coordinator: where followers stopped for a change.
    pub(super) fn take_changes(&self, metadata: &Metadata) -> Vec<Command> {
        let Some(me) = self.cluster.get().map(|c| c.id()) else {
            return Vec::new();
        };
        let running = self.jobs.placed();
        let mut taken = lock(&self.changes_taken);
        taken.retain(|name, (id, ..)| running.get(name).is_some_and(|(i, ..)| i == id));
        let mut tell = Vec::new();
        for (name, job) in &metadata.jobs {
            if running.get(name).is_none_or(|(id, ..)| *id != job.id) {
                continue;
            }
            match self.jobs.follow_changes(name, &job.patches, &job.timelines) {
                Ok(followed) => {
                    for (copy, why) in followed.failed {
                        tracing::error!(job = %name, %copy, "a follower here failed ({why}); it goes, and its vertex runs on");
                        tell.push(Command::DropFollower {
                            name: name.clone(),
                            id: job.id,
                            copy,
                            member: me,
                        });
                    }
                    for (copy, index, ctis) in followed.stopped {
                        let held = Held {
                            index: index as u64,
                            ctis,
                        };
                        let told = job.holds.get(&copy).and_then(|h| h.get(&me));
                        if told != Some(&held) {
                            tell.push(Command::Hold {
                                name: name.clone(),
                                id: job.id,
                                copy,
                                member: me,
                                held,
                            });
                        }
                    }
                }
                Err(e) => tracing::error!(job = %name, "following the cluster's changes: {e:#}"),
            }
            // A follower here that became the vertex takes the changes
            // since it started following.
            let vertices: BTreeSet<String> = job.on(me).map(str::to_string).collect();
            let done = match taken.get(name) {
                Some((_, n, v)) if *v == vertices => *n,
                _ => 0,
            };
            if job.patches.is_empty() || done >= job.patches.len() {
                continue;
            }
            let ready = |p: &PatchRequest| match &p.change {
                StageChange::Deploy { version } => matches!(self.jobs.module(version), Ok(Some(_))),
                _ => true,
            };
            let held = |copy: &str, index: usize| job.held(copy, index);
            tracing::debug!(job = %name, done, patches = job.patches.len(), "taking the cluster's changes");
            match self.jobs.take_changes(name, &job.patches, ready, held) {
                Ok(n) => {
                    taken.insert(name.clone(), (job.id, n, vertices));
                }
                Err(e) => tracing::error!(job = %name, "taking the cluster's changes: {e:#}"),
            }
        }
        tell
    }

    /// Fetches the modules deployed to the placed jobs running here that
    /// this member lacks: from the member that checked the change, else
    /// any member that is up.
    pub(super) async fn fetch_change_modules(
        &self,
        metadata: &Metadata,
        me: NodeId,
        certs: &CertDir,
    ) {
        for job in metadata.jobs.values() {
            // Followers too: they make the switches their vertices record.
            if job.on(me).next().is_none() && job.followed_on(me).is_empty() {
                continue;
            }
            for patch in &job.patches {
                let StageChange::Deploy { version } = &patch.change else {
                    continue;
                };
                if matches!(self.jobs.module(version), Ok(Some(_))) {
                    continue;
                }
                let origin = metadata.members.get(&patch.origin).map(|m| &m.addr);
                let others = metadata
                    .up()
                    .filter(|(id, _)| *id != me)
                    .map(|(_, m)| &m.addr);
                for addr in origin.into_iter().chain(others) {
                    match self.fetch_module(addr, certs, version).await {
                        Ok(()) => break,
                        Err(e) => tracing::debug!(%addr, "module {version}: {e:#}"),
                    }
                }
            }
        }
    }
}

/// Records the timelines of the copies that switch here with the
/// coordinator, from their vertices' threads.
/// (A weak handle: the cluster holds the jobs, which hold this.)
pub(super) struct ClusterKeeper {
    pub(super) cluster: weir_cluster::WeakCluster,
    pub(super) runtime: tokio::runtime::Handle,
}

/// How long one attempt to record a timeline waits for the coordinator.
const RECORD_WAIT: Duration = Duration::from_secs(5);

impl crate::jobs::Keeper for ClusterKeeper {
    fn record(
        &self,
        job: &str,
        id: u64,
        copy: &str,
        timeline: CopyTimeline,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<bool> {
        let Some(cluster) = self.cluster.upgrade() else {
            return Ok(false);
        };
        let me = cluster.id();
        let command = Command::RecordTimeline {
            name: job.to_string(),
            id,
            copy: copy.to_string(),
            member: me,
            timeline,
        };
        let mut pause = Duration::from_millis(20);
        // Until the coordinator answers: a switch waits, the copy's output
        // past it with it, rather than leave the member unrecorded.
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let written = self.runtime.block_on(async {
                tokio::time::timeout(RECORD_WAIT, cluster.write(command.clone())).await
            });
            match written {
                Ok(Ok(Reply::Done | Reply::Unchanged)) => return Ok(true),
                Ok(Ok(Reply::Refused(why))) => {
                    let runs = cluster
                        .metadata()
                        .jobs
                        .get(job)
                        .is_some_and(|j| j.id == id && j.instances(copy).contains(&me));
                    if !runs {
                        tracing::info!(job, copy, "the copy moved before its switch was recorded");
                        return Ok(false);
                    }
                    bail!(
                        Patch,
                        "the cluster refused the switch of copy `{copy}` of job `{job}`: {why}"
                    );
                }
                Ok(Ok(other)) => bail!(
                    Patch,
                    "the coordinator answered the timeline of copy `{copy}` of job `{job}` with {other:?}"
                ),
                Ok(Err(e)) => tracing::debug!(job, copy, "recording a timeline: {e:#}"),
                Err(_) => tracing::debug!(
                    job,
                    copy,
                    "recording a timeline: no answer within {RECORD_WAIT:?}"
                ),
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        Ok(false)
    }
}

/// Whether a copy can take a change: it runs, or it is stuck on a batch
/// waiting for a fix.
fn runs(v: &VertexStatus) -> bool {
    v.state == "running" || v.stuck_at.is_some()
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How history and reports name a change.
fn describe(change: &StageChange) -> String {
    match change {
        StageChange::Deploy { .. } => Change::Deploy,
        StageChange::Rollback { .. } => Change::Rollback,
        StageChange::FilterAdd { text } => Change::FilterAdd(text.clone()),
        StageChange::FilterRemove { text } => Change::FilterRemove(text.clone()),
    }
    .describe()
}
