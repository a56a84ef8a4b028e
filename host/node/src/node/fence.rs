//! A member declared lost while it still ran (a stall, a partition) finds
//! out only once it hears the coordinator again. Until then its instances
//! of the vertices that moved away wrote on into its streams, without the
//! changes the cluster made to them meanwhile, and the tail it wrote just
//! before it went silent may be one no other member copied: past where
//! the vertex resumed elsewhere, its copy of each such stream may differ
//! from what the vertex writes now. So before it starts or wires anything
//! again, a member that sees a loss it has not acted on yet stops its
//! fetches and its instances of the vertices placed elsewhere now, empties
//! its copies of those vertices' streams and forgets the snapshots of them
//! it kept (they stood on those copies), its sinks' too (a sink's position
//! here may stand past where it resumed elsewhere and cut its file back).
//! The copies fill again, from the
//! members running those vertices, from where what reads them here
//! begins. The count of losses it acted on is kept in its database, so a
//! restart acts too, and a backup's word that it stored a snapshot counts
//! only if it had acted on every loss of its member by then.
//!
//! A vertex still placed here (its backup held no snapshot to move to)
//! runs on, and keeps the copies it reads: what it read of them is part of
//! its state.

use std::collections::BTreeSet;

use weir_cluster::metadata::{Metadata, NodeId};

use super::placed::record_of;
use super::replicate::lock;
use super::*;
use crate::store::Op;

/// Metadata key: how many of this member's losses it has acted on.
const ACTED: &str = "cluster/losses-acted";

impl Node {
    /// How many of this member's losses it has acted on.
    pub(super) fn losses_acted(&self) -> u64 {
        self.streams
            .meta(ACTED)
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// How many of its losses member `me` has acted on, if that is every
    /// loss `metadata` records; `None` until it has acted on the latest
    /// ([`Node::fence`]): nothing of its jobs may start, store a backup or
    /// fill a copy meanwhile.
    pub(super) fn acted_on_losses(&self, metadata: &Metadata, me: NodeId) -> Option<u64> {
        let acted = self.losses_acted();
        let losses = metadata.members.get(&me).map_or(0, |m| m.losses);
        (losses <= acted).then_some(acted)
    }

    /// Acts on the losses of member `me` that `metadata` records and it
    /// has not acted on yet (see the module's documentation).
    pub(super) async fn fence(&self, metadata: &Metadata, me: NodeId) -> Result<()> {
        if self.acted_on_losses(metadata, me).is_some() {
            return Ok(());
        }
        let tasks: Vec<_> = lock(&self.fetchers)
            .drain()
            .flat_map(|(_, w)| w.tasks())
            .collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        let (node, metadata) = (self.clone(), metadata.clone());
        tokio::task::spawn_blocking(move || node.empty_moved_copies(&metadata, me)).await?
    }

    fn empty_moved_copies(&self, metadata: &Metadata, me: NodeId) -> Result<()> {
        // A store under way (its task was ended, not its commit) lands
        // first, or finds that nothing is backed up here any more.
        let _stores = self.jobs.hold_stores();
        // Every instance of a vertex placed elsewhere now stops (a replica
        // or duplicate here went with the loss too); those placed here run
        // on, as do their copies.
        let ran = self.jobs.placed();
        for name in ran.keys() {
            match metadata.jobs.get(name) {
                Some(job) => self.jobs.stop_all_but(name, &job.on(me).collect()),
                None => self.jobs.stop_placed(name),
            }
        }
        let mut emptied = Vec::new();
        for job in metadata.jobs.values() {
            let record = record_of(job, me);
            // A job that never ran here has no streams here (nor, maybe,
            // its modules to plan it with).
            let prefix = format!("{}.", record.prefix());
            if !self
                .streams
                .list()
                .iter()
                .any(|i| i.name.starts_with(&prefix))
            {
                continue;
            }
            let vertices = self.jobs.vertices_of(&record)?;
            let own: BTreeSet<&str> = job.on(me).collect();
            let read: BTreeSet<&str> = vertices
                .iter()
                .filter(|v| own.contains(v.name.as_str()))
                .flat_map(|v| v.reads.iter().map(String::as_str))
                .collect();
            for v in vertices.iter().filter(|v| own.contains(v.name.as_str())) {
                // Inputs whose writers ran here until the loss.
                let moved_away = |r: &&str| {
                    !own.contains(r)
                        && ran
                            .get(&job.spec.name)
                            .is_some_and(|(_, o, _)| o.contains(*r))
                };
                let kept: Vec<&str> = v
                    .reads
                    .iter()
                    .map(String::as_str)
                    .filter(moved_away)
                    .collect();
                if !kept.is_empty() {
                    tracing::warn!(
                        job = %job.spec.name,
                        vertex = %v.name,
                        "this vertex stays on this member after its loss (its backup held no snapshot yet) and goes on with what it read of {}, whose writers ran here and moved away: a change made to them while this member was lost reaches it only past what it read",
                        kept.join(", ")
                    );
                }
            }
            // A sink writes no stream: what it resumes from here (its own
            // position from when it ran here, past where it resumed
            // elsewhere and cut its file back) is of a run the cluster left.
            let moved = vertices.iter().filter(|v| {
                !own.contains(v.name.as_str()) && (!v.writes || !read.contains(v.name.as_str()))
            });
            for v in moved {
                // What it resumes from here (its own snapshot from when it
                // ran here) stands on what is emptied now.
                self.jobs.forget_snapshot(&record, &v.name)?;
                let output = record.stream(&v.name);
                for stream in [format!("{output}.dead"), output] {
                    let Ok(info) = self.streams.info(&stream) else {
                        continue;
                    };
                    if self.streams.positions(info.id).is_some_and(|p| p.0 > 0) {
                        self.streams.clear(info.id)?;
                        self.jobs.forget_readers(info.id);
                        emptied.push(stream);
                    }
                }
            }
        }
        let losses = metadata.members.get(&me).map_or(0, |m| m.losses);
        self.streams
            .commit_meta(vec![Op::PutMeta {
                key: ACTED.into(),
                value: losses.to_string().into_bytes(),
            }])?
            .wait()?;
        tracing::warn!(
            losses,
            "this member was declared lost while it ran: its vertices stopped, and its copies of the streams of those that moved away were emptied (they fill again from where the vertices run now): {}",
            match emptied.is_empty() {
                true => "none".to_string(),
                false => emptied.join(", "),
            }
        );
        Ok(())
    }
}
