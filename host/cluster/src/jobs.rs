//! Jobs in the coordinator's metadata: what was submitted, and which member
//! runs each of its vertices. Placement is part of applying the submit, a
//! pure function of the metadata, so every member agrees on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::metadata::{Metadata, NodeId, Reply};
use weir_core::patch::extends;

/// A job as a member submits it: everything another member needs to build
/// the same plan, and the vertices the plan makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The job's name.
    pub name: String,
    /// The job file's path (anchors its relative paths).
    pub path: PathBuf,
    /// The job file's text.
    pub text: String,
    /// The default rVertices of a script's keyed stages.
    pub parallelism: usize,
    /// Component path → module version.
    pub modules: BTreeMap<PathBuf, String>,
    /// The member the job was submitted to, which holds its modules' bytes.
    pub origin: NodeId,
    /// The plan's vertices, in plan order.
    pub vertices: Vec<String>,
    /// A number drawn once per submit request: the same submit written
    /// again (its answer was lost) gets the incarnation the first one got.
    #[serde(default)]
    pub nonce: u64,
    /// Vertex → the instances of it that run side by side on different
    /// members (a stage's `replicate = k`; only those over one).
    #[serde(default)]
    pub replicate: BTreeMap<String, usize>,
}

/// A job the cluster runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterJob {
    /// What was submitted.
    pub spec: JobSpec,
    /// Its incarnation: a job submitted again after a cancel gets a new one
    /// (and new streams).
    pub id: u64,
    /// Vertex → the member that runs it.
    pub placement: BTreeMap<String, NodeId>,
    /// The changes to its stages, in the order they were written.
    #[serde(default)]
    pub patches: Vec<PatchRequest>,
    /// Vertex → the member that keeps a copy of its output streams and its
    /// latest snapshot, and runs it when its member is lost. Never the
    /// member that runs it; none while no other member is up.
    #[serde(default)]
    pub backups: BTreeMap<String, NodeId>,
    /// The vertices whose backup has stored a snapshot of them.
    #[serde(default)]
    pub ready: BTreeSet<String>,
    /// The vertices some backup ever stored a snapshot of: their inputs
    /// were collected past their start since, so they resume only from a
    /// snapshot. When its member is lost, a vertex moves to its backup if
    /// that is ready, or if it never had a snapshot stored (it starts over
    /// from its inputs' start); else to its previous backup or the member
    /// it left ([`ClusterJob::handing`], [`ClusterJob::left`]), if up;
    /// else it waits for its member.
    #[serde(default)]
    pub snapshotted: BTreeSet<String>,
    /// Copy of a stage → its patch timeline, recorded by the member that
    /// runs it before the copy writes anything past a switch: a copy that
    /// moves resumes with every switch a reader may have seen the effect
    /// of, at the position it was made.
    #[serde(default)]
    pub timelines: BTreeMap<String, CopyTimeline>,
    /// Vertex of a drained member → the member (its backup) running a
    /// duplicate of it from its latest stored snapshot; the vertex moves
    /// there once the duplicate has caught up ([`Command::Switch`]).
    ///
    /// [`Command::Switch`]: crate::metadata::Command::Switch
    #[serde(default)]
    pub duplicates: BTreeMap<String, NodeId>,
    /// Vertex → the members besides its own that run an instance of it
    /// (`replicate = k`): each writes the same rStream there, the readers
    /// on that member read it, and when the vertex's member is lost or
    /// drained the vertex moves to one of them, already running. Never its
    /// own member or its backup.
    #[serde(default)]
    pub replicas: BTreeMap<String, BTreeSet<NodeId>>,
    /// The vertices that fell far behind their stage's peers (stragglers):
    /// each has a duplicate on its backup ([`ClusterJob::duplicates`]),
    /// started from the backup's snapshot; whichever catches up with its
    /// inputs first stays.
    #[serde(default)]
    pub stragglers: BTreeSet<String>,
    /// The vertices moving to their backup to even out the members' load
    /// (a member back after a loss runs nothing until then): each has a
    /// duplicate there ([`ClusterJob::duplicates`]) that takes its place
    /// once it has caught up.
    #[serde(default)]
    pub moving: BTreeSet<String>,
    /// Copy of a stage → where each of its followers (its replicas and
    /// duplicate, which make no change of their own but follow the
    /// timeline the vertex records) stopped for a change that waits:
    /// the vertex makes it past all of them ([`Command::Hold`]).
    ///
    /// [`Command::Hold`]: crate::metadata::Command::Hold
    #[serde(default)]
    pub holds: BTreeMap<String, BTreeMap<NodeId, Held>>,
    /// Ingest stream → where the job's sources of it start: the stream's
    /// collection point when the job was submitted (absent: its start).
    #[serde(default)]
    pub starts: BTreeMap<String, u64>,
    /// Vertex whose backup was handed to another member (to even out the
    /// load, or because its member was drained) → its previous backup,
    /// which holds a snapshot of it: it goes on backing the vertex up
    /// (storing its snapshots, holding its inputs and its output's copy)
    /// until the new one is ready, and the vertex moves there if its
    /// member is lost meanwhile, even to a drained member.
    #[serde(default)]
    pub handing: BTreeMap<String, NodeId>,
    /// Vertex that moved to its duplicate → the member it left, now its
    /// backup, until that is ready: it holds the vertex's own latest
    /// snapshot, the output that snapshot wrote and (kept there and by
    /// the vertex's new member) the inputs from there on, so the vertex
    /// moves back to resume from it if its new member is lost meanwhile.
    /// Unlike a ready backup it draws no move to even out the load, nor a
    /// straggler's duplicate.
    #[serde(default)]
    pub left: BTreeMap<String, NodeId>,
}

/// Where a follower of a copy stopped for a change that waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The change's index in the job's changes ([`ClusterJob::patches`]).
    pub index: u64,
    /// The CTIs the follower had written where it stopped: the vertex
    /// makes the change at a later CTI, which the follower has not passed.
    pub ctis: u64,
}

/// Whether the plan's vertex `name` is a sink (`sink{i}`): a sink writes a
/// file, so it moves rather than runs twice.
pub fn is_sink(name: &str) -> bool {
    name.strip_prefix("sink")
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether the plan's vertex `vertex` runs part of stage `stage` as the
/// user named it: the stage itself, or one of its `stage__…` vertices (a
/// parallel stage's exchange, copies and merge, a query's inner stages).
pub fn of_stage(vertex: &str, stage: &str) -> bool {
    vertex
        .strip_prefix(stage)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("__"))
}

/// A copy's patch timeline as the coordinator records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyTimeline {
    /// Its changes, in order, each at the input position it took effect.
    pub patches: Vec<weir_core::patch::Patch>,
    /// How many of the job's changes ([`ClusterJob::patches`]) the copy
    /// had made or passed over: each is in `patches` or was passed over,
    /// and none of them waits for a CTI.
    pub taken: u64,
}

/// A change to one stage of a running job (`weir udf deploy`, `weir udf
/// rollback`, `weir job filter add|remove`), checked by a member that runs
/// a copy of the stage before it is written. Each member makes it to the
/// copies it runs: each copy switches at a CTI of its own input and records
/// where in its timeline, so a replay repeats it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRequest {
    /// The stage, as the user named it (a keyed stage's copies all change).
    pub stage: String,
    /// What changes.
    pub change: StageChange,
    /// The member that checked it, which holds a deployed module's bytes.
    pub origin: NodeId,
    /// Drawn once per request: the same change written again (its answer
    /// was lost) keeps the index the first one got.
    pub nonce: u64,
}

/// What a [`PatchRequest`] changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageChange {
    /// To this module version (full SHA-256 hex).
    Deploy {
        /// The version.
        version: String,
    },
    /// Back to an earlier version: the one named by this prefix, or the
    /// version before the current one (resolved by each copy from its
    /// timeline).
    Rollback {
        /// A version prefix.
        to: Option<String>,
    },
    /// A runtime filter added (its canonical text).
    FilterAdd {
        /// The filter.
        text: String,
    },
    /// A runtime filter removed (its text as it was added).
    FilterRemove {
        /// The filter.
        text: String,
    },
}

impl ClusterJob {
    /// The vertices member `member` runs.
    pub fn on(&self, member: NodeId) -> impl Iterator<Item = &str> {
        self.placement
            .iter()
            .filter(move |(_, m)| **m == member)
            .map(|(v, _)| v.as_str())
    }

    /// The vertices member `member` runs a duplicate of.
    pub fn duplicated_on(&self, member: NodeId) -> impl Iterator<Item = &str> {
        self.duplicates
            .iter()
            .filter(move |(_, m)| **m == member)
            .map(|(v, _)| v.as_str())
    }

    /// Keeps a previous backup (`handing`) while it is up (drained or
    /// not), the vertex runs on another member and its new backup, if it
    /// has one, is another member, not ready yet.
    fn settle_handing(&mut self, alive: &[NodeId]) {
        let (placement, backups, ready) = (&self.placement, &self.backups, &self.ready);
        self.handing.retain(|v, h| {
            alive.contains(h)
                && !ready.contains(v)
                && placement.get(v).is_some_and(|m| m != h)
                && backups.get(v).is_none_or(|b| b != h)
        });
        // The member a vertex left stays its fallback while it is up, is
        // its backup and that backup is not ready.
        self.left.retain(|v, h| {
            alive.contains(h)
                && !ready.contains(v)
                && placement.get(v).is_some_and(|m| m != h)
                && backups.get(v) == Some(h)
        });
    }

    /// A drained member that backs a vertex up and holds a snapshot of it
    /// (a ready backup, or the member the vertex left) hands its backup
    /// over: it goes on backing the vertex up as its previous backup
    /// (`handing`) until the new one, on a member that takes work, is
    /// ready, so a loss of the vertex's member meanwhile still finds the
    /// vertex's state on a member that is up.
    fn hand_over_drained(&mut self, draining: &[NodeId]) {
        let handed: Vec<(String, NodeId)> = self
            .backups
            .iter()
            .filter(|(v, b)| {
                draining.contains(b) && (self.ready.contains(*v) || self.left.get(*v) == Some(b))
            })
            .map(|(v, b)| (v.clone(), *b))
            .collect();
        for (vertex, member) in handed {
            self.backups.remove(&vertex);
            self.ready.remove(&vertex);
            self.left.remove(&vertex);
            self.handing.insert(vertex, member);
        }
    }

    /// The members that back vertex `vertex` up: its backup, and the
    /// previous one while the new one is not ready.
    pub fn backers(&self, vertex: &str) -> impl Iterator<Item = NodeId> {
        [self.backups.get(vertex), self.handing.get(vertex)]
            .into_iter()
            .flatten()
            .copied()
    }

    /// Whether vertex `vertex` would resume at once if its member were
    /// lost now, as [`Metadata::replace`] moves it: a replica runs on a
    /// member of `up` (up and taking work), its backup there holds a
    /// snapshot of it (or it never had one stored: it starts over), or
    /// the previous backup or the member it left, on a member of `alive`
    /// (drained ones included), holds its state. Otherwise it waits for its
    /// member.
    pub fn protected(&self, vertex: &str, up: &[NodeId], alive: &[NodeId]) -> bool {
        let replica = self
            .replicas
            .get(vertex)
            .is_some_and(|r| r.iter().any(|m| up.contains(m)));
        let backup = self.backups.get(vertex).is_some_and(|b| {
            up.contains(b) && (self.ready.contains(vertex) || !self.snapshotted.contains(vertex))
        });
        let fallback = [self.handing.get(vertex), self.left.get(vertex)]
            .into_iter()
            .flatten()
            .any(|m| alive.contains(m));
        replica || backup || fallback
    }

    /// The vertices member `member` backs up: as their backup, or as the
    /// previous one while the new one is not ready.
    pub fn backed_by(&self, member: NodeId) -> impl Iterator<Item = &str> {
        self.backups
            .iter()
            .chain(&self.handing)
            .filter(move |(_, m)| **m == member)
            .map(|(v, _)| v.as_str())
    }
}

/// Places `vertices`, in order, each on the member of `members` with the
/// fewest vertices so far (counting `load`, what they already run), the
/// lowest id among equals. `None` when there is no member.
pub fn place(
    vertices: &[String],
    members: &[NodeId],
    load: &BTreeMap<NodeId, usize>,
) -> Option<BTreeMap<String, NodeId>> {
    let mut count: BTreeMap<NodeId, usize> = members
        .iter()
        .map(|m| (*m, load.get(m).copied().unwrap_or(0)))
        .collect();
    let mut placement = BTreeMap::new();
    for vertex in vertices {
        let (member, n) = count.iter_mut().min_by_key(|(id, n)| (**n, **id))?;
        *n += 1;
        placement.insert(vertex.clone(), *member);
    }
    Some(placement)
}

/// Gives every vertex of `job` without a backup that is up one: the member
/// of `up` other than the vertex's own with the fewest backups so far
/// (counting `load`), the lowest id among equals.
pub(crate) fn back(job: &mut ClusterJob, up: &[NodeId], load: &mut BTreeMap<NodeId, usize>) {
    for (vertex, member) in &job.placement {
        let replica = |m: &NodeId| job.replicas.get(vertex).is_some_and(|r| r.contains(m));
        if job
            .backups
            .get(vertex)
            .is_some_and(|b| up.contains(b) && b != member && !replica(b))
        {
            continue;
        }
        let choice = up
            .iter()
            .filter(|m| *m != member && !replica(m))
            .min_by_key(|m| (load.get(*m).copied().unwrap_or(0), **m));
        match choice {
            Some(b) => {
                *load.entry(*b).or_insert(0) += 1;
                job.backups.insert(vertex.clone(), *b);
            }
            None => {
                job.backups.remove(vertex);
            }
        }
        job.ready.remove(vertex);
    }
}

impl Metadata {
    /// How many vertices each member backs up.
    fn backup_load(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for job in self.jobs.values() {
            for member in job.backups.values() {
                *load.entry(*member).or_insert(0) += 1;
            }
        }
        load
    }

    /// After a change of members: every vertex of a member that is no
    /// longer up moves to its backup, if that is up, not drained, and ready
    /// (it holds the vertex's output and a snapshot); a vertex of a drained
    /// member that is up gets a duplicate there instead (a sink's
    /// duplicate writes the same bytes at the same offsets of its file);
    /// then every vertex without such a backup gets one. A pure function
    /// of the metadata, like placement.
    pub(crate) fn replace(&mut self) {
        let up: Vec<NodeId> = self.placeable().collect();
        let alive: Vec<NodeId> = self.up().map(|(id, _)| id).collect();
        let draining: Vec<NodeId> = self
            .up()
            .filter(|(_, m)| m.draining)
            .map(|(id, _)| id)
            .collect();
        let mut load = self.backup_load();
        for job in self.jobs.values_mut() {
            // A replicated vertex whose member went moves to a replica.
            let failed_over = job.fail_over(&up);
            job.settle_handing(&alive);
            job.hand_over_drained(&draining);
            // A duplicate whose vertex moved, or whose member or the
            // vertex's is no longer where it was, goes.
            let placement = &job.placement;
            let (stragglers, moving) = (&job.stragglers, &job.moving);
            job.duplicates.retain(|v, d| {
                up.contains(d)
                    && job.backups.get(v) == Some(d)
                    && placement.get(v).is_some_and(|m| {
                        draining.contains(m)
                            || ((stragglers.contains(v) || moving.contains(v)) && up.contains(m))
                    })
            });
            let duplicates = &job.duplicates;
            job.stragglers.retain(|v| duplicates.contains_key(v));
            job.moving.retain(|v| duplicates.contains_key(v));
            // A lost member's vertex whose backup is not ready yet moves to
            // the previous one, which is, even on a drained member (a
            // drained one's vertex waits).
            let moves: Vec<(String, NodeId)> = job
                .placement
                .iter()
                .filter(|(_, m)| !up.contains(m))
                .filter(|(v, _)| !failed_over.contains(*v))
                .filter_map(|(v, m)| {
                    let backup = match job.ready.contains(v) || !job.snapshotted.contains(v) {
                        true => job.backups.get(v).filter(|b| up.contains(b)),
                        false if draining.contains(m) => None,
                        false => (job.handing.get(v))
                            .or_else(|| job.left.get(v))
                            .filter(|b| alive.contains(b)),
                    };
                    let b = backup?;
                    Some((v.clone(), *b))
                })
                .collect();
            for (vertex, backup) in moves {
                let from = job.placement.get(&vertex).copied();
                tracing::debug!(
                    job = %job.spec.name,
                    %vertex,
                    ?from,
                    to = backup,
                    ready = job.ready.contains(&vertex),
                    snapshotted = job.snapshotted.contains(&vertex),
                    handing = ?job.handing.get(&vertex),
                    "placement: a vertex of a member that is not up moves"
                );
                if from.is_some_and(|m| draining.contains(&m)) {
                    job.duplicates.insert(vertex, backup);
                    continue;
                }
                job.duplicates.remove(&vertex);
                job.placement.insert(vertex.clone(), backup);
                job.handing.remove(&vertex);
                job.left.remove(&vertex);
                job.backups.remove(&vertex);
                if let Some(n) = load.get_mut(&backup) {
                    *n = n.saturating_sub(1);
                }
            }
            back(job, &up, &mut load);
            // A ready backup of a vertex short of replicas becomes one.
            if job.replenish(&up) {
                back(job, &up, &mut load);
            }
        }
        self.even_out(&up);
        for job in self.jobs.values_mut() {
            job.settle_handing(&alive);
        }
    }

    /// How many vertices (and replicas of vertices) each member runs.
    pub fn load(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for job in self.jobs.values() {
            let replicas = job.replicas.values().flatten();
            for member in job.placement.values().chain(replicas) {
                *load.entry(*member).or_insert(0) += 1;
            }
        }
        load
    }

    pub(crate) fn submit(&mut self, spec: &JobSpec) -> Reply {
        if let Some(job) = self.jobs.get(&spec.name) {
            if spec.nonce != 0 && job.spec.nonce == spec.nonce {
                return Reply::Submitted { id: job.id };
            }
            return Reply::Refused(format!(
                "job `{}` is already in the cluster (id {}); cancel it first with `weir job cancel {}`",
                spec.name, job.id, spec.name
            ));
        }
        let up: Vec<NodeId> = self.placeable().collect();
        let Some(placement) = place(&spec.vertices, &up, &self.load()) else {
            return Reply::Refused("no member of the cluster is up to run the job".into());
        };
        self.next_job = self.next_job.max(1);
        let id = self.next_job;
        self.next_job += 1;
        let mut job = ClusterJob {
            spec: spec.clone(),
            id,
            placement,
            patches: Vec::new(),
            backups: BTreeMap::new(),
            ready: BTreeSet::new(),
            snapshotted: BTreeSet::new(),
            timelines: BTreeMap::new(),
            duplicates: BTreeMap::new(),
            replicas: BTreeMap::new(),
            stragglers: BTreeSet::new(),
            moving: BTreeSet::new(),
            holds: BTreeMap::new(),
            starts: self.stream_lows(),
            handing: BTreeMap::new(),
            left: BTreeMap::new(),
        };
        job.add_replicas(&up, self.load());
        back(&mut job, &up, &mut self.backup_load());
        self.jobs.insert(spec.name.clone(), job);
        Reply::Submitted { id }
    }

    pub(crate) fn patch(&mut self, name: &str, patch: &PatchRequest) -> Reply {
        let Some(job) = self.jobs.get_mut(name) else {
            return Reply::Refused(format!("no job `{name}` in the cluster"));
        };
        if let Some(index) = job.patches.iter().position(|p| p.nonce == patch.nonce) {
            return Reply::Patched { index };
        }
        job.patches.push(patch.clone());
        Reply::Patched {
            index: job.patches.len() - 1,
        }
    }

    /// Moves `vertex` of incarnation `id` of job `name` to `member`, which
    /// runs a duplicate of it that has caught up.
    pub(crate) fn switch(&mut self, name: &str, id: u64, vertex: &str, member: NodeId) -> Reply {
        let alive: BTreeSet<NodeId> = self.up().map(|(id, _)| id).collect();
        let Some(job) = self.jobs.get_mut(name).filter(|j| j.id == id) else {
            return Reply::Unchanged;
        };
        if job.duplicates.get(vertex) != Some(&member) {
            return Reply::Unchanged;
        }
        job.duplicates.remove(vertex);
        job.stragglers.remove(vertex);
        job.moving.remove(vertex);
        // The member it leaves becomes its backup: its copy of the
        // vertex's output is whole, so it stores a first snapshot soonest.
        // Until then it is the vertex's fallback (`left`). A drained one
        // hands its backup over to a member that takes work
        // (`hand_over_drained`) and stays the fallback until that is ready.
        let left = job.placement.insert(vertex.to_string(), member);
        job.ready.remove(vertex);
        job.left.remove(vertex);
        match left.filter(|m| *m != member) {
            Some(from) => {
                job.backups.insert(vertex.to_string(), from);
                if alive.contains(&from) {
                    job.left.insert(vertex.to_string(), from);
                    job.handing.remove(vertex);
                }
            }
            None => {
                job.backups.remove(vertex);
            }
        }
        Reply::Done
    }

    /// Vertex `vertex` of incarnation `id` of job `name` fell far behind
    /// its stage's peers (`slow`): it gets a duplicate on its backup, if
    /// that is up, takes work and holds a snapshot of it (a sink or a
    /// replicated vertex gets none; the duplicate follows the vertex's
    /// changes, see `follow`). Or it caught up again first: its duplicate
    /// goes.
    pub(crate) fn straggler(&mut self, name: &str, id: u64, vertex: &str, slow: bool) -> Reply {
        let duplicate = self.straggler_duplicate(name, vertex);
        let Some(job) = self.jobs.get_mut(name).filter(|j| j.id == id) else {
            return Reply::Unchanged;
        };
        if !slow {
            if job.stragglers.remove(vertex) {
                job.duplicates.remove(vertex);
                return Reply::Done;
            }
            return Reply::Unchanged;
        }
        let Some(backup) = duplicate else {
            return Reply::Unchanged;
        };
        job.stragglers.insert(vertex.to_string());
        job.duplicates.insert(vertex.to_string(), backup);
        Reply::Done
    }

    /// Moves replicated `vertex` of incarnation `id` of job `name`, far
    /// behind its stage's peers, to its replica on `member`, if that is up
    /// and takes work: the replica runs on as the vertex, and the instance
    /// where the vertex was goes.
    pub(crate) fn promote(&mut self, name: &str, id: u64, vertex: &str, member: NodeId) -> Reply {
        let placeable = self.placeable().any(|m| m == member);
        let Some(job) = self.jobs.get_mut(name).filter(|j| j.id == id) else {
            return Reply::Unchanged;
        };
        let Some(replicas) = job.replicas.get_mut(vertex) else {
            return Reply::Unchanged;
        };
        if !placeable || !replicas.remove(&member) {
            return Reply::Unchanged;
        }
        if replicas.is_empty() {
            job.replicas.remove(vertex);
        }
        job.placement.insert(vertex.to_string(), member);
        Reply::Done
    }

    /// Where vertex `vertex` of job `name`, behind its stage's peers, would
    /// run a duplicate now: on its backup, once that is up, takes work and
    /// holds a snapshot of it. None for a sink, a replicated vertex (its
    /// replicas run already) or one that has a duplicate.
    pub fn straggler_duplicate(&self, name: &str, vertex: &str) -> Option<NodeId> {
        let job = self.jobs.get(name)?;
        let backup = job.backups.get(vertex).copied()?;
        let eligible = !is_sink(vertex)
            && !job.duplicates.contains_key(vertex)
            && !job.replicated(vertex)
            && job.ready.contains(vertex)
            && self.placeable().any(|m| m == backup);
        eligible.then_some(backup)
    }

    /// Records the timeline of copy `copy` of incarnation `id` of job
    /// `name`, sent by `member`: only a member running an instance of the
    /// copy (its own, its duplicate's or a replica's), and only a timeline that goes on from the one recorded (a shorter
    /// one, sent again, changes nothing).
    pub(crate) fn record_timeline(
        &mut self,
        name: &str,
        id: u64,
        copy: &str,
        member: NodeId,
        timeline: &CopyTimeline,
    ) -> Reply {
        let Some(job) = self.jobs.get_mut(name).filter(|j| j.id == id) else {
            return Reply::Refused(format!(
                "incarnation {id} of job `{name}` is no longer in the cluster"
            ));
        };
        // A replica makes the same switches at the same positions as the
        // vertex (a rollback on a trap): either may record them first.
        if !job.instances(copy).contains(&member) {
            return Reply::Refused(format!(
                "copy `{copy}` of job `{name}` no longer runs on member {member}"
            ));
        }
        let recorded = job.timelines.entry(copy.to_string()).or_default();
        let (old, new) = (&recorded.patches, &timeline.patches);
        if extends(old, new) && (new.len() < old.len() || timeline.taken <= recorded.taken) {
            return Reply::Unchanged;
        }
        if !extends(new, old) {
            let at = old.iter().zip(new).take_while(|(a, b)| a.same(b)).count();
            let show = |p: Option<&weir_core::patch::Patch>| {
                p.map_or("none".to_string(), |p| {
                    format!("{} at input position {}", p.change.describe(), p.position)
                })
            };
            return Reply::Refused(format!(
                "copy `{copy}` of job `{name}`: change {} of its timeline is {}, the cluster recorded {}",
                at + 1,
                show(new.get(at)),
                show(old.get(at))
            ));
        }
        // The followers' stops for the changes now taken are done with.
        if let Some(holds) = job.holds.get_mut(copy) {
            holds.retain(|_, h| h.index >= timeline.taken);
        }
        let taken = recorded.taken.max(timeline.taken);
        *recorded = timeline.clone();
        recorded.taken = taken;
        Reply::Done
    }
}

mod even;
mod follow;
#[cfg(test)]
mod tests;
