//! The tasks that keep a placed job's part here going: the fetches that
//! fill its copies of streams written on other members and the rounds of
//! its backups. When the job's placement changes, only the fetches that
//! changed for this member start again: a fetch still wanted, from the
//! same member, pulls on over its connection. Starting every fetch again
//! for each change would cut every copy's pull on every member several
//! times over a drain or a loss, each time a handshake and a pull from
//! scratch. The backups' rounds start again with every change, from the
//! snapshots stored here: kept through the changes, a member's copy of a
//! stream it had written, then backed up, stayed held from its start
//! (`cluster_drain::a_straggler_gets_a_duplicate…` under load).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use tokio::task::JoinHandle;
use weir_cluster::metadata::{Metadata, NodeId};
use weir_cluster::{Cluster, jobs::ClusterJob};

use super::exchange::Fetch;
use super::placed::record_of;
use super::*;

/// A job's placement, backups, replicas and previous backups (while the
/// new ones are not ready), as its tasks here were last wired for.
pub(super) type Wiring = (
    BTreeMap<String, NodeId>,
    BTreeMap<String, NodeId>,
    BTreeMap<String, BTreeSet<NodeId>>,
    BTreeMap<String, NodeId>,
);

/// A fetch and the member it pulls from ([`Fetch::source`]).
pub(super) type Sourced = (Fetch, Option<NodeId>);

/// A placed job's tasks here.
#[derive(Debug)]
pub(super) struct Wired {
    /// The job's incarnation.
    pub(super) id: u64,
    /// The fetches filling its copies, each with the member it pulls from.
    fetches: Running<JoinHandle<()>>,
    /// Its backups' rounds.
    backup: Option<JoinHandle<()>>,
    /// The wiring they were started or kept for.
    pub(super) wiring: Wiring,
}

impl Wired {
    /// Every task, to end.
    pub(super) fn tasks(self) -> impl Iterator<Item = JoinHandle<()>> {
        self.fetches.into_iter().map(|(_, t)| t).chain(self.backup)
    }
}

/// The tasks of each placed job here, by name.
pub(super) type Fetchers = Mutex<HashMap<String, Wired>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `list`'s fetches, each with the member it pulls from as `job` is placed.
pub(super) fn sourced(job: &ClusterJob, list: Vec<Fetch>) -> Vec<Sourced> {
    list.into_iter()
        .map(|f| {
            let source = f.source(job);
            (f, source)
        })
        .collect()
}

/// Fetches, each with what runs it.
type Running<T> = Vec<(Sourced, T)>;

/// Matches the fetches `running` (each with its task, `live` while it
/// runs) against those `wanted`: returns the running ones still wanted,
/// the wanted ones to start, and the running ones to end (no longer
/// wanted, or ended by themselves).
fn matched<T>(
    running: Running<T>,
    wanted: Vec<Sourced>,
    live: impl Fn(&T) -> bool,
) -> (Running<T>, Vec<Sourced>, Running<T>) {
    let (mut ended, mut kept, mut start) = (Vec::new(), Vec::new(), Vec::new());
    let mut running: Vec<Option<(Sourced, T)>> = running
        .into_iter()
        .filter_map(|r| match live(&r.1) {
            true => Some(Some(r)),
            false => {
                ended.push(r);
                None
            }
        })
        .collect();
    for w in wanted {
        let same = running
            .iter_mut()
            .find(|r| r.as_ref().is_some_and(|(s, _)| *s == w));
        match same.and_then(Option::take) {
            Some(r) => kept.push(r),
            None => start.push(w),
        }
    }
    ended.extend(running.into_iter().flatten());
    (kept, start, ended)
}

impl Node {
    /// Runs the fetches `list` of job `name` (incarnation `id`) and its
    /// backups' rounds, wired for `wiring`: a fetch already running for
    /// the same copy, reader and member goes on; the other fetches of the
    /// job here end, and its backups' rounds start again.
    pub(super) fn keep_tasks(
        &self,
        cluster: &Cluster,
        certs: &CertDir,
        (name, id, list, wiring): (String, u64, Vec<Sourced>, Wiring),
    ) {
        let mut fetchers = lock(&self.fetchers);
        let (running, backup) = match fetchers.remove(&name) {
            Some(w) if w.id == id => (w.fetches, w.backup),
            Some(w) => {
                w.tasks().for_each(|t| t.abort());
                (Vec::new(), None)
            }
            None => (Vec::new(), None),
        };
        let (mut fetches, start, ended) = matched(running, list, |t| !t.is_finished());
        ended.iter().for_each(|(_, t)| t.abort());
        for sourced in start {
            let (node, cluster, certs) = (self.clone(), cluster.clone(), certs.clone());
            let f = sourced.0.clone();
            let task = tokio::spawn(async move { node.fetch(cluster, certs, f).await });
            fetches.push((sourced, task));
        }
        if let Some(t) = backup {
            t.abort();
        }
        let backup = {
            let (node, cluster, certs, job) =
                (self.clone(), cluster.clone(), certs.clone(), name.clone());
            tokio::spawn(async move { node.back_up(cluster, certs, job, id).await })
        };
        fetchers.insert(
            name,
            Wired {
                id,
                fetches,
                backup: Some(backup),
                wiring,
            },
        );
    }

    /// Ends the tasks of job `job` here.
    pub(super) fn stop_fetches(&self, job: &str) {
        if let Some(w) = lock(&self.fetchers).remove(job) {
            w.tasks().for_each(|t| t.abort());
        }
    }

    /// Ends the fetches that `reconcile` is about to stop, or to replace
    /// with the job's changed vertices here, and waits until they have:
    /// an aborted task runs on to its next await, and a pull may write a
    /// whole batch into a copy before it, so a cancel that collected the
    /// copy first would keep that batch, and a vertex (or a duplicate of
    /// one) that starts here writing a stream the fetch copied would find
    /// the copy's batch in its way. A job that stays, with vertices here,
    /// keeps the fetches it still wants from the same members; its
    /// backups' rounds end too ([`Node::keep_tasks`] starts them again).
    pub(super) async fn end_fetches(
        &self,
        metadata: &Metadata,
        me: NodeId,
        waiting: &BTreeSet<String>,
    ) {
        let ending: Vec<(String, Option<ClusterJob>)> = self
            .jobs
            .placed()
            .into_iter()
            .filter_map(|(name, (id, here, backs))| {
                let job = metadata.jobs.get(&name).filter(|j| j.id == id);
                let record = job.map(|j| record_of(j, me));
                let (only, backs_now) = record
                    .map(|r| (r.only.unwrap_or_default(), r.backs.unwrap_or_default()))
                    .unwrap_or_default();
                let changed = job.is_none() || here != only || backs != backs_now;
                let idle = only.is_empty() && backs_now.is_empty();
                let staying = job.filter(|_| !idle && !waiting.contains(&name));
                changed.then(|| (name, staying.cloned()))
            })
            .collect();
        for (name, staying) in ending {
            // What the job's part here fetches once changed: computed
            // from its plan (on the blocking threads, it may build it).
            let wanted = match staying {
                Some(job) => {
                    let node = self.clone();
                    tokio::task::spawn_blocking(move || {
                        let record = record_of(&job, me);
                        node.fetches_of(&job, &record, me)
                            .ok()
                            .map(|list| sourced(&job, list))
                    })
                    .await
                    .ok()
                    .flatten()
                }
                None => None,
            };
            let ended: Vec<JoinHandle<()>> = {
                let mut fetchers = lock(&self.fetchers);
                let Some(mut w) = fetchers.remove(&name) else {
                    continue;
                };
                match &wanted {
                    Some(wanted) => {
                        let running = std::mem::take(&mut w.fetches);
                        let (kept, _, ended) = matched(running, wanted.clone(), |_| true);
                        w.fetches = kept;
                        let backup = w.backup.take();
                        fetchers.insert(name, w);
                        ended.into_iter().map(|(_, t)| t).chain(backup).collect()
                    }
                    None => w.tasks().collect(),
                }
            };
            for task in ended {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::exchange::Writer;

    fn fetch(stream: &str) -> Fetch {
        Fetch {
            job: "j".into(),
            id: 1,
            stream: format!("j@1.{stream}"),
            writer: Writer::Vertex(stream.into()),
            reader: format!("pull/j@1/{stream}@2"),
            replicas: Vec::new(),
        }
    }

    #[test]
    fn a_fetch_goes_on_only_while_it_is_wanted_from_the_same_member() {
        let running = vec![
            ((fetch("a"), Some(1)), "a from 1"),
            ((fetch("b"), Some(1)), "b from 1"),
            ((fetch("c"), Some(3)), "c from 3"),
            ((fetch("d"), Some(1)), "d from 1, ended by itself"),
        ];
        let wanted = vec![
            (fetch("a"), Some(1)),
            // b's writer moved to member 3.
            (fetch("b"), Some(3)),
            (fetch("d"), Some(1)),
            (fetch("e"), Some(1)),
        ];
        let (kept, start, ended) = matched(running, wanted, |t| !t.contains("ended"));
        let names =
            |v: &[(Sourced, &str)]| v.iter().map(|(_, t)| t.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&kept), ["a from 1"]);
        assert_eq!(
            start,
            [
                (fetch("b"), Some(3)),
                (fetch("d"), Some(1)),
                (fetch("e"), Some(1))
            ]
        );
        let mut gone = names(&ended);
        gone.sort();
        assert_eq!(gone, ["b from 1", "c from 3", "d from 1, ended by itself"]);
    }

    #[test]
    fn a_fetch_for_other_replicas_or_readers_is_another_fetch() {
        let mut told = fetch("a");
        told.replicas = vec![3];
        let mut backup = fetch("a");
        backup.reader = "backup/j@1.a@2".into();
        let running = vec![((fetch("a"), Some(1)), 0)];
        let (kept, start, ended) = matched(
            running,
            vec![(told.clone(), Some(1)), (backup.clone(), Some(1))],
            |_| true,
        );
        assert!(kept.is_empty());
        assert_eq!(start, [(told, Some(1)), (backup, Some(1))]);
        assert_eq!(ended.len(), 1);
    }
}
