//! Replicated vertices (a stage's `replicate = k`): k instances of each
//! vertex run on different members and write the same rStream, each on its
//! own member. The one on the vertex's member is what readers elsewhere
//! read; the others are its replicas. When the vertex's member is lost or
//! drained, the vertex moves to a replica, which is already running, so
//! nothing restarts and nothing is replayed. A vertex short of replicas
//! gets one from its backup once that holds a snapshot: the backup then
//! runs an instance from it.

use std::collections::{BTreeMap, BTreeSet};

use crate::jobs::ClusterJob;
use crate::metadata::NodeId;

impl ClusterJob {
    /// The vertices member `member` runs a replica of.
    pub fn replicated_on(&self, member: NodeId) -> impl Iterator<Item = &str> {
        self.replicas
            .iter()
            .filter(move |(_, r)| r.contains(&member))
            .map(|(v, _)| v.as_str())
    }

    /// The vertices member `member` runs an instance of: its own, the
    /// drain or straggler duplicates and the replicas placed on it.
    pub fn runs_on(&self, member: NodeId) -> impl Iterator<Item = &str> {
        self.on(member)
            .chain(self.duplicated_on(member))
            .chain(self.replicated_on(member))
    }

    /// The members that run an instance of `vertex`: its own, its drain
    /// duplicate's and its replicas'.
    pub fn instances(&self, vertex: &str) -> BTreeSet<NodeId> {
        let own = self.placement.get(vertex).into_iter();
        let duplicate = self.duplicates.get(vertex).into_iter();
        let replicas = self.replicas.get(vertex).into_iter().flatten();
        own.chain(duplicate).chain(replicas).copied().collect()
    }

    /// Whether `vertex` is of a replicated stage (it runs as more than
    /// one instance, or should).
    pub fn replicated(&self, vertex: &str) -> bool {
        self.wanted(vertex) > 0
    }

    /// How many replicas `vertex` should have besides itself.
    fn wanted(&self, vertex: &str) -> usize {
        self.spec
            .replicate
            .get(vertex)
            .map_or(0, |k| k.saturating_sub(1))
    }

    /// Gives each replicated vertex of a job just placed its replicas: the
    /// members of `up` other than its own with the fewest vertices so far
    /// (`load`, counting the job's own), the lowest id among equals. They
    /// start from the start, like the vertex.
    pub(crate) fn add_replicas(&mut self, up: &[NodeId], mut load: BTreeMap<NodeId, usize>) {
        for member in self.placement.values() {
            *load.entry(*member).or_insert(0) += 1;
        }
        for (vertex, member) in &self.placement {
            let wanted = self.wanted(vertex);
            if wanted == 0 {
                continue;
            }
            let mut others: Vec<NodeId> = up.iter().copied().filter(|m| m != member).collect();
            others.sort_by_key(|m| (load.get(m).copied().unwrap_or(0), *m));
            let chosen: BTreeSet<NodeId> = others.into_iter().take(wanted).collect();
            for m in &chosen {
                *load.entry(*m).or_insert(0) += 1;
            }
            self.replicas.insert(vertex.clone(), chosen);
        }
    }

    /// After a change of members: the replicas on members not in `up` go,
    /// and each vertex whose member is not in `up` moves to its replica
    /// with the lowest id, if it has one. Returns the vertices that moved.
    pub(crate) fn fail_over(&mut self, up: &[NodeId]) -> BTreeSet<String> {
        self.replicas.retain(|_, r| {
            r.retain(|m| up.contains(m));
            !r.is_empty()
        });
        let mut moved = BTreeSet::new();
        for (vertex, member) in self.placement.iter_mut() {
            if up.contains(member) {
                continue;
            }
            let Some(replicas) = self.replicas.get_mut(vertex) else {
                continue;
            };
            let Some(to) = replicas.pop_first() else {
                continue;
            };
            if replicas.is_empty() {
                self.replicas.remove(vertex);
            }
            *member = to;
            self.duplicates.remove(vertex);
            if self.backups.get(vertex) == Some(&to) {
                self.backups.remove(vertex);
            }
            moved.insert(vertex.clone());
        }
        moved
    }

    /// Makes the ready backup (in `up`) of each vertex short of replicas a
    /// replica: it runs an instance from the snapshot it holds. Returns
    /// whether any did (those vertices then need another backup).
    pub(crate) fn replenish(&mut self, up: &[NodeId]) -> bool {
        let short: Vec<(String, NodeId)> = self
            .backups
            .iter()
            .filter(|(v, b)| up.contains(b) && self.ready.contains(*v))
            .filter(|(v, b)| self.placement.get(*v).is_some_and(|m| m != *b))
            .filter(|(v, _)| {
                let have = self.replicas.get(*v).map_or(0, BTreeSet::len);
                have < self.wanted(v)
            })
            .map(|(v, b)| (v.clone(), *b))
            .collect();
        for (vertex, backup) in &short {
            self.replicas
                .entry(vertex.clone())
                .or_default()
                .insert(*backup);
            self.backups.remove(vertex);
            self.ready.remove(vertex);
        }
        !short.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use crate::jobs::JobSpec;
    use crate::metadata::{Command, Metadata, Reply};

    use super::*;

    /// Members 2, 3 and 4 up, and job `j` of vertices v0..v{n} whose
    /// vertices in `replicated` have `k` instances each.
    pub(crate) fn cluster(n: usize, replicated: &[usize], k: usize) -> Metadata {
        let mut m = Metadata::default();
        for port in 1..=3 {
            m.apply(&Command::Join {
                addr: format!("127.0.0.1:700{port}"),
                id: None,
                nonce: 0,
            });
        }
        let spec = JobSpec {
            name: "j".into(),
            path: "/jobs/q.wsql".into(),
            text: String::new(),
            parallelism: 1,
            modules: BTreeMap::new(),
            origin: 2,
            vertices: (0..n).map(|v| format!("v{v}")).collect(),
            nonce: 0,
            replicate: replicated.iter().map(|v| (format!("v{v}"), k)).collect(),
        };
        assert!(matches!(
            m.apply(&Command::SubmitJob(spec)),
            Reply::Submitted { .. }
        ));
        m
    }

    fn ready(m: &mut Metadata, vertex: &str) {
        let job = &m.jobs["j"];
        let Some(b) = job.backups.get(vertex).copied() else {
            return;
        };
        let acted = m.members.get(&b).map_or(0, |x| x.losses);
        let on = job.placement[vertex];
        let from = vec![(on, m.members.get(&on).map_or(0, |x| x.losses))];
        m.apply(&Command::BackupReady {
            name: "j".into(),
            id: job.id,
            vertices: vec![vertex.into()],
            member: b,
            acted,
            from,
        });
    }

    #[test]
    fn a_replicated_vertex_runs_on_as_many_members_as_it_asks_and_its_backup_is_another() {
        let m = cluster(4, &[1, 2], 2);
        let job = &m.jobs["j"];
        for v in ["v1", "v2"] {
            let instances = job.instances(v);
            assert_eq!(instances.len(), 2, "{v}: {job:?}");
            let backup = job.backups[v];
            assert!(!instances.contains(&backup), "{v}: {job:?}");
        }
        assert!(!job.replicas.contains_key("v0") && !job.replicas.contains_key("v3"));
        // Three instances on three members leave no member to back up.
        let m = cluster(2, &[0], 3);
        let job = &m.jobs["j"];
        assert_eq!(job.instances("v0").len(), 3);
        assert!(!job.backups.contains_key("v0"), "{job:?}");
    }

    #[test]
    fn the_loss_of_a_replicated_vertexs_member_moves_it_to_its_replica_at_once() {
        let mut m = cluster(3, &[1], 2);
        let job = &m.jobs["j"];
        let (own, replica) = (job.placement["v1"], job.replicas["v1"].clone());
        let replica = *replica.first().expect("a replica");
        // No snapshot stored anywhere: a vertex without replicas whose
        // backup is not ready would wait; the replica is running.
        m.apply(&Command::Lost { id: own });
        let job = &m.jobs["j"];
        assert_eq!(job.placement["v1"], replica, "{job:?}");
        assert!(!job.replicas.contains_key("v1"), "{job:?}");
        // Its backup is the third member, which becomes a replica once it
        // holds a snapshot of it.
        let backup = job.backups["v1"];
        assert!(backup != replica && backup != own);
        ready(&mut m, "v1");
        let job = &m.jobs["j"];
        assert_eq!(job.instances("v1"), BTreeSet::from([replica, backup]));
        assert!(
            !job.backups.contains_key("v1"),
            "no third member up: {job:?}"
        );
    }

    #[test]
    fn a_lost_replica_goes_and_its_member_coming_back_backs_the_vertex_up_again() {
        let mut m = cluster(3, &[1], 2);
        let job = &m.jobs["j"];
        let own = job.placement["v1"];
        let replica = *job.replicas["v1"].first().expect("a replica");
        m.apply(&Command::Lost { id: replica });
        let job = &m.jobs["j"];
        assert_eq!(job.placement["v1"], own, "the vertex stays: {job:?}");
        assert_eq!(job.instances("v1"), BTreeSet::from([own]));
        m.apply(&Command::Back { id: replica });
        ready(&mut m, "v1");
        let job = &m.jobs["j"];
        assert_eq!(job.instances("v1").len(), 2, "{job:?}");
    }

    #[test]
    fn draining_a_replicated_vertexs_member_moves_it_without_a_duplicate() {
        let mut m = cluster(3, &[0, 1, 2], 2);
        let job = &m.jobs["j"];
        let own = job.placement["v0"];
        m.apply(&Command::Drain { id: own });
        let job = &m.jobs["j"];
        for v in ["v0", "v1", "v2"] {
            assert!(!job.instances(v).contains(&own), "{v}: {job:?}");
            assert!(!job.duplicates.contains_key(v), "{v}: {job:?}");
        }
    }
}
