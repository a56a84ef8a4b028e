//! Collection of the cluster's ingest streams. Every member keeps a copy of
//! each, and a job's source may resume on any member from the snapshot its
//! backup stored, so no member may collect a copy on its own. Each member
//! reports with its heartbeat how far its readers need each stream
//! ([`StreamNeeds`]): a source's input from its backed-up snapshot, a
//! backup's from the snapshot it stored. It reports the metadata epoch it
//! has acted on with it: every vertex placed on it then runs and holds its
//! inputs. The coordinator raises a stream's collection point
//! ([`ClusterStream::low`](crate::streams::ClusterStream::low)) to the lowest
//! need once every member that counts reports the current epoch; the
//! command carries that epoch and does nothing if the placement changed
//! in between (a job submitted since starts where the point was). Every
//! member then collects its copy below the point.

use std::collections::{BTreeMap, BTreeSet};

use weir_net::cluster::StreamNeeds;

use crate::metadata::{Command, Health, Metadata, NodeId, Reply};

impl Metadata {
    /// The members whose readers count: those that are up, and those lost
    /// that still run, back up or follow a vertex (it resumes from what
    /// they held). A replaced member's disk is gone.
    fn counted(&self) -> BTreeSet<NodeId> {
        let mut referenced: BTreeSet<NodeId> = BTreeSet::new();
        for job in self.jobs.values() {
            referenced.extend(job.placement.values());
            referenced.extend(job.backups.values());
            referenced.extend(job.handing.values());
            referenced.extend(job.duplicates.values());
            referenced.extend(job.replicas.values().flatten());
        }
        self.members
            .iter()
            .filter(|(id, m)| {
                m.health == Health::Up || (m.health == Health::Lost && referenced.contains(id))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The collections the members' latest reports allow: for each stream
    /// some member's readers read, the lowest seq any needs, where that is
    /// past the stream's point. None unless every member that counts
    /// reported the current epoch.
    pub fn collections(&self, reports: &BTreeMap<NodeId, StreamNeeds>) -> Vec<Command> {
        let counted = self.counted();
        let mut needs = Vec::with_capacity(counted.len());
        for id in counted {
            match reports.get(&id) {
                Some(r) if r.epoch == self.epoch => needs.push(&r.streams),
                _ => return Vec::new(),
            }
        }
        self.streams
            .iter()
            .filter_map(|(name, s)| {
                let low = needs.iter().filter_map(|n| n.get(name)).min()?;
                (*low > s.low).then(|| Command::Collect {
                    stream: name.clone(),
                    low: *low,
                    epoch: self.epoch,
                })
            })
            .collect()
    }

    /// Raises stream `name`'s collection point to `low`, if the placement
    /// is still the one of epoch `epoch`.
    pub(crate) fn collect(&mut self, name: &str, low: u64, epoch: u64) -> Reply {
        if epoch != self.epoch {
            return Reply::Unchanged;
        }
        match self.streams.get_mut(name) {
            Some(s) if low > s.low => {
                s.low = low;
                Reply::Done
            }
            _ => Reply::Unchanged,
        }
    }

    /// Each stream's collection point, where it is past the start: a job
    /// submitted now starts reading there.
    pub(crate) fn stream_lows(&self) -> BTreeMap<String, u64> {
        self.streams
            .iter()
            .filter(|(_, s)| s.low > 0)
            .map(|(name, s)| (name.clone(), s.low))
            .collect()
    }
}

/// Whether applying `command` (which answered `reply`) may have placed an
/// instance of a vertex where none ran, or made one start over: the
/// metadata's epoch moves on, and reports of an older one count no more.
pub(crate) fn places(command: &Command, reply: &Reply) -> bool {
    let changed = !matches!(reply, Reply::Unchanged | Reply::Refused(_));
    changed
        && matches!(
            command,
            Command::Join { .. }
                | Command::Lost { .. }
                | Command::Back { .. }
                | Command::Drain { .. }
                | Command::SubmitJob(_)
                | Command::BackupReady { .. }
                | Command::Switch { .. }
                | Command::Straggler { .. }
                | Command::Promote { .. }
                | Command::DropFollower { .. }
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicas::tests::cluster;
    use crate::streams::StreamSpec;
    use weir_core::schema::ColumnSpec;

    /// Members 2, 3 and 4 up, job `j` of two vertices, and stream `s`.
    fn with_stream() -> Metadata {
        let mut m = cluster(2, &[], 1);
        let spec = StreamSpec {
            name: "s".into(),
            columns: vec![ColumnSpec {
                name: "t".into(),
                ty: "int64".into(),
            }],
            time: "t".into(),
            end_time: None,
        };
        assert_eq!(m.apply(&Command::CreateStream(spec)), Reply::Done);
        m
    }

    /// Every member in `needs` reports them for the metadata's epoch.
    fn reports(m: &Metadata, needs: &[(NodeId, Option<u64>)]) -> BTreeMap<NodeId, StreamNeeds> {
        needs
            .iter()
            .map(|(id, need)| {
                let streams = need.iter().map(|n| ("s".to_string(), *n)).collect();
                let epoch = m.epoch;
                (*id, StreamNeeds { epoch, streams })
            })
            .collect()
    }

    fn apply_all(m: &mut Metadata, commands: Vec<Command>) {
        for c in commands {
            assert_eq!(m.apply(&c), Reply::Done, "{c:?}");
        }
    }

    #[test]
    fn a_stream_is_collected_below_what_every_member_needs_and_never_goes_back() {
        let mut m = with_stream();
        // A member that has not reported holds the collection back.
        let partial = reports(&m, &[(2, Some(50)), (3, Some(70))]);
        assert_eq!(m.collections(&partial), Vec::new());
        // All three: the lowest need; a member that reads nothing adds none.
        let all = reports(&m, &[(2, Some(50)), (3, Some(70)), (4, None)]);
        let collect = m.collections(&all);
        assert_eq!(
            collect,
            vec![Command::Collect {
                stream: "s".into(),
                low: 50,
                epoch: m.epoch
            }]
        );
        apply_all(&mut m, collect);
        assert_eq!(m.streams["s"].low, 50);
        // A lower need later never lowers the point.
        let lower = reports(&m, &[(2, Some(40)), (3, Some(70)), (4, None)]);
        assert_eq!(m.collections(&lower), Vec::new());
        assert_eq!(
            m.apply(&Command::Collect {
                stream: "s".into(),
                low: 40,
                epoch: m.epoch
            }),
            Reply::Unchanged
        );
        assert_eq!(m.streams["s"].low, 50);
        // No member reads it: it stays.
        let none = reports(&m, &[(2, None), (3, None), (4, None)]);
        assert_eq!(m.collections(&none), Vec::new());
    }

    #[test]
    fn reports_for_an_older_placement_collect_nothing_and_a_new_job_starts_at_the_point() {
        let mut m = with_stream();
        let all = reports(&m, &[(2, Some(50)), (3, Some(50)), (4, Some(60))]);
        let collect = m.collections(&all);
        apply_all(&mut m, collect);
        assert_eq!(m.streams["s"].low, 50);
        // Reports made, then a job submitted before they are written: the
        // new job's sources were placed after what they say.
        let stale = reports(&m, &[(2, Some(90)), (3, Some(90)), (4, Some(90))]);
        let late = m.collections(&stale);
        let mut spec = m.jobs["j"].spec.clone();
        spec.name = "k".into();
        let before = m.epoch;
        assert!(matches!(
            m.apply(&Command::SubmitJob(spec)),
            Reply::Submitted { .. }
        ));
        assert_eq!(m.epoch, before + 1);
        assert_eq!(m.jobs["k"].starts, BTreeMap::from([("s".to_string(), 50)]));
        for c in late {
            assert_eq!(m.apply(&c), Reply::Unchanged, "{c:?}");
        }
        assert_eq!(m.streams["s"].low, 50);
        assert_eq!(m.collections(&stale), Vec::new());
        // What changes no placement leaves the epoch as it is.
        let epoch = m.epoch;
        m.apply(&Command::PatchJob {
            name: "k".into(),
            patch: crate::jobs::PatchRequest {
                stage: "v0".into(),
                change: crate::jobs::StageChange::Rollback { to: None },
                origin: 2,
                nonce: 1,
            },
        });
        m.apply(&Command::Lost { id: 9 });
        assert_eq!(m.epoch, epoch);
    }

    #[test]
    fn a_lost_member_counts_while_a_vertex_is_still_placed_on_it() {
        let mut m = with_stream();
        let (v0, v1) = (m.jobs["j"].placement["v0"], m.jobs["j"].placement["v1"]);
        assert_ne!(v0, v1);
        // A vertex a backup once stored a snapshot of, whose backup holds
        // none now, waits for its member.
        m.jobs
            .get_mut("j")
            .expect("job")
            .snapshotted
            .insert("v0".into());
        m.apply(&Command::Lost { id: v0 });
        assert_eq!(m.jobs["j"].placement["v0"], v0, "{:?}", m.jobs["j"]);
        let up: Vec<(NodeId, Option<u64>)> = m.up().map(|(id, _)| (id, Some(80))).collect();
        assert_eq!(m.collections(&reports(&m, &up)), Vec::new());
        // Once it runs, backs up and follows nothing, it counts no more.
        m.jobs.remove("j");
        let commands = m.collections(&reports(&m, &up));
        assert_eq!(commands.len(), 1, "{commands:?}");
    }
}
