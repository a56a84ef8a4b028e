//! `weir cluster status`, as a member answers it.

use weir_net::cluster::{ClusterStatus, MemberStatus};

use super::{Cluster, full_voters, lock};
use crate::metadata::Health;

impl Cluster {
    /// The cluster as this node sees it (the coordinator's view, when it is
    /// the coordinator).
    pub fn status(&self) -> ClusterStatus {
        let applied = self.applied();
        let metrics = self.inner.raft.metrics().borrow().clone();
        let voters = full_voters(metrics.membership_config.membership());
        let watch = lock(&self.inner.watch);
        let leading = metrics.current_leader == Some(self.inner.id);
        let mine = (self.inner.report.vertices)();
        let up: Vec<u64> = applied.metadata.placeable().collect();
        let alive: Vec<u64> = applied.metadata.up().map(|(id, _)| id).collect();
        let members = applied
            .metadata
            .members
            .iter()
            .map(|(id, m)| MemberStatus {
                id: *id,
                addr: m.addr.clone(),
                health: m.health.name().into(),
                voter: voters.contains(id),
                draining: m.draining,
                placed: applied
                    .metadata
                    .jobs
                    .values()
                    .map(|j| j.on(*id).count())
                    .sum(),
                backs: applied
                    .metadata
                    .jobs
                    .values()
                    .map(|j| j.backed_by(*id).count())
                    .sum(),
                heard_ms: match (leading, *id == self.inner.id) {
                    (true, true) => Some(0),
                    (true, false) => watch
                        .heard
                        .get(id)
                        .map(|(at, _)| at.elapsed().as_millis() as u64),
                    (false, _) => None,
                },
                vertices: {
                    let mut list = match (*id == self.inner.id, m.health) {
                        (true, _) => mine.clone(),
                        (false, Health::Up) => watch.vertices.get(id).cloned().unwrap_or_default(),
                        // A lost member's vertices run on the members that
                        // backed them up; what it last reported is stale.
                        (false, _) => Vec::new(),
                    };
                    for v in &mut list {
                        let job = applied.metadata.jobs.get(&v.job);
                        let name = v.planned().to_string();
                        v.replica = job
                            .is_some_and(|j| j.replicas.get(&name).is_some_and(|r| r.contains(id)));
                        // The vertex itself, not a replica or duplicate.
                        let own = job.filter(|j| j.placement.get(&name) == Some(id));
                        v.backup = own.and_then(|j| j.backups.get(&name).copied());
                        v.protected = own.map(|j| j.protected(&name, &up, &alive));
                    }
                    list
                },
            })
            .collect();
        let streams = applied
            .metadata
            .streams
            .values()
            .map(|s| weir_net::cluster::StreamHolders {
                name: s.spec.name.clone(),
                holders: s.holders.clone(),
                ready: s.ready.iter().copied().collect(),
                low: s.low,
            })
            .collect();
        ClusterStatus {
            coordinator: metrics.current_leader,
            term: metrics.current_term,
            answered_by: self.inner.id,
            members,
            streams,
        }
    }
}
