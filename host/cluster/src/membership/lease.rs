//! Heartbeats, and how long this member may act as one without hearing
//! otherwise.
//!
//! The coordinator declares a member lost once it has not heard from it
//! for the heartbeat timeout, counted from when a heartbeat arrived, which
//! is after it was sent. So a member whose heartbeat sent at `t` was
//! answered cannot be declared lost before `t` plus the timeout: until
//! then (less a tenth, for the threads that act on it to notice) it holds a
//! lease. A member whose lease ran out may have been declared lost, its
//! vertices moved and resumed elsewhere from older snapshots: what it
//! writes meanwhile would be a run the cluster left (rows past a patch
//! the cluster made elsewhere, a sink's file cut back under it). The node
//! stops writing while the lease is out, and a lease won back counts only
//! once the member has applied the metadata the coordinator had applied
//! when it answered, and held it for half a timeout: a loss written just
//! then is applied, and acted on, first.
//!
//! A member that is the only voter holds it for as long as it runs. The
//! coordinator's own lease is Raft's otherwise: each heartbeat interval it has a
//! majority of the voters confirm that it leads, and holds from when it
//! asked for nine tenths of half the timeout (the shortest election
//! timeout: no other member can have been elected meanwhile).

use std::time::Duration;

use tokio::time::Instant;
use weir_net::cluster::{ClusterRequest, ClusterResponse};

use super::{Cluster, lock};
use crate::NodeId;
use crate::metadata::Health;

/// A member's lease, from the coordinator's answers to its heartbeats.
#[derive(Debug, Default)]
pub(super) struct Lease {
    /// Until when it holds (the latest answered heartbeat's send time plus
    /// nine tenths of the timeout).
    until: Option<Instant>,
    /// Won back after it ran out: since when, and the metadata entry the
    /// coordinator had applied then, which this member applies first.
    regained: Option<(Instant, Option<u64>)>,
    /// The Raft term it was last confirmed in as the coordinator.
    term: Option<u64>,
}

impl Cluster {
    /// Sends the coordinator a heartbeat every `tick`.
    pub(super) async fn heartbeats(self, tick: Duration) {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_peer = 0usize;
        loop {
            interval.tick().await;
            let me = self.inner.id;
            let target = match self.leader() {
                Some(leader) if leader == me => {
                    // The coordinator's lease: a majority confirms it leads.
                    let sent = Instant::now();
                    let term = self.inner.raft.metrics().borrow().current_term;
                    let confirmed = tokio::time::timeout(
                        self.inner.settings.lost_after,
                        self.inner.raft.get_read_log_id(),
                    )
                    .await;
                    if let Ok(Ok((read, _))) = confirmed {
                        self.answered(sent, read.map(|l| l.index), 0.45, Some(term));
                    }
                    continue;
                }
                Some(leader) => self.addr_of(leader),
                // No leader known (a restart at a new address): any member
                // passes the heartbeat on to the coordinator.
                None => {
                    let mut others: Vec<String> = self
                        .applied()
                        .metadata
                        .members
                        .iter()
                        .filter(|(id, m)| **id != me && m.health != Health::Replaced)
                        .map(|(_, m)| m.addr.clone())
                        .collect();
                    others.extend(self.inner.settings.join.clone());
                    next_peer = next_peer.wrapping_add(1);
                    others.get(next_peer % others.len().max(1)).cloned()
                }
            };
            let Some(target) = target else { continue };
            let beat = ClusterRequest::Heartbeat {
                id: me,
                addr: self.inner.addr.clone(),
                vertices: (self.inner.report.vertices)(),
                needs: (self.inner.report.needs)(),
            };
            let sent = Instant::now();
            match self
                .inner
                .peers
                .call(&target, beat, self.inner.settings.lost_after)
                .await
            {
                Ok(ClusterResponse::Alive { applied }) => self.answered(sent, applied, 0.9, None),
                Ok(other) => tracing::debug!("heartbeat to {target}: answered {other:?}"),
                Err(e) => tracing::debug!("heartbeat to {target}: {e}"),
            }
        }
    }

    /// How many times member `id` was declared lost, as this member last
    /// applied the metadata.
    pub fn losses_of(&self, id: NodeId) -> u64 {
        let applied = self.applied_now();
        applied.metadata.members.get(&id).map_or(0, |m| m.losses)
    }

    /// The coordinator answered the heartbeat sent at `sent` (or, on the
    /// coordinator, a majority confirmed that it leads), having applied
    /// the metadata up to entry `applied`; the lease holds for `share` of
    /// the timeout from `sent`.
    ///
    /// `term`: the coordinator's Raft term when it asked. A coordinator
    /// confirmed again in the term it was confirmed in last led all along
    /// (a member elected meanwhile would have a later term, and the
    /// majority that confirmed it would know that term), so its lease
    /// runs on without the wait of a lease won back.
    pub(super) fn answered(
        &self,
        sent: Instant,
        applied: Option<u64>,
        share: f64,
        term: Option<u64>,
    ) {
        let until = sent + self.inner.settings.lost_after.mul_f64(share);
        let mut lease = lock(&self.inner.lease);
        let led_all_along = term.is_some() && lease.term == term;
        if lease.until.is_none_or(|u| u <= sent) && !led_all_along {
            lease.regained = Some((Instant::now(), applied));
        }
        lease.term = term;
        lease.until = Some(lease.until.map_or(until, |u| u.max(until)));
    }

    /// Until when this member holds its lease, if it holds it now (no
    /// member can have been told it was lost, so what it writes is the
    /// cluster's run): a writer that checks this instant at each write stops on time even
    /// when whatever looks at the lease runs late. The only voter, which
    /// no other member can declare lost, holds it for a timeout from now.
    pub fn lease_until(&self) -> Option<Instant> {
        let timeout = self.inner.settings.lost_after;
        let applied = {
            let metrics = self.inner.raft.metrics();
            let metrics = metrics.borrow();
            // The only voter leads for as long as it runs: no other member
            // can be elected and declare it lost.
            let mut voters = metrics.membership_config.membership().voter_ids();
            let alone = voters.next() == Some(self.inner.id) && voters.next().is_none();
            if alone && metrics.state == openraft::ServerState::Leader {
                return Some(Instant::now() + timeout);
            }
            metrics.last_applied.map(|l| l.index)
        };
        let mut lease = lock(&self.inner.lease);
        let now = Instant::now();
        let until = lease.until.filter(|u| now < *u)?;
        match lease.regained {
            Some((since, needed)) => {
                let settled = now.duration_since(since) >= timeout / 2 && applied >= needed;
                if settled {
                    lease.regained = None;
                }
                settled.then_some(until)
            }
            None => Some(until),
        }
    }
}
