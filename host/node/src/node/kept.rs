//! Which job streams this member keeps from their first entry. A vertex
//! whose snapshot no backup has yet had counted by the cluster starts over
//! from its inputs' first entries wherever it runs next (its member lost,
//! its place taken): until the cluster counts one of its snapshots, no
//! member collects any stream it reads, whatever the readers here hold.
//! Once it counts one, the vertex resumes from a snapshot, and the holds
//! of its readers and backups say how far each stream is needed.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use weir_cluster::metadata::Metadata;

use super::placed::record_of;
use super::*;
use crate::jobs::PlanVertex;

/// The vertices of each placed job incarnation here, by its prefix
/// (`NAME@ID`): read from its plan once.
#[derive(Debug, Default)]
pub(super) struct Plans(Mutex<BTreeMap<String, Arc<Vec<PlanVertex>>>>);

impl Node {
    /// Tells the jobs which streams of the placed jobs here no member may
    /// collect yet: those read by a vertex the cluster counts no snapshot
    /// of (see the module's documentation).
    pub(super) fn keep_unsnapshotted(&self, metadata: &Metadata) {
        let Some(me) = self.cluster.get().map(|c| c.id()) else {
            return;
        };
        let placed = self.jobs.placed();
        let mut plans = self.plans.0.lock().unwrap_or_else(|e| e.into_inner());
        plans.retain(|prefix, _| {
            placed
                .iter()
                .any(|(name, (id, ..))| *prefix == format!("{name}@{id}"))
        });
        let mut kept = HashSet::new();
        for (name, (id, ..)) in &placed {
            let Some(job) = metadata.jobs.get(name).filter(|j| j.id == *id) else {
                continue;
            };
            let record = record_of(job, me);
            let vertices = match plans.get(&record.prefix()) {
                Some(v) => v.clone(),
                None => match self.jobs.vertices_of(&record) {
                    Ok(v) => {
                        let v = Arc::new(v);
                        plans.insert(record.prefix(), v.clone());
                        v
                    }
                    Err(e) => {
                        tracing::debug!(job = %name, "its plan: {e:#}");
                        continue;
                    }
                },
            };
            // A replicated vertex resumes from its replica, not over.
            let starts_over =
                |v: &&PlanVertex| v.replicate < 2 && !job.snapshotted.contains(&v.name);
            for v in vertices.iter().filter(starts_over) {
                for read in &v.reads {
                    let stream = record.stream(read);
                    for full in [format!("{stream}.dead"), stream] {
                        if let Ok(info) = self.streams.info(&full) {
                            kept.insert(info.id);
                        }
                    }
                }
            }
        }
        self.jobs.keep_from_start(kept);
    }
}
