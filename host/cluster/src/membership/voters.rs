//! The Raft membership the coordinator keeps in step with the members.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{BasicNode, ChangeMembers};

use super::{Cluster, full_voters};
use crate::NodeId;
use crate::log::Applied;
use crate::metadata::Health;

impl Cluster {
    /// One step that brings the Raft membership closer to the members: add
    /// members as learners, follow a member to a new address, give the votes
    /// to the members [`crate::metadata::Metadata::voters`] names, and drop
    /// replaced members.
    pub(super) fn voters(
        &self,
        metrics: &openraft::RaftMetrics<NodeId, BasicNode>,
        applied: &Applied,
    ) -> Option<ChangeMembers<NodeId, BasicNode>> {
        let membership = metrics.membership_config.membership();
        let voters = full_voters(membership);
        let nodes: BTreeMap<NodeId, String> = membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let last = metrics.last_log_index.unwrap_or(0);
        let matched = |id: NodeId| {
            metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index)
        };
        for (id, m) in &applied.metadata.members {
            let node = BasicNode {
                addr: m.addr.clone(),
            };
            match m.health {
                // Lost members stay learners: the log keeps flowing to them,
                // so one that comes back is soon up to date.
                Health::Up | Health::Lost if !nodes.contains_key(id) => {
                    return Some(ChangeMembers::AddNodes(BTreeMap::from([(*id, node)])));
                }
                // The same member (its id is its disk) at a new address.
                Health::Up if nodes.get(id) != Some(&m.addr) => {
                    return Some(ChangeMembers::SetNodes(BTreeMap::from([(*id, node)])));
                }
                _ => {}
            }
        }
        let caught_up =
            |id: NodeId| id == self.inner.id || matched(id).is_some_and(|i| i + 16 >= last);
        let desired = applied.metadata.voters(&voters, caught_up);
        if desired != voters && !desired.is_empty() {
            return Some(ChangeMembers::ReplaceAllVoters(desired));
        }
        let replaced: BTreeSet<NodeId> = applied
            .metadata
            .members
            .iter()
            .filter(|(id, m)| {
                m.health == Health::Replaced && nodes.contains_key(id) && !voters.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        if !replaced.is_empty() {
            return Some(ChangeMembers::RemoveNodes(replaced));
        }
        None
    }
}
