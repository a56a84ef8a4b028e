//! Jobs in the coordinator's metadata: what was submitted, and which member
//! runs each of its vertices. Placement is part of applying the submit, a
//! pure function of the metadata, so every member agrees on it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::metadata::{Metadata, NodeId, Reply};

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
    /// from its inputs' start); else it waits for its member.
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
}

/// Whether the plan's vertex `name` is a sink (`sink{i}`): a sink writes a
/// file, so it moves rather than runs twice.
pub fn is_sink(name: &str) -> bool {
    name.strip_prefix("sink")
        .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
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

    /// The vertices member `member` backs up.
    pub fn backed_by(&self, member: NodeId) -> impl Iterator<Item = &str> {
        self.backups
            .iter()
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
fn back(job: &mut ClusterJob, up: &[NodeId], load: &mut BTreeMap<NodeId, usize>) {
    for (vertex, member) in &job.placement {
        if job
            .backups
            .get(vertex)
            .is_some_and(|b| up.contains(b) && b != member)
        {
            continue;
        }
        let choice = up
            .iter()
            .filter(|m| *m != member)
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
    /// member that is up gets a duplicate there instead (a sink moves);
    /// then every vertex without such a backup gets one. A pure function
    /// of the metadata, like placement.
    pub(crate) fn replace(&mut self) {
        let up: Vec<NodeId> = self.placeable().collect();
        let draining: Vec<NodeId> = self
            .up()
            .filter(|(_, m)| m.draining)
            .map(|(id, _)| id)
            .collect();
        let mut load = self.backup_load();
        for job in self.jobs.values_mut() {
            // A duplicate whose vertex moved, or whose member or the
            // vertex's is no longer where it was, goes.
            let placement = &job.placement;
            job.duplicates.retain(|v, d| {
                up.contains(d)
                    && job.backups.get(v) == Some(d)
                    && placement.get(v).is_some_and(|m| draining.contains(m))
            });
            let moves: Vec<(String, NodeId)> = job
                .placement
                .iter()
                .filter(|(_, m)| !up.contains(m))
                .filter(|(v, _)| job.ready.contains(*v) || !job.snapshotted.contains(*v))
                .filter_map(|(v, _)| {
                    let b = job.backups.get(v).filter(|b| up.contains(b))?;
                    Some((v.clone(), *b))
                })
                .collect();
            for (vertex, backup) in moves {
                let (from, v) = (job.placement.get(&vertex).copied(), vertex.as_str());
                if from.is_some_and(|m| draining.contains(&m)) && !is_sink(v) {
                    job.duplicates.insert(vertex, backup);
                    continue;
                }
                job.duplicates.remove(&vertex);
                job.placement.insert(vertex.clone(), backup);
                job.backups.remove(&vertex);
                if let Some(n) = load.get_mut(&backup) {
                    *n = n.saturating_sub(1);
                }
            }
            back(job, &up, &mut load);
        }
    }

    /// How many vertices each member runs.
    pub fn load(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for job in self.jobs.values() {
            for member in job.placement.values() {
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
        };
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
        let Some(job) = self.jobs.get_mut(name).filter(|j| j.id == id) else {
            return Reply::Unchanged;
        };
        if job.duplicates.get(vertex) != Some(&member) {
            return Reply::Unchanged;
        }
        job.duplicates.remove(vertex);
        job.placement.insert(vertex.to_string(), member);
        job.backups.remove(vertex);
        Reply::Done
    }

    /// Records the timeline of copy `copy` of incarnation `id` of job
    /// `name`, sent by `member`: only the member the copy is placed on,
    /// and only a timeline that goes on from the one recorded (a shorter
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
        if job.placement.get(copy) != Some(&member) && job.duplicates.get(copy) != Some(&member) {
            return Reply::Refused(format!(
                "copy `{copy}` of job `{name}` no longer runs on member {member}"
            ));
        }
        let recorded = job.timelines.entry(copy.to_string()).or_default();
        let (old, new) = (&recorded.patches, &timeline.patches);
        if new.len() < old.len() && old.starts_with(new) {
            return Reply::Unchanged;
        }
        if !new.starts_with(old) {
            let at = old.iter().zip(new).take_while(|(a, b)| a == b).count();
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
        if *recorded == *timeline {
            return Reply::Unchanged;
        }
        *recorded = timeline.clone();
        Reply::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Command, Health, Member};
    use proptest::prelude::*;

    fn spec(name: &str, vertices: usize) -> JobSpec {
        JobSpec {
            name: name.into(),
            path: "/jobs/q.wsql".into(),
            text: String::new(),
            parallelism: 1,
            modules: BTreeMap::new(),
            origin: 1,
            vertices: (0..vertices).map(|v| format!("v{v}")).collect(),
            nonce: 0,
        }
    }

    proptest! {
        /// Every vertex lands on a member that is up, and the members' loads
        /// stay within one of each other.
        #[test]
        fn placement_is_balanced_over_the_members_that_are_up(
            health in proptest::collection::vec(any::<bool>(), 1..6),
            jobs in proptest::collection::vec(1usize..20, 1..5),
        ) {
            let mut m = Metadata::default();
            for (i, up) in health.iter().enumerate() {
                m.members.insert(i as NodeId + 1, Member {
                    addr: format!("127.0.0.1:{}", 7001 + i),
                    health: if *up { Health::Up } else { Health::Lost },
                    nonce: 0,
                    announced: 0,
                    draining: false,
                });
            }
            let up: Vec<NodeId> = m.up().map(|(id, _)| id).collect();
            for (j, n) in jobs.iter().enumerate() {
                let reply = m.apply(&Command::SubmitJob(spec(&format!("j{j}"), *n)));
                if up.is_empty() {
                    prop_assert!(matches!(reply, Reply::Refused(_)));
                    continue;
                }
                prop_assert_eq!(reply, Reply::Submitted { id: j as u64 + 1 });
                let job = &m.jobs[&format!("j{j}")];
                prop_assert_eq!(job.placement.len(), *n);
                prop_assert!(job.placement.values().all(|p| up.contains(p)));
            }
            if !up.is_empty() {
                let load = m.load();
                let counts: Vec<usize> = up.iter().map(|id| load.get(id).copied().unwrap_or(0)).collect();
                let (lo, hi) = (counts.iter().min(), counts.iter().max());
                prop_assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{counts:?}");
            }
        }
    }

    proptest! {
        /// After members are lost, come back and are drained in any order,
        /// every vertex runs on a member that is up and not drained
        /// whenever its backup was such a member and ready, its backup is
        /// another such member whenever one is, and a vertex moves only to
        /// the member that backed it up and was ready.
        #[test]
        fn a_lost_or_drained_members_vertices_move_to_their_ready_backups(
            n in 2u64..6,
            vertices in 1usize..12,
            events in proptest::collection::vec((0u8..3, 1u64..6, any::<u16>()), 0..12),
        ) {
            let mut m = Metadata::default();
            for id in 1..=n {
                m.apply(&Command::Join { addr: format!("127.0.0.1:{}", 7000 + id), id: Some(id), nonce: id });
            }
            m.apply(&Command::SubmitJob(spec("j", vertices)));
            for (kind, id, ready) in events {
                // Some backups stored a snapshot (a stale one's word is ignored).
                let job = m.jobs["j"].clone();
                for (i, (v, b)) in job.backups.iter().enumerate() {
                    if ready & (1 << (i % 16)) != 0 {
                        m.apply(&Command::BackupReady { name: "j".into(), id: 1, vertices: vec![v.clone()], member: *b });
                    }
                }
                m.apply(&Command::BackupReady { name: "j".into(), id: 1, vertices: vec!["v0".into()], member: 99 });
                let before = m.jobs["j"].clone();
                let id = (id - 1) % n + 1;
                m.apply(&match kind {
                    0 => Command::Lost { id },
                    1 => Command::Back { id },
                    _ => Command::Drain { id },
                });
                let up: Vec<NodeId> = m.placeable().collect();
                let job = &m.jobs["j"];
                for (v, member) in &job.placement {
                    if *member != before.placement[v] {
                        prop_assert_eq!(Some(member), before.backups.get(v), "{} moved", v);
                        prop_assert!(
                            before.ready.contains(v) || !before.snapshotted.contains(v),
                            "{} moved to a backup without its snapshot", v
                        );
                    }
                    prop_assert!(!job.ready.contains(v) || job.backups.contains_key(v));
                    prop_assert!(job.ready.is_subset(&job.snapshotted));
                    let backed = (before.ready.contains(v) || !before.snapshotted.contains(v))
                        && before.backups.get(v).is_some_and(|b| up.contains(b));
                    // A drained member's vertex stays until its duplicate
                    // on its backup has caught up.
                    let duplicated = job.duplicates.get(v);
                    prop_assert!(up.contains(member) || !backed || duplicated.is_some(), "{} stays on a lost or drained member", v);
                    if let Some(d) = duplicated {
                        prop_assert!(up.contains(d) && job.backups.get(v) == Some(d));
                        prop_assert!(m.members[member].draining && m.members[member].health == Health::Up);
                    }
                    match job.backups.get(v) {
                        Some(b) => prop_assert!(b != member && up.contains(b)),
                        None => prop_assert!(up.iter().all(|u| u == member)),
                    }
                }
            }
        }
    }

    /// A drained member's sink moves at once (it writes a file, so it
    /// never runs twice); if the drained member is lost before a duplicate
    /// switched, the vertex moves to the duplicate's member.
    #[test]
    fn a_drained_members_sink_moves_and_its_loss_ends_the_duplicates() {
        let mut m = Metadata::default();
        for id in 1..=2 {
            m.apply(&Command::Join {
                addr: format!("127.0.0.1:{}", 7000 + id),
                id: Some(id),
                nonce: id,
            });
        }
        let mut job = spec("j", 0);
        job.vertices = vec!["src".into(), "sink0".into()];
        m.apply(&Command::SubmitJob(job));
        let drained = m.jobs["j"].placement["src"];
        let other = 3 - drained;
        m.jobs
            .get_mut("j")
            .unwrap()
            .placement
            .insert("sink0".into(), drained);
        m.jobs
            .get_mut("j")
            .unwrap()
            .backups
            .insert("sink0".into(), other);
        assert!(is_sink("sink0") && !is_sink("sinks") && !is_sink("sink"));
        assert_eq!(m.apply(&Command::Drain { id: drained }), Reply::Done);
        let job = &m.jobs["j"];
        assert_eq!(job.placement["sink0"], other, "the sink moved");
        assert_eq!(job.placement["src"], drained, "the source runs on");
        assert_eq!(job.duplicates.get("src"), Some(&other));
        m.apply(&Command::Lost { id: drained });
        let job = &m.jobs["j"];
        assert_eq!(job.placement["src"], other);
        assert!(job.duplicates.is_empty());
    }

    #[test]
    fn a_drained_member_hands_each_vertex_to_its_backup_once_that_is_ready() {
        let mut m = Metadata::default();
        for id in 1..=3 {
            m.apply(&Command::Join {
                addr: format!("127.0.0.1:{}", 7000 + id),
                id: Some(id),
                nonce: id,
            });
        }
        m.apply(&Command::SubmitJob(spec("j", 6)));
        // A vertex whose state was never snapshotted moves at once; one
        // whose backup has not stored a snapshot yet waits for it.
        m.jobs.get_mut("j").unwrap().snapshotted = (0..6).map(|i| format!("v{i}")).collect();
        assert_eq!(m.apply(&Command::Drain { id: 2 }), Reply::Done);
        assert_eq!(m.apply(&Command::Drain { id: 2 }), Reply::Unchanged);
        let on_two: Vec<String> = m.jobs["j"].on(2).map(String::from).collect();
        assert_eq!(on_two.len(), 2, "nothing moves before its backup is ready");
        for v in &on_two {
            let backup = m.jobs["j"].backups[v];
            assert_ne!(backup, 2);
            m.apply(&Command::BackupReady {
                name: "j".into(),
                id: 1,
                vertices: vec![v.clone()],
                member: backup,
            });
            // A duplicate runs on the backup; the vertex moves there once
            // that member says it caught up, and only that member.
            assert_eq!(m.jobs["j"].placement[v], 2, "{v} runs on until switched");
            assert_eq!(m.jobs["j"].duplicates.get(v), Some(&backup));
            let switch = |member| Command::Switch {
                name: "j".into(),
                id: 1,
                vertex: v.clone(),
                member,
            };
            let other = (1..=3).find(|m| *m != 2 && *m != backup).unwrap_or(2);
            assert_eq!(m.apply(&switch(other)), Reply::Unchanged);
            assert_eq!(m.apply(&switch(backup)), Reply::Done);
            assert_eq!(m.jobs["j"].placement[v], backup, "{v} moved to its backup");
            assert!(m.jobs["j"].duplicates.is_empty());
        }
        let job = &m.jobs["j"];
        assert_eq!(job.on(2).count(), 0, "the drained member runs nothing");
        assert_eq!(job.backed_by(2).count(), 0, "nor backs anything up");
        assert!(job.backups.iter().all(|(v, b)| *b != job.placement[v]));
        // Nothing new goes to it.
        m.apply(&Command::SubmitJob(spec("k", 4)));
        assert_eq!(m.jobs["k"].on(2).count(), 0);
        // Draining the last member that could take the work is refused.
        assert_eq!(m.apply(&Command::Drain { id: 1 }), Reply::Done);
        let refused = m.apply(&Command::Drain { id: 3 });
        assert!(
            matches!(&refused, Reply::Refused(why) if why.contains("no other member")),
            "{refused:?}"
        );
        let unknown = m.apply(&Command::Drain { id: 9 });
        assert!(matches!(&unknown, Reply::Refused(why) if why.contains("no member 9")));
        // A drained member that starts again takes work again.
        m.apply(&Command::Join {
            addr: "127.0.0.1:7002".into(),
            id: Some(2),
            nonce: 2,
        });
        assert!(!m.members[&2].draining);
        m.apply(&Command::SubmitJob(spec("l", 3)));
        assert!(m.jobs["l"].on(2).count() > 0);
    }

    #[test]
    fn a_job_name_is_taken_until_the_job_is_cancelled() {
        let mut m = Metadata::default();
        m.apply(&Command::Join {
            addr: "127.0.0.1:7001".into(),
            id: Some(1),
            nonce: 0,
        });
        assert_eq!(
            m.apply(&Command::SubmitJob(spec("q", 3))),
            Reply::Submitted { id: 1 }
        );
        let again = m.apply(&Command::SubmitJob(spec("q", 3)));
        assert!(
            matches!(&again, Reply::Refused(why) if why.contains("already in the cluster (id 1)")),
            "{again:?}"
        );
        assert_eq!(
            m.apply(&Command::CancelJob { name: "q".into() }),
            Reply::Done
        );
        // A submit written twice (its answer was lost): one job, one id.
        let once = JobSpec {
            nonce: 77,
            ..spec("r", 2)
        };
        assert_eq!(
            m.apply(&Command::SubmitJob(once.clone())),
            Reply::Submitted { id: 2 }
        );
        assert_eq!(
            m.apply(&Command::SubmitJob(once)),
            Reply::Submitted { id: 2 }
        );
        assert_eq!(
            m.apply(&Command::CancelJob { name: "r".into() }),
            Reply::Done
        );
        assert_eq!(
            m.apply(&Command::SubmitJob(spec("q", 3))),
            Reply::Submitted { id: 3 }
        );
        assert_eq!(m.jobs["q"].on(1).count(), 3);
    }

    /// Changes to a job's stages keep the order they were written in; the
    /// same change written again (its answer was lost) keeps its index; a
    /// change to a job the cluster does not run is refused.
    #[test]
    fn stage_changes_are_indexed_in_order_once_each() {
        let mut m = Metadata::default();
        m.apply(&Command::Join {
            addr: "127.0.0.1:7001".into(),
            id: Some(1),
            nonce: 1,
        });
        assert_eq!(
            m.apply(&Command::SubmitJob(spec("j", 3))),
            Reply::Submitted { id: 1 }
        );
        let change = |nonce: u64, change: StageChange| Command::PatchJob {
            name: "j".into(),
            patch: PatchRequest {
                stage: "s".into(),
                change,
                origin: 1,
                nonce,
            },
        };
        let deploy = StageChange::Deploy {
            version: "ab".repeat(32),
        };
        let back = StageChange::Rollback { to: None };
        assert_eq!(
            m.apply(&change(7, deploy.clone())),
            Reply::Patched { index: 0 }
        );
        assert_eq!(
            m.apply(&change(8, back.clone())),
            Reply::Patched { index: 1 }
        );
        assert_eq!(
            m.apply(&change(7, deploy.clone())),
            Reply::Patched { index: 0 }
        );
        let changes: Vec<&StageChange> = m.jobs["j"].patches.iter().map(|p| &p.change).collect();
        assert_eq!(changes, [&deploy, &back]);
        let unknown = Command::PatchJob {
            name: "nope".into(),
            patch: m.jobs["j"].patches[0].clone(),
        };
        assert!(matches!(m.apply(&unknown), Reply::Refused(why) if why.contains("no job `nope`")));
    }

    /// A copy's timeline is recorded only from the member it runs on, only
    /// as it grows; a timeline that differs from the recorded one where
    /// both have changes is refused, saying where.
    #[test]
    fn a_copy_timeline_grows_only_from_its_member() {
        use weir_core::patch::{Change, Patch};
        let mut m = Metadata::default();
        for id in [1, 2] {
            m.apply(&Command::Join {
                addr: format!("127.0.0.1:700{id}"),
                id: Some(id),
                nonce: id,
            });
        }
        m.apply(&Command::SubmitJob(spec("j", 2)));
        let runs = m.jobs["j"].placement["v0"];
        let other = if runs == 1 { 2 } else { 1 };
        let at = |position: u64, change: Change| Patch {
            position,
            ctis: position / 10,
            version: "ab".repeat(32),
            change,
            at_ms: 5,
        };
        let record =
            |member: NodeId, id: u64, patches: Vec<Patch>, taken: u64| Command::RecordTimeline {
                name: "j".into(),
                id,
                copy: "v0".into(),
                member,
                timeline: CopyTimeline { patches, taken },
            };
        let one = vec![at(40, Change::Deploy)];
        let two = vec![at(40, Change::Deploy), at(90, Change::Rollback)];
        assert_eq!(m.apply(&record(runs, 1, one.clone(), 1)), Reply::Done);
        assert_eq!(m.apply(&record(runs, 1, one.clone(), 1)), Reply::Unchanged);
        assert_eq!(m.apply(&record(runs, 1, two.clone(), 2)), Reply::Done);
        // Sent again late: the longer one stays.
        assert_eq!(m.apply(&record(runs, 1, one.clone(), 1)), Reply::Unchanged);
        assert_eq!(m.jobs["j"].timelines["v0"].patches, two);
        assert_eq!(m.jobs["j"].timelines["v0"].taken, 2);
        // The same change at another position: refused, naming both.
        let moved = vec![at(40, Change::Deploy), at(95, Change::Rollback)];
        assert!(matches!(
            m.apply(&record(runs, 1, moved, 2)),
            Reply::Refused(why) if why.contains("change 2") && why.contains("position 95") && why.contains("position 90")
        ));
        // From a member the copy does not run on, or another incarnation.
        let three = vec![two[0].clone(), two[1].clone(), at(120, Change::Deploy)];
        assert!(matches!(
            m.apply(&record(other, 1, three.clone(), 3)),
            Reply::Refused(why) if why.contains(&format!("no longer runs on member {other}"))
        ));
        assert!(matches!(
            m.apply(&record(runs, 2, three, 3)),
            Reply::Refused(why) if why.contains("incarnation 2 of job `j`")
        ));
        assert_eq!(m.jobs["j"].timelines["v0"].patches, two);
    }
}
