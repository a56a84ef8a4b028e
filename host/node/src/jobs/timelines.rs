//! The patch timelines of the copies of a job the cluster runs, recorded
//! with the coordinator. A copy that switches (a change taken at a CTI, or
//! a rollback on a trap) has the member record its timeline with the
//! coordinator before it writes anything past the switch; a copy that
//! starts on a member (moved there, or its member restarted) takes the
//! recorded timeline when it is longer than the one it resumes with. So a
//! copy never makes a switch again at another position once a reader may
//! have seen an entry past it: on one node the timeline is committed before
//! such entries; across members it is held by the coordinator first.

use std::collections::BTreeMap;

use weir_cluster::jobs::CopyTimeline;
use weir_core::patch::extends;

use super::changes::taken_key;
use super::*;

/// Records a copy's timeline with the cluster's coordinator.
pub trait Keeper: Send + Sync {
    /// Records `timeline` as the one of copy `copy` of incarnation `id` of
    /// job `job`, which runs here; returns once the coordinator holds it
    /// (`true`), or when `stop` is set or the copy moved first (`false`).
    fn record(
        &self,
        job: &str,
        id: u64,
        copy: &str,
        timeline: CopyTimeline,
        stop: &AtomicBool,
    ) -> Result<bool>;
}

/// What a vertex is to the cluster, as [`Jobs::placed_copy`] finds it.
enum Placing {
    /// Not a vertex of a placed job: a job of this node alone.
    NotPlaced,
    /// A copy of a placed job that runs here: the job's record, the copy.
    Here(Box<JobRecord>, String),
    /// A copy of a placed job that no longer runs here.
    Left,
}

impl Jobs {
    /// Has the copies of placed jobs that switch record their timelines
    /// with `keeper`.
    pub fn set_keeper(&self, keeper: Arc<dyn Keeper>) {
        let _ = self.inner.keeper.set(keeper);
    }

    /// Whether the vertex with snapshot key `key` is a copy of a placed
    /// job, and whether it still runs here.
    fn placed_copy(&self, key: &str) -> Placing {
        let running = lock(&self.inner.running);
        let placed = running.values().find_map(|r| {
            let only = r.record.only.as_ref()?;
            let prefix = format!("{SNAPSHOTS}{}/", r.record.prefix());
            let vertex = key.strip_prefix(&prefix)?;
            Some((r, only.contains(vertex), vertex))
        });
        match placed {
            None => Placing::NotPlaced,
            Some((r, true, vertex)) => {
                Placing::Here(Box::new(r.record.clone()), vertex.to_string())
            }
            Some((_, false, _)) => Placing::Left,
        }
    }

    /// Before a vertex with snapshot key `key` writes what follows a switch
    /// (its timeline is now `timeline`; `settled`: the queued requests it
    /// took or refused with it): records the timeline with the coordinator
    /// when the vertex is a copy of a placed job. `false`: `stop` was set
    /// (or the copy moved) before the coordinator held it.
    pub(super) fn keep_timeline(
        &self,
        key: &str,
        timeline: &Timeline,
        settled: &[(u64, Option<String>)],
        stop: &AtomicBool,
    ) -> Result<bool> {
        let Some(keeper) = self.inner.keeper.get() else {
            return Ok(true);
        };
        let (record, copy) = match self.placed_copy(key) {
            Placing::Here(record, copy) => (record, copy),
            Placing::NotPlaced => return Ok(true),
            // Moved away as it switched (its thread is being stopped): an
            // unrecorded switch must not reach a reader here, which would
            // go on from the instance that took its place as if it had
            // made the switch there too.
            Placing::Left => {
                tracing::info!(key, "the copy moved away before its switch was recorded");
                return Ok(false);
            }
        };
        let streams = &self.inner.streams;
        // Under the queue's lock no change is queued meanwhile; once the
        // commits queued before are done, the count stored is that of the
        // changes in the timeline, refused, passed over, or still waiting.
        let taken = self.with_queue(&queue_key(key), |queue| {
            streams.commit_meta(Vec::new())?.wait()?;
            let marked: u64 = stored(streams, &taken_key(&record, &copy))?.unwrap_or(0);
            let waiting = queue
                .waiting
                .iter()
                .filter(|r| !settled.iter().any(|(id, _)| *id == r.id))
                .count() as u64;
            Ok(marked.saturating_sub(waiting))
        })?;
        let kept = CopyTimeline {
            patches: timeline.patches.clone(),
            taken,
        };
        keeper.record(&record.name, record.id, &copy, kept, stop)
    }

    /// Records with the coordinator that the vertex with snapshot key
    /// `key`, when it is a copy of a placed job, went through changes
    /// without a switch (refused, `settled`, or passed over): its timeline
    /// as stored, with the new count of changes taken. `false`: `stop` was
    /// set (or the copy moved) before the coordinator held it.
    pub(super) fn keep_taken(
        &self,
        key: &str,
        settled: &[(u64, Option<String>)],
        stop: &AtomicBool,
    ) -> Result<bool> {
        let timeline: Timeline =
            stored(&self.inner.streams, &timeline_key(key))?.unwrap_or_default();
        self.keep_timeline(key, &timeline, settled, stop)
    }

    /// Before the copies of placed job `record` that run here start: each
    /// whose timeline the coordinator holds longer (`kept`, by copy) than
    /// it is stored here takes it, with the count of the job's changes it
    /// covers; what waited in its queue is made again from the job's
    /// changes. A stored timeline that differs from the recorded one is
    /// refused: the copy would write what its readers did not see.
    pub(super) fn adopt_timelines(
        &self,
        record: &JobRecord,
        kept: &BTreeMap<String, CopyTimeline>,
    ) -> Result<()> {
        let Some(only) = &record.only else {
            return Ok(());
        };
        let mut plan = None;
        for (copy, recorded) in kept.iter().filter(|(c, _)| only.contains(*c)) {
            let key = stage_key(record, copy);
            let streams = &self.inner.streams;
            let local: Option<Timeline> = stored(streams, &timeline_key(&key))?;
            let (original, have) = match local {
                Some(t) => (Some(t.original), t.patches),
                None => (None, Vec::new()),
            };
            if !extends(&recorded.patches, &have) {
                if extends(&have, &recorded.patches) {
                    continue;
                }
                bail!(
                    Patch,
                    "copy `{copy}` of job `{}`: its patch timeline here ({} changes) differs from the one the cluster recorded ({} changes)",
                    record.name,
                    have.len(),
                    recorded.patches.len()
                );
            }
            if recorded.patches.len() == have.len() {
                continue;
            }
            let original = match original {
                Some(original) => original,
                None => {
                    if plan.is_none() {
                        plan = Some(self.record_plan(record)?);
                    }
                    let plan = plan.as_ref().context("the job's plan")?;
                    let stage = named(&plan.stages, |s| &s.name, copy, &record.name, "stage")?;
                    let Operator::Udf(udf) = &stage.operator else {
                        bail!(Patch, "copy `{copy}` of job `{}` runs no UDF", record.name);
                    };
                    record
                        .modules
                        .get(&udf.component)
                        .cloned()
                        .with_context(|| format!("job `{}` recorded no module", record.name))?
                }
            };
            let timeline = Timeline {
                original,
                patches: recorded.patches.clone(),
            };
            tracing::info!(
                job = %record.name,
                copy,
                from = have.len(),
                to = timeline.patches.len(),
                "the copy resumes with the timeline the cluster recorded"
            );
            let queued = queue_key(&key);
            self.with_queue(&queued, |queue| {
                // Re-read: the cache may predate a backup stored since.
                *queue = stored(streams, &queued)?.unwrap_or_default();
                queue.waiting.clear();
                let ops = vec![
                    put(&timeline_key(&key), postcard::to_allocvec(&timeline)?),
                    put(&queued, postcard::to_allocvec(queue)?),
                    put(
                        &taken_key(record, copy),
                        postcard::to_allocvec(&recorded.taken)?,
                    ),
                ];
                streams.commit_meta(ops)?.wait()?;
                Ok(())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::store::RedbStorage;

    /// Counts the timelines recorded with it.
    #[derive(Default)]
    struct Counting(Mutex<usize>);

    impl Keeper for Counting {
        fn record(
            &self,
            _: &str,
            _: u64,
            _: &str,
            _: CopyTimeline,
            _: &AtomicBool,
        ) -> Result<bool> {
            *lock(&self.0) += 1;
            Ok(true)
        }
    }

    fn record(name: &str, only: Option<&[&str]>) -> JobRecord {
        JobRecord {
            name: name.into(),
            id: 1,
            path: PathBuf::from("job.wsql"),
            text: String::new(),
            modules: BTreeMap::new(),
            parallelism: 1,
            only: only.map(|o| o.iter().map(|v| v.to_string()).collect::<BTreeSet<_>>()),
            backs: None,
            replicas: None,
            follows: None,
            shared: None,
            starts: BTreeMap::new(),
        }
    }

    /// A switch is recorded with the coordinator before anything past it
    /// is written; a copy that moved away as it switched (its thread is
    /// being stopped) records nothing and writes nothing past the switch;
    /// a job of this node alone records nothing and writes on.
    #[test]
    fn a_copy_that_moved_away_as_it_switched_writes_nothing_past_the_switch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = RedbStorage::open(&dir.path().join("node.redb")).expect("redb");
        let streams = Streams::open(Arc::new(storage)).expect("streams");
        let runtime = Runtime::new(None).expect("runtime");
        let jobs = Jobs::new(streams, runtime, FileAccess::default());
        let keeper = Arc::new(Counting::default());
        jobs.set_keeper(keeper.clone());
        for r in [record("placed", Some(&["a"])), record("alone", None)] {
            let running = Running {
                record: r.clone(),
                stop: Arc::default(),
                threads: Vec::new(),
                vertices: Vec::new(),
            };
            lock(&jobs.inner.running).insert(r.name.clone(), running);
        }
        let keep = |key: &str| {
            jobs.keep_timeline(key, &Timeline::default(), &[], &AtomicBool::new(false))
                .expect("kept")
        };
        assert!(
            keep(&format!("{SNAPSHOTS}placed@1/a")),
            "the copy runs here"
        );
        assert_eq!(*lock(&keeper.0), 1, "its switch is recorded");
        assert!(
            !keep(&format!("{SNAPSHOTS}placed@1/b")),
            "a copy that left writes nothing past its switch"
        );
        assert!(
            keep(&format!("{SNAPSHOTS}alone@1/a")),
            "a job of this node alone"
        );
        assert_eq!(*lock(&keeper.0), 1, "neither is recorded");
    }
}
