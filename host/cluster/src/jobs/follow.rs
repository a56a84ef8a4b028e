//! Changes to a stage whose vertices run as more than one instance: a
//! replicated vertex's replicas, a drained or straggling vertex's
//! duplicate. Only the vertex (the instance on its own member) makes a
//! change; the others, its followers, make the switches the vertex
//! records, at the positions it recorded them. So that no follower has
//! passed that position, each follower stops reading once a change to its
//! stage waits, and says where ([`Command::Hold`]); the vertex makes the
//! change at a CTI past every follower's stop, records it, and the
//! followers go on with it.
//!
//! [`Command::Hold`]: crate::metadata::Command::Hold

use std::collections::BTreeSet;

use super::{ClusterJob, Held};
use crate::metadata::{Metadata, NodeId, Reply};

impl ClusterJob {
    /// The members running an instance of `copy` besides its own.
    pub fn followers(&self, copy: &str) -> BTreeSet<NodeId> {
        let own = self.placement.get(copy);
        let mut all = self.instances(copy);
        all.retain(|m| Some(m) != own);
        all
    }

    /// The vertices member `member` follows: it runs an instance of them
    /// (a replica or a duplicate) while they are placed on another member.
    pub fn followed_on(&self, member: NodeId) -> BTreeSet<&str> {
        self.replicated_on(member)
            .chain(self.duplicated_on(member))
            .filter(|v| self.placement.get(*v) != Some(&member))
            .collect()
    }

    /// Whether copy `copy` may take change `index` now: every follower of
    /// it has stopped for that change, and the vertex must make it at a CTI
    /// past `Some(ctis)` (0 with no followers); `None` while a follower
    /// has not said where it stopped.
    pub fn held(&self, copy: &str, index: usize) -> Option<u64> {
        let holds = self.holds.get(copy);
        self.followers(copy).iter().try_fold(0, |most, m| {
            let h = holds?.get(m).filter(|h| h.index == index as u64)?;
            Some(most.max(h.ctis))
        })
    }
}

impl Metadata {
    /// Follower `member` of copy `copy` of incarnation `id` of job `name`
    /// stopped for change `index` with `ctis` CTIs written.
    pub(crate) fn hold(
        &mut self,
        name: &str,
        id: u64,
        copy: &str,
        member: NodeId,
        held: Held,
    ) -> Reply {
        let Some(job) = self.jobs.get_mut(name).filter(|j| j.id == id) else {
            return Reply::Unchanged;
        };
        if !job.followers(copy).contains(&member)
            || job
                .timelines
                .get(copy)
                .is_some_and(|t| t.taken > held.index)
        {
            return Reply::Unchanged;
        }
        let holds = job.holds.entry(copy.to_string()).or_default();
        if holds.get(&member) == Some(&held) {
            return Reply::Unchanged;
        }
        holds.insert(member, held);
        Reply::Done
    }

    /// Forgets where members stopped that no longer follow the copy (they
    /// went, or run the vertex now).
    pub(crate) fn prune_holds(&mut self) {
        for job in self.jobs.values_mut() {
            let followers: std::collections::BTreeMap<String, BTreeSet<NodeId>> = job
                .holds
                .keys()
                .map(|copy| (copy.clone(), job.followers(copy)))
                .collect();
            for (copy, holds) in job.holds.iter_mut() {
                holds.retain(|m, _| followers.get(copy).is_some_and(|f| f.contains(m)));
            }
            job.holds.retain(|_, holds| !holds.is_empty());
        }
    }

    /// Follower `member` of copy `copy` of incarnation `id` of job `name`
    /// failed (it could not follow its vertex): it goes, as a replica or as
    /// a duplicate (a straggler's duplicate going leaves the straggler
    /// where it is).
    pub(crate) fn drop_follower(
        &mut self,
        name: &str,
        id: u64,
        copy: &str,
        member: NodeId,
    ) -> Reply {
        let Some(job) = self.jobs.get_mut(name).filter(|j| j.id == id) else {
            return Reply::Unchanged;
        };
        let mut dropped = false;
        if let Some(replicas) = job.replicas.get_mut(copy) {
            dropped = replicas.remove(&member);
            if replicas.is_empty() {
                job.replicas.remove(copy);
            }
        }
        if job.duplicates.get(copy) == Some(&member) {
            job.duplicates.remove(copy);
            job.stragglers.remove(copy);
            dropped = true;
        }
        if !dropped {
            return Reply::Unchanged;
        }
        if let Some(holds) = job.holds.get_mut(copy) {
            holds.remove(&member);
        }
        Reply::Done
    }
}

#[cfg(test)]
mod tests {
    use weir_core::patch::{Change, Patch};

    use super::*;
    use crate::jobs::CopyTimeline;
    use crate::metadata::Command;
    use crate::replicas::tests::cluster;

    fn hold(member: NodeId, index: u64, ctis: u64) -> Command {
        Command::Hold {
            name: "j".into(),
            id: 1,
            copy: "v0".into(),
            member,
            held: Held { index, ctis },
        }
    }

    /// A replicated vertex takes a change once each replica said where it
    /// stopped for it, past the furthest; a word from a member that runs
    /// no replica, or for a change already taken, is ignored; the stops
    /// go once the vertex records the change, and a replica lost meanwhile
    /// waits for nothing.
    #[test]
    fn a_change_waits_for_every_follower_to_stop_and_goes_past_the_furthest() {
        let mut m = cluster(2, &[0], 3);
        let job = &m.jobs["j"];
        let own = job.placement["v0"];
        let followers: Vec<NodeId> = job.followers("v0").into_iter().collect();
        assert_eq!(followers.len(), 2, "{job:?}");
        assert!(!followers.contains(&own));
        assert_eq!(job.held("v0", 0), None, "no follower stopped yet");
        assert_eq!(job.held("v1", 0), Some(0), "a vertex without followers");
        assert_eq!(m.apply(&hold(followers[0], 0, 7)), Reply::Done);
        assert_eq!(m.apply(&hold(followers[0], 0, 7)), Reply::Unchanged);
        assert_eq!(
            m.apply(&hold(own, 0, 99)),
            Reply::Unchanged,
            "not a follower"
        );
        assert_eq!(m.jobs["j"].held("v0", 0), None, "one follower left");
        assert_eq!(m.jobs["j"].held("v0", 1), None, "another change");
        assert_eq!(m.apply(&hold(followers[1], 0, 12)), Reply::Done);
        assert_eq!(m.jobs["j"].held("v0", 0), Some(12));
        // The vertex records the switch past 12 CTIs (a replica's copy of
        // the record, made at another moment, is the same switch).
        let switch = |at_ms| Patch {
            position: 400,
            ctis: 13,
            version: "ab".repeat(32),
            change: Change::Deploy,
            at_ms,
        };
        let record = |member, at_ms| Command::RecordTimeline {
            name: "j".into(),
            id: 1,
            copy: "v0".into(),
            member,
            timeline: CopyTimeline {
                patches: vec![switch(at_ms)],
                taken: 1,
            },
        };
        assert_eq!(m.apply(&record(own, 5)), Reply::Done);
        assert_eq!(m.apply(&record(followers[0], 6)), Reply::Unchanged);
        assert!(
            !m.jobs["j"].holds.contains_key("v0"),
            "the stops are done with"
        );
        assert_eq!(
            m.apply(&hold(followers[0], 0, 7)),
            Reply::Unchanged,
            "taken"
        );
        // Change 1: one follower stops, the other's member is lost.
        assert_eq!(m.apply(&hold(followers[0], 1, 20)), Reply::Done);
        assert_eq!(m.jobs["j"].held("v0", 1), None);
        m.apply(&Command::Lost { id: followers[1] });
        assert_eq!(m.jobs["j"].held("v0", 1), Some(20));
    }

    /// A follower that failed goes: a replica (then short, replenished from
    /// the backup), or a duplicate; the vertex itself stays.
    #[test]
    fn a_failed_follower_is_dropped_and_the_vertex_stays() {
        let mut m = cluster(2, &[0], 3);
        let own = m.jobs["j"].placement["v0"];
        let followers: Vec<NodeId> = m.jobs["j"].followers("v0").into_iter().collect();
        let drop = |member| Command::DropFollower {
            name: "j".into(),
            id: 1,
            copy: "v0".into(),
            member,
        };
        m.apply(&hold(followers[0], 0, 7));
        assert_eq!(m.apply(&drop(followers[0])), Reply::Done);
        assert_eq!(m.apply(&drop(followers[0])), Reply::Unchanged);
        assert_eq!(m.apply(&drop(own)), Reply::Unchanged, "the vertex stays");
        let job = &m.jobs["j"];
        assert_eq!(
            job.followers("v0").into_iter().collect::<Vec<_>>(),
            [followers[1]]
        );
        assert_eq!(job.placement["v0"], own);
        assert!(!job.holds.contains_key("v0"), "{job:?}");
        // A straggler's duplicate goes with its mark.
        let backup = m.jobs["j"].backups["v1"];
        let job = m.jobs.get_mut("j").expect("job");
        job.duplicates.insert("v1".into(), backup);
        job.stragglers.insert("v1".into());
        let dropped = Command::DropFollower {
            name: "j".into(),
            id: 1,
            copy: "v1".into(),
            member: backup,
        };
        assert_eq!(m.apply(&dropped), Reply::Done);
        assert!(m.jobs["j"].duplicates.is_empty() && m.jobs["j"].stragglers.is_empty());
    }

    /// A drain's duplicate follows its vertex like a replica; the member a
    /// vertex is placed on follows nothing.
    #[test]
    fn a_duplicate_follows_its_vertex() {
        let mut m = cluster(1, &[], 1);
        let own = m.jobs["j"].placement["v0"];
        let backup = m.jobs["j"].backups["v0"];
        m.jobs
            .get_mut("j")
            .expect("job")
            .duplicates
            .insert("v0".into(), backup);
        let job = &m.jobs["j"];
        assert_eq!(
            job.followers("v0").into_iter().collect::<Vec<_>>(),
            [backup]
        );
        assert_eq!(
            job.followed_on(backup).into_iter().collect::<Vec<_>>(),
            ["v0"]
        );
        assert!(job.followed_on(own).is_empty());
    }
}
