//! Evening out the load: vertices move, through duplicates, from busier
//! members to lighter ones, and backups are handed to a member that runs
//! too little.

use std::collections::{BTreeMap, BTreeSet};

use super::is_sink;
use crate::metadata::{Metadata, NodeId};

impl Metadata {
    /// Evens out the vertices over the members that take work (`up`):
    /// while one runs two or more more than another, a vertex of the busier
    /// one whose backup is the other and holds a snapshot gets a duplicate
    /// there, which takes the vertex's place once it has caught up (as in
    /// a drain). A move under way counts where it goes. Sinks stay where
    /// their file is; replicated vertices, and those with a duplicate
    /// already, stay too. Nothing moves while a vertex has a backup that
    /// is not ready and nothing else on a member that takes work to resume
    /// it (after a loss, or while a member drains, until the cluster is
    /// protected again): recovery and the drain come first, and a
    /// duplicate catching up would take the cores they need.
    pub(super) fn even_out(&mut self, up: &[NodeId]) {
        let unprotected = self.jobs.values().any(|job| {
            job.backups.keys().any(|v| {
                let fallback = [job.handing.get(v), job.left.get(v)];
                !job.ready.contains(v) && !fallback.into_iter().flatten().any(|m| up.contains(m))
            })
        });
        if unprotected {
            return;
        }
        let mut load: BTreeMap<NodeId, usize> = up.iter().map(|id| (*id, 0)).collect();
        for (id, n) in self.load() {
            if let Some(l) = load.get_mut(&id) {
                *l = n;
            }
        }
        let shift = |load: &mut BTreeMap<NodeId, usize>, from: NodeId, to: NodeId| {
            if let Some(l) = load.get_mut(&from) {
                *l = l.saturating_sub(1);
            }
            if let Some(l) = load.get_mut(&to) {
                *l += 1;
            }
        };
        for job in self.jobs.values() {
            for v in &job.moving {
                if let (Some(from), Some(to)) = (job.placement.get(v), job.duplicates.get(v)) {
                    shift(&mut load, *from, *to);
                }
            }
        }
        loop {
            let mut moved = false;
            for job in self.jobs.values_mut() {
                let pick = job.placement.iter().find_map(|(v, from)| {
                    let to = *job.backups.get(v)?;
                    let busier = load.get(from)? >= &(load.get(&to)? + 2);
                    let movable = !is_sink(v)
                        && job.ready.contains(v)
                        && !job.duplicates.contains_key(v)
                        && !job.replicas.contains_key(v);
                    (busier && movable).then(|| (v.clone(), *from, to))
                });
                if let Some((vertex, from, to)) = pick {
                    job.duplicates.insert(vertex.clone(), to);
                    job.moving.insert(vertex);
                    shift(&mut load, from, to);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        // A member that runs too little and backs up no vertex of a busier
        // one (a member back after a loss backs up nothing) becomes the
        // backup of one, once it holds a snapshot of every vertex it backs
        // up: the move follows when it stores this one's. Meanwhile the
        // previous backup goes on backing the vertex up (`handing`); one at
        // a time bounds that doubled work to one vertex per member.
        let mut handed: BTreeSet<NodeId> = BTreeSet::new();
        for job in self.jobs.values() {
            for (v, b) in &job.backups {
                if !job.ready.contains(v) {
                    handed.insert(*b);
                }
            }
        }
        let Some((&light, &low)) = load.iter().min_by_key(|(id, n)| (**n, **id)) else {
            return;
        };
        let Some((&heavy, &high)) = load
            .iter()
            .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
        else {
            return;
        };
        if handed.contains(&light) || high < low + 2 {
            return;
        }
        for job in self.jobs.values_mut() {
            let pick = job.placement.iter().find_map(|(v, from)| {
                let movable = !is_sink(v)
                    && *from == heavy
                    && job.backups.get(v).is_some_and(|b| *b != light)
                    && !job.duplicates.contains_key(v)
                    && !job.replicas.contains_key(v)
                    && job.ready.contains(v);
                movable.then(|| v.clone())
            });
            if let Some(vertex) = pick {
                // The ready backup goes on until the new one is ready.
                if let Some(previous) = job.backups.insert(vertex.clone(), light) {
                    job.handing.insert(vertex.clone(), previous);
                }
                job.ready.remove(&vertex);
                return;
            }
        }
    }
}
